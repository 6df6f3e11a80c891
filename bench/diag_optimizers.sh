#!/usr/bin/env bash
# Step cost of the Hessian-diagonal optimizers and GAM relative to an SGD step on the same batches
# (issue 15 targets: AdaHessian <= 3x, Sophia with k = 10 <= 1.3x, GAM <= 3x), with PyTorch's
# AdaHessian (double backward) for comparison. Each ratio is (SGD samples/s) / (optimizer samples/s)
# over one epoch of the same batches, measured in one run of this script; run it twice, the
# machine is noisy.
#   bench/diag_optimizers.sh [THREADS] [BATCH] [ARCH]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}
B=${2:-128}
ARCH=${3:-lenet}
N=$((B * 20))
CURV=build/tools/curv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sps() {
  "$CURV" train --arch "$ARCH" --data random:1x28x28:10:"$N" --epochs 1 --batch-size "$B" --lr 0.01 \
    --threads "$T" --json --out "$tmp/m.h5" "$@" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])'
}
sgd=$(sps --momentum 0.9)
printf "%-22s %10s %8s\n" optimizer samples/s "x SGD"
printf "%-22s %10.0f %8s\n" "sgd (momentum 0.9)" "$sgd" 1.00
run() {  # label target args...
  local label=$1 target=$2
  shift 2
  local s
  s=$(sps "$@")
  printf "%-22s %10.0f %8s   (target <= %s)\n" "$label" "$s" "$(/usr/bin/python3 -c "print(f'{$sgd/$s:.2f}')")" "$target"
}
run "adahessian k=1" 3 --optimizer adahessian
run "sophia k=10 hutchinson" 1.3 --optimizer sophia --hessian-every 10
run "sophia k=10 gnb" 1.3 --optimizer sophia --hessian-every 10 --hessian-estimator gnb
run "gam" 3 --momentum 0.9 --gam 0.05
if [[ $ARCH == lenet ]] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 bench/pytorch_adahessian.py --batch-size "$B" --threads "$T" |
    /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print("pytorch adahessian (double backward): %.2fx its SGD step" % j["ratio"])'
fi
