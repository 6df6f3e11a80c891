#!/usr/bin/python3
"""PyTorch side of bench/compare_lm.sh: loss, gradient and double-backward HVP of a token-input
language model, rebuilt in PyTorch from its module definition and the weights of its ONNX file, on
a batch of sequences that this script also writes as an npz dataset for curv.

    /usr/bin/python3 bench/pytorch_lm_hvp.py MODEL.onnx --kind bert_cls|gpt_lm|char_gpt|license_bert
        --write-data OUT.npz [--source-data VAL.npz] [--sequences 128] [--threads 2] [--reps 5]

Kinds (module definitions are imported from the scripts that exported the ONNX files, so the
PyTorch model is the exported one, not a look-alike):
  bert_cls, gpt_lm          scripts/make_lm_fixtures.py TinyBert / TinyGPT (data/fixtures/lm/):
                            the batch is drawn here (seeded): token ids, for bert_cls an attention
                            mask with random padding (position 0 always kept) and class labels, for
                            gpt_lm next-token targets with -100 on the last position
  char_gpt, license_bert    scripts/train_text_models.py CharGPT / LicenseBert (data/): the first
                            --sequences rows of --source-data, tiled when it has fewer
Weights: each PyTorch parameter takes the ONNX initializer of its own name; parameters the
exporter renamed (Linear weights stored transposed for MatMul) take the unused initializers of
their shape (read transposed when the graph feeds them to MatMul as W^T) in the order the graph first uses them, which is the order the
modules run in these models. The loss printed next to curv's checks the mapping.

Prints one JSON line on stdout: sequences, threads, params, loss (float32 value), and median
seconds over --reps after one warm-up of loss_s (forward + loss, no_grad), grad_s (forward +
backward), hvp_s (forward + gradient with create_graph=True + grad of g.v: a full double-backward
HVP), hvp_only_s (the double backward on the kept gradient graph); *_min_s are the minima;
*_rss the peak resident memory of the process during one more call (bytes; hvp_only's includes the
kept graph, the others do not); fwd_flops the FLOPs of one forward pass's matrix products.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import torch
from torch_blas import require_fast_blas, set_blas_threads  # noqa: E402  (bench/)
from scale_torch import reset_peak, rss  # noqa: E402  (bench/)
import torch.nn.functional as F
from onnx import numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IGNORE = -100


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def onnx_weights(path):
    """Initializers by name, and the names in the order the graph's nodes first read them."""
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    order, matmul_b = [], set()
    for node in g.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            matmul_b.add(node.input[1])
        for name in node.input:
            if name in inits and name not in order:
                order.append(name)
    order += [n for n in inits if n not in order]
    # A Linear weight W [out, in] feeding MatMul as its second input is stored as W^T.
    for name in matmul_b:
        if inits[name].ndim == 2:
            inits[name] = inits[name].T
    return inits, order


def load_weights(net, path):
    inits, order = onnx_weights(path)
    used = set()
    state = {}
    for name, q in net.named_parameters():
        shape = tuple(q.shape)
        if name in inits and inits[name].shape == shape:
            state[name] = inits[name]
            used.add(name)
            continue
        hit = None
        for k in order:
            if k in used:
                continue
            if inits[k].shape == shape:
                hit = (k, inits[k])
                break
        if hit is None:
            raise SystemExit("%s: no initializer for parameter %s %s" % (path, name, shape))
        used.add(hit[0])
        state[name] = hit[1]
    with torch.no_grad():
        for name, q in net.named_parameters():
            q.copy_(torch.from_numpy(np.array(state[name])))
    return net


def build(kind, path, n, source, seed):
    """The module with the ONNX weights, the model inputs (dict, in the ONNX input order), the labels."""
    gen = torch.Generator().manual_seed(seed)
    if kind in ("bert_cls", "gpt_lm"):
        fx = load_script("make_lm_fixtures")
        V, T, C = fx.V, fx.T, fx.C
        ids = torch.randint(0, V, (n, T), generator=gen)
        if kind == "bert_cls":
            net = fx.TinyBert()
            keep = torch.randint(1, T + 1, (n,), generator=gen)
            mask = (torch.arange(T)[None, :] < keep[:, None]).to(torch.int64)
            inputs = {"input_ids": ids, "attention_mask": mask}
            y = torch.randint(0, C, (n,), generator=gen)
        else:
            net = fx.TinyGPT()
            inputs = {"input_ids": ids}
            y = torch.full((n, T), IGNORE, dtype=torch.int64)
            y[:, :-1] = ids[:, 1:]
    else:
        tm = load_script("train_text_models")
        inits, _ = onnx_weights(path)
        vocab = inits["tok.weight"].shape[0] if "tok.weight" in inits else None
        if vocab is None:
            raise SystemExit("%s: no initializer tok.weight (the token embedding)" % path)
        d = np.load(source)
        idx = np.arange(n) % d["y"].shape[0]
        if kind == "char_gpt":
            net = tm.CharGPT(vocab)
            inputs = {"input_ids": torch.from_numpy(d["input_ids"][idx].astype(np.int64))}
        else:
            classes = int(d["y"].max()) + 1
            for k, a in inits.items():  # the head's bias gives the class count exactly
                if a.ndim == 1 and k.startswith("head"):
                    classes = a.shape[0]
            net = tm.LicenseBert(vocab, classes)
            inputs = {"input_ids": torch.from_numpy(d["input_ids"][idx].astype(np.int64)),
                      "attention_mask": torch.from_numpy(d["attention_mask"][idx].astype(np.int64))}
        y = torch.from_numpy(d["y"][idx].astype(np.int64))
    net = load_weights(net.eval(), path)
    return net, inputs, y


def forward_flops(f_loss):
    """FLOPs of the matrix products of one forward pass over the whole batch (Linear layers and
    attention's batched products, 2 per multiply-add), as PyTorch's profiler counts them."""
    from torch.profiler import profile
    with profile(with_flops=True) as prof:
        f_loss()
    return int(sum(e.flops for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")))


def peak_rss_of(fn):
    """Peak resident memory of the whole process (VmHWM, bytes) during one more call of fn, after
    resetting the peak to the current resident set (bench/scale_torch.py's helpers)."""
    reset_peak()
    fn()
    return rss("VmHWM")


def timed(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--kind", required=True, choices=["bert_cls", "gpt_lm", "char_gpt", "license_bert"])
    ap.add_argument("--write-data", required=True, metavar="NPZ", help="the batch, for curv")
    ap.add_argument("--source-data", metavar="NPZ", help="held-out data of char_gpt / license_bert")
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    set_blas_threads(a.threads)
    require_fast_blas("pytorch_lm_hvp.py")
    torch.manual_seed(a.seed)

    net, inputs, y = build(a.kind, a.model, a.sequences, a.source_data, a.seed)
    np.savez(a.write_data, y=y.numpy(), **{k: v.numpy() for k, v in inputs.items()})
    params = [q for q in net.parameters() if q.requires_grad]
    args = tuple(inputs.values())
    lm = y.dim() == 2

    def loss_of(z):
        if lm:
            return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        return F.cross_entropy(z, y)

    gen = torch.Generator().manual_seed(a.seed + 1)
    vs = [torch.randn(q.shape, generator=gen) for q in params]

    def f_loss():
        with torch.no_grad():
            return loss_of(net(*args)).item()

    def f_grad():
        return torch.autograd.grad(loss_of(net(*args)), params)

    def f_hvp():
        g = torch.autograd.grad(loss_of(net(*args)), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vs)

    kept = torch.autograd.grad(loss_of(net(*args)), params, create_graph=True)

    def f_hvp_only():
        return torch.autograd.grad(kept, params, grad_outputs=vs, retain_graph=True)

    res = {"kind": a.kind, "sequences": a.sequences, "tokens_per_sequence": int(args[0].shape[1]),
           "threads": a.threads, "params": sum(q.numel() for q in params), "loss": f_loss()}
    for key, fn in (("loss", f_loss), ("grad", f_grad), ("hvp", f_hvp), ("hvp_only", f_hvp_only)):
        res[key + "_s"], res[key + "_min_s"] = timed(fn, a.reps)
    # Memory and FLOPs after every timing (trimming the heap between calls, as the peak
    # measurement does, made PyTorch's later calls up to 2.4x slower); the gradient's and the full
    # HVP's peaks without the kept graph.
    res["hvp_only_rss"] = peak_rss_of(f_hvp_only)
    del kept
    for key, fn in (("loss", f_loss), ("grad", f_grad), ("hvp", f_hvp)):
        res[key + "_rss"] = peak_rss_of(fn)
    res["fwd_flops"] = forward_flops(f_loss)
    res["torch_version"] = torch.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
