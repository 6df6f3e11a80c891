#!/usr/bin/python3
"""Plot the training history stored by `curv train` (the checkpoint's /history group).

    tools/plot_training.py RUN.h5 [RUN2.h5 ...] --out training.png [--labels sgd,sam]
                           [--panels loss,accuracy,lambda_max,trace,overlap] [--x steps|epochs]

Panels:
  loss, accuracy   train (solid) and test (dashed) per epoch
  lambda_max       top Hessian eigenvalue on the fixed curvature subset, with the stability
                   threshold of each run: 2/lr for plain (full-batch) gradient descent, (2 + 2 beta)/lr
                   with heavy-ball momentum beta (read from the checkpoint's /train config)
  trace            Hutchinson trace with its standard error band
  overlap          fraction of the gradient in the top-k Hessian eigenspace
  clip             Sophia: fraction of coordinates whose update was clipped (mean per epoch; per
                   step from /history/optimizer with --x steps)
  diagonal         AdaHessian / Sophia: mean of the Hessian-diagonal estimate at each epoch's last
                   refresh, and the refreshes per epoch (/history/optimizer_epochs); with --x steps
                   one point per refresh step (/history/optimizer hessian_refresh, hessian_diag_mean)
The default panels are the first five, plus clip and diagonal when a run has those statistics.
Second-order optimizers (kfac, hf, bhf: /history/optimizer, per step; not in the default set;
adahessian and sophia log hessian_refresh, hessian_diag_mean and (sophia) clip_fraction there too):
  damping          Tikhonov damping lambda per step (log scale), K-FAC inverse refreshes as ticks
  rho              reduction ratio (actual / predicted loss change) with the 1/4 and 3/4 lines
  cg               CG iterations per step (left) and the final relative residual (right, log)
Needs h5py and matplotlib (Debian: python3-h5py python3-matplotlib).
"""
import argparse
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PANELS = ("loss", "accuracy", "lambda_max", "trace", "overlap", "clip", "diagonal")
DEFAULT_PANELS = PANELS[:5]
OPTIMIZER_PANELS = ("damping", "rho", "cg")


def read_optimizer(h):
    """/history/optimizer (second-order optimizers), or {} when the run has none."""
    if "optimizer" not in h:
        return {}
    return {k: h["optimizer"][k][...] for k in h["optimizer"]}


def plot_optimizer_panel(ax, panel, opt, label, c):
    """One panel of the second-order optimizer logs (see the module docstring)."""
    if not opt:
        return
    x = opt["step"]
    if panel == "damping" and "damping" in opt:
        ax.semilogy(x, opt["damping"], "-", color=c, label=label)
        if "inverse_refresh" in opt:
            r = x[opt["inverse_refresh"] == 1]
            ax.plot(r, np.full(len(r), np.nanmin(opt["damping"])), "|", color=c, ms=8,
                    label=f"{label} K-FAC inverse refresh")
        ax.set_ylabel("λ (damping)")
    elif panel == "rho" and "rho" in opt:
        ax.plot(x, np.clip(opt["rho"], -1, 2), ".", color=c, ms=3, label=label)
        for y in (0.25, 0.75):
            ax.axhline(y, color="gray", lw=0.6, ls=":")
        ax.set_ylabel("ρ = actual / predicted (clipped to [-1, 2])")
    elif panel == "cg" and "cg_iterations" in opt:
        ax.plot(x, opt["cg_iterations"], "-", color=c, label=f"{label} iterations")
        ax.set_ylabel("CG iterations per step")
        ax2 = ax.twinx() if not hasattr(ax, "_cg_twin") else ax._cg_twin
        ax._cg_twin = ax2
        ax2.semilogy(x, opt["cg_residual"], ":", color=c, label=f"{label} residual")
        ax2.set_ylabel("final relative residual (dotted)")
    ax.set_xlabel("optimizer step")


def read(path):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        sys.exit(f"plot_training.py: {path}: cannot open ({e})")
    with f:
        if "history" not in f:
            sys.exit(f"plot_training.py: {path}: no /history group (not written by curv train)")
        h = f["history"]
        run = {k: h[k][...] for k in h if isinstance(h[k], h5py.Dataset)}
        run["curvature"] = {k: h["curvature"][k][...] for k in h["curvature"]}
        run["optimizer"] = read_optimizer(h)
        run["optimizer_epochs"] = ({k: h["optimizer_epochs"][k][...] for k in h["optimizer_epochs"]}
                                   if "optimizer_epochs" in h else {})
        run["steps_per_epoch"] = None
        run["momentum"] = 0.0
        if "train" in f and "config" in f["train"].attrs:
            import json
            cfg = json.loads(f["train"].attrs["config"])
            if cfg.get("optimizer", "sgd") == "sgd":
                run["momentum"] = float(cfg.get("momentum", 0.0))
        if len(run["epoch"]) and run["epoch"][0] > 0:
            run["steps_per_epoch"] = run["step"][0] / run["epoch"][0]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="checkpoints written by curv train")
    ap.add_argument("--out", required=True, help="PNG file")
    ap.add_argument("--labels", help="comma-separated run labels (default: file names)")
    ap.add_argument("--panels", help="comma-separated subset of " + ",".join(PANELS) + " (default: see above)")
    ap.add_argument("--x", choices=("steps", "epochs"), default="epochs", help="x axis of the curvature panels")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    runs = [read(p) for p in a.runs]
    if a.panels:
        panels = [p for p in a.panels.split(",") if p]
    else:
        panels = list(DEFAULT_PANELS)
        if any("clip_fraction" in r["optimizer_epochs"] or "clip_fraction" in r["optimizer"] for r in runs):
            panels.append("clip")
        if any("hessian_diag_mean" in r["optimizer_epochs"] or "hessian_diag_mean" in r["optimizer"] for r in runs):
            panels.append("diagonal")
    for p in panels:
        if p not in PANELS + OPTIMIZER_PANELS:
            sys.exit(f"plot_training.py: unknown panel '{p}' (expected {', '.join(PANELS + OPTIMIZER_PANELS)})")
    labels = a.labels.split(",") if a.labels else a.runs
    if len(labels) != len(a.runs):
        sys.exit("plot_training.py: --labels needs one label per run")

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels):
        for i, (run, label) in enumerate(zip(runs, labels)):
            c = colors[i % len(colors)]
            if panel in OPTIMIZER_PANELS:
                plot_optimizer_panel(ax, panel, run["optimizer"], label, c)
                continue
            cv = run["curvature"]
            cx = cv["step"] if a.x == "steps" else cv["epoch"]
            if panel in ("loss", "accuracy"):
                key = "loss" if panel == "loss" else "accuracy"
                ax.plot(run["epoch"], run["train_" + key], "-", color=c, label=f"{label} train")
                if np.isfinite(run["test_" + key]).any():
                    ax.plot(run["epoch"], run["test_" + key], "--", color=c, label=f"{label} test")
                ax.set_xlabel("epoch")
            elif panel == "lambda_max" and len(cx):
                ax.plot(cx, cv["lambda_max"], "-", color=c, label=f"{label} $\\lambda_{{max}}$")
                beta = run["momentum"]
                with np.errstate(divide="ignore"):
                    thr = (2.0 + 2.0 * beta) / cv["lr"]
                # The stability threshold (2 + 2 beta)/lr (2/lr without momentum), when within reach.
                if np.isfinite(thr).any() and np.nanmin(thr) < 3 * np.nanmax(cv["lambda_max"]):
                    name = "2/$\\eta$" if beta == 0 else f"(2+2β)/$\\eta$, β={beta:g}"
                    ax.plot(cx, thr, ":", color=c, label=f"{label} {name}")
            elif panel == "trace" and len(cx):
                ax.plot(cx, cv["trace"], "-", color=c, label=label)
                ax.fill_between(cx, cv["trace"] - cv["trace_stderr"], cv["trace"] + cv["trace_stderr"], color=c,
                                alpha=0.2)
            elif panel == "overlap" and len(cx):
                k = cv["top_values"].shape[1] if cv["top_values"].ndim == 2 else 0
                ax.plot(cx, cv["grad_overlap"], "-", color=c, label=f"{label} (top-{k})")
                ax.set_ylim(0, 1.02)
            elif panel == "clip" and a.x == "steps" and "clip_fraction" in run["optimizer"]:
                op = run["optimizer"]
                ax.plot(op["step"], op["clip_fraction"], "-", lw=0.8, color=c, label=label)
                ax.set_ylim(0, 1.02)
                ax.set_xlabel("optimizer step")
            elif panel == "clip" and "clip_fraction" in run["optimizer_epochs"]:
                ax.plot(run["epoch"], run["optimizer_epochs"]["clip_fraction"], "-o", ms=3, color=c, label=label)
                ax.set_ylim(0, 1.02)
                ax.set_xlabel("epoch")
            elif panel == "diagonal" and a.x == "steps" and "hessian_diag_mean" in run["optimizer"]:
                op = run["optimizer"]
                # One point per refresh: the steps between refreshes reuse the last estimate.
                at = np.isfinite(op["hessian_diag_mean"])
                if "hessian_refresh" in op:
                    at &= op["hessian_refresh"] > 0
                ax.plot(op["step"][at], op["hessian_diag_mean"][at], "-o", ms=2, color=c,
                        label=f"{label} ({int(at.sum())} refreshes)")
                ax.set_xlabel("optimizer step")
            elif panel == "diagonal" and "hessian_diag_mean" in run["optimizer_epochs"]:
                st = run["optimizer_epochs"]
                n = int(np.nansum(st.get("hessian_refreshes", [np.nan])))
                ax.plot(run["epoch"], st["hessian_diag_mean"], "-o", ms=3, color=c, label=f"{label} ({n} refreshes)")
                ax.set_xlabel("epoch")
            if panel in ("lambda_max", "trace", "overlap"):
                ax.set_xlabel("optimizer step" if a.x == "steps" else "epoch")
        if panel in OPTIMIZER_PANELS:
            ax.set_title({"damping": "damping", "rho": "reduction ratio", "cg": "CG per step"}[panel])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            continue
        ax.set_title({"loss": "loss", "accuracy": "accuracy", "lambda_max": "top Hessian eigenvalue",
                      "trace": "Hessian trace (Hutchinson)", "overlap": "gradient in top-k eigenspace",
                      "clip": "Sophia: clipped updates", "diagonal": "Hessian-diagonal estimate"}[panel])
        ax.set_ylabel({"loss": "loss (mean cross-entropy, nats)", "accuracy": "accuracy (fraction)",
                       "lambda_max": "λ_max (loss / weight²)",
                       "trace": "Tr(H) (loss / weight², ± standard error)",
                       "overlap": "‖V_kᵀg‖² / ‖g‖² (fraction)",
                       "clip": "clipped coordinates (fraction, mean per step)",
                       "diagonal": "mean of D^ at the last refresh (loss / weight²)"}[panel])
        if panel == "lambda_max":
            lam = np.concatenate([r["curvature"]["lambda_max"] for r in runs])
            if len(lam) and np.isfinite(lam).any():
                with np.errstate(divide="ignore"):
                    thr = np.concatenate([(2.0 + 2.0 * r["momentum"]) / r["curvature"]["lr"] for r in runs])
                top = np.nanmax(lam)
                if np.isfinite(thr).any() and np.nanmin(thr) < 3 * top:
                    top = max(top, np.nanmin(thr[np.isfinite(thr)]))
                ax.set_ylim(0, 1.3 * top)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
