#!/usr/bin/python3
"""Export curv's tiny ONNX test fixtures with float64 PyTorch reference values.

Usage (Debian's python3, which has torch + onnx + numpy):
    /usr/bin/python3 scripts/make_fixtures.py [--out data/fixtures]

For every fixture NAME it writes NAME.onnx (float32, eval mode, input "input", output "logits",
dynamic batch axis) and NAME.npz (np.savez, uncompressed) with the reference values described in
data/fixtures/README.md. Deterministic: fixed seeds, single thread.
"""
import argparse
import copy
import math
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import onnx_numpy_eval  # noqa: E402


# ----------------------------------------------------------------------------------- models
def make_mlp(out):
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(),
                         nn.Linear(4, out))


class CnnBn(nn.Module):
    """[N,2,8,8] -> conv3x3 -> BN -> ReLU -> maxpool2 -> dilated grouped conv -> ReLU
    -> strided conv -> avgpool2 -> flatten -> linear(3)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.conv3 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))   # [N,4,4,4]
        x = F.relu(self.conv2(x))                         # [N,4,4,4]
        x = self.avg(self.conv3(x))                       # [N,6,1,1]
        return self.fc(torch.flatten(x, 1))


class ResBlock(nn.Module):
    """ResNet basic block 3->6 channels, stride 2, projection shortcut (1x1 conv + BN),
    then global average pool and a linear head."""

    def __init__(self, cin=3, cout=6, classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.short_bn = nn.BatchNorm2d(cout)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = F.relu(out + self.short_bn(self.short_conv(x)))
        return self.fc(torch.flatten(self.gap(out), 1))


class Attention(nn.Module):
    """Pre-LN transformer block on [N,T,D], two heads written out explicitly, GELU MLP,
    mean over T, linear head."""

    def __init__(self, d=8, heads=2, hidden=16, classes=3):
        super().__init__()
        self.d, self.h = d, heads
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        b, t, d = x.shape
        dh = d // self.h
        h = self.ln1(x)
        q = self.q(h).reshape(b, t, self.h, dh).transpose(1, 2)   # [B,H,T,dh]
        k = self.k(h).reshape(b, t, self.h, dh).transpose(1, 2)
        v = self.v(h).reshape(b, t, self.h, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(y)
        x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
        return self.head(x.mean(dim=1))


def randomize_norms(model, gen):
    """Give every BatchNorm/LayerNorm non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.num_batches_tracked.fill_(10)


# ------------------------------------------------------------------------- reference values
def loss_fn(kind):
    return nn.CrossEntropyLoss() if kind == "ce" else nn.MSELoss()


def params_of(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def split_like(vec, params):
    out, i = [], 0
    for p in params:
        out.append(vec[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def references(model, x, y, kind, v, dtype, train=False, dense=False):
    """logits, loss, grad, H v, GGN v (and optionally the dense Hessian) in `dtype`."""
    m = copy.deepcopy(model).to(dtype)
    m.train(train)
    ps = [p for _, p in params_of(m)]
    xx = torch.from_numpy(x).to(dtype)
    yy = torch.from_numpy(y)
    if kind == "mse":
        yy = yy.to(dtype)
    lf = loss_fn(kind)
    vs = split_like(torch.from_numpy(v).to(dtype), ps)

    logits = m(xx)
    loss = lf(logits, yy)
    grads = torch.autograd.grad(loss, ps, create_graph=True)
    hv = torch.autograd.grad(grads, ps, grad_outputs=vs, retain_graph=True)

    # GGN: J^T H_loss J v. Jv by the double-vjp trick, H_loss on detached logits, then vjp.
    u = torch.zeros_like(logits, requires_grad=True)
    jtu = torch.autograd.grad(logits, ps, grad_outputs=u, create_graph=True)
    jv = torch.autograd.grad(jtu, u, grad_outputs=vs)[0]
    z = logits.detach().requires_grad_(True)
    gz = torch.autograd.grad(lf(z, yy), z, create_graph=True)[0]
    hjv = torch.autograd.grad(gz, z, grad_outputs=jv)[0]
    ggn = torch.autograd.grad(logits, ps, grad_outputs=hjv, retain_graph=True)

    out = {"logits": logits.detach().numpy(), "loss": np.array(loss.item(), dtype=np.float64),
           "grad": flat(grads).detach().numpy(), "hvp": flat(hv).detach().numpy(),
           "ggn_v": flat(ggn).detach().numpy(), "jv": jv.detach().numpy()}
    if dense:
        n = sum(p.numel() for p in ps)
        hess = np.zeros((n, n))
        for i in range(n):
            e = torch.zeros(n, dtype=dtype)
            e[i] = 1
            hess[:, i] = flat(torch.autograd.grad(grads, ps, grad_outputs=split_like(e, ps),
                                                  retain_graph=True)).numpy()
        out["hessian"] = hess
    return out


def fd_check(model, x, y, kind, v, train=False, eps=1e-5):
    """Central finite difference of float64 gradients along v, vs the autograd HVP."""
    def grad_at(shift):
        m = copy.deepcopy(model).double()
        m.train(train)
        ps = [p for _, p in params_of(m)]
        with torch.no_grad():
            for p, d in zip(ps, split_like(torch.from_numpy(v), ps)):
                p.add_(shift * d)
        yy = torch.from_numpy(y)
        if kind == "mse":
            yy = yy.double()
        loss = loss_fn(kind)(m(torch.from_numpy(x).double()), yy)
        return flat(torch.autograd.grad(loss, ps)).numpy()
    return (grad_at(eps) - grad_at(-eps)) / (2 * eps)


# ------------------------------------------------------------------------------------ export
def export(model, x, path, opset, fold=True, training=torch.onnx.TrainingMode.EVAL):
    model.eval()
    torch.onnx.export(model, torch.from_numpy(x), path, opset_version=opset,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=fold, export_params=True, training=training)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def onnx_param_map(graph, named):
    """For each PyTorch parameter find the ONNX initializer holding it: same name, a renamed
    copy, or a transposed copy (constant folding of MatMul weights)."""
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    names, transposed = [], []
    for n, p in named:
        a = p.detach().numpy()
        if n in inits and inits[n].shape == a.shape and np.array_equal(inits[n], a):
            names.append(n)
            transposed.append(0)
            continue
        hit = [k for k, b in inits.items() if b.shape == a.shape and np.array_equal(b, a)]
        if hit:
            names.append(hit[0])
            transposed.append(0)
            continue
        hit = [k for k, b in inits.items()
               if a.ndim == 2 and b.shape == a.T.shape and np.array_equal(b, a.T)]
        if hit:
            names.append(hit[0])
            transposed.append(1)
            continue
        names.append("")
        transposed.append(0)
    return names, transposed


def ops_of(graph):
    return sorted({n.op_type for n in graph.node})


def fused_torch_model(model, graph):
    """PyTorch twin of a BN-folded ONNX export: BatchNorms replaced by Identity and every
    Conv/Linear (in forward order == ONNX node order here) loaded with the ONNX initializer
    values, convs always with a bias. Returns (model, [onnx initializer names per param])."""
    fused = copy.deepcopy(model).eval()
    layers = []
    for name, mod in list(fused.named_modules()):
        if isinstance(mod, nn.BatchNorm2d):
            parent = fused
            *path, last = name.split(".")
            for pth in path:
                parent = getattr(parent, pth)
            setattr(parent, last, nn.Identity())
    for name, mod in fused.named_modules():
        if isinstance(mod, nn.Conv2d) and mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(mod.out_channels))
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            layers.append((name, mod))
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(nodes) == len(layers), (len(nodes), len(layers))
    onnx_names = {}
    with torch.no_grad():
        for (name, mod), node in zip(layers, nodes):
            w, b = inits[node.input[1]], inits[node.input[2]]
            assert tuple(w.shape) == tuple(mod.weight.shape), (name, w.shape)
            mod.weight.copy_(torch.from_numpy(np.array(w)))
            mod.bias.copy_(torch.from_numpy(np.array(b)))
            onnx_names[name + ".weight"] = node.input[1]
            onnx_names[name + ".bias"] = node.input[2]
    return fused, [onnx_names[n] for n, _ in params_of(fused)]


# ---------------------------------------------------------------------------------- fixtures
def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def build(name, model, x, y, kind, outdir, opset=13, fold=True,
          training=torch.onnx.TrainingMode.EVAL, onnx_file=None, notes="", train=False,
          dense=False, extra=None, export_model=True, param_onnx=None, seed_key=None):
    seed = sum(map(ord, seed_key or name))
    named = params_of(model)
    nparam = sum(p.numel() for _, p in named)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(nparam, generator=gen).numpy().astype(np.float64)  # float32-exact values

    onnx_file = onnx_file or name + ".onnx"
    onnx_path = os.path.join(outdir, onnx_file)
    if export_model:
        g = export(model, x, onnx_path, opset, fold, training).graph
    else:
        g = onnx.load(onnx_path).graph
    ops = ops_of(g)
    if param_onnx is None:
        init_names, transposed = onnx_param_map(g, named)
    else:
        init_names, transposed = param_onnx, [0] * len(param_onnx)

    r64 = references(model, x, y, kind, v, torch.float64, train=train, dense=dense)
    r32 = references(model, x, y, kind, v, torch.float32, train=train)
    fd = fd_check(model, x, y, kind, v, train=train)
    fd_err = np.abs(fd - r64["hvp"]).max() / max(1e-300, np.abs(r64["hvp"]).max())
    vhv, vgv = float(v @ r64["hvp"]), float(v @ r64["ggn_v"])

    d = {
        "x": f32(x), "y": y, "logits": r64["logits"], "loss": r64["loss"],
        "param_names": np.array([n for n, _ in named]),
        "grad": r64["grad"], "v": v, "hvp": r64["hvp"], "ggn_v": r64["ggn_v"], "jv": r64["jv"],
        "logits32": r32["logits"], "loss32": r32["loss"], "grad32": r32["grad"],
        "hvp32": r32["hvp"], "ggn_v32": r32["ggn_v"],
        "onnx": np.array(onnx_file), "ops": np.array(ops),
        "onnx_param": np.array(init_names), "onnx_param_transposed": np.array(transposed),
        "onnx_initializers": np.array([i.name for i in g.initializer]),
        "loss_kind": np.array("cross_entropy" if kind == "ce" else "mse"),
        "opset": np.array(opset), "train_mode": np.array(int(train)),
        "notes": np.array(notes),
    }
    for n, p in named:
        d["shape/" + n] = np.array(p.shape, dtype=np.int64)
    if dense:
        d["hessian"] = r64["hessian"]
    if extra:
        d.update(extra)

    # check the ONNX graph computes the references (our NumPy interpreter, float64)
    if not train:
        onnx_logits = onnx_numpy_eval.run(onnx_path, x)
        onnx_err = float(np.abs(onnx_logits - r64["logits"]).max())
    else:
        onnx_err = float("nan")
    d["onnx_logits_maxabs_err"] = np.array(onnx_err)
    npz = os.path.join(outdir, name + ".npz")
    np.savez(npz, **d)

    missing = [n for n, i in zip(d["param_names"], init_names) if not i]
    print(f"== {name}: onnx={onnx_file} params={nparam} N={len(x)} loss={r64['loss']:.6f}")
    print(f"   ops: {ops}")
    print(f"   |onnx(numpy f64) - logits|={onnx_err:.2e}  |logits32-logits|="
          f"{np.abs(r32['logits'] - r64['logits']).max():.2e}  "
          f"hvp FD rel err={fd_err:.2e}  v'Hv={vhv:.5f}  v'Gv={vgv:.5f}")
    renamed = [(n, i, t) for n, i, t in zip(d["param_names"], init_names, transposed)
               if i != n]
    if renamed:
        print(f"   renamed initializers: {renamed}")
    if missing:
        print(f"   WARNING params not found among initializers: {missing}")
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = args.out
    EVAL, PRESERVE = torch.onnx.TrainingMode.EVAL, torch.onnx.TrainingMode.PRESERVE

    # --- mlp (cross-entropy)
    torch.manual_seed(1)
    mlp = make_mlp(3)
    x = torch.randn(4, 6).numpy()
    y = np.array([0, 2, 1, 2], dtype=np.int64)
    build("mlp", mlp, x, y, "ce", out, dense=True,
          notes="Sequential Linear(6,5)-Tanh-Linear(5,4)-Sigmoid-Linear(4,3); CrossEntropyLoss "
                "mean. 'hessian' is the dense float64 Hessian (P x P).")

    # --- mlp_mse
    torch.manual_seed(2)
    mlpm = make_mlp(2)
    x = torch.randn(4, 6).numpy()
    y = torch.randn(4, 2).numpy().astype(np.float32)
    build("mlp_mse", mlpm, x, y, "mse", out, dense=True,
          notes="Sequential Linear(6,5)-Tanh-Linear(5,4)-Sigmoid-Linear(4,2); torch.nn.MSELoss() "
                "mean over ALL N*2 elements (= per-sample-mean of the squared error summed over "
                "outputs, divided by 2). y float32 targets [N,2]. 'hessian' is dense.")

    # --- cnn_bn (BN kept as a node) and cnn_bn_fused (default export folds BN into conv1)
    torch.manual_seed(3)
    cnn = CnnBn()
    randomize_norms(cnn, torch.Generator().manual_seed(33))
    cnn.eval()
    x = torch.randn(5, 2, 8, 8).numpy()
    y = np.array([0, 1, 2, 1, 0], dtype=np.int64)
    build("cnn_bn", cnn, x, y, "ce", out, training=PRESERVE, fold=False,
          notes="Exported with training=TrainingMode.PRESERVE, do_constant_folding=False on the "
                "eval-mode model so the "
                "BatchNormalization node is kept (running stats are initializers "
                "bn1.running_mean/var). conv2 is dilation 2, groups 2; conv3 stride 2; "
                "AvgPool2d(2). Same model in train mode: cnn_bn_train.npz.")
    g = export(cnn, x, os.path.join(out, "cnn_bn_fused.onnx"), 13, True, EVAL).graph
    fused, names = fused_torch_model(cnn, g)
    build("cnn_bn_fused", fused, x, y, "ce", out, export_model=False, param_onnx=names,
          notes="Same network as cnn_bn exported with the default settings (TrainingMode.EVAL, "
                "do_constant_folding=True): the exporter folds bn1 into conv1, giving renamed "
                "initializers (see onnx_param). References are for the folded parameters "
                "(param_names are those of the PyTorch twin with BN replaced by Identity).")

    # --- cnn_bn_train: batch-statistics BatchNorm
    m1 = copy.deepcopy(cnn).train()
    with torch.no_grad():
        m1(torch.from_numpy(x).double().float())  # one forward in float32 updates the stats
    m1d = copy.deepcopy(cnn).double().train()
    with torch.no_grad():
        m1d(torch.from_numpy(x).double())
    extra = {"momentum": np.array(cnn.bn1.momentum), "eps": np.array(cnn.bn1.eps),
             "running_mean_before/bn1": cnn.bn1.running_mean.double().numpy(),
             "running_var_before/bn1": cnn.bn1.running_var.double().numpy(),
             "running_mean_after/bn1": m1d.bn1.running_mean.numpy(),
             "running_var_after/bn1": m1d.bn1.running_var.numpy(),
             "running_mean_after32/bn1": m1.bn1.running_mean.double().numpy(),
             "running_var_after32/bn1": m1.bn1.running_var.double().numpy()}
    build("cnn_bn_train", cnn, x, y, "ce", out, onnx_file="cnn_bn.onnx", export_model=False,
          train=True, extra=extra, seed_key="cnn_bn",
          notes="cnn_bn in train() mode: BN normalizes with batch statistics (biased variance "
                "over N*H*W). running_*_after = running stats after ONE forward in float64 "
                "(new = (1-momentum)*old + momentum*batch, var uses the UNBIASED batch variance). "
                "No separate ONNX: reuse cnn_bn.onnx, whose BatchNormalization holds the "
                "'before' running stats.")

    # --- resblock (BN kept) and resblock_fused (default export)
    torch.manual_seed(4)
    rb = ResBlock()
    randomize_norms(rb, torch.Generator().manual_seed(44))
    rb.eval()
    x = torch.randn(4, 3, 8, 8).numpy()
    y = np.array([2, 0, 1, 1], dtype=np.int64)
    build("resblock", rb, x, y, "ce", out, training=PRESERVE, fold=False,
          notes="Basic block conv3x3 s2 -> BN -> ReLU -> conv3x3 -> BN, shortcut conv1x1 s2 -> "
                "BN, Add, ReLU, GlobalAveragePool, Linear. Convs without bias. Exported with "
                "TrainingMode.PRESERVE, do_constant_folding=False so the 3 BatchNormalization "
                "nodes are kept.")
    g = export(rb, x, os.path.join(out, "resblock_fused.onnx"), 13, True, EVAL).graph
    fused, names = fused_torch_model(rb, g)
    build("resblock_fused", fused, x, y, "ce", out, export_model=False, param_onnx=names,
          notes="resblock exported with default settings: all 3 BN folded into the convs, "
                "which gain a bias; initializers renamed (onnx::Conv_*). References are for the "
                "folded parameters.")

    # --- attention, opset 17 and opset 13
    torch.manual_seed(5)
    att = Attention()
    randomize_norms(att, torch.Generator().manual_seed(55))
    att.eval()
    x = torch.randn(3, 4, 8).numpy()
    y = np.array([1, 0, 2], dtype=np.int64)
    for opset in (17, 13):
        build(f"attention_op{opset}", att, x, y, "ce", out, opset=opset, seed_key="attention",
              notes=f"Pre-LN transformer block, D=8, 2 heads, T=4, GELU(erf) MLP 8-16-8, mean "
                    f"over T, Linear head. Default export (do_constant_folding=True), opset "
                    f"{opset}" + (": LayerNormalization op." if opset == 17 else
                                  ": LayerNorm decomposed (ReduceMean/Sub/Pow/Sqrt/Div...).") +
                    " Linear on 3-D input becomes MatMul+Add and constant folding stores the "
                    "TRANSPOSED weight under a new name: see onnx_param / "
                    "onnx_param_transposed. The head split uses x.shape, so the graph has a "
                    "Shape/Gather/Div(int64)/Cast/Unsqueeze/Concat/Reshape sub-graph. Graph "
                    "constants (1/sqrt(dh) divisor, GELU sqrt(2), LN eps) are float32, so a float64 "
                    "run of the ONNX graph differs from 'logits' by ~1e-9.")

    print("\nfiles:")
    total = 0
    for f in sorted(os.listdir(out)):
        s = os.path.getsize(os.path.join(out, f))
        total += s
        print(f"  {f:28s} {s:8d} B")
    print(f"  total {total} B")


if __name__ == "__main__":
    main()
