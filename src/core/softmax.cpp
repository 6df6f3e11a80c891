// Softmax and LogSoftmax along one axis.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/axis.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::norm_axis;

// Along one axis, as [outer, L, inner]. With y = softmax(x):
//   y' = y (x' - <y,x'>),  g_x = y (g - <y,g>),  g_x' = y (g' - <y,g'>) + y' (g - <y,g>) - y <y',g>
// LogSoftmax, y = x - lse(x), p = exp(y):
//   y' = x' - <p,x'>,  g_x = g - p sum(g),  g_x' = g' - p sum(g') - p' sum(g),  p' = p y'
class SoftmaxOp final : public OpImpl<SoftmaxOp> {
 public:
  SoftmaxOp(std::int64_t axis, bool log) : m_axis(axis), m_log(log) {}
  std::string type() const override { return m_log ? "LogSoftmax" : "Softmax"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("axis", m_axis); }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    norm_axis(m_axis, in.at(0).size(), type());
    return in[0];
  }
  struct Layout {
    std::int64_t outer, L, inner;
  };
  Layout layout(const Shape& s) const {
    const auto a = norm_axis(m_axis, s.size(), type());
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

}  // namespace

OpPtr make_softmax(std::int64_t axis, bool log) { return std::make_shared<SoftmaxOp>(axis, log); }

}  // namespace curv
