#include "src/core/builder.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace curv {

ModelBuilder::ModelBuilder(Shape sample_shape, std::uint64_t seed, const std::string& input_name, bool integer_input)
    : m_rng(seed) {
  m_input = m_model.add_input(input_name, std::move(sample_shape), integer_input);
}

Shape ModelBuilder::shape(int v) const {
  const Value& val = m_model.values().at(v);
  if (val.kind == ValueKind::Input) return val.shape;
  if (val.kind == ValueKind::Node) return Shape(val.shape.begin() + 1, val.shape.end());
  return val.shape;
}

std::string ModelBuilder::auto_name(const std::string& type) { return "/" + type + "_" + std::to_string(m_counter++); }

int ModelBuilder::param(const std::string& name, Shape shape, double bound) {
  Tensor<double> t(std::move(shape));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (auto& v : t.vec()) v = u(m_rng);
  return m_model.add_parameter(name, std::move(t));
}

int ModelBuilder::param_const(const std::string& name, Shape shape, double value) {
  Tensor<double> t(std::move(shape));
  for (auto& v : t.vec()) v = value;
  return m_model.add_parameter(name, std::move(t));
}

int ModelBuilder::constant(const std::string& name, Tensor<double> value) {
  return m_model.add_constant(name, std::move(value));
}

int ModelBuilder::node(const std::string& name, OpPtr op, const std::vector<int>& inputs) {
  const std::string n = name.empty() ? auto_name(op->type()) : name;
  return m_model.add_node(n, std::move(op), inputs);
}

int ModelBuilder::linear(int x, std::int64_t out, const std::string& name, bool bias) {
  const Shape s = shape(x);
  if (s.size() != 1) throw std::invalid_argument("linear '" + name + "': input " + shape_str(s) + " must be [N, features]");
  const double b = 1.0 / std::sqrt(double(s[0]));
  std::vector<int> in{x, param(name + ".weight", {out, s[0]}, b)};
  if (bias) in.push_back(param(name + ".bias", {out}, b));
  return node(name + "/Gemm", make_gemm(false, true), in);
}

int ModelBuilder::linear_nd(int x, std::int64_t out, const std::string& name, bool bias) {
  const Shape s = shape(x);
  const std::int64_t in = s.back();
  const double b = 1.0 / std::sqrt(double(in));
  // Stored as [in, out], as torch.onnx exports the transposed weight of a Linear on 3-D input.
  int w = param(name + ".weight_t", {in, out}, b);
  int y = node(name + "/MatMul", make_matmul(), {x, w});
  if (bias) y = node(name + "/Add", make_binary(BinaryKind::Add), {y, param(name + ".bias", {out}, b)});
  return y;
}

int ModelBuilder::conv(int x, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t pad,
                       const std::string& name, bool bias, std::int64_t groups, std::int64_t dilation) {
  const Shape s = shape(x);
  if (s.size() != 3) throw std::invalid_argument("conv '" + name + "': input " + shape_str(s) + " must be [N, C, H, W]");
  const std::int64_t cin = s[0] / groups;
  const double b = 1.0 / std::sqrt(double(cin * k * k));
  Conv2dAttrs a;
  a.kernel = {k, k};
  a.stride = {stride, stride};
  a.pads = {pad, pad, pad, pad};
  a.dilation = {dilation, dilation};
  a.groups = groups;
  std::vector<int> in{x, param(name + ".weight", {out, cin, k, k}, b)};
  if (bias) in.push_back(param(name + ".bias", {out}, b));
  return node(name + "/Conv", make_conv(a), in);
}

int ModelBuilder::batch_norm(int x, const std::string& name, bool training, bool random_stats) {
  const std::int64_t C = shape(x).at(0);
  int w = param_const(name + ".weight", {C}, 1.0);
  int b = param_const(name + ".bias", {C}, 0.0);
  Tensor<double> mean({C}), var({C});
  std::uniform_real_distribution<double> u(-0.5, 0.5), v(0.5, 1.5);
  for (std::int64_t c = 0; c < C; ++c) {
    mean.data()[c] = random_stats ? u(m_rng) : 0.0;
    var.data()[c] = random_stats ? v(m_rng) : 1.0;
  }
  if (random_stats) {  // non-trivial affine parameters too, so tests see every term
    for (auto& e : m_model.param(m_model.values()[w].index).vec()) e = v(m_rng);
    for (auto& e : m_model.param(m_model.values()[b].index).vec()) e = u(m_rng);
  }
  int m = constant(name + ".running_mean", std::move(mean));
  int s = constant(name + ".running_var", std::move(var));
  return node(name + "/BatchNormalization", make_batch_norm(1e-5, training), {x, w, b, m, s});
}

int ModelBuilder::layer_norm(int x, const std::string& name) {
  const std::int64_t D = shape(x).back();
  int w = param_const(name + ".weight", {D}, 1.0);
  int b = param_const(name + ".bias", {D}, 0.0);
  return node(name + "/LayerNormalization", make_layer_norm(-1, 1e-5), {x, w, b});
}

int ModelBuilder::unary(int x, UnaryKind kind, double p) { return node("", make_unary(kind, p), {x}); }

int ModelBuilder::max_pool(int x, std::int64_t k, std::int64_t s, std::int64_t pad) {
  Pool2dAttrs a;
  a.kernel = {k, k};
  a.stride = {s, s};
  a.pads = {pad, pad, pad, pad};
  return node("", make_max_pool(a), {x});
}

int ModelBuilder::avg_pool(int x, std::int64_t k, std::int64_t s, std::int64_t pad) {
  Pool2dAttrs a;
  a.kernel = {k, k};
  a.stride = {s, s};
  a.pads = {pad, pad, pad, pad};
  return node("", make_average_pool(a), {x});
}

int ModelBuilder::global_avg_pool(int x) { return node("", make_global_average_pool(), {x}); }
int ModelBuilder::flatten(int x) { return node("", make_flatten(1), {x}); }
int ModelBuilder::add(int a, int b) { return node("", make_binary(BinaryKind::Add), {a, b}); }
int ModelBuilder::binary(int a, int b, BinaryKind kind) { return node("", make_binary(kind), {a, b}); }

Model ModelBuilder::finish(int output) {
  m_model.set_output(output);
  return std::move(m_model);
}

namespace {

// skip = false drops the shortcut (Li et al. 2018's "noshort" networks): relu(bn2(conv2(...))).
int basic_block(ModelBuilder& b, int x, std::int64_t out, std::int64_t stride, const std::string& name, bool bn,
                bool training, bool skip = true) {
  const std::int64_t in = b.shape(x).at(0);
  int y = b.conv(x, out, 3, stride, 1, name + ".conv1", !bn);
  if (bn) y = b.batch_norm(y, name + ".bn1", training);
  y = b.relu(y);
  y = b.conv(y, out, 3, 1, 1, name + ".conv2", !bn);
  if (bn) y = b.batch_norm(y, name + ".bn2", training);
  if (!skip) return b.relu(y);
  int sc = x;
  if (stride != 1 || in != out) {
    sc = b.conv(x, out, 1, stride, 0, name + ".shortcut.0", !bn);
    if (bn) sc = b.batch_norm(sc, name + ".shortcut.1", training);
  }
  return b.relu(b.add(y, sc));
}

// ViT encoder block (pre-norm): x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU. x: [N, T, D].
// A pre-norm transformer block; `mask` (a value id, or -1) is added to the attention scores.
int vit_block(ModelBuilder& b, int x, std::int64_t heads, const std::string& name, int mask = -1,
              std::int64_t mlp_ratio = 2) {
  const Shape s = b.shape(x);
  const std::int64_t T = s[0], D = s[1], dh = D / heads;
  int h = b.layer_norm(x, name + ".norm1");
  int q = b.linear_nd(h, D, name + ".attn.q"), k = b.linear_nd(h, D, name + ".attn.k");
  int v = b.linear_nd(h, D, name + ".attn.v");
  auto split = [&](int t) {  // [N, T, D] -> [N, H, T, dh]
    return b.node("", make_transpose({0, 2, 1, 3}), {b.node("", make_reshape({0, T, heads, dh}), {t})});
  };
  int qh = split(q), kh = split(k), vh = split(v);
  int att = b.node("", make_matmul(), {qh, b.node("", make_transpose({0, 1, 3, 2}), {kh})});
  att = b.binary(att, b.constant(name + ".attn.scale", Tensor<double>({1}, {1.0 / std::sqrt(double(dh))})),
                 BinaryKind::Mul);
  if (mask >= 0) att = b.add(att, mask);
  att = b.node("", make_softmax(-1, false), {att});
  int o = b.node("", make_matmul(), {att, vh});
  o = b.node("", make_reshape({0, T, D}), {b.node("", make_transpose({0, 2, 1, 3}), {o})});
  x = b.add(x, b.linear_nd(o, D, name + ".attn.proj"));
  h = b.layer_norm(x, name + ".norm2");
  h = b.linear_nd(b.unary(b.linear_nd(h, mlp_ratio * D, name + ".mlp.fc1"), UnaryKind::Gelu), D, name + ".mlp.fc2");
  return b.add(x, h);
}

std::vector<std::int64_t> int_args(const std::string& spec, const std::string& arg, std::vector<std::int64_t> dflt,
                                   const char* example) {
  if (arg.empty()) return dflt;
  std::vector<std::int64_t> r;
  std::stringstream ss(arg);
  std::string tok;
  while (std::getline(ss, tok, '-')) {
    try {
      std::size_t used = 0;
      r.push_back(std::stoll(tok, &used));
      if (used != tok.size()) throw std::invalid_argument(tok);
    } catch (...) {
      throw std::invalid_argument("arch '" + spec + "': expected positive integers like " + example);
    }
    if (r.back() <= 0) throw std::invalid_argument("arch '" + spec + "': expected positive integers like " + example);
  }
  return r;
}

}  // namespace

namespace {

Model build_gpt(const std::string& spec, const std::string& arg, const Shape& sample_shape, std::int64_t vocab,
                std::uint64_t seed, const std::string& input_name) {
  const auto a = int_args(spec, arg, {32, 2, 4}, "gpt:32-2-4");
  if (a.size() != 3) throw std::invalid_argument("arch '" + spec + "': expected gpt:DIM-DEPTH-HEADS");
  const std::int64_t D = a[0], depth = a[1], heads = a[2];
  if (D % heads) throw std::invalid_argument("arch '" + spec + "': heads must divide the width");
  if (sample_shape.size() != 1)
    throw std::invalid_argument("arch '" + spec + "' needs token ids [T], data has " + shape_str(sample_shape));
  const std::int64_t T = sample_shape[0];
  ModelBuilder b(sample_shape, seed, input_name, true);
  int x = b.node("tok_embed", make_embedding(0), {b.param("tok_embed.weight", {vocab, D}, 0.02), b.input()});
  x = b.add(x, b.param("pos_embed", {T, D}, 0.02));
  Tensor<double> causal({T, T});
  for (std::int64_t i = 0; i < T; ++i)
    for (std::int64_t j = i + 1; j < T; ++j) causal.data()[i * T + j] = -1e9;
  const int mask = b.constant("causal_mask", std::move(causal));
  for (std::int64_t i = 0; i < depth; ++i) x = vit_block(b, x, heads, "blocks." + std::to_string(i), mask, 4);
  x = b.layer_norm(x, "norm");
  return b.finish(b.linear_nd(x, vocab, "head", false));
}

}  // namespace

Model build_arch(const std::string& spec, const Shape& sample_shape, std::int64_t num_classes, std::uint64_t seed,
                 bool bn_training, const std::string& input_name) {
  const std::string kind = spec.substr(0, spec.find(':'));
  const std::string arg = spec.find(':') == std::string::npos ? "" : spec.substr(spec.find(':') + 1);
  if (kind == "gpt") return build_gpt(spec, arg, sample_shape, num_classes, seed, input_name);
  ModelBuilder b(sample_shape, seed, input_name);
  if (kind == "mlp") {
    const auto hidden = int_args(spec, arg, {128, 64}, "mlp:128-64");
    int x = sample_shape.size() > 1 ? b.flatten(b.input()) : b.input();
    for (size_t i = 0; i < hidden.size(); ++i) x = b.relu(b.linear(x, hidden[i], std::to_string(2 * i + 1)));
    x = b.linear(x, num_classes, std::to_string(2 * hidden.size() + 1));
    return b.finish(x);
  }
  if (sample_shape.size() != 3)
    throw std::invalid_argument("arch '" + spec + "' needs image inputs [C, H, W], data has " + shape_str(sample_shape));
  if (kind == "lenet") {
    int x = b.max_pool(b.relu(b.conv(b.input(), 6, 5, 1, 2, "conv1")), 2, 2);
    x = b.max_pool(b.relu(b.conv(x, 16, 5, 1, 0, "conv2")), 2, 2);
    x = b.flatten(x);
    x = b.relu(b.linear(x, 120, "fc1"));
    x = b.relu(b.linear(x, 84, "fc2"));
    return b.finish(b.linear(x, num_classes, "fc3"));
  }
  if (kind == "resnet20" || kind == "resnet20-bn" || kind == "resnet20-noskip" || kind == "resnet20-noskip-bn") {
    const bool bn = kind == "resnet20-bn" || kind == "resnet20-noskip-bn";
    const bool skip = kind.find("noskip") == std::string::npos;
    int x = b.conv(b.input(), 16, 3, 1, 1, "conv1", !bn);
    if (bn) x = b.batch_norm(x, "bn1", bn_training);
    x = b.relu(x);
    const std::int64_t widths[3] = {16, 32, 64};
    for (int s = 0; s < 3; ++s)
      for (int i = 0; i < 3; ++i)
        x = basic_block(b, x, widths[s], (s > 0 && i == 0) ? 2 : 1,
                        "layer" + std::to_string(s + 1) + "." + std::to_string(i), bn, bn_training, skip);
    x = b.flatten(b.global_avg_pool(x));
    return b.finish(b.linear(x, num_classes, "fc"));
  }
  if (kind == "vit") {
    const auto a = int_args(spec, arg, {7, 32, 2, 4}, "vit:7-32-2-4");
    if (a.size() != 4) throw std::invalid_argument("arch '" + spec + "': expected vit:PATCH-DIM-DEPTH-HEADS");
    const std::int64_t patch = a[0], D = a[1], depth = a[2], heads = a[3];
    if (sample_shape[1] % patch || sample_shape[2] % patch || D % heads)
      throw std::invalid_argument("arch '" + spec + "': patch " + std::to_string(patch) + " must divide the image " +
                                  shape_str(sample_shape) + " and heads must divide the width");
    const std::int64_t T = (sample_shape[1] / patch) * (sample_shape[2] / patch);
    // Patch embedding as a strided conv, tokens [N, T, D], learned position embedding.
    int x = b.conv(b.input(), D, patch, patch, 0, "patch_embed");
    x = b.node("", make_transpose({0, 2, 1}), {b.node("", make_reshape({0, D, T}), {x})});
    x = b.add(x, b.param("pos_embed", {T, D}, 0.02));
    for (std::int64_t i = 0; i < depth; ++i) x = vit_block(b, x, heads, "blocks." + std::to_string(i));
    x = b.layer_norm(x, "norm");
    x = b.node("", make_reduce(true, {1}, false), {x});  // mean over tokens
    return b.finish(b.linear(x, num_classes, "head"));
  }
  throw std::invalid_argument("unknown arch '" + spec +
                              "' (expected mlp[:H1-H2-...], lenet, resnet20, resnet20-bn, resnet20-noskip, resnet20-noskip-bn, "
                              "vit[:PATCH-DIM-DEPTH-HEADS] or gpt[:DIM-DEPTH-HEADS])");
}

}  // namespace curv
