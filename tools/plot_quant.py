#!/usr/bin/env python3
"""Plots of curv's quantization files (docs/quant-plan.md) to PNG.

    /usr/bin/python3 tools/plot_quant.py F.h5 OUT.png [--plan plan.json] [--title TEXT]
        Pareto frontier of a `curv quant plan --h5` file: predicted loss increase Omega against
        model size, the plan of --plan marked.
    /usr/bin/python3 tools/plot_quant.py --results results.json OUT.png [--title TEXT] [--acc-min P]
        Test accuracy against model size of every plan of scripts/quant_experiment.sh, by method,
        post-training (left) and after quantization-aware fine-tuning (right); random orders as
        mean with min..max bars.
    /usr/bin/python3 tools/plot_quant.py --trace F.h5 OUT.png [--title TEXT]
        HAWQ-V2's figure: each layer's trace estimate (running mean of its probe samples, with
        +-1 standard error) against the number of probes, normalized by the final estimate, from
        the /quant/trace group of a `curv quant plan --h5` file.
Needs h5py and matplotlib (Debian's python3-h5py and python3-matplotlib).
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
    "uniform": ("s", "tab:green", "uniform"),
    "fl8": ("P", "tab:olive", "first/last 8 + uniform"),
    "equal": ("D", "tab:gray", "equal sensitivity"),
    "v1": ("^", "tab:cyan", "HAWQ-V1 (λmax/n)"),
    "v2": ("o", "tab:blue", "HAWQ-V2 (Tr/n)"),
    "v2s2": ("o", "lightsteelblue", "HAWQ-V2, 2nd estimator seed"),
    "qbert": ("h", "tab:purple", "Q-BERT (|mean|+std λmax)"),
    "qbertg4": ("H", "plum", "Q-BERT, 4 groups"),
    "measured": ("*", "gold", "measured selection"),
    "v2inter": ("p", "tab:brown", "HAWQ-V2 + inter-layer"),
    "mblocks": ("d", "tab:pink", "measured ½ΔWᵢᵀHᵢᵢΔWᵢ"),
    "mblocksinter": ("8", "darkred", "measured blocks + inter-layer"),
    "reverse": ("v", "tab:red", "reverse order"),
    "random": ("x", "tab:orange", "random order (mean, min..max)"),
}


def fail(msg):
    sys.exit(f"plot_quant: {msg}")


def open_h5(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        fail(f"{path}: cannot open ({e})")


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def plot_frontier(a):
    with open_h5(a.h5) as f:
        if f.attrs.get("format") != "curv" or "quant/frontier/omega" not in f:
            fail(f"{a.h5}: not a curv quant plan --h5 file (no /quant/frontier)")
        q = f["quant"]
        kind = text(q.attrs.get("sensitivity", ""))
        size, omega = q["frontier/size_bytes"][...], q["frontier/omega"][...]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    positive = bool(np.all(omega > 0))
    ax.step(size / 1024, omega, where="post", color="0.3", lw=1, label=f"Pareto frontier ({len(size)} points)")
    ax.set_yscale("log" if positive else "symlog")
    if a.plan:
        try:
            p = json.load(open(a.plan))
            ps, po = p["totals"]["size_bytes"], p["totals"]["predicted_omega"]
        except (OSError, ValueError, KeyError) as e:
            fail(f"{a.plan}: not a readable plan ({e})")
        ax.plot([ps / 1024], [po], "*", ms=16, color="gold", mec="k", zorder=5,
                label=f"plan ({p['totals']['avg_bits']:.2f} bits)")
    ax.set_xlabel("model size (KB; scales and float32 parts included)")
    ax.set_ylabel(f"predicted loss increase Ω ({kind} sensitivity, loss units)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_results(a):
    try:
        res = json.load(open(a.results))
        rows = res["plans"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"{a.results}: not a results.json of scripts/quant_experiment.sh ({e})")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, key, title in ((axes[0], "ptq", "post-training"), (axes[1], "ft", "fine-tuned (QAT)")):
        seen = set()
        randoms = {}
        for r in rows:
            m = "random" if r["method"].startswith("random") else r["method"]
            if m not in STYLE or key not in r:
                continue
            acc = 100 * r[key]["accuracy"]
            if m == "random":
                randoms.setdefault(r["budget"], []).append((r["size_bytes"], acc))
                continue
            mk, col, name = STYLE[m]
            shown = acc if a.acc_min is None else max(acc, a.acc_min)
            ax.plot([r["size_bytes"] / 1024], [shown], mk, color=col, ms=9 if m == "measured" else 7, mec="k",
                    mew=0.4, label=None if m in seen else name, clip_on=False, alpha=0.9)
            seen.add(m)
        mk, col, name = STYLE["random"]
        for b, pts in sorted(randoms.items()):
            s = np.mean([p[0] for p in pts]) / 1024
            accs = np.array([p[1] for p in pts])
            ax.errorbar([s], [accs.mean()], yerr=[[accs.mean() - accs.min()], [accs.max() - accs.mean()]], fmt=mk,
                        color=col, ms=8, capsize=3, label=None if "random" in seen else name)
            seen.add("random")
        ax.axhline(100 * res["float"]["accuracy"], color="k", lw=0.8, ls="--", label="float32 model")
        if a.acc_min is not None:
            ax.set_ylim(bottom=a.acc_min)
        ax.set_xlabel("model size (KB; scales and float32 parts included)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    return fig


def plot_trace(a):
    with open_h5(a.trace) as f:
        if "quant/trace/samples" not in f:
            fail(f"{a.trace}: no /quant/trace group (write it with curv quant plan --sensitivity trace --h5)")
        q = f["quant"]
        names = [text(n) for n in q["layers/names"][...]]
        samples, offsets, known = q["trace/samples"][...], q["trace/offsets"][...], q["trace/known"][...]
        numel = q["layers/numel"][...]
        products = int(q["trace"].attrs.get("products", 0))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    cmap = plt.get_cmap("viridis")
    L = len(names)
    for i in range(L):
        x = samples[offsets[i]:offsets[i + 1]]
        n = np.arange(1, len(x) + 1)
        mean = np.cumsum(x) / n + known[i]
        var = np.array([x[:k].var(ddof=1) if k > 1 else np.nan for k in n])
        se = np.sqrt(var / n)
        final = mean[-1] if mean[-1] != 0 else 1.0
        col = cmap(i / max(L - 1, 1))
        ax.plot(n, mean / final, color=col, lw=1, label=f"{names[i]} ({numel[i]})" if L <= 12 else None)
        ax.fill_between(n, (mean - se) / final, (mean + se) / final, color=col, alpha=0.12, lw=0)
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_ylim(0, 2)
    ax.set_xlabel("Hutchinson probes")
    ax.set_ylabel("trace estimate / final estimate (±1 s.e.)")
    ax.set_title(f"per-layer trace convergence, {L} layers, {products} curvature products", fontsize=9)
    ax.grid(alpha=0.3)
    if L <= 12:
        ax.legend(fontsize=6, ncol=2)
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("h5", nargs="?", help="sensitivity and frontier file (frontier plot)")
    ap.add_argument("png", nargs="?")
    ap.add_argument("--results", help="results.json of scripts/quant_experiment.sh")
    ap.add_argument("--trace", help="sensitivity file with /quant/trace (trace convergence plot)")
    ap.add_argument("--plan", help="plan.json to mark on the frontier")
    ap.add_argument("--title", default="")
    ap.add_argument("--acc-min", type=float, help="lower limit of the accuracy axis (%%); lower points sit on it")
    a = ap.parse_args()
    if a.results or a.trace:  # the one positional is the output
        a.png = a.png or a.h5
    if not a.png:
        ap.error("an output .png is required")
    fig = plot_results(a) if a.results else plot_trace(a) if a.trace else plot_frontier(a)
    if a.title:
        fig.suptitle(a.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.png, dpi=90)
    print(f"plot_quant: wrote {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
