#pragma once
/// \file sensitivity.h
/// Per-block sensitivities and the quadratic loss-increase model of the HAWQ family.
///
/// For a quantizable block i with weights W_i (n_i values) and Hessian block H_i, the second-order
/// term of the loss change caused by quantizing W_i to b bits, 1/2 dW^T H_i dW, is modelled as
///   Omega_i(b) = 1/2 s_i ||Q_b(W_i) - W_i||^2          (loss units)
/// with the sensitivity s_i one of (the papers' Omega omits the 1/2; the allocation is the same)
///   "eig"        HAWQ-V1 (Dong et al. 2019): s_i = lambda_max(H_i) / n_i, the paper's ordering
///                statistic; its block-wise fine-tuning order sorts lambda_max(H_i) ||dW_i||^2
///   "eig-bound"  s_i = lambda_max(H_i): 1/2 lambda_max ||dW||^2 bounds 1/2 dW^T H_i dW from above
///                (what curv called "eig" before; not a published HAWQ criterion)
///   "trace"      HAWQ-V2 (Dong et al. 2020): s_i = Tr(H_i) / n_i, the average eigenvalue
///   "eig-stats"  Q-BERT (Shen et al. 2020): s_i = |mean_S(lambda_max)| + std_S(lambda_max) over S
///                random disjoint data subsets (population standard deviation, divide by S)
/// A negative top eigenvalue means the checkpoint is not at a minimum of the loss restricted to
/// that block; it is flagged, and the value is used as it is (Omega_i may then be negative, which
/// the optimizer handles: it simply prefers fewer bits there). Q-BERT's |mean| keeps such a block
/// sensitive, as the paper intends.
///
/// The sensitivities themselves come from the curvature operators; this file only turns eigenvalue
/// and trace estimates into s_i and s_i into Omega_i(b).
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "quant/quantizer.h"

namespace curv::quant {

enum class SensitivityKind { Eig, EigBound, Trace, EigStats };

/// s_i with its provenance.
struct Sensitivity {
  SensitivityKind kind = SensitivityKind::Eig;
  double value = 0.0;                    // s_i
  bool negative_top_eigenvalue = false;  // lambda_max < 0 (for eig-stats: on any subset)
  double lambda_max = std::numeric_limits<double>::quiet_NaN();  // eig, eig-bound; eig-stats: mean
  double mean = 0.0;                     // eig-stats: mean of lambda_max over subsets
  double stddev = 0.0;                   // eig-stats: population std of lambda_max over subsets
  int subsets = 0;                       // eig-stats: S
  double trace = std::numeric_limits<double>::quiet_NaN();  // trace: the estimate of Tr(H_i)
  double trace_stderr = std::numeric_limits<double>::quiet_NaN();  // its standard error
  std::int64_t trace_probes = 0;         // trace: probes behind the estimate
};

/// HAWQ-V1: s = lambda_max / numel. Throws std::invalid_argument for a non-finite value or numel < 1.
Sensitivity eig_sensitivity(double lambda_max, std::int64_t numel);

/// The Rayleigh bound: s = lambda_max (not divided by the block size).
Sensitivity eig_bound_sensitivity(double lambda_max);

/// HAWQ-V2: s = trace / numel. lambda_max, when known, sets the negative-eigenvalue flag.
/// REQUIRES: numel >= 1, finite trace.
Sensitivity trace_sensitivity(double trace, std::int64_t numel, std::optional<double> lambda_max = std::nullopt);

/// Q-BERT: s = |mean| + std (population) of lambda_max over subsets. REQUIRES: at least one subset.
Sensitivity eig_stats_sensitivity(std::span<const double> lambda_max_per_subset);

/// Omega(b) = 1/2 s ||Q_b(W) - W||^2 for every b in `bits`, with the scheme and granularity of
/// `spec` (its `bits` field is ignored). Throws std::invalid_argument for a bit width outside 2..8.
template <typename T>
std::vector<double> loss_increase(double s, std::span<const T> w, std::span<const std::int64_t> shape,
                                  const QuantSpec& spec, std::span<const int> bits);

/// "eig" | "eig-bound" | "trace" | "eig-stats", and back (std::invalid_argument naming the accepted
/// values).
std::string to_string(SensitivityKind kind);
SensitivityKind sensitivity_kind_from_string(std::string_view s);

/// Which layer gets which sensitivity when the allocator runs: the measured assignment, or one of
/// the two baselines that keep the same multiset of values {s_i} but break the link to the
/// Hessian, so that a plan solved under the same budget by the same exact allocator isolates what
/// the curvature information is worth (HAWQ-V2's reverse-order ablation, plus a random control):
///   Hessian  s'_i = s_i
///   Reverse  rank-reversed: the layer with the k-th largest s gets the k-th smallest value
///            (ranks by value, ties by layer index), so the most sensitive layer becomes the least
///            sensitive and vice versa; s' = s o pi with pi the rank reversal.
///   Random   a uniformly random permutation of the values, drawn by Fisher-Yates from
///            std::mt19937_64(seed) (j = rng() mod (i + 1), i = L-1 .. 1; the modulo bias is below
///            L / 2^64), so the same seed gives the same plan on every platform.
/// Omega_i(b) = s'_i ||Q_b(W_i) - W_i||^2 then decides the bits; the quantization error term and
/// the layer sizes are the layer's own, so reverse and random plans still see n_i and the weight
/// ranges, only not the curvature.
///   Equal    every layer gets the mean of the values (the mean of |s| if the mean is not positive):
///            the plan then minimizes the sum of squared quantization errors, no curvature at all.
enum class SensitivityOrder { Hessian, Reverse, Random, Equal };

/// s' for `order` (see SensitivityOrder); `seed` is used by Random only.
std::vector<double> reorder_sensitivities(std::span<const double> s, SensitivityOrder order, std::uint64_t seed = 0);

/// "hessian" | "reverse" | "random" | "equal", and back (std::invalid_argument naming the accepted values).
std::string to_string(SensitivityOrder order);
SensitivityOrder sensitivity_order_from_string(std::string_view s);

}  // namespace curv::quant
