// Depthwise convolution on zero-padded planes. Stride-1, dilation-1 convs (nearly all of them) run on
// "full-width" rows: with the padded plane xp of width Wp = Wo + kw - 1, output (oh, ow) sits at flat
// index i = oh Wp + ow and tap (ki, kj) reads xp[i + ki Wp + kj], so each tap is one contiguous
// multiply-add over Ho Wp elements (the kw - 1 extra columns per row are discarded). Other strides
// run row by row.
#include "src/core/internal/depthwise.h"

#include <algorithm>

#include "src/core/tensor.h"

namespace curv::internal {

namespace {

struct Padded {
  std::int64_t Hp, Wp;
  bool full_width;  // stride 1, dilation 1
};

Padded padded(const ConvGeometry& g) {
  Padded p;
  p.Hp = (g.Ho - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  p.Wp = (g.Wo - 1) * g.sw + (g.kw - 1) * g.dw + 1;
  p.full_width = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
  return p;
}

template <class T>
Buffer<T>& scratch(int slot) {
  thread_local Buffer<T> bufs[2];
  return bufs[slot];
}

// sum_i a[i] b[i] in 16 interleaved partial sums (so that it vectorizes), added in a fixed order.
template <class T>
T dot(const T* a, const T* b, std::int64_t n) {
  constexpr int kLanes = 16;
  T part[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += a[i + l] * b[i + l];
  T acc = 0;
  for (; i < n; ++i) acc += a[i] * b[i];
  for (int l = 0; l < kLanes; ++l) acc += part[l];
  return acc;
}

// xp[r, c] = x[r - pt, c - pl] (zero outside x) for the Hp x Wp window area.
template <class T>
void pad_plane(const T* x, const ConvGeometry& g, const Padded& p, T* xp) {
  for (std::int64_t r = 0; r < p.Hp; ++r) {
    T* row = xp + r * p.Wp;
    const std::int64_t ih = r - g.pt;
    if (ih < 0 || ih >= g.H) {
      std::fill(row, row + p.Wp, T(0));
      continue;
    }
    const std::int64_t lo = std::clamp<std::int64_t>(g.pl, 0, p.Wp), hi = std::clamp<std::int64_t>(g.pl + g.W, lo, p.Wp);
    std::fill(row, row + lo, T(0));
    std::copy(x + ih * g.W + (lo - g.pl), x + ih * g.W + (hi - g.pl), row + lo);
    std::fill(row + hi, row + p.Wp, T(0));
  }
}

// x[r - pt, c - pl] += xp[r, c] inside x: the adjoint of pad_plane.
template <class T>
void unpad_add(const T* xp, const ConvGeometry& g, const Padded& p, T* x) {
  for (std::int64_t r = 0; r < p.Hp; ++r) {
    const std::int64_t ih = r - g.pt;
    if (ih < 0 || ih >= g.H) continue;
    const std::int64_t lo = std::clamp<std::int64_t>(g.pl, 0, p.Wp), hi = std::clamp<std::int64_t>(g.pl + g.W, lo, p.Wp);
    const T* row = xp + r * p.Wp;
    T* xr = x + ih * g.W - g.pl;
    for (std::int64_t c = lo; c < hi; ++c) xr[c] += row[c];
  }
}

// Calls f(o, input plane offset, output plane offset) for every sample and output channel o.
template <class F>
void planes(std::int64_t S, std::int64_t O, const ConvGeometry& g, F&& f) {
  const std::int64_t m = O / g.C, HW = g.H * g.W, OHW = g.Ho * g.Wo;
  for (std::int64_t s = 0; s < S; ++s)
    for (std::int64_t o = 0; o < O; ++o) f(o, (s * g.C + o / m) * HW, (s * O + o) * OHW);
}

}  // namespace

template <class T>
void depthwise_forward(const T* x, const T* w, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* y) {
  const Padded p = padded(g);
  const std::int64_t K = g.kh * g.kw, L = (g.Ho - 1) * p.Wp + g.Wo;
  Buffer<T>& xp = scratch<T>(0);
  Buffer<T>& acc = scratch<T>(1);
  xp.resize(p.Hp * p.Wp);
  acc.resize(p.full_width ? L : 0);
  planes(S, O, g, [&](std::int64_t o, std::int64_t xi, std::int64_t yi) {
    pad_plane(x + xi, g, p, xp.data());
    const T* wo = w + o * K;
    T* yo = y + yi;
    if (p.full_width) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          const T wv = wo[ki * g.kw + kj];
          const T* b = xp.data() + ki * p.Wp + kj;
          for (std::int64_t i = 0; i < L; ++i) acc[i] += wv * b[i];
        }
      for (std::int64_t oh = 0; oh < g.Ho; ++oh)
        for (std::int64_t ow = 0; ow < g.Wo; ++ow) yo[oh * g.Wo + ow] += acc[oh * p.Wp + ow];
      return;
    }
    for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
      T* yr = yo + oh * g.Wo;
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          const T wv = wo[ki * g.kw + kj];
          const T* b = xp.data() + (oh * g.sh + ki * g.dh) * p.Wp + kj * g.dw;
          for (std::int64_t ow = 0; ow < g.Wo; ++ow) yr[ow] += wv * b[ow * g.sw];
        }
    }
  });
}

template <class T>
void depthwise_grad_x(const T* gy, const T* w, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* gx) {
  const Padded p = padded(g);
  const std::int64_t K = g.kh * g.kw, L = (g.Ho - 1) * p.Wp + g.Wo;
  Buffer<T>& gxp = scratch<T>(0);
  Buffer<T>& gyf = scratch<T>(1);
  gxp.resize(p.Hp * p.Wp);
  gyf.resize(p.full_width ? L : 0);
  planes(S, O, g, [&](std::int64_t o, std::int64_t xi, std::int64_t yi) {
    std::fill(gxp.begin(), gxp.end(), T(0));
    const T* wo = w + o * K;
    const T* go = gy + yi;
    if (p.full_width) {
      // g_Y on full-width rows (zero in the extra columns), then one contiguous scatter per tap.
      for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
        std::copy_n(go + oh * g.Wo, g.Wo, gyf.data() + oh * p.Wp);
        if (oh + 1 < g.Ho) std::fill_n(gyf.data() + oh * p.Wp + g.Wo, p.Wp - g.Wo, T(0));
      }
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          const T wv = wo[ki * g.kw + kj];
          T* b = gxp.data() + ki * p.Wp + kj;
          for (std::int64_t i = 0; i < L; ++i) b[i] += wv * gyf[i];
        }
    } else {
      for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
        const T* gr = go + oh * g.Wo;
        for (std::int64_t ki = 0; ki < g.kh; ++ki)
          for (std::int64_t kj = 0; kj < g.kw; ++kj) {
            const T wv = wo[ki * g.kw + kj];
            T* b = gxp.data() + (oh * g.sh + ki * g.dh) * p.Wp + kj * g.dw;
            for (std::int64_t ow = 0; ow < g.Wo; ++ow) b[ow * g.sw] += wv * gr[ow];
          }
      }
    }
    unpad_add(gxp.data(), g, p, gx + xi);
  });
}

template <class T>
void depthwise_grad_w(const T* gy, const T* x, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* gw) {
  const Padded p = padded(g);
  const std::int64_t K = g.kh * g.kw, L = (g.Ho - 1) * p.Wp + g.Wo;
  Buffer<T>& xp = scratch<T>(0);
  Buffer<T>& gyf = scratch<T>(1);
  xp.resize(p.Hp * p.Wp);
  gyf.resize(p.full_width ? L : 0);
  planes(S, O, g, [&](std::int64_t o, std::int64_t xi, std::int64_t yi) {
    pad_plane(x + xi, g, p, xp.data());
    T* wo = gw + o * K;
    const T* go = gy + yi;
    if (p.full_width) {
      for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
        std::copy_n(go + oh * g.Wo, g.Wo, gyf.data() + oh * p.Wp);
        if (oh + 1 < g.Ho) std::fill_n(gyf.data() + oh * p.Wp + g.Wo, p.Wp - g.Wo, T(0));
      }
      for (std::int64_t ki = 0; ki < g.kh; ++ki)
        for (std::int64_t kj = 0; kj < g.kw; ++kj) {
          wo[ki * g.kw + kj] += dot(gyf.data(), xp.data() + ki * p.Wp + kj, L);
        }
      return;
    }
    for (std::int64_t ki = 0; ki < g.kh; ++ki)
      for (std::int64_t kj = 0; kj < g.kw; ++kj) {
        T acc = 0;
        for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
          const T* gr = go + oh * g.Wo;
          const T* b = xp.data() + (oh * g.sh + ki * g.dh) * p.Wp + kj * g.dw;
          if (g.sw == 1)
            acc += dot(gr, b, g.Wo);
          else
            for (std::int64_t ow = 0; ow < g.Wo; ++ow) acc += gr[ow] * b[ow * g.sw];
        }
        wo[ki * g.kw + kj] += acc;
      }
  });
}

#define CURV_INSTANTIATE(T)                                                                                     \
  template void depthwise_forward<T>(const T*, const T*, std::int64_t, std::int64_t, const ConvGeometry&, T*); \
  template void depthwise_grad_x<T>(const T*, const T*, std::int64_t, std::int64_t, const ConvGeometry&, T*);  \
  template void depthwise_grad_w<T>(const T*, const T*, std::int64_t, std::int64_t, const ConvGeometry&, T*);
CURV_INSTANTIATE(float)
CURV_INSTANTIATE(double)
#undef CURV_INSTANTIATE

}  // namespace curv::internal
