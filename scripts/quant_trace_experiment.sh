#!/usr/bin/env bash
# HAWQ-V2's per-layer traces, two ways, compared at equal per-layer standard error
# (docs/experiments.md, "Per-layer traces: shared probes against one product per layer"):
#   per-layer     one block product per layer and probe (HAWQ-V2, PyHessian's per-block loop)
#   shared        one whole-model product per probe for all layers, v_i^T (H v)_i, with the
#                 rank-16 control variate (curvature/block_trace.h) and per-layer fallback
#   shared-plain  the same without the control variate (what an earlier attempt found too noisy)
# each run until every layer's relative standard error is at most TOL (at most MAX probes), plus a
# fixed-probe run of each kind for the trace-vs-probes convergence figure (HAWQ-V2's figure).
#
#   scripts/quant_trace_experiment.sh [cnn|vit|resnet20|all]
#
# Into out/quant_trace/<name>/: <method>.h5 (sensitivities with every probe sample), <method>.json
# (plan, with the product counts in "measurement"), summary.json, convergence_<method>.png.
# Environment: TOL (default 0.1), MAX (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
CURV="nice -n 10 ${CURV_BIN:-build/tools/curv}"
PY=/usr/bin/python3
WHICH=${1:-all}
TOL=${TOL:-0.1}
MAX=${MAX:-256}

run() {  # name model samples
  local name=$1 model=$2 samples=$3 dir=out/quant_trace/$1
  mkdir -p "$dir"
  local base="quant plan $model --data fashion-mnist:train --samples $samples --threads 2 --bits 2,3,4,8 --avg-bits 4"
  one() {  # label args...
    local label=$1; shift
    [[ -f $dir/$label.json ]] && return
    echo "[$(date +%H:%M:%S)] $name: $label" >&2
    /usr/bin/time -f "%e" -o "$dir/$label.wall" $CURV $base "$@" --out "$dir/$label.json" --h5 "$dir/$label.h5" > /dev/null
  }
  one per-layer --trace-method per-layer --trace-tol "$TOL" --trace-probes "$MAX"
  one shared --trace-method shared --trace-sketch 16 --trace-tol "$TOL" --trace-probes "$MAX"
  one shared-plain --trace-method shared --trace-sketch 0 --trace-tol "$TOL" --trace-probes "$MAX"
  one fixed-per-layer --trace-method per-layer --trace-probes 64
  one fixed-shared --trace-method shared --trace-sketch 16 --trace-probes 128
  one fixed-shared-plain --trace-method shared --trace-sketch 0 --trace-probes 128
  for m in fixed-per-layer fixed-shared fixed-shared-plain; do
    $PY tools/plot_quant.py --trace "$dir/$m.h5" "$dir/convergence_$m.png" --title "$name: $m"
  done
  $PY - "$dir" <<'PY'
import json, sys, statistics
import h5py
d = sys.argv[1]
out = {}
for m in ("per-layer", "shared", "shared-plain", "fixed-per-layer", "fixed-shared", "fixed-shared-plain"):
    p = json.load(open(f"{d}/{m}.json"))
    with h5py.File(f"{d}/{m}.h5", "r") as f:
        q = f["quant"]
        tr, se, n = q["layers/trace"][...], q["layers/trace_stderr"][...], q["layers/trace_probes"][...]
        names = [x.decode() if isinstance(x, bytes) else x for x in q["layers/names"][...]]
        numel = q["layers/numel"][...]
    rel = [abs(s / t) if t else float("inf") for s, t in zip(se, tr)]
    out[m] = {"products": p["measurement"]["products"], "shared_probes": p["measurement"]["shared_probes"],
              "fallback_layers": p["measurement"]["fallback_layers"], "seconds": p["measurement"]["seconds"],
              "wall_seconds": float(open(f"{d}/{m}.wall").read().split()[-1]),
              "max_rel_stderr": max(rel), "median_rel_stderr": statistics.median(rel),
              "negative_traces": int(sum(t < 0 for t in tr)),
              "layers": [{"name": a, "numel": int(b), "trace": float(c), "stderr": float(e), "probes": int(k)}
                         for a, b, c, e, k in zip(names, numel, tr, se, n)]}
json.dump(out, open(f"{d}/summary.json", "w"), indent=1)
for m, v in out.items():
    print(f"{m:20s} products {v['products']:6d}  shared probes {v['shared_probes']:4d}  fallback layers "
          f"{v['fallback_layers']:3d}  seconds {v['seconds']:8.1f}  rel. stderr max {v['max_rel_stderr']:.3f} "
          f"median {v['median_rel_stderr']:.3f}  negative traces {v['negative_traces']}")
PY
}

if [[ $WHICH == cnn || $WHICH == all ]]; then run fmnist_cnn data/fmnist_cnn.onnx 1000; fi
if [[ $WHICH == vit || $WHICH == all ]]; then run vit data/vit_fmnist.onnx 500; fi
if [[ $WHICH == resnet20 || $WHICH == all ]]; then run resnet20 data/resnet20_fmnist.onnx 256; fi
