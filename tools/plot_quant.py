#!/usr/bin/env python3
"""Plot the Pareto frontier of a `curv quant plan --h5` file (docs/quant-plan.md) to PNG.

    /usr/bin/python3 tools/plot_quant.py F.h5 OUT.png [--plan plan.json] [--evals results.json]
                                         [--title TEXT] [--acc-min PERCENT]

Left panel: predicted loss increase Omega vs model size (KB) along the exact frontier, the plan
given with --plan marked with a star (its size and predicted_omega), and every evaluated plan of
--evals drawn at (size, Omega under the measured sensitivities) and annotated with its measured
test accuracy. Right panel (with --evals): test accuracy vs size of the evaluated plans, by method.

--evals is a JSON list of objects (scripts/quant_experiment.sh writes one, results.json) with keys
`size_bytes`, `accuracy` and optionally `measured_omega` (Omega with the measured sensitivities,
from plan.json), `label`, `sensitivity` and `order`. Rows with a `sensitivity` other than the h5
file's are left out of the Omega panel (their Omega is in other units). Needs h5py and matplotlib
(Debian's python3-h5py and python3-matplotlib).
"""
import argparse
import json
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {  # method -> (marker, colour, legend)
    "hessian": ("o", "tab:blue", "Hessian plan"),
    "uniform": ("s", "tab:green", "uniform bits"),
    "random": ("x", "tab:orange", "random order"),
    "reverse": ("v", "tab:red", "reverse order"),
}


def method(row):
    if str(row.get("label", "")).startswith("uniform"):
        return "uniform"
    return row.get("order", "hessian")


def read_frontier(path):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        sys.exit(f"plot_quant: {path}: cannot open ({e})")
    with f:
        if f.attrs.get("format") != "curv" or "quant/frontier/omega" not in f:
            sys.exit(f"plot_quant: {path}: not a curv quant plan --h5 file (no /quant/frontier)")
        q = f["quant"]
        kind = q.attrs.get("sensitivity", "")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        return kind, q["frontier/size_bytes"][...], q["frontier/omega"][...]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("h5")
    ap.add_argument("png")
    ap.add_argument("--plan", help="plan.json to mark on the frontier")
    ap.add_argument("--evals", help="JSON list of evaluated plans (size_bytes, accuracy, measured_omega, ...)")
    ap.add_argument("--title", default="")
    ap.add_argument("--acc-min", type=float, help="lower limit of the accuracy axis (%%); lower points sit on it")
    a = ap.parse_args()

    kind, size, omega = read_frontier(a.h5)
    rows = []
    if a.evals:
        try:
            rows = json.load(open(a.evals))
        except (OSError, ValueError) as e:
            sys.exit(f"plot_quant: {a.evals}: cannot read ({e})")
        if not isinstance(rows, list) or any("size_bytes" not in r or "accuracy" not in r for r in rows):
            sys.exit(f"plot_quant: {a.evals}: expected a list of objects with size_bytes and accuracy")

    fig, axes = plt.subplots(1, 2 if rows else 1, figsize=(11 if rows else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    positive = bool(np.all(omega > 0))
    ax.step(size / 1024, omega, where="post", color="0.3", lw=1, label=f"Pareto frontier ({len(size)} points)")
    ax.set_yscale("log" if positive else "symlog")
    if a.plan:
        try:
            p = json.load(open(a.plan))
            ps, po = p["totals"]["size_bytes"], p["totals"]["predicted_omega"]
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"plot_quant: {a.plan}: not a readable plan ({e})")
        ax.plot([ps / 1024], [po], "*", ms=16, color="gold", mec="k", zorder=5,
                label=f"chosen plan ({p['totals']['avg_bits']:.2f} bits)")
    seen = set()
    for r in rows:
        om = r.get("measured_omega")
        if om is None or r.get("sensitivity", kind) != kind or (positive and om <= 0):
            continue
        m = method(r)
        mk, col, name = STYLE.get(m, ("d", "k", m))
        ax.plot([r["size_bytes"] / 1024], [om], mk, color=col, ms=7, label=None if m in seen else name)
        seen.add(m)
        ax.annotate(f"{100 * r['accuracy']:.1f}", (r["size_bytes"] / 1024, om), textcoords="offset points",
                    xytext=(4, 3), fontsize=7, color=col)
    ax.set_xlabel("model size (KB, float32 parts included)")
    ax.set_ylabel(f"predicted loss increase Ω ({kind} sensitivity)")
    ax.set_title("frontier; labels: test accuracy (%)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    if rows:
        ax = axes[0][1]
        seen = set()
        for r in rows:
            m = method(r)
            if m == "hessian" and r.get("sensitivity") not in (None, kind):
                m = "hessian-" + r["sensitivity"]
            mk, col, name = STYLE.get(m, ("D", "tab:purple", m.replace("hessian-", "Hessian plan, ")))
            acc = 100 * r["accuracy"]
            shown = acc if a.acc_min is None else max(acc, a.acc_min)
            ax.plot([r["size_bytes"] / 1024], [shown], mk, color=col, ms=7, label=None if m in seen else name,
                    clip_on=False)
            if shown != acc:
                ax.annotate(f"{acc:.1f}", (r["size_bytes"] / 1024, shown), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=col)
            seen.add(m)
        if a.acc_min is not None:
            ax.set_ylim(bottom=a.acc_min)
        ax.set_xlabel("model size (KB)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("measured accuracy of the evaluated plans", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if a.title:
        fig.suptitle(a.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.png, dpi=90)
    print(f"plot_quant: wrote {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
