#!/usr/bin/python3
"""PyTorch baseline timings for curv's `bench`: loss, gradient and Hessian-vector products of a
CIFAR ResNet-20 (BatchNorm folded into the convolutions), the way PyHessian computes them.

    /usr/bin/python3 bench/pytorch_hvp.py [--threads 2] [--samples 200] [--reps 5] [--block 16]
                                          [--export resnet20_folded.onnx]

Prints parameter counts on stderr and exactly one JSON line on stdout:
  samples, threads, params, loss_s (forward + loss, no_grad), grad_s (forward + backward),
  hvp_s (forward + gradient with create_graph=True + double backward: one full PyHessian HVP),
  hvp_only_s (double backward only, reusing the kept gradient graph, as PyHessian does),
  hvp_block_s / block (BLOCK HVPs reusing the same graph, sequentially), ratio = hvp_s / grad_s.
All times are medians over --reps repetitions after one warm-up.

ResNet-20 (He et al. 2016, CIFAR): conv3x3(3->16)+BN+ReLU, 3 stages x 3 BasicBlocks with
16/32/64 channels and strides 1/2/2, global average pool, Linear(64->10). Shortcut when the shape
changes: option B (1x1 conv stride 2 + BN), the default here and what curv's builder uses;
option A (strided subsampling + zero channel padding, no parameters) is counted for reference.
"""
import argparse
import copy
import json
import statistics
import sys
import time

import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, option="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.option = option
        self.project = stride != 1 or cin != cout
        if self.project and option == "B":
            self.short_conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.short_bn = nn.BatchNorm2d(cout)
        self.pad = cout - cin

    def shortcut(self, x):
        if not self.project:
            return x
        if self.option == "B":
            return self.short_bn(self.short_conv(x))
        # option A: subsample and zero-pad channels (no parameters)
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, option="B", classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1, option))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(self.gap(x), 1))


def fold_bn(model):
    """Eval-mode copy with every (conv, bn) pair fused into a conv with bias, bn -> Identity."""
    model = copy.deepcopy(model).eval()
    mods = list(model.named_modules())
    by_name = dict(mods)
    for name, mod in mods:
        if isinstance(mod, nn.BatchNorm2d):
            conv_name = name.replace("short_bn", "short_conv").replace("bn", "conv")
            conv = by_name[conv_name]
            fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, mod)
            parent_name, _, conv_attr = conv_name.rpartition(".")
            parent = by_name[parent_name] if parent_name else model
            setattr(parent, conv_attr, fused)
            bn_parent_name, _, bn_attr = name.rpartition(".")
            setattr(by_name[bn_parent_name] if bn_parent_name else model, bn_attr, nn.Identity())
    return model


def count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def randomize_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def timed(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export", metavar="PATH", help="write the folded model as ONNX")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    set_blas_threads(args.threads)
    require_fast_blas("pytorch_hvp.py")
    torch.manual_seed(args.seed)
    counts = {}
    for opt in ("A", "B"):
        m = ResNet20(opt)
        counts[opt] = (count(m), count(fold_bn(m)))
        print(f"ResNet-20 option {opt}: {counts[opt][0]} params with BN, "
              f"{counts[opt][1]} with BN folded", file=sys.stderr)

    torch.manual_seed(args.seed)
    net = ResNet20("B")
    randomize_bn(net, torch.Generator().manual_seed(args.seed + 1))
    net.eval()
    model = fold_bn(net)
    gen = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(args.samples, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.samples,), generator=gen)
    with torch.no_grad():
        err = (net(x) - model(x)).abs().max().item()
    print(f"folded vs unfolded max |logit diff| = {err:.2e}", file=sys.stderr)

    if args.export:
        torch.onnx.export(model, x[:2], args.export, opset_version=13, input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True, export_params=True,
                          training=torch.onnx.TrainingMode.EVAL)
        print(f"wrote {args.export}", file=sys.stderr)

    params = [p for p in model.parameters() if p.requires_grad]
    nparams = sum(p.numel() for p in params)
    lossf = nn.CrossEntropyLoss()
    vs = [torch.randn(p.shape, generator=gen) for p in params]
    vblock = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(args.block)]

    def f_loss():
        with torch.no_grad():
            return lossf(model(x), y).item()

    def f_grad():
        return torch.autograd.grad(lossf(model(x), y), params)

    def f_hvp():
        g = torch.autograd.grad(lossf(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vs)

    grads = torch.autograd.grad(lossf(model(x), y), params, create_graph=True)

    def f_hvp_only():
        return torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)

    def f_hvp_block():
        return [torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
                for v in vblock]

    res = {"samples": args.samples, "threads": args.threads, "params": nparams}
    res["loss_s"] = timed(f_loss, args.reps)
    res["grad_s"] = timed(f_grad, args.reps)
    res["hvp_s"] = timed(f_hvp, args.reps)
    res["hvp_only_s"] = timed(f_hvp_only, args.reps)
    res["block"] = args.block
    res["hvp_block_s"] = timed(f_hvp_block, max(1, args.reps // 2))
    res["ratio"] = res["hvp_s"] / res["grad_s"]
    res["params_option_A"], res["params_option_A_folded"] = counts["A"]
    res["params_option_B"], res["params_option_B_folded"] = counts["B"]
    res["torch_version"] = torch.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
