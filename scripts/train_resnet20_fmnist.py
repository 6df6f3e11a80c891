#!/usr/bin/python3
"""Train a CIFAR-style ResNet-20 on Fashion-MNIST and export it to ONNX (issue 6 experiment model).

Usage (Debian's python3, which has torch + onnx; run it under nice, it uses 2 threads):
    nice -n 10 /usr/bin/python3 scripts/train_resnet20_fmnist.py [--train-samples 30000] [--epochs 4]
        [--out data/resnet20_fmnist.onnx]

Model: the ResNet-20 of bench/pytorch_hvp.py (He et al. 2016: conv3x3 + BN + ReLU, 3 stages x 3
BasicBlocks with 16/32/64 channels and strides 1/2/2, option-B 1x1-conv shortcuts, global average
pool, Linear(64->10)) with a 1-channel stem for 1x28x28 inputs. Inputs as in train_default.py
(uint8 / 255, no normalization); loss CrossEntropyLoss (mean).

Training: SGD with Nesterov momentum 0.9, weight decay 5e-4, one-cycle learning rate (peak
--lr), batch 128, on the first --train-samples images of a seeded permutation of the 60k
training set. Seeded; torch.set_num_threads(--threads).

Export: the model in eval mode (BatchNorm uses its running statistics), opset 13, input "input",
output "logits", dynamic batch axis; the exporter folds each eval-mode BatchNorm into the
preceding convolution's weights and bias. Writes <out>.json with the PyTorch test metrics, which
`curv eval <out> --data fashion-mnist:test` should reproduce.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from pytorch_hvp import ResNet20  # noqa: E402
from train_default import evaluate, load_split  # noqa: E402


def make_model():
    net = ResNet20("B")
    net.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)  # Fashion-MNIST: one input channel
    return net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-samples", type=int, default=30000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "resnet20_fmnist.onnx"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    gen = torch.Generator().manual_seed(args.seed)
    keep = torch.randperm(len(xtr), generator=gen)[:args.train_samples]
    xtr, ytr = xtr[keep], ytr[keep]

    model = make_model()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params: {nparams}, training on {len(xtr)} images", flush=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.25)
    lossf = nn.CrossEntropyLoss()

    def train_epoch():
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for batch in perm.split(args.batch):
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xtr[batch]), ytr[batch])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        return total / len(xtr)

    for epoch in range(args.epochs):
        t0 = time.time()
        train_loss = train_epoch()
        acc, tl = evaluate(model, xte, yte)
        print(f"epoch {epoch + 1}: train_loss {train_loss:.4f} test_acc {acc:.4f} test_loss {tl:.4f} "
              f"({time.time() - t0:.1f}s)", flush=True)

    acc, tl = evaluate(model, xte, yte)  # evaluate() leaves the model in eval mode: BatchNorm running stats
    print(f"final test accuracy {acc:.4f}, test loss {tl:.6f}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.onnx.export(model, xte[:2], args.out, opset_version=13, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    import onnx
    graph = onnx.load(args.out)
    onnx.checker.check_model(graph)
    print("onnx ops:", sorted({n.op_type for n in graph.graph.node}), f"file: {os.path.getsize(args.out)} bytes")
    meta = dict(vars(args), out=os.path.basename(args.out), test_accuracy=acc, test_loss=tl, test_samples=len(xte),
                params=nparams, torch_version=torch.__version__, onnx_opset=13,
                optimizer="SGD, Nesterov momentum 0.9, weight decay 5e-4, one-cycle lr",
                input="uint8 image / 255, shape [N,1,28,28], no normalization", loss="CrossEntropyLoss (mean)")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
