#pragma once
/// \file onnx_importer.h
/// The ONNX importer's state machine (private to onnx_import.cpp and onnx_import_ops.cpp): walks
/// the graph in order, folds load-time constants (onnx_fold.h) and translates the remaining nodes
/// into op specs, which make_op (src/core/op_registry.h) checks and builds.
#include <onnx/onnx_pb.h>

#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>

#include "src/core/op_registry.h"
#include "src/io/internal/onnx_fold.h"
#include "src/io/onnx_import.h"

namespace curv::onnx_detail {

using onnx_fold::Folded;

/// Errors of the importer: the message names the file (and the node).
struct ImportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string dtype_name(int t);
// Every value's readers: value name -> (node, input index), with (nullptr, 0) for a graph output.
using ValueUses = std::map<std::string, std::vector<std::pair<const onnx::NodeProto*, int>>>;
ValueUses value_uses(const onnx::GraphProto& g);
// Initializer name -> module-derived parameter name, for PyTorch's generated "onnx::*" names.
std::map<std::string, std::string> module_names(const onnx::GraphProto& g, const std::set<std::string>& inits,
                                                const ValueUses& uses);
// Generated "onnx::*" initializers that are the exact transpose of another float initializer
// (a tied weight, folded by the exporter): name -> the initializer it transposes.
std::map<std::string, std::string> tied_transposes(const std::map<std::string, Folded>& consts);
/// A TensorProto as a folded constant; throws std::invalid_argument naming `what`.
Folded load_tensor(const onnx::TensorProto& t, const std::string& what);
/// Attributes each supported op may carry (others are rejected as unsupported).
const std::map<std::string, std::set<std::string>>& known_attributes();

class Importer {
 public:
  Importer(const std::string& path, const ImportOptions& opts) : m_path(path), m_opts(opts) {
    try {
      if (!opts.params_regex.empty()) m_params_re.emplace(opts.params_regex);
      if (!opts.freeze_regex.empty()) m_freeze_re.emplace(opts.freeze_regex);
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("parameter selection: invalid regular expression (" + std::string(e.what()) + ")");
    }
  }

  Model run(const onnx::ModelProto& mp);

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw ImportError(m_path + ": " + msg); }
  [[noreturn]] void node_fail(const std::string& msg) const {
    fail("node '" + m_node_name + "' (" + m_node->op_type() + ", opset " + std::to_string(m_opset) + "): " + msg);
  }

  void add_input(const onnx::GraphProto& g, const std::set<std::string>& inits) {
    std::vector<const onnx::ValueInfoProto*> data;
    for (const auto& in : g.input())
      if (!inits.count(in.name())) data.push_back(&in);
    if (data.empty()) fail("graph has no data input");
    for (const auto* d : data) add_one_input(*d);
  }

  // A data input: float (features, images, additive masks) or integer (token ids, integer or
  // boolean masks: kept exactly, see dataset.h).
  void add_one_input(const onnx::ValueInfoProto& vi) {
    if (!vi.type().has_tensor_type()) fail("input '" + vi.name() + "' is not a tensor");
    const auto& tt = vi.type().tensor_type();
    const auto et = tt.elem_type();
    const bool integer = et == onnx::TensorProto_DataType_INT64 || et == onnx::TensorProto_DataType_INT32 ||
                         et == onnx::TensorProto_DataType_BOOL;
    if (et != onnx::TensorProto_DataType_FLOAT && et != onnx::TensorProto_DataType_DOUBLE && !integer)
      fail("input '" + vi.name() + "' has data type " + dtype_name(et) + " (expected FLOAT, DOUBLE, INT64, INT32 or BOOL)");
    Shape sample;
    for (int d = 1; d < tt.shape().dim_size(); ++d) {
      const auto& dim = tt.shape().dim(d);
      if (!dim.has_dim_value() || dim.dim_value() <= 0)
        fail("input '" + vi.name() + "': dim " + std::to_string(d) + " must be fixed (only the batch dim may be free)");
      sample.push_back(dim.dim_value());
    }
    if (tt.shape().dim_size() < 1) fail("input '" + vi.name() + "' must have a batch dimension");
    // Exported without a dynamic batch axis: the batch size is still free here, and constant
    // Reshape targets that start with this fixed size mean the batch dim (see reshape_target).
    if (tt.shape().dim(0).has_dim_value()) {
      if (m_fixed_batch > 0 && m_fixed_batch != tt.shape().dim(0).dim_value())
        fail("input '" + vi.name() + "' has batch size " + std::to_string(tt.shape().dim(0).dim_value()) +
             ", another input " + std::to_string(m_fixed_batch));
      m_fixed_batch = tt.shape().dim(0).dim_value();
    }
    m_values[vi.name()] = m_model.add_input(vi.name(), sample, integer);
  }

  // ---- attributes (of the declared type; UNDEFINED, as some old writers leave it, is accepted) --
  const onnx::AttributeProto* attr(const std::string& name) const {
    for (const auto& a : m_node->attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  const onnx::AttributeProto* typed_attr(const std::string& name, onnx::AttributeProto_AttributeType type) const {
    const auto* a = attr(name);
    if (a && a->type() != type && a->type() != onnx::AttributeProto_AttributeType_UNDEFINED)
      node_fail("attribute '" + name + "' must be " + onnx::AttributeProto_AttributeType_Name(type) + ", got " +
                onnx::AttributeProto_AttributeType_Name(a->type()));
    return a;
  }
  std::int64_t attr_i(const std::string& name, std::int64_t def) const {
    const auto* a = typed_attr(name, onnx::AttributeProto_AttributeType_INT);
    return a ? a->i() : def;
  }
  double attr_f(const std::string& name, double def) const {
    const auto* a = typed_attr(name, onnx::AttributeProto_AttributeType_FLOAT);
    return a ? static_cast<double>(a->f()) : def;
  }
  std::string attr_s(const std::string& name, const std::string& def) const {
    const auto* a = typed_attr(name, onnx::AttributeProto_AttributeType_STRING);
    return a ? a->s() : def;
  }
  std::vector<std::int64_t> attr_ints(const std::string& name) const {
    const auto* a = typed_attr(name, onnx::AttributeProto_AttributeType_INTS);
    if (!a) return {};
    return {a->ints().begin(), a->ints().end()};
  }

  // ---- operands ----------------------------------------------------------------------------
  // An input's name, through Identity aliases of initializers (exporters alias deduplicated ones).
  std::string in_name(int k) const {
    if (k >= m_node->input_size()) return {};
    const auto a = m_aliases.find(m_node->input(k));
    return a == m_aliases.end() ? m_node->input(k) : a->second;
  }
  bool present(int k) const { return !in_name(k).empty(); }
  const Folded* folded(int k) const {
    const auto it = m_consts.find(in_name(k));
    return it == m_consts.end() ? nullptr : &it->second;
  }
  const Folded& need_folded(int k, const std::string& what) const {
    const Folded* f = folded(k);
    if (!f) node_fail(what + " (input '" + in_name(k) + "') must be a constant known at load time");
    return *f;
  }
  bool is_param_name(const std::string& name) const {
    if (m_params_re && !std::regex_search(name, *m_params_re)) return false;
    if (m_freeze_re && std::regex_search(name, *m_freeze_re)) return false;
    return true;
  }
  // The model's name for initializer `name`: its module name where PyTorch generated it
  // (module_names(), onnx_import.cpp), else `name` itself.
  std::string model_name(const std::string& name) const {
    const auto it = m_module_names.find(name);
    return it == m_module_names.end() ? name : it->second;
  }
  std::string unique(std::string name) const {
    if (m_model.find_value(name) < 0) return name;
    for (int k = 1;; ++k)
      if (m_model.find_value(name + "#" + std::to_string(k)) < 0) return name + "#" + std::to_string(k);
  }
  // The model value of input k; folded constants are added as parameters (trainable float
  // initializers) or constants on first use.
  int value(int k, bool force_constant = false) {
    if (in_name(k).empty()) node_fail("input " + std::to_string(k) + " is required");
    return value_of(in_name(k), force_constant);
  }
  int value_of(const std::string& name, bool force_constant = false) {
    if (const auto it = m_values.find(name); it != m_values.end()) return it->second;
    if (const auto p = m_pending_pads.find(name); p != m_pending_pads.end())
      node_fail("input '" + name + "' comes from a Pad with non-zero pads (node '" + p->second.node +
                "'), which curv supports only directly before Conv or AveragePool");
    if (m_zeros.count(name))
      node_fail("input '" + name + "' is a zero tensor of batch-dependent shape, supported only as an RNN's initial state");
    const auto c = m_consts.find(name);
    if (c == m_consts.end())
      node_fail("input '" + name +
                "' is not produced by an earlier node (only the first output of a node is supported)");
    if (const auto tied = m_tied.find(name); tied != m_tied.end() && !force_constant) {
      // A tied weight's transposed copy: a Transpose of the weight itself, so that both uses
      // share one parameter, as they do in the exported module.
      const int w = value_of(tied->second);
      const int v = m_model.add_node(unique(model_name(name)), build(OpSpec("Transpose").set_ints("perm", {1, 0})), {w});
      m_values[name] = v;
      return v;
    }
    const Folded& f = c->second;
    std::vector<double> data;
    try {
      data = f.doubles("constant '" + name + "'");
    } catch (const std::invalid_argument& e) {
      node_fail(e.what());
    }
    Tensor<double> t(f.shape, std::move(data));
    const std::string shown = model_name(name);
    const bool param = f.trainable && !force_constant && is_param_name(shown);
    if (param)
      for (std::int64_t k = 0; k < t.size(); ++k)
        if (std::isinf(t.data()[k]))
          fail("initializer '" + name + "': Inf at element " + std::to_string(k) + " of " + shape_str(f.shape) +
               " (a trainable parameter must be finite)");
    const int v =
        param ? m_model.add_parameter(unique(shown), std::move(t)) : m_model.add_constant(unique(shown), std::move(t));
    m_values[name] = v;
    return v;
  }
  // Full shape of a value at batch size b.
  Shape shape_at(int v, std::int64_t b) const {
    const Value& val = m_model.values().at(v);
    if (val.kind == ValueKind::Input) return with_lead(b, val.shape);
    if (val.kind == ValueKind::Node) return b == 1 ? val.shape : val.shape2;
    return val.shape;
  }
  std::int64_t rank_of(int k) { return static_cast<std::int64_t>(shape_at(value(k), 1).size()); }

  // The op of `spec`; a bad attribute fails naming the ONNX node.
  OpPtr build(const OpSpec& spec) const {
    try {
      return make_op(spec);
    } catch (const std::invalid_argument& e) {
      // "<Type>: <what>" from the op: the node prefix already names the ONNX op type
      std::string what = e.what();
      if (what.rfind(spec.type + ": ", 0) == 0) what = what.substr(spec.type.size() + 2);
      node_fail(what);
    }
  }
  void emit_check(const OpSpec& spec) const { build(spec); }
  // Adds one model node for the current ONNX node (which may expand to several) and returns it.
  int emit_named(const OpSpec& spec, const std::vector<int>& ins, const std::string& base) {
    OpPtr op = build(spec);
    try {
      return m_model.add_node(unique(base), op, ins);
    } catch (const std::invalid_argument& e) {
      fail(e.what());  // names the node, its op and inputs
    }
  }
  void emit(const OpSpec& spec, const std::vector<int>& ins) {
    m_values[m_node->output(0)] = emit_named(spec, ins, m_node_name);
    static const std::set<std::string> boolean{"Equal", "Less", "Greater", "Not", "And"};
    static const std::set<std::string> moves{"Unsqueeze", "Squeeze", "Reshape", "Transpose", "Slice", "Expand",
                                             "Tile",      "Flatten", "Identity", "Gather",   "Cast"};
    if (boolean.count(spec.type) || (moves.count(spec.type) && m_booleans.count(in_name(0))))
      m_booleans.insert(m_node->output(0));
  }
  int scalar_constant(const std::string& name, double v) {
    return m_model.add_constant(unique(name), Tensor<double>(Shape{}, std::vector<double>{v}));
  }
  void emit_unary(const std::string& type) { emit(OpSpec(type), {value(0)}); }
  void set_folded(Folded f) { m_consts[m_node->output(0)] = std::move(f); }

  // ---- nodes -------------------------------------------------------------------------------
  void import_node(const onnx::NodeProto& n);
  // GELU as exporters write it before opset 20 (onnx_import.cpp, find_gelus): five nodes
  // y = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5), imported as one Gelu node.
  struct GeluPattern {
    const onnx::NodeProto* nodes[5];  // Div, Erf, Add, Mul by x, Mul by 0.5
    std::string x, sqrt2, one, half;  // value names
  };
  void find_gelus(const onnx::GraphProto& g);
  void import_gelu(const GeluPattern& p);
  bool only_masks(const std::string& name);
  bool try_fold(const std::string& t);
  void import_op(const std::string& t);
  void import_conv_like(const std::string& t);
  void import_resize(const std::string& t);
  void import_rnn(const std::string& t);
  bool is_zero(int k) const;
  Shape reshape_target(const Folded& f, int data, bool allowzero);

  std::string m_path;
  ImportOptions m_opts;
  Model m_model;
  int m_opset = 0;
  std::set<std::string> m_zeros;
  std::map<std::string, std::string> m_aliases;  // Identity output -> the initializer it copies  // values known to be zero, of batch-dependent shape
  std::int64_t m_fixed_batch = 0;  // the input's batch dim when exported as a fixed number
  std::optional<std::regex> m_params_re, m_freeze_re;
  std::map<std::string, int> m_values;     // ONNX value name -> model value
  std::map<std::string, Folded> m_consts;  // ONNX value name -> folded constant
  std::map<std::string, std::string> m_module_names;  // "onnx::Conv_27" -> "conv1.weight"
  std::set<std::string> m_index_only;  // values read only as a Gather's indices
  std::vector<GeluPattern> m_gelus;
  std::map<const onnx::NodeProto*, std::size_t> m_gelu_at;  // a pattern's nodes -> its index
  std::int64_t m_fused_gelus = 0;
  std::map<std::string, std::string> m_tied;          // "onnx::MatMul_12" -> "tok.weight" (its transpose)
  struct PendingPad {
    std::string source;              // the padded value
    std::vector<std::int64_t> pads;  // top, left, bottom, right
    std::string node;
  };
  std::map<std::string, PendingPad> m_pending_pads;  // zero Pad outputs, merged into their consumer
  ValueUses m_uses;  // value -> its readers, built once per graph
  std::map<std::string, bool> m_mask_only;
  std::set<std::string> m_booleans;  // data values known to hold only 0 and 1 (comparison outputs)
  const onnx::NodeProto* m_node = nullptr;
  std::string m_node_name;
};

}  // namespace curv::onnx_detail
