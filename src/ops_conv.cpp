// Conv2d (stride, padding, dilation, groups) via im2col + GEMM, and 2-D pooling.
//
// Per sample n and group g, with col(X) the [Cg*kh*kw, Ho*Wo] patch matrix:
//   Y = W col(X) + b                      W: [Og, Cg*kh*kw]
//   g_X = col^T(W^T g_Y),  g_W = sum_n g_Y col(X)^T,  g_b = sum g_Y
//   Y'  = W col(X') + W' col(X) + b'
//   g_X' = col^T(W^T g_Y' + W'^T g_Y),  g_W' = sum_n g_Y' col(X)^T + g_Y col(X')^T
// (the W', X' terms of the last line are the second-order part).
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "src/internal/gemm.h"
#include "src/ops.h"

namespace curv {
namespace {

using internal::gemm;

struct Geometry {
  std::int64_t C, H, W, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, Ho, Wo;
  bool identity_cols() const {  // 1x1, stride 1, no padding: col(X) is X itself
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && pb == 0 && pr == 0;
  }
};

std::int64_t out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                      std::int64_t p1, bool ceil_mode) {
  const std::int64_t span = in + p0 + p1 - ((k - 1) * d + 1);
  if (span < 0) return 0;
  std::int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p0) --o;  // last window must start inside the input or left pad
  return o;
}

// col: [C*kh*kw, Ho*Wo] for channels [c0, c0+C) of one sample x: [Ctot, H, W].
template <class T>
void im2col(const T* x, const Geometry& g, T* col) {
  const std::int64_t HW = g.Ho * g.Wo;
  for (std::int64_t c = 0; c < g.C; ++c)
    for (std::int64_t ki = 0; ki < g.kh; ++ki)
      for (std::int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * HW;
        const T* xc = x + c * g.H * g.W;
        for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
          const std::int64_t ih = oh * g.sh - g.pt + ki * g.dh;
          T* r = row + oh * g.Wo;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = xc + ih * g.W;
          for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
            const std::int64_t iw = ow * g.sw - g.pl + kj * g.dw;
            r[ow] = (iw >= 0 && iw < g.W) ? xr[iw] : T(0);
          }
        }
      }
}

// x += col^T(col): the adjoint of im2col.
template <class T>
void col2im_add(const T* col, const Geometry& g, T* x) {
  const std::int64_t HW = g.Ho * g.Wo;
  for (std::int64_t c = 0; c < g.C; ++c)
    for (std::int64_t ki = 0; ki < g.kh; ++ki)
      for (std::int64_t kj = 0; kj < g.kw; ++kj) {
        const T* row = col + ((c * g.kh + ki) * g.kw + kj) * HW;
        T* xc = x + c * g.H * g.W;
        for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
          const std::int64_t ih = oh * g.sh - g.pt + ki * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.Wo;
          T* xr = xc + ih * g.W;
          for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
            const std::int64_t iw = ow * g.sw - g.pl + kj * g.dw;
            if (iw >= 0 && iw < g.W) xr[iw] += r[ow];
          }
        }
      }
}

class ConvOp final : public OpImpl<ConvOp> {
 public:
  explicit ConvOp(const Conv2dAttrs& a) : m_a(a) {
    if (a.groups < 1) throw std::invalid_argument("Conv: groups must be >= 1");
  }
  std::string type() const override { return "Conv"; }
  std::string attributes() const override {
    return "k=" + std::to_string(m_a.kernel[0]) + "x" + std::to_string(m_a.kernel[1]) + " s=" +
           std::to_string(m_a.stride[0]) + "," + std::to_string(m_a.stride[1]) + " p=" + std::to_string(m_a.pads[0]) +
           "," + std::to_string(m_a.pads[1]) + "," + std::to_string(m_a.pads[2]) + "," + std::to_string(m_a.pads[3]) +
           (m_a.dilation[0] != 1 || m_a.dilation[1] != 1
                ? " d=" + std::to_string(m_a.dilation[0]) + "," + std::to_string(m_a.dilation[1])
                : "") +
           (m_a.groups != 1 ? " groups=" + std::to_string(m_a.groups) : "");
  }
  int arity() const override { return -1; }

  Geometry geometry(const Shape& x, const Shape& w) const {
    Geometry g;
    g.C = w[1];
    g.H = x[2];
    g.W = x[3];
    g.kh = w[2];
    g.kw = w[3];
    g.sh = m_a.stride[0];
    g.sw = m_a.stride[1];
    g.dh = m_a.dilation[0];
    g.dw = m_a.dilation[1];
    g.pt = m_a.pads[0];
    g.pl = m_a.pads[1];
    g.pb = m_a.pads[2];
    g.pr = m_a.pads[3];
    g.Ho = out_size(g.H, g.kh, g.sh, g.dh, g.pt, g.pb, false);
    g.Wo = out_size(g.W, g.kw, g.sw, g.dw, g.pl, g.pr, false);
    return g;
  }

  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > 3) throw std::invalid_argument("Conv: expected inputs X, W and optional B");
    const Shape &x = in[0], &w = in[1];
    if (x.size() != 4 || w.size() != 4)
      throw std::invalid_argument("Conv: X " + shape_str(x) + " and W " + shape_str(w) + " must be 4-D (NCHW)");
    if (x[1] != w[1] * m_a.groups || w[0] % m_a.groups != 0)
      throw std::invalid_argument("Conv: X " + shape_str(x) + " has " + std::to_string(x[1]) +
                                  " channels but W " + shape_str(w) + " with groups=" + std::to_string(m_a.groups) +
                                  " expects " + std::to_string(w[1] * m_a.groups));
    if ((m_a.kernel[0] != 0 && m_a.kernel[0] != w[2]) || (m_a.kernel[1] != 0 && m_a.kernel[1] != w[3]))
      throw std::invalid_argument("Conv: kernel_shape does not match W " + shape_str(w));
    if (in.size() == 3 && (in[2].size() != 1 || in[2][0] != w[0]))
      throw std::invalid_argument("Conv: bias " + shape_str(in[2]) + " must be [" + std::to_string(w[0]) + "]");
    Geometry g = geometry(x, w);
    if (g.Ho <= 0 || g.Wo <= 0)
      throw std::invalid_argument("Conv: input " + shape_str(x) + " is smaller than the kernel " + shape_str(w));
    return {x[0], w[0], g.Ho, g.Wo};
  }

  // Y_n (+)= W col(X_n) for one sample; `col` is scratch.
  template <class T>
  void conv_sample(const T* x, const T* w, T* y, const Geometry& g, std::int64_t O, std::vector<T>& col,
                   bool accumulate) const {
    const std::int64_t G = m_a.groups, Og = O / G, CKK = g.C * g.kh * g.kw, HW = g.Ho * g.Wo;
    for (std::int64_t gi = 0; gi < G; ++gi) {
      const T* xg = x + gi * g.C * g.H * g.W;
      const T* cp = xg;
      if (!g.identity_cols()) {
        col.resize(CKK * HW);
        im2col(xg, g, col.data());
        cp = col.data();
      }
      gemm(false, false, w + gi * Og * CKK, Og, CKK, cp, CKK, HW, y + gi * Og * HW, T(1), accumulate);
    }
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Geometry g = geometry(c.in[0].shape, c.in[1].shape);
    const std::int64_t N = c.in[0].dim(0), O = c.in[1].dim(0), HW = g.Ho * g.Wo, xs = c.in[0].size() / std::max<std::int64_t>(N, 1);
    std::vector<T> col;
    for (std::int64_t n = 0; n < N; ++n) {
      T* y = out.data + n * O * HW;
      conv_sample(c.in[0].data + n * xs, c.in[1].data, y, g, O, col, false);
      if (c.in.size() == 3) add_bias(c.in[2].data, y, O, HW);
    }
  }

  template <class T>
  static void add_bias(const T* b, T* y, std::int64_t O, std::int64_t HW) {
    for (std::int64_t o = 0; o < O; ++o) {
      T* r = y + o * HW;
      for (std::int64_t i = 0; i < HW; ++i) r[i] += b[o];
    }
  }
  template <class T>
  static void bias_grad_add(const T* gy, T* gb, std::int64_t O, std::int64_t HW) {
    for (std::int64_t o = 0; o < O; ++o) {
      T s = 0;
      const T* r = gy + o * HW;
      for (std::int64_t i = 0; i < HW; ++i) s += r[i];
      gb[o] += s;
    }
  }

  // gx_n += col^T(W^T gy_n)
  template <class T>
  void grad_x_sample(const T* gy, const T* w, T* gx, const Geometry& g, std::int64_t O, std::vector<T>& col) const {
    const std::int64_t G = m_a.groups, Og = O / G, CKK = g.C * g.kh * g.kw, HW = g.Ho * g.Wo;
    for (std::int64_t gi = 0; gi < G; ++gi) {
      T* gxg = gx + gi * g.C * g.H * g.W;
      if (g.identity_cols()) {
        gemm(true, false, w + gi * Og * CKK, Og, CKK, gy + gi * Og * HW, Og, HW, gxg, T(1), true);
      } else {
        col.resize(CKK * HW);
        gemm(true, false, w + gi * Og * CKK, Og, CKK, gy + gi * Og * HW, Og, HW, col.data(), T(1), false);
        col2im_add(col.data(), g, gxg);
      }
    }
  }
  // gw += gy_n col(x_n)^T
  template <class T>
  void grad_w_sample(const T* gy, const T* x, T* gw, const Geometry& g, std::int64_t O, std::vector<T>& col) const {
    const std::int64_t G = m_a.groups, Og = O / G, CKK = g.C * g.kh * g.kw, HW = g.Ho * g.Wo;
    for (std::int64_t gi = 0; gi < G; ++gi) {
      const T* xg = x + gi * g.C * g.H * g.W;
      const T* cp = xg;
      if (!g.identity_cols()) {
        col.resize(CKK * HW);
        im2col(xg, g, col.data());
        cp = col.data();
      }
      gemm(false, true, gy + gi * Og * HW, Og, HW, cp, CKK, HW, gw + gi * Og * CKK, T(1), true);
    }
  }

  template <class T>
  void bwd(OpCtx<T>& c) const {
    const Geometry g = geometry(c.in[0].shape, c.in[1].shape);
    const std::int64_t N = c.in[0].dim(0), O = c.in[1].dim(0), HW = g.Ho * g.Wo, xs = c.in[0].size() / std::max<std::int64_t>(N, 1);
    std::vector<T> col;
    for (auto& gi : c.gin)
      if (gi.data) gi.set_zero();
    for (std::int64_t n = 0; n < N; ++n) {
      const T* gy = c.gout.data + n * O * HW;
      if (c.gin[0].data) grad_x_sample(gy, c.in[1].data, c.gin[0].data + n * xs, g, O, col);
      if (c.gin[1].data) grad_w_sample(gy, c.in[0].data + n * xs, c.gin[1].data, g, O, col);
      if (c.in.size() == 3 && c.gin[2].data) bias_grad_add(gy, c.gin[2].data, O, HW);
    }
  }

  template <class T>
  void tan(OpCtx<T>& c) const {
    const Geometry g = geometry(c.in[0].shape, c.in[1].shape);
    const std::int64_t N = c.in[0].dim(0), O = c.in[1].dim(0), HW = g.Ho * g.Wo, xs = c.in[0].size() / std::max<std::int64_t>(N, 1);
    const std::int64_t k = c.k, ys = O * HW, wsz = c.in[1].size(), G = m_a.groups, Og = O / G,
                       CKK = g.C * g.kh * g.kw;
    std::vector<T> col, tmp;
    // W x': one conv over all k*N tangent samples.
    if (c.tin[0].data) {
      for (std::int64_t s = 0; s < k * N; ++s) conv_sample(c.tin[0].data + s * xs, c.in[1].data, c.tout.data + s * ys, g, O, col, false);
    } else {
      c.tout.set_zero();
    }
    // W' col(x): the k weight tangents stacked as one [k*Og, CKK] matrix per group.
    if (c.tin[1].data) {
      tmp.resize(k * Og * HW);
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t gi = 0; gi < G; ++gi) {
          const T* xg = c.in[0].data + n * xs + gi * g.C * g.H * g.W;
          const T* cp = xg;
          if (!g.identity_cols()) {
            col.resize(CKK * HW);
            im2col(xg, g, col.data());
            cp = col.data();
          }
          if (G == 1) {
            gemm(false, false, c.tin[1].data, k * Og, CKK, cp, CKK, HW, tmp.data(), T(1), false);
            for (std::int64_t j = 0; j < k; ++j) {
              T* y = c.tout.data + (j * N + n) * ys;
              const T* t = tmp.data() + j * Og * HW;
              for (std::int64_t i = 0; i < Og * HW; ++i) y[i] += t[i];
            }
          } else {
            for (std::int64_t j = 0; j < k; ++j)
              gemm(false, false, c.tin[1].data + j * wsz + gi * Og * CKK, Og, CKK, cp, CKK, HW,
                   c.tout.data + (j * N + n) * ys + gi * Og * HW, T(1), true);
          }
        }
    }
    if (c.in.size() == 3 && c.tin[2].data)
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t n = 0; n < N; ++n) add_bias(c.tin[2].data + j * O, c.tout.data + (j * N + n) * ys, O, HW);
  }

  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const Geometry g = geometry(c.in[0].shape, c.in[1].shape);
    const std::int64_t N = c.in[0].dim(0), O = c.in[1].dim(0), HW = g.Ho * g.Wo, xs = c.in[0].size() / std::max<std::int64_t>(N, 1);
    const std::int64_t k = c.k, ys = O * HW, wsz = c.in[1].size(), G = m_a.groups, Og = O / G,
                       CKK = g.C * g.kh * g.kw;
    const bool so = c.second_order;
    std::vector<T> col, stack;
    for (auto& t : c.tgin)
      if (t.data) t.set_zero();
    // g_X' = col^T(W^T g_Y' + W'^T g_Y)
    if (c.tgin[0].data) {
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t n = 0; n < N; ++n) {
          T* gx = c.tgin[0].data + (j * N + n) * xs;
          grad_x_sample(c.tgout.data + (j * N + n) * ys, c.in[1].data, gx, g, O, col);
          if (so && c.tin[1].data) grad_x_sample(c.gout.data + n * ys, c.tin[1].data + j * wsz, gx, g, O, col);
        }
    }
    if (c.tgin[1].data) {
      // g_W' += g_Y' col(X)^T: the k tangents of g_Y stacked as one [k*Og, HW] matrix.
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t gi = 0; gi < G; ++gi) {
          const T* xg = c.in[0].data + n * xs + gi * g.C * g.H * g.W;
          const T* cp = xg;
          if (!g.identity_cols()) {
            col.resize(CKK * HW);
            im2col(xg, g, col.data());
            cp = col.data();
          }
          if (G == 1) {
            stack.resize(k * Og * HW);
            for (std::int64_t j = 0; j < k; ++j)
              std::copy_n(c.tgout.data + (j * N + n) * ys, Og * HW, stack.data() + j * Og * HW);
            gemm(false, true, stack.data(), k * Og, HW, cp, CKK, HW, c.tgin[1].data, T(1), true);
          } else {
            for (std::int64_t j = 0; j < k; ++j)
              gemm(false, true, c.tgout.data + (j * N + n) * ys + gi * Og * HW, Og, HW, cp, CKK, HW,
                   c.tgin[1].data + j * wsz + gi * Og * CKK, T(1), true);
          }
        }
      // g_W' += g_Y col(X')^T
      if (so && c.tin[0].data)
        for (std::int64_t j = 0; j < k; ++j)
          for (std::int64_t n = 0; n < N; ++n)
            grad_w_sample(c.gout.data + n * ys, c.tin[0].data + (j * N + n) * xs, c.tgin[1].data + j * wsz, g, O,
                          col);
    }
    if (c.in.size() == 3 && c.tgin[2].data)
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t n = 0; n < N; ++n) bias_grad_add(c.tgout.data + (j * N + n) * ys, c.tgin[2].data + j * O, O, HW);
  }

 private:
  Conv2dAttrs m_a;
};

// ---------------------------------------------------------------- pooling
class PoolOp final : public OpImpl<PoolOp> {
 public:
  enum class Kind { Max, Average, GlobalAverage };
  PoolOp(Kind kind, const Pool2dAttrs& a) : m_kind(kind), m_a(a) {}
  std::string type() const override {
    return m_kind == Kind::Max ? "MaxPool" : m_kind == Kind::Average ? "AveragePool" : "GlobalAveragePool";
  }
  std::string attributes() const override {
    if (m_kind == Kind::GlobalAverage) return {};
    return "k=" + std::to_string(m_a.kernel[0]) + "x" + std::to_string(m_a.kernel[1]) + " s=" +
           std::to_string(m_a.stride[0]) + "," + std::to_string(m_a.stride[1]);
  }
  int arity() const override { return 1; }

  Geometry geometry(const Shape& x) const {
    Geometry g{};
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
    g.Ho = out_size(g.H, g.kh, g.sh, g.dh, g.pt, g.pb, m_a.ceil_mode);
    g.Wo = out_size(g.W, g.kw, g.sw, g.dw, g.pl, g.pr, m_a.ceil_mode);
    return g;
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 1 || in[0].size() != 4)
      throw std::invalid_argument(type() + ": input " + (in.empty() ? "?" : shape_str(in[0])) + " must be 4-D NCHW");
    Geometry g = geometry(in[0]);
    if (g.Ho <= 0 || g.Wo <= 0) throw std::invalid_argument(type() + ": input " + shape_str(in[0]) + " too small");
    return {in[0][0], in[0][1], g.Ho, g.Wo};
  }

  // Average pooling as a fixed linear map: for each output, the window and its divisor (PyTorch).
  template <class F>
  void avg_windows(const Geometry& g, F&& f) const {
    for (std::int64_t oh = 0; oh < g.Ho; ++oh)
      for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
        std::int64_t h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
        std::int64_t h1 = std::min(h0 + g.kh, g.H + g.pb), w1 = std::min(w0 + g.kw, g.W + g.pr);
        const std::int64_t pool = (h1 - h0) * (w1 - w0);
        h0 = std::max<std::int64_t>(h0, 0), w0 = std::max<std::int64_t>(w0, 0);
        h1 = std::min(h1, g.H), w1 = std::min(w1, g.W);
        const std::int64_t cnt = (m_kind == Kind::Average && m_a.count_include_pad) ? pool : (h1 - h0) * (w1 - w0);
        f(oh * g.Wo + ow, h0, h1, w0, w1, cnt);
      }
  }

  // Linear map y = P x on `planes` planes of [H, W] -> [Ho, Wo]; adjoint when `adjoint`.
  template <class T>
  void avg_apply(const T* x, T* y, std::int64_t planes, const Geometry& g, bool adjoint) const {
    const std::int64_t hw = g.H * g.W, ohw = g.Ho * g.Wo;
    if (adjoint) std::fill(y, y + planes * hw, T(0));
    for (std::int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * (adjoint ? ohw : hw);
      T* yp = y + p * (adjoint ? hw : ohw);
      avg_windows(g, [&](std::int64_t o, std::int64_t h0, std::int64_t h1, std::int64_t w0, std::int64_t w1,
                         std::int64_t cnt) {
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

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Geometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C;
    if (m_kind != Kind::Max) return avg_apply(c.in[0].data, out.data, planes, g, false);
    // MaxPool: remember the argmax (flat input index) of every output for the derivative kernels.
    auto& idx = c.state->index;
    idx.assign(out.size(), -1);
    const std::int64_t hw = g.H * g.W, ohw = g.Ho * g.Wo;
    for (std::int64_t p = 0; p < planes; ++p)
      for (std::int64_t oh = 0; oh < g.Ho; ++oh)
        for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
          T best = -std::numeric_limits<T>::infinity();
          std::int64_t arg = -1;
          for (std::int64_t ki = 0; ki < g.kh; ++ki) {
            const std::int64_t h = oh * g.sh - g.pt + ki * g.dh;
            if (h < 0 || h >= g.H) continue;
            for (std::int64_t kj = 0; kj < g.kw; ++kj) {
              const std::int64_t w = ow * g.sw - g.pl + kj * g.dw;
              if (w < 0 || w >= g.W) continue;
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
    const Geometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C;
    if (m_kind != Kind::Max) return avg_apply(c.gout.data, c.gin[0].data, planes, g, true);
    c.gin[0].set_zero();
    const auto& idx = c.state->index;
    for (size_t o = 0; o < idx.size(); ++o) c.gin[0].data[idx[o]] += c.gout.data[o];
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    if (!c.tin[0].data) return c.tout.set_zero();
    const Geometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C, ni = c.in[0].size(), no = planes * g.Ho * g.Wo;
    if (m_kind != Kind::Max) return avg_apply(c.tin[0].data, c.tout.data, c.k * planes, g, false);
    const auto& idx = c.state->index;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t o = 0; o < no; ++o) c.tout.data[j * no + o] = c.tin[0].data[j * ni + idx[o]];
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const Geometry g = geometry(c.in[0].shape);
    const std::int64_t planes = c.in[0].dim(0) * g.C, ni = c.in[0].size(), no = planes * g.Ho * g.Wo;
    if (m_kind != Kind::Max) return avg_apply(c.tgout.data, c.tgin[0].data, c.k * planes, g, true);
    c.tgin[0].set_zero();
    const auto& idx = c.state->index;
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t o = 0; o < no; ++o) c.tgin[0].data[j * ni + idx[o]] += c.tgout.data[j * no + o];
  }

 private:
  Kind m_kind;
  Pool2dAttrs m_a;
};

}  // namespace

OpPtr make_conv(const Conv2dAttrs& a) { return std::make_shared<ConvOp>(a); }
OpPtr make_max_pool(const Pool2dAttrs& a) { return std::make_shared<PoolOp>(PoolOp::Kind::Max, a); }
OpPtr make_average_pool(const Pool2dAttrs& a) {
  if (a.dilation[0] != 1 || a.dilation[1] != 1) throw std::invalid_argument("AveragePool: dilation is not supported");
  return std::make_shared<PoolOp>(PoolOp::Kind::Average, a);
}
OpPtr make_global_average_pool() { return std::make_shared<PoolOp>(PoolOp::Kind::GlobalAverage, Pool2dAttrs{}); }

}  // namespace curv
