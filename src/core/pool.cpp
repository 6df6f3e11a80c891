// 2-D pooling: MaxPool (argmax saved by forward), AveragePool and GlobalAveragePool.
//
// MaxPool is piecewise linear: y = x[argmax], so y' = x'[argmax], g_x = scatter(g_y), and the VJP
// tangent has no second-order part. Average pooling is a fixed linear map y = P x (window sums over
// a divisor, as PyTorch), with g_x = P^T g_y.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "src/core/internal/im2col.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::ConvGeometry;
using internal::window_out_size;

class PoolOp final : public OpImpl<PoolOp> {
 public:
  enum class Kind { Max, Average, GlobalAverage };
  PoolOp(Kind kind, const Pool2dAttrs& a) : m_kind(kind), m_a(a) {
    if (kind == Kind::GlobalAverage) return;
    internal::check_window_attrs(type(), a.kernel, a.stride, a.dilation, a.pads, true);
    if (kind == Kind::Average && (a.dilation[0] != 1 || a.dilation[1] != 1))
      internal::attr_fail(type(), "dilations " + internal::list_str(a.dilation) + " are not supported");
  }
  std::string type() const override {
    return m_kind == Kind::Max ? "MaxPool" : m_kind == Kind::Average ? "AveragePool" : "GlobalAveragePool";
  }
  OpSpec spec() const override {
    OpSpec s(type());
    if (m_kind == Kind::GlobalAverage) return s;
    return s.set_ints("kernel", {m_a.kernel.begin(), m_a.kernel.end()})
        .set_ints("strides", {m_a.stride.begin(), m_a.stride.end()})
        .set_ints("dilations", {m_a.dilation.begin(), m_a.dilation.end()})
        .set_ints("pads", {m_a.pads.begin(), m_a.pads.end()})
        .set_bool("ceil_mode", m_a.ceil_mode)
        .set_bool("count_include_pad", m_a.count_include_pad);
  }
  int arity() const override { return 1; }
  bool tangent_reads_output_grad() const override { return false; }  // piecewise linear

  ConvGeometry geometry(const Shape& x) const {
    ConvGeometry g{};
    g.C = x[1];
    g.H = x[2];
    g.W = x[3];
    if (m_kind == Kind::GlobalAverage) {
      g.kh = g.H, g.kw = g.W, g.sh = g.sw = 1, g.dh = g.dw = 1, g.Ho = g.Wo = 1;
      return g;
    }
    g.kh = m_a.kernel[0], g.kw = m_a.kernel[1], g.sh = m_a.stride[0], g.sw = m_a.stride[1];
    g.dh = m_a.dilation[0], g.dw = m_a.dilation[1];
    g.pt = m_a.pads[0], g.pl = m_a.pads[1], g.pb = m_a.pads[2], g.pr = m_a.pads[3];
    g.Ho = window_out_size(g.H, g.kh, g.sh, g.dh, g.pt, g.pb, m_a.ceil_mode);
    g.Wo = window_out_size(g.W, g.kw, g.sw, g.dw, g.pl, g.pr, m_a.ceil_mode);
    return g;
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 1 || in[0].size() != 4)
      throw std::invalid_argument(type() + ": input " + (in.empty() ? "?" : shape_str(in[0])) + " must be 4-D NCHW");
    ConvGeometry g = geometry(in[0]);
    if (g.Ho <= 0 || g.Wo <= 0) throw std::invalid_argument(type() + ": input " + shape_str(in[0]) + " too small");
    const Shape out{in[0][0], in[0][1], g.Ho, g.Wo};
    checked_numel(out, type() + ": output");
    // A max over no input element is undefined (possible only with dilations): reject the geometry.
    if (m_kind == Kind::Max && (internal::has_empty_window(g.H, g.kh, g.sh, g.dh, g.pt, g.Ho) ||
                                internal::has_empty_window(g.W, g.kw, g.sw, g.dw, g.pl, g.Wo)))
      throw std::invalid_argument(type() + ": a window of kernel_shape " + internal::list_str(m_a.kernel) +
                                  " with dilations " + internal::list_str(m_a.dilation) +
                                  " covers no element of the input " + shape_str(in[0]));
    return out;
  }

  // The taps i in [lo, hi) of a window starting at a (taps a + i d, i < k) that lie in [0, n).
  static std::pair<std::int64_t, std::int64_t> taps(std::int64_t a, std::int64_t k, std::int64_t d, std::int64_t n) {
    const std::int64_t lo = a >= 0 ? 0 : std::min(k, (-a + d - 1) / d);
    const std::int64_t hi = a >= n ? lo : std::clamp<std::int64_t>((n - 1 - a) / d + 1, lo, k);
    return {lo, hi};
  }

  // Every output's window: its rows [h0, h1) and columns [w0, w1) within the plane (dilation 1; empty
  // when h0 >= h1 or w0 >= w1), and average pooling's divisor (PyTorch's).
  template <class F>
  void windows(const ConvGeometry& g, F&& f) const {
    for (std::int64_t oh = 0; oh < g.Ho; ++oh)
      for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
        std::int64_t h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
        // h1 = min(h0 + kh, H + pb) without forming h0 + kh (a kernel may be close to 2^62)
        std::int64_t h1 = h0 + std::min(g.kh, g.H + g.pb - h0), w1 = w0 + std::min(g.kw, g.W + g.pr - w0);
        const std::int64_t pool = (h1 - h0) * (w1 - w0);
        h0 = std::max<std::int64_t>(h0, 0), w0 = std::max<std::int64_t>(w0, 0);
        h1 = std::min(h1, g.H), w1 = std::min(w1, g.W);
        const std::int64_t cnt = (m_kind == Kind::Average && m_a.count_include_pad) ? pool : (h1 - h0) * (w1 - w0);
        f(oh * g.Wo + ow, h0, h1, w0, w1, cnt);
      }
  }

  // Linear map y = P x on `planes` planes of [H, W] -> [Ho, Wo]; adjoint when `adjoint`.
  template <class T>
  void avg_apply(const T* x, T* y, std::int64_t planes, const ConvGeometry& g, bool adjoint) const {
    const std::int64_t hw = g.H * g.W, ohw = g.Ho * g.Wo;
    if (adjoint) std::fill(y, y + planes * hw, T(0));
    for (std::int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * (adjoint ? ohw : hw);
      T* yp = y + p * (adjoint ? hw : ohw);
      windows(
          g, [&](std::int64_t o, std::int64_t h0, std::int64_t h1, std::int64_t w0, std::int64_t w1, std::int64_t cnt) {
            const T inv = cnt > 0 ? T(1) / T(cnt) : T(0);
            if (!adjoint) {
              T s = 0;
              for (std::int64_t h = h0; h < h1; ++h)
                for (std::int64_t w = w0; w < w1; ++w) s += xp[h * g.W + w];
              yp[o] = s * inv;
            } else {
              const T v = xp[o] * inv;
              for (std::int64_t h = h0; h < h1; ++h)
                for (std::int64_t w = w0; w < w1; ++w) yp[h * g.W + w] += v;
            }
          });
    }
  }

  // MaxPool without dilation: a window is the rectangle windows() gives, found with no division
  // (taps() divides by the dilation two to four times per output), and its taps are compared with
  // selects instead of a branch that ties and random data mispredict. The same comparisons in the
  // same order as the general loop (row by row, the first tap taken, then a tap that is strictly
  // greater), so the same maximum and argmax (tested against a direct loop).
  template <class T>
  void max_undilated(const T* x, T* y, std::int64_t* idx, std::int64_t planes, const ConvGeometry& g) const {
    const std::int64_t hw = g.H * g.W, ohw = g.Ho * g.Wo;
    for (std::int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * hw;
      windows(g, [&](std::int64_t o, std::int64_t h0, std::int64_t h1, std::int64_t w0, std::int64_t w1, std::int64_t) {
        o += p * ohw;
        if (h0 >= h1 || w0 >= w1) {  // no tap in the plane: the general loop's -inf and -1
          y[o] = -std::numeric_limits<T>::infinity();
          idx[o] = -1;
          return;
        }
        T best = xp[h0 * g.W + w0];
        std::int64_t arg = h0 * g.W + w0;
        for (std::int64_t h = h0; h < h1; ++h)
          for (std::int64_t w = h == h0 ? w0 + 1 : w0; w < w1; ++w) {
            const T v = xp[h * g.W + w];
            const bool gt = v > best;
            best = gt ? v : best;
            arg = gt ? h * g.W + w : arg;
          }
        y[o] = best;
        idx[o] = p * hw + arg;
      });
    }
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const ConvGeometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C;
    if (m_kind != Kind::Max) return avg_apply(c.in[0].data, out.data, planes, g, false);
    // MaxPool: remember the argmax (flat input index) of every output for the derivative kernels.
    auto& idx = c.state->index;
    idx.resize(out.size());  // every entry written below
    if (g.dh == 1 && g.dw == 1) return max_undilated(c.in[0].data, out.data, idx.data(), planes, g);
    std::fill(idx.begin(), idx.end(), -1);
    const std::int64_t hw = g.H * g.W, ohw = g.Ho * g.Wo;
    for (std::int64_t p = 0; p < planes; ++p)
      for (std::int64_t oh = 0; oh < g.Ho; ++oh)
        for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
          T best = -std::numeric_limits<T>::infinity();
          std::int64_t arg = -1;
          const auto [ki0, ki1] = taps(oh * g.sh - g.pt, g.kh, g.dh, g.H);
          const auto [kj0, kj1] = taps(ow * g.sw - g.pl, g.kw, g.dw, g.W);
          for (std::int64_t ki = ki0; ki < ki1; ++ki) {
            const std::int64_t h = oh * g.sh - g.pt + ki * g.dh;
            for (std::int64_t kj = kj0; kj < kj1; ++kj) {
              const std::int64_t w = ow * g.sw - g.pl + kj * g.dw;
              const T v = c.in[0].data[p * hw + h * g.W + w];
              if (v > best || arg < 0) best = v, arg = p * hw + h * g.W + w;
            }
          }
          const std::int64_t o = p * ohw + oh * g.Wo + ow;
          out.data[o] = best;
          idx[o] = arg;
        }
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const ConvGeometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C;
    if (m_kind != Kind::Max) return avg_apply(c.gout.data, c.gin[0].data, planes, g, true);
    c.gin[0].set_zero();
    const auto& idx = c.state->index;
    for (size_t o = 0; o < idx.size(); ++o)
      if (idx[o] >= 0) c.gin[0].data[idx[o]] += c.gout.data[o];
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    if (!c.tin[0].data) return c.tout.set_zero();
    const ConvGeometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C, ni = c.in[0].size(), no = planes * g.Ho * g.Wo;
    if (m_kind != Kind::Max) return avg_apply(c.tin[0].data, c.tout.data, c.k * planes, g, false);
    const auto& idx = c.state->index;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t o = 0; o < no; ++o)
        c.tout.data[j * no + o] = idx[o] >= 0 ? c.tin[0].data[j * ni + idx[o]] : T(0);
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const ConvGeometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C, ni = c.in[0].size(), no = planes * g.Ho * g.Wo;
    if (m_kind != Kind::Max) return avg_apply(c.tgout.data, c.tgin[0].data, c.k * planes, g, true);
    c.tgin[0].set_zero();
    const auto& idx = c.state->index;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t o = 0; o < no; ++o)
        if (idx[o] >= 0) c.tgin[0].data[j * ni + idx[o]] += c.tgout.data[j * no + o];
  }

 private:
  Kind m_kind;
  Pool2dAttrs m_a;
};

}  // namespace

OpPtr make_max_pool(const Pool2dAttrs& a) { return std::make_shared<PoolOp>(PoolOp::Kind::Max, a); }
OpPtr make_average_pool(const Pool2dAttrs& a) { return std::make_shared<PoolOp>(PoolOp::Kind::Average, a); }
OpPtr make_global_average_pool() { return std::make_shared<PoolOp>(PoolOp::Kind::GlobalAverage, Pool2dAttrs{}); }

}  // namespace curv
