#!/usr/bin/env bash
# The main job on the built-in default: the shipped Fashion-MNIST CNN (data/fmnist_cnn.onnx).
# Installs packages if missing, builds, evaluates the model, computes the Hessian spectrum
# (top eigenvalues, trace, SLQ density, per layer) into out/spectrum.h5, plots it to
# out/spectrum.png, and makes a HAWQ-V2 mixed-precision plan at 4 average bits (out/plan.json)
# evaluated against uniform 4-bit quantization, which is at least as large (avg-bits counts the
# quantized weights only, so uniform 4 bits is always feasible at --avg-bits 4); both sizes are
# printed. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
CURV_WITH_PLOTS=1 scripts/install_deps.sh
scripts/build.sh
mkdir -p out
CURV=build/tools/curv
MODEL=data/fmnist_cnn.onnx
echo "== curv eval: the shipped CNN on the Fashion-MNIST test set" >&2
$CURV eval $MODEL --data fashion-mnist:test --json | tee out/eval.json
echo "== curv spectrum: Hessian of the mean loss on 1,000 training images, whole model and per layer" >&2
$CURV spectrum $MODEL --data fashion-mnist:train --samples 1000 --top-k 3 --trace-probes 48 --trace-tol 0.05 \
  --density --slq-steps 50 --slq-probes 2 --blocks layers --out out/spectrum.h5 --json > out/spectrum.json
python3 -c "import json; j = json.load(open('out/spectrum.json')); print(json.dumps({k: j[k] for k in ('eigen', 'trace', 'hvps', 'seconds')}, indent=1))"
echo "== plot: out/spectrum.png" >&2
/usr/bin/python3 tools/plot_spectrum.py out/spectrum.h5 out/spectrum.png
echo "== curv quant plan: HAWQ-V2 (trace) sensitivities, exact knapsack at <= 4 average bits" >&2
$CURV quant plan $MODEL --data fashion-mnist:train --samples 1000 --sensitivity trace --bits 2,3,4,8 --avg-bits 4 \
  --out out/plan.json --h5 out/quant.h5
echo "== curv quant eval: the plan vs uniform 4-bit, Fashion-MNIST test set" >&2
$CURV quant eval $MODEL --data fashion-mnist:test --plan out/plan.json --json | tee out/quant_plan_eval.json
$CURV quant eval $MODEL --data fashion-mnist:test --uniform 4 --json | tee out/quant_uniform4_eval.json
python3 - <<'PY'
import json
p, u = json.load(open("out/quant_plan_eval.json")), json.load(open("out/quant_uniform4_eval.json"))
print(f"HAWQ-V2 plan: {p['size_bytes']} bytes ({p['avg_bits']:.3f} average weight bits), test accuracy {100 * p['accuracy']:.2f}%")
print(f"uniform 4-bit: {u['size_bytes']} bytes ({u['avg_bits']:.3f} average weight bits), test accuracy {100 * u['accuracy']:.2f}%"
      f" ({100 * (u['size_bytes'] / p['size_bytes'] - 1):+.1f}% size against the plan)")
PY
