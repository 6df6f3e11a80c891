#pragma once
// The normalization of one row, shared by LayerNormalization and BatchNormalization (internal).
#include <cmath>
#include <cstdint>
#include <vector>

#include "src/core/internal/lane_sum.h"

namespace curv::internal {

// One row x of length M (mean over the row):
//   xh = (x - mean x) r,  r = (var x + eps)^(-1/2)
//   xh' = r (x' - mean x' - xh mean(xh x'))
//   g_x = r (h - mean h - xh mean(h xh))                    h = dL/dxh
//   g_x' = r (h' - mean h' - xh mean(h' xh))
//          - r^2 mean(xh x') (h - mean h - xh mean(h xh)) - r (xh' mean(h xh) + xh mean(h xh'))
// LayerNorm rows are contiguous; BatchNorm (training) rows are channels gathered over N and HW.
// Sums over a row in double (lane_sum.h: 16 interleaved partial sums, then a pairwise tree):
// vectorizable (a single serial chain made BatchNorm ~15% of a ResNet-20 training step) and
// identical for any thread count.

template <class T>
struct RowNorm {
  static void forward(const T* x, std::int64_t M, T eps, T* xh, T& r, T& mean, T& var) {
    const double m = lane_sum<double>(M, [x](std::int64_t i) { return x[i]; }) / double(M);
    const T mt = T(m);
    const double v = lane_sum<double>(M, [x, mt](std::int64_t i) { return (x[i] - mt) * (x[i] - mt); }) / double(M);
    mean = mt;
    var = T(v);
    r = T(1.0 / std::sqrt(v + double(eps)));
    for (std::int64_t i = 0; i < M; ++i) xh[i] = (x[i] - mt) * r;
  }
  static T mean(const T* a, std::int64_t M) {
    return T(lane_sum<double>(M, [a](std::int64_t i) { return a[i]; }) / double(M));
  }
  static T mean_prod(const T* a, const T* b, std::int64_t M) {
    return T(lane_sum<double>(M, [a, b](std::int64_t i) { return a[i] * b[i]; }) / double(M));
  }
  // Returns mean(xh x') (backward_tangent's `a`).
  static T tangent(const T* xh, T r, const T* tx, std::int64_t M, T* txh) {
    const T m1 = mean(tx, M), m2 = mean_prod(xh, tx, M);
    for (std::int64_t i = 0; i < M; ++i) txh[i] = r * (tx[i] - m1 - xh[i] * m2);
    return m2;
  }
  static void backward(const T* xh, T r, const T* h, std::int64_t M, T* gx) {
    const T m1 = mean(h, M), m2 = mean_prod(h, xh, M);
    for (std::int64_t i = 0; i < M; ++i) gx[i] = r * (h[i] - m1 - xh[i] * m2);
  }
  // backward_tangent for several directions of one row: the parts that depend on h alone (mean h,
  // mean(h xh)) are computed once, and txh = xh' with a = mean(xh x') comes from the caller's
  // tangent() (null: first-order part only). The same operations as backward_tangent: same bits.
  struct HSums {
    T mh, mhx;
  };
  static HSums h_sums(const T* xh, const T* h, std::int64_t M) { return {mean(h, M), mean_prod(h, xh, M)}; }
  static void backward_tangent(const T* xh, T r, const T* h, const HSums& hs, const T* th, const T* txh, T a,
                               std::int64_t M, T* out) {
    backward(xh, r, th, M, out);
    if (!txh) return;
    const T mhtx = mean_prod(h, txh, M);
    for (std::int64_t i = 0; i < M; ++i)
      out[i] += -r * r * a * (h[i] - hs.mh - xh[i] * hs.mhx) - r * (txh[i] * hs.mhx + xh[i] * mhtx);
  }
  // th: h'; tx may be null (first-order part only). scratch: M elements.
  static void backward_tangent(const T* xh, T r, const T* h, const T* th, const T* tx, std::int64_t M, T* out,
                               std::vector<T>& scratch) {
    if (!tx) return backward(xh, r, th, M, out);
    scratch.resize(M);
    const T a = tangent(xh, r, tx, M, scratch.data());
    backward_tangent(xh, r, h, h_sums(xh, h, M), th, scratch.data(), a, M, out);
  }
};

}  // namespace curv::internal
