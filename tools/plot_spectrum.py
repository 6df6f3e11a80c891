#!/usr/bin/env python3
"""Plot a curv spectrum file (docs/hdf5-schema.md) to PNG.

    python3 tools/plot_spectrum.py out/spectrum.h5 out/spectrum.png [--run spectrum]
    python3 tools/plot_spectrum.py ggn.h5 kfac_vs_ggn.png --kfac kfac.h5

With --kfac (a `curv spectrum --curvature kfac` file): one panel per layer found in both files,
the GGN block's SLQ density (`curv spectrum --curvature ggn --blocks layers --density`) with the
histogram of K-FAC's eigenvalues (all products alpha_i beta_j of the factors) overlaid.

Panels: the smoothed SLQ spectral density (log scale), the top eigenvalue of each parameter block,
and the trace of each block with its standard error, labelled with the method that made it
(Hutchinson, Hutch++ or exact); below them, the per-block SLQ densities as small multiples when
the run has them (curv spectrum --blocks ... --density). Panels whose data the run did not compute
are left out. Eigenvalues are in loss units per squared parameter unit. Needs Debian's
python3-h5py and python3-matplotlib.
"""
import argparse
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("h5")
    ap.add_argument("png")
    ap.add_argument("--run", default="spectrum")
    ap.add_argument("--kfac", help="curv spectrum --curvature kfac file to overlay per layer")
    a = ap.parse_args()
    if a.kfac:
        return overlay(a)
    try:
        f = h5py.File(a.h5, "r")
    except OSError as e:
        sys.exit(f"plot_spectrum: {a.h5}: cannot open ({e})")
    with f:
        if f.attrs.get("format") != "curv" or a.run not in f:
            sys.exit(f"plot_spectrum: {a.h5}: not a curv spectrum file with run '{a.run}'")
        run = f[a.run]
        blocks = run.get("blocks", {})
        names = list(blocks.keys())
        top = [blocks[n]["eigen/values"][0] if "eigen" in blocks[n] and len(blocks[n]["eigen/values"]) else np.nan
               for n in names]
        tr = [blocks[n]["trace/estimate"][()] if "trace" in blocks[n] else np.nan for n in names]
        se = [blocks[n]["trace/stderr"][()] if "trace" in blocks[n] else np.nan for n in names]
        panels = []
        if "density" in run:
            panels.append("density")
        if names and not np.all(np.isnan(top)):
            panels.append("top")
        if names and not np.all(np.isnan(tr)):
            panels.append("trace")
        if not panels:
            sys.exit(f"plot_spectrum: {a.h5}: run '{a.run}' has no density or per-block results to plot")
        dens_blocks = [n for n in names if "density" in blocks[n]]
        methods = sorted({str(blocks[n]["trace"].attrs.get("method", "hutchinson")) for n in names if "trace" in blocks[n]})
        ncols = max(len(panels), min(4, len(dens_blocks)) if dens_blocks else 0)
        rows = 1 + (len(dens_blocks) + ncols - 1) // ncols if dens_blocks else 1
        fig = plt.figure(figsize=(5.5 * max(len(panels), 1) if not dens_blocks else 4.2 * ncols, 4.2 * rows))
        axes = [[fig.add_subplot(rows, len(panels), i + 1) for i in range(len(panels))]]
        title = f"{run.attrs.get('curvature', '')} of {run.attrs.get('model', '')} on {run.attrs.get('dataset', '')}"
        for ax, p in zip(axes[0], panels):
            if p == "density":
                d = run["density"]
                grid, val = d["grid"][:], d["values"][:]
                ax.semilogy(grid, np.maximum(val, 1e-12))
                ax.set_ylim(max(1e-9, val.max() * 1e-8), val.max() * 2)
                ax.set_xlabel("eigenvalue (loss / parameter²)")
                ax.set_ylabel("spectral density (per eigenvalue unit, log)")
                ax.set_title(f"SLQ density ({d.attrs.get('probes', '?')} probes, "
                             f"{d.attrs.get('lanczos_steps', '?')} steps)")
                if "eigen" in run and len(run["eigen/values"]):
                    ax.axvline(run["eigen/values"][0], color="C3", ls="--", lw=1, label="λ_max (Lanczos)")
                    ax.legend()
            elif p == "top":
                x = np.arange(len(names))
                ax.bar(x, top, color="C1")
                ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
                ax.set_ylabel("top eigenvalue (loss / parameter²)")
                ax.set_title("λ_max per block")
            else:
                x = np.arange(len(names))
                ax.bar(x, tr, yerr=se, color="C2", capsize=2)
                ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
                ax.set_ylabel(f"trace ({' / '.join(methods)}, ± stderr)")
                ax.set_title("trace per block")
        for k, n in enumerate(dens_blocks):
            ax = fig.add_subplot(rows, ncols, ncols + k + 1)
            d = blocks[n]["density"]
            grid, val = d["grid"][:], d["values"][:]
            ax.semilogy(grid, np.maximum(val, 1e-12), color="C4")
            ax.set_ylim(max(1e-9, val.max() * 1e-8), val.max() * 2)
            ax.set_title(f"{n} (P = {d.attrs.get('dimension', '?')})", fontsize=8)
            ax.set_xlabel("eigenvalue (loss / parameter²)", fontsize=7)
            ax.set_ylabel("density (log)", fontsize=7)
            ax.tick_params(labelsize=6)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
    print(a.png)


def overlay(a):
    try:
        f, k = h5py.File(a.h5, "r"), h5py.File(a.kfac, "r")
    except OSError as e:
        sys.exit(f"plot_spectrum: cannot open ({e})")
    with f, k:
        gb = f[a.run].get("blocks", {}) if a.run in f else {}
        # K-FAC factors: <run>/kfac/<layer>/ (schema_minor 1), <run>/blocks/<layer>/kfac/ before.
        if int(k.attrs.get("schema_minor", 0)) >= 1:
            factors = dict(k[a.run]["kfac"].items()) if a.run in k and "kfac" in k[a.run] else {}
        else:
            kb = k[a.run].get("blocks", {}) if a.run in k else {}
            factors = {n: kb[n]["kfac"] for n in kb if "kfac" in kb[n]}
        names = [n for n in gb if n in factors and "density" in gb[n]]
        if not names:
            sys.exit(f"plot_spectrum: no layer has both a density in {a.h5} and K-FAC factors in {a.kfac}")
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
        for ax, n in zip(axes[0], names):
            d, kf = gb[n]["density"], factors[n]
            ev = np.outer(kf["alpha"][...], kf["beta"][...]).ravel()
            grid, val = d["grid"][:], d["values"][:]
            ax.semilogy(grid, np.maximum(val, 1e-12), label="GGN (SLQ)")
            lo, hi = min(grid.min(), ev.min()), max(grid.max(), ev.max())
            ax.hist(ev, bins=80, range=(lo, hi), density=True, alpha=0.5, color="C1", label="K-FAC (exact)")
            ax.set_ylim(max(1e-9, val.max() * 1e-8), max(val.max(), 1.0) * 2)
            ax.set_xlabel("eigenvalue")
            ax.set_title(n, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(f"K-FAC ({k[a.run].attrs.get('kfac_type', '')}) vs GGN spectral density", fontsize=9)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
    print(a.png)


if __name__ == "__main__":
    main()
