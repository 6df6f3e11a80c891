#pragma once
// Patch matrices of 2-D convolutions and pooling windows on NCHW planes (internal to Conv and pooling).
//
// A chunk of S samples is laid out for one GEMM per group: col(X) is [C*kh*kw, S*Ho*Wo] with sample
// s at column offset s*Ho*Wo, row (c, ki, kj) holding x[c, oh*sh - pt + ki*dh, ow*sw - pl + kj*dw]
// (zero outside the input). col2im_add is its adjoint, x += col^T(col). Output planes of at most
// 16 positions go through a table of input offsets (rows of one to four values made the row copies
// and fills of the general paths mostly call overhead); larger planes copy whole rows, or the
// whole shifted plane for stride-1 convs that keep the width.
#include <array>
#include <cstdint>
#include <string>

namespace curv::internal {

/// Geometry of one 2-D window op on inputs [.., C, H, W]: kernel, stride, dilation, pads (top,
/// left, bottom, right) and the output size.
struct ConvGeometry {
  std::int64_t C, H, W, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, Ho, Wo;
  /// 1x1, stride 1, no padding: col(X) is X itself.
  bool identity_cols() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && pb == 0 && pr == 0;
  }
};

/// Output length of a window op along one dim (ONNX/PyTorch rule; 0 when the input is too small):
///   floor_or_ceil((in + p0 + p1 - ((k - 1) d + 1)) / s) + 1,
/// and with ceil_mode the last window must start inside the input or the left pad.
/// REQUIRES: k, s, d >= 1 and p0, p1 >= 0. Throws std::invalid_argument when a sum overflows.
std::int64_t window_out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                             std::int64_t p1, bool ceil_mode);

/// Checks the attributes of a 2-D window op named `type`: kernel, strides and dilations >= 1, pads
/// >= 0 (and smaller than the kernel when `pads_below_kernel`, as ONNX requires of pooling), every
/// value, the kernel area and the dilated extent (k - 1) d at most kMaxTensorElements.
/// Throws std::invalid_argument("<type>: ...").
void check_window_attrs(const std::string& type, const std::array<std::int64_t, 2>& kernel,
                        const std::array<std::int64_t, 2>& strides, const std::array<std::int64_t, 2>& dilations,
                        const std::array<std::int64_t, 4>& pads, bool pads_below_kernel);

/// Whether some output window along one dim has no tap inside the input (taps o s - p0 + i d,
/// i < k). Only possible with dilation > 1; a MaxPool rejects such geometries.
bool has_empty_window(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, std::int64_t p0,
                      std::int64_t out);

/// col[C*kh*kw, S*Ho*Wo] = im2col of S samples of x (sample stride xs elements, C planes each).
/// `ld` is the row stride of col (0: S*Ho*Wo); a larger one lets two patch matrices sit side by
/// side in one [C*kh*kw, 2*S*Ho*Wo] operand (Conv's fused second-order weight gradient).
template <class T>
void im2col(const T* x, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* col, std::int64_t ld = 0);

/// x += col2im(col), the adjoint of im2col.
template <class T>
void col2im_add(const T* col, std::int64_t S, std::int64_t xs, const ConvGeometry& g, T* x);

/// y: [S, Ctot, HW] channels [c0, c0+C) -> rows [C, S*HW] with row stride `ld` (0: S*HW).
template <class T>
void to_rows(const T* y, std::int64_t S, std::int64_t ys, std::int64_t c0, std::int64_t C, std::int64_t HW, T* rows,
             std::int64_t ld = 0);

/// rows [C, S*HW] -> y: [S, Ctot, HW] channels [c0, c0+C), overwriting or adding.
template <class T>
void from_rows(const T* rows, std::int64_t S, std::int64_t ys, std::int64_t c0, std::int64_t C, std::int64_t HW, T* y,
               bool accumulate);

}  // namespace curv::internal
