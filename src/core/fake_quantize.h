#pragma once
/// \file fake_quantize.h
/// FakeQuantize: uniform quantization of a tensor followed by dequantization, per tensor,
///     y = (clamp(rint(x / s) + z, qmin, qmax) - z) s
/// with scale s > 0, integer zero point z and levels qmin..qmax (ONNX QuantizeLinear followed by
/// DequantizeLinear, PyTorch's torch.fake_quantize_per_tensor_affine). rint rounds half to even;
/// x / s and the rest are computed in the model's precision T with s rounded to T once.
///
/// Derivatives are those of quantization-aware training, the straight-through estimator of
/// PyTorch's FakeQuantize: dy/dx = 1 where qmin <= rint(x / s) + z <= qmax (the value is inside
/// the clipping range) and 0 where it is clipped; the second derivative is 0. So
///     g_x = m g_y,   y' = m x',   g_x' = m g_y'     with the mask m computed from the primal x.
/// The op has no parameters; its attributes are data (FakeQuantizeAttrs), so a graph holding it
/// can be written and rebuilt.
#include <cstdint>
#include <optional>

#include "src/core/op.h"

namespace curv {

struct FakeQuantizeAttrs {
  double scale = 1.0;          // s > 0, finite
  std::int64_t zero_point = 0;  // qmin <= z <= qmax
  std::int64_t qmin = -128;
  std::int64_t qmax = 127;     // qmin < qmax, both within int32
};

/// Throws std::invalid_argument naming the attribute for s <= 0 or not finite, qmin >= qmax, or a
/// zero point outside qmin..qmax.
OpPtr make_fake_quantize(const FakeQuantizeAttrs& a);

/// The attributes of a FakeQuantize op; nullopt for any other op.
std::optional<FakeQuantizeAttrs> fake_quantize_attrs(const Op& op);

}  // namespace curv
