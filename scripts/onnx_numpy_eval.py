#!/usr/bin/python3
"""Tiny float64 NumPy interpreter for the ONNX ops that appear in curv's fixtures.

Used by make_fixtures.py to check that each exported .onnx file really computes the reference
logits (there is no onnxruntime on the build machine). Not a general ONNX runtime: it supports
only the ops listed in OPS, with the attributes torch.onnx.export emits.

    /usr/bin/python3 scripts/onnx_numpy_eval.py MODEL.onnx FIXTURE.npz
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    import math
    _erf = np.vectorize(math.erf)


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads2(pads, nd):
    pads = list(pads) if pads else [0] * (2 * nd)
    return [(pads[i], pads[i + nd]) for i in range(nd)]


def _conv2d(x, w, b, strides, pads, dilations, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (pt, pb), (pl, pr) = _pads2(pads, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    sh, sw = strides
    dh, dw = dilations
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                           j * dw: j * dw + sw * (ow - 1) + 1: sw]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _pool2d(x, kernel, strides, pads, mode):
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    (pt, pb), (pl, pr) = _pads2(pads, 2)
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    oh = (h + pt + pb - kh) // sh + 1
    ow = (w + pl + pr - kw) // sw + 1
    y = np.full((n, c, oh, ow), fill)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
            y = np.maximum(y, patch) if mode == "max" else y + patch
    if mode == "avg":
        y /= kh * kw  # count_include_pad irrelevant for the unpadded pools used here
    return y


def run(model_path, x):
    m = onnx.load(model_path)
    env = {i.name: numpy_helper.to_array(i).astype(np.float64)
           if numpy_helper.to_array(i).dtype.kind == "f" else numpy_helper.to_array(i)
           for i in m.graph.initializer}
    env[m.graph.input[0].name] = np.asarray(x, dtype=np.float64)
    for node in m.graph.node:
        a = _attrs(node)
        ins = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Constant":
            t = numpy_helper.to_array(a["value"])
            out = t.astype(np.float64) if t.dtype.kind == "f" else t
        elif op == "Gemm":
            A, B = ins[0], ins[1]
            if a.get("transA", 0):
                A = A.T
            if a.get("transB", 0):
                B = B.T
            out = a.get("alpha", 1.0) * A @ B
            if len(ins) > 2 and ins[2] is not None:
                out = out + a.get("beta", 1.0) * ins[2]
        elif op == "MatMul":
            out = ins[0] @ ins[1]
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Sub":
            out = ins[0] - ins[1]
        elif op == "Mul":
            out = ins[0] * ins[1]
        elif op == "Div":
            out = ins[0] / ins[1]
        elif op == "Pow":
            out = np.power(ins[0], ins[1])
        elif op == "Sqrt":
            out = np.sqrt(ins[0])
        elif op == "Erf":
            out = _erf(ins[0])
        elif op == "Tanh":
            out = np.tanh(ins[0])
        elif op == "Sigmoid":
            out = 1.0 / (1.0 + np.exp(-ins[0]))
        elif op == "Relu":
            out = np.maximum(ins[0], 0.0)
        elif op == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        elif op == "ReduceMean":
            axes = a.get("axes")
            out = ins[0].mean(axis=tuple(axes) if axes is not None else None,
                              keepdims=bool(a.get("keepdims", 1)))
        elif op == "Conv":
            w = ins[1]
            nd = w.ndim - 2
            out = _conv2d(ins[0], w, ins[2] if len(ins) > 2 else None,
                          a.get("strides", [1] * nd), a.get("pads"),
                          a.get("dilations", [1] * nd), a.get("group", 1))
        elif op == "BatchNormalization":
            x_, s, b, mu, var = ins
            eps = a.get("epsilon", 1e-5)
            sh = (1, -1) + (1,) * (x_.ndim - 2)
            out = (x_ - mu.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) * s.reshape(sh) \
                + b.reshape(sh)
        elif op == "LayerNormalization":
            x_, s, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
            ax = a.get("axis", -1)
            axes = tuple(range(ax % x_.ndim, x_.ndim))
            mu = x_.mean(axis=axes, keepdims=True)
            var = ((x_ - mu) ** 2).mean(axis=axes, keepdims=True)
            out = (x_ - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * s
            if b is not None:
                out = out + b
        elif op == "MaxPool":
            out = _pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]),
                          a.get("pads"), "max")
        elif op == "AveragePool":
            out = _pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]),
                          a.get("pads"), "avg")
        elif op == "GlobalAveragePool":
            out = ins[0].mean(axis=tuple(range(2, ins[0].ndim)), keepdims=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Shape":
            out = np.array(ins[0].shape, dtype=np.int64)
        elif op == "Gather":
            out = np.take(ins[0], ins[1].astype(np.int64), axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            out = ins[0]
            for ax in sorted(int(v) for v in ins[1]):
                out = np.expand_dims(out, ax)
        elif op == "Squeeze":
            out = np.squeeze(ins[0], axis=tuple(int(v) for v in ins[1]))
        elif op == "Concat":
            out = np.concatenate(ins, axis=a["axis"])
        elif op == "Reshape":
            shape = [int(s) for s in ins[1]]
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            out = ins[0].reshape(shape)
        elif op == "Transpose":
            out = np.transpose(ins[0], a.get("perm"))
        elif op == "Cast":
            to = a["to"]
            out = ins[0].astype(np.int64 if to == onnx.TensorProto.INT64 else np.float64)
        elif op == "Pad":
            if a.get("mode", b"constant") not in (b"constant", "constant"):
                raise NotImplementedError(f"Pad mode {a['mode']} (node {node.name})")
            pads = [int(p) for p in ins[1]]
            r = ins[0].ndim
            cval = float(ins[2]) if len(ins) > 2 and ins[2] is not None else 0.0
            if min(pads) < 0:
                raise NotImplementedError("negative Pad")
            out = np.pad(ins[0], [(pads[i], pads[i + r]) for i in range(r)],
                         constant_values=cval)
        elif op == "Identity":
            out = ins[0]
        else:
            raise NotImplementedError(f"op {op} (node {node.name})")
        env[node.output[0]] = out
    return env[m.graph.output[0].name]


if __name__ == "__main__":
    ref = np.load(sys.argv[2])
    out = run(sys.argv[1], ref["x"])
    print("max |onnx - logits| =", np.abs(out - ref["logits"]).max())
