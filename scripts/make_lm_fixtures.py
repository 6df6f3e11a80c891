#!/usr/bin/python3
"""PyTorch references for token inputs and language models (tests/test_language_model.cpp).

Run with Debian's python: /usr/bin/python3 scripts/make_lm_fixtures.py
Writes data/fixtures/lm/ (about 800 KB in all):

  bert_cls.onnx, bert_cls64.onnx   a BERT-style encoder classifier: token ids (int64) and an
                                   attention mask (int64, 1 = keep), one post-LN encoder layer,
                                   classified from position 0; float32 and float64 exports of the
                                   same seeded weights
  bert_cls.npz                     the batch: input_ids, attention_mask, y [N]
  gpt_lm.onnx, gpt_lm64.onnx       a GPT-style causal LM: token ids, one pre-LN block, logits
                                   [N, T, V]; the causal mask is the buffer `causal_mask` (0 on and
                                   below the diagonal, -1e4 above) added to the scores, so the
                                   graph needs no Trilu/Where (import with freeze regex
                                   "causal_mask": it is an initializer, not a weight)
  bert_cls_where*.onnx,            the same models with the masks applied the ordinary way,
  gpt_lm_tril*.onnx                masked_fill(mask == 0, -inf) and masked_fill(tril == 0, -inf)
                                   (ONNX Equal and Where); same data, own references
  gpt_lm.npz, gpt_lm.h5            the batch: input_ids [N, T], y [N, T] next-token targets with
                                   ignore_index -100 on the last position and on padding
  <model>_ref.npz                  PyTorch's logits, loss, gradient, a seeded direction v with the
                                   HVP (double backward) and GGN-vector product, in float64 (from
                                   the float64 model) and float32 (suffix 32); param_names,
                                   shape/<name>, and the ONNX initializer of each parameter in
                                   each export (onnx_param, onnx_param64; matched by value,
                                   onnx_param_transposed when the exporter stored W^T)
  gpt_lm_tied*.onnx, gpt_lm_tied.npz
                                   TinyGPT with the LM head tied to the token embedding
                                   (logits = h tok.weight^T): the exporter stores the transposed
                                   copy as a second initializer, which curv must tie back; own
                                   seed and batch (`--only gpt_lm_tied` remakes just these)
  bad_*.npz                        bad inputs: a token id out of the vocabulary, a dataset
                                   without the attention mask, a mask of the wrong shape, LM
                                   targets that do not fit the logits

The loss is torch.nn.functional.cross_entropy (mean over non-ignored positions for the LM).
"""
import math
import os
import sys

import h5py
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import stateless

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "fixtures", "lm")
V, T, D, H, C, N = 24, 8, 16, 2, 3, 4
IGNORE = -100


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def forward(self, h, bias=None, drop=None):
        """`bias` is added to the scores; where `drop` is true they become -inf (masked_fill)."""
        dh = D // H
        q = self.q(h).reshape(-1, T, H, dh).transpose(1, 2)
        k = self.k(h).reshape(-1, T, H, dh).transpose(1, 2)
        v = self.v(h).reshape(-1, T, H, dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        if bias is not None:
            scores = scores + bias
        if drop is not None:
            scores = scores.masked_fill(drop, float("-inf"))
        a = torch.softmax(scores, dim=-1) @ v
        return self.o(a.transpose(1, 2).reshape(-1, T, D))


class TinyBert(nn.Module):
    """Token and position embeddings, LayerNorm, one post-LN encoder layer (attention with the
    padding mask as an additive bias, as BERT extends attention_mask), a GELU MLP, and a
    classifier on position 0."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.zeros(T, D))
        self.ln0 = nn.LayerNorm(D)
        self.attn = Attention()
        self.ln1 = nn.LayerNorm(D)
        self.ff1 = nn.Linear(D, 2 * D)
        self.ff2 = nn.Linear(2 * D, D)
        self.ln2 = nn.LayerNorm(D)
        self.cls = nn.Linear(D, C)

    def forward(self, input_ids, attention_mask):
        h = self.ln0(self.tok(input_ids) + self.pos)
        bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0
        h = self.ln1(h + self.attn(h, bias=bias))
        h = self.ln2(h + self.ff2(nn.functional.gelu(self.ff1(h))))
        return self.cls(h[:, 0])


class TinyGPT(nn.Module):
    """Token and position embeddings, one pre-LN block with causal attention (the mask a constant
    buffer added to the scores), a GELU MLP, a final LayerNorm and an untied LM head."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.zeros(T, D))
        self.ln1 = nn.LayerNorm(D)
        self.attn = Attention()
        self.ln2 = nn.LayerNorm(D)
        self.ff1 = nn.Linear(D, 2 * D)
        self.ff2 = nn.Linear(2 * D, D)
        self.lnf = nn.LayerNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        self.register_buffer("causal_mask", torch.triu(torch.full((T, T), -10000.0), diagonal=1))

    def forward(self, input_ids):
        h = self.tok(input_ids) + self.pos
        h = h + self.attn(self.ln1(h), bias=self.causal_mask)
        h = h + self.ff2(nn.functional.gelu(self.ff1(self.ln2(h))))
        return self.head(self.lnf(h))


class TinyBertWhere(TinyBert):
    """TinyBert with the padding mask applied the ordinary way: masked_fill(mask == 0, -inf)
    (ONNX Equal and Where on the data)."""

    def forward(self, input_ids, attention_mask):
        h = self.ln0(self.tok(input_ids) + self.pos)
        h = self.ln1(h + self.attn(h, drop=(attention_mask == 0)[:, None, None, :]))
        h = self.ln2(h + self.ff2(nn.functional.gelu(self.ff1(h))))
        return self.cls(h[:, 0])


class TinyGPTTril(TinyGPT):
    """TinyGPT with the causal mask the ordinary way: a tril buffer of ones and
    masked_fill(tril == 0, -inf) (ONNX Equal and Where on a constant)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("tril", torch.tril(torch.ones(T, T)))

    def forward(self, input_ids):
        h = self.tok(input_ids) + self.pos
        h = h + self.attn(self.ln1(h), drop=self.tril == 0)
        h = h + self.ff2(nn.functional.gelu(self.ff1(self.ln2(h))))
        return self.head(self.lnf(h))


class TinyGPTTied(TinyGPT):
    """TinyGPT whose LM head is the token embedding (weight tying, as GPT-2 does)."""

    def __init__(self):
        super().__init__()
        del self.head

    def forward(self, input_ids):
        h = self.tok(input_ids) + self.pos
        h = h + self.attn(self.ln1(h), bias=self.causal_mask)
        h = h + self.ff2(nn.functional.gelu(self.ff1(self.ln2(h))))
        return nn.functional.linear(self.lnf(h), self.tok.weight)


def randomize(net, gen):
    with torch.no_grad():
        for name, q in net.named_parameters():
            if name.startswith("ln") and name.endswith("weight"):
                q.copy_(1 + 0.2 * torch.randn(q.shape, generator=gen))
            else:
                scale = 0.5 if q.dim() == 1 or name in ("pos", "tok.weight") else q.shape[1] ** -0.5
                q.copy_(torch.randn(q.shape, generator=gen) * scale)


def match_initializers(path, net):
    """ONNX initializer of each parameter (matched by value, or by the value of its transpose) and
    whether it is stored transposed."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    names, transposed = [], []
    for n, q in net.named_parameters():
        a = q.detach().numpy()
        hit = [k for k, b in inits.items() if b.shape == a.shape and np.array_equal(b, a)]
        if len(hit) == 1:
            names.append(hit[0])
            transposed.append(0)
            continue
        hit = [k for k, b in inits.items() if a.ndim == 2 and b.shape == a.T.shape and np.array_equal(b, a.T)]
        if len(hit) != 1:
            raise SystemExit("%s: parameter %s matches initializers %s" % (path, n, hit))
        names.append(hit[0])
        transposed.append(1)
    return names, transposed


def loss_of(z, y, lm):
    if lm:
        return nn.functional.cross_entropy(z.reshape(-1, V), y.reshape(-1), ignore_index=IGNORE)
    return nn.functional.cross_entropy(z, y)


def references(net, inputs, y, lm, v64, suffix):
    """Logits, loss, gradient, HVP (double backward) and GGN-vector product at v."""
    names = [n for n, _ in net.named_parameters()]
    params = [q.detach().clone().requires_grad_(True) for _, q in net.named_parameters()]
    v = [t.to(params[0].dtype) for t in v64]

    def f(*ps):
        return stateless.functional_call(net, dict(zip(names, ps)), inputs)

    z = f(*params)
    loss = loss_of(z, y, lm)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hvp = torch.autograd.grad(grads, params, grad_outputs=v)
    _, jv = torch.autograd.functional.jvp(f, tuple(q.detach() for q in params), tuple(v))
    prob = torch.softmax(z.detach(), -1)
    keep = (y != IGNORE).to(z.dtype) if lm else torch.ones(y.shape, dtype=z.dtype)
    hu = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) * keep[..., None] / keep.sum()
    ggn = torch.autograd.grad(f(*params), params, grad_outputs=hu)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    return {"logits" + suffix: z.detach().numpy(), "loss" + suffix: np.array(loss.item()),
            "grad" + suffix: flat(grads), "hvp" + suffix: flat(hvp), "ggn_v" + suffix: flat(ggn)}


def export(net, inputs, names, path):
    axes = {n: {0: "N"} for n in names}
    axes["logits"] = {0: "N"}
    torch.onnx.export(net, inputs, path, input_names=names, output_names=["logits"], opset_version=17,
                      dynamic_axes=axes, do_constant_folding=True)


def make(name, factory, inputs, names, y, lm, gen):
    torch.manual_seed(0)
    net = factory().eval()
    randomize(net, gen)
    net64 = factory().double().eval()
    net64.load_state_dict(net.state_dict())
    path, path64 = os.path.join(OUT, name + ".onnx"), os.path.join(OUT, name + "64.onnx")
    export(net, inputs, names, path)
    export(net64, inputs, names, path64)
    onnx_names, transposed = match_initializers(path, net)
    onnx_names64, transposed64 = match_initializers(path64, net64)
    if transposed != transposed64:
        raise SystemExit(name + ": the float32 and float64 exports store different weights transposed")
    v = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in net.parameters()]
    ref = references(net64, inputs, y, lm, v, "")
    ref.update(references(net, inputs, y, lm, v, "32"))
    shapes = {"shape/" + n: np.array(q.shape, dtype=np.int64) for n, q in net.named_parameters()}
    np.savez_compressed(os.path.join(OUT, name + "_ref.npz"), v=torch.cat([t.reshape(-1) for t in v]).numpy(),
                        param_names=np.array([n for n, _ in net.named_parameters()]),
                        onnx_param=np.array(onnx_names), onnx_param64=np.array(onnx_names64),
                        onnx_param_transposed=np.array(transposed, dtype=np.int64), **shapes, **ref)
    print("wrote", path, os.path.getsize(path), "bytes; loss", ref["loss"], "loss32", ref["loss32"])


def make_tied():
    gen = torch.Generator().manual_seed(29)
    ids = torch.randint(0, V, (N, T), generator=gen)
    target = torch.full((N, T), IGNORE, dtype=torch.int64)
    target[:, :-1] = ids[:, 1:]
    make("gpt_lm_tied", TinyGPTTied, (ids,), ["input_ids"], target, True, gen)
    np.savez(os.path.join(OUT, "gpt_lm_tied.npz"), input_ids=ids.numpy(), y=target.numpy())


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["--only", "gpt_lm_tied"]:
        make_tied()
        return
    gen = torch.Generator().manual_seed(13)
    ids = torch.randint(0, V, (N, T), generator=gen)
    mask = torch.ones(N, T, dtype=torch.int64)
    mask[1, 5:] = 0  # padded sequences
    mask[3, 3:] = 0
    y = torch.randint(0, C, (N,), generator=gen)
    make("bert_cls", TinyBert, (ids, mask), ["input_ids", "attention_mask"], y, False, gen)
    np.savez(os.path.join(OUT, "bert_cls.npz"), input_ids=ids.numpy(), attention_mask=mask.numpy(), y=y.numpy())

    lm_ids = torch.randint(0, V, (N, T), generator=gen)
    target = torch.full((N, T), IGNORE, dtype=torch.int64)
    target[:, :-1] = lm_ids[:, 1:]
    target[2, 4:] = IGNORE  # padding after position 4
    make("gpt_lm", TinyGPT, (lm_ids,), ["input_ids"], target, True, gen)
    np.savez(os.path.join(OUT, "gpt_lm.npz"), input_ids=lm_ids.numpy(), y=target.numpy())
    with h5py.File(os.path.join(OUT, "gpt_lm.h5"), "w") as f:
        f["input_ids"] = lm_ids.numpy().astype(np.int32)
        f["y"] = target.numpy()

    bad_ids = lm_ids.clone()
    bad_ids[1, 2] = V
    np.savez(os.path.join(OUT, "bad_token_id.npz"), input_ids=bad_ids.numpy(), y=target.numpy())
    np.savez(os.path.join(OUT, "bad_no_mask.npz"), input_ids=ids.numpy(), y=y.numpy())
    np.savez(os.path.join(OUT, "bad_mask_shape.npz"), input_ids=ids.numpy(), attention_mask=mask[:, :-1].numpy(),
             y=y.numpy())
    np.savez(os.path.join(OUT, "bad_lm_target.npz"), input_ids=lm_ids.numpy(), y=target[:, :-1].numpy())

    # Last, so that the draws above (and the files they made) stay as they were without them.
    make("bert_cls_where", TinyBertWhere, (ids, mask), ["input_ids", "attention_mask"], y, False, gen)
    make("gpt_lm_tril", TinyGPTTril, (lm_ids,), ["input_ids"], target, True, gen)
    make_tied()


if __name__ == "__main__":
    main()
