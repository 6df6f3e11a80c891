#!/usr/bin/env bash
# Reruns the training experiments of docs/experiments.md (issue 5) and redraws their plots.
#   scripts/run_train_experiments.sh [OUT_DIR]      (default out/experiments; about 45 min on 2 cores)
# 1. SGD vs SAM (rho 0.05) on Fashion-MNIST: final lambda_max, trace, test accuracy.
# 2. Full-batch GD on 2,000 samples at two learning rates: edge of stability (lambda_max ~ 2/lr).
# 3. The gradient's overlap with the top-10 Hessian eigenspace over SGD training (Gur-Ari et al.).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/experiments}
IMG=docs/img
mkdir -p "$OUT" "$IMG"
CURV="nice build/tools/curv"
PY=/usr/bin/python3
[[ -x build/tools/curv ]] || scripts/build.sh
FM="--data fashion-mnist:train --normalize 0.2860/0.3530 --threads 2"
TEST="--test-data fashion-mnist:test"

# 1. SGD vs SAM, same epochs, same everything else.
COMMON="--arch lenet $FM $TEST --epochs 10 --batch-size 128 --optimizer sgd --lr 0.05 --momentum 0.9
        --weight-decay 5e-4 --schedule cosine --seed 1 --log-curvature 1 --curvature-samples 1000
        --curvature-top 10 --curvature-probes 20 --json"
$CURV train $COMMON --out "$OUT/sgd.h5" > "$OUT/sgd.json"
$CURV train $COMMON --sam 0.05 --out "$OUT/sam.h5" > "$OUT/sam.json"
$PY tools/plot_training.py "$OUT/sgd.h5" "$OUT/sam.h5" --labels SGD,SAM --panels accuracy,lambda_max,trace \
  --title "LeNet on Fashion-MNIST: SGD vs SAM (rho 0.05)" --out "$IMG/train_sgd_vs_sam.png"

# 2. Edge of stability: full-batch gradient descent on the first 2,000 training samples.
for lr in 0.1 0.04; do
  $CURV train --arch mlp:200-200 $FM --samples 2000 --epochs 1000 --batch-size full --lr $lr --seed 1 \
    --log-curvature 10:steps --curvature-samples 2000 --curvature-top 1 --curvature-probes 0 --json \
    --out "$OUT/eos_$lr.h5" > "$OUT/eos_$lr.json"
done
$PY tools/plot_training.py "$OUT/eos_0.1.h5" "$OUT/eos_0.04.h5" --labels "lr 0.1,lr 0.04" --x steps \
  --panels loss,lambda_max --title "Full-batch GD, MLP 200-200, 2,000 samples" --out "$IMG/train_eos.png"

# 3. Gradient overlap with the top-10 eigenspace, every 25 SGD steps over 2 epochs.
$CURV train --arch lenet $FM --epochs 2 --batch-size 128 --optimizer sgd --lr 0.05 --momentum 0.9 --seed 1 \
  --log-curvature 25:steps --curvature-samples 1000 --curvature-top 10 --curvature-probes 0 --json \
  --out "$OUT/overlap.h5" > "$OUT/overlap.json"
$PY tools/plot_training.py "$OUT/overlap.h5" --labels SGD --x steps --panels lambda_max,overlap \
  --title "LeNet, SGD: gradient in the top-10 Hessian eigenspace" --out "$IMG/train_overlap.png"

# Summary table of the final measurements.
$PY - "$OUT" <<'PYEOF'
import h5py, sys, os
out = sys.argv[1]
for name in ("sgd", "sam", "eos_0.1", "eos_0.04", "overlap"):
    with h5py.File(os.path.join(out, name + ".h5"), "r") as f:
        c, h = f["history/curvature"], f["history"]
        lam, tr, ov = c["lambda_max"][...], c["trace"][...], c["grad_overlap"][...]
        print(f"{name:9s} test_acc {h['test_accuracy'][-1]:.4f} train_loss {h['train_loss'][-1]:.4f} "
              f"lambda_max {lam[-1]:.3f} (max {lam.max():.3f}) trace {tr[-1]:.2f} +- {c['trace_stderr'][-1]:.2f} "
              f"overlap {ov[-1]:.3f} 2/lr {2 / c['lr'][-1]:.1f}")
PYEOF
