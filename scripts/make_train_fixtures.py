#!/usr/bin/python3
"""PyTorch reference steps for curv's optimizer and sharpness-aware training tests.

Usage (Debian's python3, which has torch + onnx + numpy):
    /usr/bin/python3 scripts/make_train_fixtures.py [--out data/fixtures/train_steps.npz]

Starts from data/fixtures/cnn_bn.onnx (conv -> BatchNorm -> ReLU -> pool -> convs -> linear,
403 parameters, running statistics as initializers) and the 5 samples of cnn_bn.npz, runs THREE
full-batch steps per configuration in float64 with BatchNorm in train() mode (batch statistics,
running statistics updated with momentum 0.1), and stores the parameters and running statistics
after the steps:

    <config>/<param name>           parameter after 3 steps
    <config>/bn1.running_mean|var   running statistics after 3 steps
    <config>/loss                   loss at the start of each step [3]

Optimizers are torch.optim.SGD / Adam / AdamW (foreach=False). SAM-family steps follow the
reference implementation (davda54/sam): ascent e on the loss gradient at w, gradient at w + e
with BatchNorm running statistics frozen (momentum 0), base-optimizer step from w:
    sam   e = rho g / (||g|| + 1e-12)
    asam  e = rho T^2 g / (||T g|| + 1e-12), T = |w| + eta
    gnr   e as sam; step with (1 - alpha) g + alpha g(w + e)
Deterministic: no randomness beyond the fixture's fixed data.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "data", "fixtures")
sys.path.insert(0, HERE)
from make_fixtures import CnnBn  # noqa: E402  the network of cnn_bn.onnx, same parameter names


CONFIGS = {
    "sgd": dict(opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": dict(opt="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": dict(opt="adam", lr=0.01, weight_decay=1e-2),
    "adamw": dict(opt="adamw", lr=0.01, weight_decay=0.1),
    "sam": dict(opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2, sam="sam", rho=0.05),
    "asam": dict(opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2, sam="asam", rho=0.5, eta=0.01),
    "gnr": dict(opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2, sam="gnr", rho=0.05, alpha=0.5),
}
STEPS = 3


def load_model():
    m = onnx.load(os.path.join(FIX, "cnn_bn.onnx"))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    model = CnnBn()
    sd = model.state_dict()
    for k in sd:
        if k in init:
            sd[k] = torch.from_numpy(init[k].astype(np.float64))
    model = model.double()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in sd.items()})
    return model


def grads(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), [p.grad.detach().clone() for p in model.parameters()]


def run(cfg, x, y):
    model = load_model().train()
    params = list(model.parameters())
    kw = dict(lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0), foreach=False)
    if cfg["opt"] == "sgd":
        opt = torch.optim.SGD(params, momentum=cfg.get("momentum", 0.0), nesterov=cfg.get("nesterov", False), **kw)
    elif cfg["opt"] == "adam":
        opt = torch.optim.Adam(params, **kw)
    else:
        opt = torch.optim.AdamW(params, **kw)
    losses = []
    for _ in range(STEPS):
        loss, g = grads(model, x, y)
        losses.append(loss)
        kind = cfg.get("sam")
        if kind:
            with torch.no_grad():
                if kind == "asam":
                    t = [p.abs() + cfg["eta"] for p in params]
                    n = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
                    e = [cfg["rho"] * ti * ti * gi / (n + 1e-12) for ti, gi in zip(t, g)]
                else:
                    n = torch.sqrt(sum((gi ** 2).sum() for gi in g))
                    e = [cfg["rho"] * gi / (n + 1e-12) for gi in g]
                for p, ei in zip(params, e):
                    p.add_(ei)
            model.bn1.momentum = 0.0  # the second pass leaves the running statistics alone
            _, g2 = grads(model, x, y)
            model.bn1.momentum = 0.1
            with torch.no_grad():
                for p, ei in zip(params, e):
                    p.sub_(ei)
            if kind == "gnr":
                g2 = [(1 - cfg["alpha"]) * a + cfg["alpha"] * b for a, b in zip(g, g2)]
            for p, gi in zip(params, g2):
                p.grad = gi
        opt.step()
    return model, losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIX, "train_steps.npz"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = np.load(os.path.join(FIX, "cnn_bn.npz"))
    x = torch.from_numpy(data["x"].astype(np.float64))
    y = torch.from_numpy(data["y"])
    out = {"steps": np.array(STEPS), "bn_momentum": np.array(0.1)}
    for name, cfg in CONFIGS.items():
        model, losses = run(cfg, x, y)
        for pname, p in model.named_parameters():
            out[f"{name}/{pname}"] = p.detach().numpy()
        out[f"{name}/bn1.running_mean"] = model.bn1.running_mean.numpy()
        out[f"{name}/bn1.running_var"] = model.bn1.running_var.numpy()
        out[f"{name}/loss"] = np.array(losses)
    np.savez(args.out, **out)
    print("wrote", args.out, len(out), "arrays")


if __name__ == "__main__":
    main()
