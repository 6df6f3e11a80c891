// BatchNormalization in inference mode (running statistics) and training mode (batch statistics).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/op_checks.h"
#include "src/core/internal/row_norm.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::RowNorm;

// Inputs X [N, C, ...], scale, B, mean, var [C]. Running statistics are constants: they get no
// gradient. Inference: y = scale (x - mean) / sqrt(var + eps) + B, bilinear in (x, scale).
// Training: rows are channels over (N, spatial); y = scale xh + B with RowNorm statistics.
class BatchNormOp final : public OpImpl<BatchNormOp> {
 public:
  BatchNormOp(double eps, bool training) : m_eps(eps), m_train(training) {
    if (!(eps >= 0 && std::isfinite(eps)))
      internal::attr_fail(type(), "epsilon must be finite and >= 0, got " + format_attr(eps));
  }
  std::string type() const override { return "BatchNormalization"; }
  OpSpec spec() const override { return OpSpec(type()).set_float("epsilon", m_eps).set_bool("training", m_train); }
  int arity() const override { return 5; }
  bool mixes_batch() const override { return m_train; }
  double epsilon() const { return m_eps; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 5) throw std::invalid_argument("BatchNormalization: expected X, scale, B, mean, var");
    const Shape& x = in[0];
    if (x.size() < 2) throw std::invalid_argument("BatchNormalization: X " + shape_str(x) + " must be [N, C, ...]");
    for (int i = 1; i < 5; ++i)
      if (in[i] != Shape{x[1]})
        throw std::invalid_argument("BatchNormalization: input " + std::to_string(i) + " " + shape_str(in[i]) +
                                    " must be [" + std::to_string(x[1]) + "] for X " + shape_str(x));
    return x;
  }
  static void dims(const Shape& x, std::int64_t& N, std::int64_t& C, std::int64_t& S) {
    N = x[0];
    C = x[1];
    S = numel(Shape(x.begin() + 2, x.end()));
  }
  // [N, C, S] <-> rows [C, N*S]
  template <class T>
  static void to_rows(const T* x, std::int64_t N, std::int64_t C, std::int64_t S, T* rows) {
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t ch = 0; ch < C; ++ch) std::copy_n(x + (n * C + ch) * S, S, rows + ch * N * S + n * S);
  }
  template <class T>
  static void from_rows(const T* rows, std::int64_t N, std::int64_t C, std::int64_t S, T* x) {
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t ch = 0; ch < C; ++ch) std::copy_n(rows + ch * N * S + n * S, S, x + (n * C + ch) * S);
  }

  // inference: saved[0] = inv std [C]; training: saved[0] = batch mean [C], saved[1] = unbiased
  // batch var [C], saved[2] = xh rows [C, N*S], saved[3] = r [C].
  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    std::int64_t N, C, S;
    dims(c.in[0].shape, N, C, S);
    const T *x = c.in[0].data, *gam = c.in[1].data, *bet = c.in[2].data;
    auto& st = c.state->saved;
    if (!m_train) {
      const T *mu = c.in[3].data, *var = c.in[4].data;
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t ch = 0; ch < C; ++ch) {
          const T inv = T(1) / std::sqrt(var[ch] + T(m_eps));
          const T* xp = x + (n * C + ch) * S;
          T* yp = out.data + (n * C + ch) * S;
          for (std::int64_t i = 0; i < S; ++i) yp[i] = gam[ch] * (xp[i] - mu[ch]) * inv + bet[ch];
        }
      return;
    }
    const std::int64_t M = N * S;
    if (M < 2)
      throw std::invalid_argument("BatchNormalization (training): needs more than one value per channel, got " +
                                  shape_str(c.in[0].shape));
    st.resize(4);
    st[0].resize({C});
    st[1].resize({C});
    st[2].resize({C, M});
    st[3].resize({C});
    std::vector<T> rows(C * M), yrows(C * M);
    to_rows(x, N, C, S, rows.data());
    for (std::int64_t ch = 0; ch < C; ++ch) {
      T mean, var;
      T* xh = st[2].data() + ch * M;
      RowNorm<T>::forward(rows.data() + ch * M, M, T(m_eps), xh, st[3].data()[ch], mean, var);
      st[0].data()[ch] = mean;
      st[1].data()[ch] = var * T(M) / T(M - 1);
      for (std::int64_t i = 0; i < M; ++i) yrows[ch * M + i] = gam[ch] * xh[i] + bet[ch];
    }
    from_rows(yrows.data(), N, C, S, out.data);
  }

  template <class T>
  T inv_std(const OpCtx<T>& c, std::int64_t ch) const {
    return T(1) / std::sqrt(c.in[4].data[ch] + T(m_eps));
  }

  template <class T>
  void bwd(OpCtx<T>& c) const {
    std::int64_t N, C, S;
    dims(c.in[0].shape, N, C, S);
    for (size_t i = 1; i < c.gin.size(); ++i)
      if (c.gin[i].data) c.gin[i].set_zero();
    const T* gam = c.in[1].data;
    if (!m_train) {
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t ch = 0; ch < C; ++ch) {
          const T inv = inv_std(c, ch);
          const T* g = c.gout.data + (n * C + ch) * S;
          const T* xp = c.in[0].data + (n * C + ch) * S;
          T sg = 0, sgx = 0;
          for (std::int64_t i = 0; i < S; ++i) sg += g[i], sgx += g[i] * (xp[i] - c.in[3].data[ch]) * inv;
          if (c.gin[1].data) c.gin[1].data[ch] += sgx;
          if (c.gin[2].data) c.gin[2].data[ch] += sg;
          if (c.gin[0].data) {
            T* gx = c.gin[0].data + (n * C + ch) * S;
            for (std::int64_t i = 0; i < S; ++i) gx[i] = gam[ch] * inv * g[i];
          }
        }
      return;
    }
    const auto& st = c.state->saved;
    const std::int64_t M = N * S;
    std::vector<T> grows(C * M), gx(C * M);
    to_rows(c.gout.data, N, C, S, grows.data());
    std::vector<T> h(M);
    for (std::int64_t ch = 0; ch < C; ++ch) {
      const T* g = grows.data() + ch * M;
      const T* xh = st[2].data() + ch * M;
      if (c.gin[1].data) c.gin[1].data[ch] = M * RowNorm<T>::mean_prod(g, xh, M);
      if (c.gin[2].data) c.gin[2].data[ch] = M * RowNorm<T>::mean(g, M);
      for (std::int64_t i = 0; i < M; ++i) h[i] = gam[ch] * g[i];
      RowNorm<T>::backward(xh, st[3].data()[ch], h.data(), M, gx.data() + ch * M);
    }
    if (c.gin[0].data) from_rows(gx.data(), N, C, S, c.gin[0].data);
  }

  template <class T>
  void tan(OpCtx<T>& c) const {
    std::int64_t N, C, S;
    dims(c.in[0].shape, N, C, S);
    const std::int64_t n = c.in[0].size();
    const T* gam = c.in[1].data;
    if (!m_train) {
      for (std::int64_t j = 0; j < c.k; ++j)
        for (std::int64_t b = 0; b < N; ++b)
          for (std::int64_t ch = 0; ch < C; ++ch) {
            const T inv = inv_std(c, ch);
            const std::int64_t off = (b * C + ch) * S;
            T* ty = c.tout.data + j * n + off;
            const T* xp = c.in[0].data + off;
            const T* tx = c.tin[0].data ? c.tin[0].data + j * n + off : nullptr;
            const T tg = c.tin[1].data ? c.tin[1].data[j * C + ch] : T(0);
            const T tb = c.tin[2].data ? c.tin[2].data[j * C + ch] : T(0);
            for (std::int64_t i = 0; i < S; ++i)
              ty[i] = (tx ? gam[ch] * inv * tx[i] : T(0)) + tg * (xp[i] - c.in[3].data[ch]) * inv + tb;
          }
      return;
    }
    const auto& st = c.state->saved;
    const std::int64_t M = N * S;
    std::vector<T> trows(C * M), yrows(C * M), txh(M);
    for (std::int64_t j = 0; j < c.k; ++j) {
      if (c.tin[0].data) to_rows(c.tin[0].data + j * n, N, C, S, trows.data());
      for (std::int64_t ch = 0; ch < C; ++ch) {
        const T* xh = st[2].data() + ch * M;
        T* y = yrows.data() + ch * M;
        const T tg = c.tin[1].data ? c.tin[1].data[j * C + ch] : T(0);
        const T tb = c.tin[2].data ? c.tin[2].data[j * C + ch] : T(0);
        if (c.tin[0].data) {
          RowNorm<T>::tangent(xh, st[3].data()[ch], trows.data() + ch * M, M, txh.data());
          for (std::int64_t i = 0; i < M; ++i) y[i] = gam[ch] * txh[i] + tg * xh[i] + tb;
        } else {
          for (std::int64_t i = 0; i < M; ++i) y[i] = tg * xh[i] + tb;
        }
      }
      from_rows(yrows.data(), N, C, S, c.tout.data + j * n);
    }
  }

  template <class T>
  void bwdt(OpCtx<T>& c) const {
    std::int64_t N, C, S;
    dims(c.in[0].shape, N, C, S);
    const std::int64_t n = c.in[0].size();
    const T* gam = c.in[1].data;
    const bool so = c.second_order;
    for (auto& t : c.tgin)
      if (t.data) t.set_zero();
    if (!m_train) {
      for (std::int64_t j = 0; j < c.k; ++j)
        for (std::int64_t b = 0; b < N; ++b)
          for (std::int64_t ch = 0; ch < C; ++ch) {
            const T inv = inv_std(c, ch);
            const std::int64_t off = (b * C + ch) * S;
            const T* g = c.gout.data + off;
            const T* tg = c.tgout.data + j * n + off;
            const T* xp = c.in[0].data + off;
            const T* tx = (so && c.tin[0].data) ? c.tin[0].data + j * n + off : nullptr;
            const T tgam = (so && c.tin[1].data) ? c.tin[1].data[j * C + ch] : T(0);
            if (c.tgin[0].data) {
              T* r = c.tgin[0].data + j * n + off;
              for (std::int64_t i = 0; i < S; ++i) r[i] = gam[ch] * inv * tg[i] + tgam * inv * g[i];
            }
            if (c.tgin[1].data) {
              T s = 0;
              for (std::int64_t i = 0; i < S; ++i)
                s += tg[i] * (xp[i] - c.in[3].data[ch]) * inv + (tx ? g[i] * tx[i] * inv : T(0));
              c.tgin[1].data[j * C + ch] += s;
            }
            if (c.tgin[2].data) {
              T s = 0;
              for (std::int64_t i = 0; i < S; ++i) s += tg[i];
              c.tgin[2].data[j * C + ch] += s;
            }
          }
      return;
    }
    const auto& st = c.state->saved;
    const std::int64_t M = N * S;
    std::vector<T> grows(C * M), tgrows(C * M), txrows, out(C * M), h(M), th(M), txh(M), scratch;
    to_rows(c.gout.data, N, C, S, grows.data());
    if (so && c.tin[0].data) txrows.resize(C * M);
    for (std::int64_t j = 0; j < c.k; ++j) {
      to_rows(c.tgout.data + j * n, N, C, S, tgrows.data());
      if (!txrows.empty()) to_rows(c.tin[0].data + j * n, N, C, S, txrows.data());
      for (std::int64_t ch = 0; ch < C; ++ch) {
        const T* g = grows.data() + ch * M;
        const T* tg = tgrows.data() + ch * M;
        const T* xh = st[2].data() + ch * M;
        const T rr = st[3].data()[ch];
        const T* tx = txrows.empty() ? nullptr : txrows.data() + ch * M;
        const T tgam = (so && c.tin[1].data) ? c.tin[1].data[j * C + ch] : T(0);
        if (c.tgin[1].data) {
          T s = M * RowNorm<T>::mean_prod(tg, xh, M);
          if (tx) {
            RowNorm<T>::tangent(xh, rr, tx, M, txh.data());
            s += M * RowNorm<T>::mean_prod(g, txh.data(), M);
          }
          c.tgin[1].data[j * C + ch] = s;
        }
        if (c.tgin[2].data) c.tgin[2].data[j * C + ch] = M * RowNorm<T>::mean(tg, M);
        for (std::int64_t i = 0; i < M; ++i) {
          h[i] = gam[ch] * g[i];
          th[i] = gam[ch] * tg[i] + tgam * g[i];
        }
        RowNorm<T>::backward_tangent(xh, rr, h.data(), th.data(), tx, M, out.data() + ch * M, scratch);
      }
      if (c.tgin[0].data) from_rows(out.data(), N, C, S, c.tgin[0].data + j * n);
    }
  }

 private:
  double m_eps;
  bool m_train;
};

}  // namespace

OpPtr make_batch_norm(double epsilon, bool training) { return std::make_shared<BatchNormOp>(epsilon, training); }
OpPtr batch_norm_mode(const Op& op, bool training) {
  const auto* bn = dynamic_cast<const BatchNormOp*>(&op);
  return bn ? std::make_shared<BatchNormOp>(bn->epsilon(), training) : nullptr;
}

}  // namespace curv
