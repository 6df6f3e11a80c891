#!/usr/bin/python3
"""Figures across the runs of a curv study (docs/study.md, "Figures").

    tools/plot_study.py STUDY.json F.h5 [--out-dir DIR] [--figure JSON]...

Each figure of the study's "figures" list (or each --figure, given as JSON) becomes DIR/<file>.
A figure plots a quantity (y) of the runs matching a name pattern (runs) against a setting (x),
one line per value of another setting (group), with error bars from standard errors or from the
spread over the runs that share x and group (seeds, batches). Needs h5py, numpy, matplotlib.
"""
import argparse
import fnmatch
import json
import os
import re
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SCALAR = ("lambda_max", "lambda_min", "abs_lambda_min", "trace", "loss", "accuracy", "grad_norm", "barrier")
CURVES = ("top_eigenvalues", "density", "top_overlap")
LABELS = {"lambda_max": "λ_max (top Hessian eigenvalue, loss / weight²)", "lambda_min": "λ_min (bottom eigenvalue, loss / weight²)",
          "abs_lambda_min": "|λ_min|", "trace": "Tr(H) (Hutchinson, loss / weight², ± stderr)", "loss": "loss (mean, nats)",
          "accuracy": "accuracy (fraction)", "grad_norm": "‖∇L‖", "barrier": "loss barrier (nats)",
          "samples": "batch size B (samples)", "epoch": "epoch", "seed": "seed"}


def fail(msg):
    sys.exit(f"plot_study.py: {msg}")


def value(run, y):
    """The scalar y of a run group (NaN if the run did not compute it), and its standard error."""
    if y in ("lambda_max", "lambda_min", "abs_lambda_min"):
        key = "values" if y == "lambda_max" else "bottom_values"
        if "eigen" not in run or key not in run["eigen"] or len(run["eigen"][key]) == 0:
            return np.nan, np.nan
        v = float(run["eigen"][key][0])
        return (abs(v) if y == "abs_lambda_min" else v), np.nan
    if y == "trace":
        if "trace" not in run:
            return np.nan, np.nan
        return float(run["trace/estimate"][()]), float(run["trace/stderr"][()])
    if y == "grad_norm":
        return (float(run["gradient/norm"][()]), np.nan) if "gradient" in run else (np.nan, np.nan)
    if y in run.attrs:
        return float(run.attrs[y]), np.nan
    return np.nan, np.nan


def epoch_of(settings, final_epoch):
    m = re.search(r"epoch(\d+)", os.path.basename(settings.get("model", "")))
    if m:
        return int(m.group(1))
    return final_epoch if final_epoch is not None else 0


def from_regex(settings, key, regex, fig):
    m = re.search(regex, os.path.basename(str(settings.get(key, ""))))
    if not m:
        fail(f"figure {fig.get('file')}: '{regex}' does not match {key} '{settings.get(key)}'")
    try:
        return float(m.group(1))
    except ValueError:
        return m.group(1)


def xvalue(settings, x, fig):
    if x == "epoch":
        return epoch_of(settings, fig.get("final_epoch"))
    if "x_regex" in fig:
        return from_regex(settings, x, fig["x_regex"], fig)
    v = settings.get(x)
    if v is None:
        fail(f"figure {fig.get('file')}: runs have no setting '{x}'")
    return v


def runs_of(f, fig):
    pattern = fig.get("runs", "*")
    patterns = [pattern] if isinstance(pattern, str) else pattern
    out = [(name, f[name], json.loads(f[name].attrs["settings"])) for p in patterns for name in f
           if isinstance(f[name], h5py.Group) and "settings" in f[name].attrs and fnmatch.fnmatch(name, p)]
    if not out:
        fail(f"figure {fig.get('file')}: no run in the file matches '{pattern}'")
    return out


def group_of(settings, fig):
    if "group" not in fig:
        return ""
    if "group_regex" in fig:
        return from_regex(settings, fig["group"], fig["group_regex"], fig)
    return settings.get(fig["group"])


def group_label(fig, g):
    if "group" not in fig:
        return None
    return fig.get("group_label", fig["group"] + " = {}").format(g)


def scalar_figure(ax, f, fig):
    y, x = fig["y"], fig.get("x")
    if not x:
        fail(f"figure {fig.get('file')}: y = {y} needs an x setting")
    series = {}
    for name, run, s in runs_of(f, fig):
        if fig.get("hline") == name:
            continue
        g = group_of(s, fig)
        v, se = value(run, y)
        series.setdefault(g, {}).setdefault(xvalue(s, x, fig), []).append((v, se))
    for g, pts in sorted(series.items(), key=lambda kv: sort_key(kv[0])):
        xs = sorted(pts)
        vals = [np.array([p[0] for p in pts[k]]) for k in xs]
        n = max(len(v) for v in vals)
        if fig.get("error") == "spread" and n > 1:
            mean = [np.nanmean(v) for v in vals]
            err = [np.nanstd(v, ddof=1) if len(v) > 1 else 0 for v in vals]
            label = (group_label(fig, g) or y) + f" (mean ± std of {n})"
            ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3, label=label)
            for k, v in zip(xs, vals):
                ax.plot([k] * len(v), v, ".", color="gray", alpha=0.5, ms=4)
        else:
            mean = [np.nanmean(v) for v in vals]
            err = [np.nanmean([p[1] for p in pts[k]]) for k in xs] if fig.get("error") == "stderr" else None
            ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3, label=group_label(fig, g) or y)
    if fig.get("hline"):
        if fig["hline"] not in f:
            fail(f"figure {fig.get('file')}: no run '{fig['hline']}' for hline")
        v, _ = value(f[fig["hline"]], y)
        ax.axhline(v, color="k", ls="--", lw=1, label=f"{fig['hline']} ({v:.4g})")
    if "reference" in fig:
        lo, hi = ax.get_xlim()
        xs = np.geomspace(max(lo, 1e-12), hi, 100) if fig.get("xscale") == "log" else np.linspace(lo, hi, 100)
        ys = eval(fig["reference"]["expr"], {"__builtins__": {}, "np": np}, {"x": xs})  # a trusted study file
        ax.plot(xs, ys, "k--", lw=1, label=fig["reference"].get("label", fig["reference"]["expr"]))
    lines = fig.get("lines", [])
    for i, ln in enumerate(lines):
        ax.axhline(ln["y"], color=f"C{i + 3}", ls=":", lw=1.2, label=ln.get("label"))
    ax.set_xlabel(fig.get("xlabel", LABELS.get(x, x)))
    ax.set_ylabel(fig.get("ylabel", LABELS.get(y, y)))


def sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def curve_figure(ax, f, fig):
    y = fig["y"]
    chosen = runs_of(f, fig)
    if "group" in fig:
        chosen.sort(key=lambda r: sort_key(group_of(r[2], fig)))
    for i, (name, run, s) in enumerate(chosen):
        label = name if "group" not in fig else group_label(fig, group_of(s, fig))
        if "label" in fig:
            label = fig["label"].format(name=name, **s)
        if y == "top_eigenvalues":
            v = run["eigen/values"][:] if "eigen" in run else []
            ax.plot(np.arange(1, len(v) + 1), v, marker=".", label=label)
            ax.set_xlabel(fig.get("xlabel", "index i (descending)"))
            ax.set_ylabel(fig.get("ylabel", "eigenvalue λ_i (loss / weight²)"))
        elif y == "density":
            if "density" not in run:
                continue
            d = run["density"]
            g, v = d["grid"][:], d["values"][:]
            ax.semilogy(g, np.maximum(v, 1e-12), label=label)
            ax.set_ylim(1e-7, None)
            ax.set_xlabel(fig.get("xlabel", "eigenvalue (loss / weight²)"))
            ax.set_ylabel(fig.get("ylabel", "spectral density (SLQ, Gaussian kernel; log)"))
        else:  # top_overlap
            if "gradient" not in run or "top_overlap" not in run["gradient"]:
                continue
            v = run["gradient/top_overlap"][:]
            ax.plot(np.arange(1, len(v) + 1), v, marker=".", label=label)
            ax.set_xlabel(fig.get("xlabel", "k (top-k Hessian eigenvectors)"))
            ax.set_ylabel(fig.get("ylabel", "‖V_kᵀ g‖² / ‖g‖² (fraction of the gradient)"))
    for ln in fig.get("vlines", []):
        ax.axvline(ln["x"], color="k", ls=":", lw=1, label=ln.get("label"))


def draw(f, fig, out_dir):
    if "file" not in fig or "y" not in fig:
        fail(f"figure {fig}: needs 'file' and 'y'")
    if fig["y"] not in SCALAR + CURVES:
        fail(f"figure {fig['file']}: unknown y '{fig['y']}' (expected one of {', '.join(SCALAR + CURVES)})")
    fig_, ax = plt.subplots(figsize=tuple(fig.get("size", (6, 4.2))))
    (curve_figure if fig["y"] in CURVES else scalar_figure)(ax, f, fig)
    if fig.get("xscale"):
        ax.set_xscale(fig["xscale"])
    if fig.get("yscale"):
        ax.set_yscale(fig["yscale"])
    ax.set_title(fig.get("title", ""), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig_.tight_layout()
    path = os.path.join(out_dir, fig["file"])
    fig_.savefig(path, dpi=110)
    plt.close(fig_)
    print(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study")
    ap.add_argument("h5")
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--figure", action="append", default=[], help="a figure as JSON (instead of the study's)")
    a = ap.parse_args()
    try:
        figures = [json.loads(x) for x in a.figure] or json.load(open(a.study)).get("figures", [])
    except (OSError, ValueError) as e:
        fail(f"{a.study}: {e}")
    if not figures:
        fail(f"{a.study}: no figures (add a 'figures' list or give --figure)")
    try:
        f = h5py.File(a.h5, "r")
    except OSError as e:
        fail(f"{a.h5}: cannot open ({e})")
    with f:
        for fig in figures:
            draw(f, fig, a.out_dir)


if __name__ == "__main__":
    main()
