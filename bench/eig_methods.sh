#!/usr/bin/env bash
# Top Hessian eigenvalue of ResNet-20 (128 samples): products used by Spectra's Lanczos (--eig-tol 1e-3)
# and by PyHessian's power iteration (tol 1e-3), with errors relative to a tight Lanczos (1e-9).
# Then SLQ: one probe vs P probes in lockstep (same steps), wall-time ratio in this one run.
# Usage: bench/eig_methods.sh [build/tools/curv] [samples=128] [slq_steps=30] [slq_probes=4]
set -euo pipefail
CURV=${1:-build/tools/curv}; N=${2:-128}; M=${3:-30}; P=${4:-4}
D="random:3x32x32:10:$N"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() { "$CURV" spectrum --arch resnet20 --seed 1 --data "$D" --json --out "$tmp/s.h5" "$@" 2>/dev/null; }
ref=$(run --top-k 1 --eig-tol 1e-9)
lan=$(run --top-k 1 --eig-tol 1e-3)
pow=$(run --top-k 1 --eig-method power --eig-tol 1e-3)
s1=$(run --top-k 0 --density --slq-steps "$M" --slq-probes 1)
sp=$(run --top-k 0 --density --slq-steps "$M" --slq-probes "$P")
/usr/bin/python3 - "$ref" "$lan" "$pow" "$s1" "$sp" "$P" <<'PY'
import json, sys
ref, lan, pow_, s1, sp = (json.loads(a) for a in sys.argv[1:6]); P = int(sys.argv[6])
lam = ref["eigen"]["top"][0]
def row(name, j):
    v = j["eigen"]["top"][0]
    return {"method": name, "lambda_max": v, "rel_err": abs(v - lam) / abs(lam), "hvps": j["hvps"]}
out = {"reference_lambda_max": lam, "reference_hvps": ref["hvps"],
       "lanczos": row("lanczos", lan), "power": row("power", pow_)}
out["lanczos_over_power_hvps"] = lan["hvps"] / pow_["hvps"]
out["slq"] = {"probes": P, "steps_per_probe": s1["density"]["steps"], "one_probe_s": s1["seconds"],
              "lockstep_s": sp["seconds"], "lockstep_over_one": sp["seconds"] / s1["seconds"]}
print(json.dumps(out, indent=1))
PY
