#pragma once
/// \file ops.h
/// Factories for every op of the engine. Attribute semantics follow ONNX (opset 11-18) so the
/// importer maps nodes one to one; the C++ model builder uses the same factories.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/elementwise_table.h"
#include "src/core/op.h"

namespace curv {

#define CURV_UNARY_ENUM(Name, ...) Name,
/// The unary ops of elementwise_table.h (Relu, LeakyRelu, Sigmoid, Tanh, ...).
enum class UnaryKind { CURV_UNARY_OPS(CURV_UNARY_ENUM) };
#undef CURV_UNARY_ENUM
#define CURV_BINARY_ENUM(Name) Name,
/// The binary ops of elementwise_table.h (Add, Sub, Mul, Div, PRelu, Max, Min, Equal, ...).
enum class BinaryKind { CURV_BINARY_OPS(CURV_BINARY_ENUM) };
#undef CURV_BINARY_ENUM

/// Elementwise y = f(x). `param`, `param2`: the op's parameters p and q of its table row
/// (LeakyRelu's alpha, Pow's constant exponent, HardSigmoid's alpha and beta, Clip's min and max;
/// ignored by ops without them). Throws std::invalid_argument for a non-finite parameter.
/// make_op(OpSpec) fills in the defaults of the table; this factory does not.
OpPtr make_unary(UnaryKind kind, double param = 0.0, double param2 = 0.0);
/// Numpy-broadcasting y = a (op) b.
OpPtr make_binary(BinaryKind kind);
/// The ONNX type name of a binary op ("Add", ...).
const char* binary_type(BinaryKind kind);

/// Y = alpha * A' B' + beta * C with A' = transA ? A^T : A (2-D), C broadcast (optional input).
OpPtr make_gemm(bool trans_a, bool trans_b, double alpha = 1.0, double beta = 1.0);
/// Numpy matmul: batched over broadcast leading dims; 1-D operands are promoted as numpy does.
OpPtr make_matmul();
/// "onednn <version>" or "eigen": what float32 matrix products of 2^21 flops and more, and batches
/// of products of 2^17 flops and more (in MatMul, Gemm, Einsum, the recurrent ops and the built-in
/// convolutions' GEMMs) run on now. oneDNN's matmul, one thread per call, when curv was built with
/// oneDNN, unless the environment sets CURV_GEMM_BACKEND=eigen; Eigen for other products and for
/// float64.
std::string gemm_backend();
/// Turns the oneDNN GEMMs on or off for the process; returns whether they were on.
bool set_onednn_gemms(bool on);

struct Conv2dAttrs {
  std::array<std::int64_t, 2> kernel{1, 1};    // [kh, kw]; must match W's spatial dims
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::array<std::int64_t, 4> pads{0, 0, 0, 0};  // ONNX order: top, left, bottom, right
  std::int64_t groups = 1;
};
/// Y = conv(X, W) + B.  X: [N, C, H, W], W: [O, C/groups, kh, kw], B: [O] (optional input).
/// Float32 convolutions with groups = 1 (output planes of 16+ positions) and float32 depthwise ones
/// run on oneDNN when curv was built with it (CMake option CURV_ONEDNN, Debian libdnnl-dev), one
/// thread per call; float64 and other grouped or small-plane convolutions, and
/// all of them when the environment sets CURV_CONV_BACKEND=builtin, run curv's own im2col + GEMM
/// kernels, the tested reference.
OpPtr make_conv(const Conv2dAttrs& a);
/// "onednn <version>", "onednn <version> winograd" (3x3 convolutions on oneDNN's Winograd kernels
/// where they pay; CURV_CONV_WINOGRAD=0 turns them off) or "builtin": what float32 ungrouped
/// convolutions run on now.
std::string conv_backend();
/// Turns the oneDNN convolutions on or off for the process (no effect without oneDNN compiled
/// in); returns whether they were on. Not meant to be called while products run.
bool set_onednn_convolutions(bool on);

struct ConvTranspose2dAttrs {
  std::array<std::int64_t, 2> kernel{1, 1};  // [kh, kw]; must match W's spatial dims
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::array<std::int64_t, 4> pads{0, 0, 0, 0};      // top, left, bottom, right (cropped from the output)
  std::array<std::int64_t, 2> output_padding{0, 0};  // added at the bottom / right; < stride
  std::int64_t groups = 1;
};
/// Y = conv_transpose(X, W) + B, the adjoint of Conv in X (ONNX ConvTranspose without output_shape).
/// X: [N, C, H, W], W: [C, O/groups, kh, kw], B: [O] (optional input); Y: [N, O, Ho, Wo] with
/// Ho = stride (H - 1) + output_padding + (kh - 1) dilation + 1 - pad_top - pad_bottom.
OpPtr make_conv_transpose(const ConvTranspose2dAttrs& a);

struct ResizeAttrs {
  std::string mode = "nearest";                                  // nearest | linear
  std::string coordinate_transformation_mode = "half_pixel";     // half_pixel | pytorch_half_pixel |
                                                                 // asymmetric | align_corners
  std::string nearest_mode = "round_prefer_floor";               // floor | ceil | round_prefer_*
  std::vector<double> scales;                                    // [sh, sw], or empty and
  std::vector<std::int64_t> sizes;                               // [Ho, Wo]
};
/// ONNX Resize of the spatial dims of X [N, C, H, W] (nearest or bilinear; linear in X).
/// Output [N, C, floor(H sh), floor(W sw)] or [N, C, Ho, Wo].
OpPtr make_resize(const ResizeAttrs& a);

/// ONNX LSTM (layout 0, gates i, o, f, c, zero initial state, no peepholes): X [T, B, I],
/// W [D, 4H, I], R [D, 4H, H], optional B [D, 8H] -> Y [T, D, B, H]; D = 2 for "bidirectional",
/// else 1 ("forward" or "reverse").
OpPtr make_lstm(std::int64_t hidden_size, const std::string& direction);

/// ONNX GRU with linear_before_reset = 1 (as PyTorch exports nn.GRU; gates z, r, h, zero initial
/// state): X [T, B, I], W [D, 3H, I], R [D, 3H, H], optional B [D, 6H] -> Y [T, D, B, H].
OpPtr make_gru(std::int64_t hidden_size, const std::string& direction);

struct Pool2dAttrs {
  std::array<std::int64_t, 2> kernel{2, 2};
  std::array<std::int64_t, 2> stride{2, 2};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::array<std::int64_t, 4> pads{0, 0, 0, 0};  // top, left, bottom, right
  bool ceil_mode = false;
  bool count_include_pad = false;  // AveragePool only
};
OpPtr make_max_pool(const Pool2dAttrs& a);
OpPtr make_average_pool(const Pool2dAttrs& a);
/// [N, C, H, W] -> [N, C, 1, 1]
OpPtr make_global_average_pool();

/// Softmax / LogSoftmax along `axis` (opset >= 13 semantics: a single axis).
OpPtr make_softmax(std::int64_t axis, bool log);
/// ReduceMean / ReduceSum over `axes` (empty: all axes).
OpPtr make_reduce(bool mean, std::vector<std::int64_t> axes, bool keepdims);

/// BatchNormalization. Inputs X [N, C, ...], scale [C], B [C], mean [C], var [C].
/// Inference mode normalizes with the given statistics; training mode with the batch's
/// (biased variance, as PyTorch), and saves the batch mean and unbiased variance in OpState.saved
/// [0], [1] so a trainer can update running statistics.
OpPtr make_batch_norm(double epsilon, bool training);
/// The same BatchNormalization op in the other mode (same epsilon); nullptr if `op` is not one.
OpPtr batch_norm_mode(const Op& op, bool training);
/// InstanceNormalization: X [N, C, D1, ...] normalized over D1, ... per sample and channel, then
/// scale [C] and B [C] per channel (biased variance; nn.GroupNorm's ONNX export).
OpPtr make_instance_norm(double epsilon);
/// LayerNormalization over axes [axis, rank). Inputs X, scale, (B) shaped like the normalized dims.
OpPtr make_layer_norm(std::int64_t axis, double epsilon);

// Shape ops (all linear). Target shapes follow ONNX Reshape: 0 copies the input dim, -1 infers.
OpPtr make_reshape(Shape target, bool allowzero = false);
OpPtr make_flatten(std::int64_t axis);
OpPtr make_transpose(std::vector<std::int64_t> perm);
OpPtr make_slice(std::vector<std::int64_t> starts, std::vector<std::int64_t> ends, std::vector<std::int64_t> axes,
                 std::vector<std::int64_t> steps);
OpPtr make_concat(std::int64_t axis);
/// Gather along `axis` with constant indices of shape `indices_shape`.
OpPtr make_gather(std::int64_t axis, std::vector<std::int64_t> indices, Shape indices_shape);
/// Embedding: ONNX Gather along `axis` with indices from the data (token ids), inputs table x and
/// indices; y = x[:axis] ++ indices.shape ++ x[axis+1:]. Linear in the table (its VJP is a
/// scatter-add); indices must be integers in [0, x.shape[axis]) and get no gradient.
OpPtr make_embedding(std::int64_t axis = 0);
OpPtr make_unsqueeze(std::vector<std::int64_t> axes);
OpPtr make_squeeze(std::vector<std::int64_t> axes);  // empty: all dims of size 1
/// Where: y = c ? a : b with c, a, b numpy-broadcast; c is a mask held as numbers (true where
/// nonzero); only the selected branch gets a derivative, c none.
OpPtr make_where();
/// Expand: x broadcast with `shape` (numpy rules in both directions, as ONNX Expand).
OpPtr make_expand(Shape shape, std::vector<std::int64_t> batch_axes = {});
/// Tile: x repeated `repeats[d]` times along each dim d.
OpPtr make_tile(std::vector<std::int64_t> repeats);
/// Trilu: the lower (j - i <= k) or upper (j - i >= k) triangle of the last two dims, 0 elsewhere.
OpPtr make_trilu(std::int64_t k, bool upper);
/// ReduceMax (min = false) / ReduceMin over `axes` (empty: all axes); ties share the derivative
/// evenly, as torch.amax / amin.
OpPtr make_reduce_max(bool min, std::vector<std::int64_t> axes, bool keepdims);

/// Einsum with an explicit or implicit output, e.g. "bhqd,bhkd->bhqk" or "bi,oij,bj->bo"; no
/// ellipsis, no label repeated within one operand (throws std::invalid_argument naming the equation).
OpPtr make_einsum(const std::string& equation);

/// y = x under another ONNX type name (Dropout, Cast, Pad), so that export writes it back.
OpPtr make_identity(const char* type);

}  // namespace curv
