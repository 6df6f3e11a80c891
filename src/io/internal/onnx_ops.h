#pragma once
/// \file onnx_ops.h
/// The one mapping from an op description (ONNX op type + curv-level attributes, with constant
/// operands already folded in) to an engine op. The ONNX importer and the checkpoint loader both
/// build ops through make_op, so a checkpoint rebuilds exactly the ops the importer made.
///
/// Attributes by op type (JSON; omitted fields take the ONNX defaults):
///   Gemm {transA, transB, alpha, beta}   Conv {kernel, strides, dilations, pads, group}
///   MaxPool / AveragePool {kernel, strides, dilations, pads, ceil_mode, count_include_pad}
///   Softmax / LogSoftmax {axis}          ReduceMean / ReduceSum {axes, keepdims}
///   BatchNormalization {epsilon, training}   LayerNormalization {axis, epsilon}
///   Reshape {shape, allowzero}   Flatten {axis}   Transpose {perm}   Concat {axis}
///   Slice {starts, ends, axes, steps}   Gather {axis, indices, indices_shape}
///   Unsqueeze / Squeeze {axes}   LeakyRelu {alpha}   Pow {exponent}
///   FakeQuantize {scale, zero_point, qmin, qmax} (curv only, src/core/fake_quantize.h)
///   no attributes: MatMul Add Sub Mul Div Relu Sigmoid Tanh Erf Gelu Sqrt Exp Log Neg Reciprocal
///                  GlobalAveragePool Identity Dropout Cast Pad
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "src/core/model.h"
#include "src/core/op.h"

namespace curv {

struct OpSpec {
  std::string type;
  nlohmann::json attrs = nlohmann::json::object();
};

/// Builds the op; throws std::invalid_argument for an unknown type or a malformed attribute.
OpPtr make_op(const OpSpec& spec);

/// Key under which Model::meta() records the OpSpec (as JSON) of the node named `node`.
std::string op_spec_key(const std::string& node);
/// Records the spec of a node in the model's metadata.
void record_op_spec(Model& m, const std::string& node, const OpSpec& spec);

/// The spec of a node: the one recorded at import (if it still rebuilds an op equal to the node's
/// op), or else one recovered from Op::type() / Op::attributes() for ops whose description is
/// complete. Returns nullopt when neither works.
std::optional<OpSpec> describe_node(const Model& m, int node);

}  // namespace curv
