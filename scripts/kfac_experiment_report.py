#!/usr/bin/env python3
"""Tables and convergence plot of scripts/kfac_experiment.sh (and kfac_experiment_resnet20.sh):

    python3 scripts/kfac_experiment_report.py OUT [MODEL_NAME] [--no-compare] [--png FILE]

--no-compare skips the per-layer comparison table (a kfac.json without --compare ggn); --png names
the convergence plot (default OUT/solve_convergence.png)."""
import argparse, json
import h5py, numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("model", nargs="?", default="fmnist_cnn")
ap.add_argument("--no-compare", action="store_true")
ap.add_argument("--png")
a = ap.parse_args()
out, model = a.out, a.model
if not a.no_compare:
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
    if j.get("restricted_blocks"):
        label += ", restricted blocks"
    print(f"| {label} | {j['iterations']} | {j['products']} | {j['residual']:.3g} | {j['status']} |")
    with h5py.File(f"{out}/solve_{m}.h5", "r") as f:
        h = f["solve/residual_history"][...]
    if m == "kfac":
        ax.axhline(j["residual"], color="C3", ls=":", label=f"{label} ({j['residual']:.2f})")
        continue
    if h.ndim == 2:  # per block: RMS of the block residuals; one product per block still running
        layers = h.shape[1]
        r = np.sqrt((h ** 2).sum(axis=1) / layers)
        active = (h[:-1] > 1e-6).sum(axis=1)
        ax.semilogy(np.concatenate([[0], np.cumsum(active)]), r, label=label + " (block residuals, RMS)")
    else:
        ax.semilogy(np.arange(len(h)), h, label=label)
ax.set_xlabel("curvature products (directions)")
ax.set_ylabel("relative residual ‖r‖ / ‖b‖")
ax.set_title(f"damped GGN Newton system, {model}", fontsize=9)
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(a.png or f"{out}/solve_convergence.png", dpi=110)
