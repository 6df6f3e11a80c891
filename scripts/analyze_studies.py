#!/usr/bin/python3
"""Numbers and extra figures for the spectrum-paper reproductions (docs/experiments.md, "Batch
studies"), from the HDF5 files of `curv study` that scripts/run_studies.sh writes.

    scripts/analyze_studies.py [NAME...]     (default: every study whose file exists)

Prints one block per study; draws docs/img/study_gurari_persistence.png (overlap of the top-10
Hessian eigenspaces between epochs). Needs h5py, numpy, matplotlib.
"""
import json
import os
import re
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUT = "out/studies"


def runs(f):
    return {n: f[n] for n in f if isinstance(f[n], h5py.Group)}


def sagun(f):
    print("run                 C   top-C gap lambda_C/lambda_C+1   largest gap at i   lambda_1   lambda_C+1   lambda_30")
    r = runs(f)
    for n in sorted(r):
        g = r[n]
        s = json.loads(g.attrs["settings"])
        c = s["relabel"]
        v = g["eigen/values"][:]
        ratios = v[:-1] / np.maximum(v[1:], 1e-12)
        best = int(np.argmax(ratios[:20])) + 1
        print(f"{n:20s} {c:2d}   {v[c - 1] / v[c]:8.2f}              {best:3d} ({ratios[best - 1]:.2f})"
              f"   {v[0]:9.4g}  {v[c]:9.4g}  {v[-1]:9.4g}")
    for w in (32, 128):
        for c in (2, 5, 10):
            h, gg = f"mlp{w}_c{c}-hessian", f"mlp{w}_c{c}-ggn"
            if h in r and gg in r:
                a, b = r[h]["eigen/values"][:c], r[gg]["eigen/values"][:c]
                print(f"w{w} C={c}: top-C Hessian vs GGN max relative difference {np.max(np.abs(a - b) / np.abs(a)):.3f};"
                      f" Hessian bottom of top-30 {r[h]['eigen/values'][-1]:.4g}")
    for n in sorted(r):
        d = r[n]["density"]
        grid, val = d["grid"][:], d["values"][:]
        dx = grid[1] - grid[0]
        lam = r[n]["eigen/values"][:]
        c = json.loads(r[n].attrs["settings"])["relabel"]
        near = val[np.abs(grid) <= 0.05 * lam[0]].sum() * dx
        neg = val[grid < -0.01 * lam[0]].sum() * dx
        print(f"{n:20s} density mass |t| <= 5% of lambda_1: {near:.3f}, below -1% of lambda_1: {neg:.4f}")


def granziol(f):
    r = runs(f)
    full = r["full"]
    lf, mf = full["eigen/values"][0], full["eigen/bottom_values"][0]
    print(f"full ({full.attrs['samples']}): lambda_max {lf:.4g}, lambda_min {mf:.4g}, loss {full.attrs['loss']:.4f}")
    print("B      lambda_max mean (std, 3 batches)   ratio to full   |lambda_min| mean (std)   ratio to full")
    bs, excess = [], []
    for b in (32, 64, 128, 256, 512, 1024):
        lm = np.array([r[f"B{b}-{i}"]["eigen/values"][0] for i in range(3) if f"B{b}-{i}" in r])
        ln = np.array([abs(r[f"B{b}-{i}"]["eigen/bottom_values"][0]) for i in range(3) if f"B{b}-{i}" in r])
        if len(lm) == 0:
            continue
        print(f"{b:5d}  {lm.mean():10.4g} ({lm.std(ddof=1) if len(lm) > 1 else 0:.3g})"
              f"                {lm.mean() / lf:6.2f}        {ln.mean():10.4g} ({ln.std(ddof=1) if len(ln) > 1 else 0:.3g})"
              f"       {ln.mean() / abs(mf):6.2f}")
        bs.append(b)
        excess.append(lm.mean() - lf)
    bs, excess = np.array(bs), np.array(excess)
    ok = excess > 0
    if ok.sum() >= 2:
        slope = np.polyfit(np.log(bs[ok]), np.log(excess[ok]), 1)[0]
        print(f"lambda_max(B) - lambda_max(full) ~ B^{slope:.2f} (fit over B with a positive excess)")


def gurari(f):
    r = runs(f)
    names = sorted(r)
    print("run               k=1    k=5    k=9    k=10   k=11   k=15   k=20   ||g||    lambda_1  lambda_10 lambda_11")
    for n in names:
        g = r[n]
        ov = g["gradient/top_overlap"][:]
        v = g["eigen/values"][:]
        print(f"{n:16s} " + " ".join(f"{ov[k - 1]:.3f}" for k in (1, 5, 9, 10, 11, 15, 20)) +
              f"  {g['gradient/norm'][()]:.4f}  {v[0]:8.4g}  {v[9]:8.4g}  {v[10]:8.4g}")
    V = {n: r[n]["eigen/vectors"][:, :10] for n in names}
    M = np.array([[np.linalg.norm(V[a].T @ V[b]) ** 2 / 10 for b in names] for a in names])
    print("overlap ||V_10(a)^T V_10(b)||_F^2 / 10 (1: same subspace; random 10-dim: ~10/P):")
    print("        " + " ".join(f"{n[-3:]:>6s}" for n in names))
    for n, row in zip(names, M):
        print(f"{n[-8:]:8s}" + " ".join(f"{x:6.3f}" for x in row))
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
    labels = [re.sub(r".*epoch0*", "", n) or "0" for n in names]
    ax.set_xticks(range(len(names)), labels)
    ax.set_yticks(range(len(names)), labels)
    ax.set_xlabel("epoch t2")
    ax.set_ylabel("epoch t1")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w" if M[i, j] < 0.5 else "k")
    fig.colorbar(im, ax=ax, label="‖V(t1)ᵀ V(t2)‖²_F / 10 (fraction)")
    ax.set_title("LeNet: persistence of the top-10 Hessian eigenspace", fontsize=9)
    fig.tight_layout()
    fig.savefig("docs/img/study_gurari_persistence.png", dpi=110)
    print("docs/img/study_gurari_persistence.png")


def stability(f):
    r = runs(f)
    rows = {}
    for n, g in r.items():
        m = re.search(r"lr([0-9.]+)_b(\w+)_s(\d+)", n)
        lr, b = float(m.group(1)), m.group(2)
        tj = json.load(open(os.path.join(OUT, "stability", n + ".train.json")))
        rows.setdefault((lr, b), []).append((g["trace/estimate"][()], g["eigen/values"][0], tj["train_loss"],
                                            g["trace/stderr"][()]))
    print("lr     batch  2/lr   Tr(H) mean (min..max)     Tr(H)*lr/2   lambda_max mean (min..max)  lambda_max*lr/2  final train loss")
    for (lr, b) in sorted(rows, key=lambda k: (k[0], k[1])):
        a = np.array(rows[(lr, b)])
        print(f"{lr:5.2f}  {b:5s} {2 / lr:5.0f}   {a[:, 0].mean():8.3g} ({a[:, 0].min():.3g}..{a[:, 0].max():.3g})"
              f"   {a[:, 0].mean() * lr / 2:8.3f}     {a[:, 1].mean():8.3g} ({a[:, 1].min():.3g}..{a[:, 1].max():.3g})"
              f"     {a[:, 1].mean() * lr / 2:8.3f}      {a[:, 2].mean():.2e}  (n={len(a)}, trace stderr ~{a[:, 3].mean():.2g})")


def li(f):
    r = runs(f)
    for n in sorted(r):
        g = r[n]
        if g.attrs["kind"] == "eval":
            print(f"{n}: test loss {g.attrs['loss']:.4f}, accuracy {g.attrs['accuracy']:.4f}")
            continue
        x, y, L = g["xcoordinates"][:], g["ycoordinates"][:], g["train_loss"][:]
        X, Y = np.meshgrid(x, y, indexing="ij")
        rad = np.sqrt(X ** 2 + Y ** 2)
        c = L[len(x) // 2, len(y) // 2]
        # Convexity along the grid: second differences along x and y (negative: locally concave).
        d2x = L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]
        d2y = L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]
        concave = np.mean((d2x < 0) | (d2y < 0))
        mins = 0
        for i in range(1, len(x) - 1):
            for j in range(1, len(y) - 1):
                if L[i, j] < min(L[i - 1, j], L[i + 1, j], L[i, j - 1], L[i, j + 1]):
                    mins += 1
        print(f"{n}: centre loss {c:.4f} (accuracy {g['train_acc'][len(x) // 2, len(y) // 2]:.1f}%), "
              f"max loss within radius 0.5: {L[rad <= 0.5].max():.3f}, within 1: {L[rad <= 1].max():.3f}, "
              f"grid max {L.max():.3f}; points with a concave 2nd difference: {100 * concave:.1f}%; "
              f"interior local minima: {mins}; {g.attrs['points']} points in {g.attrs['grid_seconds']:.0f} s")


def main():
    names = sys.argv[1:] or ["sagun", "granziol", "gurari", "stability", "li"]
    for n in names:
        path = os.path.join(OUT, n, n + ".h5")
        if not os.path.exists(path):
            print(f"== {n}: {path} missing")
            continue
        print(f"== {n} ({path})")
        with h5py.File(path, "r") as f:
            globals()[n](f)


if __name__ == "__main__":
    main()
