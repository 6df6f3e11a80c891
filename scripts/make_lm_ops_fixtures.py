#!/usr/bin/python3
"""PyTorch references for the language-model ops (tests/test_io.cpp, "ONNX fixtures match PyTorch").

Run with Debian's python: /usr/bin/python3 scripts/make_lm_ops_fixtures.py
Writes data/fixtures/lmops/<name>.onnx and <name>.npz (a few KB each) in the format of
scripts/make_vision_fixtures.py (batch, logits, loss, gradient, a seeded direction with its HVP by
double backward and its GGN-vector product, float64 and float32). The models take float inputs
[N, T, C] (token embeddings as data) and produce class logits:
  - causal_attention_op{14,17}: a GPT-style block, causal mask as a registered torch.tril buffer
    with masked_fill(mask == 0, -inf) (Slice, Equal, Where), a data-dependent padding mask from
    the input (Greater, Not, Where with -1e4), LayerNorm and GELU(approximate="tanh");
  - einsum_attention_op{14,17}: a mask by torch.tril on a bool tensor (Trilu, Not, Where),
    attention by torch.einsum with a transpose in the equation, bilinear layers written as
    einsum "bi,oij,bj->bo" and "oji,bi,bj->bo" (nn.Bilinear itself has no ONNX export);
  - minmax_op{13,17,18}: torch.maximum / minimum / abs / amax (ReduceMax; opset 18, converted
    from PyTorch's opset 17 by onnx.version_converter, gives its axes as an input) / expand /
    repeat (Tile) / arange (Range, folded at import) / clamp;
  - cls_token_op17: a ViT-style class token expanded to the batch and concatenated before the
    tokens (Expand to a batch-dependent shape feeding Concat), `--only cls_token_op17` remakes it.
"""
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from make_vision_fixtures import randomize, references  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "lmops")
T, C, H = 5, 8, 2


class CausalAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, 2 * C)
        self.fc2 = nn.Linear(2 * C, C)
        self.head = nn.Linear(C, 3)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        B, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (z.view(B, t, H, C // H).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (C // H) ** 0.5
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
        keep = x[:, :, 0] > 0.2  # padding mask computed from the data
        att = att.masked_fill(~keep[:, None, None, :], -1e4)
        h = x + self.proj((torch.softmax(att, -1) @ v).transpose(1, 2).reshape(B, t, C))
        h = h + self.fc2(nn.functional.gelu(self.fc1(self.ln2(h)), approximate="tanh"))
        return self.head(h.mean(dim=1))


class EinsumAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)
        self.w2 = nn.Parameter(torch.zeros(4, C, C))  # nn.Bilinear's weight (it has no ONNX export)
        self.w = nn.Parameter(torch.zeros(3, C, C))
        self.head = nn.Linear(4 + 3, 3)

    def forward(self, x):
        B, t, _ = x.shape
        q, k, v = (m(x).view(B, t, H, C // H) for m in (self.q, self.k, self.v))
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        att = torch.einsum("bqhd,bkhd->bhqk", q, k).masked_fill(~causal, float("-inf"))
        o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(att, -1), v).reshape(B, t, C)
        a, b = o.mean(dim=1), x.mean(dim=1)
        return self.head(torch.cat([torch.einsum("oji,bi,bj->bo", self.w2, b, a), torch.einsum("bi,oij,bj->bo", a, self.w, b)], dim=1))


class MinMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(C, C)
        self.fc2 = nn.Linear(C, C)
        self.scale = nn.Parameter(torch.zeros(1, 1, C))
        self.head = nn.Linear(2 * C, 3)

    def forward(self, x):
        B, t, _ = x.shape
        a, b = self.fc1(x), self.fc2(x)
        h = torch.maximum(a, b) + torch.minimum(a, 0.5 * b) + torch.abs(a - b)
        h = h + self.scale.expand(B, t, C) * torch.arange(t, dtype=torch.float32)[None, :, None]
        m = h.amax(dim=1)  # ReduceMax over time
        r = torch.clamp(h, -1.0, 1.0).repeat(1, 1, 2)  # Tile
        return self.head(torch.cat([m, r.amax(dim=(1, 2), keepdim=True).squeeze(1).expand(B, C)], dim=1))


class ClsToken(nn.Module):
    """A ViT-style encoder head: a class token expanded to the batch (cls.expand(B, -1, -1), an
    Expand whose target depends on the batch size) and concatenated before the tokens, a position
    embedding, LayerNorm, an MLP, classified from the class token."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(C, C)
        self.cls = nn.Parameter(torch.zeros(1, 1, C))
        self.pos = nn.Parameter(torch.zeros(1, T + 1, C))
        self.ln = nn.LayerNorm(C)
        self.fc = nn.Linear(C, C)
        self.head = nn.Linear(C, 3)

    def forward(self, x):
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], dim=1) + self.pos
        h = h + self.fc(torch.tanh(self.ln(h)))
        return self.head(h[:, 0])


def match_initializers(path, net):
    """ONNX initializer of each PyTorch parameter, and whether it holds the transpose (the exporter
    folds a Linear's W^T into MatMul's operand). Every parameter is random, so values identify it."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    names, transposed = [], []
    for n, q in net.named_parameters():
        a = q.detach().numpy()
        hits = [(k, 0) for k, b in inits.items() if b.shape == a.shape and np.array_equal(b, a)]
        if not hits and a.ndim == 2:
            hits = [(k, 1) for k, b in inits.items() if b.shape == a.T.shape and np.array_equal(b, a.T)]
        if len(hits) != 1:
            raise SystemExit("%s: parameter %s matches initializers %s" % (path, n, hits))
        names.append(hits[0][0])
        transposed.append(hits[0][1])
    return names, transposed


def to_opset18(model):
    """Opset 17 -> 18 (PyTorch exports up to 17, and onnx's version_converter stops there too): the
    reductions other than ReduceSum take their axes as an input instead of an attribute, the one
    change of opset 18 that these models meet."""
    g = model.graph
    for n in g.node:
        if n.op_type.startswith("Reduce") and n.op_type != "ReduceSum":
            for a in list(n.attribute):
                if a.name == "axes":
                    name = n.name + "/axes"
                    g.initializer.append(numpy_helper.from_array(np.array(a.ints, dtype=np.int64), name))
                    n.input.append(name)
                    n.attribute.remove(a)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 18
    return model  # (not onnx.checker: Debian's onnx predates the opset-18 schemas)


def make(name, factory, shape, opset, samples=4, convert_to=None):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    torch.manual_seed(0)
    net = factory().eval()
    randomize(net, gen)
    x = torch.rand(samples, *shape, generator=gen)
    y = torch.randint(0, 3, (samples,), generator=gen)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=opset,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    if convert_to == 18:
        onnx.save(to_opset18(onnx.load(path)), path)
    ref = references(factory, net, x, y, gen)
    onnx_names, transposed = match_initializers(path, net)
    np.savez_compressed(os.path.join(OUT, name + ".npz"), x=x.numpy(), y=y.numpy(), onnx_param=np.array(onnx_names),
                        onnx_param_transposed=np.array(transposed, dtype=np.int64), **ref)
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print("wrote", path, os.path.getsize(path), "bytes; loss", ref["loss"], "ops", " ".join(ops))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["--only", "cls_token_op17"]:  # (each model has its own seed)
        make("cls_token_op17", ClsToken, (T, C), 17)
        sys.exit(0)
    for op in (14, 17):
        make("causal_attention_op%d" % op, CausalAttention, (T, C), op)
        make("einsum_attention_op%d" % op, EinsumAttention, (T, C), op)
    make("minmax_op13", MinMax, (T, C), 13)
    make("minmax_op17", MinMax, (T, C), 17)
    make("minmax_op18", MinMax, (T, C), 17, convert_to=18)
    make("cls_token_op17", ClsToken, (T, C), 17)
