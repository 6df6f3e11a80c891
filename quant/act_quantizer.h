#pragma once
/// \file act_quantizer.h
/// Activation quantizers: per-tensor uniform quantization of a layer's input with a fixed range
/// calibrated on data, applied in the graph as a FakeQuantize node (src/core/fake_quantize.h).
///
/// Parameters from a calibrated range [lo, hi] and b bits (the weight quantizer's conventions,
/// quantizer.h, computed in double):
///   asymmetric  lo' = min(lo, 0), hi' = max(hi, 0), levels -2^(b-1) .. 2^(b-1)-1,
///               s = (hi' - lo') / (2^b - 1), z = clamp(qmin - rint(lo' / s), qmin, qmax)
///   symmetric   levels -(2^(b-1)-1) .. 2^(b-1)-1, s = max(|lo|, |hi|) / (2^(b-1) - 1), z = 0
///   a zero range gets s = 1.
/// Unlike weights, activations outside the range are clipped to it.
///
/// Calibration (over the calibration data, each quantized layer's input):
///   min/max      lo = min a, hi = max a over every value of every sample
///   percentile   lo, hi = the (100 - p)-th and p-th percentiles of the values (p = 99.99 clips the
///                most extreme 0.01% at each end), computed exactly on an evenly strided sample of
///                at most `max_values` values per layer (all values when fewer)
///
/// Every quantizer has a scalar reference (`fake_quantize_ref`) and a fast path (`fake_quantize`,
/// Eigen); they are bit-identical, and both equal the FakeQuantize op in the same precision.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "quant/model_layers.h"
#include "quant/quantizer.h"
#include "src/core/dataset.h"
#include "src/core/fake_quantize.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

/// Scale, zero point and levels of an activation quantizer. Throws std::invalid_argument for bits
/// outside 2..8 or a range that is not finite or has lo > hi.
FakeQuantizeAttrs act_quant_params(double lo, double hi, int bits, Scheme scheme);

/// y = (clamp(rint(x / s) + z, qmin, qmax) - z) s with s rounded to T (the op's arithmetic).
template <typename T>
void fake_quantize_ref(std::span<const T> x, const FakeQuantizeAttrs& q, std::span<T> y);
template <typename T>
void fake_quantize(std::span<const T> x, const FakeQuantizeAttrs& q, std::span<T> y);

enum class CalibMethod { MinMax, Percentile };

struct CalibOptions {
  CalibMethod method = CalibMethod::MinMax;
  /// Upper percentile p for CalibMethod::Percentile (50 < p <= 100).
  double percentile = 99.99;
  /// Values kept per layer for the percentile (evenly strided).
  std::int64_t max_values = std::int64_t(1) << 21;
};

/// A layer input's calibrated range and size per sample.
struct ActRange {
  double lo = 0.0, hi = 0.0;
  std::int64_t numel = 0;  // values per sample
};

/// Ranges of the inputs of `layers` over `data` (one forward and backward pass per micro-batch).
std::vector<ActRange> calibrate_activations(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                            const CalibOptions& opts, ObjectiveOptions objective);

/// e_i(a) = (1/N) sum_n ||Q_a(x_n) - x_n||^2 of each layer's input over `data`, for each width in
/// `bits` with the calibrated ranges: result [layer][width].
std::vector<std::vector<double>> activation_errors(const Model& m, const Dataset& data,
                                                   const std::vector<ModelLayer>& layers,
                                                   const std::vector<ActRange>& ranges, std::span<const int> bits,
                                                   Scheme scheme, ObjectiveOptions objective);

/// "minmax" | "percentile", and back.
std::string to_string(CalibMethod m);
CalibMethod calib_method_from_string(const std::string& s);

}  // namespace curv::quant
