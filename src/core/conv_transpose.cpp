// ConvTranspose2d (stride, padding, output_padding, dilation, groups): the adjoint of Conv in X.
//
// X: [N, C, H, W], W: [C, O/groups, kh, kw], B: [O]; Y: [N, O, Ho, Wo] with
//   Ho = sh (H - 1) + output_padding_h + (kh - 1) dh + 1 - pt - pb   (likewise Wo).
// With col() the Conv patch matrix of an [O/groups, Ho, Wo] plane under the same kernel, strides,
// dilations and pads (its window count is exactly H x W because output_padding < stride), per
// sample and group (Wg: [Cg, Og*kh*kw]):
//   Y = col^T(Wg^T X) + b
//   g_X = Wg col(g_Y),  g_W = sum_n X col(g_Y)^T,  g_b = sum g_Y
//   Y' = col^T(Wg^T X' + Wg'^T X) + b'
//   g_X' = Wg col(g_Y') + Wg' col(g_Y),  g_W' = sum_n X col(g_Y')^T + X' col(g_Y)^T
// (the Wg', X' terms of the last line are the second-order part).
#include <algorithm>
#include <stdexcept>

#include "src/core/internal/gemm.h"
#include "src/core/internal/im2col.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::col2im_add;
using internal::ConvGeometry;
using internal::gemm;
using internal::im2col;

class ConvTransposeOp final : public OpImpl<ConvTransposeOp> {
 public:
  explicit ConvTransposeOp(const ConvTranspose2dAttrs& a) : m_a(a) {
    internal::check_window_attrs("ConvTranspose", a.kernel, a.stride, a.dilation, a.pads, false);
    if (a.groups < 1) internal::attr_fail("ConvTranspose", "group must be >= 1, got " + std::to_string(a.groups));
    for (int d = 0; d < 2; ++d)
      if (a.output_padding[d] < 0 || a.output_padding[d] >= a.stride[d])
        internal::attr_fail("ConvTranspose", "output_padding " + internal::list_str(a.output_padding) +
                                                 " must be >= 0 and smaller than strides " +
                                                 internal::list_str(a.stride));
  }
  std::string type() const override { return "ConvTranspose"; }
  OpSpec spec() const override {
    return OpSpec(type())
        .set_ints("kernel", {m_a.kernel.begin(), m_a.kernel.end()})
        .set_ints("strides", {m_a.stride.begin(), m_a.stride.end()})
        .set_ints("dilations", {m_a.dilation.begin(), m_a.dilation.end()})
        .set_ints("pads", {m_a.pads.begin(), m_a.pads.end()})
        .set_ints("output_padding", {m_a.output_padding.begin(), m_a.output_padding.end()})
        .set_int("group", m_a.groups);
  }
  int arity() const override { return -1; }

  // One output length: s (in - 1) + op + (k - 1) d + 1 - p0 - p1, overflow-checked.
  std::int64_t out_len(std::int64_t in, int d) const {
    const std::string what = "ConvTranspose output size";
    std::int64_t v = checked_mul(m_a.stride[d], in - 1, what);
    v = checked_add(v, m_a.output_padding[d], what);
    v = checked_add(v, checked_mul(m_a.kernel[d] - 1, m_a.dilation[d], what) + 1, what);
    return v - m_a.pads[d] - m_a.pads[d + 2];
  }
  // The Conv geometry over one output plane group: its windows are the H x W input positions.
  ConvGeometry geometry(const Shape& x, const Shape& w) const {
    ConvGeometry g;
    g.C = w[1];
    g.H = out_len(x[2], 0);
    g.W = out_len(x[3], 1);
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
    g.Ho = x[2];
    g.Wo = x[3];
    return g;
  }

  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > 3)
      throw std::invalid_argument("ConvTranspose: expected inputs X, W and optional B");
    const Shape &x = in[0], &w = in[1];
    if (x.size() != 4 || w.size() != 4)
      throw std::invalid_argument("ConvTranspose: X " + shape_str(x) + " and W " + shape_str(w) +
                                  " must be 4-D (NCHW)");
    if (x[1] != w[0] || x[1] % m_a.groups != 0)
      throw std::invalid_argument("ConvTranspose: X " + shape_str(x) + " has " + std::to_string(x[1]) +
                                  " channels but W " + shape_str(w) + " with group=" + std::to_string(m_a.groups) +
                                  " expects " + std::to_string(w[0]) + ", a multiple of the group count");
    if (m_a.kernel[0] != w[2] || m_a.kernel[1] != w[3])
      throw std::invalid_argument("ConvTranspose: kernel_shape " + internal::list_str(m_a.kernel) +
                                  " does not match W " + shape_str(w));
    const std::int64_t O = checked_mul(w[1], m_a.groups, "ConvTranspose output channels");
    if (in.size() == 3 && (in[2].size() != 1 || in[2][0] != O))
      throw std::invalid_argument("ConvTranspose: bias " + shape_str(in[2]) + " must be [" + std::to_string(O) + "]");
    if (x[2] < 1 || x[3] < 1) throw std::invalid_argument("ConvTranspose: X " + shape_str(x) + " is empty");
    const ConvGeometry g = geometry(x, w);
    if (g.H <= 0 || g.W <= 0)
      throw std::invalid_argument("ConvTranspose: pads " + internal::list_str(m_a.pads) + " leave no output for X " +
                                  shape_str(x) + " and W " + shape_str(w));
    const Shape out{x[0], O, g.H, g.W};
    checked_numel(out, "ConvTranspose: output");
    checked_numel({w[1], w[2], w[3], x[2], x[3]}, "ConvTranspose: patch matrix of X " + shape_str(x));
    return out;
  }

  struct Dims {
    ConvGeometry g;
    std::int64_t N, C, Cg, O, Og, G, OKK, HW, HoWo, xs, ys;
  };
  template <class T>
  Dims dims(const OpCtx<T>& c) const {
    Dims d;
    d.g = geometry(c.in[0].shape, c.in[1].shape);
    d.N = c.in[0].dim(0);
    d.C = c.in[0].dim(1);
    d.G = m_a.groups;
    d.Cg = d.C / d.G;
    d.Og = c.in[1].dim(1);
    d.O = d.Og * d.G;
    d.OKK = d.Og * d.g.kh * d.g.kw;
    d.HW = d.g.Ho * d.g.Wo;
    d.HoWo = d.g.H * d.g.W;
    d.xs = d.C * d.HW;
    d.ys = d.O * d.HoWo;
    return d;
  }

  // y (+)= col^T(Wg^T x) for every sample and group; w: [C, OKK], x: [N, C, HW], y: [N, O, HoWo].
  template <class T>
  static void scatter(const Dims& d, const T* w, const T* x, T* y, std::vector<T>& col) {
    col.resize(d.OKK * d.HW);
    for (std::int64_t n = 0; n < d.N; ++n)
      for (std::int64_t gi = 0; gi < d.G; ++gi) {
        gemm(true, false, w + gi * d.Cg * d.OKK, d.Cg, d.OKK, x + n * d.xs + gi * d.Cg * d.HW, d.Cg, d.HW, col.data(),
             T(1), false);
        col2im_add(col.data(), 1, d.ys, d.g, y + n * d.ys + gi * d.Og * d.HoWo);
      }
  }
  // For every sample and group with col = col(gy): gx (+)= Wg col and gw (+)= x col^T (null: skip).
  template <class T>
  static void gather(const Dims& d, const T* gy, const T* w, const T* x, T* gx, T* gw, std::vector<T>& col) {
    col.resize(d.OKK * d.HW);
    for (std::int64_t n = 0; n < d.N; ++n)
      for (std::int64_t gi = 0; gi < d.G; ++gi) {
        im2col(gy + n * d.ys + gi * d.Og * d.HoWo, 1, d.ys, d.g, col.data());
        if (gx)
          gemm(false, false, w + gi * d.Cg * d.OKK, d.Cg, d.OKK, col.data(), d.OKK, d.HW,
               gx + n * d.xs + gi * d.Cg * d.HW, T(1), true);
        if (gw)
          gemm(false, true, x + n * d.xs + gi * d.Cg * d.HW, d.Cg, d.HW, col.data(), d.OKK, d.HW,
               gw + gi * d.Cg * d.OKK, T(1), true);
      }
  }
  template <class T>
  static void bias_sum(const Dims& d, const T* gy, T* gb) {
    for (std::int64_t o = 0; o < d.O; ++o) {
      double s = 0;
      for (std::int64_t n = 0; n < d.N; ++n) {
        const T* p = gy + n * d.ys + o * d.HoWo;
        for (std::int64_t i = 0; i < d.HoWo; ++i) s += p[i];
      }
      gb[o] = static_cast<T>(s);
    }
  }
  template <class T>
  static void fill_bias(const Dims& d, const T* b, T* y) {
    for (std::int64_t n = 0; n < d.N; ++n)
      for (std::int64_t o = 0; o < d.O; ++o)
        std::fill(y + n * d.ys + o * d.HoWo, y + n * d.ys + (o + 1) * d.HoWo, b ? b[o] : T(0));
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Dims d = dims(c);
    std::vector<T> col;
    fill_bias(d, c.in.size() == 3 ? c.in[2].data : static_cast<const T*>(nullptr), out.data);
    scatter(d, c.in[1].data, c.in[0].data, out.data, col);
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    const Dims d = dims(c);
    std::vector<T> col;
    T* gx = c.gin[0].data;
    T* gw = c.gin[1].data;
    if (gx) c.gin[0].set_zero();
    if (gw) c.gin[1].set_zero();
    if (gx || gw) gather(d, c.gout.data, c.in[1].data, c.in[0].data, gx, gw, col);
    if (c.gin.size() == 3 && c.gin[2].data) bias_sum(d, c.gout.data, c.gin[2].data);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const Dims d = dims(c);
    std::vector<T> col;
    const std::int64_t nx = d.N * d.xs, ny = d.N * d.ys, nw = c.in[1].size();
    const T* tb = c.in.size() == 3 ? c.tin[2].data : nullptr;
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* ty = c.tout.data + j * ny;
      fill_bias(d, tb ? tb + j * d.O : static_cast<const T*>(nullptr), ty);
      if (c.tin[0].data) scatter(d, c.in[1].data, c.tin[0].data + j * nx, ty, col);
      if (c.tin[1].data) scatter(d, c.tin[1].data + j * nw, c.in[0].data, ty, col);
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const Dims d = dims(c);
    std::vector<T> col;
    const std::int64_t nx = d.N * d.xs, ny = d.N * d.ys, nw = c.in[1].size();
    const bool so = c.second_order;
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* gx = c.tgin[0].data ? c.tgin[0].data + j * nx : nullptr;
      T* gw = c.tgin[1].data ? c.tgin[1].data + j * nw : nullptr;
      if (gx) std::fill(gx, gx + nx, T(0));
      if (gw) std::fill(gw, gw + nw, T(0));
      const T* tg = c.tgout.data + j * ny;
      if (gx || gw) gather(d, tg, c.in[1].data, c.in[0].data, gx, gw, col);
      if (so) {  // g_X' += Wg' col(g_Y), g_W' += X' col(g_Y)^T
        const T* tw = c.tin[1].data ? c.tin[1].data + j * nw : nullptr;
        const T* tx = c.tin[0].data ? c.tin[0].data + j * nx : nullptr;
        if ((gx && tw) || (gw && tx)) gather(d, c.gout.data, tw, tx, tw ? gx : nullptr, tx ? gw : nullptr, col);
      }
      if (c.tgin.size() == 3 && c.tgin[2].data) bias_sum(d, tg, c.tgin[2].data + j * d.O);
    }
  }

 private:
  ConvTranspose2dAttrs m_a;
};

}  // namespace

OpPtr make_conv_transpose(const ConvTranspose2dAttrs& a) { return std::make_shared<ConvTransposeOp>(a); }

}  // namespace curv
