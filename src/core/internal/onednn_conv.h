// Optional oneDNN backend for float32, ungrouped 2-D convolutions (ConvOp in conv.cpp).
//
// Each call converts curv's NCHW / OIHW tensors to the layouts oneDNN's kernels want
// (channels-last activations for the direct kernels, nChw16c for Winograd, blocked weights), runs
// one oneDNN primitive on ONE thread, and converts the result back, overwriting or adding to the
// destination. One thread per call keeps the contract of the engine: its micro-batch runs are the
// unit of parallelism, and a call's bits do not depend on how many threads the process has
// (oneDNN's backward-weights reduction would otherwise be split by the OpenMP thread count).
//
// Compiled in when CMake finds oneDNN (CURV_ONEDNN); at run time it is used unless the
// environment sets CURV_CONV_BACKEND=builtin or set_onednn_conv(false) turned it off. The
// built-in im2col + GEMM kernels stay the reference: tests compare the two.
#pragma once

#include <cstdint>

namespace curv::internal {

// One convolution's geometry: X [N, C, H, W], W [O, C / G, kh, kw], Y [N, O, Ho, Wo], in G groups
// (G > 1: grouped, e.g. depthwise with G = C; only the plain convolution, no stacked pairs).
struct DnnlConvShape {
  std::int64_t N, C, H, W, O, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, Ho, Wo;
  std::int64_t G = 1;
};

// True when oneDNN is compiled in and enabled.
bool onednn_conv_enabled();
// Whether oneDNN builds the primitives that the calls below need for geometry s: bit 0 the plain
// convolution (onednn_conv_forward, onednn_conv_backward), bit 1 the forward pair (2C input
// channels), bit 2 the backward-data pair (2O outputs), bit 3 the backward-weights pair (2N
// samples). Builds and caches them on first use; a geometry oneDNN rejects (it throws) is
// remembered and answered false, so that the caller runs its own kernels instead of failing.
bool onednn_conv_supports(const DnnlConvShape& s, unsigned kinds) noexcept;
constexpr unsigned kOnednnPlain = 1, kOnednnForwardPair = 2, kOnednnBackwardDataPair = 4,
                   kOnednnBackwardWeightsPair = 8;
// Turns the backend on or off for the whole process (tests, benchmarks); returns the old state.
// A no-op returning false when oneDNN is not compiled in.
bool set_onednn_conv(bool on);
// 3x3, stride-1 convolutions with 32 or more input and output channels (multiples of 16) on
// planes of 8x8 or more (4x4 on AMD CPUs) run oneDNN's Winograd F(4x4, 3x3) kernels, where they
// were measured faster than the direct ones, and so do the stacked convolutions of the tangent
// pairs from 16 channels on; their rounding differs from the direct kernels (~1e-6 relative in
// float32). CURV_CONV_WINOGRAD=0 in the environment, or set_onednn_winograd(false), keeps every
// convolution direct; returns the old state (false when oneDNN is not compiled in).
bool set_onednn_winograd(bool on);
// The smallest input and output plane (positions) that goes to the Winograd kernels: 64 (8x8),
// 16 (4x4) on AMD CPUs, where the direct kernels were measured slower on 4x4 planes too.
std::int64_t onednn_winograd_min_positions();
// Whether the convolution of geometry s that `kind` (one of the bits above: the plain one, or a
// pair) runs is on the Winograd kernels (builds it if needed); false for any other `kind`.
bool onednn_conv_winograd(const DnnlConvShape& s, unsigned kind = kOnednnPlain) noexcept;
// "onednn <version>", "onednn <version> winograd" (Winograd kernels where they pay) or "builtin".
const char* conv_backend_name();
// "onednn <version>", or "" when oneDNN is not compiled in.
const char* onednn_name();

// y (+)= conv(x, w)
void onednn_conv_forward(const DnnlConvShape& s, const float* x, const float* w, float* y, bool accumulate);
// gx (+)= adj(w) gy and gw (+)= sum over samples and positions of gy x-patches^T; gx or gw may be
// null (not computed). gy is converted once for both.
void onednn_conv_backward(const DnnlConvShape& s, const float* gy, const float* x, const float* w, float* gx,
                          float* gw, bool accumulate_x, bool accumulate_w);
// The tangent kernels' two-term products, each as ONE convolution over stacked operands (so a
// direction's result does not depend on how many directions share the call):
// yt (+)= conv(xt, w) + conv(x, wt)
void onednn_conv_forward_pair(const DnnlConvShape& s, const float* xt, const float* w, const float* x,
                              const float* wt, float* yt, bool accumulate);
// gxt (+)= adj(w) gyt + adj(wt) gy
void onednn_conv_backward_data_pair(const DnnlConvShape& s, const float* gyt, const float* w, const float* gy,
                                    const float* wt, float* gxt, bool accumulate);
// gwt (+)= gyt x^T + gy xt^T (summed over samples and positions)
void onednn_conv_backward_weights_pair(const DnnlConvShape& s, const float* gyt, const float* x, const float* gy,
                                       const float* xt, float* gwt, bool accumulate);

// float32 GEMM on a oneDNN matmul primitive, for internal::gemm (gemm.cpp): Z (+)= alpha op(X)
// op(Y) with op(X) [m, k], op(Y) [k, n], row-major operands of leading dimensions ldx, ldy, ldz.
// Like the convolutions, a primitive per geometry and thread, planned and run for one thread, so
// a product's bits depend only on its geometry. Returns false (Z untouched) when oneDNN is not
// compiled in or refuses the geometry; the caller then runs Eigen. Used unless the environment
// sets CURV_GEMM_BACKEND=eigen or set_onednn_gemm(false) turned it off.
bool onednn_gemm_enabled();
bool set_onednn_gemm(bool on);
bool onednn_gemm(bool tx, bool ty, std::int64_t m, std::int64_t n, std::int64_t k, const float* X, std::int64_t ldx,
                 const float* Y, std::int64_t ldy, float* Z, std::int64_t ldz, float alpha, bool accumulate);
// The same for nb products at once, Z[b] (+)= alpha op(X[b]) op(Y[b]), one primitive with a batch
// dimension: operand b starts bx, by, bz elements after operand b - 1 (bx or by 0: shared by every
// b; bz must not be 0). Each b gets the bits of the same product run alone (oneDNN 2.6's brgemm
// matmul loops over the batch outside the product; checked for nb 1, 4 and 64 at k 16-1000).
bool onednn_batched_gemm(std::int64_t nb, std::int64_t bx, std::int64_t by, std::int64_t bz, bool tx, bool ty,
                         std::int64_t m, std::int64_t n, std::int64_t k, const float* X, std::int64_t ldx,
                         const float* Y, std::int64_t ldy, float* Z, std::int64_t ldz, float alpha, bool accumulate);

}  // namespace curv::internal
