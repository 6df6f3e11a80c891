#!/usr/bin/env bash
# Issue 14 experiment (docs/experiments.md): how good is K-FAC per layer on the shipped
# Fashion-MNIST CNN (top eigenvalue, trace, relative Frobenius error against the exact GGN block,
# the spectra overlaid), and CG vs block-CG vs K-FAC-preconditioned CG on one damped Newton system.
#
#   scripts/kfac_experiment.sh            (needs build/tools/curv; writes out/kfac_exp/)
#
# Environment: SAMPLES (training images, default 512), DAMPING (lambda of the Newton system,
# default 1e-3), PROBES (Rademacher probes of the comparison, default 30), MAXIT (CG cap, 300).
set -euo pipefail
cd "$(dirname "$0")/.."
CURV="nice -n 10 build/tools/curv"
PY=/usr/bin/python3
OUT=out/kfac_exp
MODEL=data/fmnist_cnn.onnx
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
$PY - "$OUT" <<'PYEOF'
import json, sys
import h5py, numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = sys.argv[1]
k = json.load(open(f"{out}/kfac.json"))
print("| layer | GGN λ_max | K-FAC λ_max | GGN trace | K-FAC trace | ‖K − G‖_F / ‖G‖_F |")
print("|---|---|---|---|---|---|")
for name, b in k["blocks"].items():
    c = b["kfac"]
    print(f"| {name} | {c['ggn_top']:.4g} | {c['kfac_top']:.4g} | {c['ggn_trace']:.4g} ± {c['ggn_trace_stderr']:.2g} "
          f"| {c['kfac_trace']:.4g} | {c['frobenius_rel']:.3f} ± {c['frobenius_rel_stderr']:.3f} |")
fig, ax = plt.subplots(figsize=(6, 4))
print()
print("| method | iterations | products | residual | status |")
print("|---|---|---|---|---|")
for m, label in [("cg", "CG"), ("block-cg", "block-CG (one CG per layer)"), ("pcg", "K-FAC-preconditioned CG"),
                 ("kfac", "K-FAC inverse alone")]:
    j = json.load(open(f"{out}/solve_{m}.json"))
    print(f"| {label} | {j['iterations']} | {j['products']} | {j['residual']:.3g} | {j['status']} |")
    with h5py.File(f"{out}/solve_{m}.h5", "r") as f:
        h = f["solve/residual_history"][...]
    if m == "kfac":
        ax.axhline(j["residual"], color="C3", ls=":", label=f"{label} ({j['residual']:.2f})")
        continue
    if h.ndim == 2:  # per block: the norm over blocks of the block residuals, L products per iteration
        layers = h.shape[1]
        r = np.sqrt((h ** 2).sum(axis=1) / layers)
        ax.semilogy(np.arange(len(r)) * layers, r, label=label + " (block residuals, RMS)")
    else:
        ax.semilogy(np.arange(len(h)), h, label=label)
ax.set_xlabel("curvature products (directions)")
ax.set_ylabel("relative residual ‖r‖ / ‖b‖")
ax.set_title("damped GGN Newton system, Fashion-MNIST CNN", fontsize=9)
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(f"{out}/solve_convergence.png", dpi=110)
PYEOF
