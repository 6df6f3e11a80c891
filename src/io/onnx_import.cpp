#include "src/io/onnx_import.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "src/core/size_limits.h"
#include "src/io/internal/onnx_importer.h"

namespace curv {

namespace onnx_detail {

namespace {

constexpr int kMinOpset = 7;  // older exports parse, but only 11-18 are tested
constexpr int kMaxOpset = 18;

template <class T>
std::vector<T> raw_values(const std::string& raw, std::int64_t n, const std::string& what) {
  if (raw.size() != static_cast<std::size_t>(n) * sizeof(T))
    throw std::invalid_argument(what + ": raw_data has " + std::to_string(raw.size()) + " bytes, expected " +
                                std::to_string(n * sizeof(T)));
  std::vector<T> v(n);
  if (n) std::memcpy(v.data(), raw.data(), raw.size());
  return v;
}

// The module path of a node named by PyTorch's exporter after its module scope:
// "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1", "/blocks.0/attn/qkv/MatMul" -> "blocks.0.attn.qkv".
// Each scope component is either the child's attribute name or the child's full name
// ("layer1.0" under "layer1"). Empty for names that are not such a path.
std::string module_path(const std::string& node_name) {
  if (node_name.size() < 2 || node_name[0] != '/') return {};
  std::vector<std::string> parts;
  std::string cur;
  for (std::size_t i = 1; i < node_name.size(); ++i) {
    if (node_name[i] != '/') {
      cur += node_name[i];
      continue;
    }
    if (cur.empty()) return {};
    parts.push_back(cur);
    cur.clear();
  }
  if (parts.empty()) return {};  // "/Conv": no module
  std::string path;
  for (const std::string& c : parts)
    path = path.empty() || c.rfind(path + ".", 0) == 0 ? c : path + "." + c;
  return path;
}

}  // namespace

// PyTorch's exporter names the initializers it makes by constant folding "onnx::<Op>_<n>": a
// Linear's weight transposed for MatMul, a convolution with BatchNorm folded in. Such an
// initializer that feeds exactly one Conv, ConvTranspose, Gemm or MatMul node named after its
// module scope is named after the module instead: "<module>.weight" (input 1) and
// "<module>.bias" (input 2), "<module>.weight_t" for a MatMul's right operand, which holds the
// weight as [in, out] (the name curv's own export gives it). So layers group a weight with its
// bias, and results name "layer1.0.conv1" instead of "onnx::Conv_27". A name already taken keeps
// the exporter's name.
ValueUses value_uses(const onnx::GraphProto& g) {
  ValueUses uses;
  for (const auto& n : g.node())
    for (int k = 0; k < n.input_size(); ++k) uses[n.input(k)].push_back({&n, k});
  for (const auto& o : g.output()) uses[o.name()].push_back({nullptr, 0});
  return uses;
}

std::map<std::string, std::string> module_names(const onnx::GraphProto& g, const std::set<std::string>& inits,
                                                const ValueUses& uses) {
  const auto node_uses = [&](const std::string& v) {
    const auto u = uses.find(v);
    return u == uses.end() ? 0 : std::count_if(u->second.begin(), u->second.end(), [](const auto& e) { return e.first != nullptr; });
  };
  std::map<std::string, std::string> names;
  std::set<std::string> taken(inits.begin(), inits.end());
  for (const auto& n : g.node()) {
    const std::string& t = n.op_type();
    if (t != "Conv" && t != "ConvTranspose" && t != "Gemm" && t != "MatMul") continue;
    const std::string module = module_path(n.name());
    if (module.empty()) continue;
    for (int k = 1; k <= 2 && k < n.input_size(); ++k) {
      const std::string& in = n.input(k);
      if (in.rfind("onnx::", 0) != 0 || !inits.count(in) || node_uses(in) != 1 || names.count(in)) continue;
      const std::string name = module + (k == 2 ? ".bias" : t == "MatMul" ? ".weight_t" : ".weight");
      if (!taken.insert(name).second) continue;
      names[in] = name;
    }
  }
  return names;
}

// PyTorch exports a weight used twice, once transposed (an LM head tied to the token embedding:
// F.linear(h, tok.weight)), as the weight plus a folded copy of its transpose named
// "onnx::MatMul_<n>". Imported as two parameters, the model would be the untied one, whose
// gradient and curvature differ. A generated 2-D float initializer that equals the transpose of
// another float initializer element for element (and is not constant, so that an all-zero or
// all-one matrix never ties by accident) is taken for such a copy.
std::map<std::string, std::string> tied_transposes(const std::map<std::string, Folded>& consts) {
  // Candidates are found by a hash of their elements in transposed order, so a file with many
  // large look-alike matrices costs one pass over its data, not one comparison per pair.
  auto hash = [](const Folded& t, bool transposed) {
    const std::int64_t r = t.shape[0], c = t.shape[1];
    std::uint64_t h = 1469598103934665603ull;
    for (std::int64_t k = 0; k < r * c; ++k) {
      const double e = transposed ? t.f[(k % r) * c + k / r] : t.f[k];
      std::uint64_t bits = 0;
      std::memcpy(&bits, &e, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
    return h;
  };
  auto is_matrix = [](const Folded& t) { return !t.is_int && t.trainable && t.shape.size() == 2 && t.f.size() >= 2; };
  std::multimap<std::uint64_t, const std::string*> weights;  // hash of W^T -> W
  for (const auto& [name, y] : consts)
    if (name.rfind("onnx::", 0) != 0 && is_matrix(y)) weights.emplace(hash(y, true), &name);
  std::map<std::string, std::string> tied;
  for (const auto& [name, x] : consts) {
    if (name.rfind("onnx::", 0) != 0 || !is_matrix(x)) continue;
    const double first = x.f[0];  // clang 14 cannot capture a structured binding
    if (std::all_of(x.f.begin(), x.f.end(), [first](double e) { return e == first; })) continue;
    const std::int64_t r = x.shape[0], c = x.shape[1];
    const auto [lo, hi] = weights.equal_range(hash(x, false));
    for (auto it = lo; it != hi; ++it) {
      const Folded& y = consts.at(*it->second);
      if (y.shape != Shape{c, r}) continue;
      bool same = true;
      for (std::int64_t i = 0; i < r && same; ++i)
        for (std::int64_t j = 0; j < c && same; ++j) same = x.f[i * c + j] == y.f[j * r + i];
      if (same) {
        tied[name] = *it->second;
        break;
      }
    }
  }
  return tied;
}

std::string dtype_name(int t) { return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(t)); }

// A TensorProto as a folded constant; throws std::invalid_argument naming `what`.
Folded load_tensor(const onnx::TensorProto& t, const std::string& what) {
  Shape shape(t.dims().begin(), t.dims().end());
  const std::int64_t n = checked_numel(shape, what + ": shape");
  if (t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL)
    throw std::invalid_argument(what + ": external tensor data is not supported (re-export with the weights inside)");
  const bool raw = t.has_raw_data();
  auto check = [&](std::size_t got) {
    if (got != static_cast<std::size_t>(n))
      throw std::invalid_argument(what + ": has " + std::to_string(got) + " values for shape " + shape_str(shape));
  };
  switch (t.data_type()) {
    case onnx::TensorProto_DataType_FLOAT: {
      std::vector<float> v = raw ? raw_values<float>(t.raw_data(), n, what)
                                 : std::vector<float>(t.float_data().begin(), t.float_data().end());
      check(v.size());
      return Folded::of_floats(shape, {v.begin(), v.end()});
    }
    case onnx::TensorProto_DataType_DOUBLE: {
      std::vector<double> v = raw ? raw_values<double>(t.raw_data(), n, what)
                                  : std::vector<double>(t.double_data().begin(), t.double_data().end());
      check(v.size());
      return Folded::of_floats(shape, std::move(v));
    }
    case onnx::TensorProto_DataType_INT64: {
      std::vector<std::int64_t> v = raw ? raw_values<std::int64_t>(t.raw_data(), n, what)
                                        : std::vector<std::int64_t>(t.int64_data().begin(), t.int64_data().end());
      check(v.size());
      return Folded::of_ints(shape, std::move(v));
    }
    case onnx::TensorProto_DataType_INT32: {
      std::vector<std::int32_t> v = raw ? raw_values<std::int32_t>(t.raw_data(), n, what)
                                        : std::vector<std::int32_t>(t.int32_data().begin(), t.int32_data().end());
      check(v.size());
      return Folded::of_ints(shape, {v.begin(), v.end()});
    }
    case onnx::TensorProto_DataType_BOOL:
    case onnx::TensorProto_DataType_UINT8:
    case onnx::TensorProto_DataType_INT8: {
      std::vector<std::int64_t> v;
      if (raw) {
        for (char c : t.raw_data())
          v.push_back(t.data_type() == onnx::TensorProto_DataType_INT8 ? static_cast<signed char>(c)
                                                                       : static_cast<unsigned char>(c));
      } else {
        v.assign(t.int32_data().begin(), t.int32_data().end());
      }
      check(v.size());
      return Folded::of_ints(shape, std::move(v));
    }
    default:
      throw std::invalid_argument(what + ": unsupported data type " + dtype_name(t.data_type()) +
                                  " (expected FLOAT, DOUBLE, INT64, INT32)");
  }
}

// Attributes each supported op may carry (others are rejected as unsupported). The elementwise ops
// of elementwise_table.h that are not listed carry their parameter, if any (LeakyRelu: alpha).
const std::map<std::string, std::set<std::string>>& known_attributes() {
  static const std::map<std::string, std::set<std::string>> m = [] {
    std::map<std::string, std::set<std::string>> r{
      {"Gemm", {"transA", "transB", "alpha", "beta"}},
      {"MatMul", {}},
      {"Pow", {}},
      {"Equal", {}},
      {"Max", {}},
      {"Min", {}},
      {"Where", {}},
      {"Einsum", {"equation"}},
      {"Expand", {}},
      {"Tile", {}},
      {"Trilu", {"upper"}},
      {"Range", {}},
      {"ReduceMax", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"ReduceMin", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"Conv", {"kernel_shape", "strides", "dilations", "pads", "group", "auto_pad"}},
      {"ConvTranspose",
       {"kernel_shape", "strides", "dilations", "pads", "group", "auto_pad", "output_padding", "output_shape"}},
      {"MaxPool", {"kernel_shape", "strides", "dilations", "pads", "ceil_mode", "auto_pad", "storage_order"}},
      {"AveragePool", {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad"}},
      {"GlobalAveragePool", {}},
      {"Dropout", {"ratio", "seed"}},
      {"Softmax", {"axis"}},
      {"LogSoftmax", {"axis"}},
      {"ReduceMean", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"ReduceSum", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"BatchNormalization", {"epsilon", "momentum", "training_mode", "spatial"}},
      {"LayerNormalization", {"axis", "epsilon", "stash_type"}},
      {"InstanceNormalization", {"epsilon"}},
      {"GRU",
       {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta", "clip",
        "linear_before_reset", "layout"}},
      {"LSTM",
       {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta", "clip", "input_forget",
        "layout"}},
      {"Resize",
       {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
        "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"}},
      {"Upsample", {"mode", "scales"}},
      {"Reshape", {"allowzero"}},
      {"Flatten", {"axis"}},
      {"Transpose", {"perm"}},
      {"Slice", {"starts", "ends", "axes"}},
      {"Concat", {"axis"}},
      {"Gather", {"axis"}},
      {"Unsqueeze", {"axes"}},
      {"Squeeze", {"axes"}},
      {"Constant", {"value", "value_float", "value_floats", "value_int", "value_ints"}},
      {"Shape", {"start", "end"}},
      {"Cast", {"to", "saturate"}},
      {"ConstantOfShape", {"value"}},
      {"Pad", {"mode", "pads", "value"}},
      {"Gelu", {"approximate"}},
      {"Clip", {"min", "max"}},
      {"Split", {"axis", "split", "num_outputs"}},
    };
    for (const OpTypeInfo& t : op_types())
      if ((t.unary || t.binary) && !r.count(t.type)) {
        auto& names = r[t.type];
        for (const AttrInfo& a : t.attrs) names.insert(a.name);
      }
    return r;
  }();
  return m;
}

Model Importer::run(const onnx::ModelProto& mp) {
  for (const auto& op : mp.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") m_opset = static_cast<int>(op.version());
  if (m_opset == 0) fail("not an ONNX model (no default-domain opset_import)");
  if (m_opset < kMinOpset || m_opset > kMaxOpset)
    fail("opset " + std::to_string(m_opset) + " is not supported (expected 11-18)");
  const onnx::GraphProto& g = mp.graph();
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) {
    inits.insert(t.name());
    Folded f;
    try {
      f = load_tensor(t, "initializer '" + t.name() + "'");
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
    // NaN is never meaningful; +-Inf is rejected where the initializer becomes a trainable
    // parameter (Importer::value_of), since -inf is legitimate in a constant such as a mask.
    for (std::size_t k = 0; k < f.f.size(); ++k)
      if (std::isnan(f.f[k]))
        fail("initializer '" + t.name() + "': NaN at element " + std::to_string(k) + " of " + shape_str(f.shape));
    f.trainable = !f.is_int;
    m_consts[t.name()] = std::move(f);
  }
  m_uses = value_uses(g);
  for (auto& [name, f] : m_consts)
    if (f.trainable && only_masks(name)) f.trainable = false;
  m_module_names = module_names(g, inits, m_uses);
  m_tied = tied_transposes(m_consts);
  // Values read by nodes only as a Gather's indices (a graph output is no such read).
  for (const auto& [name, readers] : m_uses)
    if (std::all_of(readers.begin(), readers.end(),
                    [](const auto& r) { return r.first && r.first->op_type() == "Gather" && r.second == 1; }))
      m_index_only.insert(name);
  add_input(g, inits);
  find_gelus(g);
  for (const auto& n : g.node()) {
    const auto gelu = m_gelu_at.find(&n);
    if (gelu == m_gelu_at.end()) {
      import_node(n);
    } else if (&n == m_gelus[gelu->second].nodes[4]) {
      import_gelu(m_gelus[gelu->second]);  // its last node: every input is known by now
    }
  }
  if (g.output_size() < 1) fail("graph has no output");
  const std::string& out = g.output(0).name();
  const auto it = m_values.find(out);
  if (it == m_values.end()) fail("graph output '" + out + "' does not depend on the input");
  if (m_model.values()[it->second].kind != ValueKind::Node) fail("graph output '" + out + "' is not computed by a node");
  m_model.set_output(it->second);
  auto& meta = m_model.meta();
  meta["source"] = m_path;
  meta["format"] = "onnx";
  meta["producer"] = mp.producer_name() + (mp.producer_version().empty() ? "" : " " + mp.producer_version());
  meta["opset"] = std::to_string(m_opset);
  // Where a parameter was renamed after its module, the name the ONNX file gives it.
  nlohmann::json renamed = nlohmann::json::object();
  for (const auto& [onnx_name, name] : m_module_names)
    if (const auto v = m_values.find(onnx_name); v != m_values.end())
      renamed[m_model.values()[v->second].name] = onnx_name;
  if (!renamed.empty()) meta["onnx_names"] = renamed.dump();
  std::string tied;
  for (const auto& [copy, weight] : m_tied)
    if (m_values.count(copy)) tied += (tied.empty() ? "" : ", ") + copy + " = " + weight + "^T";
  if (!tied.empty()) meta["tied"] = tied;
  if (m_fused_gelus > 0) meta["fused_gelus"] = std::to_string(m_fused_gelus);
  meta["ir_version"] = std::to_string(mp.ir_version());
  meta["graph_output"] = out;
  return std::move(m_model);
}

// Whether `name` only feeds comparisons, Not, And, Cast to BOOL or a Where's condition, directly or
// through shape ops, as a registered causal-mask buffer does. Such a float initializer is a
// constant: its derivative is zero, and as a parameter it would add zero rows to every curvature
// product.
bool Importer::only_masks(const std::string& name) {
  if (const auto m = m_mask_only.find(name); m != m_mask_only.end()) return m->second;
  m_mask_only[name] = false;  // a cycle (malformed graph) is not a mask
  const auto u = m_uses.find(name);
  if (u == m_uses.end()) return false;
  static const std::set<std::string> tests{"Equal", "Less", "Greater", "And", "Not"};
  static const std::set<std::string> moves{"Slice", "Reshape",  "Unsqueeze", "Squeeze", "Transpose",
                                           "Identity", "Expand", "Tile",     "Flatten", "Cast"};
  for (const auto& [n, k] : u->second) {
    if (!n) return false;  // a graph output
    const std::string& t = n->op_type();
    if (tests.count(t) || (t == "Where" && k == 0)) continue;
    bool to_bool = false;
    if (t == "Cast")
      for (const auto& a : n->attribute()) to_bool = to_bool || (a.name() == "to" && a.i() == onnx::TensorProto_DataType_BOOL);
    if (to_bool) continue;
    if (!(k == 0 && moves.count(t) && n->output_size() >= 1 && only_masks(n->output(0)))) return false;
  }
  return m_mask_only[name] = true;
}

// The structure of each exported GELU: Div(x, c) read only by Erf, read only by Add(., c'), read
// only by Mul(x, .), read only by Mul(., c'') (either operand order in Add and the Muls). The
// constants are checked when the last node is reached (import_gelu), as Constant nodes may come
// between the five.
void Importer::find_gelus(const onnx::GraphProto& g) {
  const auto only_reader = [&](const std::string& v, const char* type) -> const onnx::NodeProto* {
    const auto u = m_uses.find(v);
    if (u == m_uses.end() || u->second.size() != 1 || !u->second[0].first) return nullptr;
    const onnx::NodeProto* n = u->second[0].first;
    return n->op_type() == type && n->output_size() == 1 && n->domain().empty() ? n : nullptr;
  };
  // The other input of a binary node whose input `v` is (k = 0 or 1).
  const auto other = [](const onnx::NodeProto* n, const std::string& v) -> std::string {
    if (n->input_size() != 2) return {};
    if (n->input(0) == v) return n->input(1);
    if (n->input(1) == v) return n->input(0);
    return {};
  };
  for (const auto& div : g.node()) {
    if (div.op_type() != "Div" || div.input_size() != 2 || div.output_size() != 1 || !div.domain().empty()) continue;
    GeluPattern p;
    p.x = div.input(0);
    p.sqrt2 = div.input(1);
    const onnx::NodeProto* erf = only_reader(div.output(0), "Erf");
    const onnx::NodeProto* add = erf && erf->input_size() == 1 ? only_reader(erf->output(0), "Add") : nullptr;
    const onnx::NodeProto* mul = add ? only_reader(add->output(0), "Mul") : nullptr;
    const onnx::NodeProto* half = mul && other(mul, add->output(0)) == p.x ? only_reader(mul->output(0), "Mul") : nullptr;
    if (!half || p.x.empty() || p.x == p.sqrt2) continue;
    p.one = other(add, erf->output(0));
    p.half = other(half, mul->output(0));
    if (p.one.empty() || p.half.empty()) continue;
    p.nodes[0] = &div;
    p.nodes[1] = erf;
    p.nodes[2] = add;
    p.nodes[3] = mul;
    p.nodes[4] = half;
    if (std::any_of(std::begin(p.nodes), std::end(p.nodes), [&](const auto* n) { return m_gelu_at.count(n) > 0; })) continue;
    for (const auto* n : p.nodes) m_gelu_at[n] = m_gelus.size();
    m_gelus.push_back(std::move(p));
  }
}

void Importer::import_gelu(const GeluPattern& p) {
  // A load-time constant that is not a trainable weight and holds one value (of rank <= 1, so
  // that broadcasting it never changes the shape), equal to `want` within float32 rounding.
  const auto is_value = [&](const std::string& name, double want) {
    const auto a = m_aliases.find(name);
    const auto c = m_consts.find(a == m_aliases.end() ? name : a->second);
    if (c == m_consts.end() || c->second.trainable || c->second.shape.size() > 1 || m_consts.count(p.x)) return false;
    try {
      const auto v = c->second.doubles("constant");
      return v.size() == 1 && std::abs(v[0] - want) <= 1e-7 * std::abs(want);
    } catch (const std::exception&) {
      return false;
    }
  };
  if (!is_value(p.sqrt2, std::sqrt(2.0)) || !is_value(p.one, 1.0) || !is_value(p.half, 0.5)) {
    for (const auto* n : p.nodes) import_node(*n);  // another computation of that shape
    return;
  }
  // One Gelu node: named as curv's export named the Gelu it decomposed (the last node is "<name>",
  // the Div "<name>/div"), else after the Div's scope ("/blocks.0/Div" -> "/blocks.0/Gelu").
  const std::string &div = p.nodes[0]->name(), &last = p.nodes[4]->name();
  const auto slash = div.rfind('/');
  m_node = p.nodes[4];
  m_node_name = !last.empty() && div == last + "/div" ? last
                : slash == std::string::npos       ? std::string("Gelu")
                                                    : div.substr(0, slash + 1) + "Gelu";
  try {
    emit(OpSpec("Gelu"), {value_of(p.x)});
  } catch (const ImportError&) {
    throw;
  } catch (const std::exception& e) {
    node_fail(e.what());
  }
  ++m_fused_gelus;
}

void Importer::import_node(const onnx::NodeProto& n) {
  m_node = &n;
  m_node_name = n.name().empty() ? (n.output_size() ? n.output(0) : n.op_type()) : n.name();
  const std::string& t = n.op_type();
  if (!n.domain().empty() && n.domain() != "ai.onnx") node_fail("unsupported operator domain '" + n.domain() + "'");
  const auto known = known_attributes().find(t);
  if (known == known_attributes().end()) node_fail("unsupported operator");
  for (const auto& a : n.attribute())
    if (!known->second.count(a.name())) node_fail("unsupported attribute '" + a.name() + "'");
  if (n.output_size() < 1) node_fail("node has no output");
  try {
    if (try_fold(t)) return;
    import_op(t);
  } catch (const ImportError&) {
    throw;  // already names the file and the node
  } catch (const std::exception& e) {
    node_fail(e.what());  // folding errors, and anything a malformed node provokes
  }
}

// Folds the node when all its inputs are load-time constants (and none is a trainable weight).
bool Importer::try_fold(const std::string& t) {
  namespace F = onnx_fold;
  if (t == "Constant") {
    Folded f;
    if (const auto* a = attr("value"))
      f = load_tensor(a->t(), "value");
    else if ((a = attr("value_float")))
      f = Folded::of_floats({}, {a->f()});
    else if ((a = attr("value_floats")))
      f = Folded::of_floats({a->floats_size()}, {a->floats().begin(), a->floats().end()});
    else if ((a = attr("value_int")))
      f = Folded::of_ints({}, {a->i()});
    else if ((a = attr("value_ints")))
      f = Folded::of_ints({a->ints_size()}, {a->ints().begin(), a->ints().end()});
    else
      node_fail("Constant without a supported value attribute");
    set_folded(std::move(f));
    return true;
  }
  // Identity of an initializer (PyTorch aliases deduplicated initializers so): the same tensor, so
  // BatchNorm statistics stay constants and a weight stays one parameter.
  if (t == "Identity" && folded(0) && folded(0)->trainable) {
    m_aliases[m_node->output(0)] = in_name(0);
    return true;
  }
  // Zeros of a batch-dependent shape (ConstantOfShape, as exporters make an RNN's initial state),
  // and slices and reshapes of them: kept as known zeros, usable only as an RNN's initial state.
  if (t == "ConstantOfShape" && folded(0) && folded(0)->symbolic()) {
    Folded v = Folded::of_floats({1}, {0.0});
    if (const auto* at = attr("value")) v = load_tensor(at->t(), "value");
    const auto d = v.doubles("value");
    if (d.size() == 1 && d[0] == 0.0) {
      m_zeros.insert(m_node->output(0));
      return true;
    }
  }
  if ((t == "Slice" || t == "Squeeze" || t == "Unsqueeze" || t == "Reshape" || t == "Transpose" ||
       t == "Identity" || t == "Cast") &&
      m_zeros.count(in_name(0))) {
    m_zeros.insert(m_node->output(0));
    return true;
  }
  if (t == "Shape") {
    Folded s;
    if (const Folded* c = folded(0); c && !m_values.count(in_name(0))) {
      s = F::shape_of(c->shape, c->shape);
    } else {
      const int v = value(0);
      s = F::shape_of(shape_at(v, 1), shape_at(v, 2));
    }
    const std::int64_t r = s.size();
    std::int64_t start = attr_i("start", 0), end = attr_i("end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = std::clamp<std::int64_t>(start, 0, r);
    end = std::clamp<std::int64_t>(end, start, r);
    set_folded(F::slice(s, {start}, {end}, {0}, {}));
    return true;
  }
  static const std::set<std::string> foldable{
      "Identity", "Cast",    "Gather",     "Unsqueeze", "Squeeze", "Concat",    "Slice",
      "Add",      "Sub",     "Mul",        "Div",       "Pow",     "Neg",       "Sqrt",
      "Exp",      "Log",     "Reciprocal", "Relu",      "Reshape", "Transpose", "ConstantOfShape",
      "Equal",    "Flatten", "Less",       "Greater",   "And",     "Not",       "Abs",
      "Max",      "Min",     "Where",      "Expand",    "Tile",    "Trilu",     "Range"};
  if (!foldable.count(t)) return false;
  std::vector<const Folded*> ins;
  for (int k = 0; k < m_node->input_size(); ++k) {
    if (in_name(k).empty()) {
      ins.push_back(nullptr);
      continue;
    }
    const Folded* f = folded(k);
    if (!f || f->trainable) return false;
    ins.push_back(f);
  }
  if (ins.empty() || !ins[0]) return false;
  const Folded& a = *ins[0];
  auto axes_of = [&](int k) {
    if (attr("axes")) return attr_ints("axes");
    return (k < static_cast<int>(ins.size()) && ins[k]) ? ins[k]->ints("axes") : std::vector<std::int64_t>{};
  };
  if (t == "Identity")
    set_folded(a);
  else if (t == "Cast") {
    const auto to = attr_i("to", 0);
    const bool to_int = to == onnx::TensorProto_DataType_INT64 || to == onnx::TensorProto_DataType_INT32;
    if (to == onnx::TensorProto_DataType_BOOL)  // nonzero -> 1
      set_folded(F::unary("Not", F::unary("Not", a)));
    else
      set_folded(F::cast(a, to_int));
  } else if (t == "Gather")
    set_folded(F::gather(a, attr_i("axis", 0), need_folded(1, "indices")));
  else if (t == "Unsqueeze")
    set_folded(F::unsqueeze(a, axes_of(1)));
  else if (t == "Squeeze")
    set_folded(F::squeeze(a, axes_of(1)));
  else if (t == "Concat")
    set_folded(F::concat(ins, attr_i("axis", 0)));
  else if (t == "Slice") {
    if (m_opset < 10) {
      set_folded(F::slice(a, attr_ints("starts"), attr_ints("ends"), attr_ints("axes"), {}));
    } else {
      auto opt = [&](int k) {
        return (k < static_cast<int>(ins.size()) && ins[k]) ? ins[k]->ints("Slice operand")
                                                            : std::vector<std::int64_t>{};
      };
      set_folded(F::slice(a, opt(1), opt(2), opt(3), opt(4)));
    }
  } else if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div" || t == "Pow" || t == "Equal" || t == "Less" ||
             t == "Greater" || t == "And") {
    set_folded(F::binary(t, a, need_folded(1, "operand")));
  } else if (t == "Max" || t == "Min") {  // variadic
    Folded r = a;
    for (std::size_t k = 1; k < ins.size(); ++k)
      if (ins[k]) r = F::binary(t, r, *ins[k]);
    set_folded(std::move(r));
  } else if (t == "Where") {
    set_folded(F::where(a, need_folded(1, "X"), need_folded(2, "Y")));
  } else if (t == "Expand") {
    set_folded(F::expand(a, need_folded(1, "shape").ints("shape")));
  } else if (t == "Tile") {
    set_folded(F::tile(a, need_folded(1, "repeats").ints("repeats")));
  } else if (t == "Trilu") {
    std::int64_t k = 0;
    if (ins.size() > 1 && ins[1]) {
      const auto v = ins[1]->ints("k");
      if (v.size() != 1) node_fail("k must be one value");
      k = v[0];
    }
    set_folded(F::trilu(a, k, attr_i("upper", 1) != 0));
  } else if (t == "Range") {
    set_folded(F::range(a, need_folded(1, "limit"), need_folded(2, "delta")));
  } else if (t == "Neg" || t == "Sqrt" || t == "Exp" || t == "Log" || t == "Reciprocal" || t == "Relu" ||
             t == "Abs" || t == "Not") {
    set_folded(F::unary(t, a));
  } else if (t == "Reshape") {
    set_folded(F::reshape(a, need_folded(1, "shape").ints("shape"), attr_i("allowzero", 0) != 0));
  } else if (t == "Flatten") {
    const std::int64_t r = static_cast<std::int64_t>(a.shape.size());
    std::int64_t ax = attr_i("axis", 1);
    if (ax < -r || ax > r) node_fail("axis " + std::to_string(ax) + " out of range for rank " + std::to_string(r));
    if (ax < 0) ax += r;
    std::int64_t outer = 1;
    for (std::int64_t d = 0; d < ax; ++d) outer *= a.shape[d];
    set_folded(F::reshape(a, {outer, -1}, false));
  } else if (t == "Transpose") {
    set_folded(F::transpose(a, attr_ints("perm")));
  } else if (t == "ConstantOfShape") {
    Folded v = Folded::of_floats({1}, {0.0});
    if (const auto* at = attr("value")) v = load_tensor(at->t(), "value");
    set_folded(F::constant_of_shape(a.ints("shape"), v));
  }
  return true;
}

}  // namespace onnx_detail

Model import_onnx(const std::string& path, const ImportOptions& opts) {
  // A device (/dev/zero) would be read forever and a FIFO blocks the open: regular files only,
  // and no larger than protobuf can parse.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw std::runtime_error(path + ": no such file or not readable");
  if (!std::filesystem::is_regular_file(st)) throw std::runtime_error(path + ": not a regular file");
  if (std::filesystem::file_size(path, ec) >= (std::uintmax_t(1) << 31))
    throw std::runtime_error(path + ": larger than 2 GB, the limit of an ONNX file without external data");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": no such file or not readable");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  onnx::ModelProto mp;
  if (bytes.empty()) throw std::runtime_error(path + ": not an ONNX model (empty file)");
  if (!mp.ParseFromString(bytes))
    throw std::runtime_error(path + ": not an ONNX model (protobuf parse failed: truncated or not ONNX)");
  if (mp.ir_version() <= 0 || !mp.has_graph() || mp.graph().node_size() == 0)
    throw std::runtime_error(path + ": not an ONNX model (no ir_version or empty graph)");
  try {
    return onnx_detail::Importer(path, opts).run(mp);
  } catch (const onnx_detail::ImportError&) {
    throw;  // names the file
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

std::string onnx_initializer_name(const Model& m, const std::string& param) {
  const auto it = m.meta().find("onnx_names");
  if (it == m.meta().end()) return param;
  const nlohmann::json names = nlohmann::json::parse(it->second, nullptr, false);
  if (!names.is_object() || !names.contains(param) || !names[param].is_string()) return param;
  return names[param].get<std::string>();
}

int find_onnx_param(const Model& m, const std::string& onnx_name) {
  for (std::size_t i = 0; i < m.params().size(); ++i)
    if (onnx_initializer_name(m, m.params()[i].name) == onnx_name) return static_cast<int>(i);
  return -1;
}

}  // namespace curv
