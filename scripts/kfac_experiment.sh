#!/usr/bin/env bash
# Issue 14 experiment (docs/experiments.md): how good is K-FAC per layer on the shipped
# Fashion-MNIST CNN (top eigenvalue, trace, relative Frobenius error against the exact GGN block,
# the spectra overlaid), and CG vs block-CG vs K-FAC-preconditioned CG on one damped Newton system.
#
#   scripts/kfac_experiment.sh            (needs build/tools/curv; writes out/kfac_exp/)
#
# Environment: MODEL (default data/fmnist_cnn.onnx; also data/resnet20_fmnist.onnx, several hours
# on 2 cores), OUT (default out/kfac_exp), SAMPLES (training images, default 512), DAMPING (lambda
# of the Newton system, default 1e-3), PROBES (Rademacher probes of the comparison, default 30),
# MAXIT (CG cap, 300).
set -euo pipefail
cd "$(dirname "$0")/.."
CURV="nice -n 10 build/tools/curv"
PY=/usr/bin/python3
OUT=${OUT:-out/kfac_exp}
MODEL=${MODEL:-data/fmnist_cnn.onnx}
DATA=fashion-mnist:train
SAMPLES=${SAMPLES:-512}
DAMPING=${DAMPING:-1e-3}
PROBES=${PROBES:-30}
MAXIT=${MAXIT:-300}
mkdir -p "$OUT"
common="$MODEL --data $DATA --samples $SAMPLES --threads 2"
$CURV spectrum $common --curvature kfac --compare ggn --compare-probes "$PROBES" --top-k 1 --out "$OUT/kfac.h5" --json >"$OUT/kfac.json"
$CURV spectrum $common --curvature ggn --blocks layers --skip-full --density --slq-steps 60 --slq-probes 4 --top-k 1 \
  --out "$OUT/ggn.h5" --json >"$OUT/ggn.json"
$PY tools/plot_spectrum.py "$OUT/ggn.h5" "$OUT/kfac_vs_ggn.png" --kfac "$OUT/kfac.h5"
for m in cg pcg block-cg kfac; do
  $CURV solve $common --curvature ggn --damping "$DAMPING" --method $m --rtol 1e-6 --max-iters "$MAXIT" \
    --out "$OUT/solve_$m.h5" --json >"$OUT/solve_$m.json"
done
$PY scripts/kfac_experiment_report.py "$OUT" "$(basename "$MODEL" .onnx)"
