#pragma once
/// \file model_quant.h
/// HAWQ-style quantization of a model: the quantization errors and predicted loss increases of
/// its layers (model_layers.h), uniform plans, applying a plan, and the quantized checkpoint.
/// The sensitivities themselves are measured by hessian_sensitivity.h.
#include <string>
#include <vector>

#include "quant/bit_allocator.h"
#include "quant/hessian_sensitivity.h"
#include "quant/model_layers.h"
#include "quant/plan.h"
#include "quant/quantizer.h"
#include "quant/sensitivity.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

/// e_i(b) = ||Q_b(W_i) - W_i||^2 for layer i of `layers` and every option b of problem layer i
/// (result [layer][option], problem option order), quantized by `spec` (its bits ignored), so that
/// Omega_i(b) = s_i e_i(b) for any sensitivities. REQUIRES: problem.layers matches `layers`.
std::vector<std::vector<double>> quantization_errors(const Model& m, const std::vector<ModelLayer>& layers,
                                                     const QuantSpec& spec, const AllocProblem& problem);

/// Sets Omega_i(b) = 1/2 s_i e_i(b) for every option of every problem layer (e from
/// quantization_errors); an option's activation part, if any, is added by the caller.
void set_omegas(AllocProblem& problem, const std::vector<std::vector<double>>& err, std::span<const double> s);

/// 1/2 sum_i s_i e_i(bits_i): the loss increase that sensitivities `s` predict for a bit assignment.
/// std::invalid_argument if a width is not among layer i's options.
double predicted_omega(const AllocProblem& problem, const std::vector<std::vector<double>>& err,
                       std::span<const double> s, std::span<const int> bits);

/// A plan with every layer at `bits` (no sensitivities): `curv quant eval --uniform B`.
Plan uniform_plan(const Model& m, int bits, Scheme scheme, Granularity granularity, std::int64_t groups);

struct AppliedLayer {
  std::string name;
  QuantizedTensor<double> q;
};

/// Replaces each plan layer's weights in `m` by their dequantized values (q channel-major, see
/// model_layers.h). Throws std::invalid_argument naming the layer if the plan does not fit the
/// model (unknown or non-quantizable tensor, another size or channel count).
std::vector<AppliedLayer> apply_plan(Model& m, const Plan& plan);

/// Writes the quantized model: a curv checkpoint of the dequantized model plus, per layer,
/// /quant/<name>/{codes (int8), scales, zero_points, group_begin} and the plan as a JSON
/// attribute of /quant. Atomic (src/io/atomic_file.h); refuses to replace the model's own file
/// or the plan's model.
void save_quantized(const Model& m, const Plan& plan, const std::vector<AppliedLayer>& layers, const std::string& path);

}  // namespace curv::quant

namespace curv::quant {
/// Layout version of the `curv quant plan --h5` file (docs/hdf5-schema.md).
inline constexpr std::int64_t kFrontierSchemaVersion = 2;

/// Writes sensitivities and the Pareto frontier for `curv quant plan --h5` (docs/hdf5-schema.md):
/// /quant/layers/{names, numel, macs, sensitivity (measured s_i), lambda_max, lambda_mean,
/// lambda_std, trace, trace_stderr, trace_probes (NaN / 0 where not measured),
/// negative_top_eigenvalue (int8)}, with `report` also /quant/trace/{samples, offsets, known}
/// (each layer's probe samples) and its cost as attributes,
/// /quant/frontier/{size_bytes, bops, omega, avg_bits, bits, act_bits [points x layers]}, root attributes
/// format="curv", schema_version, curv_version, created_utc, command, model_sha256; /quant
/// attributes sensitivity (kind) and order (of the frontier's problem: its Omegas use the
/// reordered s'), /quant/frontier attribute exact. Sizes include the float32 parts (the
/// problem's extra_bits). Atomic (src/io/atomic_file.h).
void save_frontier(const std::string& path, const std::string& command, const std::string& model_sha256,
                   const std::vector<ModelLayer>& layers, const std::vector<Sensitivity>& sens,
                   const std::string& kind, const std::string& order, const ParetoFrontier& frontier,
                   const SensitivityReport* report = nullptr);

/// The sensitivities stored by save_frontier, to make more plans without new Hessian work
/// (`curv quant plan --sensitivities F.h5`). Returns them in `layers` order and their kind in `kind`
/// (a schema_version 1 file's "eig" held lambda_max: it is read as "eig-bound").
/// std::runtime_error("<path>: ...") if the file is not such a file (or of a newer schema_version),
/// was written for a model with another sha256 (or without one), or its layers do not match
/// `layers` (count or sizes).
std::vector<Sensitivity> load_sensitivities(const std::string& path, const std::vector<ModelLayer>& layers,
                                            const std::string& model_sha256, std::string& kind);
}  // namespace curv::quant
