#!/usr/bin/env bash
# Issue 14 experiment on ResNet-20, reduced to fit the shared 2-core machine (docs/experiments.md,
# "How good is K-FAC per layer on ResNet-20?"): the K-FAC eigenvalues over the GGN's per-layer SLQ
# density for four representative layers, and CG vs restricted block-CG vs K-FAC-PCG on one damped
# Newton system.
#
#   scripts/kfac_experiment_resnet20.sh     (needs build/tools/curv; writes out/kfac_resnet20/)
#
# Environment: OUT (default out/kfac_resnet20), SAMPLES (training images, 128), LAYERS (the
# density's layers), SLQ_STEPS (30) and SLQ_PROBES (2), DAMPING (1e-3), MAXIT (CG and PCG cap, 150),
# BLOCK_MAXIT (block-CG cap, 40), THREADS (2), SEED (0), CURV_BIN (build/tools/curv), PART (all,
# density or solve).
set -euo pipefail
cd "$(dirname "$0")/.."
CURV="nice -n 19 ${CURV_BIN:-build/tools/curv}"
PY="nice -n 19 /usr/bin/python3"
OUT=${OUT:-out/kfac_resnet20}
MODEL=data/resnet20_fmnist.onnx
SAMPLES=${SAMPLES:-128}
LAYERS=${LAYERS:-conv1,layers.2.conv1,layers.5.conv1,fc}
SLQ_STEPS=${SLQ_STEPS:-30}
SLQ_PROBES=${SLQ_PROBES:-2}
DAMPING=${DAMPING:-1e-3}
MAXIT=${MAXIT:-150}
BLOCK_MAXIT=${BLOCK_MAXIT:-40}
THREADS=${THREADS:-2}
SEED=${SEED:-0}
mkdir -p "$OUT"
common="$MODEL --data fashion-mnist:train --samples $SAMPLES --threads $THREADS --seed $SEED"
step() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if [ "${PART:-all}" != solve ]; then
  step "K-FAC factors (type exact) and their spectra"
  $CURV spectrum $common --curvature kfac --top-k 1 --out "$OUT/kfac.h5" --json >"$OUT/kfac.json"
  step "GGN per-layer SLQ densities: $LAYERS, $SLQ_STEPS steps x $SLQ_PROBES probes"
  $CURV spectrum $common --curvature ggn --blocks "$LAYERS" --skip-full --density --slq-steps "$SLQ_STEPS" \
    --slq-probes "$SLQ_PROBES" --top-k 0 --out "$OUT/ggn.h5" --json >"$OUT/ggn.json"
  $PY tools/plot_spectrum.py "$OUT/ggn.h5" "$OUT/kfac_vs_ggn_resnet20.png" --kfac "$OUT/kfac.h5"
fi
if [ "${PART:-all}" != density ]; then
  for m in cg pcg block-cg kfac; do
    extra="--max-iters $MAXIT"
    [ "$m" = block-cg ] && extra="--max-iters $BLOCK_MAXIT --restricted-blocks"
    step "solve --method $m $extra"
    $CURV solve $common --curvature ggn --damping "$DAMPING" --method $m --rtol 1e-6 $extra \
      --out "$OUT/solve_$m.h5" --json >"$OUT/solve_$m.json"
  done
  $PY scripts/kfac_experiment_report.py "$OUT" resnet20_fmnist --no-compare --png "$OUT/kfac_solve_convergence_resnet20.png"
fi
step done
