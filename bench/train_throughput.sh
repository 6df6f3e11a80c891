#!/usr/bin/env bash
# Training throughput (samples/s) of curv vs PyTorch on the same architecture, batch size and
# thread count, and SAM's cost per step relative to SGD. Ratios are measured in one run.
#   bench/train_throughput.sh [THREADS] [BATCH]
# Needs a built curv (scripts/build.sh) and, for the PyTorch side, Debian's python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}
B=${2:-128}
CURV=build/tools/curv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curv_sps() {  # arch samples [extra args]
  local arch=$1 n=$2
  shift 2
  "$CURV" train --arch "$arch" --data fashion-mnist:train --samples "$n" --epochs 1 --batch-size "$B" \
    --momentum 0.9 --lr 0.05 --threads "$T" --json --out "$tmp/m.h5" "$@" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])'
}
torch_sps() {
  /usr/bin/python3 bench/pytorch_train.py "$@" --batch-size "$B" --threads "$T" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])'
}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
printf "%-10s %-5s %12s %12s %10s\n" arch opt curv_sps torch_sps curv/torch
for arch in lenet resnet20; do
  n=$([[ $arch == lenet ]] && echo 12800 || echo 2560)
  steps=$([[ $arch == lenet ]] && echo 60 || echo 15)
  for opt in sgd sam; do
    extra=()
    targs=()
    if [[ $opt == sam ]]; then extra=(--sam 0.05); targs=(--sam 0.05); fi
    c=$(curv_sps "$arch" "$n" "${extra[@]}")
    t=nan
    ratio=nan
    if ((have_torch)); then
      t=$(torch_sps --arch "$arch" --steps "$steps" "${targs[@]}")
      ratio=$(/usr/bin/python3 -c "print(f'{$c/$t:.2f}')")
    fi
    printf "%-10s %-5s %12.0f %12.0f %10s\n" "$arch" "$opt" "$c" "$t" "$ratio"
    eval "${arch}_${opt}=$c"
  done
done
/usr/bin/python3 -c "print(f'SAM step cost / SGD step cost (curv): lenet {$lenet_sgd/$lenet_sam:.2f}x, resnet20 {$resnet20_sgd/$resnet20_sam:.2f}x')"
