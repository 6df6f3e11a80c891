#!/usr/bin/env bash
# The study's own overhead (planning, run-file commits, F.h5 refreshes, the resume scan) over its
# runs, on a 100-run study of a small model, lambda_max and a 16-probe trace per run, seeds 1..100:
#   mlp  mlp:32-32 (26,506 parameters) on 1,000 Fashion-MNIST images, a different initialization
#        per seed: the worst case, each run takes only ~60 ms, so the fixed per-run cost of the
#        HDF5 files weighs most;
#   cnn  the shipped CNN (data/fmnist_cnn.onnx) on 100 images, the seed drawing the probes.
# Then a --resume of the finished study (every run skipped: the cost of the resume scan alone).
# The store's background thread (file creation, writes, fsyncs, renames) overlaps the runs; its CPU
# time is printed too, since on a machine whose cores the runs keep busy it is taken from them.
# Usage: bench/study_overhead.sh [threads=2] [mlp|cnn]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}
case ${2:-mlp} in
  mlp) model='"arch": "mlp:32-32"'; samples=1000 ;;
  cnn) model='"model": "'$PWD'/data/fmnist_cnn.onnx"'; samples=100 ;;
  *) echo "usage: $0 [threads] [mlp|cnn]" >&2; exit 2 ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
seeds=$(seq -s, 1 100)
cat > "$tmp/s.json" <<JSON
{"defaults": {$model, "data": "fashion-mnist:train", "samples": $samples, "normalize": "0.2860/0.3530",
              "top_k": 1, "eig_tol": 1e-4, "trace_probes": 16},
 "grids": [{"kind": "spectrum", "axes": {"seed": [$seeds]}}]}
JSON
build/tools/curv study "$tmp/s.json" --out "$tmp/o.h5" --threads "$T" --json 2>/dev/null > "$tmp/run.json"
build/tools/curv study "$tmp/s.json" --out "$tmp/o.h5" --threads "$T" --resume --json 2>/dev/null > "$tmp/resume.json"
/usr/bin/python3 - "$tmp/run.json" "$tmp/resume.json" <<'PY'
import json, sys
r, s = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["seconds", "plan_seconds", "run_seconds", "load_seconds", "store_seconds", "overhead_seconds",
        "background_cpu_seconds"]
print(json.dumps({"runs": len(r["runs"]), "study": {k: r[k] for k in keys},
                  "overhead_percent_of_runs": round(100 * r["overhead_fraction"], 2),
                  "background_cpu_percent_of_runs": round(100 * r["background_cpu_seconds"] / r["run_seconds"], 2),
                  "resume_all_skipped_seconds": s["seconds"],
                  "resume_percent_of_runs": round(100 * s["seconds"] / r["run_seconds"], 2)}))
PY
