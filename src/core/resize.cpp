// Resize (ONNX; PyTorch exports nn.Upsample and F.interpolate as it) of the two spatial dims of
// X [N, C, H, W], modes nearest and linear (bilinear). Both are linear in X: each output pixel is
// sum_{a, b} wh_a ww_b x[ih_a, iw_b] over at most 2 x 2 taps per dim, so the op supplies the taps
// and LinearOp gives the kernels (adjoint: scatter-add with the same weights).
// Per output index o along a dim of input length `in`, output length `out` and scale s (the
// given scale, or out / in when sizes are given), the source coordinate x is
//   half_pixel: (o + 1/2) / s - 1/2          pytorch_half_pixel: the same, 0 when out = 1
//   asymmetric: o / s                        align_corners: o (in - 1) / (out - 1), 0 when out = 1
// nearest: tap round(x) by nearest_mode (floor: PyTorch's 'nearest'), clamped into [0, in);
// linear: x clamped to [0, in - 1], taps floor(x) and floor(x) + 1 (capped) with weights 1 - f, f.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/linear_op.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::attr_fail;

struct Taps {
  std::vector<std::int64_t> i0, i1;
  std::vector<double> w0, w1;
};

class ResizeOp final : public internal::LinearOp<ResizeOp> {
 public:
  explicit ResizeOp(const ResizeAttrs& a) : m_a(a) {
    const std::string t = type();
    if (a.mode != "nearest" && a.mode != "linear")
      attr_fail(t, "mode '" + a.mode + "' is not supported (nearest or linear)");
    const auto& ct = a.coordinate_transformation_mode;
    if (ct != "half_pixel" && ct != "pytorch_half_pixel" && ct != "asymmetric" && ct != "align_corners")
      attr_fail(t, "coordinate_transformation_mode '" + ct +
                       "' is not supported (half_pixel, pytorch_half_pixel, asymmetric or align_corners)");
    const auto& nm = a.nearest_mode;
    if (nm != "floor" && nm != "ceil" && nm != "round_prefer_floor" && nm != "round_prefer_ceil")
      attr_fail(t, "nearest_mode '" + nm + "' is not supported");
    if (a.scales.empty() == a.sizes.empty())
      attr_fail(t, "exactly one of scales " + list(a.scales) + " and sizes " + shape_str(a.sizes) +
                       " must be given, with 2 values (H, W)");
    if (!a.scales.empty()) {
      if (a.scales.size() != 2) attr_fail(t, "scales " + list(a.scales) + " must have 2 values (H, W)");
      for (double s : a.scales)
        if (!(s > 0 && s <= 1e6)) attr_fail(t, "scales " + list(a.scales) + " must be > 0 and <= 1e6");
    } else {
      if (a.sizes.size() != 2) attr_fail(t, "sizes " + shape_str(a.sizes) + " must have 2 values (H, W)");
      internal::require_at_least(t, "sizes", a.sizes, 1);
      internal::require_at_most(t, "sizes", a.sizes, kMaxTensorElements);
    }
  }
  std::string type() const override { return "Resize"; }
  OpSpec spec() const override {
    return OpSpec(type())
        .set("mode", m_a.mode)
        .set("coordinate_transformation_mode", m_a.coordinate_transformation_mode)
        .set("nearest_mode", m_a.nearest_mode)
        .set("scales", m_a.scales)
        .set_ints("sizes", m_a.sizes);
  }
  int arity() const override { return 1; }

  std::int64_t out_len(std::int64_t in, int d) const {
    if (!m_a.sizes.empty()) return m_a.sizes[d];
    const double v = std::floor(static_cast<double>(in) * m_a.scales[d]);
    if (!(v <= static_cast<double>(kMaxTensorElements)))
      throw std::invalid_argument("Resize: output size " + std::to_string(v) + " is too large");
    return static_cast<std::int64_t>(v);
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    if (x.size() != 4) throw std::invalid_argument("Resize: X " + shape_str(x) + " must be 4-D (NCHW)");
    const Shape out{x[0], x[1], out_len(x[2], 0), out_len(x[3], 1)};
    if (out[2] < 1 || out[3] < 1 || x[2] < 1 || x[3] < 1)
      throw std::invalid_argument("Resize: X " + shape_str(x) + " gives an empty output " + shape_str(out));
    checked_numel(out, "Resize: output");
    return out;
  }

  Taps taps(std::int64_t in, std::int64_t out, int d) const {
    const double s = m_a.sizes.empty() ? m_a.scales[d] : static_cast<double>(out) / static_cast<double>(in);
    const auto& ct = m_a.coordinate_transformation_mode;
    Taps t;
    for (std::int64_t o = 0; o < out; ++o) {
      double x;
      if (ct == "align_corners")
        x = out == 1 ? 0.0 : static_cast<double>(o) * static_cast<double>(in - 1) / static_cast<double>(out - 1);
      else if (ct == "asymmetric")
        x = static_cast<double>(o) / s;
      else if (ct == "pytorch_half_pixel" && out == 1)
        x = 0.0;
      else
        x = (static_cast<double>(o) + 0.5) / s - 0.5;
      if (m_a.mode == "nearest") {
        const double f = std::floor(x);
        const auto& nm = m_a.nearest_mode;
        double r = nm == "floor"  ? f
                   : nm == "ceil" ? std::ceil(x)
                   : x - f == 0.5 ? (nm == "round_prefer_floor" ? f : f + 1)
                                  : std::round(x);
        const std::int64_t i =
            std::clamp<std::int64_t>(static_cast<std::int64_t>(std::clamp(r, -1.0, double(in))), 0, in - 1);
        t.i0.push_back(i), t.i1.push_back(i), t.w0.push_back(1.0), t.w1.push_back(0.0);
      } else {
        x = std::clamp(x, 0.0, static_cast<double>(in - 1));
        const std::int64_t i = std::min<std::int64_t>(static_cast<std::int64_t>(x), in - 1);
        const double f = x - static_cast<double>(i);
        t.i0.push_back(i), t.i1.push_back(std::min(i + 1, in - 1)), t.w0.push_back(1.0 - f), t.w1.push_back(f);
      }
    }
    return t;
  }

  // y[p, oh, ow] = sum wh ww x[p, ih, iw] over the taps, p = (n, c)
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    const Shape& xs = in[0].shape;
    const std::int64_t P = xs[0] * xs[1], H = xs[2], W = xs[3], Ho = out.shape[2], Wo = out.shape[3];
    const Taps th = taps(H, Ho, 0), tw = taps(W, Wo, 1);
    for (std::int64_t p = 0; p < P; ++p) {
      const T* x = in[0].data + p * H * W;
      T* y = out.data + p * Ho * Wo;
      for (std::int64_t oh = 0; oh < Ho; ++oh) {
        const T* r0 = x + th.i0[oh] * W;
        const T* r1 = x + th.i1[oh] * W;
        const T a0 = static_cast<T>(th.w0[oh]), a1 = static_cast<T>(th.w1[oh]);
        for (std::int64_t ow = 0; ow < Wo; ++ow) {
          const std::int64_t j0 = tw.i0[ow], j1 = tw.i1[ow];
          const T b0 = static_cast<T>(tw.w0[ow]), b1 = static_cast<T>(tw.w1[ow]);
          y[oh * Wo + ow] = a0 * (b0 * r0[j0] + b1 * r0[j1]) + a1 * (b0 * r1[j0] + b1 * r1[j1]);
        }
      }
    }
  }
  template <class T>
  void adjoint(ConstView<T> gout, const std::vector<View<T>>& gin) const {
    if (!gin[0].data) return;
    gin[0].set_zero();
    const Shape& xs = gin[0].shape;
    const std::int64_t P = xs[0] * xs[1], H = xs[2], W = xs[3], Ho = gout.shape[2], Wo = gout.shape[3];
    const Taps th = taps(H, Ho, 0), tw = taps(W, Wo, 1);
    for (std::int64_t p = 0; p < P; ++p) {
      T* g = gin[0].data + p * H * W;
      const T* gy = gout.data + p * Ho * Wo;
      for (std::int64_t oh = 0; oh < Ho; ++oh) {
        T* r0 = g + th.i0[oh] * W;
        T* r1 = g + th.i1[oh] * W;
        const T a0 = static_cast<T>(th.w0[oh]), a1 = static_cast<T>(th.w1[oh]);
        for (std::int64_t ow = 0; ow < Wo; ++ow) {
          const std::int64_t j0 = tw.i0[ow], j1 = tw.i1[ow];
          const T b0 = static_cast<T>(tw.w0[ow]), b1 = static_cast<T>(tw.w1[ow]), v = gy[oh * Wo + ow];
          r0[j0] += a0 * b0 * v;
          r0[j1] += a0 * b1 * v;
          r1[j0] += a1 * b0 * v;
          r1[j1] += a1 * b1 * v;
        }
      }
    }
  }

 private:
  static std::string list(const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + format_attr(v[i]);
    return s + "]";
  }

  ResizeAttrs m_a;
};

}  // namespace

OpPtr make_resize(const ResizeAttrs& a) { return std::make_shared<ResizeOp>(a); }

}  // namespace curv
