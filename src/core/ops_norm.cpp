// Softmax, LogSoftmax, LayerNormalization, BatchNormalization (inference and training).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/ops.h"

namespace curv {
namespace {

std::int64_t axis_of(std::int64_t a, std::int64_t r, const char* op) {
  if (a < -r || a >= r) throw std::invalid_argument(std::string(op) + ": axis out of range");
  return a < 0 ? a + r : a;
}

// ---------------------------------------------------------------- softmax
// Along one axis, as [outer, L, inner]. With y = softmax(x):
//   y' = y (x' - <y,x'>),  g_x = y (g - <y,g>),  g_x' = y (g' - <y,g'>) + y' (g - <y,g>) - y <y',g>
// LogSoftmax, y = x - lse(x), p = exp(y):
//   y' = x' - <p,x'>,  g_x = g - p sum(g),  g_x' = g' - p sum(g') - p' sum(g),  p' = p y'
class SoftmaxOp final : public OpImpl<SoftmaxOp> {
 public:
  SoftmaxOp(std::int64_t axis, bool log) : m_axis(axis), m_log(log) {}
  std::string type() const override { return m_log ? "LogSoftmax" : "Softmax"; }
  std::string attributes() const override { return "axis=" + std::to_string(m_axis); }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    axis_of(m_axis, in.at(0).size(), m_log ? "LogSoftmax" : "Softmax");
    return in[0];
  }
  struct Layout {
    std::int64_t outer, L, inner;
  };
  Layout layout(const Shape& s) const {
    const auto a = axis_of(m_axis, s.size(), "Softmax");
    return {numel(Shape(s.begin(), s.begin() + a)), s[a], numel(Shape(s.begin() + a + 1, s.end()))};
  }
  template <class F>
  static void rows(const Layout& l, F&& f) {  // f(base offset, stride)
    for (std::int64_t o = 0; o < l.outer; ++o)
      for (std::int64_t i = 0; i < l.inner; ++i) f(o * l.L * l.inner + i, l.inner);
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Layout l = layout(c.in[0].shape);
    const T* x = c.in[0].data;
    rows(l, [&](std::int64_t b, std::int64_t s) {
      T m = x[b];
      for (std::int64_t t = 1; t < l.L; ++t) m = std::max(m, x[b + t * s]);
      T z = 0;
      for (std::int64_t t = 0; t < l.L; ++t) z += std::exp(x[b + t * s] - m);
      const T lz = std::log(z);
      for (std::int64_t t = 0; t < l.L; ++t) {
        const T v = x[b + t * s] - m - lz;
        out.data[b + t * s] = m_log ? v : std::exp(v);
      }
    });
  }
  // p = softmax probabilities from the output.
  template <class T>
  T prob(const T* y, std::int64_t i) const {
    return m_log ? std::exp(y[i]) : y[i];
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const Layout l = layout(c.in[0].shape);
    const T *y = c.out.data, *g = c.gout.data;
    T* gx = c.gin[0].data;
    rows(l, [&](std::int64_t b, std::int64_t s) {
      T d = 0;
      for (std::int64_t t = 0; t < l.L; ++t) d += m_log ? g[b + t * s] : y[b + t * s] * g[b + t * s];
      for (std::int64_t t = 0; t < l.L; ++t) {
        const std::int64_t i = b + t * s;
        gx[i] = m_log ? g[i] - prob(y, i) * d : y[i] * (g[i] - d);
      }
    });
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    if (!c.tin[0].data) return c.tout.set_zero();
    const Layout l = layout(c.in[0].shape);
    const std::int64_t n = c.in[0].size();
    const T* y = c.out.data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tx = c.tin[0].data + j * n;
      T* ty = c.tout.data + j * n;
      rows(l, [&](std::int64_t b, std::int64_t s) {
        T d = 0;
        for (std::int64_t t = 0; t < l.L; ++t) d += prob(y, b + t * s) * tx[b + t * s];
        for (std::int64_t t = 0; t < l.L; ++t) {
          const std::int64_t i = b + t * s;
          ty[i] = m_log ? tx[i] - d : y[i] * (tx[i] - d);
        }
      });
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const Layout l = layout(c.in[0].shape);
    const std::int64_t n = c.in[0].size();
    const T *y = c.out.data, *g = c.gout.data;
    const bool so = c.second_order && c.tin[0].data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tg = c.tgout.data + j * n;
      const T* tx = so ? c.tin[0].data + j * n : nullptr;
      T* r = c.tgin[0].data + j * n;
      rows(l, [&](std::int64_t b, std::int64_t s) {
        if (m_log) {
          T sg = 0, stg = 0, pdx = 0;
          for (std::int64_t t = 0; t < l.L; ++t) {
            const std::int64_t i = b + t * s;
            sg += g[i], stg += tg[i];
            if (so) pdx += prob(y, i) * tx[i];
          }
          for (std::int64_t t = 0; t < l.L; ++t) {
            const std::int64_t i = b + t * s;
            const T p = prob(y, i);
            r[i] = tg[i] - p * stg;
            if (so) r[i] -= p * (tx[i] - pdx) * sg;  // p' sum(g)
          }
        } else {
          T yg = 0, ytg = 0, ytx = 0;
          for (std::int64_t t = 0; t < l.L; ++t) {
            const std::int64_t i = b + t * s;
            yg += y[i] * g[i], ytg += y[i] * tg[i];
            if (so) ytx += y[i] * tx[i];
          }
          T typg = 0;  // <y', g>
          if (so)
            for (std::int64_t t = 0; t < l.L; ++t) {
              const std::int64_t i = b + t * s;
              typg += y[i] * (tx[i] - ytx) * g[i];
            }
          for (std::int64_t t = 0; t < l.L; ++t) {
            const std::int64_t i = b + t * s;
            r[i] = y[i] * (tg[i] - ytg);
            if (so) r[i] += y[i] * (tx[i] - ytx) * (g[i] - yg) - y[i] * typg;
          }
        }
      });
    }
  }

 private:
  std::int64_t m_axis;
  bool m_log;
};

// ---------------------------------------------------------------- normalization core
// One row x of length M (mean over the row):
//   xh = (x - mean x) r,  r = (var x + eps)^(-1/2)
//   xh' = r (x' - mean x' - xh mean(xh x'))
//   g_x = r (h - mean h - xh mean(h xh))                    h = dL/dxh
//   g_x' = r (h' - mean h' - xh mean(h' xh))
//          - r^2 mean(xh x') (h - mean h - xh mean(h xh)) - r (xh' mean(h xh) + xh mean(h xh'))
// LayerNorm rows are contiguous; BatchNorm (training) rows are channels gathered over N and HW.
// Sums over a row in a fixed order of 16 interleaved partial sums in double: vectorizable (a single
// serial chain made BatchNorm ~15% of a ResNet-20 training step) and identical for any thread count.
template <class T, class F>
double lane_sum(std::int64_t M, F&& term) {
  constexpr int L = 16;
  double acc[L] = {};
  std::int64_t i = 0;
  for (; i + L <= M; i += L)
    for (int l = 0; l < L; ++l) acc[l] += double(term(i + l));
  for (int l = 0; i < M; ++i, ++l) acc[l] += double(term(i));
  double s = 0;
  for (int l = 0; l < L; ++l) s += acc[l];
  return s;
}

template <class T>
struct RowNorm {
  static void forward(const T* x, std::int64_t M, T eps, T* xh, T& r, T& mean, T& var) {
    const double m = lane_sum<T>(M, [x](std::int64_t i) { return x[i]; }) / double(M);
    const T mt = T(m);
    const double v = lane_sum<T>(M, [x, mt](std::int64_t i) { return (x[i] - mt) * (x[i] - mt); }) / double(M);
    mean = mt;
    var = T(v);
    r = T(1.0 / std::sqrt(v + double(eps)));
    for (std::int64_t i = 0; i < M; ++i) xh[i] = (x[i] - mt) * r;
  }
  static T mean(const T* a, std::int64_t M) {
    return T(lane_sum<T>(M, [a](std::int64_t i) { return a[i]; }) / double(M));
  }
  static T mean_prod(const T* a, const T* b, std::int64_t M) {
    return T(lane_sum<T>(M, [a, b](std::int64_t i) { return a[i] * b[i]; }) / double(M));
  }
  static void tangent(const T* xh, T r, const T* tx, std::int64_t M, T* txh) {
    const T m1 = mean(tx, M), m2 = mean_prod(xh, tx, M);
    for (std::int64_t i = 0; i < M; ++i) txh[i] = r * (tx[i] - m1 - xh[i] * m2);
  }
  static void backward(const T* xh, T r, const T* h, std::int64_t M, T* gx) {
    const T m1 = mean(h, M), m2 = mean_prod(h, xh, M);
    for (std::int64_t i = 0; i < M; ++i) gx[i] = r * (h[i] - m1 - xh[i] * m2);
  }
  // th: h'; tx may be null (first-order part only). scratch: M elements.
  static void backward_tangent(const T* xh, T r, const T* h, const T* th, const T* tx, std::int64_t M, T* out,
                               std::vector<T>& scratch) {
    backward(xh, r, th, M, out);
    if (!tx) return;
    scratch.resize(M);
    T* txh = scratch.data();
    tangent(xh, r, tx, M, txh);
    const T a = mean_prod(xh, tx, M), mh = mean(h, M), mhx = mean_prod(h, xh, M), mhtx = mean_prod(h, txh, M);
    for (std::int64_t i = 0; i < M; ++i)
      out[i] += -r * r * a * (h[i] - mh - xh[i] * mhx) - r * (txh[i] * mhx + xh[i] * mhtx);
  }
};

// ---------------------------------------------------------------- LayerNormalization
class LayerNormOp final : public OpImpl<LayerNormOp> {
 public:
  LayerNormOp(std::int64_t axis, double eps) : m_axis(axis), m_eps(eps) {}
  std::string type() const override { return "LayerNormalization"; }
  std::string attributes() const override { return "axis=" + std::to_string(m_axis) + " epsilon=" + std::to_string(m_eps); }
  int arity() const override { return -1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > 3) throw std::invalid_argument("LayerNormalization: expected X, scale and optional B");
    const Shape& x = in[0];
    const auto a = axis_of(m_axis, x.size(), "LayerNormalization");
    const std::int64_t M = numel(Shape(x.begin() + a, x.end()));
    for (size_t i = 1; i < in.size(); ++i)
      if (numel(in[i]) != M)
        throw std::invalid_argument("LayerNormalization: " + std::string(i == 1 ? "scale " : "bias ") + shape_str(in[i]) +
                                    " does not match normalized dims of " + shape_str(x));
    return x;
  }
  void dims(const Shape& x, std::int64_t& R, std::int64_t& M) const {
    const auto a = axis_of(m_axis, x.size(), "LayerNormalization");
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
    std::vector<T> h(M), th(M), txh(M), scratch;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t r = 0; r < R; ++r) {
        const T* g = c.gout.data + r * M;
        const T* tg = c.tgout.data + j * n + r * M;
        const T* xh = st[0].data() + r * M;
        const T rr = st[1].data()[r];
        const T* tx = (so && c.tin[0].data) ? c.tin[0].data + j * n + r * M : nullptr;
        const T* tgam = (so && c.tin[1].data) ? c.tin[1].data + j * M : nullptr;
        if (c.tgin[1].data) {  // g_gamma' = sum g' xh + g xh'
          T* o = c.tgin[1].data + j * M;
          for (std::int64_t i = 0; i < M; ++i) o[i] += tg[i] * xh[i];
          if (tx) {
            RowNorm<T>::tangent(xh, rr, tx, M, txh.data());
            for (std::int64_t i = 0; i < M; ++i) o[i] += g[i] * txh[i];
          }
        }
        if (c.tgin.size() == 3 && c.tgin[2].data)
          for (std::int64_t i = 0; i < M; ++i) c.tgin[2].data[j * M + i] += tg[i];
        if (c.tgin[0].data) {
          for (std::int64_t i = 0; i < M; ++i) {
            h[i] = gam[i] * g[i];
            th[i] = gam[i] * tg[i] + (tgam ? tgam[i] * g[i] : T(0));
          }
          RowNorm<T>::backward_tangent(xh, rr, h.data(), th.data(), tx, M, c.tgin[0].data + j * n + r * M, scratch);
        }
      }
  }

 private:
  std::int64_t m_axis;
  double m_eps;
};

// ---------------------------------------------------------------- BatchNormalization
// Inputs X [N, C, ...], scale, B, mean, var [C]. Running statistics are constants: they get no
// gradient. Inference: y = scale (x - mean) / sqrt(var + eps) + B, bilinear in (x, scale).
// Training: rows are channels over (N, spatial); y = scale xh + B with RowNorm statistics.
class BatchNormOp final : public OpImpl<BatchNormOp> {
 public:
  BatchNormOp(double eps, bool training) : m_eps(eps), m_train(training) {}
  std::string type() const override { return "BatchNormalization"; }
  std::string attributes() const override {
    return std::string(m_train ? "training" : "inference") + " epsilon=" + std::to_string(m_eps);
  }
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
    if (M < 2) throw std::invalid_argument("BatchNormalization (training): needs more than one value per channel, got " + shape_str(c.in[0].shape));
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

OpPtr make_softmax(std::int64_t axis, bool log) { return std::make_shared<SoftmaxOp>(axis, log); }
OpPtr make_layer_norm(std::int64_t axis, double epsilon) { return std::make_shared<LayerNormOp>(axis, epsilon); }
OpPtr make_batch_norm(double epsilon, bool training) { return std::make_shared<BatchNormOp>(epsilon, training); }
OpPtr batch_norm_mode(const Op& op, bool training) {
  const auto* bn = dynamic_cast<const BatchNormOp*>(&op);
  return bn ? std::make_shared<BatchNormOp>(bn->epsilon(), training) : nullptr;
}

}  // namespace curv
