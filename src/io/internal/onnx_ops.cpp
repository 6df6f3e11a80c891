#include "src/io/internal/onnx_ops.h"

#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>

#include "src/core/fake_quantize.h"
#include "src/core/ops.h"

namespace curv {

namespace {

using nlohmann::json;

template <class T>
T get(const json& a, const char* key, T def) {
  const auto it = a.find(key);
  if (it == a.end() || it->is_null()) return def;
  return it->get<T>();
}

std::vector<std::int64_t> ints(const json& a, const char* key, std::vector<std::int64_t> def = {}) {
  return get<std::vector<std::int64_t>>(a, key, std::move(def));
}

template <std::size_t N>
std::array<std::int64_t, N> arr(const json& a, const char* key, std::array<std::int64_t, N> def) {
  const auto v = ints(a, key);
  if (v.empty()) return def;
  if (v.size() != N)
    throw std::invalid_argument(std::string("attribute '") + key + "' must have " + std::to_string(N) +
                                " values, got " + std::to_string(v.size()) +
                                " (only 2-D convolution and pooling are supported)");
  std::array<std::int64_t, N> r{};
  for (std::size_t i = 0; i < N; ++i) r[i] = v[i];
  return r;
}

const std::map<std::string, UnaryKind>& unary_kinds() {
  static const std::map<std::string, UnaryKind> m{
      {"Relu", UnaryKind::Relu},        {"LeakyRelu", UnaryKind::LeakyRelu},
      {"Sigmoid", UnaryKind::Sigmoid},  {"Tanh", UnaryKind::Tanh},
      {"Erf", UnaryKind::Erf},          {"Gelu", UnaryKind::Gelu},
      {"Sqrt", UnaryKind::Sqrt},        {"Pow", UnaryKind::Pow},
      {"Exp", UnaryKind::Exp},          {"Log", UnaryKind::Log},
      {"Neg", UnaryKind::Neg},          {"Reciprocal", UnaryKind::Reciprocal},
      {"Identity", UnaryKind::Identity}};
  return m;
}

const std::map<std::string, BinaryKind>& binary_kinds() {
  static const std::map<std::string, BinaryKind> m{
      {"Add", BinaryKind::Add}, {"Sub", BinaryKind::Sub}, {"Mul", BinaryKind::Mul}, {"Div", BinaryKind::Div}};
  return m;
}

Pool2dAttrs pool_attrs(const json& a) {
  Pool2dAttrs p;
  p.kernel = arr<2>(a, "kernel", {1, 1});
  p.stride = arr<2>(a, "strides", {1, 1});
  p.dilation = arr<2>(a, "dilations", {1, 1});
  p.pads = arr<4>(a, "pads", {0, 0, 0, 0});
  p.ceil_mode = get<bool>(a, "ceil_mode", false);
  p.count_include_pad = get<bool>(a, "count_include_pad", false);
  return p;
}

// ---- recovering a spec from Op::type() / Op::attributes() ------------------------------------

std::map<std::string, std::string> kv(const std::string& s) {
  // "k=3x3 s=1,1 p=0,0,0,0 groups=2" or "shape=[0, -1]": split on spaces outside brackets.
  std::map<std::string, std::string> r;
  std::string tok;
  int depth = 0;
  auto flush = [&] {
    const auto eq = tok.find('=');
    if (eq != std::string::npos)
      r[tok.substr(0, eq)] = tok.substr(eq + 1);
    else if (!tok.empty())
      r[tok] = "";
    tok.clear();
  };
  for (char c : s) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ' ' && depth == 0)
      flush();
    else
      tok += c;
  }
  flush();
  return r;
}

std::vector<std::int64_t> int_list(std::string s) {
  for (char& c : s)
    if (c == '[' || c == ']' || c == ',' || c == 'x') c = ' ';
  std::istringstream in(s);
  std::vector<std::int64_t> r;
  std::int64_t v;
  while (in >> v) r.push_back(v);
  return r;
}

std::optional<OpSpec> recover(const Op& op) {
  OpSpec s{op.type(), json::object()};
  const auto a = kv(op.attributes());
  auto has = [&](const char* k) { return a.count(k) != 0; };
  const std::string& t = s.type;
  if (binary_kinds().count(t) || t == "MatMul" || t == "GlobalAveragePool" || t == "Dropout" || t == "Cast" ||
      t == "Pad")
    return s;
  if (unary_kinds().count(t)) {
    // attributes() prints doubles with 6 decimals: only exact for "round" values.
    if (t == "LeakyRelu") s.attrs["alpha"] = std::stod(a.at("alpha"));
    if (t == "Pow") s.attrs["exponent"] = std::stod(a.at("exponent"));
    return s;
  }
  if (t == "Gemm") {
    s.attrs["transA"] = a.at("transA") == "1";
    s.attrs["transB"] = a.at("transB") == "1";
    if (has("alpha")) s.attrs["alpha"] = std::stod(a.at("alpha"));
    if (has("beta")) s.attrs["beta"] = std::stod(a.at("beta"));
    return s;
  }
  if (t == "Conv") {
    s.attrs["kernel"] = int_list(a.at("k"));
    s.attrs["strides"] = int_list(a.at("s"));
    s.attrs["pads"] = int_list(a.at("p"));
    if (has("d")) s.attrs["dilations"] = int_list(a.at("d"));
    if (has("groups")) s.attrs["group"] = std::stoll(a.at("groups"));
    return s;
  }
  if (t == "MaxPool" || t == "AveragePool") {  // pads and modes are not printed: see candidates()
    s.attrs["kernel"] = int_list(a.at("k"));
    s.attrs["strides"] = int_list(a.at("s"));
    return s;
  }
  if (t == "Softmax" || t == "LogSoftmax" || t == "Flatten" || t == "Concat") {
    s.attrs["axis"] = std::stoll(a.at("axis"));
    return s;
  }
  if (t == "LayerNormalization") {
    s.attrs["axis"] = std::stoll(a.at("axis"));
    s.attrs["epsilon"] = std::stod(a.at("epsilon"));
    return s;
  }
  if (t == "BatchNormalization") {
    s.attrs["training"] = has("training");
    s.attrs["epsilon"] = std::stod(a.at("epsilon"));
    return s;
  }
  if (t == "Reshape") {
    s.attrs["shape"] = int_list(a.at("shape"));
    return s;
  }
  if (t == "Transpose") {
    s.attrs["perm"] = int_list(a.at("perm"));
    return s;
  }
  if (t == "Squeeze" || t == "Unsqueeze") {
    s.attrs["axes"] = int_list(a.at("axes"));
    return s;
  }
  if (t == "ReduceMean" || t == "ReduceSum") {
    s.attrs["axes"] = int_list(a.at("axes"));
    s.attrs["keepdims"] = a.at("keepdims") == "1";
    return s;
  }
  if (const auto f = fake_quantize_attrs(op)) {
    s.attrs = {{"scale", f->scale}, {"zero_point", f->zero_point}, {"qmin", f->qmin}, {"qmax", f->qmax}};
    return s;
  }
  return std::nullopt;  // Slice (steps), Gather (indices) and unknown ops are not fully printed
}

std::vector<Shape> input_shapes(const Model& m, const Node& n, std::int64_t batch) {
  std::vector<Shape> in;
  for (int v : n.inputs) {
    const Value& val = m.values().at(v);
    if (val.kind == ValueKind::Input)
      in.push_back(with_lead(batch, val.shape));
    else if (val.kind == ValueKind::Node)
      in.push_back(batch == 1 ? val.shape : val.shape2);
    else
      in.push_back(val.shape);
  }
  return in;
}

// Candidate specs for an op without a recorded spec. Pools do not print pads or modes: try the
// symmetric pads and modes a builder uses (the forward check in same_op picks the right one).
std::vector<OpSpec> candidates(const Op& op) {
  const auto s = recover(op);
  if (!s) return {};
  if (s->type != "MaxPool" && s->type != "AveragePool") return {*s};
  std::vector<OpSpec> r;
  const auto k = s->attrs.at("kernel").get<std::vector<std::int64_t>>();
  const std::int64_t kmax = k.empty() ? 1 : std::max(k[0], k.back());
  for (std::int64_t p = 0; p < kmax; ++p)
    for (bool ceil : {false, true})
      for (bool incl : {false, true}) {
        if (incl && (p == 0 || s->type == "MaxPool")) continue;
        OpSpec c = *s;
        c.attrs["pads"] = std::vector<std::int64_t>{p, p, p, p};
        if (ceil) c.attrs["ceil_mode"] = true;
        if (incl) c.attrs["count_include_pad"] = true;
        r.push_back(c);
      }
  return r;
}

// Deterministic test values in [0.25, 1.25) (positive: valid for Sqrt, Log and variances).
std::vector<double> probe_values(std::int64_t n, std::uint64_t seed) {
  std::vector<double> v(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& e : v) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e = 0.25 + static_cast<double>((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
  }
  return v;
}

// Whether `rebuilt` is indistinguishable from the node's op: type, printed attributes, output
// shapes at batch sizes 1 and 2, and a bit-identical forward pass on probe inputs.
bool same_op(const Model& m, const Node& n, const Op& rebuilt) {
  if (rebuilt.type() != n.op->type() || rebuilt.attributes() != n.op->attributes()) return false;
  if (rebuilt.mixes_batch() != n.op->mixes_batch()) return false;
  try {
    for (std::int64_t b : {1, 2})
      if (rebuilt.output_shape(input_shapes(m, n, b)) != n.op->output_shape(input_shapes(m, n, b))) return false;
    const auto shapes = input_shapes(m, n, 2);
    std::vector<Tensor<double>> ins;
    for (std::size_t i = 0; i < shapes.size(); ++i) ins.emplace_back(shapes[i], probe_values(numel(shapes[i]), i + 1));
    Tensor<double> out[2];
    const Op* ops[2] = {n.op.get(), &rebuilt};
    for (int j = 0; j < 2; ++j) {
      OpCtx<double> c;
      OpState<double> st;
      c.state = &st;
      for (const auto& t : ins) c.in.push_back(t.cview());
      out[j] = Tensor<double>(ops[j]->output_shape(shapes));
      ops[j]->forward(c, out[j].view());
    }
    return out[0].size() == out[1].size() &&
           std::memcmp(out[0].data(), out[1].data(), sizeof(double) * static_cast<std::size_t>(out[0].size())) == 0;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

OpPtr make_op(const OpSpec& spec) {
  const std::string& t = spec.type;
  const json& a = spec.attrs;
  try {
    if (const auto u = unary_kinds().find(t); u != unary_kinds().end()) {
      double p = 0.0;
      if (t == "LeakyRelu") p = get<double>(a, "alpha", 0.01);
      if (t == "Pow") p = a.at("exponent").get<double>();
      return make_unary(u->second, p);
    }
    if (const auto b = binary_kinds().find(t); b != binary_kinds().end()) return make_binary(b->second);
    if (t == "Gemm")
      return make_gemm(get<bool>(a, "transA", false), get<bool>(a, "transB", false), get<double>(a, "alpha", 1.0),
                       get<double>(a, "beta", 1.0));
    if (t == "MatMul") return make_matmul();
    if (t == "Conv") {
      Conv2dAttrs c;
      c.kernel = arr<2>(a, "kernel", {1, 1});
      c.stride = arr<2>(a, "strides", {1, 1});
      c.dilation = arr<2>(a, "dilations", {1, 1});
      c.pads = arr<4>(a, "pads", {0, 0, 0, 0});
      c.groups = get<std::int64_t>(a, "group", 1);
      return make_conv(c);
    }
    if (t == "MaxPool") return make_max_pool(pool_attrs(a));
    if (t == "AveragePool") return make_average_pool(pool_attrs(a));
    if (t == "GlobalAveragePool") return make_global_average_pool();
    if (t == "Softmax" || t == "LogSoftmax") return make_softmax(get<std::int64_t>(a, "axis", -1), t == "LogSoftmax");
    if (t == "ReduceMean" || t == "ReduceSum")
      return make_reduce(t == "ReduceMean", ints(a, "axes"), get<bool>(a, "keepdims", true));
    if (t == "BatchNormalization")
      return make_batch_norm(get<double>(a, "epsilon", 1e-5), get<bool>(a, "training", false));
    if (t == "LayerNormalization")
      return make_layer_norm(get<std::int64_t>(a, "axis", -1), get<double>(a, "epsilon", 1e-5));
    if (t == "Reshape") return make_reshape(ints(a, "shape"), get<bool>(a, "allowzero", false));
    if (t == "Flatten") return make_flatten(get<std::int64_t>(a, "axis", 1));
    if (t == "Transpose") return make_transpose(ints(a, "perm"));
    if (t == "Slice") return make_slice(ints(a, "starts"), ints(a, "ends"), ints(a, "axes"), ints(a, "steps"));
    if (t == "Concat") return make_concat(a.at("axis").get<std::int64_t>());
    if (t == "Gather")
      return make_gather(get<std::int64_t>(a, "axis", 0), ints(a, "indices"), ints(a, "indices_shape"));
    if (t == "Unsqueeze") return make_unsqueeze(ints(a, "axes"));
    if (t == "Squeeze") return make_squeeze(ints(a, "axes"));
    if (t == "Dropout" || t == "Cast" || t == "Pad") return make_identity(t.c_str());
    if (t == "FakeQuantize") {  // curv's own: checkpoints of activation-quantized models
      FakeQuantizeAttrs f;
      f.scale = a.at("scale").get<double>();
      f.zero_point = get<std::int64_t>(a, "zero_point", 0);
      f.qmin = a.at("qmin").get<std::int64_t>();
      f.qmax = a.at("qmax").get<std::int64_t>();
      return make_fake_quantize(f);
    }
  } catch (const json::exception& e) {
    throw std::invalid_argument(t + ": malformed attributes " + a.dump() + " (" + e.what() + ")");
  }
  throw std::invalid_argument("unsupported op type '" + t + "'");
}

std::string op_spec_key(const std::string& node) { return "op:" + node; }

void record_op_spec(Model& m, const std::string& node, const OpSpec& spec) {
  m.meta()[op_spec_key(node)] = json{{"type", spec.type}, {"attrs", spec.attrs}}.dump();
}

std::optional<OpSpec> describe_node(const Model& m, int node) {
  const Node& n = m.nodes().at(node);
  const auto it = m.meta().find(op_spec_key(n.name));
  if (it != m.meta().end()) {
    try {
      const json j = json::parse(it->second);
      OpSpec s{j.at("type").get<std::string>(), j.at("attrs")};
      if (same_op(m, n, *make_op(s))) return s;
    } catch (const std::exception&) {
      // stale or malformed record: fall through to recovery
    }
  }
  try {
    for (const OpSpec& c : candidates(*n.op))
      if (same_op(m, n, *make_op(c))) return c;
  } catch (const std::exception&) {
    // an attribute string that does not parse: not describable
  }
  return std::nullopt;
}

}  // namespace curv
