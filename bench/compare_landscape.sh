#!/usr/bin/env bash
# Points per second of a 51x51 loss landscape of the shipped CNN: curv landscape against a PyTorch
# loop over the same grid (bench/landscape_pytorch.py), same ONNX model, same samples, same
# directions (PyTorch reads curv's), same thread count, measured back to back; prints the ratio.
# Usage: bench/compare_landscape.sh [threads=2] [samples=256] [grid=-1:1:51,-1:1:51]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}; N=${2:-256}; G=${3:--1:1:51,-1:1:51}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
build/tools/curv landscape data/fmnist_cnn.onnx --data fashion-mnist:test --samples "$N" --grid "$G" \
  --filter-norm --ignore bias --seed 1 --threads "$T" --out "$tmp/l.h5" --json > "$tmp/curv.json"
/usr/bin/python3 bench/landscape_pytorch.py data/fmnist_cnn.onnx "$tmp/l.h5" --samples "$N" --threads "$T" \
  > "$tmp/torch.json"
/usr/bin/python3 - "$tmp/curv.json" "$tmp/torch.json" <<'PY'
import json, sys
c, t = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"points": t["points"], "samples": t["samples"], "threads": t["threads"],
                  "curv_points_per_second": c["points_per_second"], "torch_points_per_second": t["points_per_second"],
                  "curv_over_torch": c["points_per_second"] / t["points_per_second"],
                  "max_abs_loss_diff": t["max_abs_loss_diff"]}))
PY
