#pragma once
/// \file hessian_sensitivity.h
/// The Hessian statistics behind each layer's sensitivity (sensitivity.h), measured on a model:
///
///   eig, eig-bound  lambda_max(H_i) by Spectra Lanczos (relative tolerance eig_tol), one block
///                   operator per layer
///   eig-stats       lambda_max(H_i) on S random disjoint subsets of round(subset_frac N) samples
///                   each (Q-BERT), drawn by Fisher-Yates from std::mt19937_64(seed)
///   trace           Tr(H_i) by Hutchinson with Rademacher probes, either
///     per-layer     one block product per layer and probe (HAWQ-V2's procedure), stopping a
///                   layer once its stderr <= trace_tol |Tr| (checked every 8 probes), or
///     shared        one whole-model product per probe for all layers (curvature/block_trace.h),
///                   v_i^T (H v)_i, with the rank-`trace_sketch` control variate; after
///                   `trace_probes` shared probes, a layer that still misses trace_tol gets
///                   per-layer probes until it meets it (at most trace_probes more).
/// The report counts the products of each phase, so the two trace methods can be compared at
/// equal per-layer standard error.
#include <cstdint>
#include <vector>

#include "quant/model_layers.h"
#include "quant/sensitivity.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

enum class TraceMethod { PerLayer, Shared };

struct SensitivityOptions {
  /// Which statistic (HAWQ-V1 eig, eig-bound, HAWQ-V2 trace, Q-BERT eig-stats).
  SensitivityKind kind = SensitivityKind::Trace;
  /// How per-layer traces are estimated.
  TraceMethod trace_method = TraceMethod::PerLayer;
  /// Hutchinson probes at most: per layer (per-layer), shared probes (shared).
  std::int64_t trace_probes = 64;
  /// Target relative standard error of every layer's trace (0: run all probes).
  double trace_tol = 0.0;
  /// Rank of the shared method's control variate (0: plain shared probes).
  std::int64_t trace_sketch = 16;
  /// Relative tolerance of lambda_max for eig, eig-bound and eig-stats.
  double eig_tol = 1e-4;
  /// Data subsets and the fraction of the samples in each (eig-stats).
  int subsets = 4;
  double subset_frac = 0.1;
  /// Seed of every randomized estimator and of the subsets.
  std::uint64_t seed = 0;
  /// How the objective runs (precision, micro-batch, cache).
  ObjectiveOptions objective;
};

/// What the measurement cost, and the per-layer trace samples (for convergence plots).
struct SensitivityReport {
  std::int64_t products = 0;         // curvature products, whole-model and per-layer alike
  std::int64_t shared_products = 0;  // of which whole-model products (shared trace, sketch included)
  std::int64_t shared_probes = 0;    // shared probes
  std::int64_t fallback_layers = 0;  // shared: layers that needed per-layer probes
  double seconds = 0.0;
  /// trace: per layer, the probe samples in order (shared: residual samples, add trace_known[i]).
  std::vector<std::vector<double>> trace_samples;
  std::vector<double> trace_known;
};

/// One Sensitivity per layer, in `layers` order. std::invalid_argument for bad options (e.g.
/// subsets x subset_frac beyond the data), std::runtime_error if Lanczos does not converge.
std::vector<Sensitivity> layer_sensitivities(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                             const SensitivityOptions& opts, SensitivityReport* report = nullptr);

/// The S disjoint random subsets of eig-stats: sample indices, S x round(frac N).
std::vector<std::vector<std::int64_t>> random_subsets(std::int64_t samples, int subsets, double frac,
                                                      std::uint64_t seed);

/// The samples `idx` of `d`, in that order.
Dataset gather_samples(const Dataset& d, const std::vector<std::int64_t>& idx);

/// "per-layer" | "shared", and back.
std::string to_string(TraceMethod m);
TraceMethod trace_method_from_string(const std::string& s);

}  // namespace curv::quant
