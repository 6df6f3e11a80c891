#!/usr/bin/env bash
# curv vs PyTorch on the same ResNet-20 (BatchNorm folded, exported by bench/pytorch_hvp.py as
# ONNX), same sample count and thread count, measured back to back; prints the ratios.
# Needs Debian's python3-torch and python3-onnx. Usage: bench/compare_pytorch.sh [threads=2] [samples=200]
set -euo pipefail
T=${1:-2}; N=${2:-200}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/pytorch_hvp.py --threads "$T" --samples "$N" --reps 3 --block 4 --export "$tmp/resnet20.onnx" \
  | tail -1 > "$tmp/torch.json"
build/tools/curv bench "$tmp/resnet20.onnx" --data "random:3x32x32:10:$N" --threads "$T" --block 16 --repeat 3 --json \
  > "$tmp/curv.json"
/usr/bin/python3 - "$tmp/torch.json" "$tmp/curv.json" <<'PY'
import json, sys
t, c = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"pytorch": t, "curv": c,
  "curv_grad_over_torch_grad": c["grad_s"] / t["grad_s"],
  "torch_hvp_over_curv_hvp": t["hvp_s"] / c["hvp_s"],
  "torch_hvp_only_over_curv_hvp": t["hvp_only_s"] / c["hvp_s"],
  "torch_hvp_over_curv_hvp_with_primal": t["hvp_s"] / c["hvp_first_s"],
  "curv_hvp_over_curv_grad": c["hvp_over_grad"],
  "curv_block16_over_16_singles": c["block_over_singles"],
  "curv_block16_over_16_uncached_singles": c["block_over_uncached_singles"]}, indent=1))
PY
