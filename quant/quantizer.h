#pragma once
/// \file quantizer.h
/// Uniform weight quantizers: symmetric and asymmetric, per-tensor, per-output-channel and
/// group-wise (Q-BERT), 2 to 8 bits, round to nearest with ties to even.
///
/// A weight tensor is row-major with shape [out, ...]: the output channel is the first dimension and
/// each channel is the contiguous run of inner = numel / out values. Quantization groups are runs of
/// consecutive output channels, so every group is one contiguous slice of the data:
///   per-tensor   1 group of all `out` channels,
///   per-channel  `out` groups of one channel each,
///   group-wise   G groups (Q-BERT): group g holds channels [floor(g out / G), floor((g+1) out / G)).
///
/// Per group, with b bits (scale s and zero point z computed in the weight's precision T):
///   symmetric   qmax = 2^(b-1) - 1, levels -qmax..qmax (restricted range, as HAWQ),
///               s = max|w| / qmax, z = 0,             q = clamp(rint(w / s), -qmax, qmax)
///   asymmetric  levels qmin = -2^(b-1) .. qmax = 2^(b-1) - 1 (signed, as PyTorch qint8),
///               lo = min(min w, 0), hi = max(max w, 0) (zero is exactly representable),
///               s = (hi - lo) / (2^b - 1), z = clamp(qmin - rint(lo / s), qmin, qmax),
///               q = clamp(rint(w / s) + z, qmin, qmax)
///   dequantized w^ = (q - z) s.  A group that is all zero gets s = 1 (and w^ = 0).
/// rint rounds half to even (PyTorch's torch.round / quantize_per_tensor). The clip range is the
/// group's own min/max (no percentile clipping), so every weight lies inside it and
/// |w^ - w| <= s / 2 (up to one rounding of T).
///
/// Storage accounting (see docs/quant-plan.md): b bits per weight plus, per group, a float32 scale
/// (32 bits) and, for asymmetric, an 8-bit zero point.
///
/// Each quantizer has a plain scalar reference `quantize_ref` (loops, obviously correct) and a fast
/// path `quantize` (Eigen, vectorized) that gives bit-identical results; tests hold one to the other.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace curv::quant {

enum class Scheme { Symmetric, Asymmetric };
enum class Granularity { PerTensor, PerChannel, Group };

/// Bit widths accepted by every quantizer.
inline constexpr int kMinBits = 2;
inline constexpr int kMaxBits = 8;
/// Storage per group: one float32 scale, plus an int8 zero point for asymmetric schemes.
inline constexpr std::int64_t kScaleBits = 32;
inline constexpr std::int64_t kZeroPointBits = 8;

/// How to quantize one tensor.
struct QuantSpec {
  int bits = 8;                       // 2..8
  Scheme scheme = Scheme::Symmetric;  // symmetric (z = 0) or asymmetric (zero point)
  Granularity granularity = Granularity::PerChannel;
  int groups = 1;  // G for Granularity::Group (1 <= G <= out); else ignored
};

/// Result of quantizing one tensor; all arrays are row-major in the input's layout.
template <typename T>
struct QuantizedTensor {
  QuantSpec spec;
  std::vector<std::int64_t> shape;        // input shape, [out, ...]
  std::vector<std::int8_t> codes;         // [numel] integer levels
  std::vector<T> scales;                  // [num_groups]
  std::vector<std::int32_t> zero_points;  // [num_groups], 0 for symmetric
  std::vector<std::int64_t> group_begin;  // [num_groups + 1] output-channel boundaries
  std::vector<T> dequantized;             // [numel] (codes - z) * s
  std::int64_t num_groups() const { return static_cast<std::int64_t>(scales.size()); }
};

/// Throws std::invalid_argument("bits (= 9) must be in 2..8") unless kMinBits <= bits <= kMaxBits.
void check_bits(int bits);

/// Lowest / highest integer level for `bits` under `scheme` (see the file comment).
int level_min(int bits, Scheme scheme);
int level_max(int bits, Scheme scheme);

/// Number of quantization groups for a tensor with `out` output channels.
/// REQUIRES: out >= 1; for Granularity::Group, 1 <= spec.groups <= out (else std::invalid_argument).
std::int64_t num_groups(const QuantSpec& spec, std::int64_t out);

/// Output-channel boundaries of the groups: [num_groups + 1], first 0, last `out`.
std::vector<std::int64_t> group_boundaries(const QuantSpec& spec, std::int64_t out);

/// Storage of the scales (and zero points) of a tensor: num_groups * (32 [+ 8 if asymmetric]) bits.
std::int64_t scale_overhead_bits(Scheme scheme, std::int64_t num_groups);

/// Fast path (Eigen). w: [numel] row-major with shape [out, ...] (empty shape = scalar).
/// Throws std::invalid_argument for bits outside 2..8, a shape whose product differs from w.size(),
/// an empty tensor, an invalid group count, or a non-finite weight (naming its flat index).
template <typename T>
QuantizedTensor<T> quantize(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec);

/// Scalar reference with the same contract and bit-identical output.
template <typename T>
QuantizedTensor<T> quantize_ref(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec);

/// ||Q(W) - W||^2, accumulated in double (the fast path).
template <typename T>
double quantization_error_sq(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec);

/// "symmetric" | "asymmetric";  "per-tensor" | "per-channel" | "group".
std::string to_string(Scheme scheme);
std::string to_string(Granularity granularity);
/// Inverse of to_string; std::invalid_argument naming the accepted values otherwise.
Scheme scheme_from_string(std::string_view s);
Granularity granularity_from_string(std::string_view s);

}  // namespace curv::quant
