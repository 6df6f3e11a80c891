// InstanceNormalization: each (sample, channel) row of X [N, C, D1, ...] normalized over its
// spatial positions, then scaled and shifted per channel (ONNX; PyTorch exports nn.GroupNorm and
// nn.InstanceNorm2d as it). With row r = (n, c) of length M = D1 * ...:
//   y = gamma_c xh + beta_c,  xh = (x - mean x) (var x + eps)^(-1/2)     (biased variance)
//   g_gamma_c = sum_{n, i} g xh,  g_beta_c = sum_{n, i} g,  g_x = RowNorm backward of h = gamma_c g
//   second order: g_x' takes h' = gamma_c g' + gamma_c' g and RowNorm's curvature term in x';
//   g_gamma_c' += sum g xh'.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/op_checks.h"
#include "src/core/internal/row_norm.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::RowNorm;

class InstanceNormOp final : public OpImpl<InstanceNormOp> {
 public:
  explicit InstanceNormOp(double eps) : m_eps(eps) {
    if (!(eps >= 0 && std::isfinite(eps)))
      internal::attr_fail(type(), "epsilon must be finite and >= 0, got " + format_attr(eps));
  }
  std::string type() const override { return "InstanceNormalization"; }
  OpSpec spec() const override { return OpSpec(type()).set_float("epsilon", m_eps); }
  int arity() const override { return 3; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    if (x.size() < 3)
      throw std::invalid_argument("InstanceNormalization: X " + shape_str(x) + " must be [N, C, D1, ...]");
    for (int i = 1; i <= 2; ++i)
      if (in.at(i) != Shape{x[1]})
        throw std::invalid_argument("InstanceNormalization: " + std::string(i == 1 ? "scale " : "B ") +
                                    shape_str(in[i]) + " must be [C] for X " + shape_str(x));
    return x;
  }

  // saved[0] = xh [R*M], saved[1] = r [R], rows R = N*C
  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    std::int64_t R, C, M;
    dims(c.in[0].shape, R, C, M);
    auto& st = c.state->saved;
    st.resize(2);
    st[0].resize({R, M});
    st[1].resize({R});
    for (std::int64_t r = 0; r < R; ++r) {
      T mean, var;
      T* xh = st[0].data() + r * M;
      RowNorm<T>::forward(c.in[0].data + r * M, M, T(m_eps), xh, st[1].data()[r], mean, var);
      const T gam = c.in[1].data[r % C], bet = c.in[2].data[r % C];
      T* y = out.data + r * M;
      for (std::int64_t i = 0; i < M; ++i) y[i] = gam * xh[i] + bet;
    }
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    std::int64_t R, C, M;
    dims(c.in[0].shape, R, C, M);
    const auto& st = c.state->saved;
    for (int i = 1; i <= 2; ++i)
      if (c.gin[i].data) c.gin[i].set_zero();
    std::vector<T> h(M);
    for (std::int64_t r = 0; r < R; ++r) {
      const T* g = c.gout.data + r * M;
      const T* xh = st[0].data() + r * M;
      if (c.gin[1].data) c.gin[1].data[r % C] += dot(g, xh, M);
      if (c.gin[2].data) c.gin[2].data[r % C] += sum(g, M);
      if (c.gin[0].data) {
        const T gam = c.in[1].data[r % C];
        for (std::int64_t i = 0; i < M; ++i) h[i] = gam * g[i];
        RowNorm<T>::backward(xh, st[1].data()[r], h.data(), M, c.gin[0].data + r * M);
      }
    }
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    std::int64_t R, C, M;
    dims(c.in[0].shape, R, C, M);
    const auto& st = c.state->saved;
    const std::int64_t n = R * M;
    std::vector<T> txh(M);
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t r = 0; r < R; ++r) {
        T* ty = c.tout.data + j * n + r * M;
        const T* xh = st[0].data() + r * M;
        const T tgam = c.tin[1].data ? c.tin[1].data[j * C + r % C] : T(0);
        const T tbet = c.tin[2].data ? c.tin[2].data[j * C + r % C] : T(0);
        if (c.tin[0].data) {
          const T gam = c.in[1].data[r % C];
          RowNorm<T>::tangent(xh, st[1].data()[r], c.tin[0].data + j * n + r * M, M, txh.data());
          for (std::int64_t i = 0; i < M; ++i) ty[i] = gam * txh[i] + tgam * xh[i] + tbet;
        } else {
          for (std::int64_t i = 0; i < M; ++i) ty[i] = tgam * xh[i] + tbet;
        }
      }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    std::int64_t R, C, M;
    dims(c.in[0].shape, R, C, M);
    const auto& st = c.state->saved;
    const std::int64_t n = R * M;
    const bool so = c.second_order;
    for (auto& t : c.tgin)
      if (t.data) t.set_zero();
    std::vector<T> h(M), th(M), txh(M), scratch;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t r = 0; r < R; ++r) {
        const std::int64_t ch = r % C;
        const T* g = c.gout.data + r * M;
        const T* tg = c.tgout.data + j * n + r * M;
        const T* xh = st[0].data() + r * M;
        const T rr = st[1].data()[r];
        const T* tx = (so && c.tin[0].data) ? c.tin[0].data + j * n + r * M : nullptr;
        const T tgam = (so && c.tin[1].data) ? c.tin[1].data[j * C + ch] : T(0);
        if (c.tgin[1].data) {  // g_gamma' = sum g' xh + g xh'
          T acc = dot(tg, xh, M);
          if (tx) {
            RowNorm<T>::tangent(xh, rr, tx, M, txh.data());
            acc += dot(g, txh.data(), M);
          }
          c.tgin[1].data[j * C + ch] += acc;
        }
        if (c.tgin[2].data) c.tgin[2].data[j * C + ch] += sum(tg, M);
        if (c.tgin[0].data) {
          const T gam = c.in[1].data[ch];
          for (std::int64_t i = 0; i < M; ++i) {
            h[i] = gam * g[i];
            th[i] = gam * tg[i] + tgam * g[i];
          }
          RowNorm<T>::backward_tangent(xh, rr, h.data(), th.data(), tx, M, c.tgin[0].data + j * n + r * M, scratch);
        }
      }
  }

 private:
  static void dims(const Shape& x, std::int64_t& R, std::int64_t& C, std::int64_t& M) {
    C = x[1];
    R = x[0] * C;
    M = numel(Shape(x.begin() + 2, x.end()));
  }
  template <class T>
  static T dot(const T* a, const T* b, std::int64_t M) {
    double s = 0;
    for (std::int64_t i = 0; i < M; ++i) s += static_cast<double>(a[i]) * b[i];
    return static_cast<T>(s);
  }
  template <class T>
  static T sum(const T* a, std::int64_t M) {
    double s = 0;
    for (std::int64_t i = 0; i < M; ++i) s += a[i];
    return static_cast<T>(s);
  }

  double m_eps;
};

}  // namespace

OpPtr make_instance_norm(double epsilon) { return std::make_shared<InstanceNormOp>(epsilon); }

}  // namespace curv
