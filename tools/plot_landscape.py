#!/usr/bin/python3
"""Plot a loss landscape written by `curv landscape` or a study's landscape / interpolate run.

    tools/plot_landscape.py F.h5 OUT.png [--run NAME] [--levels 30] [--vmax V] [--title T]

2-D grids: filled contours of the loss (and of lambda_max where it was computed) and a 3-D
surface; 1-D grids and paths: loss and accuracy against the coordinate, with the barrier of a
path. Datasets as loss-landscape names them (xcoordinates, ycoordinates, train_loss, train_acc
in percent); train_loss[i, j] is the loss at (x[i], y[j]). Needs h5py, numpy, matplotlib.
"""
import argparse
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("h5")
    ap.add_argument("png")
    ap.add_argument("--run", help="run group (default: the only one with xcoordinates)")
    ap.add_argument("--levels", type=int, default=30)
    ap.add_argument("--vmax", type=float, help="clip the loss at this value")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    try:
        f = h5py.File(a.h5, "r")
    except OSError as e:
        sys.exit(f"plot_landscape.py: {a.h5}: cannot open ({e})")
    with f:
        names = [n for n in f if isinstance(f[n], h5py.Group) and "xcoordinates" in f[n]]
        name = a.run or (names[0] if len(names) == 1 else None)
        if name is None or name not in f or "xcoordinates" not in f[name]:
            sys.exit(f"plot_landscape.py: {a.h5}: name a landscape run with --run (found {', '.join(names) or 'none'})")
        g = f[name]
        x, loss, acc = g["xcoordinates"][:], g["train_loss"][:], g["train_acc"][:]
        title = a.title or f"{g.attrs.get('kind', '')} {name}: {g.attrs.get('model', '')} on {g.attrs.get('dataset', '')}"
        if "ycoordinates" not in g:
            fig, ax = plt.subplots(figsize=(6, 4.2))
            ax.plot(x, loss, "o-", color="C0", label="loss")
            ax.set_xlabel("t (0: model, 1: model2)" if g.attrs.get("kind") == "interpolate" else "step along direction x")
            ax.set_ylabel("loss (mean, nats)")
            if np.isfinite(acc).any():
                ax2 = ax.twinx()
                ax2.plot(x, acc, "s--", color="C1", label="accuracy")
                ax2.set_ylabel("accuracy (%)")
            if "barrier" in g.attrs and np.isfinite(g.attrs["barrier"]):
                ax.set_title(f"barrier {g.attrs['barrier']:.4g} nats at t = {g.attrs['barrier_t']:.3g}", fontsize=9)
            fig.suptitle(title, fontsize=9)
            fig.tight_layout()
            fig.savefig(a.png, dpi=110)
            print(a.png)
            return
        y = g["ycoordinates"][:]
        Z = np.minimum(loss, a.vmax) if a.vmax else loss
        X, Y = np.meshgrid(x, y, indexing="ij")  # loss[i, j] at (x[i], y[j])
        panels = 3 if "lambda_max" in g else 2
        fig = plt.figure(figsize=(5.2 * panels, 4.4))
        ax = fig.add_subplot(1, panels, 1)
        cs = ax.contourf(X, Y, Z, levels=a.levels, cmap="viridis")
        ax.contour(X, Y, Z, levels=a.levels, colors="k", linewidths=0.3)
        fig.colorbar(cs, ax=ax, label="loss (mean, nats)")
        ax.plot([0], [0], "r+", ms=10)
        ax.set_xlabel("α (direction x)")
        ax.set_ylabel("β (direction y)")
        ax.set_title("loss contours", fontsize=9)
        ax3 = fig.add_subplot(1, panels, 2, projection="3d")
        ax3.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=True)
        ax3.set_xlabel("α")
        ax3.set_ylabel("β")
        ax3.set_zlabel("loss (nats)")
        ax3.set_title("surface", fontsize=9)
        if panels == 3:
            lam = g["lambda_max"][:]
            ok = np.isfinite(lam)
            ax4 = fig.add_subplot(1, panels, 3)
            sc = ax4.scatter(X[ok], Y[ok], c=lam[ok], cmap="magma", s=60)
            fig.colorbar(sc, ax=ax4, label="λ_max (top Hessian eigenvalue)")
            ax4.set_xlabel("α")
            ax4.set_ylabel("β")
            ax4.set_title("λ_max at every K-th point", fontsize=9)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(a.png)


if __name__ == "__main__":
    main()
