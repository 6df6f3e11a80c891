#!/usr/bin/python3
"""Cost of an AdaHessian step (Hutchinson diagonal by double backward, as the authors' code does
it) relative to an SGD step in PyTorch, on LeNet with the same batch, for bench/diag_optimizers.sh.

    bench/pytorch_adahessian.py [--batch-size 128] [--steps 30] [--threads 2]

Prints one JSON line: sgd_seconds, adahessian_seconds (per step, median of the timed steps after
5 warm-up steps) and their ratio. Random Fashion-MNIST-shaped data (timing only).
"""
import argparse
import json
import os
import sys
import time

import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_train import LeNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    set_blas_threads(a.threads)
    require_fast_blas("pytorch_adahessian.py")
    torch.manual_seed(0)
    model = LeNet()
    params = list(model.parameters())
    x = torch.randn(a.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch_size,))
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def sgd_step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def adahessian_step():
        loss = F.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        z = [torch.randint_like(p, high=2) * 2 - 1 for p in params]
        hz = torch.autograd.grad(g, params, grad_outputs=z)
        with torch.no_grad():
            for p, gi, zi, hi in zip(params, g, z, hz):
                d = (zi * hi).abs()
                if d.dim() == 4:
                    d = d.mean(dim=[2, 3], keepdim=True).expand_as(d)
                p.sub_(1e-3 * gi / (d + 1e-4))

    def timed(f):
        ts = []
        for i in range(a.steps + 5):
            t0 = time.perf_counter()
            f()
            if i >= 5:
                ts.append(time.perf_counter() - t0)
        ts.sort()
        return ts[len(ts) // 2]

    s, h = timed(sgd_step), timed(adahessian_step)
    print(json.dumps({"batch_size": a.batch_size, "threads": a.threads, "sgd_seconds": s, "adahessian_seconds": h,
                      "ratio": h / s}))


if __name__ == "__main__":
    main()
