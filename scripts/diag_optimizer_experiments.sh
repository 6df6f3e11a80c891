#!/usr/bin/env bash
# Issue 15's experiments for the Hessian-diagonal optimizers and GAM, on LeNet (curv's `--arch
# lenet`) and Fashion-MNIST (Debian's dataset-fashion-mnist), 3 seeds each:
#   1. AdaHessian vs Adam: final test accuracy.
#   2. SGD vs SAM vs GAM vs SAM + GAM: lambda_max, Tr(H) (Hutchinson) of the final weights on the
#      first 1000 training samples, and test accuracy (the GAM paper's "GAM helps SAM find flatter
#      minima").
# Usage: scripts/diag_optimizer_experiments.sh [OUTDIR] [TRAIN_SAMPLES] [EPOCHS]
# Writes OUTDIR/<run>.h5 checkpoints and OUTDIR/results.tsv; plots with tools/plot_training.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/experiments/diag}
N=${2:-20000}
E=${3:-5}
CURV=build/tools/curv
mkdir -p "$OUT"
common=(--arch lenet --data fashion-mnist:train --samples "$N" --test-data fashion-mnist:test --test-samples 5000
        --epochs "$E" --batch-size 128 --threads 2 --json)
curv_log=(--log-curvature "$E" --curvature-samples 1000 --curvature-top 1 --curvature-probes 20)
row() {  # name seed json
  /usr/bin/python3 - "$1" "$2" "$3" >>"$OUT/results.tsv" <<'PY'
import json, sys
name, seed, js = sys.argv[1], sys.argv[2], sys.argv[3]
j = json.loads(js)
c = j.get("curvature", {})
print("\t".join(str(x) for x in (name, seed, j["test_accuracy"], j["test_loss"], j["train_loss"],
                                 c.get("lambda_max", "nan"), c.get("trace", "nan"), c.get("trace_stderr", "nan"),
                                 j["samples_per_second"], j.get("optimizer_stats", {}).get("hessian_refreshes", ""))))
PY
}
[[ -f $OUT/results.tsv ]] || printf "run\tseed\ttest_acc\ttest_loss\ttrain_loss\tlambda_max\ttrace\ttrace_se\tsamples_per_s\trefreshes\n" >"$OUT/results.tsv"
run() {  # name seed args...
  local name=$1 seed=$2
  shift 2
  [[ -f $OUT/$name-s$seed.h5 ]] && return 0
  local js
  js=$("$CURV" train "${common[@]}" --seed "$seed" --out "$OUT/$name-s$seed.h5" "$@" 2>"$OUT/$name-s$seed.log")
  row "$name" "$seed" "$js"
}
for seed in 1 2 3; do
  run adam "$seed" --optimizer adam --lr 1e-3
  run adahessian "$seed" --optimizer adahessian --lr 0.1
done
for seed in 1 2 3; do
  run sgd "$seed" --momentum 0.9 --lr 0.05 "${curv_log[@]}"
  run sam "$seed" --momentum 0.9 --lr 0.05 --sam 0.05 "${curv_log[@]}"
  run gam "$seed" --momentum 0.9 --lr 0.05 --gam 0.05 --gam-alpha 0.2 "${curv_log[@]}"
  run sam_gam "$seed" --momentum 0.9 --lr 0.05 --sam 0.05 --gam 0.05 --gam-alpha 0.2 "${curv_log[@]}"
done
column -t "$OUT/results.tsv"
