#!/usr/bin/python3
"""Fixtures for the op boundary tests (tests/test_op_specs.cpp): ONNX models and curv checkpoints
whose op attributes are out of range. Each must fail to load with one error naming the file and
the node, never crash (several of them crashed curv before the op attributes were checked).

Run with Debian's python: /usr/bin/python3 scripts/make_op_fixtures.py
Writes data/fixtures/ops/bad_*.onnx (under 1 KB each), data/fixtures/ops/bad_*.h5 (about 10 KB each) and
data/fixtures/ops/bad_attributes.json, the list the test reads: file -> text the error must contain.
Deterministic: re-running gives the same files.
"""
import json
import os

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "ops")
os.makedirs(OUT, exist_ok=True)
BIG = 2**62
EXPECT = {}


def p(name):
    return os.path.join(OUT, name)


# ---- ONNX ----------------------------------------------------------------------------------
def model(nodes, inits=(), channels=4, opset=13):
    """input [N, channels, 4, 4] -> nodes -> the last node's first output."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, 4, 4])
    out = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", [inp], [out], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_op_fixtures")
    m.ir_version = 7
    return m


def weight(name, shape):
    v = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return helper.make_tensor(name, TensorProto.FLOAT, shape, v.flatten().tolist())


def ints(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def onnx_case(file, expect, nodes, inits=(), **kw):
    onnx.save(model(nodes, inits, **kw), p(file))
    EXPECT[file] = expect


def pool(op, name="pool1", **attrs):
    return helper.make_node(op, ["input"], ["y"], name=name, **attrs)


def conv(name="conv1", w=(4, 4, 3, 3), **attrs):
    return [helper.make_node("Conv", ["input", "w"], ["y"], name=name, **attrs)], [weight("w", list(w))]


# The crashes: heap corruption (kernel <= 0, pads >= kernel), a segfault (pads 2^62), SIGFPE (stride 0).
onnx_case("bad_maxpool_kernel0.onnx", "node 'pool1' (MaxPool, opset 13): kernel_shape must be >= 1, got [0, 0]",
          [pool("MaxPool", kernel_shape=[0, 0])])
onnx_case("bad_maxpool_kernel_neg.onnx", "node 'pool1' (MaxPool, opset 13): kernel_shape must be >= 1, got [-1, 2]",
          [pool("MaxPool", kernel_shape=[-1, 2])])
onnx_case("bad_maxpool_pads_ge_kernel.onnx",
          "node 'pool1' (MaxPool, opset 13): pads [2, 0, 2, 0] must be smaller than the kernel_shape [2, 2]",
          [pool("MaxPool", kernel_shape=[2, 2], pads=[2, 0, 2, 0])])
onnx_case("bad_maxpool_pads_huge.onnx",
          "node 'pool1' (MaxPool, opset 13): pads must be <= 4294967296, got [4611686018427387904,",
          [pool("MaxPool", kernel_shape=[2, 2], pads=[BIG, BIG, BIG, BIG])])
onnx_case("bad_maxpool_stride0.onnx", "node 'pool1' (MaxPool, opset 13): strides must be >= 1, got [0, 1]",
          [pool("MaxPool", kernel_shape=[2, 2], strides=[0, 1])])
onnx_case("bad_avgpool_stride0.onnx", "node 'pool1' (AveragePool, opset 13): strides must be >= 1, got [0, 0]",
          [pool("AveragePool", kernel_shape=[2, 2], strides=[0, 0])])
onnx_case("bad_avgpool_same_stride0.onnx",
          "node 'pool1' (AveragePool, opset 13): strides must be >= 1, got [0, 0]",
          [pool("AveragePool", kernel_shape=[2, 2], strides=[0, 0], auto_pad="SAME_UPPER")])
onnx_case("bad_conv_stride0.onnx", "node 'conv1' (Conv, opset 13): strides must be >= 1, got [0, 0]",
          *conv(kernel_shape=[3, 3], strides=[0, 0]))
onnx_case("bad_conv_dilation0.onnx", "node 'conv1' (Conv, opset 13): dilations must be >= 1, got [1, 0]",
          *conv(dilations=[1, 0]))
onnx_case("bad_conv_pads_neg.onnx", "node 'conv1' (Conv, opset 13): pads must be >= 0, got [1, 1, -1, 1]",
          *conv(pads=[1, 1, -1, 1]))
onnx_case("bad_conv_pads_huge.onnx", "node 'conv1' (Conv, opset 13): pads must be <= 4294967296",
          *conv(pads=[BIG, 0, 0, 0]))
onnx_case("bad_conv_group0.onnx", "node 'conv1' (Conv, opset 13): group must be >= 1, got 0", *conv(group=0))
onnx_case("bad_conv_group3.onnx", "with group=3 expects 12", *conv(group=3))
onnx_case("bad_conv_strides_len.onnx", "node 'conv1' (Conv, opset 13): kernel_shape [3, 3], strides [1]",
          *conv(strides=[1]))
onnx_case("bad_conv_kernel_mismatch.onnx", "kernel_shape [5, 5] does not match W [4, 4, 3, 3]",
          *conv(kernel_shape=[5, 5]))
onnx_case("bad_conv_strides_type.onnx", "node 'conv1' (Conv, opset 13): attribute 'strides' must be INTS, got INT",
          *conv(strides=2))
# Axes, permutations and indices.
onnx_case("bad_transpose_perm.onnx",
          "node 'transpose1' (Transpose, opset 13): perm [0, 0, 1, 2] is not a permutation of 0..3",
          [helper.make_node("Transpose", ["input"], ["y"], name="transpose1", perm=[0, 0, 1, 2])])
onnx_case("bad_transpose_rank.onnx", "Transpose: perm [1, 0] does not fit [1, 4, 4, 4]",
          [helper.make_node("Transpose", ["input"], ["y"], name="transpose1", perm=[1, 0])])
onnx_case("bad_softmax_axis.onnx", "node 'softmax1' (Softmax, opset 13): axis 9 out of range for rank 4",
          [helper.make_node("Softmax", ["input"], ["y"], name="softmax1", axis=9)])
onnx_case("bad_flatten_axis.onnx", "Flatten: axis out of range",
          [helper.make_node("Flatten", ["input"], ["y"], name="flatten1", axis=-9)])
onnx_case("bad_concat_axis.onnx", "Concat: axis 4 out of range for rank 4",
          [helper.make_node("Concat", ["input", "input"], ["y"], name="concat1", axis=4)])
onnx_case("bad_squeeze_axis.onnx", "Squeeze: axis 7 out of range for rank 4",
          [helper.make_node("Squeeze", ["input", "axes"], ["y"], name="squeeze1")], [ints("axes", [7])])
onnx_case("bad_unsqueeze_repeat.onnx", "node 'unsqueeze1' (Unsqueeze, opset 13): axes [1, 1] repeat an axis",
          [helper.make_node("Unsqueeze", ["input", "axes"], ["y"], name="unsqueeze1")], [ints("axes", [1, 1])])
onnx_case("bad_gather_index.onnx", "Gather: index 5 out of range for dim 4",
          [helper.make_node("Gather", ["input", "idx"], ["y"], name="gather1", axis=1)], [ints("idx", [5])])
onnx_case("bad_slice_step0.onnx", "node 'slice1' (Slice, opset 13): steps [0] must be nonzero",
          [helper.make_node("Slice", ["input", "s", "e", "a", "t"], ["y"], name="slice1")],
          [ints("s", [0]), ints("e", [2]), ints("a", [1]), ints("t", [0])])
onnx_case("bad_slice_lengths.onnx", "node 'slice1' (Slice, opset 13): starts [0, 0], ends [2]",
          [helper.make_node("Slice", ["input", "s", "e"], ["y"], name="slice1")], [ints("s", [0, 0]), ints("e", [2])])
onnx_case("bad_reshape_target.onnx", "node 'reshape1' (Reshape, opset 13): shape must be >= -1, got [0, -5]",
          [helper.make_node("Reshape", ["input", "shape"], ["y"], name="reshape1")], [ints("shape", [0, -5])])
onnx_case("bad_reshape_huge.onnx", "overflows",
          [helper.make_node("Reshape", ["input", "shape"], ["y"], name="reshape1")],
          [ints("shape", [0, 2**40, 2**40])])
onnx_case("bad_leakyrelu_alpha.onnx", "node 'relu1' (LeakyRelu, opset 13): alpha must be finite, got inf",
          [helper.make_node("LeakyRelu", ["input"], ["y"], name="relu1", alpha=float("inf"))])
onnx_case("bad_batchnorm_epsilon.onnx",
          "node 'bn1' (BatchNormalization, opset 13): epsilon must be finite and >= 0, got -1",
          [helper.make_node("BatchNormalization", ["input", "s", "b", "m", "v"], ["y"], name="bn1", epsilon=-1.0)],
          [weight(n, [4]) for n in ("s", "b", "m", "v")])
# Vision and recurrent ops: unsupported modes and attributes name the node.
def floats(name, values):
    return helper.make_tensor(name, TensorProto.FLOAT, [len(values)], values)


onnx_case("bad_resize_cubic.onnx", "node 'resize1' (Resize, opset 13): mode 'cubic' is not supported (nearest or linear)",
          [helper.make_node("Resize", ["input", "", "scales"], ["y"], name="resize1", mode="cubic")],
          [floats("scales", [1, 1, 2, 2])])
onnx_case("bad_resize_channels.onnx",
          "node 'resize1' (Resize, opset 13): scales must be 4 values [1, 1, sh, sw] (only H and W are resized)",
          [helper.make_node("Resize", ["input", "", "scales"], ["y"], name="resize1")], [floats("scales", [1, 2, 2, 2])])
onnx_case("bad_resize_scale0.onnx", "node 'resize1' (Resize, opset 13): scales [0, 2] must be > 0 and <= 1e6",
          [helper.make_node("Resize", ["input", "", "scales"], ["y"], name="resize1")], [floats("scales", [1, 1, 0, 2])])
onnx_case("bad_convtranspose_output_padding.onnx",
          "node 'up1' (ConvTranspose, opset 13): output_padding [2, 2] must be >= 0 and smaller than strides [2, 2]",
          [helper.make_node("ConvTranspose", ["input", "w"], ["y"], name="up1", strides=[2, 2], output_padding=[2, 2])],
          [weight("w", [4, 2, 3, 3])])
onnx_case("bad_convtranspose_output_shape.onnx", "node 'up1' (ConvTranspose, opset 13): output_shape is not supported",
          [helper.make_node("ConvTranspose", ["input", "w"], ["y"], name="up1", output_shape=[8, 8])],
          [weight("w", [4, 2, 3, 3])])
onnx_case("bad_clip_min.onnx", "node 'clip1' (Clip, opset 13): min must be finite, got -inf",
          [helper.make_node("Clip", ["input", "lo"], ["y"], name="clip1")],
          [helper.make_tensor("lo", TensorProto.FLOAT, [], [float("-inf")])])
onnx_case("bad_hardsigmoid_alpha.onnx", "node 'hs1' (HardSigmoid, opset 13): alpha must be finite, got nan",
          [helper.make_node("HardSigmoid", ["input"], ["y"], name="hs1", alpha=float("nan"))])
onnx_case("bad_lstm_initial_h.onnx", "node 'lstm1' (LSTM, opset 13): initial_h must be zero",
          [helper.make_node("Reshape", ["input", "shape"], ["seq"], name="reshape1"),
           helper.make_node("LSTM", ["seq", "w", "r", "", "", "h0"], ["y"], name="lstm1", hidden_size=2)],
          [ints("shape", [0, 4, 16]), weight("w", [1, 8, 16]), weight("r", [1, 8, 2]), weight("h0", [1, 4, 2])])


# Sizes that do not fit: an initializer of 2^64 elements with no data, a folded constant of 2^40.
big = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**32, 2**32])
onnx_case("bad_initializer_dims.onnx", "initializer 'w': shape [4294967296, 4294967296] is too large",
          [helper.make_node("Add", ["input", "w"], ["y"], name="add1")], [big])
onnx_case("bad_constant_of_shape.onnx", "node 'fill1' (ConstantOfShape, opset 13): ConstantOfShape: folded result",
          [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="fill1"),
           helper.make_node("Add", ["input", "c"], ["y"], name="add1")], [ints("shape", [2**40])])

# Mask and attention ops: bad equations, wrong arity, shapes that do not broadcast, Range on data.
onnx_case("bad_einsum_diagonal.onnx",
          "node 'einsum1' (Einsum, opset 13): equation 'abcc->abc' repeats label 'c' within operand 'abcc'",
          [helper.make_node("Einsum", ["input"], ["y"], name="einsum1", equation="abcc->abc")])
onnx_case("bad_einsum_ellipsis.onnx", "node 'einsum1' (Einsum, opset 13): equation '...ij->...ji' uses an ellipsis",
          [helper.make_node("Einsum", ["input"], ["y"], name="einsum1", equation="...ij->...ji")])
onnx_case("bad_einsum_arity.onnx", "node 'einsum1' (Einsum): expected 2 inputs, got 1",
          [helper.make_node("Einsum", ["input"], ["y"], name="einsum1", equation="abcd,abcd->abcd")])
onnx_case("bad_where_arity.onnx", "node 'where1' (Where, opset 13): takes 3 inputs (condition, X, Y), got 2",
          [helper.make_node("Where", ["input", "input"], ["y"], name="where1")])
onnx_case("bad_where_broadcast.onnx", "Where: condition [1, 4, 4, 4], X [1, 4, 4, 4] and Y [3] do not broadcast",
          [helper.make_node("Where", ["input", "input", "w"], ["y"], name="where1")], [weight("w", [3])])
onnx_case("bad_max_broadcast.onnx", "Max: cannot broadcast [1, 4, 4, 4] with [3]",
          [helper.make_node("Max", ["input", "w"], ["y"], name="max1")], [weight("w", [3])])
onnx_case("bad_expand_shape.onnx", "Expand: input [1, 4, 4, 4] does not broadcast with shape [1, 3, 1, 1]",
          [helper.make_node("Expand", ["input", "shape"], ["y"], name="expand1")], [ints("shape", [1, 3, 1, 1])])
onnx_case("bad_range_data.onnx", "node 'range1' (Range, opset 13): start, limit and delta must be constants",
          [helper.make_node("ReduceSum", ["input"], ["s"], name="sum1", keepdims=0),
           helper.make_node("Range", ["s", "s", "s"], ["y"], name="range1")])


# ---- curv checkpoints: a valid one-node layout with bad attributes in /graph ----------------
def group(f, name):
    """A group without creation times (so that re-running gives the same bytes)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(f.id, name.encode(), gcpl=gcpl))


def checkpoint(file, expect, node, params=()):
    """input [1, 4, 4] (per sample) -> node `node` (dict with name, type, attrs, inputs) -> output."""
    values = [{"name": "input", "kind": "input"}]
    values += [{"name": n, "kind": "param"} for n, _ in params]
    values += [{"name": node["name"], "kind": "node"}]
    graph = {"input": {"name": "input", "shape": [1, 4, 4]}, "output": node["name"], "values": values,
             "nodes": [node]}
    text = json.dumps(graph).encode()
    with h5py.File(p(file), "w") as f:
        f.attrs["format"] = "curv-checkpoint"
        f.attrs["schema_version"] = np.int64(1)
        f.create_dataset("graph", data=np.array(text, dtype="S%d" % len(text)))
        g = group(f, "params")
        for n, v in params:
            d = g.create_dataset(n, data=v)
            d.attrs["name"] = n
        group(f, "constants")
        group(f, "meta")
    EXPECT[file] = expect


def pool_node(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), typ="MaxPool"):
    return {"name": "pool1", "type": typ, "inputs": ["input"],
            "attrs": {"kernel": list(kernel), "strides": list(strides), "pads": list(pads)}}


checkpoint("bad_ckpt_maxpool_kernel0.h5", "node 'pool1' (MaxPool): kernel_shape must be >= 1, got [0, 0]",
           pool_node(kernel=(0, 0)))
checkpoint("bad_ckpt_maxpool_pads_ge_kernel.h5",
           "node 'pool1' (MaxPool): pads [2, 2, 2, 2] must be smaller than the kernel_shape [2, 2]",
           pool_node(pads=(2, 2, 2, 2)))
checkpoint("bad_ckpt_maxpool_pads_huge.h5", "node 'pool1' (MaxPool): pads must be <= 4294967296",
           pool_node(pads=(BIG, BIG, BIG, BIG)))
checkpoint("bad_ckpt_maxpool_stride0.h5", "node 'pool1' (MaxPool): strides must be >= 1, got [0, 2]",
           pool_node(strides=(0, 2)))
checkpoint("bad_ckpt_avgpool_stride0.h5", "node 'pool1' (AveragePool): strides must be >= 1, got [0, 0]",
           pool_node(strides=(0, 0), typ="AveragePool"))
checkpoint("bad_ckpt_conv_stride0.h5", "node 'conv1' (Conv): strides must be >= 1, got [0, 0]",
           {"name": "conv1", "type": "Conv", "inputs": ["input", "w"],
            "attrs": {"kernel": [3, 3], "strides": [0, 0], "pads": [1, 1, 1, 1]}},
           [("w", np.ones((2, 1, 3, 3)))])
checkpoint("bad_ckpt_attr_kind.h5", "node 'pool1' (MaxPool): attribute 'kernel' must be a list of integers",
           {"name": "pool1", "type": "MaxPool", "inputs": ["input"], "attrs": {"kernel": "2x2"}})
checkpoint("bad_ckpt_attr_unknown.h5", "node 'pool1' (MaxPool): unknown attribute 'size'",
           {"name": "pool1", "type": "MaxPool", "inputs": ["input"], "attrs": {"kernel": [2, 2], "size": 3}})
checkpoint("bad_ckpt_op_unknown.h5", "node 'op1' (Hardmax): unsupported op type 'Hardmax'",
           {"name": "op1", "type": "Hardmax", "inputs": ["input"], "attrs": {}})
checkpoint("bad_ckpt_int_range.h5", "node 'pool1' (MaxPool): attribute 'kernel'",
           {"name": "pool1", "type": "MaxPool", "inputs": ["input"], "attrs": {"kernel": [2, 2**64 - 1]}})

# ---- a good model: GELU as PyTorch exports it (opset < 20) --------------------------------------
# gelu_patterns.onnx: out = a + b + c + e on input [N, 4, 4, 4], with
#   a = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)    the exported GELU: imported as one Gelu node
#   b = the same with Div(x, 2)                          another function: imported node by node
#   c = the same as a, but its Erf output e is also read by the final Add: imported node by node
# tests/test_op_specs.cpp checks the fused count and the outputs against the formula.
def const(name, value):
    return helper.make_node("Constant", [], [name], name=name,
                            value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [value]))


def gelu_nodes(tag, divisor, x="input"):
    return [const(tag + "_c", divisor),
            helper.make_node("Div", [x, tag + "_c"], [tag + "_d"], name="/" + tag + "/Div"),
            helper.make_node("Erf", [tag + "_d"], [tag + "_e"], name="/" + tag + "/Erf"),
            const(tag + "_one", 1.0),
            helper.make_node("Add", [tag + "_e", tag + "_one"], [tag + "_a"], name="/" + tag + "/Add"),
            helper.make_node("Mul", [x, tag + "_a"], [tag + "_m"], name="/" + tag + "/Mul"),
            const(tag + "_half", 0.5),
            helper.make_node("Mul", [tag + "_m", tag + "_half"], [tag], name="/" + tag + "/Mul_1")]


onnx.save(model(gelu_nodes("a", float(np.float32(np.sqrt(2.0)))) + gelu_nodes("b", 2.0) +
                gelu_nodes("c", float(np.float32(np.sqrt(2.0)))) +
                [helper.make_node("Add", ["a", "b"], ["ab"], name="/ab"),
                 helper.make_node("Add", ["c", "c_e"], ["ce"], name="/ce"),
                 helper.make_node("Add", ["ab", "ce"], ["out"], name="/out")]),
          p("gelu_patterns.onnx"))

with open(p("bad_attributes.json"), "w") as f:
    json.dump(EXPECT, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote %d fixtures to %s" % (len(EXPECT), os.path.normpath(OUT)))
