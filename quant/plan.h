#pragma once
/// \file plan.h
/// A mixed-precision quantization plan and its JSON file, `plan.json` (schema in docs/quant-plan.md).
///
///   {
///     "format": "curv-quant-plan", "schema_version": 2, "curv_version": "0.1.0",
///     "created_utc": "2026-01-01T00:00:00Z", "command": "curv quant plan ...",
///     "model": {"path": "m.onnx", "sha256": "<64 hex>"},
///     "sensitivity": "trace", "order": "hessian", "order_seed": 0,
///     "hessian_omega": 0.01, "measured_omega": 0.012, "inter_layer_omega": 0.001,
///     "fine_tune_order": ["conv1.weight", ...], "selection": {...}, "activations": {...},
///     "act_bits": 8, "candidate_bits": [2, 3, 4, 8], "act_candidate_bits": [4, 8],
///     "budget": {"kind": "avg-bits", "value": 4.0} | null, "shared": [["a", "b"]],
///     "optimizer": {"method": "pareto-dp", "status": "optimal", "work": 123},
///     "unquantized_bytes": 0,
///     "layers": [{"name", "bits", "scheme", "granularity", "groups", "transposed", "sensitivity",
///                 "negative_top_eigenvalue", "omega", "numel", "macs", "pinned",
///                 "act_bits", "act_scheme", "act_lo", "act_hi", "act_numel", "act_sensitivity",
///                 "act_omega"}, ...],
///     "totals": {"size_bytes", "avg_bits", "bops", "predicted_omega", "weight_bits", "overhead_bits"}
///   }
///
/// Totals are derived from the layers (compute_totals) and checked on reading:
///   weight_bits = sum n_i b_i, overhead_bits = sum scale_overhead_bits(scheme_i, groups_i),
///   size_bytes = ceil((weight_bits + overhead_bits) / 8) + unquantized_bytes,
///   avg_bits = weight_bits / sum n_i (no scales, no float parts: uniform B bits has avg_bits B),
///   bops = sum MACs_i b_i a_i (a_i = the layer's act_bits, or the plan's when 0),
///   predicted_omega = sum_i (omega_i + act_omega_i) + inter_layer_omega.
/// schema_version 1 files (no activation or inter-layer fields) are read as well.
/// Files are written atomically (src/io/atomic_file.h), so a failed write never leaves a partial plan.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "quant/bit_allocator.h"
#include "quant/quantizer.h"
#include "src/core/timer.h"

namespace curv::quant {

inline constexpr int kPlanSchemaVersion = 2;
inline constexpr const char* kPlanFormat = "curv-quant-plan";

/// The project version compiled into curv_quant (CMake PROJECT_VERSION).
std::string curv_version_string();
/// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (one definition for all of curv, src/timer.h).
using curv::utc_timestamp;

struct PlanLayer {
  std::string name;
  int bits = 8;  // 2..8
  Scheme scheme = Scheme::Symmetric;
  Granularity granularity = Granularity::PerChannel;
  std::int64_t groups = 1;   // number of quantization groups (scales) in the tensor
  bool transposed = false;   // stored [in, out], quantized as [out, in] (model_layers.h)
  double sensitivity = 0.0;  // s_i
  bool negative_top_eigenvalue = false;
  double omega = 0.0;  // Omega_i(bits), weights
  std::int64_t numel = 0;
  std::int64_t macs = 0;  // per sample
  bool pinned = false;
  // Activation quantization of the layer's input (act_bits 0: not quantized; then only the plan's
  // act_bits enters the BOPs).
  int act_bits = 0;                       // 2..8
  Scheme act_scheme = Scheme::Asymmetric;  // per-tensor, range [act_lo, act_hi] (act_quantizer.h)
  double act_lo = 0.0, act_hi = 0.0;
  std::int64_t act_numel = 0;     // activation values per sample
  double act_sensitivity = 0.0;   // Tr(H_a) / act_numel
  double act_omega = 0.0;         // 1/2 act_sensitivity E_n ||Q(a_n) - a_n||^2
};

struct PlanTotals {
  std::int64_t size_bytes = 0;
  double avg_bits = 0.0;
  std::int64_t bops = 0;
  double predicted_omega = 0.0;
  std::int64_t weight_bits = 0;
  std::int64_t overhead_bits = 0;
};

struct Plan {
  int schema_version = kPlanSchemaVersion;
  std::string curv_version = curv_version_string();
  std::string created_utc;  // optional
  std::string command;
  std::string model_path;        // optional
  std::string model_sha256;      // 64 lower-case hex digits
  std::string sensitivity_kind;  // "eig" | "trace" | "eig-stats" | "" (none, e.g. uniform)
  /// How the measured sensitivities were assigned to layers before allocation (SensitivityOrder):
  /// "hessian" (as measured), "reverse" or "random" (baselines; layers[i].sensitivity and omega
  /// then hold the reassigned values the optimizer saw).
  std::string order = "hessian";
  std::optional<std::int64_t> order_seed;  // the permutation seed of order "random"
  /// 1/2 sum_i s_i ||Q_b(W_i) - W_i||^2 with the *measured* s_i: the block-diagonal loss increase
  /// that the curvature model predicts for this plan whatever the order (= the weight part of
  /// predicted_omega for order "hessian").
  std::optional<double> hessian_omega;
  /// 1/2 dW^T H dW of the whole plan's weight perturbation, measured by one Hessian product on the
  /// plan's data (inter-layer terms included).
  std::optional<double> measured_omega;
  /// sum of the inter-layer terms dW_i^T H_{i,i+1} dW_{i+1} of the chosen plan (when planned with them).
  double inter_layer_omega = 0.0;
  /// HAWQ-V1's block-wise fine-tuning order: layers by descending lambda_max(H_i) ||dW_i||^2.
  std::vector<std::string> fine_tune_order;
  /// How the plan was selected among the frontier points (measured selection, --max-drop), and how
  /// the activation ranges were calibrated: free-form objects, written and read back as they are.
  nlohmann::json selection;
  nlohmann::json activations;
  /// How the sensitivities were measured (trace method, probes, products, seconds).
  nlohmann::json measurement;
  int act_bits = 8;
  std::vector<int> candidate_bits;
  std::vector<int> act_candidate_bits;
  std::optional<Budget> budget;
  std::vector<std::vector<std::string>> shared;  // layers that share a bit width
  std::string optimizer_method;                  // Allocation::method
  std::string optimizer_status = "optimal";      // "optimal" | "node-limit"
  std::int64_t optimizer_work = 0;
  std::int64_t unquantized_bytes = 0;  // storage outside the quantized layers
  std::vector<PlanLayer> layers;
  PlanTotals totals;
};

/// Per-layer facts the allocator does not hold, in problem layer order.
struct PlanLayerInfo {
  Scheme scheme = Scheme::Symmetric;
  Granularity granularity = Granularity::PerChannel;
  std::int64_t groups = 1;  // quantization groups; overhead must equal the AllocLayer's
  double sensitivity = 0.0;
  bool negative_top_eigenvalue = false;
  bool transposed = false;
  // Activations (used when the chosen option has act_bits > 0): the calibrated range and the
  // activation part of each option's Omega, act_omega[option index].
  Scheme act_scheme = Scheme::Asymmetric;
  double act_lo = 0.0, act_hi = 0.0;
  std::int64_t act_numel = 0;
  double act_sensitivity = 0.0;
  std::vector<double> act_omega;
};

/// True when some layer quantizes its input activations.
bool has_activation_quantization(const Plan& plan);

/// Totals of a plan from its layers (see the file comment).
PlanTotals compute_totals(const Plan& plan);

/// A plan for `allocation` of `problem`: layers, constraints, optimizer fields and totals; the
/// caller fills command, model and sensitivity_kind (and budget). A layer's omega is its option's
/// Omega minus the activation part info[i].act_omega; the allocation's chain terms become
/// inter_layer_omega. std::invalid_argument if `info` has the wrong length or a layer's overhead
/// disagrees with its AllocLayer::overhead_bits.
Plan make_plan(const AllocProblem& problem, const Allocation& allocation, std::span<const PlanLayerInfo> info);

nlohmann::json plan_to_json(const Plan& plan);
/// Validates everything (types, ranges, names, constraints, totals); on failure
/// std::runtime_error("<source>: <key path>: <what is wrong>").
Plan plan_from_json(const nlohmann::json& j, const std::string& source);

/// Writes atomically (temporary file + rename). std::invalid_argument if the plan is not valid,
/// std::runtime_error("<path>: ...") on I/O failure or if `path` is the plan's model file, is
/// read-only, or is in a missing folder.
void write_plan(const Plan& plan, const std::string& path);
/// Reads and validates; std::runtime_error("<path>: ...") for a missing, corrupt or wrong-schema file.
Plan read_plan(const std::string& path);

/// std::runtime_error("<plan_path>: plan was made for a model with sha256 X, but <model_path> has
/// sha256 Y") unless the model file's sha256 matches the plan's, or the model is a checkpoint
/// fine-tuned for this plan (`curv train --quant-plan`: its metadata `quant_plan_model_sha256`
/// equals the plan's model sha256; pass its metadata as `model_meta`).
void check_plan_model(const Plan& plan, const std::string& plan_path, const std::string& model_path,
                      const std::map<std::string, std::string>* model_meta = nullptr);

/// Metadata key of a checkpoint fine-tuned for a plan: the sha256 of the plan's model.
inline constexpr const char* kFineTunedForKey = "quant_plan_model_sha256";

}  // namespace curv::quant
