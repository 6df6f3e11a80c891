// Conv2d (stride, padding, dilation, groups) via im2col + GEMM.
//
// Per sample n and group g, with col(X) the [Cg*kh*kw, Ho*Wo] patch matrix:
//   Y = W col(X) + b                      W: [Og, Cg*kh*kw]
//   g_X = col^T(W^T g_Y),  g_W = sum_n g_Y col(X)^T,  g_b = sum g_Y
//   Y'  = W col(X') + W' col(X) + b'
//   g_X' = col^T(W^T g_Y' + W'^T g_Y),  g_W' = sum_n g_Y' col(X)^T + g_Y col(X')^T
// (the W', X' terms of the last line are the second-order part).
//
// Cost against the FLOP floor: a gradient is 3 forward-sized GEMMs, an HVP on kept activations 6
// (Y', then g_X' and g_W' with two terms each), so the HVP / gradient ratio of 2 is set by what
// surrounds the GEMMs. Hence:
//  - g_W' is one GEMM [g_Y' | g_Y] [col(X) | col(X')]^T with inner dimension 2 S HW: the weight-sized
//    output, which bounds the GEMM on planes of a few positions, is read and written once;
//  - output planes of at most 16 positions (ResNet-18/50's late stages on 32x32 inputs) gather
//    im2col / col2im through a table, and take W^T g_Y + col2im for g_X (and for g_X' two GEMMs
//    into one patch matrix), never the adjoint correlation, whose flipped copy of W (and W') per
//    micro-batch costs as much as the GEMM there;
//  - one-sample chunks GEMM straight from and into the stored planes (rows_of);
//  - input planes no larger than the kernel's taps in use (3x3 / pad 1 on 2x2 or 1x1) skip im2col
//    altogether: the convolution is one dense matrix per sample (Dense below).
// Dispatch per kernel: oneDNN (float32, ungrouped, output planes >= 16 positions), else the dense
// matrix, else im2col + GEMM on the taps in use (builtin).
// Fusing Y' as [W | W'] [col(X'); col(X)] was measured slower: it copies both weights per call.
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "src/core/internal/depthwise.h"
#include "src/core/internal/gemm.h"
#include "src/core/internal/im2col.h"
#include "src/core/internal/onednn_conv.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::col2im_add;
using internal::ConvGeometry;
using internal::from_rows;
using internal::gemm;
using internal::im2col;
using internal::to_rows;
using internal::window_out_size;

// Per-thread scratch buffers that keep their capacity between calls (no reallocation or zeroing).
template <class T>
Buffer<T>& scratch(int slot) {
  thread_local Buffer<T> bufs[3];
  return bufs[slot];
}

class ConvOp final : public OpImpl<ConvOp> {
 public:
  explicit ConvOp(const Conv2dAttrs& a) : m_a(a) {
    internal::check_window_attrs("Conv", a.kernel, a.stride, a.dilation, a.pads, false);
    if (a.groups < 1) internal::attr_fail("Conv", "group must be >= 1, got " + std::to_string(a.groups));
  }
  std::string type() const override { return "Conv"; }
  OpSpec spec() const override {
    return OpSpec("Conv")
        .set_ints("kernel", {m_a.kernel.begin(), m_a.kernel.end()})
        .set_ints("strides", {m_a.stride.begin(), m_a.stride.end()})
        .set_ints("dilations", {m_a.dilation.begin(), m_a.dilation.end()})
        .set_ints("pads", {m_a.pads.begin(), m_a.pads.end()})
        .set_int("group", m_a.groups);
  }
  int arity() const override { return -1; }
  bool accumulates() const override { return true; }

  ConvGeometry geometry(const Shape& x, const Shape& w) const {
    ConvGeometry g;
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
    g.Ho = window_out_size(g.H, g.kh, g.sh, g.dh, g.pt, g.pb, false);
    g.Wo = window_out_size(g.W, g.kw, g.sw, g.dw, g.pl, g.pr, false);
    return g;
  }

  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > 3) throw std::invalid_argument("Conv: expected inputs X, W and optional B");
    const Shape &x = in[0], &w = in[1];
    if (x.size() != 4 || w.size() != 4)
      throw std::invalid_argument("Conv: X " + shape_str(x) + " and W " + shape_str(w) + " must be 4-D (NCHW)");
    if (x[1] != checked_mul(w[1], m_a.groups, "Conv input channels"))
      throw std::invalid_argument("Conv: X " + shape_str(x) + " has " + std::to_string(x[1]) + " channels but W " +
                                  shape_str(w) + " with group=" + std::to_string(m_a.groups) + " expects " +
                                  std::to_string(w[1] * m_a.groups));
    if (w[0] % m_a.groups != 0)
      throw std::invalid_argument("Conv: group=" + std::to_string(m_a.groups) + " does not divide the " +
                                  std::to_string(w[0]) + " output channels of W " + shape_str(w));
    if (m_a.kernel[0] != w[2] || m_a.kernel[1] != w[3])
      throw std::invalid_argument("Conv: kernel_shape " + internal::list_str(m_a.kernel) + " does not match W " +
                                  shape_str(w));
    if (in.size() == 3 && (in[2].size() != 1 || in[2][0] != w[0]))
      throw std::invalid_argument("Conv: bias " + shape_str(in[2]) + " must be [" + std::to_string(w[0]) + "]");
    ConvGeometry g = geometry(x, w);
    if (g.Ho <= 0 || g.Wo <= 0)
      throw std::invalid_argument("Conv: input " + shape_str(x) + " is smaller than the kernel " + shape_str(w));
    const Shape out{x[0], w[0], g.Ho, g.Wo};
    checked_numel(out, "Conv: output");
    // The per-sample patch matrix col(X): [C/group * kh * kw, Ho * Wo].
    checked_numel({w[1], w[2], w[3], g.Ho, g.Wo}, "Conv: patch matrix of X " + shape_str(x) + " and W " + shape_str(w));
    return out;
  }

  template <class T>
  static bool adds(const OpCtx<T>& c, int i) {
    return (c.accumulate >> i) & 1u;
  }

  // Everything the kernels need about one call.
  struct Dims {
    ConvGeometry g;
    std::int64_t N, O, G, Og, CKK, HW, xs, ys, wsz, chunk;
  };
  template <class T>
  Dims dims(const OpCtx<T>& c) const {
    Dims d;
    d.g = geometry(c.in[0].shape, c.in[1].shape);
    d.N = c.in[0].dim(0);
    d.O = c.in[1].dim(0);
    d.G = m_a.groups;
    d.Og = d.O / d.G;
    d.CKK = d.g.C * d.g.kh * d.g.kw;
    d.HW = d.g.Ho * d.g.Wo;
    d.xs = c.in[0].size() / std::max<std::int64_t>(d.N, 1);
    d.ys = d.O * d.HW;
    d.wsz = c.in[1].size();
    d.chunk = chunk_samples(d.CKK, d.HW);
    return d;
  }
  // Samples per GEMM: bound the patch matrix to 128K elements (512 KB in float32), so that
  // im2col, the GEMM and col2im of one chunk stay in L2 (4M elements was 1.6x slower per HVP);
  // but give every GEMM at least 256 columns: a layer with few positions and large weights
  // (3x3x512 at 1x1) otherwise reads and writes its whole weight gradient every few samples.
  static std::int64_t chunk_samples(std::int64_t CKK, std::int64_t HW) {
    return std::max({std::int64_t(1), (std::int64_t(1) << 17) / std::max<std::int64_t>(1, CKK * HW),
                     (256 + HW - 1) / std::max<std::int64_t>(1, HW)});
  }

  // Kernel taps that meet only padding, at every output position, multiply zeros: a 3x3 kernel
  // with pads 1 on a 1x1 plane uses its centre tap alone (ResNet-18/50's last stage on 32x32 inputs,
  // a quarter of their FLOP floor), and stride 2 from a 2x2 plane uses 2x2 of its taps. Those two
  // run as dense matrices (Dense below); where that does not apply (a 1xW plane, groups, dilated
  // kernels) the im2col kernels run the convolution on the taps in use, rows [y0, y1) and columns
  // [x0, x1) of the kernel, with the pads reduced so that every output position reads the same
  // inputs: the same sums without their zero terms (oneDNN and PyTorch skip the padding likewise).
  struct Taps {
    std::int64_t y0, y1, x0, x1;
  };
  // The first and one past the last tap i < k of one dimension that some output o < out reads
  // inside the input: 0 <= o s - p0 + i d < in.
  static void used_taps(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                        std::int64_t out, std::int64_t& lo, std::int64_t& hi) {
    lo = k, hi = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      const std::int64_t first = i * d - p0;                         // position read by output 0
      const std::int64_t o = first >= 0 ? 0 : (-first + s - 1) / s;  // first output at or past 0
      if (o < out && first + o * s < in) lo = std::min(lo, i), hi = i + 1;
    }
  }
  // The box of taps that some output reads inside the input, in both dimensions; false when no
  // tap does (dilated windows that only meet padding).
  static bool taps_in_use(const ConvGeometry& g, Taps& t) {
    used_taps(g.H, g.kh, g.sh, g.dh, g.pt, g.Ho, t.y0, t.y1);
    used_taps(g.W, g.kw, g.sw, g.dw, g.pl, g.Wo, t.x0, t.x1);
    return t.y0 < t.y1 && t.x0 < t.x1;
  }
  // The taps in use and the geometry on them (n) when they are fewer than the kernel's (false
  // otherwise, and for depthwise convolutions, which have their own kernels).
  static bool dead_taps(const Dims& d, Taps& t, ConvGeometry& n) {
    const ConvGeometry& g = d.g;
    if (depthwise(d) || d.HW == 0 || !taps_in_use(g, t)) return false;
    if (t.y1 - t.y0 == g.kh && t.x1 - t.x0 == g.kw) return false;
    n = trimmed_geometry(g, t);
    return n.pt >= 0 && n.pb >= 0 && n.pl >= 0 && n.pr >= 0 &&
           window_out_size(n.H, n.kh, n.sh, n.dh, n.pt, n.pb, false) == g.Ho &&
           window_out_size(n.W, n.kw, n.sw, n.dw, n.pl, n.pr, false) == g.Wo;
  }
  static ConvGeometry trimmed_geometry(const ConvGeometry& g, const Taps& t) {
    ConvGeometry n = g;
    n.kh = t.y1 - t.y0;
    n.kw = t.x1 - t.x0;
    n.pt = g.pt - t.y0 * g.dh;
    n.pb = g.pb - (g.kh - t.y1) * g.dh;
    n.pl = g.pl - t.x0 * g.dw;
    n.pr = g.pr - (g.kw - t.x1) * g.dw;
    return n;
  }
  // Weights [m, Cg, kh, kw] restricted to the taps t (shrink) and back (expand: into the full
  // weights' taps t, adding or overwriting; with overwriting, the other taps are set to zero).
  template <class T>
  static void shrink(const Dims& d, const Taps& t, const T* w, std::int64_t rows, T* out) {
    const std::int64_t kh = d.g.kh, kw = d.g.kw, nh = t.y1 - t.y0, nw = t.x1 - t.x0;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < nh; ++i)
        for (std::int64_t j = 0; j < nw; ++j) out[(r * nh + i) * nw + j] = w[(r * kh + t.y0 + i) * kw + t.x0 + j];
  }
  template <class T>
  static void expand(const Dims& d, const Taps& t, const T* w, std::int64_t rows, T* out, bool add) {
    const std::int64_t kh = d.g.kh, kw = d.g.kw, nh = t.y1 - t.y0, nw = t.x1 - t.x0;
    if (!add) std::fill(out, out + rows * kh * kw, T(0));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < nh; ++i)
        for (std::int64_t j = 0; j < nw; ++j) {
          T& o = out[(r * kh + t.y0 + i) * kw + t.x0 + j];
          o = add ? o + w[(r * nh + i) * nw + j] : w[(r * nh + i) * nw + j];
        }
  }
  // Which weight gradients a kernel writes: gin[1] (backward) or tgin[1] (backward_tangent).
  enum Writes { kNone, kGrad, kTangentGrad };
  // Runs f(ctx, dims), one of the built-in kernels, on the taps in use (dead_taps): on a copy of the
  // call whose weights, weight tangents and the weight gradient it `writes` are the trimmed ones;
  // that gradient is expanded into the caller's buffer afterwards. Without dead taps, f runs on the
  // call itself.
  template <class T, class F>
  static void builtin(OpCtx<T>& c, const Dims& d, Writes writes, F&& f) {
    Taps t;
    Dims n = d;
    if (!dead_taps(d, t, n.g)) return f(c, d);
    n.CKK = n.g.C * n.g.kh * n.g.kw;
    n.wsz = d.O * n.CKK;
    n.chunk = chunk_samples(n.CKK, n.HW);
    const std::int64_t rows = d.O * d.g.C;  // (o, c) rows of the weights
    const Shape ws{d.O, d.g.C, n.g.kh, n.g.kw};
    OpCtx<T> tc = c;
    Buffer<T> w(n.wsz), wt, gw, gwt;
    shrink(d, t, c.in[1].data, rows, w.data());
    tc.in[1] = ConstView<T>{w.data(), ws};
    if (c.tin.size() > 1 && c.tin[1].data) {
      wt.resize(c.k * n.wsz);
      shrink(d, t, c.tin[1].data, c.k * rows, wt.data());
      tc.tin[1] = ConstView<T>{wt.data(), with_lead(c.k, ws)};
    }
    if (writes == kGrad && c.gin.size() > 1 && c.gin[1].data) {
      gw.resize(n.wsz);
      tc.gin[1] = View<T>{gw.data(), ws};
    }
    if (writes == kTangentGrad && c.tgin.size() > 1 && c.tgin[1].data) {
      gwt.resize(c.k * n.wsz);
      tc.tgin[1] = View<T>{gwt.data(), with_lead(c.k, ws)};
    }
    tc.accumulate &= ~2u;
    f(tc, n);
    if (!gw.empty()) expand(d, t, gw.data(), rows, c.gin[1].data, adds(c, 1));
    if (!gwt.empty()) expand(d, t, gwt.data(), c.k * rows, c.tgin[1].data, adds(c, 1));
  }
  // Planes smaller than the kernel's window. There the convolution of one sample is a dense matrix
  // M [O HWo, C HWi] on the sample's planes as stored (NCHW is [C HWi] per sample):
  //   M[(o, p), (c, q)] = W[o, c, tap(p, q)], or 0 where no tap links output p to input q,
  // so Y = X M^T, g_X = g_Y M and g_M = g_Y^T X over the N samples of the call, one GEMM each and no
  // im2col, col2im or row gathers; g_W sums g_M over the (p, q) of each tap. It multiplies
  // HWo HWi terms per (o, c) where im2col multiplies HWo taps: it runs where HWi is at most the
  // taps in use and HWo HWi at most twice the kernel's taps. 3x3 / pad 1 on a 2x2 plane
  // (ResNet-18/50's third stage on 32x32 inputs, 49% of whose taps read padding) takes 16
  // multiply-adds per (o, c) and sample instead of 36; on a 1x1 plane M is the centre tap (the
  // dead-tap case). Each direction of a tangent kernel is its own GEMMs with the shapes of a single
  // product, so a block gives the bits of single products.
  struct Dense {
    std::int64_t HWi, HWo, K, R;    // K = C HWi (columns of M), R = O HWo (rows)
    bool same;                      // M has W's layout (HWo = 1, taps in input order): use W itself
    std::vector<std::int32_t> tap;  // [HWo, HWi]: kernel tap (i kw + j) linking p and q, or -1
  };
  static constexpr std::int64_t kDenseMaxElements = std::int64_t(1) << 24;
  static bool dense_plan(const Dims& d, Dense& p) {
    const ConvGeometry& g = d.g;
    if (d.G != 1 || depthwise(d) || d.N == 0 || d.HW == 0) return false;
    p.HWi = g.H * g.W;
    p.HWo = d.HW;
    Taps t;
    // No more multiply-adds than im2col on the taps in use, and M at most twice W's size (its
    // gather per call is memory traffic that a GEMM of N samples must amortize).
    if (!taps_in_use(g, t) || p.HWi > (t.y1 - t.y0) * (t.x1 - t.x0) || p.HWo * p.HWi > 2 * g.kh * g.kw) return false;
    p.K = g.C * p.HWi;
    p.R = d.O * p.HWo;
    if (p.K > kDenseMaxElements / std::max<std::int64_t>(1, p.R)) return false;
    p.tap.assign(p.HWo * p.HWi, -1);
    for (std::int64_t oy = 0; oy < g.Ho; ++oy)
      for (std::int64_t ox = 0; ox < g.Wo; ++ox)
        for (std::int64_t i = 0; i < g.kh; ++i)
          for (std::int64_t j = 0; j < g.kw; ++j) {
            const std::int64_t iy = oy * g.sh - g.pt + i * g.dh, ix = ox * g.sw - g.pl + j * g.dw;
            if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W)
              p.tap[(oy * g.Wo + ox) * p.HWi + iy * g.W + ix] = static_cast<std::int32_t>(i * g.kw + j);
          }
    p.same = p.HWo == 1 && p.HWi == g.kh * g.kw;
    for (std::int64_t q = 0; p.same && q < p.HWi; ++q) p.same = p.tap[q] == q;
    return true;
  }
  // M of weights w [O, C, kh, kw] (w itself when p.same; otherwise gathered into buf).
  // Row (o, op) of M: C groups of HWi entries. HWI > 0 is HWi known at compile time (unrolled; the
  // common 2x2 and 1x1 planes), 0 the general loop; the same copies either way.
  template <int HWI, class T>
  static void dense_rows(const Dims& d, const Dense& p, const T* w, T* out) {
    const std::int64_t C = d.g.C, KK = d.g.kh * d.g.kw, HWi = HWI > 0 ? HWI : p.HWi;
    for (std::int64_t o = 0; o < d.O; ++o)
      for (std::int64_t op = 0; op < p.HWo; ++op) {
        T* row = out + (o * p.HWo + op) * p.K;
        const std::int32_t* tp = p.tap.data() + op * HWi;
        for (std::int64_t c = 0; c < C; ++c) {
          const T* wc = w + (o * C + c) * KK;
          for (std::int64_t q = 0; q < HWi; ++q) row[c * HWi + q] = tp[q] >= 0 ? wc[tp[q]] : T(0);
        }
      }
  }
  // f(std::integral_constant<int, HWI>) with HWI = HWi for the planes that get unrolled loops (2x2
  // and 1x1; 3x3 / pad 1 on 2x2 planes: 0.61 -> 0.20 ms per gather of 256 -> 256 channels, one
  // thread, microbenchmark), else 0 (the general loop).
  template <class F>
  static void by_plane(std::int64_t HWi, const F& f) {
    if (HWi == 4)
      f(std::integral_constant<int, 4>{});
    else if (HWi == 1)
      f(std::integral_constant<int, 1>{});
    else
      f(std::integral_constant<int, 0>{});
  }
  template <class T>
  static const T* dense_matrix(const Dims& d, const Dense& p, const T* w, Buffer<T>& buf) {
    if (p.same) return w;
    buf.resize(p.R * p.K);
    by_plane(p.HWi, [&](auto hwi) { dense_rows<decltype(hwi)::value>(d, p, w, buf.data()); });
    return buf.data();
  }
  // gw (+)= the weight gradient of g_M [R, K]: each tap's sum over its (p, q), in a fixed order.
  template <int HWI, class T>
  static void dense_fold_rows(const Dims& d, const Dense& p, const T* gm, T* gw) {
    const std::int64_t C = d.g.C, KK = d.g.kh * d.g.kw, HWi = HWI > 0 ? HWI : p.HWi;
    for (std::int64_t o = 0; o < d.O; ++o)
      for (std::int64_t op = 0; op < p.HWo; ++op) {
        const T* row = gm + (o * p.HWo + op) * p.K;
        const std::int32_t* tp = p.tap.data() + op * HWi;
        for (std::int64_t c = 0; c < C; ++c) {
          T* gc = gw + (o * C + c) * KK;
          for (std::int64_t q = 0; q < HWi; ++q)
            if (tp[q] >= 0) gc[tp[q]] += row[c * HWi + q];
        }
      }
  }
  template <class T>
  static void dense_fold(const Dims& d, const Dense& p, const T* gm, T* gw, bool add) {
    if (!add) std::fill(gw, gw + d.O * d.g.C * d.g.kh * d.g.kw, T(0));
    by_plane(p.HWi, [&](auto hwi) { dense_fold_rows<decltype(hwi)::value>(d, p, gm, gw); });
  }
  // gw (+)= g_W of g_M = A^T B (A [n, R], B [n, K]): into gw directly when M is W.
  template <class T>
  static void dense_grad_w(const Dims& d, const Dense& p, const T* a, const T* b, std::int64_t n, T* gw, bool add) {
    if (p.same) return gemm(true, false, a, n, p.R, b, n, p.K, gw, T(1), add);
    Buffer<T> gm(p.R * p.K);
    gemm(true, false, a, n, p.R, b, n, p.K, gm.data(), T(1), false);
    dense_fold(d, p, gm.data(), gw, add);
  }
  // M of the weights W, gathered into tmp. Where M is smaller than W (a kernel trimmed to its taps
  // in use: the centre tap on a 1x1 plane, 1/9 of W), the gather reads all of W for a fraction of
  // it, and a product gathers it twice per pass (jvp, backward_tangent) on every call; the tangent
  // kernels (`keep`) keep it in the op state then, which lives with the pass (+1/9 of W per kept
  // pass; nothing in a gradient's passes), and every later kernel of the pass reads it there.
  static bool keeps_matrix(const Dims& d, const Dense& p) { return !p.same && p.R * p.K < d.wsz; }
  template <class T>
  static const T* dense_weights(const OpCtx<T>& c, const Dims& d, const Dense& p, Buffer<T>& tmp, bool keep) {
    if (keeps_matrix(d, p) && c.state) {
      auto& kept = c.state->saved;
      if (kept.size() == 1 && kept[0].size() == p.R * p.K) return kept[0].data();
      if (keep) {
        kept.resize(1);
        kept[0].resize({p.R, p.K});
        return dense_matrix(d, p, c.in[1].data, kept[0].vec());
      }
    }
    return dense_matrix(d, p, c.in[1].data, tmp);
  }
  template <class T>
  static void dense_fwd(const OpCtx<T>& c, const Dims& d, const Dense& p, T* y) {
    Buffer<T> tmp;
    const T* m = dense_weights(c, d, p, tmp, false);
    gemm(false, true, c.in[0].data, d.N, p.K, m, p.R, p.K, y, T(1), false);
  }
  template <class T>
  static void dense_bwd(OpCtx<T>& c, const Dims& d, const Dense& p) {
    Buffer<T> tmp;
    if (c.gin[0].data)
      gemm(false, false, c.gout.data, d.N, p.R, dense_weights(c, d, p, tmp, false), p.R, p.K, c.gin[0].data, T(1),
           adds(c, 0));
    if (c.gin[1].data) dense_grad_w(d, p, c.gout.data, c.in[0].data, d.N, c.gin[1].data, adds(c, 1));
  }
  // Y'_j = X'_j M^T + X M'_j^T
  template <class T>
  static void dense_tan(OpCtx<T>& c, const Dims& d, const Dense& p) {
    Buffer<T> tmp, mt_buf;
    const T* m = c.tin[0].data ? dense_weights(c, d, p, tmp, true) : nullptr;
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* yt = c.tout.data + j * d.N * d.ys;
      bool written = false;
      if (c.tin[0].data) {
        gemm(false, true, c.tin[0].data + j * d.N * d.xs, d.N, p.K, m, p.R, p.K, yt, T(1), false);
        written = true;
      }
      if (c.tin[1].data) {
        const T* mt = dense_matrix(d, p, c.tin[1].data + j * d.wsz, mt_buf);
        gemm(false, true, c.in[0].data, d.N, p.K, mt, p.R, p.K, yt, T(1), written);
        written = true;
      }
      if (!written) std::fill(yt, yt + d.N * d.ys, T(0));
    }
  }
  // g_X'_j = g_Y'_j M + g_Y M'_j,  g_W'_j from g_M'_j = [g_Y'_j; g_Y]^T [X; X'_j] (one GEMM with
  // inner dimension 2N that writes g_M'_j once).
  template <class T>
  static void dense_bwdt(OpCtx<T>& c, const Dims& d, const Dense& p) {
    const bool so = c.second_order;
    Buffer<T> tmp, mt_buf;
    const T* m = c.tgin[0].data ? dense_weights(c, d, p, tmp, true) : nullptr;
    const bool pair = c.tgin[1].data && so && c.tin[0].data;
    auto& a = scratch<T>(0);  // [g_Y'_j; g_Y]  [2N, R]
    auto& b = scratch<T>(1);  // [X; X'_j]      [2N, K]
    if (pair) {
      a.resize(2 * d.N * p.R);
      b.resize(2 * d.N * p.K);
      std::copy_n(c.gout.data, d.N * p.R, a.data() + d.N * p.R);
      std::copy_n(c.in[0].data, d.N * p.K, b.data());
    }
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* gyt = c.tgout.data + j * d.N * d.ys;
      const T* wt = so && c.tin[1].data ? c.tin[1].data + j * d.wsz : nullptr;
      if (T* gxt = c.tgin[0].data ? c.tgin[0].data + j * d.N * d.xs : nullptr) {
        gemm(false, false, gyt, d.N, p.R, m, p.R, p.K, gxt, T(1), adds(c, 0));
        if (wt) gemm(false, false, c.gout.data, d.N, p.R, dense_matrix(d, p, wt, mt_buf), p.R, p.K, gxt, T(1), true);
      }
      if (T* gwt = c.tgin[1].data ? c.tgin[1].data + j * d.wsz : nullptr) {
        if (pair) {
          std::copy_n(gyt, d.N * p.R, a.data());
          std::copy_n(c.tin[0].data + j * d.N * d.xs, d.N * p.K, b.data() + d.N * p.K);
          dense_grad_w(d, p, a.data(), b.data(), 2 * d.N, gwt, adds(c, 1));
        } else {
          dense_grad_w(d, p, gyt, c.in[0].data, d.N, gwt, adds(c, 1));
        }
      }
    }
  }
  template <class F>
  static void chunks(std::int64_t n, std::int64_t chunk, F&& f) {
    for (std::int64_t s0 = 0; s0 < n; s0 += chunk) f(s0, std::min(chunk, n - s0));
  }
  // col(X) for samples [s0, s0+S) of x, group gi, into dst with row stride ld (0: S HW).
  template <class T>
  void cols_into(const Dims& d, const T* x, std::int64_t s0, std::int64_t S, std::int64_t gi, T* dst,
                 std::int64_t ld = 0) const {
    if (d.g.identity_cols())
      to_rows(x + s0 * d.xs, S, d.xs, gi * d.g.C, d.g.C, d.HW, dst, ld);
    else
      im2col(x + s0 * d.xs + gi * d.g.C * d.g.H * d.g.W, S, d.xs, d.g, dst, ld);
  }
  // One sample's rows [C, HW] are its planes as stored: the copy into a buffer is skipped then
  // (ResNet-20's convs run one sample per chunk).
  template <class T>
  static const T* rows_of(const T* y, std::int64_t S, std::int64_t ys, std::int64_t c0, std::int64_t C, std::int64_t HW,
                          Buffer<T>& buf) {
    if (S == 1) return y + c0 * HW;
    buf.resize(C * S * HW);
    to_rows(y, S, ys, c0, C, HW, buf.data());
    return buf.data();
  }
  template <class T>
  const T* cols(const Dims& d, const T* x, std::int64_t s0, std::int64_t S, std::int64_t gi, Buffer<T>& buf) const {
    if (d.g.identity_cols()) return rows_of(x + s0 * d.xs, S, d.xs, gi * d.g.C, d.g.C, d.HW, buf);
    buf.resize(d.CKK * S * d.HW);
    cols_into(d, x, s0, S, gi, buf.data());
    return buf.data();
  }
  // x[s0..] += col^T(rows), i.e. the adjoint of cols().
  template <class T>
  void uncols(const Dims& d, const T* col, std::int64_t s0, std::int64_t S, std::int64_t gi, T* x) const {
    if (d.g.identity_cols())
      from_rows(col, S, d.xs, gi * d.g.C, d.g.C, d.HW, x + s0 * d.xs, true);
    else
      col2im_add(col, S, d.xs, d.g, x + s0 * d.xs + gi * d.g.C * d.g.H * d.g.W);
  }
  template <class T>
  static void add_bias(const T* b, T* y, std::int64_t n, std::int64_t O, std::int64_t HW) {
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t o = 0; o < O; ++o) {
        T* r = y + (s * O + o) * HW;
        for (std::int64_t i = 0; i < HW; ++i) r[i] += b[o];
      }
  }
  // Sum of a plane in eight interleaved partial sums (vectorized; a fixed order, so deterministic).
  template <class T>
  static T plane_sum(const T* r, std::int64_t n) {
    T a[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; ++l) a[l] += r[i + l];
    T acc = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; ++i) acc += r[i];
    return acc;
  }
  // gb (+)= sum of gy over samples and positions.
  template <class T>
  static void bias_grad(const T* gy, T* gb, std::int64_t n, std::int64_t O, std::int64_t HW, bool accumulate) {
    if (!accumulate) std::fill(gb, gb + O, T(0));
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t o = 0; o < O; ++o) gb[o] += plane_sum(gy + (s * O + o) * HW, HW);
  }

  // Depthwise convs (one input channel per group) run direct window sums (internal/depthwise.h),
  // whose geometry counts all input channels.
  static bool depthwise(const Dims& d) { return d.G > 1 && d.g.C == 1; }
  static ConvGeometry depthwise_geometry(const Dims& d) {
    ConvGeometry g = d.g;
    g.C = d.G;
    return g;
  }

  // float32, ungrouped convs go to oneDNN when it is compiled in and enabled (internal/onednn_conv.h),
  // if their output planes have at least kOnednnMinPlane positions: on ResNet-18's 2x2 and 1x1
  // planes (512 channels) oneDNN ran at 75-120 GFLOP/s per thread, and its per-call weight reorders
  // of up to 9 MB cost as much again, against ~200 on planes of 16 positions and more. float64,
  // grouped convs other than depthwise, and small ungrouped planes run the built-in kernels (dense
  // or im2col), which are the reference.
  // Depthwise convs go to oneDNN's depthwise kernels (brdgmm_dw, jit_dw) whatever their planes:
  // measured on one thread at MobileNetV2's shapes (64 samples, 16x16 down to 1x1 planes), their
  // forward and backward-data ran 4-300x and their weight gradient 2-50x faster than the per-plane
  // window sums of internal/depthwise.h (session 20), which stay the float64 and reference kernels.
  // They run plain convolutions only: a tangent kernel's two terms are two calls, the second adding.
  static constexpr std::int64_t kOnednnMinPlane = 16;
  static bool use_onednn(const Dims& d) {
    return (depthwise(d) || (d.G == 1 && d.HW >= kOnednnMinPlane)) && d.N > 0 && d.HW > 0 &&
           internal::onednn_conv_enabled();
  }
  static internal::DnnlConvShape dnnl_shape(const Dims& d, std::int64_t n) {
    const ConvGeometry& g = d.g;
    return {n,    g.C * d.G, g.H,  g.W,  d.O,  g.kh, g.kw,  g.sh,  g.sw,
            g.dh, g.dw,      g.pt, g.pl, g.pb, g.pr, g.Ho,  g.Wo,  d.G};
  }
  // Runs f, one of the four kernels on oneDNN below, on this float32 call and returns true where
  // oneDNN applies (use_onednn) and builds the primitives f needs (`kinds`, onednn_conv_supports);
  // returns false, doing nothing, where the built-in kernels must run (and always for float64,
  // where f is never instantiated). A geometry oneDNN rejects thus runs the built-in kernels.
  template <class T, class F>
  static bool on_onednn(OpCtx<T>& c, const Dims& d, unsigned kinds, F&& f) {
    if constexpr (std::is_same_v<T, float>) {
      if (d.G > 1) kinds = internal::kOnednnPlain;  // grouped: no stacked pairs
      if (use_onednn(d) && internal::onednn_conv_supports(dnnl_shape(d, d.N), kinds)) {
        f(c);
        return true;
      }
    }
    return false;
  }
  // The four kernels on oneDNN, without the bias terms. Each direction j of a tangent kernel is its
  // own calls, and each two-term product one call over stacked operands, so a block of directions
  // gives the same bits as single products.
  void fwd_onednn(OpCtx<float>& c, const Dims& d, View<float> out) const {
    internal::onednn_conv_forward(dnnl_shape(d, d.N), c.in[0].data, c.in[1].data, out.data, false);
  }
  void bwd_onednn(OpCtx<float>& c, const Dims& d) const {
    if (c.gin[0].data || c.gin[1].data)
      internal::onednn_conv_backward(dnnl_shape(d, d.N), c.gout.data, c.in[0].data, c.in[1].data, c.gin[0].data,
                                     c.gin[1].data, adds(c, 0), adds(c, 1));
  }
  void tan_onednn(OpCtx<float>& c, const Dims& d) const {
    const auto s = dnnl_shape(d, d.N);
    const float *x = c.in[0].data, *w = c.in[1].data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const float* xt = c.tin[0].data ? c.tin[0].data + j * d.N * d.xs : nullptr;
      const float* wt = c.tin[1].data ? c.tin[1].data + j * d.wsz : nullptr;
      float* yt = c.tout.data + j * d.N * d.ys;
      if (xt && wt && d.G > 1) {
        internal::onednn_conv_forward(s, xt, w, yt, false);
        internal::onednn_conv_forward(s, x, wt, yt, true);
      } else if (xt && wt)
        internal::onednn_conv_forward_pair(s, xt, w, x, wt, yt, false);
      else if (xt)
        internal::onednn_conv_forward(s, xt, w, yt, false);
      else if (wt)
        internal::onednn_conv_forward(s, x, wt, yt, false);
      else
        std::fill(yt, yt + d.N * d.ys, 0.0f);
    }
  }
  void bwdt_onednn(OpCtx<float>& c, const Dims& d) const {
    const auto s = dnnl_shape(d, d.N);
    const bool so = c.second_order;
    const float *x = c.in[0].data, *w = c.in[1].data, *gy = c.gout.data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const float* xt = so && c.tin[0].data ? c.tin[0].data + j * d.N * d.xs : nullptr;
      const float* wt = so && c.tin[1].data ? c.tin[1].data + j * d.wsz : nullptr;
      const float* gyt = c.tgout.data + j * d.N * d.ys;
      float* gxt = c.tgin[0].data ? c.tgin[0].data + j * d.N * d.xs : nullptr;
      float* gwt = c.tgin[1].data ? c.tgin[1].data + j * d.wsz : nullptr;
      if (d.G > 1) {  // grouped: each two-term product as two calls, the second adding
        if (gxt && wt) {
          internal::onednn_conv_backward(s, gyt, x, w, gxt, nullptr, adds(c, 0), false);
          internal::onednn_conv_backward(s, gy, x, wt, gxt, nullptr, true, false);
        }
        if (gwt && xt) {
          internal::onednn_conv_backward(s, gyt, x, w, nullptr, gwt, false, adds(c, 1));
          internal::onednn_conv_backward(s, gy, xt, w, nullptr, gwt, false, true);
        }
      } else {
        if (gxt && wt) internal::onednn_conv_backward_data_pair(s, gyt, w, gy, wt, gxt, adds(c, 0));
        if (gwt && xt) internal::onednn_conv_backward_weights_pair(s, gyt, x, gy, xt, gwt, adds(c, 1));
      }
      float* gx1 = gxt && !wt ? gxt : nullptr;
      float* gw1 = gwt && !xt ? gwt : nullptr;
      if (gx1 || gw1) internal::onednn_conv_backward(s, gyt, x, w, gx1, gw1, adds(c, 0), adds(c, 1));
    }
  }

  // y[0..n) = W col(x[0..n)) for n samples (x, y advanced by the caller); overwrites y.
  template <class T>
  void conv_samples(const Dims& d, const T* x, std::int64_t n, const T* w, T* y, Buffer<T>& col,
                    Buffer<T>& rows) const {
    if (depthwise(d)) {
      std::fill(y, y + n * d.ys, T(0));
      internal::depthwise_forward(x, w, n, d.O, depthwise_geometry(d), y);
      return;
    }
    chunks(n, d.chunk, [&](std::int64_t s0, std::int64_t S) {
      for (std::int64_t gi = 0; gi < d.G; ++gi) {
        const T* cp = cols(d, x, s0, S, gi, col);
        T* yg = y + s0 * d.ys + gi * d.Og * d.HW;  // one sample: the GEMM writes its planes in place
        if (S > 1) rows.resize(d.Og * S * d.HW);
        gemm(false, false, w + gi * d.Og * d.CKK, d.Og, d.CKK, cp, d.CKK, S * d.HW, S == 1 ? yg : rows.data(), T(1),
             false);
        if (S > 1) from_rows(rows.data(), S, d.ys, gi * d.Og, d.Og, d.HW, y + s0 * d.ys, false);
      }
    });
  }
  // Stride-1, dilation-1, ungrouped convs have an adjoint that is itself a correlation:
  //   g_X = corr(g_Y zero-padded by (k - 1 - p), flip(W)^T),
  // so g_X comes from im2col(g_Y) and one GEMM with inner dimension O kh kw, written straight into
  // rows of g_X, instead of a GEMM with inner dimension O followed by a 9-fold col2im scatter.
  // Small output planes (at most kSmallPlane positions) take the GEMM + col2im path instead: their
  // col2im is cheap, while the flipped weights cost a strided pass over W per call, which is as
  // slow as the GEMM itself when W is large and the plane is 1x1 (ResNet-18's last stage).
  static constexpr std::int64_t kSmallPlane = 16;
  bool has_adjoint_corr(const Dims& d) const {
    const ConvGeometry& g = d.g;
    if (d.HW <= kSmallPlane) return false;
    if (d.G != 1 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.identity_cols()) return false;
    const ConvGeometry a = adjoint_geometry(d);
    return a.pt >= 0 && a.pl >= 0 && a.pb >= 0 && a.pr >= 0;
  }
  ConvGeometry adjoint_geometry(const Dims& d) const {
    const ConvGeometry& g = d.g;
    ConvGeometry a{};
    a.C = d.O;
    a.H = g.Ho;
    a.W = g.Wo;
    a.kh = g.kh;
    a.kw = g.kw;
    a.sh = a.sw = a.dh = a.dw = 1;
    a.pt = g.kh - 1 - g.pt;
    a.pl = g.kw - 1 - g.pl;
    a.pb = g.H - g.Ho - a.pt + g.kh - 1;
    a.pr = g.W - g.Wo - a.pl + g.kw - 1;
    a.Ho = g.H;
    a.Wo = g.W;
    return a;
  }
  // wt[c, (o, ki, kj)] = w[o, c, kh-1-ki, kw-1-kj], rows of length `stride` (>= O kh kw).
  template <class T>
  static void flip_weights(const Dims& d, const T* w, T* wt, std::int64_t stride) {
    const std::int64_t kh = d.g.kh, kw = d.g.kw, C = d.g.C;
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t o = 0; o < d.O; ++o)
        for (std::int64_t i = 0; i < kh; ++i)
          for (std::int64_t j = 0; j < kw; ++j)
            wt[c * stride + (o * kh + i) * kw + j] = w[((o * C + c) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
  }
  std::int64_t adjoint_chunk(const Dims& d, std::int64_t blocks) const {
    const std::int64_t per = blocks * d.O * d.g.kh * d.g.kw * d.g.H * d.g.W;
    return std::max<std::int64_t>(1, (std::int64_t(1) << 17) / std::max<std::int64_t>(1, per));
  }

  // gx[0..n) += col^T(W^T gy) for n samples.
  template <class T>
  void grad_x(const Dims& d, const T* gy, std::int64_t n, const T* w, T* gx, Buffer<T>& col, Buffer<T>& rows) const {
    if (depthwise(d)) return internal::depthwise_grad_x(gy, w, n, d.O, depthwise_geometry(d), gx);
    if (has_adjoint_corr(d)) {
      const ConvGeometry a = adjoint_geometry(d);
      const std::int64_t K = d.O * d.g.kh * d.g.kw, HWi = d.g.H * d.g.W;
      auto& wt = scratch<T>(2);
      wt.resize(d.g.C * K);
      flip_weights(d, w, wt.data(), K);
      chunks(n, adjoint_chunk(d, 1), [&](std::int64_t s0, std::int64_t S) {
        col.resize(K * S * HWi);
        im2col(gy + s0 * d.ys, S, d.ys, a, col.data());
        rows.resize(d.g.C * S * HWi);
        gemm(false, false, wt.data(), d.g.C, K, col.data(), K, S * HWi, rows.data(), T(1), false);
        from_rows(rows.data(), S, d.xs, 0, d.g.C, HWi, gx + s0 * d.xs, true);
      });
      return;
    }
    chunks(n, d.chunk, [&](std::int64_t s0, std::int64_t S) {
      for (std::int64_t gi = 0; gi < d.G; ++gi) {
        const T* gr = rows_of(gy + s0 * d.ys, S, d.ys, gi * d.Og, d.Og, d.HW, rows);
        col.resize(d.CKK * S * d.HW);
        gemm(true, false, w + gi * d.Og * d.CKK, d.Og, d.CKK, gr, d.Og, S * d.HW, col.data(), T(1), false);
        uncols(d, col.data(), s0, S, gi, gx);
      }
    });
  }
  // gw += sum_n gy_n col(x_n)^T for n samples.
  template <class T>
  void grad_w(const Dims& d, const T* gy, const T* x, std::int64_t n, T* gw, Buffer<T>& col, Buffer<T>& rows) const {
    if (depthwise(d)) return internal::depthwise_grad_w(gy, x, n, d.O, depthwise_geometry(d), gw);
    chunks(n, d.chunk, [&](std::int64_t s0, std::int64_t S) {
      for (std::int64_t gi = 0; gi < d.G; ++gi) {
        const T* cp = cols(d, x, s0, S, gi, col);
        const T* gr = rows_of(gy + s0 * d.ys, S, d.ys, gi * d.Og, d.Og, d.HW, rows);
        gemm(false, true, gr, d.Og, S * d.HW, cp, d.CKK, S * d.HW, gw + gi * d.Og * d.CKK, T(1), true);
      }
    });
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Dims d = dims(c);
    auto& col = scratch<T>(0);
    auto& rows = scratch<T>(1);
    Dense p;
    if (!on_onednn(c, d, internal::kOnednnPlain, [&](auto& f) { fwd_onednn(f, d, out); })) {
      if (dense_plan(d, p))
        dense_fwd(c, d, p, out.data);
      else
        builtin(c, d, kNone, [&](OpCtx<T>& b, const Dims& e) {
          conv_samples(e, b.in[0].data, e.N, b.in[1].data, out.data, col, rows);
        });
    }
    if (c.in.size() == 3) add_bias(c.in[2].data, out.data, d.N, d.O, d.HW);
  }

  template <class T>
  void bwd(OpCtx<T>& c) const {
    const Dims d = dims(c);
    auto& col = scratch<T>(0);
    auto& rows = scratch<T>(1);
    Dense p;
    if (!on_onednn(c, d, internal::kOnednnPlain, [&](auto& f) { bwd_onednn(f, d); })) {
      if (dense_plan(d, p))
        dense_bwd(c, d, p);
      else
        builtin(c, d, kGrad, [&](OpCtx<T>& b, const Dims& e) {
          if (b.gin[0].data) {
            if (!adds(b, 0)) b.gin[0].set_zero();
            grad_x(e, b.gout.data, e.N, b.in[1].data, b.gin[0].data, col, rows);
          }
          if (b.gin[1].data) {
            if (!adds(b, 1)) b.gin[1].set_zero();
            grad_w(e, b.gout.data, b.in[0].data, e.N, b.gin[1].data, col, rows);
          }
        });
    }
    if (c.in.size() == 3 && c.gin[2].data) bias_grad(c.gout.data, c.gin[2].data, d.N, d.O, d.HW, adds(c, 2));
  }

  // Y' = W col(X') + W' col(X) + b'
  template <class T>
  void tan(OpCtx<T>& c) const {
    const Dims d = dims(c);
    Dense p;
    if (!on_onednn(c, d, internal::kOnednnPlain | internal::kOnednnForwardPair, [&](auto& f) { tan_onednn(f, d); })) {
      if (dense_plan(d, p))
        dense_tan(c, d, p);
      else
        builtin(c, d, kNone, [&](OpCtx<T>& b, const Dims& e) { tan_builtin(b, e); });
    }
    if (c.in.size() == 3 && c.tin[2].data)
      for (std::int64_t j = 0; j < c.k; ++j)
        add_bias(c.tin[2].data + j * d.O, c.tout.data + j * d.N * d.ys, d.N, d.O, d.HW);
  }
  // Y' = W col(X') + W' col(X)
  template <class T>
  void tan_builtin(OpCtx<T>& c, const Dims& d) const {
    const std::int64_t k = c.k;
    auto& col = scratch<T>(0);
    auto& rows = scratch<T>(1);
    if (c.tin[0].data)  // all k*N tangent samples at once
      conv_samples(d, c.tin[0].data, k * d.N, c.in[1].data, c.tout.data, col, rows);
    else
      c.tout.set_zero();
    if (c.tin[1].data && depthwise(d)) {
      for (std::int64_t j = 0; j < k; ++j)
        internal::depthwise_forward(c.in[0].data, c.tin[1].data + j * d.wsz, d.N, d.O, depthwise_geometry(d),
                                    c.tout.data + j * d.N * d.ys);
    } else if (c.tin[1].data) {
      // The k weight tangents stacked as [k*Og, CKK] share one patch matrix of X.
      chunks(d.N, d.chunk, [&](std::int64_t s0, std::int64_t S) {
        for (std::int64_t gi = 0; gi < d.G; ++gi) {
          const T* cp = cols(d, c.in[0].data, s0, S, gi, col);
          rows.resize(d.Og * S * d.HW * (d.G == 1 ? k : 1));
          if (d.G == 1) {
            gemm(false, false, c.tin[1].data, k * d.Og, d.CKK, cp, d.CKK, S * d.HW, rows.data(), T(1), false);
            for (std::int64_t j = 0; j < k; ++j)
              from_rows(rows.data() + j * d.Og * S * d.HW, S, d.ys, 0, d.Og, d.HW, c.tout.data + (j * d.N + s0) * d.ys,
                        true);
          } else {
            for (std::int64_t j = 0; j < k; ++j) {
              gemm(false, false, c.tin[1].data + j * d.wsz + gi * d.Og * d.CKK, d.Og, d.CKK, cp, d.CKK, S * d.HW,
                   rows.data(), T(1), false);
              from_rows(rows.data(), S, d.ys, gi * d.Og, d.Og, d.HW, c.tout.data + (j * d.N + s0) * d.ys, true);
            }
          }
        }
      });
    }
  }

  // g_X' = col^T(W^T g_Y' + W'^T g_Y),  g_W' = sum g_Y' col(X)^T + g_Y col(X')^T,  g_b' = sum g_Y'
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const Dims d = dims(c);
    Dense p;
    if (!on_onednn(c, d,
                   internal::kOnednnPlain | internal::kOnednnBackwardDataPair | internal::kOnednnBackwardWeightsPair,
                   [&](auto& f) { bwdt_onednn(f, d); })) {
      if (dense_plan(d, p))
        dense_bwdt(c, d, p);
      else
        builtin(c, d, kTangentGrad, [&](OpCtx<T>& b, const Dims& e) { bwdt_builtin(b, e); });
    }
    if (c.in.size() == 3 && c.tgin[2].data)
      for (std::int64_t j = 0; j < c.k; ++j)
        bias_grad(c.tgout.data + j * d.N * d.ys, c.tgin[2].data + j * d.O, d.N, d.O, d.HW, adds(c, 2));
  }
  // g_X' and g_W' (the tangent gradients of X and W).
  template <class T>
  void bwdt_builtin(OpCtx<T>& c, const Dims& d) const {
    const std::int64_t k = c.k;
    const bool so = c.second_order;
    auto& col = scratch<T>(0);
    auto& rows = scratch<T>(1);
    for (int i = 0; i < 2; ++i)
      if (c.tgin[i].data && !adds(c, i)) c.tgin[i].set_zero();
    if (c.tgin[0].data) {
      if (so && c.tin[1].data && has_adjoint_corr(d)) {
        // Fused adjoint correlation: g_X'_j = [flip(W) | flip(W'_j)] [im2col(g_Y'_j); im2col(g_Y)].
        const ConvGeometry a = adjoint_geometry(d);
        const std::int64_t K = d.O * d.g.kh * d.g.kw, HWi = d.g.H * d.g.W;
        auto& wt = scratch<T>(2);
        wt.resize(k * d.g.C * 2 * K);
        for (std::int64_t j = 0; j < k; ++j) {
          flip_weights(d, c.in[1].data, wt.data() + j * d.g.C * 2 * K, 2 * K);                   // pairs with g_Y'_j
          flip_weights(d, c.tin[1].data + j * d.wsz, wt.data() + j * d.g.C * 2 * K + K, 2 * K);  // pairs with g_Y
        }
        chunks(d.N, adjoint_chunk(d, 2), [&](std::int64_t s0, std::int64_t S) {
          const std::int64_t cols_n = S * HWi;
          col.resize(2 * K * cols_n);
          im2col(c.gout.data + s0 * d.ys, S, d.ys, a, col.data() + K * cols_n);  // bottom: g_Y
          rows.resize(d.g.C * cols_n);
          for (std::int64_t j = 0; j < k; ++j) {
            im2col(c.tgout.data + (j * d.N + s0) * d.ys, S, d.ys, a, col.data());  // top: g_Y'_j
            gemm(false, false, wt.data() + j * d.g.C * 2 * K, d.g.C, 2 * K, col.data(), 2 * K, cols_n, rows.data(),
                 T(1), false);
            from_rows(rows.data(), S, d.xs, 0, d.g.C, HWi, c.tgin[0].data + (j * d.N + s0) * d.xs, true);
          }
        });
      } else if (so && c.tin[1].data && d.G == 1) {
        // g_X'_j = col^T(W^T g_Y'_j + W'_j^T g_Y): two GEMMs into one patch matrix and one col2im
        // (stacking [W; W'_j] into one GEMM copied both weights on every call). g_Y's rows are
        // gathered once per chunk.
        chunks(d.N, d.chunk, [&](std::int64_t s0, std::int64_t S) {
          const std::int64_t cols_n = S * d.HW;
          rows.resize(2 * d.O * cols_n);
          T* gy_rows = rows.data() + d.O * cols_n;
          to_rows(c.gout.data + s0 * d.ys, S, d.ys, 0, d.O, d.HW, gy_rows);
          col.resize(d.CKK * cols_n);
          for (std::int64_t j = 0; j < k; ++j) {
            to_rows(c.tgout.data + (j * d.N + s0) * d.ys, S, d.ys, 0, d.O, d.HW, rows.data());
            gemm(true, false, c.in[1].data, d.O, d.CKK, rows.data(), d.O, cols_n, col.data(), T(1), false);
            gemm(true, false, c.tin[1].data + j * d.wsz, d.O, d.CKK, gy_rows, d.O, cols_n, col.data(), T(1), true);
            uncols(d, col.data(), s0, S, 0, c.tgin[0].data + j * d.N * d.xs);
          }
        });
      } else {
        grad_x(d, c.tgout.data, k * d.N, c.in[1].data, c.tgin[0].data, col, rows);
        if (so && c.tin[1].data)
          for (std::int64_t j = 0; j < k; ++j)
            grad_x(d, c.gout.data, d.N, c.tin[1].data + j * d.wsz, c.tgin[0].data + j * d.N * d.xs, col, rows);
      }
    }
    if (c.tgin[1].data && so && c.tin[0].data && d.G == 1 && !depthwise(d)) {
      // Fused: g_W'_j += [g_Y'_j | g_Y] [col(X) | col(X'_j)]^T, one GEMM with inner dimension 2 S HW
      // that reads and writes g_W'_j once (two GEMMs did it twice; with few output positions, as in
      // ResNet-18's last stages, that traffic bounds the GEMM). col(X) and g_Y's rows are built once
      // per chunk.
      chunks(d.N, d.chunk, [&](std::int64_t s0, std::int64_t S) {
        const std::int64_t cols_n = S * d.HW, ld = 2 * cols_n;
        col.resize(d.CKK * ld);
        cols_into(d, c.in[0].data, s0, S, 0, col.data(), ld);  // left: col(X)
        rows.resize(d.O * ld);
        to_rows(c.gout.data + s0 * d.ys, S, d.ys, 0, d.O, d.HW, rows.data() + cols_n, ld);  // right: g_Y
        for (std::int64_t j = 0; j < k; ++j) {
          cols_into(d, c.tin[0].data + j * d.N * d.xs, s0, S, 0, col.data() + cols_n, ld);        // right: col(X'_j)
          to_rows(c.tgout.data + (j * d.N + s0) * d.ys, S, d.ys, 0, d.O, d.HW, rows.data(), ld);  // left: g_Y'_j
          gemm(false, true, rows.data(), d.O, ld, col.data(), d.CKK, ld, c.tgin[1].data + j * d.wsz, T(1), true);
        }
      });
    } else if (c.tgin[1].data) {
      if (depthwise(d))
        for (std::int64_t j = 0; j < k; ++j)
          grad_w(d, c.tgout.data + j * d.N * d.ys, c.in[0].data, d.N, c.tgin[1].data + j * d.wsz, col, rows);
      else
        chunks(d.N, d.chunk, [&](std::int64_t s0, std::int64_t S) {
          for (std::int64_t gi = 0; gi < d.G; ++gi) {
            const T* cp = cols(d, c.in[0].data, s0, S, gi, col);
            if (d.G == 1) {
              // The k output-gradient tangents stacked as [k*Og, S*HW]: one GEMM into all of W'.
              rows.resize(k * d.Og * S * d.HW);
              for (std::int64_t j = 0; j < k; ++j)
                to_rows(c.tgout.data + (j * d.N + s0) * d.ys, S, d.ys, 0, d.Og, d.HW,
                        rows.data() + j * d.Og * S * d.HW);
              gemm(false, true, rows.data(), k * d.Og, S * d.HW, cp, d.CKK, S * d.HW, c.tgin[1].data, T(1), true);
            } else {
              for (std::int64_t j = 0; j < k; ++j) {
                const T* gr = rows_of(c.tgout.data + (j * d.N + s0) * d.ys, S, d.ys, gi * d.Og, d.Og, d.HW, rows);
                gemm(false, true, gr, d.Og, S * d.HW, cp, d.CKK, S * d.HW,
                     c.tgin[1].data + j * d.wsz + gi * d.Og * d.CKK, T(1), true);
              }
            }
          }
        });
      if (so && c.tin[0].data)
        for (std::int64_t j = 0; j < k; ++j)
          grad_w(d, c.gout.data, c.tin[0].data + j * d.N * d.xs, d.N, c.tgin[1].data + j * d.wsz, col, rows);
    }
  }

 private:
  Conv2dAttrs m_a;
};

}  // namespace

OpPtr make_conv(const Conv2dAttrs& a) { return std::make_shared<ConvOp>(a); }
std::string conv_backend() { return internal::conv_backend_name(); }
bool set_onednn_convolutions(bool on) { return internal::set_onednn_conv(on); }

}  // namespace curv
