#!/usr/bin/env bash
# curv vs PyTorch on token-input language models: the same ONNX file, the same batch of sequences
# (an npz written by bench/pytorch_lm_hvp.py into a temporary folder), the same thread count.
# Models: the BERT-style classifier (token ids + attention mask) and the GPT-style causal LM of
# data/fixtures/lm/, and data/char_gpt.onnx / data/license_bert.onnx when they exist (their
# held-out npz, first SEQUENCES rows, tiled if fewer).
# Prints one JSON line per model: both losses and their relative difference, PyTorch's medians,
# curv's medians over REPS runs of `curv bench --repeat 2` (each the best of 2, as bench has no
# warm-up call), and the ratios. PyTorch's time is the better median of two runs, one with
# OpenMP's default wait policy and one with OMP_WAIT_POLICY=PASSIVE: on a loaded machine PyTorch's
# spinning OpenMP threads can be 10-20x slower at 2 threads than passive ones.
#   torch_hvp_over_curv_hvp_first      full double-backward HVP / curv's HVP with its primal pass
#   torch_hvp_only_over_curv_hvp       double backward on the kept graph / curv's cached HVP
#   torch_hvp_over_curv_hvp            full double-backward HVP / curv's cached HVP
#   curv_grad_over_torch_grad, curv_loss_over_torch_loss, curv_hvp_over_curv_grad
#   curv_rss_grad_over_torch           peak RSS of curv's gradient / PyTorch's (whole processes)
#   curv_rss_hvp_over_curv_rss_grad    peak RSS of curv's cached HVP / its gradient
#   singles_over_block                 BLOCK (16) single HVPs / one block of BLOCK directions
# and, when bench_peak is built next to curv (build*/bench/bench_peak), this machine's measured
# float32 peak (the best of curv's GEMM and oneDNN's convolution at 1..THREADS threads; see
# bench/scale.sh) and, by the FLOPs of the forward pass's matrix products (PyTorch's profiler):
#   curv_hvp_pct_of_peak               curv's cached HVP rate (6 forward passes) in % of the peak
#   need_pct_of_peak_hvp               the rate in % of the peak a cached HVP 6x faster than
#                                      PyTorch's kept-graph HVP needs
#   need_pct_of_peak_hvp_first         the same for a first HVP (8 forward passes) 4x faster than
#                                      PyTorch's full HVP; above 100: out of reach on this machine
# Needs Debian's python3-torch and python3-onnx.
# Usage: bench/compare_lm.sh [threads=2] [sequences=128] [reps=5]
# Environment: BLOCK (directions of the block product, default 16), CURV (the curv binary, default
# build/tools/curv), TEXT_MODELS (the folder holding
# char_gpt.onnx, license_bert.onnx and their *_val.npz, default data).
set -euo pipefail
T=${1:-2}; N=${2:-128}; R=${3:-5}
CURV=${CURV:-build/tools/curv}; D=${TEXT_MODELS:-data}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PEAK=${PEAK:-$(dirname "$CURV")/../bench/bench_peak}
echo '{}' > "$tmp/peak.json"
if [[ -x $PEAK ]]; then
  for t in $(seq 1 "$T"); do "$PEAK" "$t" 1024 5; done > "$tmp/peaks.jsonl" && /usr/bin/python3 -c '
import json, sys
ps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(json.dumps({"peak_gflops": max(max(p["gemm_gflops"], p["onednn_conv_gflops"]) for p in ps), "peaks": ps}))
' "$tmp/peaks.jsonl" > "$tmp/peak.json"
fi

run() {  # name kind onnx [source npz] [curv options...]
  local name=$1 kind=$2 model=$3 src=$4; shift 4
  local srcopt=()
  [ -n "$src" ] && srcopt=(--source-data "$src")
  /usr/bin/python3 bench/pytorch_lm_hvp.py "$model" --kind "$kind" "${srcopt[@]}" --write-data "$tmp/$name.npz" \
    --sequences "$N" --threads "$T" --reps "$R" 2>"$tmp/$name.torch.err" > "$tmp/$name.torch.json" \
    || { cat "$tmp/$name.torch.err" >&2; return 1; }
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch_lm_hvp.py "$model" --kind "$kind" "${srcopt[@]}" \
    --write-data "$tmp/$name.passive.npz" --sequences "$N" --threads "$T" --reps "$R" 2>>"$tmp/$name.torch.err" \
    > "$tmp/$name.torch_passive.json" || { cat "$tmp/$name.torch.err" >&2; return 1; }
  "$CURV" eval "$model" --data "$tmp/$name.npz" --threads "$T" --json "$@" > "$tmp/$name.eval.json"
  : > "$tmp/$name.curv.jsonl"
  for _ in $(seq "$R"); do
    "$CURV" bench "$model" --data "$tmp/$name.npz" --threads "$T" --block "${BLOCK:-16}" --repeat 2 --json "$@" \
      2>/dev/null >> "$tmp/$name.curv.jsonl"
    echo >> "$tmp/$name.curv.jsonl"
  done
  /usr/bin/python3 - "$name" "$tmp/$name.torch.json" "$tmp/$name.torch_passive.json" "$tmp/$name.eval.json" \
    "$tmp/$name.curv.jsonl" "$tmp/peak.json" <<'PY'
import json, statistics, sys
name = sys.argv[1]
last = lambda p: json.loads(open(p).read().strip().splitlines()[-1])
t_active, t_passive = last(sys.argv[2]), last(sys.argv[3])
t = dict(t_active)  # PyTorch's better median of the two OpenMP wait policies, per quantity
for k in ("loss_s", "grad_s", "hvp_s", "hvp_only_s"):
    t[k] = min(t_active[k], t_passive[k])
e = json.load(open(sys.argv[4]))
runs = [json.loads(l) for l in open(sys.argv[5]) if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
c = {k: med(k) for k in ("loss_s", "grad_s", "hvp_first_s", "hvp_s", "ggn_s", "block_over_singles")}
c["rss_grad"] = statistics.median(r["peak_rss"]["grad"] for r in runs)
c["rss_hvp"] = statistics.median(r["peak_rss"]["hvp"] for r in runs)
c.update(params=runs[0]["params"], micro_batch=runs[0]["micro_batch"], runs=len(runs), loss=e["loss"])
peak = json.load(open(sys.argv[6]))
pk = peak.get("peak_gflops", 0)
fl = t.get("fwd_flops", 0) / 1e9  # GFLOP of one forward pass
if pk and fl:
    peak["curv_hvp_pct_of_peak"] = round(100 * 6 * fl / c["hvp_s"] / pk, 1)
    peak["need_pct_of_peak_hvp"] = round(100 * 6 * fl / (t["hvp_only_s"] / 6) / pk, 1)
    peak["need_pct_of_peak_hvp_first"] = round(100 * 8 * fl / (t["hvp_s"] / 4) / pk, 1)
print(json.dumps({"model": name, "sequences": t["sequences"], "tokens_per_sequence": t["tokens_per_sequence"],
  "threads": t["threads"], "params_torch": t["params"], "params_curv": c["params"],
  "loss_torch": t["loss"], "loss_curv": e["loss"], "loss_rel_diff": abs(e["loss"] - t["loss"]) / abs(t["loss"]),
  "torch_hvp_over_curv_hvp_first": t["hvp_s"] / c["hvp_first_s"],
  "torch_hvp_only_over_curv_hvp": t["hvp_only_s"] / c["hvp_s"],
  "torch_hvp_over_curv_hvp": t["hvp_s"] / c["hvp_s"],
  "curv_grad_over_torch_grad": c["grad_s"] / t["grad_s"],
  "curv_loss_over_torch_loss": c["loss_s"] / t["loss_s"],
  "curv_hvp_over_curv_grad": c["hvp_s"] / c["grad_s"],
  "curv_rss_grad_over_torch": c["rss_grad"] / t_active["grad_rss"],
  "curv_rss_hvp_over_curv_rss_grad": c["rss_hvp"] / c["rss_grad"],
  "singles_over_block": 1 / c["block_over_singles"],
  **{k: v for k, v in peak.items() if k != "peaks"},
  "pytorch_omp_default": t_active, "pytorch_omp_passive": t_passive, "curv": c}))
PY
}

run bert_cls bert_cls data/fixtures/lm/bert_cls.onnx ""
run gpt_lm gpt_lm data/fixtures/lm/gpt_lm.onnx "" --freeze causal_mask
if [ -f "$D/char_gpt.onnx" ] && [ -f "$D/char_gpt_val.npz" ]; then
  run char_gpt char_gpt "$D/char_gpt.onnx" "$D/char_gpt_val.npz"
fi
if [ -f "$D/license_bert.onnx" ] && [ -f "$D/license_bert_val.npz" ]; then
  run license_bert license_bert "$D/license_bert.onnx" "$D/license_bert_val.npz"
fi
