#pragma once
/// \file onnx_export.h
/// Export of a Model to ONNX (opset 17), so models trained or quantized by curv go back to
/// PyTorch and onnxruntime. Parameters and constants become FLOAT initializers under their model
/// names (exact for models imported from float32 ONNX, rounded to float32 otherwise), the input
/// keeps a free batch dim "N", and each node becomes the ONNX op it was imported from (Gelu is
/// written as its Erf decomposition, Pad/Cast as Identity). Integer inputs are INT64 and reach
/// float ops through one Cast(to FLOAT); booleans are BOOL where ONNX requires (Where, Not, And,
/// comparisons), and Embedding indices computed in float go through Cast(to INT64), so the file
/// passes ONNX's type checks. Import of the exported file gives back the same graph, parameters
/// and outputs.
#include <string>

#include "src/core/model.h"

namespace curv {

/// Writes `path` atomically (src/io/atomic_file.h), each node from its op's spec (Op::spec()).
/// Throws std::runtime_error naming the file (also when it is the file the model was loaded from,
/// read-only, or in a missing folder), or the node whose op has no ONNX form.
void export_onnx(const Model& model, const std::string& path);

}  // namespace curv
