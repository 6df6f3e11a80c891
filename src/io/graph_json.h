#pragma once
/// \file graph_json.h
/// A model's graph as JSON text: the `/graph` dataset of curv checkpoints (docs/hdf5-schema.md).
///
///   {"input":  {"name": "input", "shape": [1, 28, 28]},          per-sample shape
///    "output": "logits",
///    "values": [{"name": ..., "kind": "input" | "param" | "constant" | "node"}, ...],   model order
///    "nodes":  [{"name": ..., "type": "Conv", "attrs": {...}, "inputs": [value names]}, ...]}
///
/// `attrs` is the node's op spec (Op::spec(), op_spec.h) with the attribute names of the registry
/// (op_registry.cpp): integers, numbers, lists, strings, and JSON booleans for boolean attributes.
/// Reading accepts every graph curv has written (attributes that are absent take their defaults;
/// a boolean may be given as 0 / 1, a number as an integer) and checks each node through make_op.
/// Tensors are not part of the text: the reader asks for them by value name.
#include <functional>
#include <string>

#include "src/core/model.h"

namespace curv {

/// The JSON text of the graph of `model` (which must have an input and an output).
std::string graph_to_json(const Model& model);

/// Where graph_from_json gets the tensors of parameters and constants.
struct GraphTensors {
  /// The saved tensor of value `name`; `param` says whether it was saved as a parameter.
  std::function<Tensor<double>(const std::string& name, bool param)> load;
  /// Whether a saved parameter stays trainable (false: it becomes a constant).
  std::function<bool(const std::string& name)> trainable;
};

/// Rebuilds the model. `batch_norm_training` switches every BatchNormalization to batch
/// statistics. Throws std::invalid_argument saying what is wrong ("graph: not JSON (...)",
/// "node 'conv1' (Conv): strides must be >= 1, got [0, 1]", ...); the caller adds the file.
Model graph_from_json(const std::string& text, const GraphTensors& tensors, bool batch_norm_training = false);

}  // namespace curv
