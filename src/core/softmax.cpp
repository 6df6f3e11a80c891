// Softmax and LogSoftmax along one axis.
// GCC 12 reports its own AVX-512 intrinsics (inlined from Eigen's vectorized float exp) as reading
// an uninitialized value, in builds without -O3 (the sanitizer build): a false positive of those
// headers, silenced for this file as in loss.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "src/core/internal/axis.h"
#include "src/core/internal/lane_sum.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::lane_sum;
using internal::lane_sums;
using internal::norm_axis;

// Row kernels work on contiguous rows of length L. Every sum over a row runs in 16 interleaved
// partial sums, added up in a fixed order (internal/lane_sum.h): the loops vectorize (a single serial chain of adds made
// Softmax ~10% of a small transformer's Hessian product), and a row's result depends only on its
// values, never on the thread count, the batch or the row's position.
constexpr int kLanes = 16;

template <class T>
T row_max(const T* x, std::int64_t L) {
  T acc[kLanes];
  std::fill(acc, acc + kLanes, -std::numeric_limits<T>::infinity());
  std::int64_t t = 0;
  for (; t + kLanes <= L; t += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = x[t + l] > acc[l] ? x[t + l] : acc[l];
  for (int l = 0; t < L; ++t, ++l) acc[l] = x[t] > acc[l] ? x[t] : acc[l];
  T m = acc[0];
  for (int l = 1; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

// e[t] = exp(x[t] - m). In float, Eigen's vectorized exp (within 1 ulp) on chunks of 16 padded to
// whole packets, so that an element's bits do not depend on where it sits in its row; exponents
// below -87 (results below 1.7e-38, denormal or zero in float) give exactly 0, as -inf gives, which
// keeps denormals out of the kernels; NaN stays NaN. In double, std::exp.
template <class T>
void exp_shifted(const T* x, T m, std::int64_t L, T* e) {
  if constexpr (std::is_same_v<T, float>) {
    using Chunk = Eigen::Array<float, 16, 1>;
    alignas(64) float d[16], r[16];
    for (std::int64_t t = 0; t < L; t += 16) {
      const int w = static_cast<int>(std::min<std::int64_t>(16, L - t));
      for (int l = 0; l < w; ++l) d[l] = x[t + l] - m;
      std::fill(d + w, d + 16, 0.0f);
      const Eigen::Map<const Chunk, Eigen::Aligned64> D(d);
      Eigen::Map<Chunk, Eigen::Aligned64> R(r);
      R = D.exp();
      for (int l = 0; l < w; ++l) e[t + l] = std::isnan(d[l]) ? d[l] : d[l] < -87.0f ? 0.0f : r[l];
    }
  } else {
    for (std::int64_t t = 0; t < L; ++t) e[t] = std::exp(x[t] - m);
  }
}

// Along one axis, as [outer, L, inner]. With y = softmax(x):
//   y' = y (x' - <y,x'>),  g_x = y (g - <y,g>),  g_x' = y (g' - <y,g'>) + y' (g - <y,g>) - y <y',g>
// LogSoftmax, y = x - lse(x), p = exp(y):
//   y' = x' - <p,x'>,  g_x = g - p sum(g),  g_x' = g' - p sum(g') - p' sum(g),  p' = p y'
// Softmax's forward is exp(x - max) / sum, as PyTorch computes it; LogSoftmax's x - max - log(sum).
class SoftmaxOp final : public OpImpl<SoftmaxOp> {
 public:
  SoftmaxOp(std::int64_t axis, bool log) : m_axis(axis), m_log(log) {}
  std::string type() const override { return m_log ? "LogSoftmax" : "Softmax"; }
  bool derivatives_read_output() const override { return true; }
  OpSpec spec() const override { return OpSpec(type()).set_int("axis", m_axis); }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    norm_axis(m_axis, in.at(0).size(), type());
    return in[0];
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    Rows<T> r(layout(c.in[0].shape), 1);
    r.run({c.in[0].data}, out.data, [&](const T* const* in, T* y, T*) {
      const T* x = in[0];
      const T m = row_max(x, r.L);
      exp_shifted(x, m, r.L, y);
      const T z = lane_sum<T>(r.L, [y](std::int64_t t) { return y[t]; });
      if (m_log) {
        const T lz = std::log(z);
        for (std::int64_t t = 0; t < r.L; ++t) y[t] = x[t] - m - lz;
      } else {
        for (std::int64_t t = 0; t < r.L; ++t) y[t] /= z;
      }
    });
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    Rows<T> r(layout(c.in[0].shape), m_log ? 1 : 0);
    r.run({c.out.data, c.gout.data}, c.gin[0].data, [&](const T* const* in, T* gx, T* p) {
      const T *y = in[0], *g = in[1];
      const std::int64_t L = r.L;
      if (m_log) {
        probs(y, L, p);
        const T d = lane_sum<T>(L, [g](std::int64_t t) { return g[t]; });
        for (std::int64_t t = 0; t < L; ++t) gx[t] = g[t] - p[t] * d;
      } else {
        const T d = lane_sum<T>(L, [y, g](std::int64_t t) { return y[t] * g[t]; });
        for (std::int64_t t = 0; t < L; ++t) gx[t] = y[t] * (g[t] - d);
      }
    });
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    if (!c.tin[0].data) return c.tout.set_zero();
    const std::int64_t n = c.in[0].size();
    Rows<T> r(layout(c.in[0].shape), m_log ? 1 : 0);
    for (std::int64_t j = 0; j < c.k; ++j)
      r.run({c.out.data, c.tin[0].data + j * n}, c.tout.data + j * n, [&](const T* const* in, T* ty, T* p) {
        const T *y = in[0], *tx = in[1];
        const std::int64_t L = r.L;
        if (m_log) {
          probs(y, L, p);
          const T d = lane_sum<T>(L, [p, tx](std::int64_t t) { return p[t] * tx[t]; });
          for (std::int64_t t = 0; t < L; ++t) ty[t] = tx[t] - d;
        } else {
          const T d = lane_sum<T>(L, [y, tx](std::int64_t t) { return y[t] * tx[t]; });
          for (std::int64_t t = 0; t < L; ++t) ty[t] = y[t] * (tx[t] - d);
        }
      });
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const std::int64_t n = c.in[0].size();
    const bool so = c.second_order && c.tin[0].data;
    Rows<T> r(layout(c.in[0].shape), m_log ? 1 : 0);
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tx = so ? c.tin[0].data + j * n : nullptr;
      r.run({c.out.data, c.gout.data, c.tgout.data + j * n, tx}, c.tgin[0].data + j * n,
            [&](const T* const* in, T* res, T* p) {
              const T *y = in[0], *g = in[1], *tg = in[2], *dx = in[3];
              const std::int64_t L = r.L;
              if (m_log) {
                probs(y, L, p);
                if (!so) {
                  const T stg = lane_sum<T>(L, [tg](std::int64_t t) { return tg[t]; });
                  for (std::int64_t t = 0; t < L; ++t) res[t] = tg[t] - p[t] * stg;
                  return;
                }
                const auto sums = lane_sums<T, 3>(L, [tg, g, p, dx](std::int64_t t, T* v) {
                  v[0] = tg[t];
                  v[1] = g[t];
                  v[2] = p[t] * dx[t];
                });
                const T stg = sums[0], sg = sums[1], pdx = sums[2];
                for (std::int64_t t = 0; t < L; ++t) res[t] = tg[t] - p[t] * stg;
                for (std::int64_t t = 0; t < L; ++t) res[t] -= p[t] * (dx[t] - pdx) * sg;  // p' sum(g)
              } else {
                if (!so) {
                  const T ytg = lane_sum<T>(L, [y, tg](std::int64_t t) { return y[t] * tg[t]; });
                  for (std::int64_t t = 0; t < L; ++t) res[t] = y[t] * (tg[t] - ytg);
                  return;
                }
                // <y,tg>, <y,g>, <y,dx> in one pass over the row (each the bits of its own lane_sum).
                // (Named copies, not a structured binding: clang before 16 cannot capture those.)
                const auto sums = lane_sums<T, 3>(L, [y, tg, g, dx](std::int64_t t, T* v) {
                  v[0] = y[t] * tg[t];
                  v[1] = y[t] * g[t];
                  v[2] = y[t] * dx[t];
                });
                const T ytg = sums[0], yg = sums[1], ytx = sums[2];
                const T typg = lane_sum<T>(L, [y, dx, g, ytx](std::int64_t t) { return y[t] * (dx[t] - ytx) * g[t]; });
                for (std::int64_t t = 0; t < L; ++t)
                  res[t] = y[t] * (tg[t] - ytg) + y[t] * (dx[t] - ytx) * (g[t] - yg) - y[t] * typg;
              }
            });
    }
  }

 private:
  struct Layout {
    std::int64_t outer, L, inner;
  };
  Layout layout(const Shape& s) const {
    const auto a = norm_axis(m_axis, s.size(), type());
    return {numel(Shape(s.begin(), s.begin() + a)), s[a], numel(Shape(s.begin() + a + 1, s.end()))};
  }
  // LogSoftmax's probabilities p = exp(y) of one row.
  template <class T>
  static void probs(const T* y, std::int64_t L, T* p) {
    exp_shifted(y, T(0), L, p);
  }

  // Runs a row kernel f(inputs, output row, scratch row) over every row along the axis. Rows along
  // the last axis are used in place; others (inner > 1) are gathered into contiguous scratch rows
  // and the output row scattered back. A null input stays null.
  template <class T>
  struct Rows {
    Rows(const Layout& l, int scratch) : L(l.L), m_l(l), m_scratch(scratch) {}
    template <class F>
    void run(std::initializer_list<const T*> inputs, T* out, F&& f) {
      const T* in[4] = {};
      const int ni = static_cast<int>(inputs.size());
      std::copy(inputs.begin(), inputs.end(), in);
      const bool strided = m_l.inner != 1;
      m_buf.resize(std::size_t(L * (m_scratch + (strided ? ni + 1 : 0))));
      T* scratch = m_buf.data();
      T* rows = scratch + m_scratch * L;  // gathered inputs, then the output row
      for (std::int64_t o = 0; o < m_l.outer; ++o)
        for (std::int64_t i = 0; i < m_l.inner; ++i) {
          const std::int64_t b = o * L * m_l.inner + i;
          if (!strided) {
            const T* at[4] = {};
            for (int k = 0; k < ni; ++k) at[k] = in[k] ? in[k] + b : nullptr;
            f(at, out + b, scratch);
            continue;
          }
          const T* at[4] = {};
          for (int k = 0; k < ni; ++k) {
            if (!in[k]) continue;
            T* dst = rows + k * L;
            for (std::int64_t t = 0; t < L; ++t) dst[t] = in[k][b + t * m_l.inner];
            at[k] = dst;
          }
          T* o_row = rows + ni * L;
          f(at, o_row, scratch);
          for (std::int64_t t = 0; t < L; ++t) out[b + t * m_l.inner] = o_row[t];
        }
    }
    const std::int64_t L;

   private:
    Layout m_l;
    int m_scratch;
    std::vector<T> m_buf;
  };

  std::int64_t m_axis;
  bool m_log;
};

}  // namespace

OpPtr make_softmax(std::int64_t axis, bool log) { return std::make_shared<SoftmaxOp>(axis, log); }

}  // namespace curv
