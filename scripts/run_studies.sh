#!/usr/bin/env bash
# Reruns the spectrum-paper reproductions of docs/experiments.md ("Batch studies", issue 16):
# trains the checkpoints with `curv train`, runs the study files of docs/studies/ with
# `curv study --resume` (so an interrupted run continues where it stopped), and redraws the plots
# in docs/img/ with tools/plot_study.py and tools/plot_landscape.py.
#
#   scripts/run_studies.sh [train|study|plot|all] [NAME...]     (default: all, every study)
#
# NAME is one of sagun, granziol, gurari, stability, li. Outputs: out/studies/<NAME>/ (checkpoints,
# study files' HDF5 results and their .runs/ folders). About 1.5 hours on the 2 shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE=${1:-all}
shift || true
NAMES=${*:-"sagun granziol gurari stability li"}
CURV="nice build/tools/curv"
PY=/usr/bin/python3
OUT=out/studies
IMG=docs/img
T="--threads 2"
FM="--data fashion-mnist:train --normalize 0.2860/0.3530"
[[ -x build/tools/curv ]] || scripts/build.sh
mkdir -p "$OUT" "$IMG"

want() { [[ " $NAMES " == *" $1 "* ]]; }
phase() { [[ "$PHASE" == all || "$PHASE" == "$1" ]]; }
# Trains only when the checkpoint is missing (delete it to retrain). A run that fails (SGD that
# diverges to NaN, which the stability study can meet at lr 0.2) leaves <name>.failed with its
# error and no checkpoint; the study's glob then skips it.
train() {
  local out=$1; shift
  [[ -f "$out" || -f "${out%.h5}.failed" ]] && return 0
  $CURV train "$@" $T --out "$out" --json > "${out%.h5}.train.json" 2> "${out%.h5}.train.log" ||
    { tail -1 "${out%.h5}.train.log" > "${out%.h5}.failed"; echo "training failed: $(cat "${out%.h5}.failed")" >&2; }
}

if phase train; then
  if want sagun; then  # MLPs of two widths on Fashion-MNIST folded into C classes
    mkdir -p $OUT/sagun
    for w in 32 128; do for c in 2 5 10; do
      train $OUT/sagun/mlp${w}_c$c.h5 --arch mlp:$w-$w $FM --samples 10000 --relabel $c --epochs 10 \
        --batch-size 64 --lr 0.05 --momentum 0.9 --seed 1
    done; done
  fi
  if want gurari; then  # LeNet with a checkpoint after every epoch
    mkdir -p $OUT/gurari
    train $OUT/gurari/lenet.h5 --arch lenet $FM --samples 20000 --epochs 5 --batch-size 128 --lr 0.05 \
      --momentum 0.9 --seed 1 --save-every 1
  fi
  if want stability; then  # plain SGD on the mean squared error to one-hot targets
    mkdir -p $OUT/stability
    [[ -f $OUT/stability/fmnist_onehot_1000.npz ]] || $PY - $OUT/stability/fmnist_onehot_1000.npz <<'PYEOF'
import gzip, sys
import numpy as np
d = "/usr/share/datasets/fashion-mnist/"
x = np.frombuffer(gzip.open(d + "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
y = np.frombuffer(gzip.open(d + "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
n = 1000
x = (x[:n].astype(np.float32) / 255 - 0.2860) / 0.3530
np.savez(sys.argv[1], x=x, y=np.eye(10, dtype=np.float32)[y[:n]])
PYEOF
    # Batch size 1 (the setting of the Tr(H) <= 2/lr bound), 8, and full-batch gradient descent.
    for lr in 0.05 0.1 0.2; do for s in 1 2 3; do for b in 1 8 full; do
      e=$([[ $b == 1 ]] && echo 100 || ([[ $b == 8 ]] && echo 200 || echo 3000))
      train $OUT/stability/mlp_lr${lr}_b${b}_s$s.h5 --arch mlp:64 --data $OUT/stability/fmnist_onehot_1000.npz \
        --epochs $e --batch-size $b --lr $lr --seed $s
    done; done; done
  fi
  if want li; then  # ResNet-20 with and without its skip connections (BatchNorm, folded at export)
    mkdir -p $OUT/li
    for a in resnet20 resnet20-noskip; do
      train $OUT/li/$a.h5 --arch $a $FM --samples 8000 --epochs 6 --batch-size 128 --lr 0.05 --momentum 0.9 \
        --weight-decay 5e-4 --schedule cosine --seed 1
    done
  fi
fi

if phase study; then
  for n in $NAMES; do
    mkdir -p $OUT/$n
    $CURV study docs/studies/$n.json --out $OUT/$n/$n.h5 --resume $T --json > $OUT/$n/$n.study.json
  done
fi

if phase plot; then
  for n in $NAMES; do  # li's figures are the landscapes below
    [[ $n == li ]] || $PY tools/plot_study.py docs/studies/$n.json $OUT/$n/$n.h5 --out-dir $IMG
  done
  if want li; then  # the landscapes themselves (contours and surface, loss clipped at 10 for the colours)
    for r in resnet20-surface resnet20-noskip-surface; do
      $PY tools/plot_landscape.py $OUT/li/li.h5 $IMG/study_li_$r.png --run $r --vmax 10 \
        --title "$r (256 training images, filter-normalized directions)"
    done
  fi
fi
