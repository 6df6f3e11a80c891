#!/usr/bin/python3
"""Small fixtures for tests/test_io.cpp (datasets and malformed ONNX models).

Run with Debian's python: /usr/bin/python3 scripts/make_io_fixtures.py
Writes data/fixtures/io/*. Deterministic; every file is a few KB at most.
`--only cast` writes just the Cast fixtures (cast_fixtures()).
"""
import os
import sys

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)


def p(name):
    return os.path.join(OUT, name)


def cast_fixtures():
    """Token ids computed in float and cast back (curv's own export writes this before a Gather):
    cast_index.onnx (Cast(to INT64) -> Gather: accepted) and cast_int_bad.onnx (the Cast also
    feeds a Mul: refused, curv does not truncate)."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 2])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 3])
    table = helper.make_tensor("emb.weight", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32) / 7)
    nodes = [helper.make_node("Cast", ["ids"], ["f"], name="/to_float", to=TensorProto.FLOAT),
             helper.make_node("Constant", [], ["one"], name="/one", value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])),
             helper.make_node("Add", ["f", "one"], ["g"], name="/add"),
             helper.make_node("Cast", ["g"], ["i"], name="/to_int", to=TensorProto.INT64),
             helper.make_node("Gather", ["emb.weight", "i"], ["logits"], name="/emb/Gather")]
    for name, extra in (("cast_index.onnx", []), ("cast_int_bad.onnx", ["bad"])):
        ns = list(nodes)
        if extra:
            ns[-1] = helper.make_node("Gather", ["emb.weight", "i"], ["e"], name="/emb/Gather")
            ns += [helper.make_node("Cast", ["i"], ["h"], name="/back", to=TensorProto.FLOAT),
                   helper.make_node("Unsqueeze", ["h", "ax"], ["hu"], name="/unsq"),
                   helper.make_node("Mul", ["e", "hu"], ["logits"], name="/mul")]
            axes = helper.make_tensor("ax", TensorProto.INT64, [1], [2])
        g = helper.make_graph(ns, "g", [ids], [out], initializer=[table] + ([axes] if extra else []))
        onnx.save(helper.make_model(g, producer_name="make_io_fixtures", opset_imports=[helper.make_opsetid("", 13)]),
                  p(name))
    np.savez(p("cast_index.npz"), ids=np.array([[0, 2], [1, 0]], dtype=np.int64), y=np.array([[0, 1], [2, 0]]))


if __name__ == "__main__" and sys.argv[1:] == ["--only", "cast"]:
    cast_fixtures()
    sys.exit(0)


# ---- datasets ------------------------------------------------------------------------------
x_u8 = rng.integers(0, 256, size=(6, 1, 4, 4), dtype=np.uint8)
y_i8 = np.array([0, 1, 2, 3, 4, 5], dtype=np.int64)
np.savez(p("u8_labels.npz"), x=x_u8, y=y_i8)
x_f4 = rng.standard_normal((5, 3)).astype(np.float32)
y_f4 = rng.standard_normal((5, 2)).astype(np.float32)
np.savez_compressed(p("f4_targets.npz"), x=x_f4, y=y_f4)
np.savez(p("f8_i4.npz"), x=x_f4.astype(np.float64), y=np.array([1, 0, 1, 0, 1], dtype=np.int32))
np.savez(p("no_y.npz"), x=x_f4)
np.savez(p("bad_dtype.npz"), x=x_f4.astype(np.float16), y=y_i8[:5])
np.savez(p("count_mismatch.npz"), x=x_f4, y=y_i8)
x_nan = x_f4.copy()
x_nan[2, 1] = np.nan
np.savez(p("nan_x.npz"), x=x_nan, y=y_i8[:5])
with h5py.File(p("data.h5"), "w") as f:
    f["x"] = x_u8
    f["y"] = y_i8
with h5py.File(p("data_f.h5"), "w") as f:
    f["x"] = x_f4
    f["y"] = y_f4
with h5py.File(p("no_y.h5"), "w") as f:
    f["x"] = x_f4


def idx(path, arr):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]))
        for d in arr.shape:
            f.write(int(d).to_bytes(4, "big"))
        f.write(arr.astype(np.uint8).tobytes())


idx(p("tiny-images-idx3-ubyte"), x_u8[:, 0])
idx(p("tiny-labels-idx1-ubyte"), y_i8)
idx(p("orphan-images-idx3-ubyte"), x_u8[:, 0])


# ---- malformed / unsupported ONNX models ---------------------------------------------------
def linear_graph(nodes, inputs, inits, name="g"):
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph(nodes, name, inputs, [out], initializer=inits)
    return helper.make_model(g, producer_name="make_io_fixtures", opset_imports=[helper.make_opsetid("", 13)])


inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
w = rng.standard_normal((3, 4)).astype(np.float32)
b = rng.standard_normal(3).astype(np.float32)
W = helper.make_tensor("fc.weight", TensorProto.FLOAT, [3, 4], w.flatten())
B = helper.make_tensor("fc.bias", TensorProto.FLOAT, [3], b)
gemm = helper.make_node("Gemm", ["input", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1)

m = linear_graph([gemm], [inp], [W, B])
onnx.save(m, p("linear.onnx"))
np.savez(p("linear.npz"), x=x_f4[:, :3].repeat(2, axis=1)[:, :4], y=np.array([0, 1, 2, 0, 1], dtype=np.int64))

# unknown op
weird = helper.make_node("Hardmax", ["/fc/out"], ["logits"], name="/weird/Hardmax")
gemm2 = helper.make_node("Gemm", ["input", "fc.weight", "fc.bias"], ["/fc/out"], name="/fc/Gemm", transB=1)
onnx.save(linear_graph([gemm2, weird], [inp], [W, B]), p("unknown_op.onnx"))

# two data inputs
inp2 = helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 3])
add = helper.make_node("Add", ["/fc/out", "mask"], ["logits"], name="/Add")
onnx.save(linear_graph([gemm2, add], [inp, inp2], [W, B]), p("two_inputs.onnx"))

# NaN weight
wn = w.copy()
wn[1, 2] = np.nan
WN = helper.make_tensor("fc.weight", TensorProto.FLOAT, [3, 4], wn.flatten())
onnx.save(linear_graph([gemm], [inp], [WN, B]), p("nan_weight.onnx"))

# unsupported attribute value (Gemm transA=1 on a data input is fine; use Softmax axis on op 11 ok)
# unsupported dtype: a float16 initializer
W16 = helper.make_tensor("fc.weight", TensorProto.FLOAT16, [3, 4], w.astype(np.float16).view(np.uint16).flatten())
onnx.save(linear_graph([gemm], [inp], [W16, B]), p("fp16_weight.onnx"))

# not ONNX at all
with open(p("not_onnx.onnx"), "wb") as f:
    f.write(b"this is not a protobuf \xff\xfe\x00 model file\n" * 4)

print("wrote", sorted(os.listdir(OUT)))


# ---- opset 11 / 12 exports: attribute forms of axes, Softmax coercion, view(x.size(0), -1) -------
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import stateless  # noqa: E402

torch.manual_seed(3)
torch.set_num_threads(1)


class OldOpsetNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 6)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = h.view(h.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        h = self.fc(h).unsqueeze(1)  # Unsqueeze (axes attribute before opset 13)
        h = h.reshape(h.size(0), 2, 3)
        h = torch.softmax(h, dim=-1) * h
        h = h.sum(dim=1)  # ReduceSum (axes attribute before opset 13)
        h = torch.tanh(h[:, 0:3].unsqueeze(2)).squeeze(2)  # Slice, Squeeze
        return h - h.mean(dim=-1, keepdim=True)


class PadNet(nn.Module):
    """Explicit zero padding: ZeroPad2d and AvgPool2d(padding, count_include_pad=True) export Pad."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 1, 0))
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.pool2 = nn.AvgPool2d(2, padding=1, count_include_pad=False)
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x):
        h = self.pool2(self.pool(torch.relu(self.conv(self.pad(x)))))
        return self.fc(torch.flatten(h, 1))


class ClipSplitNet(nn.Module):
    """Split (torch.split) and Clip (ReLU6, hardtanh, clamp with one bound)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 12)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        a, b, c = torch.split(self.fc(x * 4), [4, 4, 4], dim=1)
        h = a * nn.functional.relu6(b) + nn.functional.hardtanh(c, -0.5, 0.5) + torch.clamp(a, min=0.1)
        return self.head(h)


def export_old(opset, cls=OldOpsetNet, name=None, shape=(4, 1, 4, 4), dynamic=True):
    net = cls().eval()
    x = torch.rand(*shape)
    y = torch.tensor([0, 2, 1, 2])
    path = p((name or "opset%d" % opset) + ".onnx")
    if dynamic:
        torch.onnx.export(net, x, path, input_names=["input"], output_names=["logits"], opset_version=opset,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    else:  # batch fixed to 1 in the file; shape sub-graphs fold to constants starting with 1
        torch.onnx.export(net, x[:1], path, input_names=["input"], output_names=["logits"], opset_version=opset)
    net64 = cls().double()
    net64.load_state_dict(net.state_dict())
    names = [n for n, _ in net64.named_parameters()]
    params = [q.detach().clone().requires_grad_(True) for _, q in net64.named_parameters()]
    x64 = x.double()

    def f(*ps):
        return stateless.functional_call(net64, dict(zip(names, ps)), (x64,))

    z = f(*params)
    loss = nn.functional.cross_entropy(z, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(q).float().double() for q in params]
    hvp = torch.autograd.grad(grads, params, grad_outputs=v)
    _, jv = torch.autograd.functional.jvp(f, tuple(q.detach() for q in params), tuple(v))
    prob = torch.softmax(z.detach(), -1)
    hu = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) / x.shape[0]
    ggn = torch.autograd.grad(f(*params), params, grad_outputs=hu)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    extra = {"shape/" + n: np.array(q.shape, dtype=np.int64) for n, q in zip(names, params)}
    # float32 references
    z32 = net(x)
    loss32 = nn.functional.cross_entropy(z32, y)
    g32 = torch.autograd.grad(loss32, list(net.parameters()), create_graph=True)
    h32 = torch.autograd.grad(g32, list(net.parameters()), grad_outputs=[t.float() for t in v])
    np.savez(p((name or "opset%d" % opset) + ".npz"), x=x.numpy(), y=y.numpy(), logits=z.detach().numpy(),
             loss=np.array(loss.item()), grad=flat(grads), v=flat(v), hvp=flat(hvp), ggn_v=flat(ggn),
             logits32=z32.detach().numpy(), loss32=np.array(loss32.item()), grad32=flat(g32).astype(np.float32),
             hvp32=flat(h32).astype(np.float32), ggn_v32=flat(ggn).astype(np.float32),
             param_names=np.array(names), onnx_param=np.array(names),
             onnx_param_transposed=np.zeros(len(names), dtype=np.int64), **extra)


export_old(11)
export_old(12)
export_old(13, PadNet, "zero_pad", (4, 1, 6, 6))
export_old(13, OldOpsetNet, "fixed_batch", dynamic=False)
export_old(13, ClipSplitNet, "clip_split", (4, 6))
print("wrote opset11/opset12")
cast_fixtures()
