#pragma once
/// \file model_quant.h
/// HAWQ-style quantization of a model: which tensors are quantized, their Hessian sensitivities,
/// and applying a plan.
///
/// Quantizable layers are the weight tensors (rank >= 2 parameters) of Conv, Gemm and MatMul
/// nodes; biases, norms and other parameters stay float32 and are counted as unquantized storage.
/// The quantizer's channel dimension is the tensor's first dimension (Conv / Gemm weights:
/// output channels; a MatMul weight [in, out] is grouped along `in`).
///
/// Sensitivities (HAWQ-V1 / V2 / Q-BERT) use the Hessian block of the layer's weight tensor:
///   eig        lambda_max(H_i)                      (Spectra Lanczos, relative tol `eig_tol`)
///   trace      Tr(H_i) / n_i                        (Hutchinson, `trace_probes` Rademacher probes)
///   eig-stats  mean + std of lambda_max(H_i) over `subsets` disjoint data subsets
#include <string>
#include <vector>

#include "quant/bit_allocator.h"
#include "quant/plan.h"
#include "quant/quantizer.h"
#include "quant/sensitivity.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

struct ModelLayer {
  std::string name;      // the weight parameter's name, e.g. "layer1.0.conv1.weight"
  int param = -1;        // index into Model::params()
  Shape shape;           // weight shape
  std::int64_t numel = 0;
  std::int64_t macs = 0;  // multiply-accumulates per sample
};

std::vector<ModelLayer> quantizable_layers(const Model& m);

struct SensitivityOptions {
  /// Which statistic (HAWQ-V1 eig, HAWQ-V2 trace, Q-BERT eig-stats).
  SensitivityKind kind = SensitivityKind::Trace;
  /// Hutchinson probes per layer for `trace`.
  std::int64_t trace_probes = 64;
  /// Relative tolerance of lambda_max for `eig` / `eig-stats`.
  double eig_tol = 1e-4;
  /// Data subsets for `eig-stats`.
  int subsets = 4;
  /// Seed of every randomized estimator.
  std::uint64_t seed = 0;
  /// How the objective runs (precision, micro-batch, cache).
  ObjectiveOptions objective;
};

/// One Sensitivity per layer, in `layers` order. Also returns lambda_max in `lambda_max` when it
/// was computed (eig, eig-stats mean), else NaN.
std::vector<Sensitivity> layer_sensitivities(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                             const SensitivityOptions& opts);

/// e_i(b) = ||Q_b(W_i) - W_i||^2 for layer i of `layers` and every option b of problem layer i
/// (result [layer][option], problem option order), quantized by `spec` (its bits ignored), so that
/// Omega_i(b) = s_i e_i(b) for any sensitivities. REQUIRES: problem.layers matches `layers`.
std::vector<std::vector<double>> quantization_errors(const Model& m, const std::vector<ModelLayer>& layers,
                                                     const QuantSpec& spec, const AllocProblem& problem);

/// Sets Omega_i(b) = s_i e_i(b) for every option of every problem layer (e from quantization_errors).
void set_omegas(AllocProblem& problem, const std::vector<std::vector<double>>& err, std::span<const double> s);

/// sum_i s_i e_i(bits_i): the loss increase that sensitivities `s` predict for a bit assignment.
/// std::invalid_argument if a width is not among layer i's options.
double predicted_omega(const AllocProblem& problem, const std::vector<std::vector<double>>& err,
                       std::span<const double> s, std::span<const int> bits);

/// Bytes of float32 storage outside the quantized layers.
std::int64_t unquantized_bytes(const Model& m, const std::vector<ModelLayer>& layers);

/// A plan with every layer at `bits` (no sensitivities): `curv quant eval --uniform B`.
Plan uniform_plan(const Model& m, int bits, Scheme scheme, Granularity granularity, std::int64_t groups);

struct AppliedLayer {
  std::string name;
  QuantizedTensor<double> q;
};

/// Replaces each plan layer's weights in `m` by their dequantized values. Throws
/// std::invalid_argument naming the layer if the plan does not fit the model.
std::vector<AppliedLayer> apply_plan(Model& m, const Plan& plan);

/// Writes the quantized model: a curv checkpoint of the dequantized model plus, per layer,
/// /quant/<name>/{codes (int8), scales, zero_points, group_begin} and the plan as a JSON
/// attribute of /quant. Atomic (src/io/atomic_file.h); refuses to replace the model's own file
/// or the plan's model.
void save_quantized(const Model& m, const Plan& plan, const std::vector<AppliedLayer>& layers, const std::string& path);

}  // namespace curv::quant

namespace curv::quant {
/// Layout version of the `curv quant plan --h5` file (docs/hdf5-schema.md).
inline constexpr std::int64_t kFrontierSchemaVersion = 1;

/// Writes sensitivities and the Pareto frontier for `curv quant plan --h5` (docs/hdf5-schema.md):
/// /quant/layers/{names, numel, macs, sensitivity (measured s_i), negative_top_eigenvalue (int8)},
/// /quant/frontier/{size_bytes, omega, avg_bits, bits [points x layers]}, root attributes
/// format="curv", schema_version, curv_version, created_utc, command, model_sha256; /quant
/// attributes sensitivity (kind) and order (of the frontier's problem: its Omegas use the
/// reordered s'), /quant/frontier attribute exact. Sizes include the float32 parts (the
/// problem's extra_bits). Atomic (src/io/atomic_file.h).
void save_frontier(const std::string& path, const std::string& command, const std::string& model_sha256,
                   const std::vector<ModelLayer>& layers, const std::vector<Sensitivity>& sens,
                   const std::string& kind, const std::string& order, const ParetoFrontier& frontier);

/// The sensitivities stored by save_frontier, to make more plans without new Hessian work
/// (`curv quant plan --sensitivities F.h5`). Returns them in `layers` order and their kind in `kind`.
/// std::runtime_error("<path>: ...") if the file is not such a file (or of a newer schema_version),
/// was written for a model with another sha256 (or without one), or its layers do not match
/// `layers` (count or sizes).
std::vector<Sensitivity> load_sensitivities(const std::string& path, const std::vector<ModelLayer>& layers,
                                            const std::string& model_sha256, std::string& kind);
}  // namespace curv::quant
