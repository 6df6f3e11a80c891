// LayerNormalization over the trailing axes [axis, rank).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/axis.h"
#include "src/core/internal/op_checks.h"
#include "src/core/internal/row_norm.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::norm_axis;
using internal::RowNorm;

class LayerNormOp final : public OpImpl<LayerNormOp> {
 public:
  LayerNormOp(std::int64_t axis, double eps) : m_axis(axis), m_eps(eps) {
    if (!(eps >= 0 && std::isfinite(eps)))
      internal::attr_fail(type(), "epsilon must be finite and >= 0, got " + format_attr(eps));
  }
  std::string type() const override { return "LayerNormalization"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("axis", m_axis).set_float("epsilon", m_eps); }
  int arity() const override { return -1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > 3)
      throw std::invalid_argument("LayerNormalization: expected X, scale and optional B");
    const Shape& x = in[0];
    const auto a = norm_axis(m_axis, x.size(), "LayerNormalization");
    const std::int64_t M = numel(Shape(x.begin() + a, x.end()));
    for (size_t i = 1; i < in.size(); ++i)
      if (numel(in[i]) != M)
        throw std::invalid_argument("LayerNormalization: " + std::string(i == 1 ? "scale " : "bias ") +
                                    shape_str(in[i]) + " does not match normalized dims of " + shape_str(x));
    return x;
  }
  void dims(const Shape& x, std::int64_t& R, std::int64_t& M) const {
    const auto a = norm_axis(m_axis, x.size(), "LayerNormalization");
    R = numel(Shape(x.begin(), x.begin() + a));
    M = numel(Shape(x.begin() + a, x.end()));
  }

  // saved[0] = xh [R*M], saved[1] = r [R]
  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    std::int64_t R, M;
    dims(c.in[0].shape, R, M);
    auto& st = c.state->saved;
    st.resize(2);
    st[0].resize({R, M});
    st[1].resize({R});
    const T* gam = c.in[1].data;
    const T* bet = c.in.size() == 3 ? c.in[2].data : nullptr;
    for (std::int64_t r = 0; r < R; ++r) {
      T mean, var;
      T* xh = st[0].data() + r * M;
      RowNorm<T>::forward(c.in[0].data + r * M, M, T(m_eps), xh, st[1].data()[r], mean, var);
      T* y = out.data + r * M;
      for (std::int64_t i = 0; i < M; ++i) y[i] = gam[i] * xh[i] + (bet ? bet[i] : T(0));
    }
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    std::int64_t R, M;
    dims(c.in[0].shape, R, M);
    const auto& st = c.state->saved;
    const T* gam = c.in[1].data;
    for (size_t i = 1; i < c.gin.size(); ++i)
      if (c.gin[i].data) c.gin[i].set_zero();
    std::vector<T> h(M);
    for (std::int64_t r = 0; r < R; ++r) {
      const T* g = c.gout.data + r * M;
      const T* xh = st[0].data() + r * M;
      if (c.gin[1].data)
        for (std::int64_t i = 0; i < M; ++i) c.gin[1].data[i] += g[i] * xh[i];
      if (c.gin.size() == 3 && c.gin[2].data)
        for (std::int64_t i = 0; i < M; ++i) c.gin[2].data[i] += g[i];
      if (c.gin[0].data) {
        for (std::int64_t i = 0; i < M; ++i) h[i] = gam[i] * g[i];
        RowNorm<T>::backward(xh, st[1].data()[r], h.data(), M, c.gin[0].data + r * M);
      }
    }
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    std::int64_t R, M;
    dims(c.in[0].shape, R, M);
    const auto& st = c.state->saved;
    const T* gam = c.in[1].data;
    const std::int64_t n = R * M;
    std::vector<T> txh(M);
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t r = 0; r < R; ++r) {
        T* ty = c.tout.data + j * n + r * M;
        const T* xh = st[0].data() + r * M;
        if (c.tin[0].data) {
          RowNorm<T>::tangent(xh, st[1].data()[r], c.tin[0].data + j * n + r * M, M, txh.data());
          for (std::int64_t i = 0; i < M; ++i) ty[i] = gam[i] * txh[i];
        } else {
          std::fill(ty, ty + M, T(0));
        }
        if (c.tin[1].data)
          for (std::int64_t i = 0; i < M; ++i) ty[i] += c.tin[1].data[j * M + i] * xh[i];
        if (c.in.size() == 3 && c.tin[2].data)
          for (std::int64_t i = 0; i < M; ++i) ty[i] += c.tin[2].data[j * M + i];
      }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    std::int64_t R, M;
    dims(c.in[0].shape, R, M);
    const auto& st = c.state->saved;
    const T* gam = c.in[1].data;
    const std::int64_t n = R * M;
    const bool so = c.second_order;
    for (auto& t : c.tgin)
      if (t.data) t.set_zero();
    // Rows outer, directions inner: what depends on the primal gradient alone (h = gamma g and its
    // two row means) is computed once per row, and xh' once per row and direction.
    std::vector<T> h(M), th(M), txh(M);
    for (std::int64_t r = 0; r < R; ++r) {
      const T* g = c.gout.data + r * M;
      const T* xh = st[0].data() + r * M;
      const T rr = st[1].data()[r];
      typename RowNorm<T>::HSums hs{};
      if (c.tgin[0].data) {
        for (std::int64_t i = 0; i < M; ++i) h[i] = gam[i] * g[i];
        hs = RowNorm<T>::h_sums(xh, h.data(), M);
      }
      for (std::int64_t j = 0; j < c.k; ++j) {
        const T* tg = c.tgout.data + j * n + r * M;
        const T* tx = (so && c.tin[0].data) ? c.tin[0].data + j * n + r * M : nullptr;
        const T* tgam = (so && c.tin[1].data) ? c.tin[1].data + j * M : nullptr;
        const bool need_txh = tx && (c.tgin[0].data || c.tgin[1].data);
        const T a = need_txh ? RowNorm<T>::tangent(xh, rr, tx, M, txh.data()) : T(0);
        if (c.tgin[1].data) {  // g_gamma' = sum g' xh + g xh'
          T* o = c.tgin[1].data + j * M;
          for (std::int64_t i = 0; i < M; ++i) o[i] += tg[i] * xh[i];
          if (tx)
            for (std::int64_t i = 0; i < M; ++i) o[i] += g[i] * txh[i];
        }
        if (c.tgin.size() == 3 && c.tgin[2].data)
          for (std::int64_t i = 0; i < M; ++i) c.tgin[2].data[j * M + i] += tg[i];
        if (c.tgin[0].data) {
          for (std::int64_t i = 0; i < M; ++i) th[i] = gam[i] * tg[i] + (tgam ? tgam[i] * g[i] : T(0));
          RowNorm<T>::backward_tangent(xh, rr, h.data(), hs, th.data(), tx ? txh.data() : nullptr, a, M,
                                       c.tgin[0].data + j * n + r * M);
        }
      }
    }
  }

 private:
  std::int64_t m_axis;
  double m_eps;
};

}  // namespace

OpPtr make_layer_norm(std::int64_t axis, double epsilon) { return std::make_shared<LayerNormOp>(axis, epsilon); }

}  // namespace curv
