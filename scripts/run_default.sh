#!/usr/bin/env bash
# The main job on the built-in default: the shipped Fashion-MNIST CNN (data/fmnist_cnn.onnx).
# Installs packages if missing, builds, evaluates the model, computes the Hessian spectrum
# (top eigenvalues, trace, SLQ density, per layer) into out/spectrum.h5 and plots it to
# out/spectrum.png. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
CURV_WITH_PLOTS=1 scripts/install_deps.sh
scripts/build.sh
mkdir -p out
CURV=build/tools/curv
MODEL=data/fmnist_cnn.onnx
echo "== curv eval: the shipped CNN on the Fashion-MNIST test set" >&2
$CURV eval $MODEL --data fashion-mnist:test --json | tee out/eval.json
echo "== curv spectrum: Hessian of the mean loss on 2,000 training images" >&2
$CURV spectrum $MODEL --data fashion-mnist:train --samples 2000 --top-k 5 --trace-probes 100 --trace-tol 0.02 \
  --density --slq-steps 80 --slq-probes 4 --blocks layers --out out/spectrum.h5 --json > out/spectrum.json
python3 -c "import json; j = json.load(open('out/spectrum.json')); print(json.dumps({k: j[k] for k in ('eigen', 'trace', 'hvps', 'seconds')}, indent=1))"
echo "== plot: out/spectrum.png" >&2
/usr/bin/python3 tools/plot_spectrum.py out/spectrum.h5 out/spectrum.png
