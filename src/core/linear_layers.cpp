#include "src/core/linear_layers.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "src/core/internal/im2col.h"

namespace curv {

namespace {

// Per-sample shape of a value (inputs are stored without the batch dim, nodes at batch 1).
Shape sample_shape(const Value& v) {
  if (v.kind == ValueKind::Input) return v.shape;
  return Shape(v.shape.begin() + 1, v.shape.end());
}

internal::ConvGeometry conv_geometry(const Model& model, const LinearLayer& l) {
  const Node& n = model.nodes()[l.node];
  const OpSpec s = n.op->spec();
  const Shape x = sample_shape(model.values()[n.inputs[0]]);
  const Shape& w = model.params()[l.weight].shape;
  const auto& st = s.get_ints("strides");
  const auto& di = s.get_ints("dilations");
  const auto& pa = s.get_ints("pads");
  internal::ConvGeometry g;
  g.C = w[1];
  g.H = x[1];
  g.W = x[2];
  g.kh = w[2];
  g.kw = w[3];
  g.sh = st[0];
  g.sw = st[1];
  g.dh = di[0];
  g.dw = di[1];
  g.pt = pa[0];
  g.pl = pa[1];
  g.pb = pa[2];
  g.pr = pa[3];
  g.Ho = internal::window_out_size(g.H, g.kh, g.sh, g.dh, g.pt, g.pb, false);
  g.Wo = internal::window_out_size(g.W, g.kw, g.sw, g.dw, g.pl, g.pr, false);
  return g;
}

std::string layer_name(const std::string& weight) {
  const auto dot = weight.rfind('.');
  return dot == std::string::npos ? weight : weight.substr(0, dot);
}

bool is_param(const Model& m, int v) { return m.values()[v].kind == ValueKind::Parameter; }

}  // namespace

LinearLayers find_linear_layers(const Model& model) {
  LinearLayers r;
  const auto& vals = model.values();
  const auto& nodes = model.nodes();
  std::map<int, std::string> why;  // param -> reason it is not covered
  std::vector<bool> covered(model.params().size(), false);
  // Consumers of each value (to find the Add after a MatMul).
  std::vector<std::vector<int>> users(vals.size());
  for (size_t i = 0; i < nodes.size(); ++i)
    for (int v : nodes[i].inputs) users[v].push_back(static_cast<int>(i));

  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const std::string t = n.op->type();
    const std::string where = "node '" + n.name + "' (" + t + ")";
    bool any_param = false;
    for (int v : n.inputs) any_param = any_param || is_param(model, v);
    if (!any_param) continue;
    auto reject = [&](const std::string& reason) {
      for (int v : n.inputs)
        if (is_param(model, v) && !covered[vals[v].index] && !why.count(vals[v].index))
          why[vals[v].index] = where + " " + reason;
    };
    if (t != "Gemm" && t != "MatMul" && t != "Conv") {
      reject("is not a Linear, MatMul-with-weight or Conv layer");
      continue;
    }
    if (n.inputs.size() < 2 || is_param(model, n.inputs[0]) || !is_param(model, n.inputs[1])) {
      reject("does not take its weight as the second input of an activation");
      continue;
    }
    LinearLayer l;
    l.node = static_cast<int>(i);
    l.weight = vals[n.inputs[1]].index;
    l.name = layer_name(model.params()[l.weight].name);
    const Shape& w = model.params()[l.weight].shape;
    const Shape x = sample_shape(vals[n.inputs[0]]);
    const OpSpec spec = n.op->spec();
    if (t == "Gemm") {
      if (spec.get_bool("transA")) {
        reject("has transA = 1");
        continue;
      }
      l.kind = LinearLayer::Kind::Gemm;
      l.weight_in_out = !spec.get_bool("transB");
      l.alpha = spec.get_float("alpha");
      l.beta = spec.get_float("beta");
      l.in = l.weight_in_out ? w[0] : w[1];
      l.out = l.weight_in_out ? w[1] : w[0];
      if (n.inputs.size() > 2) {
        if (!is_param(model, n.inputs[2]) || numel(model.params()[vals[n.inputs[2]].index].shape) != l.out) {
          reject("has a bias that is not a parameter of shape [" + std::to_string(l.out) + "]");
          continue;
        }
        l.bias = vals[n.inputs[2]].index;
      }
    } else if (t == "MatMul") {
      if (w.size() != 2 || x.empty() || x.back() != w[0]) {
        reject("has a weight " + shape_str(w) + " that is not a 2-D [in, out] matrix");
        continue;
      }
      l.kind = LinearLayer::Kind::MatMul;
      l.weight_in_out = true;
      l.in = w[0];
      l.out = w[1];
      l.positions = numel(x) / l.in;
      // A bias added right after: MatMul -> Add(y, b) with b a parameter [out].
      if (users[n.output].size() == 1) {
        const int a = users[n.output][0];
        const Node& add = nodes[a];
        if (add.op->type() == "Add" && add.inputs.size() == 2 && add.inputs[0] == n.output &&
            is_param(model, add.inputs[1]) && model.params()[vals[add.inputs[1]].index].shape == Shape{l.out}) {
          l.bias = vals[add.inputs[1]].index;
          l.bias_node = a;
        }
      }
    } else {
      if (spec.get_int("group") != 1) {
        reject("is a grouped convolution (group = " + std::to_string(spec.get_int("group")) + ")");
        continue;
      }
      l.kind = LinearLayer::Kind::Conv;
      l.in = w[1] * w[2] * w[3];
      l.out = w[0];
      if (n.inputs.size() > 2) {
        if (!is_param(model, n.inputs[2])) {
          reject("has a constant bias");
          continue;
        }
        l.bias = vals[n.inputs[2]].index;
      }
      const auto g = conv_geometry(model, l);
      l.positions = g.Ho * g.Wo;
    }
    if (covered[l.weight] || (l.bias >= 0 && covered[l.bias])) {
      reject("shares its weight with another layer");
      continue;
    }
    l.params = {l.weight};
    if (l.bias >= 0) l.params.push_back(l.bias);
    std::sort(l.params.begin(), l.params.end());
    l.size = l.out * l.in_ext();
    for (int p : l.params) {
      covered[p] = true;
      why.erase(p);
    }
    r.layers.push_back(std::move(l));
  }
  for (size_t p = 0; p < model.params().size(); ++p)
    if (!covered[p])
      r.unsupported.push_back({static_cast<int>(p), why.count(static_cast<int>(p))
                                                         ? why[static_cast<int>(p)]
                                                         : "is not used by a supported layer"});
  return r;
}

template <class T>
Eigen::MatrixXd expand_layer_input(const Model& model, const LinearLayer& l, const T* x, std::int64_t n) {
  const std::int64_t rows = n * l.positions, in = l.in;
  Eigen::MatrixXd a(rows, l.in_ext());
  if (l.kind == LinearLayer::Kind::Conv) {
    const auto g = conv_geometry(model, l);
    const std::int64_t xs = g.C * g.H * g.W;
    std::vector<T> col(std::size_t(in * rows));
    internal::im2col(x, n, xs, g, col.data());  // [in, n Ho Wo]
    for (std::int64_t c = 0; c < in; ++c)
      for (std::int64_t r = 0; r < rows; ++r) a(r, c) = double(col[c * rows + r]);
  } else {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < in; ++c) a(r, c) = l.alpha * double(x[r * in + c]);
  }
  if (l.has_bias()) a.col(in).setConstant(l.beta);
  return a;
}

template <class T>
Eigen::MatrixXd expand_layer_output(const LinearLayer& l, const T* gy, std::int64_t n) {
  const std::int64_t T_ = l.positions, out = l.out;
  Eigen::MatrixXd g(n * T_, out);
  if (l.kind == LinearLayer::Kind::Conv) {
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t o = 0; o < out; ++o)
        for (std::int64_t t = 0; t < T_; ++t) g(s * T_ + t, o) = double(gy[(s * out + o) * T_ + t]);
  } else {
    for (std::int64_t r = 0; r < n * T_; ++r)
      for (std::int64_t o = 0; o < out; ++o) g(r, o) = double(gy[r * out + o]);
  }
  return g;
}

template <class T>
void expand_layer_input_to(const Model& model, const LinearLayer& l, const T* x, std::int64_t n,
                           Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& a) {
  const std::int64_t rows = n * l.positions, in = l.in;
  a.resize(rows, l.in_ext());
  if (l.kind == LinearLayer::Kind::Conv) {
    const auto g = conv_geometry(model, l);
    internal::im2col(x, n, g.C * g.H * g.W, g, a.data());  // [in, n Ho Wo] row-major = a's first columns
  } else {
    const T alpha = T(l.alpha);
    for (std::int64_t c = 0; c < in; ++c)
      for (std::int64_t r = 0; r < rows; ++r) a(r, c) = l.alpha == 1 ? x[r * in + c] : alpha * x[r * in + c];
  }
  if (l.has_bias()) a.col(in).setConstant(T(l.beta));
}

template <class T>
void expand_layer_output_to(const LinearLayer& l, const T* gy, std::int64_t n,
                            Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& g) {
  const std::int64_t T_ = l.positions, out = l.out;
  g.resize(n * T_, out);
  if (l.kind == LinearLayer::Kind::Conv) {
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t o = 0; o < out; ++o) {
        const T* src = gy + (s * out + o) * T_;
        std::copy(src, src + T_, &g(s * T_, o));
      }
  } else {
    for (std::int64_t r = 0; r < n * T_; ++r)
      for (std::int64_t o = 0; o < out; ++o) g(r, o) = gy[r * out + o];
  }
}

Eigen::MatrixXd layer_matrix(const Model& model, const LinearLayer& l, const double* v) {
  Eigen::MatrixXd W(l.out, l.in_ext());
  std::int64_t off = 0;
  for (int p : l.params) {
    const double* s = v + off;
    if (p == l.weight) {
      for (std::int64_t o = 0; o < l.out; ++o)
        for (std::int64_t i = 0; i < l.in; ++i) W(o, i) = l.weight_in_out ? s[i * l.out + o] : s[o * l.in + i];
    } else {
      for (std::int64_t o = 0; o < l.out; ++o) W(o, l.in) = s[o];
    }
    off += model.params()[p].size;
  }
  return W;
}

void layer_vector(const Model& model, const LinearLayer& l, const Eigen::MatrixXd& W, double* v) {
  std::int64_t off = 0;
  for (int p : l.params) {
    double* s = v + off;
    if (p == l.weight) {
      for (std::int64_t o = 0; o < l.out; ++o)
        for (std::int64_t i = 0; i < l.in; ++i) (l.weight_in_out ? s[i * l.out + o] : s[o * l.in + i]) = W(o, i);
    } else {
      for (std::int64_t o = 0; o < l.out; ++o) s[o] = W(o, l.in);
    }
    off += model.params()[p].size;
  }
}

#define CURV_INST(T)                                                                                      \
  template Eigen::MatrixXd expand_layer_input<T>(const Model&, const LinearLayer&, const T*, std::int64_t); \
  template Eigen::MatrixXd expand_layer_output<T>(const LinearLayer&, const T*, std::int64_t);          \
  template void expand_layer_input_to<T>(const Model&, const LinearLayer&, const T*, std::int64_t,        \
                                         Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>&);              \
  template void expand_layer_output_to<T>(const LinearLayer&, const T*, std::int64_t,                     \
                                          Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>&);
CURV_INST(float)
CURV_INST(double)
#undef CURV_INST

}  // namespace curv
