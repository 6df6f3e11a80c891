#!/usr/bin/env bash
# Issue 6 experiment (docs/experiments.md): Fashion-MNIST test accuracy of HAWQ-V1 (eig) and
# HAWQ-V2 (trace) mixed-precision plans vs uniform bits vs reverse- and random-sensitivity plans
# under the same average-bit budgets, solved by the same exact allocator.
#
#   scripts/quant_experiment.sh [cnn|resnet20|all]      (default all; needs build/tools/curv)
#
# Per model, into out/quant_exp/<name>/: sensitivities computed once per kind (eig.h5, trace.h5,
# each also holding the Pareto frontier at 4 bits), then every plan from them with --sensitivities
# (no further Hessian work), every plan evaluated on the full 10k test set, results.json (one row
# per plan, plus the float32 model) and frontier_<kind>.png. Candidate bits 2,3,4,8, per-channel symmetric weights, no
# pinned layers. Uniform B-bit plans are made by the same command with --bits B, so their measured
# Omega is reported too. Everything runs under nice with 2 threads.
# The ResNet-20 model is data/resnet20_fmnist.onnx (scripts/train_resnet20_fmnist.py).
# Environment: SAMPLES_<name> (training images for the sensitivities), PROBES_<name> (Hutchinson
# probes per layer), EIG_TOL (relative tolerance of lambda_max), SEEDS (of the random-order plans),
# EXTRA (more HAWQ-V2 budgets for the plot), ACC_MIN (bottom of the plots' accuracy axis, %). docs/experiments.md ran it as:
#   scripts/quant_experiment.sh cnn
#   SAMPLES_resnet20=256 EIG_TOL=1e-2 SEEDS="1 2 3" EXTRA="2.5 3.5" ACC_MIN=70 scripts/quant_experiment.sh resnet20
set -euo pipefail
cd "$(dirname "$0")/.."
CURV="nice -n 10 build/tools/curv"
PY=/usr/bin/python3
WHICH=${1:-all}
SEEDS=${SEEDS:-"1 2 3 4 5"}
EIG_TOL=${EIG_TOL:-1e-3}
BITS=2,3,4,8

run_model() {  # name model samples probes
  local name=$1 model=$2 samples=$3 probes=$4
  local dir=out/quant_exp/$name
  mkdir -p "$dir"
  local common="$model --data fashion-mnist:train --threads 2 --json"
  local t0=$SECONDS
  for kind in eig trace; do
    if [[ ! -f $dir/$kind.h5 ]]; then
      echo "== $name: $kind sensitivities on $samples training images" >&2
      $CURV quant plan $common --samples "$samples" --sensitivity $kind --trace-probes "$probes" --eig-tol "$EIG_TOL" \
        --bits $BITS --avg-bits 4 --out "$dir/$kind-b4.json" --h5 "$dir/$kind.h5" > /dev/null
      echo "   $kind: $((SECONDS - t0)) s" >&2
      t0=$SECONDS
    fi
  done
  plans=()
  for b in 3 4; do
    for kind in eig trace; do
      $CURV quant plan $common --sensitivities "$dir/$kind.h5" --bits $BITS --avg-bits $b --out "$dir/$kind-b$b.json" > /dev/null
      $CURV quant plan $common --sensitivities "$dir/$kind.h5" --bits $BITS --avg-bits $b --order reverse \
        --out "$dir/$kind-reverse-b$b.json" > /dev/null
      plans+=("$kind-b$b" "$kind-reverse-b$b")
    done
    for s in $SEEDS; do
      $CURV quant plan $common --sensitivities "$dir/trace.h5" --bits $BITS --avg-bits $b --order random --seed "$s" \
        --out "$dir/trace-random$s-b$b.json" > /dev/null
      plans+=("trace-random$s-b$b")
    done
    $CURV quant plan $common --sensitivities "$dir/trace.h5" --bits $b --avg-bits $b --out "$dir/uniform-b$b.json" > /dev/null
    plans+=("uniform-b$b")
  done
  $CURV quant plan $common --sensitivities "$dir/trace.h5" --bits 2 --avg-bits 2 --out "$dir/uniform-b2.json" > /dev/null
  plans+=("uniform-b2")
  # More points along the HAWQ-V2 frontier for the plot.
  for b in ${EXTRA:-2.5 3.5 5 6}; do
    $CURV quant plan $common --sensitivities "$dir/trace.h5" --bits $BITS --avg-bits $b --out "$dir/trace-b$b.json" > /dev/null
    plans+=("trace-b$b")
  done
  for p in "${plans[@]}"; do
    [[ -f $dir/$p.eval.json ]] && [[ $dir/$p.eval.json -nt $dir/$p.json ]] && continue
    echo "== $name: eval $p" >&2
    $CURV quant eval "$model" --data fashion-mnist:test --threads 2 --plan "$dir/$p.json" --json > "$dir/$p.eval.json"
  done
  [[ -f $dir/float.eval.json ]] || $CURV eval "$model" --data fashion-mnist:test --threads 2 --json > "$dir/float.eval.json"
  $PY - "$dir" "${plans[@]}" <<'PY'
import json, sys
d, names = sys.argv[1], sys.argv[2:]
rows = []
for n in names:
    p, e = json.load(open(f"{d}/{n}.json")), json.load(open(f"{d}/{n}.eval.json"))
    rows.append({"label": n, "sensitivity": p["sensitivity"], "order": p.get("order", "hessian"),
                 "budget_avg_bits": p["budget"]["value"], "bits": [l["bits"] for l in p["layers"]],
                 "size_bytes": p["totals"]["size_bytes"], "avg_bits": p["totals"]["avg_bits"],
                 "measured_omega": p["measured_omega"], "accuracy": e["accuracy"], "loss": e["loss"],
                 "samples": e["samples"]})
f = json.load(open(f"{d}/float.eval.json"))
json.dump({"float": {"accuracy": f["accuracy"], "loss": f["loss"], "samples": f["samples"]}, "plans": rows},
          open(f"{d}/results.json", "w"), indent=1)
PY
  $PY -c "import json, sys; json.dump(json.load(open(sys.argv[1]))['plans'], open(sys.argv[2], 'w'))" \
    "$dir/results.json" "$dir/evals.json"
  for kind in eig trace; do
    $PY tools/plot_quant.py "$dir/$kind.h5" "$dir/frontier_$kind.png" --plan "$dir/$kind-b4.json" \
      --evals "$dir/evals.json" --title "$name, $kind sensitivities" \
      ${ACC_MIN:+--acc-min "$ACC_MIN"}
  done
  $PY scripts/quant_experiment_table.py "$dir/results.json"
}

if [[ $WHICH == cnn || $WHICH == all ]]; then
  run_model fmnist_cnn data/fmnist_cnn.onnx "${SAMPLES_fmnist_cnn:-1000}" "${PROBES_fmnist_cnn:-32}"
fi
if [[ $WHICH == resnet20 || $WHICH == all ]]; then
  run_model resnet20 data/resnet20_fmnist.onnx "${SAMPLES_resnet20:-500}" "${PROBES_resnet20:-8}"
fi
