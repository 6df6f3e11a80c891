#!/usr/bin/python3
"""Models and PyTorch baselines for bench/scale.sh.

    scale_torch.py export --cache DIR [--samples 128] [--models resnet20,resnet18,...]
    scale_torch.py time   --cache DIR --model NAME [--threads 2] [--reps 3]

`export` writes, once per name, DIR/<name>.onnx (what curv loads), DIR/<name>.pt (the same module
for the PyTorch side) and DIR/data_<samples>.npz (x: float32 [N, 3, 32, 32] standard normal,
y: int64 labels), the inputs both sides use. Models, all with 10 classes and BatchNorm folded into
the convolutions (eval mode, as the exported ONNX computes):
  resnet20      CIFAR ResNet-20 of bench/pytorch_hvp.py (option B shortcuts)
  resnet18, mobilenet_v2, resnet50   torchvision, random init, BatchNorm statistics calibrated
                on the data (one train-mode pass), then folded by torch.fx
  bert-small    a transformer encoder of BERT-small size (BERT_SMALL below: 4 pre-LayerNorm blocks,
                width 512, 8 heads, feed-forward 2048, GELU, vocabulary 30522, 128 positions),
                token and position embeddings, mean-pooled final LayerNorm and a 10-class head;
                random init. Its inputs are DIR/tokens_<samples>.npz (x: int64 token ids
                [N, 128], uniform over the vocabulary; y: int64 labels)

`time` prints one JSON line with the forward multiply-adds per sample of the convolutions and
linear layers (fwd_macs, for FLOP floors; useful_macs: only the kernel taps that read the input,
not padding), and the best of --reps runs (after one warm-up) of:
  grad_s       forward + backward (torch.autograd.grad of the mean cross-entropy)
  hvp_s        forward + gradient with create_graph=True + double backward (a full PyHessian HVP)
  hvp_only_s   double backward on the kept gradient graph (PyHessian's repeated products)
  ggn_s        J^T H_loss J v on the kept forward graph: J v by the double-vjp trick, then one vjp
and for each, peak resident memory (VmHWM after resetting it, bytes) as <name>_rss; base_rss is
the resident memory before the first measurement.
"""
import argparse
import ctypes
import gc
import json
import os
import sys
import time

import numpy as np
import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_hvp import ResNet20, fold_bn, randomize_bn  # noqa: E402

MODELS = ("resnet20", "resnet18", "mobilenet_v2", "resnet50", "bert-small")
# BERT-small (Turc et al. 2019: L=4, H=512, A=8) with BERT's WordPiece vocabulary size.
BERT_SMALL = dict(layers=4, width=512, heads=8, ffn=2048, vocab=30522, seq=128)


def data_path(cache, samples):
    return os.path.join(cache, f"data_{samples}.npz")


def cached_batch(path, draw):
    """The (x, y) batch stored at path, drawn once by draw(gen) with a fixed seed."""
    if not os.path.exists(path):
        x, y = draw(np.random.default_rng(7))
        np.savez(path + ".tmp.npz", x=x, y=y)
        os.replace(path + ".tmp.npz", path)
    d = np.load(path)
    return torch.from_numpy(d["x"]), torch.from_numpy(d["y"])


def make_data(cache, samples):
    return cached_batch(data_path(cache, samples),
                        lambda gen: (gen.standard_normal((samples, 3, 32, 32), dtype=np.float32),
                                     gen.integers(0, 10, samples, dtype=np.int64)))


def tokens_path(cache, samples):
    return os.path.join(cache, f"tokens_{samples}.npz")


def make_tokens(cache, samples):
    return cached_batch(tokens_path(cache, samples),
                        lambda gen: (gen.integers(0, BERT_SMALL["vocab"], (samples, BERT_SMALL["seq"]), dtype=np.int64),
                                     gen.integers(0, 10, samples, dtype=np.int64)))


def inputs(cache, name, samples):
    return make_tokens(cache, samples) if name.startswith("bert") else make_data(cache, samples)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer encoder block (bidirectional attention, GELU feed-forward)."""

    def __init__(self, width, heads, ffn):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, ffn)
        self.out = nn.Linear(ffn, width)

    def forward(self, x):
        n, t, c = x.shape
        h, d = self.heads, c // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.view(n, t, h, d).transpose(1, 2)
        k = k.view(n, t, h, d).transpose(1, 2)
        v = v.view(n, t, h, d).transpose(1, 2)
        att = torch.softmax((q @ k.transpose(-2, -1)) * (1.0 / d ** 0.5), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, c))
        return x + self.out(nn.functional.gelu(self.fc(self.ln2(x))))


class BertSmall(nn.Module):
    def __init__(self, layers, width, heads, ffn, vocab, seq, classes=10):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq, width)
        self.blocks = nn.ModuleList([EncoderBlock(width, heads, ffn) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids):
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x).mean(1))


def build(name, x):
    torch.manual_seed(0)
    if name == "bert-small":
        net = BertSmall(**BERT_SMALL)
        with torch.no_grad():  # BERT's initialization scale
            for p in net.parameters():
                if p.dim() > 1:
                    p.normal_(0, 0.02)
        return net.eval()
    if name == "resnet20":
        net = ResNet20("B")
        randomize_bn(net, torch.Generator().manual_seed(1))
        return fold_bn(net.eval())
    import torchvision
    from torch.fx.experimental.optimization import fuse
    net = getattr(torchvision.models, name)(num_classes=10)
    # BatchNorm statistics of the data (cumulative average over one pass), so activations keep
    # a sensible scale through 50 layers of random weights.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(x)
    return fuse(net.eval())


def export(args):
    os.makedirs(args.cache, exist_ok=True)
    for name in args.models.split(","):
        x, _ = inputs(args.cache, name, args.samples)
        onnx_path = os.path.join(args.cache, name + ".onnx")
        if os.path.exists(onnx_path):
            continue
        model = build(name, x)
        torch.save(model, os.path.join(args.cache, name + ".pt"))
        # opset 17 exports LayerNorm as one LayerNormalization node
        opset = 17 if name.startswith("bert") else 13
        torch.onnx.export(model, x[:2], onnx_path + ".tmp", opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
        os.replace(onnx_path + ".tmp", onnx_path)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters -> {onnx_path}", file=sys.stderr)


def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


_libc = ctypes.CDLL("libc.so.6")


def reset_peak():
    gc.collect()
    _libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(fn, reps):
    """Best wall time of `reps` runs after a warm-up, and the peak RSS of one more run."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    reset_peak()
    fn()
    return best, rss("VmHWM")


def taps_in_input(size_in, size_out, k, stride, pad, dil):
    """Sum over the output positions of one spatial dimension of the kernel taps that read an
    input position (not padding)."""
    return sum(sum(1 for t in range(k) if 0 <= o * stride - pad + t * dil < size_in) for o in range(size_out))


def forward_macs(model, x1):
    """Multiply-adds of the Conv2d and Linear layers for one sample, and of attention's two
    batched products (QK^T and AV: 2 t^2 width per sample): every kernel tap (the FLOP floor), and
    only the taps that read the input (`useful`: no convolution needs to multiply padding)."""
    total, useful = [0], [0]
    for m in model.modules():
        if isinstance(m, EncoderBlock):
            t, c = x1.shape[1], m.qkv.in_features
            total[0] += 2 * t * t * c
            useful[0] += 2 * t * t * c

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            if isinstance(m.padding, str):  # "same" / "valid": counted as the floor
                useful[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
                return
            (h, w), (ho, wo) = inp[0].shape[-2:], out.shape[-2:]
            th = taps_in_input(h, ho, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
            tw = taps_in_input(w, wo, m.kernel_size[1], m.stride[1], m.padding[1], m.dilation[1])
            useful[0] += out.shape[1] * (m.in_channels // m.groups) * th * tw
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() * m.in_features
            useful[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x1)
    for h in hs:
        h.remove()
    return total[0], useful[0]


def time_model(args):
    torch.set_num_threads(args.threads)
    set_blas_threads(args.threads)
    require_fast_blas("scale_torch.py")
    x, y = inputs(args.cache, args.model, args.samples)
    model = torch.load(os.path.join(args.cache, args.model + ".pt"))
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    lossf = nn.CrossEntropyLoss()
    res = {"model": args.model, "samples": len(x), "threads": args.threads,
           "params": sum(p.numel() for p in params), "torch_version": torch.__version__}
    res["fwd_macs"], res["useful_macs"] = forward_macs(model, x[:1])
    reset_peak()
    res["base_rss"] = rss("VmRSS")

    def f_grad():
        return torch.autograd.grad(lossf(model(x), y), params)

    def f_hvp():
        g = torch.autograd.grad(lossf(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vs)

    res["grad_s"], res["grad_rss"] = measure(f_grad, args.reps)
    gen = torch.Generator().manual_seed(3)
    vs = [torch.randn(p.shape, generator=gen) for p in params]  # after the gradient, which does not use it
    res["hvp_s"], res["hvp_rss"] = measure(f_hvp, args.reps)

    grads = torch.autograd.grad(lossf(model(x), y), params, create_graph=True)

    def f_hvp_only():
        return torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)

    res["hvp_only_s"], res["hvp_only_rss"] = measure(f_hvp_only, args.reps)
    del grads

    z = model(x)
    probs = torch.softmax(z.detach(), dim=1)

    def f_ggn():
        u = torch.zeros_like(z, requires_grad=True)
        ju = torch.autograd.grad(z, params, grad_outputs=u, create_graph=True, retain_graph=True)
        jv = torch.autograd.grad(ju, u, grad_outputs=vs)[0]  # J v (double-vjp trick)
        hjv = (probs * jv - probs * (probs * jv).sum(1, keepdim=True)) / len(x)  # cross-entropy Hessian
        return torch.autograd.grad(z, params, grad_outputs=hjv, retain_graph=True)

    res["ggn_s"], res["ggn_rss"] = measure(f_ggn, args.reps)
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--cache", required=True)
    e.add_argument("--samples", type=int, default=128)
    e.add_argument("--models", default=",".join(MODELS))
    t = sub.add_parser("time")
    t.add_argument("--cache", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--samples", type=int, default=128)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    export(args) if args.cmd == "export" else time_model(args)


if __name__ == "__main__":
    main()
