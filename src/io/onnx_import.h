#pragma once
/// \file onnx_import.h
/// Import of ONNX models as `torch.onnx.export` writes them (opsets 11-18) into a Model.
///
/// - One or more data inputs (graph inputs that are initializers do not count), FLOAT, DOUBLE or
///   integer (INT64, INT32, BOOL: token ids and masks, kept exactly; dataset.h); their first dim
///   is the free batch dimension, the others must be fixed. A `Gather` whose indices are data
///   (not a load-time constant) becomes an Embedding (ops.h).
/// - Float initializers used as data operands become trainable parameters named by the
///   initializer (`0.weight`, `layer1.0.conv1.weight`), in order of first use; BatchNorm running
///   mean/var and Constant-node values become constants. PyTorch's generated names
///   (`onnx::Conv_27` for a convolution with BatchNorm folded in, `onnx::MatMul_132` for a
///   Linear's transposed weight) are replaced by the module's name when the initializer feeds one
///   Conv/ConvTranspose/Gemm/MatMul node named after its module scope ("/layer1/layer1.0/conv1/Conv"):
///   `layer1.0.conv1.weight`, `.bias`, or `.weight_t` for a MatMul's [in, out] operand, so a
///   layer's weight and bias form one layer block. Model::meta()["onnx_names"] (a JSON object)
///   maps each renamed parameter to the file's name; onnx_initializer_name() reads it.
///   A generated 2-D initializer that is exactly the transpose of another float initializer (a
///   tied weight: PyTorch exports F.linear(h, tok.weight) with a folded copy of tok.weight^T)
///   becomes a Transpose node of that parameter, so the model keeps one tied parameter
///   (Model::meta()["tied"] lists them).
///   `params_regex` (if not empty) selects the parameters, `freeze_regex` turns matching ones into
///   constants (std::regex_search, ECMAScript, on the parameter names as `curv info` lists them).
/// - Constant sub-graphs (Constant, Shape, Gather, Unsqueeze, Concat, Cast, Slice, arithmetic)
///   are folded at load time with the batch size kept symbolic; operands that are shapes, axes,
///   indices or exponents are folded into op attributes.
/// - Each node becomes an op spec (op_spec.h) that make_op checks before the op is built: kernel,
///   stride, dilation, pads, group, axes, permutations, indices, list lengths, and every size
///   computed from shapes (overflow-checked, at most kMaxTensorElements). Model::meta() holds
///   `source`, `producer`, `opset`.
///
/// Errors (std::runtime_error, one line):
///   "<file>: not an ONNX model (...)"                         truncated or foreign file
///   "<file>: node '<name>' (<OpType>, opset N): <what>"       unsupported op / attribute / dtype,
///                                                             an attribute out of range
///   "<file>: node '<name>' (<OpType>) on <inputs>: <what>"    inputs whose shapes do not fit the op
///   "<file>: initializer '<name>': <what>"                     NaN or Inf weight, unsupported dtype
#include <string>

#include "src/core/model.h"

namespace curv {

struct ImportOptions {
  /// Only initializers matching this regex become parameters (empty: every float initializer).
  std::string params_regex;
  /// Initializers matching this regex become constants (empty: none).
  std::string freeze_regex;
  /// Build BatchNormalization in training mode (batch statistics) instead of inference mode.
  bool batch_norm_training = false;
};

/// Loads the ONNX file at `path`. Throws std::runtime_error naming the file (see above).
Model import_onnx(const std::string& path, const ImportOptions& opts = {});

/// The name the ONNX file gave parameter `param` of a model import_onnx() made (the same name
/// unless it was renamed after its module).
std::string onnx_initializer_name(const Model& m, const std::string& param);
/// The index of the parameter that the ONNX file names `onnx_name`, or -1.
int find_onnx_param(const Model& m, const std::string& onnx_name);

}  // namespace curv
