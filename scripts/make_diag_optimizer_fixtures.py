#!/usr/bin/python3
"""Reference steps for curv's Hessian-diagonal optimizers (AdaHessian, Sophia) and GAM.

Usage (Debian's python3 with torch + onnx + numpy):
    /usr/bin/python3 scripts/make_diag_optimizer_fixtures.py [--out data/fixtures/train_diag/steps.npz]

Models: data/fixtures/mlp.onnx (Linear-Tanh-Linear-Sigmoid-Linear, 74 parameters, 4 samples of
mlp.npz) and data/fixtures/cnn_bn_fused.onnx (a BatchNorm-free CNN: conv, ReLU, max-pool, dilated
grouped conv, strided conv, average pool, linear; 395 parameters, 5 samples of cnn_bn_fused.npz).
Each is rebuilt here in float64 PyTorch from the ONNX initializers (same parameter names) and
trained for THREE full-batch steps per configuration; Hessian-vector products by double backward.
The update rules follow the papers (see src/train/diagonal_optimizer.h and trainer.h):

  AdaHessian (Yao et al. 2021; the authors' optim_adahessian.py)
      D = |z . Hz| (conv kernels: mean of |z . Hz| over the window), refreshed at steps 1, k+1, ...
      m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) D^2
      w <- w - lr (m/(1-b1^t) / ((sqrt v)^p / sqrt(1-b2^t)^p + eps) + wd w)
  Sophia (Liu et al. 2023, Algorithm 3; SophiaG)
      m <- b1 m + (1-b1) g;  at refresh steps h <- b2 h + (1-b2) D^ (Hutchinson z . Hz, or
      Gauss-Newton-Bartlett B g^.g^ with labels sampled from the softmax)
      w <- w (1 - lr wd);  w <- w - lr clip(m / max(gamma h, eps), rho)
  GAM (Zhang et al. 2023) on SGD with momentum: f = H g/|g|, w_a = w + rho f/|f|,
      g_a = grad L(w_a), step with g + alpha rho H(w_a) g_a/|g_a|

Random numbers are curv's counter-based ones (src/core/loss.cpp hashed_uniform, splitmix64):
probe entry i of draw d is -1 if u(seed, d, i, 0x52) < 1/2 else +1 over the flat parameter vector
in curv's parameter order; the sampled label of sample n in draw d is the first class whose
cumulative softmax exceeds u(seed, d, n, 0x47). The probes and labels used are stored too, so the
C++ test checks its generator against them.

Stored: <model>/<config>/<param name> (after 3 steps), <model>/<config>/loss [3],
<model>/<config>/probe<d> (flat probes), <model>/<config>/labels<d>.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "data", "fixtures")
M64 = (1 << 64) - 1
STEPS = 3
SEED = 7


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def hashed_uniform(seed, a, b, c):
    h = splitmix(splitmix(splitmix(splitmix(seed) ^ a) ^ b) ^ c)
    return (h >> 11) * 2.0 ** -53


def probe(n, seed, draw):
    return np.array([-1.0 if hashed_uniform(seed, draw, i, 0x52) < 0.5 else 1.0 for i in range(n)])


# ------------------------------------------------------------------------------ models
def load(name):
    m = onnx.load(os.path.join(FIX, name + ".onnx"))
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).astype(np.float64)) for i in m.graph.initializer}


def mlp_forward(p, x):
    x = torch.tanh(F.linear(x, p["0.weight"], p["0.bias"]))
    x = torch.sigmoid(F.linear(x, p["2.weight"], p["2.bias"]))
    return F.linear(x, p["4.weight"], p["4.bias"])


def cnn_forward(p, x):
    x = F.max_pool2d(F.relu(F.conv2d(x, p["onnx::Conv_27"], p["onnx::Conv_28"], padding=1)), 2)
    x = F.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"], padding=2, dilation=2, groups=2))
    x = F.avg_pool2d(F.conv2d(x, p["conv3.weight"], p["conv3.bias"], stride=2, padding=1), 2)
    return F.linear(torch.flatten(x, 1), p["fc.weight"], p["fc.bias"])


MODELS = {
    # name: (onnx/npz stem, forward, parameter order of curv's Model)
    "mlp": ("mlp", mlp_forward, ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]),
    "cnn": ("cnn_bn_fused", cnn_forward, ["onnx::Conv_27", "onnx::Conv_28", "conv2.weight", "conv2.bias",
                                          "conv3.weight", "conv3.bias", "fc.weight", "fc.bias"]),
}

CONFIGS = {
    "adahessian": dict(opt="adahessian", lr=0.1, b1=0.9, b2=0.999, eps=1e-4, wd=1e-3, power=1.0, every=1),
    "adahessian_k05": dict(opt="adahessian", lr=0.05, b1=0.8, b2=0.9, eps=1e-4, wd=0.0, power=0.5, every=2),
    "adahessian_noavg": dict(opt="adahessian", lr=0.1, b1=0.9, b2=0.999, eps=1e-4, wd=0.0, power=1.0, every=1,
                             noavg=True),
    "sophia": dict(opt="sophia", lr=0.05, b1=0.965, b2=0.99, eps=1e-12, wd=0.1, gamma=0.01, rho=1.0, every=2,
                   est="hutchinson"),
    "sophia_gnb": dict(opt="sophia", lr=0.05, b1=0.9, b2=0.95, eps=1e-12, wd=0.0, gamma=0.05, rho=0.5, every=1,
                       est="gnb"),
    "gam": dict(opt="sgd", lr=0.1, momentum=0.9, wd=1e-2, gam_rho=0.05, gam_alpha=0.5),
    "gam_sam": dict(opt="sgd", lr=0.1, momentum=0.9, wd=1e-2, gam_rho=0.05, gam_alpha=0.5, sam_rho=0.05),
}


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def unflat(v, like):
    out, o = [], 0
    for t in like:
        out.append(v[o:o + t.numel()].reshape(t.shape))
        o += t.numel()
    return out


class Problem:
    def __init__(self, fwd, order, params, x, y):
        self.fwd, self.order, self.x, self.y = fwd, order, x, y
        self.w = flat([params[n] for n in order]).clone()
        self.shapes = [params[n] for n in order]

    def params(self, w):
        return dict(zip(self.order, unflat(w, self.shapes)))

    def loss_grad(self, w, labels=None, create_graph=False):
        w = w.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(self.fwd(self.params(w), self.x), self.y if labels is None else labels)
        g, = torch.autograd.grad(loss, w, create_graph=create_graph)
        return loss, g, w

    def hvp(self, w, v):
        _, g, wt = self.loss_grad(w, create_graph=True)
        hv, = torch.autograd.grad(g, wt, grad_outputs=v)
        return hv.detach()

    def grad(self, w):
        loss, g, _ = self.loss_grad(w)
        return loss.item(), g.detach()

    def average_kernels(self, d):
        out = []
        for t in unflat(d, self.shapes):
            if t.dim() >= 3:
                t = t.abs().mean(dim=tuple(range(2, t.dim())), keepdim=True).expand_as(t)
            out.append(t)
        return flat(out)


def run(prob, cfg, rec):
    w = prob.w.clone()
    n = w.numel()
    m = torch.zeros(n, dtype=torch.float64)
    v = torch.zeros(n, dtype=torch.float64)
    buf = None
    d = None
    refreshes = 0
    losses = []
    for t in range(1, STEPS + 1):
        loss, g = prob.grad(w)
        losses.append(loss)
        if cfg["opt"] in ("adahessian", "sophia") and (t - 1) % cfg["every"] == 0:
            if cfg.get("est", "hutchinson") == "hutchinson":
                z = torch.from_numpy(probe(n, SEED, refreshes))
                rec[f"probe{refreshes}"] = z.numpy()
                dh = z * prob.hvp(w, z)
            else:  # Gauss-Newton-Bartlett
                with torch.no_grad():
                    pr = F.softmax(prob.fwd(prob.params(w), prob.x), dim=1).numpy()
                lab = []
                for i, row in enumerate(pr):
                    u = hashed_uniform(SEED, refreshes, i, 0x47)
                    c = np.searchsorted(np.cumsum(row), u, side="right")
                    lab.append(min(int(c), len(row) - 1))
                rec[f"labels{refreshes}"] = np.array(lab)
                _, gh, _ = prob.loss_grad(w, labels=torch.tensor(lab))
                dh = prob.x.shape[0] * gh.detach() ** 2
            refreshes += 1
            if cfg["opt"] == "adahessian":
                d = dh.abs()
                if not cfg.get("noavg"):
                    d = prob.average_kernels(d)
            else:
                v = cfg["b2"] * v + (1 - cfg["b2"]) * dh
        if cfg["opt"] == "adahessian":
            m = cfg["b1"] * m + (1 - cfg["b1"]) * g
            v = cfg["b2"] * v + (1 - cfg["b2"]) * d * d
            bc1, bc2 = 1 - cfg["b1"] ** t, 1 - cfg["b2"] ** t
            k = cfg["power"]
            denom = v.sqrt() ** k / np.sqrt(bc2) ** k + cfg["eps"]
            w = w - cfg["lr"] * (m / bc1 / denom + cfg["wd"] * w)
        elif cfg["opt"] == "sophia":
            m = cfg["b1"] * m + (1 - cfg["b1"]) * g
            w = w * (1 - cfg["lr"] * cfg["wd"])
            r = m / torch.clamp(cfg["gamma"] * v, min=cfg["eps"])
            w = w - cfg["lr"] * torch.clamp(r, -cfg["rho"], cfg["rho"])
        else:  # SGD (+ SAM) + GAM, torch.optim.SGD's rule
            gd = g
            if "sam_rho" in cfg:
                e = cfg["sam_rho"] * g / (g.norm() + 1e-12)
                _, gd = prob.grad(w + e)
            f = prob.hvp(w, g) / (g.norm() + 1e-12)
            wa = w + cfg["gam_rho"] * f / (f.norm() + 1e-12)
            _, ga = prob.grad(wa)
            fa = prob.hvp(wa, ga)
            gd = gd + cfg["gam_alpha"] * cfg["gam_rho"] * fa / (ga.norm() + 1e-12)
            dd = gd + cfg["wd"] * w
            buf = dd.clone() if buf is None else cfg["momentum"] * buf + dd
            w = w - cfg["lr"] * buf
    return w, losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIX, "train_diag", "steps.npz"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {"steps": np.array(STEPS), "seed": np.array(SEED)}
    for mname, (stem, fwd, order) in MODELS.items():
        data = np.load(os.path.join(FIX, stem + ".npz"))
        x = torch.from_numpy(data["x"].astype(np.float32).astype(np.float64))
        y = torch.from_numpy(data["y"]).long()
        prob = Problem(fwd, order, load(stem), x, y)
        for cname, cfg in CONFIGS.items():
            rec = {}
            w, losses = run(prob, cfg, rec)
            for pname, t in prob.params(w).items():
                out[f"{mname}/{cname}/{pname}"] = t.numpy()
            out[f"{mname}/{cname}/loss"] = np.array(losses)
            for k, val in rec.items():
                out[f"{mname}/{cname}/{k}"] = val
    np.savez(args.out, **out)
    print("wrote", args.out, len(out), "arrays")


if __name__ == "__main__":
    main()
