// im2col / col2im of 2-D convolutions, and the row gathers around the per-group GEMMs.
#include "src/core/internal/im2col.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <vector>

#include "src/core/internal/op_checks.h"
#include "src/core/size_limits.h"

namespace curv::internal {

std::int64_t window_out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                             std::int64_t p1, bool ceil_mode) {
  const std::int64_t extent = checked_add(checked_mul(k - 1, d, "dilated kernel extent"), 1, "dilated kernel extent");
  const std::int64_t padded = checked_add(checked_add(in, p0, "padded input size"), p1, "padded input size");
  const std::int64_t span = padded - extent;
  if (span < 0) return 0;
  std::int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p0) --o;  // last window must start inside the input or left pad
  return o;
}

void check_window_attrs(const std::string& type, const std::array<std::int64_t, 2>& kernel,
                        const std::array<std::int64_t, 2>& strides, const std::array<std::int64_t, 2>& dilations,
                        const std::array<std::int64_t, 4>& pads, bool pads_below_kernel) {
  require_at_least(type, "kernel_shape", kernel, 1);
  require_at_least(type, "strides", strides, 1);
  require_at_least(type, "dilations", dilations, 1);
  require_at_least(type, "pads", pads, 0);
  // No dim of a tensor exceeds kMaxTensorElements, so larger values are meaningless; the caps keep
  // every index computation of the kernels far from int64 overflow.
  require_at_most(type, "kernel_shape", kernel, kMaxTensorElements);
  require_at_most(type, "strides", strides, kMaxTensorElements);
  require_at_most(type, "dilations", dilations, kMaxTensorElements);
  require_at_most(type, "pads", pads, kMaxTensorElements);
  for (int i = 0; i < 4; ++i)
    if (pads_below_kernel && pads[i] >= kernel[i % 2])
      attr_fail(type, "pads " + list_str(pads) + " must be smaller than the kernel_shape " + list_str(kernel));
  if (kernel[0] > kMaxTensorElements / kernel[1]) attr_fail(type, "kernel_shape " + list_str(kernel) + " is too large");
  for (int i = 0; i < 2; ++i)
    if (kernel[i] - 1 > kMaxTensorElements / dilations[i])
      attr_fail(type, "kernel_shape " + list_str(kernel) + " with dilations " + list_str(dilations) + " is too large");
}

bool has_empty_window(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                      std::int64_t out) {
  if (d == 1) return false;  // pads < k: every window of k consecutive taps reaches the input
  for (std::int64_t o = 0; o < out; ++o) {
    const std::int64_t a = o * s - p0;                     // first tap
    const std::int64_t i = a >= 0 ? 0 : (-a + d - 1) / d;  // first tap at or after 0 (|a|, d <= 2^32)
    if (i >= k || a + i * d >= in) return true;
  }
  return false;
}

namespace {

// The output columns ow in [lo, hi) whose input column ow * s + off lies in [0, W).
inline std::pair<std::int64_t, std::int64_t> valid_cols(std::int64_t off, std::int64_t s, std::int64_t W,
                                                        std::int64_t Wo) {
  const std::int64_t lo = std::min(Wo, off >= 0 ? 0 : (-off + s - 1) / s);
  const std::int64_t hi = std::clamp<std::int64_t>(W - off <= 0 ? 0 : (W - off + s - 1) / s, lo, Wo);
  return {lo, hi};
}

// Stride-1, dilation-1 convs that keep the width (Wo == W, e.g. 3x3 with padding 1) have patch rows
// that are the input plane shifted by one flat offset: one copy per row, then the wrapped border
// columns are zeroed. This is the im2col of nearly every ResNet conv and of every adjoint
// correlation, and it runs at copy speed instead of one short copy per output row.
template <class T>
void im2col_shifted(const T* x, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* col, std::int64_t stride) {
  const std::int64_t HW = g.Ho * g.Wo, HWi = g.H * g.W, W = g.W;
  for (std::int64_t s = 0; s < S; ++s)
    for (std::int64_t c = 0; c < g.C; ++c) {
      const T* xc = x + s * xs + c * HWi;
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          T* r = col + ((c * g.kh + ki) * g.kw + kj) * stride + s * HW;
          const std::int64_t oh_off = ki - g.pt, ow_off = kj - g.pl, shift = oh_off * W + ow_off;
          const std::int64_t oh_lo = std::clamp<std::int64_t>(-oh_off, 0, g.Ho);
          const std::int64_t oh_hi = std::clamp<std::int64_t>(g.H - oh_off, oh_lo, g.Ho);
          const std::int64_t lo = std::min(HW, std::max(oh_lo * W, -shift));
          const std::int64_t hi = std::max(lo, std::min(oh_hi * W, HWi - shift));
          std::fill(r, r + lo, T(0));
          if (hi > lo) std::copy(xc + lo + shift, xc + hi + shift, r + lo);
          std::fill(r + hi, r + HW, T(0));
          // Border columns: one strided store per row for 3x3 (a fill_n here became a memset call per row).
          const std::int64_t nz = std::min(std::abs(ow_off), W), z0 = ow_off < 0 ? 0 : W - nz;
          if (nz == 1)
            for (std::int64_t oh = oh_lo; oh < oh_hi; ++oh) r[oh * W + z0] = T(0);
          else if (nz > 1)
            for (std::int64_t oh = oh_lo; oh < oh_hi; ++oh) std::fill_n(r + oh * W + z0, nz, T(0));
        }
    }
}

// Small output planes (ResNet-18's 4x4 to 1x1 stages on 32x32 inputs) have rows of a few elements,
// where the row copies and fills of the other paths are library calls on one to four values (they
// were 15% of a ResNet-18 HVP). A table of input offsets per (tap, output position), -1 in the
// padding, turns them into one gather loop per sample and channel.
constexpr std::int64_t kTablePlane = 16;

// The input offset ih W + iw of every (tap ki kw + kj, output position oh Wo + ow), -1 in the
// padding (per thread, rebuilt on every call: kh kw Ho Wo entries against C S times as many copies).
inline const std::vector<std::int64_t>& window_table(const ConvGeometry& g) {
  thread_local std::vector<std::int64_t> tab;
  const std::int64_t HW = g.Ho * g.Wo;
  tab.resize(g.kh * g.kw * HW);
  for (std::int64_t ki = 0; ki < g.kh; ++ki)
    for (std::int64_t kj = 0; kj < g.kw; ++kj)
      for (std::int64_t oh = 0; oh < g.Ho; ++oh)
        for (std::int64_t ow = 0; ow < g.Wo; ++ow) {
          const std::int64_t ih = oh * g.sh - g.pt + ki * g.dh, iw = ow * g.sw - g.pl + kj * g.dw;
          tab[(ki * g.kw + kj) * HW + oh * g.Wo + ow] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? ih * g.W + iw : -1;
        }
  return tab;
}

template <class T>
void im2col_table(const T* x, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* col, std::int64_t stride) {
  const std::int64_t HW = g.Ho * g.Wo, KK = g.kh * g.kw, HWi = g.H * g.W;
  const std::vector<std::int64_t>& tab = window_table(g);
  for (std::int64_t c = 0; c < g.C; ++c)
    for (std::int64_t s = 0; s < S; ++s) {
      const T* xc = x + s * xs + c * HWi;
      for (std::int64_t t = 0; t < KK; ++t) {
        T* r = col + (c * KK + t) * stride + s * HW;
        const std::int64_t* tt = tab.data() + t * HW;
        for (std::int64_t p = 0; p < HW; ++p) r[p] = tt[p] >= 0 ? xc[tt[p]] : T(0);
      }
    }
}

}  // namespace

template <class T>
void im2col(const T* x, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* col, std::int64_t ld) {
  const std::int64_t HW = g.Ho * g.Wo, stride = ld > 0 ? ld : S * HW;
  if (HW <= kTablePlane) return im2col_table(x, S, xs, g, col, stride);
  if (g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.Wo == g.W) return im2col_shifted(x, S, xs, g, col, stride);
  for (std::int64_t s = 0; s < S; ++s) {
    const T* xsmp = x + s * xs;
    for (std::int64_t c = 0; c < g.C; ++c)
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          T* row = col + ((c * g.kh + ki) * g.kw + kj) * stride + s * HW;
          const T* xc = xsmp + c * g.H * g.W;
          const std::int64_t off = kj * g.dw - g.pl;  // iw = ow * sw + off
          const auto [lo, hi] = valid_cols(off, g.sw, g.W, g.Wo);
          for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
            const std::int64_t ih = oh * g.sh - g.pt + ki * g.dh;
            T* r = row + oh * g.Wo;
            if (ih < 0 || ih >= g.H) {
              std::fill(r, r + g.Wo, T(0));
              continue;
            }
            const T* xr = xc + ih * g.W;
            std::fill(r, r + lo, T(0));
            if (g.sw == 1) {
              if (hi > lo) std::copy(xr + lo + off, xr + hi + off, r + lo);
            } else {
              for (std::int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw + off];
            }
            std::fill(r + hi, r + g.Wo, T(0));
          }
        }
  }
}

template <class T>
void col2im_add(const T* col, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* x) {
  const std::int64_t HW = g.Ho * g.Wo, stride = S * HW;
  if (HW <= kTablePlane) {  // the adjoint of im2col_table
    const std::vector<std::int64_t>& tab = window_table(g);
    const std::int64_t KK = g.kh * g.kw, HWi = g.H * g.W;
    for (std::int64_t c = 0; c < g.C; ++c)
      for (std::int64_t s = 0; s < S; ++s) {
        T* xc = x + s * xs + c * HWi;
        for (std::int64_t t = 0; t < KK; ++t) {
          const T* r = col + (c * KK + t) * stride + s * HW;
          const std::int64_t* tt = tab.data() + t * HW;
          for (std::int64_t p = 0; p < HW; ++p)
            if (tt[p] >= 0) xc[tt[p]] += r[p];
        }
      }
    return;
  }
  for (std::int64_t s = 0; s < S; ++s) {
    T* xsmp = x + s * xs;
    for (std::int64_t c = 0; c < g.C; ++c)
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          const T* row = col + ((c * g.kh + ki) * g.kw + kj) * stride + s * HW;
          T* xc = xsmp + c * g.H * g.W;
          const std::int64_t off = kj * g.dw - g.pl;  // iw = ow * sw + off
          const auto [lo, hi] = valid_cols(off, g.sw, g.W, g.Wo);
          for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
            const std::int64_t ih = oh * g.sh - g.pt + ki * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            const T* r = row + oh * g.Wo;
            T* xr = xc + ih * g.W;
            for (std::int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw + off] += r[ow];
          }
        }
  }
}

namespace {
// to_rows / from_rows with the plane size HW known at compile time (0: a runtime n). Small planes
// (ResNet-50's 2x2 stage, whose 1x1 convolutions run the built-in kernels) copied 16-byte segments
// through a memmove call each: about 9% of that model's HVP time, for a copy of a few MB.
// Samples are taken in blocks whose segments fill a cache line of the rows, so that each channel's
// row is written (or read) a line at a time and each sample's planes are visited in order:
// channel-major order over all samples visits one segment per sample on lines a sample stride
// apart, 16 KB on ResNet-50's 1024-channel 2x2 planes, which alias in the L1 cache.

// f(std::integral_constant<int, HWc>) with HWc = HW for the plane sizes that get fixed-size
// copies, else 0 (the general loop).
template <class F>
void by_plane_size(std::int64_t HW, const F& f) {
  switch (HW) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// f(c, s) for every channel c < C and sample s < S, in blocks of samples filling a cache line.
template <int HWc, class T, class F>
void by_segments(std::int64_t S, std::int64_t C, const F& f) {
  constexpr std::int64_t sb = HWc > 0 && HWc * sizeof(T) < 64 ? std::int64_t(64 / (HWc * sizeof(T))) : 1;
  for (std::int64_t s0 = 0; s0 < S; s0 += sb) {
    const std::int64_t s1 = std::min(S, s0 + sb);
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t s = s0; s < s1; ++s) f(c, s);
  }
}

// b[0..n) (+)= a[0..n), n = HWc when HWc > 0.
template <int HWc, class T>
void segment(const T* a, T* b, std::int64_t n, bool accumulate) {
  if constexpr (HWc > 0) {
    if (accumulate)
      for (int i = 0; i < HWc; ++i) b[i] += a[i];
    else
      for (int i = 0; i < HWc; ++i) b[i] = a[i];
  } else if (accumulate) {
    for (std::int64_t i = 0; i < n; ++i) b[i] += a[i];
  } else {
    std::copy_n(a, n, b);
  }
}
}  // namespace

template <class T>
void to_rows(const T* y, std::int64_t S, std::int64_t ys, std::int64_t c0, std::int64_t C, std::int64_t HW, T* rows,
             std::int64_t ld) {
  const std::int64_t stride = ld > 0 ? ld : S * HW;
  by_plane_size(HW, [&](auto hwc) {
    constexpr int HWc = decltype(hwc)::value;
    by_segments<HWc, T>(S, C, [&](std::int64_t c, std::int64_t s) {
      segment<HWc>(y + s * ys + (c0 + c) * HW, rows + c * stride + s * HW, HW, false);
    });
  });
}

template <class T>
void from_rows(const T* rows, std::int64_t S, std::int64_t ys, std::int64_t c0, std::int64_t C, std::int64_t HW, T* y,
               bool accumulate) {
  by_plane_size(HW, [&](auto hwc) {
    constexpr int HWc = decltype(hwc)::value;
    by_segments<HWc, T>(S, C, [&](std::int64_t c, std::int64_t s) {
      segment<HWc>(rows + (c * S + s) * HW, y + s * ys + (c0 + c) * HW, HW, accumulate);
    });
  });
}

#define CURV_INSTANTIATE(T)                                                                                     \
  template void im2col<T>(const T*, std::int64_t, std::int64_t, const ConvGeometry&, T*, std::int64_t);         \
  template void col2im_add<T>(const T*, std::int64_t, std::int64_t, const ConvGeometry&, T*);                   \
  template void to_rows<T>(const T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, T*,   \
                           std::int64_t);                                                                        \
  template void from_rows<T>(const T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, T*, bool);
CURV_INSTANTIATE(float)
CURV_INSTANTIATE(double)
#undef CURV_INSTANTIATE

}  // namespace curv::internal
