#pragma once
// Depthwise 2-D convolution kernels (internal to Conv): groups with one input channel each, as in
// MobileNet. A GEMM per group would have one row and kh*kw inner terms, so these run the window
// sums directly on zero-padded planes instead.
//
// Shapes: x [S, C, H, W], y [S, O, Ho, Wo] with O = C m (depth multiplier m = Og), w [O, 1, kh, kw];
// output channel o reads input channel o / m. Sample strides are C H W and O Ho Wo. With
//   y[s, o, oh, ow] = sum_{ki, kj} w[o, ki, kj] x[s, o / m, oh sh - pt + ki dh, ow sw - pl + kj dw]
// (zero outside the input), the three kernels are the map, its adjoint in x and its adjoint in w.
// All accumulate into their output; every sum runs in a fixed order.
#include <cstdint>

#include "src/core/internal/im2col.h"

namespace curv::internal {

/// y += conv(x, w) for S samples.
template <class T>
void depthwise_forward(const T* x, const T* w, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* y);

/// gx += conv^T(gy, w): the adjoint in x.
template <class T>
void depthwise_grad_x(const T* gy, const T* w, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* gx);

/// gw += sum_s corr(gy_s, x_s): the adjoint in w.
template <class T>
void depthwise_grad_w(const T* gy, const T* x, std::int64_t S, std::int64_t O, const ConvGeometry& g, T* gw);

}  // namespace curv::internal
