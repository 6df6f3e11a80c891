#!/usr/bin/python3
"""Training throughput of PyTorch on curv's built-in architectures (same layers as
src/builder.cpp's `lenet` and `resnet20-bn`), for bench/train_throughput.sh.

    bench/pytorch_train.py --arch lenet|resnet20 [--batch-size 128] [--steps 40] [--threads 2] [--sam 0.05]

Prints one JSON line: arch, batch_size, threads, sam, samples_per_second (SGD with momentum,
BatchNorm in train mode, cross-entropy; the first 5 steps are warm-up and not timed).
"""
import argparse
import json
import time

import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, cin=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, c = [], 16
        for s, w in enumerate((16, 32, 64)):
            for i in range(3):
                layers.append(Block(c, w, 2 if s > 0 and i == 0 else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=("lenet", "resnet20"), required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sam", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    set_blas_threads(a.threads)
    require_fast_blas("pytorch_train.py")
    torch.manual_seed(0)
    model = LeNet() if a.arch == "lenet" else ResNet20()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(a.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch_size,))
    params = list(model.parameters())

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if a.sam > 0:
            with torch.no_grad():
                n = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
                e = [a.sam * p.grad / (n + 1e-12) for p in params]
                for p, ei in zip(params, e):
                    p.add_(ei)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                for p, ei in zip(params, e):
                    p.sub_(ei)
        opt.step()

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"arch": a.arch, "batch_size": a.batch_size, "threads": a.threads, "sam": a.sam,
                      "samples_per_second": a.steps * a.batch_size / dt}))


if __name__ == "__main__":
    main()
