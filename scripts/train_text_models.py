#!/usr/bin/python3
"""Trains curv's two shipped text models with PyTorch and exports them to ONNX.

The text is the set of license files every Debian system has: /usr/share/common-licenses (package
base-files, which is Essential), the regular files only (symbolic links such as GPL -> GPL-3 are
skipped), about 240 KB of English. Characters are the tokens; the vocabulary is every character
of those files plus <pad> (id 0) and <unk> (id 1).

  data/char_gpt.onnx        a GPT-style causal character language model (2 blocks, width 64, 4
                            heads, context 64, learned positions, pre-LayerNorm, GELU MLP); the
                            causal mask is a lower-triangular buffer applied with masked_fill, as
                            nanoGPT does. Input `input_ids` [N, 64] int64, output logits [N, 64, V].
  data/char_gpt_val.npz     256 held-out windows: `input_ids` [256, 64] and `y` [256, 64], the
                            next characters (int32, compressed).
  data/license_bert.onnx    a BERT-style encoder classifier (2 bidirectional blocks, width 64, 4
                            heads) that tells which license a snippet of 24..96 characters comes
                            from. Inputs `input_ids` and `attention_mask` [N, 96] int64 (padding
                            id 0, mask 0 on padding, as Hugging Face tokenizers produce them);
                            mean-pooled over the unmasked tokens; output logits [N, L].
  data/license_bert_val.npz 512 held-out snippets: `input_ids`, `attention_mask`, `y` [512] (int32,
                            compressed).

Each file is split by position: the first 85% trains, the last 15% is held out. Seeds: torch 0,
numpy 0 (each model starts from them, so either can be retrained alone with the same result).
Usage: scripts/train_text_models.py [--models gpt,bert] [--steps 1000] [--bert-steps N]
                                    [--out data] [--threads 2]
Prints the held-out loss of each model (and accuracy for the classifier) with the float32 and
float64 references curv's tests compare against.
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LICENSES = "/usr/share/common-licenses"
CTX = 64          # GPT context
SNIP = 96         # classifier sequence length (padded)
WIDTH, HEADS, BLOCKS = 64, 4, 2


def read_texts():
    names, texts = [], []
    for n in sorted(os.listdir(LICENSES)):
        p = os.path.join(LICENSES, n)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        names.append(n)
        texts.append(open(p, encoding="utf-8", errors="replace").read())
    return names, texts


class Attention(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.causal = causal
        if causal:
            self.register_buffer("tril", torch.tril(torch.ones(CTX, CTX)).view(1, 1, CTX, CTX))

    def forward(self, x, pad=None):
        n, t, c = x.shape
        q, k, v = self.qkv(x).split(WIDTH, dim=2)
        q = q.view(n, t, HEADS, c // HEADS).transpose(1, 2)
        k = k.view(n, t, HEADS, c // HEADS).transpose(1, 2)
        v = v.view(n, t, HEADS, c // HEADS).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // HEADS))
        if self.causal:
            att = att.masked_fill(self.tril[:, :, :t, :t] == 0, float("-inf"))
        if pad is not None:  # pad: [N, T], 1 for tokens, 0 for padding
            att = att.masked_fill(pad[:, None, None, :] == 0, -1e9)
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(n, t, c)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = Attention(causal)
        self.ln2 = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.out = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x, pad=None):
        x = x + self.attn(self.ln1(x), pad)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.tok = nn.Embedding(vocab, WIDTH)
        self.pos = nn.Embedding(CTX, WIDTH)
        self.blocks = nn.ModuleList([Block(True) for _ in range(BLOCKS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, vocab)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


class LicenseBert(nn.Module):
    def __init__(self, vocab, classes):
        super().__init__()
        self.tok = nn.Embedding(vocab, WIDTH)
        self.pos = nn.Embedding(SNIP, WIDTH)
        self.blocks = nn.ModuleList([Block(False) for _ in range(BLOCKS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, classes)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
        for b in self.blocks:
            x = b(x, attention_mask)
        m = attention_mask.to(x.dtype).unsqueeze(-1)
        pooled = (self.ln(x) * m).sum(1) / m.sum(1)
        return self.head(pooled)


def encode(text, index):
    return np.array([index.get(ch, 1) for ch in text], dtype=np.int64)


def gpt_windows(ids, count, rng):
    starts = rng.integers(0, len(ids) - CTX - 1, size=count)
    x = np.stack([ids[s:s + CTX] for s in starts])
    y = np.stack([ids[s + 1:s + CTX + 1] for s in starts])
    return x, y


def snippets(parts, count, rng):
    x = np.zeros((count, SNIP), dtype=np.int64)
    mask = np.zeros((count, SNIP), dtype=np.int64)
    y = rng.integers(0, len(parts), size=count)
    for i, c in enumerate(y):
        ids = parts[c]
        length = int(rng.integers(24, SNIP + 1))
        s = int(rng.integers(0, len(ids) - length))
        x[i, :length] = ids[s:s + length]
        mask[i, :length] = 1
    return x, mask, y.astype(np.int64)


def train(model, batch_fn, loss_fn, steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        loss = loss_fn(model, *batch_fn())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"  step {step}: loss {loss.item():.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gpt,bert")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--bert-steps", type=int, default=0, help="classifier steps (default: --steps)")
    ap.add_argument("--out", default="data")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models = a.models.split(",")

    names, texts = read_texts()
    chars = sorted(set("".join(texts)))
    vocab = ["<pad>", "<unk>"] + chars
    index = {ch: i + 2 for i, ch in enumerate(chars)}
    encoded = [encode(t, index) for t in texts]
    train_parts = [e[:int(0.85 * len(e))] for e in encoded]
    held_parts = [e[int(0.85 * len(e)):] for e in encoded]
    print(f"{len(names)} files, {sum(len(t) for t in texts)} characters, vocabulary {len(vocab)}")
    os.makedirs(a.out, exist_ok=True)
    summary_path = os.path.join(a.out, "text_models.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    summary.update({"vocabulary": vocab, "licenses": names, "source": LICENSES})
    if "gpt" in models:
        summary["char_gpt"] = train_gpt(a, vocab, train_parts, held_parts)
    if "bert" in models:
        summary["license_bert"] = train_bert(a, vocab, names, train_parts, held_parts)
    json.dump(summary, open(summary_path, "w"), indent=1, ensure_ascii=False)


def train_gpt(a, vocab, train_parts, held_parts):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    # The character LM: windows from the training parts of all files, concatenated.
    train_ids, held_ids = np.concatenate(train_parts), np.concatenate(held_parts)
    gpt = CharGPT(len(vocab))
    lm_loss = lambda m, x, y: F.cross_entropy(m(x).reshape(-1, len(vocab)), y.reshape(-1))
    print("char GPT:", sum(p.numel() for p in gpt.parameters()), "parameters")
    train(gpt, lambda: tuple(map(torch.from_numpy, gpt_windows(train_ids, 32, rng))), lm_loss, a.steps, 3e-3)
    gpt.eval()
    vx, vy = gpt_windows(held_ids, 256, rng)
    with torch.no_grad():
        l32 = lm_loss(gpt, torch.from_numpy(vx), torch.from_numpy(vy)).item()
        l64 = lm_loss(gpt.double(), torch.from_numpy(vx), torch.from_numpy(vy)).item()
    gpt.float()
    print(f"char GPT held-out loss {l32:.6f} (float64 {l64:.10f}), perplexity {math.exp(l32):.3f}")
    torch.onnx.export(gpt, (torch.from_numpy(vx[:2]),), os.path.join(a.out, "char_gpt.onnx"),
                      input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    np.savez_compressed(os.path.join(a.out, "char_gpt_val.npz"), input_ids=vx.astype(np.int32), y=vy.astype(np.int32))
    return {"val_loss_f32": l32, "val_loss_f64": l64, "steps": a.steps}


def train_bert(a, vocab, names, train_parts, held_parts):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    steps = a.bert_steps or a.steps
    bert = LicenseBert(len(vocab), len(names))
    cls_loss = lambda m, x, mask, y: F.cross_entropy(m(x, mask), y)
    print("license BERT:", sum(p.numel() for p in bert.parameters()), "parameters,", len(names), "classes")
    train(bert, lambda: tuple(map(torch.from_numpy, snippets(train_parts, 64, rng))), cls_loss, steps, 2e-3)
    bert.eval()
    bx, bm, by = snippets(held_parts, 512, rng)
    tx, tm, ty = map(torch.from_numpy, (bx, bm, by))
    with torch.no_grad():
        logits = bert(tx, tm)
        c32 = F.cross_entropy(logits, ty).item()
        acc = (logits.argmax(1) == ty).double().mean().item()
        c64 = cls_loss(bert.double(), tx, tm, ty).item()
    bert.float()
    print(f"license BERT held-out loss {c32:.6f} (float64 {c64:.10f}), accuracy {acc:.4f}")
    torch.onnx.export(bert, (tx[:2], tm[:2]), os.path.join(a.out, "license_bert.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                                    "logits": {0: "batch"}}, opset_version=17)
    np.savez_compressed(os.path.join(a.out, "license_bert_val.npz"), input_ids=bx.astype(np.int32),
                        attention_mask=bm.astype(np.int32), y=by.astype(np.int32))
    return {"val_loss_f32": c32, "val_loss_f64": c64, "val_accuracy": acc, "steps": steps}


if __name__ == "__main__":
    main()
