#!/usr/bin/python3
"""Zhang et al. 2017's claim -- block-diagonal Hessian-free (BHF) converges better than HF and Adam,
especially at large mini-batch -- re-run with `curv train` (issue 15's reproduction).

Usage:
    /usr/bin/python3 scripts/bhf_reproduction.py [--work /tmp/bhf] [--task autoencoder|cnn]
        [--train 10000] [--test 2000] [--epochs 10] [--batches 1000,5000]
        [--optimizers bhf,hf,adam,kfac,adahessian,sophia] [--curv build/tools/curv]
        [--hf-args=--line-search] [--timeout 900]

Tasks, on the first --train Fashion-MNIST training images (pixels / 255) and the first --test
test images:
  autoencoder  784-256-64-16-64-256-784 (tanh hidden units, linear output, MSE, targets = inputs)
  cnn          curv's `--arch lenet` classifier (two 5x5 convolutions, three linear layers,
               cross-entropy on the 10 classes)
Runs per batch size: BHF and HF (GGN, LM damping from 1, CG cap 20, curvature batch = batch / 5,
--lr 1), K-FAC (mc, factors every step, inverses every 10, damping 1e-2 with LM adaptation, lr 0.1,
momentum 0.9), AdaHessian (lr 0.1, Hutchinson diagonal every step), Sophia (lr 1e-3, Hutchinson
diagonal every 10 steps, rho 1, gamma 0.01) and Adam at lr 1e-4, 1e-3, 1e-2 (the best by final
training loss is the one to quote). Every run has --timeout seconds; one that times out is
recorded as such. Writes WORK/results.json (per run and epoch: train and test loss, seconds,
cumulative curvature products: CG columns for hf/bhf, Hessian-vector products for the diagonal
of adahessian/sophia; K-FAC has none) and WORK/<task>_b<batch>.png (loss against epochs,
curvature products and wall time). The machine this was first run on is shared and noisy: wall
times are indicative only.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"


def images(name, n):
    with gzip.open(os.path.join(FMNIST, name)) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n]
    return (x / 255.0).astype(np.float32)


def autoencoder(path, seed=0):
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    dims = [784, 256, 64, 16, 64, 256, 784]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    net = nn.Sequential(*layers)
    torch.onnx.export(net, torch.zeros(1, 784), path, opset_version=13, input_names=["input"], output_names=["out"],
                      dynamic_axes={"input": {0: "batch"}, "out": {0: "batch"}})


def cnn_data(path_train, path_test, n_train, n_test):
    def labels(name, n):
        with gzip.open(os.path.join(FMNIST, name)) as f:
            return np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    for path, img, lab, n in ((path_train, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", n_train),
                              (path_test, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", n_test)):
        np.savez(path, x=images(img, n).reshape(-1, 1, 28, 28), y=labels(lab, n))


def configs(batch, hf_args=()):
    hf = ["--lr", "1", "--cg-max-iters", "20", "--curvature-batch", str(max(1, batch // 5)), "--damping", "1"]
    hf += list(hf_args)
    runs = {
        "bhf": ["--optimizer", "bhf"] + hf,
        "hf": ["--optimizer", "hf"] + hf,
        "kfac": ["--optimizer", "kfac", "--lr", "0.1", "--momentum", "0.9", "--damping", "0.01", "--damping-adapt",
                 "on", "--inv-every", "10"],
    }
    runs["adahessian"] = ["--optimizer", "adahessian", "--lr", "0.1"]
    runs["sophia"] = ["--optimizer", "sophia", "--lr", "1e-3", "--hessian-every", "10"]
    for lr in ("1e-4", "1e-3", "1e-2"):
        runs["adam_lr" + lr] = ["--optimizer", "adam", "--lr", lr]
    return runs


def read_history(path):
    import h5py
    with h5py.File(path, "r") as f:
        h = f["history"]
        r = {k: h[k][...].tolist() for k in ("epoch", "train_loss", "test_loss", "seconds")}
        for k in ("test_accuracy", "train_accuracy"):
            if k in h:
                r[k] = h[k][...].tolist()
        steps = h["step"][...]
        if "optimizer" in h and "cg_products" in h["optimizer"]:
            o = h["optimizer"]
            cum = np.cumsum(o["cg_products"][...])
            ostep = o["step"][...]
            r["products"] = [float(cum[np.searchsorted(ostep, s, side="right") - 1]) for s in steps]
        elif "optimizer_epochs" in h and "hessian_refreshes" in h["optimizer_epochs"]:
            # one Hessian-vector product (Hutchinson probe) per refresh of the diagonal
            r["products"] = np.cumsum(np.nan_to_num(h["optimizer_epochs"]["hessian_refreshes"][...])).tolist()
        else:
            r["products"] = None
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bhf_reproduction")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batches", default="1000,5000")
    ap.add_argument("--optimizers", default="bhf,hf,kfac,adam,adahessian,sophia")
    ap.add_argument("--task", default="autoencoder", choices=["autoencoder", "cnn"])
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--curv", default=os.path.join(ROOT, "build", "tools", "curv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hf-args", default="", help="extra options for the bhf and hf runs, e.g. --hf-args=--line-search")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    train, test = os.path.join(a.work, a.task + "_train.npz"), os.path.join(a.work, a.task + "_test.npz")
    if a.task == "cnn":
        if not os.path.exists(train):
            cnn_data(train, test, a.train, a.test)
        model_args = ["--arch", "lenet"]
    else:
        if not os.path.exists(train):
            x = images("train-images-idx3-ubyte.gz", a.train)
            np.savez(train, x=x, y=x)
            x = images("t10k-images-idx3-ubyte.gz", a.test)
            np.savez(test, x=x, y=x)
        model = os.path.join(a.work, "ae.onnx")
        if not os.path.exists(model):
            autoencoder(model)
        model_args = [model]
    results_path = os.path.join(a.work, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    wanted = a.optimizers.split(",")
    for batch in [int(b) for b in a.batches.split(",")]:
        for name, args in configs(batch, a.hf_args.split()).items():
            if name.split("_")[0] not in wanted:
                continue
            key = f"{a.task}_{name}_b{batch}"
            if key in results:
                continue
            out = os.path.join(a.work, key + ".h5")
            cmd = [a.curv, "train"] + model_args + ["--data", train, "--test-data", test, "--batch-size", str(batch),
                   "--epochs", str(a.epochs), "--threads", str(a.threads), "--out", out, "--json"] + args
            t = time.time()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
            except subprocess.TimeoutExpired:
                print(key, f"timed out after {a.timeout:.0f} s", file=sys.stderr, flush=True)
                results[key] = {"error": f"timed out after {a.timeout:.0f} s", "command": " ".join(cmd)}
                json.dump(results, open(results_path, "w"), indent=1)
                continue
            if p.returncode != 0:
                print(key, "failed:", p.stderr.strip().splitlines()[-1:], file=sys.stderr)
                results[key] = {"error": p.stderr.strip()[-300:]}
            else:
                results[key] = read_history(out)
                results[key]["command"] = " ".join(cmd)
                results[key]["wall_s"] = time.time() - t
                print(f"{key}: final train {results[key]['train_loss'][-1]:.5f} test {results[key]['test_loss'][-1]:.5f}"
                      f" in {time.time() - t:.0f} s", flush=True)
            json.dump(results, open(results_path, "w"), indent=1)
    plot(results, a.work)


def plot(results, work):
    for task in sorted({k.split("_", 1)[0] for k in results}):
        plot_task(task, {k.split("_", 1)[1]: r for k, r in results.items() if k.startswith(task + "_")}, work)


def plot_task(task, results, work):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    batches = sorted({int(k.rsplit("_b", 1)[1]) for k in results})
    for b in batches:
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
        for k, r in results.items():
            if not k.endswith(f"_b{b}") or "error" in r:
                continue
            label = k.rsplit("_b", 1)[0]
            ax[0].semilogy(r["epoch"], r["train_loss"], "-", label=label + " train")
            ax[0].semilogy(r["epoch"], r["test_loss"], "--", color=ax[0].lines[-1].get_color())
            if r["products"]:
                ax[1].semilogy(r["products"], r["test_loss"], "-o", ms=3, label=label)
            ax[2].semilogy(np.cumsum(r["seconds"]), r["test_loss"], "-", label=label)
        loss = "MSE" if task == "autoencoder" else "cross-entropy"
        ax[0].set_xlabel("epoch"); ax[0].set_ylabel(loss + " (train solid, test dashed)")
        ax[1].set_xlabel("curvature products (CG columns / HVPs, cumulative)"); ax[1].set_ylabel("test " + loss)
        ax[2].set_xlabel("wall time (s, noisy shared machine)"); ax[2].set_ylabel("test " + loss)
        for x in ax:
            x.grid(alpha=0.3)
            x.legend(fontsize=7)
        fig.suptitle(f"Fashion-MNIST autoencoder 784-256-64-16-64-256-784, batch {b}" if task == "autoencoder"
                     else f"Fashion-MNIST LeNet classifier, batch {b}")
        fig.tight_layout()
        fig.savefig(os.path.join(work, f"{task}_b{b}.png"), dpi=100)


if __name__ == "__main__":
    main()
