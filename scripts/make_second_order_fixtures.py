#!/usr/bin/python3
"""Reference steps of curv's second-order optimizers (curv train --optimizer kfac | hf | bhf).

Usage (Debian's python3, which has torch + onnx + numpy):
    /usr/bin/python3 scripts/make_second_order_fixtures.py [--out data/fixtures/second_order]

Writes, for a BatchNorm-free MLP (5-4-3, tanh) and CNN (conv 2->3 3x3 pad 1, tanh, linear 75->3)
on 8 fixed samples of cross-entropy data:
    <net>.onnx                   the starting weights (float32 exported, read back as float64)
    <net>.npz                    x, y, and for every config <config>/<param name> after 3 steps,
                                 <config>/loss_after (HF/BHF) and <config>/damping per step
Every step is full-batch (curv: --batch-size full --no-shuffle), float64. The rules, written
from the papers independently of curv's C++ (only conventions are shared):

K-FAC (Martens & Grosse 2015; kfac-pytorch's eigen method), per linear/conv layer with
W~ = [W | b] as [out, in_ext] (a conv's W as [out, C kh kw], its input the unfolded patches,
positions as extra samples: A = 1/(N T) sum a a^T, B = 1/N sum_{n,t} g g^T):
    exact      g = J^T u_r, u_r the columns of M_n = diag(sqrt p) - p sqrt(p)^T (M M^T = Lambda_n)
    empirical  g = J^T (p_n - onehot(y_n))
    running    A <- A_b at t = 0, else d A + (1 - d) A_b   (likewise B)
    refresh    eigendecompositions of the running A, B when t % inv_every == 0
    direction  V = Q_B [(Q_B^T G Q_A) / (beta alpha^T + lambda)] Q_A^T
    KL clip    nu = min(1, sqrt(kl_clip / |lr^2 sum_l <V_l, G_l>|))
    update     torch.optim.SGD(momentum, weight_decay) with .grad = nu V
Hessian-free (Martens 2010) and block-diagonal HF (Zhang et al. 2017):
    b = -(g + wd w); C = GGN of the first `cb` samples (1/cb sum J^T Lambda J);
    CG on (C + (lambda + wd) I) d = b (bhf: per layer block on C's diagonal blocks, in lockstep)
    from x0 = decay * (last step's final iterate), at most `cap` iterations, stop at
    ||r|| <= rtol ||b||; iterates kept at iterations ceil(1.3^j) and the last; backtracking from the
    last kept while the previous one has a lower f(w + lr d), f = loss + wd/2 ||w||^2;
    rho = (f(w + lr d) - f(w)) / ((g + wd w)^T s + 1/2 s^T (C + wd I) s), s = lr d (full C);
    lambda <- 2/3 lambda if rho > 3/4, 3/2 lambda if rho < 1/4;  w <- w + s.
"""
import argparse
import math
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import stateless

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 4)
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x, keep=None):
        s1 = self.fc1(x)
        s2 = self.fc2(torch.tanh(s1))
        if keep is not None:
            keep += [("fc1", x, s1), ("fc2", torch.tanh(s1), s2)]
        return s2


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(75, 3)

    def forward(self, x, keep=None):
        s1 = self.conv1(x)
        h = torch.tanh(s1).flatten(1)
        s2 = self.fc(h)
        if keep is not None:
            keep += [("conv1", x, s1), ("fc", h, s2)]
        return s2


CONFIGS = {
    "kfac_exact": dict(kind="kfac", type="exact", decay=0.8, inv_every=2, damping=0.05, kl_clip=1e-3, momentum=0.9,
                       wd=0.01, lr=0.1),
    "kfac_empirical": dict(kind="kfac", type="empirical", decay=0.8, inv_every=2, damping=0.05, kl_clip=0.0,
                           momentum=0.9, wd=0.01, lr=0.1),
    "hf": dict(kind="hf", blocks=False, damping=0.5, cap=5, rtol=1e-10, decay=0.95, cb=4, wd=0.01, lr=1.0),
    "bhf": dict(kind="hf", blocks=True, damping=0.5, cap=5, rtol=1e-10, decay=0.95, cb=4, wd=0.01, lr=1.0),
}


def layer_stats(net, x, y, kfac_type):
    """Per layer (name, A, B) of the batch, as the header describes."""
    keep = []
    z = net(x, keep)
    N, C = z.shape
    p = torch.softmax(z, 1)
    outs = [s for _, _, s in keep]
    if kfac_type == "exact":
        sp = p.sqrt()
        M = torch.diag_embed(sp) - p.unsqueeze(2) * sp.unsqueeze(1)  # [N, C, C], M[n] = diag(sqrt p) - p sqrt(p)^T
        seeds = [M[:, :, r] for r in range(C)]
    else:
        seeds = [p - F.one_hot(y, C).double()]
    Bs = [0 for _ in keep]
    for u in seeds:
        gs = torch.autograd.grad(z, outs, u, retain_graph=True)
        for i, g in enumerate(gs):
            g2 = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]) if g.dim() == 4 else g
            Bs[i] = Bs[i] + g2.T @ g2 / N
    res = []
    for i, (name, a, s) in enumerate(keep):
        a = a.detach()
        if s.dim() == 4:
            layer = getattr(net, name)
            pt = F.unfold(a, layer.kernel_size, padding=layer.padding, stride=layer.stride)  # [N, Ckk, T]
            a2 = pt.transpose(1, 2).reshape(-1, pt.shape[1])
        else:
            a2 = a
        a2 = torch.cat([a2, torch.ones(a2.shape[0], 1, dtype=a2.dtype)], 1)
        res.append((name, a2.T @ a2 / a2.shape[0], Bs[i].detach()))
    return res


def run_kfac(net, x, y, c):
    opt = torch.optim.SGD(net.parameters(), lr=c["lr"], momentum=c["momentum"], weight_decay=c["wd"], foreach=False)
    A = B = None
    eig = None
    for t in range(STEPS):
        stats = layer_stats(net, x, y, c["type"])
        if A is None:
            A = [s[1] for s in stats]
            B = [s[2] for s in stats]
        else:
            d = c["decay"]
            A = [d * a + (1 - d) * s[1] for a, s in zip(A, stats)]
            B = [d * b + (1 - d) * s[2] for b, s in zip(B, stats)]
        if t % c["inv_every"] == 0:
            eig = [(torch.linalg.eigh(a), torch.linalg.eigh(b)) for a, b in zip(A, B)]
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        vs, vg = [], 0.0
        for (name, _, _), ((al, QA), (be, QB)) in zip(stats, eig):
            layer = getattr(net, name)
            G = torch.cat([layer.weight.grad.reshape(layer.weight.shape[0], -1), layer.bias.grad.unsqueeze(1)], 1)
            V = QB @ ((QB.T @ G @ QA) / (be.unsqueeze(1) * al.unsqueeze(0) + c["damping"])) @ QA.T
            vg += float((V * G).sum())
            vs.append((layer, V))
        nu = min(1.0, math.sqrt(c["kl_clip"] / abs(vg * c["lr"] ** 2))) if c["kl_clip"] > 0 else 1.0
        for layer, V in vs:
            layer.weight.grad.copy_(nu * V[:, :-1].reshape(layer.weight.shape))
            layer.bias.grad.copy_(nu * V[:, -1])
        opt.step()
    return {}


def keep_schedule(cap):
    s, gp = set(), 1.0
    while math.ceil(gp) <= cap:
        s.add(math.ceil(gp))
        gp *= 1.3
    return s


def run_hf(net, x, y, c):
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    blocks = []  # (offset, size) per layer
    off = 0
    for i, n in enumerate(names):
        if n.endswith(".weight"):
            blocks.append((off, sizes[i] + sizes[i + 1]))
        off += sizes[i]
    P = off

    def unflat(th):
        out, o = [], 0
        for sh, sz in zip(shapes, sizes):
            out.append(th[o:o + sz].reshape(sh))
            o += sz
        return out

    def logits(th, xs):
        return stateless.functional_call(net, dict(zip(names, unflat(th))), (xs,))

    def loss(th):
        return F.cross_entropy(logits(th, x), y)

    w = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    wd, lam, lr = c["wd"], c["damping"], c["lr"]
    prev = None
    keep = keep_schedule(c["cap"])
    log = {"loss_after": [], "damping": []}
    for t in range(STEPS):
        g = torch.autograd.functional.jacobian(loss, w)
        gt = g + wd * w
        b = -gt
        xs = x[: c["cb"]]
        J = torch.autograd.functional.jacobian(lambda th: logits(th, xs), w)  # [cb, C, P]
        p = torch.softmax(logits(w, xs), 1).detach()
        Lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
        Cm = torch.einsum("ncp,ncd,ndq->pq", J, Lam, J) / xs.shape[0]
        Cm = 0.5 * (Cm + Cm.T)
        Cs = Cm
        if c["blocks"]:
            Cs = torch.zeros_like(Cm)
            for o, s in blocks:
                Cs[o:o + s, o:o + s] = Cm[o:o + s, o:o + s]
        Ad = Cs + (lam + wd) * torch.eye(P, dtype=Cm.dtype)
        segs = blocks if c["blocks"] else [(0, P)]
        x0 = c["decay"] * prev if prev is not None else torch.zeros(P, dtype=w.dtype)
        # CG per segment (block) in lockstep.
        st = []
        for o, s in segs:
            xb = x0[o:o + s].clone()
            A = Ad[o:o + s, o:o + s]
            bb = b[o:o + s]
            r = bb - A @ xb if prev is not None else bb.clone()
            bn = float(bb.norm())
            st.append(dict(o=o, s=s, A=A, x=xb, r=r, p=r.clone(), rz=float(r @ r), bn=bn,
                           active=bn > 0 and float(r.norm()) / bn > c["rtol"]))
        kept, it = [], 0
        while any(q["active"] for q in st) and it < c["cap"]:
            it += 1
            for q in st:
                if not q["active"]:
                    continue
                Ap = q["A"] @ q["p"]
                a = q["rz"] / float(q["p"] @ Ap)
                q["x"] = q["x"] + a * q["p"]
                q["r"] = q["r"] - a * Ap
                if float(q["r"].norm()) / q["bn"] <= c["rtol"]:
                    q["active"] = False
                    continue
                rz = float(q["r"] @ q["r"])
                q["p"] = q["r"] + (rz / q["rz"]) * q["p"]
                q["rz"] = rz
            if it in keep:
                kept.append((it, torch.cat([q["x"] for q in st])))
        xf = torch.cat([q["x"] for q in st])
        prev = xf.clone()
        if not kept or kept[-1][0] != it:
            kept.append((it, xf))

        def f(d):
            wt = w + lr * d
            return float(loss(wt)) + 0.5 * wd * float(wt @ wt)

        f0 = float(loss(w)) + 0.5 * wd * float(w @ w)
        i = len(kept) - 1
        fn = f(kept[i][1])
        while i > 0:
            fp = f(kept[i - 1][1])
            if not fp < fn:
                break
            i -= 1
            fn = fp
        s = lr * kept[i][1]
        q = float(gt @ s) + 0.5 * (float(s @ (Cm @ s)) + wd * float(s @ s))
        rho = (fn - f0) / q
        log["loss_after"].append(fn)
        log["damping"].append(lam)
        if rho > 0.75:
            lam *= 2.0 / 3.0
        elif rho < 0.25:
            lam *= 1.5
        w = w + s
    with torch.no_grad():
        for prm, v in zip(params, unflat(w)):
            prm.copy_(v)
    return log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "fixtures", "second_order"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for net_name, cls, shape in (("mlp", Mlp, (5,)), ("cnn", Cnn, (2, 5, 5))):
        torch.manual_seed(7 if net_name == "mlp" else 8)
        net0 = cls()
        rng = np.random.default_rng(3)
        x = rng.standard_normal((8,) + shape).astype(np.float32).astype(np.float64)  # curv stores samples as float32
        y = rng.integers(0, 3, 8)
        path = os.path.join(args.out, net_name + ".onnx")
        torch.onnx.export(net0, torch.from_numpy(x[:1]).float(), path, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=False)
        onnx.checker.check_model(onnx.load(path))
        # The exported float32 weights are the start (curv reads them as float64).
        start = {k: v.detach().float().double() for k, v in net0.state_dict().items()}
        out = {"x": x, "y": y.astype(np.int64)}
        for cname, c in CONFIGS.items():
            net = cls().double()
            net.load_state_dict(start)
            X, Y = torch.from_numpy(x), torch.from_numpy(y)
            log = run_kfac(net, X, Y, c) if c["kind"] == "kfac" else run_hf(net, X, Y, c)
            for k, v in net.state_dict().items():
                out[cname + "/" + k] = v.numpy()
            for k, v in log.items():
                out[cname + "/" + k] = np.array(v)
        np.savez(os.path.join(args.out, net_name + ".npz"), **out)
        print("wrote", path)


if __name__ == "__main__":
    main()
