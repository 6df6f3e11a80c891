#pragma once
/// \file model.h
/// A model: a graph of ops over named values (data inputs, trainable parameters, constants), in
/// topological order, with one output (logits or predictions). Data inputs are float (images,
/// features, additive masks) or integer (token ids, integer masks); both are carried as tensors of
/// the model precision (integers exactly, see dataset.h), the integer flag records the dtype.
///
/// Parameter values are stored in float64 (exact for float32 checkpoints); an Objective casts them
/// to its compute precision. The flat parameter vector is the concatenation of the parameter
/// tensors in the order they were added (row-major within each tensor), like
/// `torch.nn.utils.parameters_to_vector(model.parameters())`.
#include <map>
#include <string>
#include <vector>

#include "src/core/op.h"
#include "src/core/tensor.h"

namespace curv {

enum class ValueKind { Input, Parameter, Constant, Node };

struct Value {
  std::string name;
  ValueKind kind;
  Shape shape;           // Input: per-sample shape (no batch dim); Node: shape at batch 1
  Shape shape2;          // Node: shape at batch 2 (tells batch-dependent dims apart)
  int producer = -1;     // node index for ValueKind::Node
  int index = -1;        // parameter or constant index
  bool integer = false;  // Input: integer data (token ids)
};

struct Node {
  std::string name;
  OpPtr op;
  std::vector<int> inputs;  // value ids
  int output = -1;          // value id
};

struct ParamInfo {
  std::string name;
  Shape shape;
  std::int64_t offset = 0;  // into the flat parameter vector
  std::int64_t size = 0;
  int value = -1;
};

/// A named group of parameter tensors: one tensor, or one layer ("layer1.0.conv1" groups
/// "layer1.0.conv1.weight" and ".bias"), or everything.
struct ParamBlock {
  std::string name;
  std::vector<int> params;  // indices into Model::params()
  std::int64_t size = 0;
};

class Model {
 public:
  /// A data input; `sample_shape` excludes the batch dimension. The first one added is input().
  int add_input(const std::string& name, Shape sample_shape, bool integer = false);
  int add_parameter(const std::string& name, Tensor<double> value);
  int add_constant(const std::string& name, Tensor<double> value);
  /// Appends a node; checks input shapes through op->output_shape (at batch sizes 1 and 2) and
  /// throws std::invalid_argument naming the node, the op and the shapes on mismatch.
  int add_node(const std::string& name, OpPtr op, const std::vector<int>& inputs);
  void set_output(int value);

  const std::vector<Value>& values() const { return m_values; }
  const std::vector<Node>& nodes() const { return m_nodes; }
  const std::vector<ParamInfo>& params() const { return m_params; }
  /// The first data input (-1: none) and all of them (value ids, in the order added).
  int input() const { return m_inputs.empty() ? -1 : m_inputs[0]; }
  const std::vector<int>& inputs() const { return m_inputs; }
  int output() const { return m_output; }
  const Shape& input_shape() const { return m_values.at(input()).shape; }
  Shape output_shape() const;  // per sample
  std::int64_t num_params() const { return m_num_params; }
  int find_value(const std::string& name) const;  // -1 if absent
  int find_param(const std::string& name) const;  // -1 if absent

  const Tensor<double>& param(int i) const { return m_param_values.at(i); }
  Tensor<double>& param(int i) { return m_param_values.at(i); }
  const Tensor<double>& constant(int i) const { return m_constants.at(i); }
  Tensor<double>& constant(int i) { return m_constants.at(i); }
  int num_constants() const { return static_cast<int>(m_constants.size()); }

  /// The flat parameter vector and its inverse.
  std::vector<double> flat_params() const;
  void set_flat_params(const std::vector<double>& w);

  /// Blocks: "tensors" (one per parameter), "layers" (grouped by name prefix), "all".
  std::vector<ParamBlock> blocks(const std::string& kind) const;

  /// Free-form metadata (source file, training history pointers, ...).
  std::map<std::string, std::string>& meta() { return m_meta; }
  const std::map<std::string, std::string>& meta() const { return m_meta; }

  /// Replaces the op of a node (e.g. BatchNorm inference <-> training); shapes are rechecked.
  void replace_op(int node, OpPtr op);

 private:
  Shape node_shape(const Node& n, std::int64_t batch) const;
  std::vector<Value> m_values;
  std::vector<Node> m_nodes;
  std::vector<ParamInfo> m_params;
  std::vector<Tensor<double>> m_param_values;
  std::vector<Tensor<double>> m_constants;
  std::map<std::string, std::string> m_meta;
  std::vector<int> m_inputs;
  int m_output = -1;
  std::int64_t m_num_params = 0;
};

}  // namespace curv
