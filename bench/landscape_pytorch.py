#!/usr/bin/python3
"""PyTorch baseline for `curv landscape`: the same ONNX model, the same samples and the same
directions (read from the file curv wrote), evaluated point by point in a plain loop, as
loss-landscape's crunch loop does (set the weights, forward the samples, loss and accuracy).

    /usr/bin/python3 bench/landscape_pytorch.py MODEL.onnx CURV_LANDSCAPE.h5 --samples N [--threads T]

Prints one JSON line: points, seconds, points_per_second, and max_abs_loss_diff against curv's
train_loss. The model is rebuilt from its ONNX graph for the ops a CNN/MLP export uses (Conv,
Relu, MaxPool, Flatten, Gemm); parameters are the float initializers in order of first use, which
is curv's flat parameter order. Data: the first N Fashion-MNIST test images / 255 (the shipped
CNN's input), as `curv landscape --data fashion-mnist:test --samples N` reads them.
"""
import argparse
import gzip
import json
import sys
import time

import h5py
import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
import torch.nn.functional as F


def load_fmnist_test(n):
    d = "/usr/share/datasets/fashion-mnist/"
    x = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    y = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return torch.from_numpy(x[:n].astype(np.float32) / 255.0), torch.from_numpy(y[:n].astype(np.int64))


class OnnxNet:
    def __init__(self, path):
        m = onnx.load(path)
        self.graph = m.graph
        inits = {i.name: torch.from_numpy(onnx.numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
        self.names = []
        for node in m.graph.node:
            for i in node.input:
                if i in inits and i not in self.names:
                    self.names.append(i)
        self.params = [inits[n].float() for n in self.names]
        self.input = [i.name for i in m.graph.input if i.name not in inits][0]
        self.output = m.graph.output[0].name

    def set_flat(self, w):
        o = 0
        for p in self.params:
            p.copy_(w[o:o + p.numel()].view_as(p))
            o += p.numel()

    def forward(self, x):
        v = {self.input: x}
        v.update(zip(self.names, self.params))
        for n in self.graph.node:
            a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
            i = [v[k] for k in n.input]
            if n.op_type == "Conv":
                p = a.get("pads", [0, 0, 0, 0])
                out = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a.get("strides", 1), padding=p[:2])
            elif n.op_type == "Relu":
                out = F.relu(i[0])
            elif n.op_type == "MaxPool":
                out = F.max_pool2d(i[0], a["kernel_shape"], a.get("strides"))
            elif n.op_type == "Flatten":
                out = torch.flatten(i[0], a.get("axis", 1))
            elif n.op_type == "Gemm":
                out = F.linear(i[0], i[1] if a.get("transB", 0) else i[1].t(), i[2] if len(i) > 2 else None)
            else:
                sys.exit(f"landscape_pytorch.py: op {n.op_type} not supported")
            v[n.output[0]] = out
        return v[self.output]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("landscape")
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run", default="landscape")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    set_blas_threads(a.threads)
    require_fast_blas("landscape_pytorch.py")
    net = OnnxNet(a.model)
    x, y = load_fmnist_test(a.samples)
    with h5py.File(a.landscape, "r") as f:
        g = f[a.run]
        xs, ys = g["xcoordinates"][:], g["ycoordinates"][:]
        dx, dy = torch.from_numpy(g["xdirection"][:]), torch.from_numpy(g["ydirection"][:])
        ref = g["train_loss"][:]
    w0 = torch.cat([p.reshape(-1).double() for p in net.params])
    loss = np.zeros((len(xs), len(ys)))
    acc = np.zeros_like(loss)
    with torch.no_grad():
        t = time.perf_counter()
        for i, alpha in enumerate(xs):
            for j, beta in enumerate(ys):
                net.set_flat((w0 + alpha * dx + beta * dy).float())
                out = net.forward(x)
                loss[i, j] = F.cross_entropy(out, y).item()
                acc[i, j] = 100.0 * (out.argmax(1) == y).float().mean().item()
        s = time.perf_counter() - t
    n = len(xs) * len(ys)
    print(json.dumps({"points": n, "samples": a.samples, "threads": a.threads, "seconds": s,
                      "points_per_second": n / s, "max_abs_loss_diff": float(np.abs(loss - ref).max()),
                      "max_rel_loss_diff": float((np.abs(loss - ref) / np.abs(ref)).max())}))


if __name__ == "__main__":
    main()
