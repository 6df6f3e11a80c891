// The table of op types: attributes (name, kind, default) and factories. Attribute semantics follow
// ONNX (opset 11-18); the names are those of curv checkpoint graphs, which differ from ONNX only in
// Conv/pool `kernel` (ONNX kernel_shape), BatchNormalization `training` (ONNX training_mode), and
// operands that ONNX passes as constant inputs (Pow exponent, Reshape shape, Slice starts/ends/axes/
// steps, Gather indices and indices_shape, Squeeze/Unsqueeze/ReduceSum axes).
#include "src/core/op_registry.h"

#include <array>
#include <limits>
#include <stdexcept>

#include "src/core/elementwise_table.h"
#include "src/core/fake_quantize.h"
#include "src/core/ops.h"

namespace curv {

namespace {

using Ints = std::vector<std::int64_t>;

AttrInfo attr_int(const char* n, std::optional<std::int64_t> d) {
  return {n, AttrKind::Int, d ? std::optional<AttrValue>(*d) : std::nullopt};
}
AttrInfo attr_bool(const char* n, bool d) { return {n, AttrKind::Bool, AttrValue(std::int64_t(d ? 1 : 0))}; }
AttrInfo attr_float(const char* n, std::optional<double> d) {
  return {n, AttrKind::Float, d ? std::optional<AttrValue>(*d) : std::nullopt};
}
AttrInfo attr_floats(const char* n, std::vector<double> d) { return {n, AttrKind::Floats, AttrValue(std::move(d))}; }
AttrInfo attr_string(const char* n, const char* d) { return {n, AttrKind::String, AttrValue(std::string(d))}; }
AttrInfo attr_ints(const char* n, std::optional<Ints> d) {
  return {n, AttrKind::Ints, d ? std::optional<AttrValue>(*d) : std::nullopt};
}

// A list attribute of exactly N values (2-D convolution and pooling).
template <std::size_t N>
std::array<std::int64_t, N> fixed(const OpSpec& s, const char* name) {
  const Ints& v = s.get_ints(name);
  if (v.size() != N)
    throw std::invalid_argument(s.type + ": " + name + " " + shape_str(v) + " must have " + std::to_string(N) +
                                " values (only 2-D convolution and pooling are supported)");
  std::array<std::int64_t, N> r{};
  for (std::size_t i = 0; i < N; ++i) r[i] = v[i];
  return r;
}

Pool2dAttrs pool_attrs(const OpSpec& s) {
  Pool2dAttrs p;
  p.kernel = fixed<2>(s, "kernel");
  p.stride = fixed<2>(s, "strides");
  p.dilation = fixed<2>(s, "dilations");
  p.pads = fixed<4>(s, "pads");
  p.ceil_mode = s.get_bool("ceil_mode");
  p.count_include_pad = s.get_bool("count_include_pad");
  return p;
}
std::vector<AttrInfo> pool_schema() {
  return {attr_ints("kernel", std::nullopt),   attr_ints("strides", Ints{1, 1}), attr_ints("dilations", Ints{1, 1}),
          attr_ints("pads", Ints{0, 0, 0, 0}), attr_bool("ceil_mode", false),    attr_bool("count_include_pad", false)};
}

OpPtr make_conv_spec(const OpSpec& s) {
  Conv2dAttrs a;
  a.kernel = fixed<2>(s, "kernel");
  a.stride = fixed<2>(s, "strides");
  a.dilation = fixed<2>(s, "dilations");
  a.pads = fixed<4>(s, "pads");
  a.groups = s.get_int("group");
  return make_conv(a);
}

// Unary ops: the parameters named in their table row (if any) are their attributes.
std::vector<AttrInfo> unary_schema(const char* p, std::optional<double> p_def, const char* q,
                                   std::optional<double> q_def) {
  std::vector<AttrInfo> r;
  if (*p) r.push_back(attr_float(p, p_def));
  if (*q) r.push_back(attr_float(q, q_def));
  return r;
}
template <BinaryKind K>
OpPtr make_binary_spec(const OpSpec&) {
  return make_binary(K);
}
template <const char* Type>
OpPtr make_identity_spec(const OpSpec&) {
  return make_identity(Type);
}
constexpr char kDropout[] = "Dropout";
constexpr char kCast[] = "Cast";
constexpr char kPad[] = "Pad";

std::vector<OpTypeInfo> build_table() {
  std::vector<OpTypeInfo> t;
  // The rows of elementwise_table.h.
#define CURV_UNARY_ROW(Name, P, PDefault, Q, QDefault, ...)                                                \
  t.push_back({#Name, unary_schema(P, PDefault, Q, QDefault),                                               \
               [](const OpSpec& s) {                                                                         \
                 return make_unary(UnaryKind::Name, *P ? s.get_float(P) : 0.0, *Q ? s.get_float(Q) : 0.0); \
               },                                                                                            \
               true});
  CURV_UNARY_OPS(CURV_UNARY_ROW)
#undef CURV_UNARY_ROW
#define CURV_BINARY_ROW(Name) t.push_back({#Name, {}, &make_binary_spec<BinaryKind::Name>, false, true});
  CURV_BINARY_OPS(CURV_BINARY_ROW)
#undef CURV_BINARY_ROW
  const std::vector<OpTypeInfo> ops = {
      {"Gemm",
       {attr_bool("transA", false), attr_bool("transB", false), attr_float("alpha", 1.0), attr_float("beta", 1.0)},
       [](const OpSpec& s) {
         return make_gemm(s.get_bool("transA"), s.get_bool("transB"), s.get_float("alpha"), s.get_float("beta"));
       }},
      {"MatMul", {}, [](const OpSpec&) { return make_matmul(); }},
      {"Conv",
       {attr_ints("kernel", std::nullopt), attr_ints("strides", Ints{1, 1}), attr_ints("dilations", Ints{1, 1}),
        attr_ints("pads", Ints{0, 0, 0, 0}), attr_int("group", 1)},
       &make_conv_spec},
      {"ConvTranspose",
       {attr_ints("kernel", std::nullopt), attr_ints("strides", Ints{1, 1}), attr_ints("dilations", Ints{1, 1}),
        attr_ints("pads", Ints{0, 0, 0, 0}), attr_ints("output_padding", Ints{0, 0}), attr_int("group", 1)},
       [](const OpSpec& s) {
         ConvTranspose2dAttrs a;
         a.kernel = fixed<2>(s, "kernel");
         a.stride = fixed<2>(s, "strides");
         a.dilation = fixed<2>(s, "dilations");
         a.pads = fixed<4>(s, "pads");
         a.output_padding = fixed<2>(s, "output_padding");
         a.groups = s.get_int("group");
         return make_conv_transpose(a);
       }},
      {"Resize",
       {attr_string("mode", "nearest"), attr_string("coordinate_transformation_mode", "half_pixel"),
        attr_string("nearest_mode", "round_prefer_floor"), attr_floats("scales", {}), attr_ints("sizes", Ints{})},
       [](const OpSpec& s) {
         ResizeAttrs a;
         a.mode = s.get_string("mode");
         a.coordinate_transformation_mode = s.get_string("coordinate_transformation_mode");
         a.nearest_mode = s.get_string("nearest_mode");
         a.scales = s.get_floats("scales");
         a.sizes = s.get_ints("sizes");
         return make_resize(a);
       }},
      {"LSTM",
       {attr_int("hidden_size", std::nullopt), attr_string("direction", "forward")},
       [](const OpSpec& s) { return make_lstm(s.get_int("hidden_size"), s.get_string("direction")); }},
      {"GRU",
       {attr_int("hidden_size", std::nullopt), attr_string("direction", "forward")},
       [](const OpSpec& s) { return make_gru(s.get_int("hidden_size"), s.get_string("direction")); }},
      {"MaxPool", pool_schema(), [](const OpSpec& s) { return make_max_pool(pool_attrs(s)); }},
      {"AveragePool", pool_schema(), [](const OpSpec& s) { return make_average_pool(pool_attrs(s)); }},
      {"GlobalAveragePool", {}, [](const OpSpec&) { return make_global_average_pool(); }},
      {"Softmax", {attr_int("axis", -1)}, [](const OpSpec& s) { return make_softmax(s.get_int("axis"), false); }},
      {"LogSoftmax", {attr_int("axis", -1)}, [](const OpSpec& s) { return make_softmax(s.get_int("axis"), true); }},
      {"FakeQuantize",  // curv's own (quantization-aware activations); checkpoints only, no ONNX form
       {attr_float("scale", std::nullopt), attr_int("zero_point", 0), attr_int("qmin", std::nullopt),
        attr_int("qmax", std::nullopt)},
       [](const OpSpec& s) {
         FakeQuantizeAttrs f;
         f.scale = s.get_float("scale");
         f.zero_point = s.get_int("zero_point");
         f.qmin = s.get_int("qmin");
         f.qmax = s.get_int("qmax");
         return make_fake_quantize(f);
       }},
      {"ReduceMean",
       {attr_ints("axes", Ints{}), attr_bool("keepdims", true)},
       [](const OpSpec& s) { return make_reduce(true, s.get_ints("axes"), s.get_bool("keepdims")); }},
      {"ReduceSum",
       {attr_ints("axes", Ints{}), attr_bool("keepdims", true)},
       [](const OpSpec& s) { return make_reduce(false, s.get_ints("axes"), s.get_bool("keepdims")); }},
      {"ReduceMax",
       {attr_ints("axes", Ints{}), attr_bool("keepdims", true)},
       [](const OpSpec& s) { return make_reduce_max(false, s.get_ints("axes"), s.get_bool("keepdims")); }},
      {"ReduceMin",
       {attr_ints("axes", Ints{}), attr_bool("keepdims", true)},
       [](const OpSpec& s) { return make_reduce_max(true, s.get_ints("axes"), s.get_bool("keepdims")); }},
      {"Where", {}, [](const OpSpec&) { return make_where(); }},
      {"Einsum", {AttrInfo{"equation", AttrKind::String, std::nullopt}}, [](const OpSpec& s) { return make_einsum(s.get_string("equation")); }},
      {"Expand",
       {attr_ints("shape", std::nullopt), attr_ints("batch_axes", Ints{})},
       [](const OpSpec& s) { return make_expand(s.get_ints("shape"), s.get_ints("batch_axes")); }},
      {"Tile", {attr_ints("repeats", std::nullopt)}, [](const OpSpec& s) { return make_tile(s.get_ints("repeats")); }},
      {"Trilu",
       {attr_int("k", 0), attr_bool("upper", true)},
       [](const OpSpec& s) { return make_trilu(s.get_int("k"), s.get_bool("upper")); }},
      {"BatchNormalization",
       {attr_float("epsilon", 1e-5), attr_bool("training", false)},
       [](const OpSpec& s) { return make_batch_norm(s.get_float("epsilon"), s.get_bool("training")); }},
      {"InstanceNormalization",
       {attr_float("epsilon", 1e-5)},
       [](const OpSpec& s) { return make_instance_norm(s.get_float("epsilon")); }},
      {"LayerNormalization",
       {attr_int("axis", -1), attr_float("epsilon", 1e-5)},
       [](const OpSpec& s) { return make_layer_norm(s.get_int("axis"), s.get_float("epsilon")); }},
      {"Reshape",
       {attr_ints("shape", std::nullopt), attr_bool("allowzero", false)},
       [](const OpSpec& s) { return make_reshape(s.get_ints("shape"), s.get_bool("allowzero")); }},
      {"Flatten", {attr_int("axis", 1)}, [](const OpSpec& s) { return make_flatten(s.get_int("axis")); }},
      {"Transpose", {attr_ints("perm", Ints{})}, [](const OpSpec& s) { return make_transpose(s.get_ints("perm")); }},
      {"Slice",
       {attr_ints("starts", std::nullopt), attr_ints("ends", std::nullopt), attr_ints("axes", Ints{}),
        attr_ints("steps", Ints{})},
       [](const OpSpec& s) {
         return make_slice(s.get_ints("starts"), s.get_ints("ends"), s.get_ints("axes"), s.get_ints("steps"));
       }},
      {"Concat", {attr_int("axis", std::nullopt)}, [](const OpSpec& s) { return make_concat(s.get_int("axis")); }},
      {"Gather",
       {attr_int("axis", 0), attr_ints("indices", std::nullopt), attr_ints("indices_shape", std::nullopt)},
       [](const OpSpec& s) {
         return make_gather(s.get_int("axis"), s.get_ints("indices"), s.get_ints("indices_shape"));
       }},
      {"Embedding", {attr_int("axis", 0)}, [](const OpSpec& s) { return make_embedding(s.get_int("axis")); }},
      {"Unsqueeze",
       {attr_ints("axes", std::nullopt)},
       [](const OpSpec& s) { return make_unsqueeze(s.get_ints("axes")); }},
      {"Squeeze", {attr_ints("axes", Ints{})}, [](const OpSpec& s) { return make_squeeze(s.get_ints("axes")); }},
      // Identities with the type they were imported as (ONNX export writes them back).
      {"Dropout", {}, &make_identity_spec<kDropout>},
      {"Cast", {}, &make_identity_spec<kCast>},
      {"Pad", {}, &make_identity_spec<kPad>},
  };
  t.insert(t.end(), ops.begin(), ops.end());
  return t;
}

}  // namespace

const AttrInfo* OpTypeInfo::attr(const std::string& name) const {
  for (const auto& a : attrs)
    if (a.name == name) return &a;
  return nullptr;
}

const std::vector<OpTypeInfo>& op_types() {
  static const std::vector<OpTypeInfo> table = build_table();
  return table;
}

const OpTypeInfo* find_op_type(const std::string& type) {
  for (const auto& t : op_types())
    if (t.type == type) return &t;
  return nullptr;
}

OpSpec resolve_spec(const OpSpec& spec) {
  const OpTypeInfo* info = find_op_type(spec.type);
  if (!info) throw std::invalid_argument("unsupported op type '" + spec.type + "'");
  OpSpec r(spec.type);
  for (const auto& [name, v] : spec.attrs) {
    const AttrInfo* a = info->attr(name);
    if (!a) {
      std::string known;
      for (const auto& k : info->attrs) known += (known.empty() ? "" : ", ") + k.name;
      throw std::invalid_argument(spec.type + ": unknown attribute '" + name + "' (" +
                                  (known.empty() ? "it takes none" : "it takes " + known) + ")");
    }
    const AttrKind have = kind_of(v);
    AttrValue value = v;
    if (a->kind == AttrKind::Float && have == AttrKind::Int) {
      value = static_cast<double>(std::get<std::int64_t>(v));
    } else if (a->kind == AttrKind::Floats && have == AttrKind::Ints) {
      const auto& i = std::get<Ints>(v);
      value = std::vector<double>(i.begin(), i.end());
    } else if (a->kind == AttrKind::Bool && have == AttrKind::Int) {
      if (std::get<std::int64_t>(v) != 0 && std::get<std::int64_t>(v) != 1)
        throw std::invalid_argument(spec.type + ": attribute '" + name + "' must be 0 or 1, got " + format_attr(v));
    } else if (a->kind != have) {
      throw std::invalid_argument(spec.type + ": attribute '" + name + "' must be " + attr_kind_name(a->kind) +
                                  ", got " + format_attr(v));
    }
    r.attrs[name] = std::move(value);
  }
  for (const auto& a : info->attrs) {
    if (r.has(a.name)) continue;
    if (!a.default_value) throw std::invalid_argument(spec.type + ": attribute '" + a.name + "' is required");
    r.attrs[a.name] = *a.default_value;
  }
  return r;
}

OpPtr make_op(const OpSpec& spec, const std::string& node) {
  try {
    const OpSpec r = resolve_spec(spec);
    return find_op_type(r.type)->make(r);
  } catch (const std::invalid_argument& e) {
    if (node.empty()) throw;
    // "<Type>: <what>" -> "node '<node>' (<Type>): <what>"
    std::string what = e.what();
    if (what.rfind(spec.type + ": ", 0) == 0) what = what.substr(spec.type.size() + 2);
    throw std::invalid_argument("node '" + node + "' (" + spec.type + "): " + what);
  }
}

}  // namespace curv
