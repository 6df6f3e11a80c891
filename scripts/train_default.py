#!/usr/bin/python3
"""Train curv's default checkpoint: a small CNN on Fashion-MNIST, exported to ONNX.

Usage (Debian's python3, which has torch + onnx):
    /usr/bin/python3 scripts/train_default.py [--epochs 8] [--out data/fmnist_cnn.onnx]

Conventions (see docs / DESIGN.md): inputs are the uint8 images scaled to [0, 1] with no further
normalization, shape [N, 1, 28, 28]; loss is torch.nn.CrossEntropyLoss() (mean over samples).
Writes data/fmnist_cnn.onnx (opset 13, input "input", output "logits", dynamic batch axis) and
data/fmnist_cnn.json with the test accuracy / loss over the full 10k test set.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATASET_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATASET_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATASET_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)  # [N,1,28,28] in [0,1]
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        loss_sum += nn.functional.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x), loss_sum / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "fmnist_cnn.onnx"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    model = make_model()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params: {nparams}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # lr x0.3 for the last two epochs (simple step schedule)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[max(1, args.epochs - 2)], gamma=0.3)
    lossf = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)

    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        run = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            run += loss.item() * len(idx)
        sched.step()
        acc, tl = evaluate(model, xte, yte)
        print(f"epoch {epoch + 1}: train_loss {run / len(xtr):.4f} test_acc {acc:.4f} "
              f"test_loss {tl:.4f} ({time.time() - t0:.1f}s)", flush=True)

    model.eval()
    acc, tl = evaluate(model, xte, yte)
    print(f"final test accuracy {acc:.4f}, test loss {tl:.6f}")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    dummy = xte[:2]
    torch.onnx.export(model, dummy, args.out, opset_version=13, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True, export_params=True,
                      training=torch.onnx.TrainingMode.EVAL)
    import onnx
    m = onnx.load(args.out)
    onnx.checker.check_model(m)
    print("onnx ops:", sorted({n.op_type for n in m.graph.node}))
    print("onnx initializers:", [i.name for i in m.graph.initializer])

    meta = {
        "test_accuracy": acc,
        "test_loss": tl,
        "train_epochs": args.epochs,
        "params": nparams,
        "torch_version": torch.__version__,
        "onnx_opset": 13,
        "batch_size": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "input": "uint8 image / 255, shape [N,1,28,28], no normalization",
        "loss": "CrossEntropyLoss (mean)",
        "test_samples": len(xte),
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
