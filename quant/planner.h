#pragma once
/// \file planner.h
/// The planning pipeline of `curv quant plan` (HAWQ family), as a library:
///
///   1. problem    one allocation item per quantizable layer (model_layers.h): the candidate
///                 weight widths (plus the pinned width of the first and last layer), times the
///                 candidate activation widths when activations are quantized; the scale overhead
///                 of the scheme and granularity, shared groups, activation bits for BOPs, the
///                 unquantized storage; every Omega still zero
///   2. budget     BitAllocator(problem).solve(budget): feasibility does not depend on the
///                 sensitivities, so an impossible budget or constraint fails in the constructor,
///                 before any Hessian work (InfeasibleBudget names the smallest feasible budget)
///   3. order      the measured sensitivities s_i, or a baseline s'_i that keeps their values but
///                 not their link to the Hessian (SensitivityOrder: reverse, random by seed, equal)
///   4. plan       Omega_i(b, a) = 1/2 s'_i e_i(b) [+ 1/2 s_a,i e_a,i(a)] [+ inter-layer terms],
///                 the exact optimum within the budget, the Pareto frontier (over size, or over
///                 BOPs for a BOPs budget), and the plan with its totals; hessian_omega =
///                 1/2 sum_i s_i e_i(b_i) with the measured s_i whatever the order; HAWQ-V1's
///                 fine-tuning order when lambda_max is known.
///
///     QuantPlanner planner(model, options);                      // throws if infeasible
///     auto sens = layer_sensitivities(model, data, planner.layers(), sensitivity_options);
///     PlanResult r = planner.plan(sens);                         // r.plan, r.frontier
///     Plan other = planner.plan_for(r, r.frontier.points[k]);    // any frontier point as a plan
///
/// The model must outlive the planner. Not thread-safe.
#include <cstdint>
#include <string>
#include <vector>

#include "quant/act_quantizer.h"
#include "quant/bit_allocator.h"
#include "quant/model_quant.h"
#include "quant/plan.h"
#include "quant/sensitivity.h"
#include "src/core/model.h"

namespace curv::quant {

struct PlannerOptions {
  /// Scheme, granularity and groups of every layer (the bits field is ignored).
  QuantSpec spec;
  /// Candidate bit widths of every layer, each in 2..8.
  std::vector<int> candidate_bits = {2, 3, 4, 8};
  /// What the plan must fit in.
  Budget budget;
  /// Bits of the first and last quantizable layer (0: free like the others).
  int pin_first_last = 0;
  /// Groups of layer names that must take one bit width.
  std::vector<std::vector<std::string>> shared;
  /// Activation bits in the BOPs count of layers whose activations are not quantized (1..32).
  int act_bits = 8;
  /// Candidate activation widths (2..8) of every layer's input; empty: activations not quantized.
  std::vector<int> act_candidate_bits;
  /// Scheme of the activation quantizers.
  Scheme act_scheme = Scheme::Asymmetric;
  /// Which layer gets which sensitivity (measured, or a baseline), and the seed of Random.
  SensitivityOrder order = SensitivityOrder::Hessian;
  std::uint64_t order_seed = 0;
};

/// What plan() needs beyond the weight sensitivities.
struct PlanInputs {
  /// Activations (required when act_candidate_bits is set): per layer the sensitivity of its
  /// input (activation_sensitivities), the calibrated range, and e_a(a) for each candidate width.
  std::vector<Sensitivity> act_sens;
  std::vector<ActRange> act_ranges;
  std::vector<std::vector<double>> act_err;  // [layer][act candidate]
  /// Inter-layer terms over weight widths (optional): chain[i][x][y] for layer i at its x-th and
  /// layer i+1 at its y-th weight width, in the order of weight_bits(i).
  std::vector<std::vector<std::vector<double>>> chain;
  /// Measured diagonal terms (optional): diag[i][x] = 1/2 dW_i^T H_ii dW_i at layer i's x-th weight
  /// width replaces 1/2 s_i ||dW_i||^2 as the layer's weight Omega (the order is then ignored).
  std::vector<std::vector<double>> diag;
};

/// A plan with the Pareto frontier of its problem and what is needed to turn any frontier point
/// into a plan (plan_for).
struct PlanResult {
  Plan plan;
  ParetoFrontier frontier;
  AllocProblem problem;               // with the Omegas that were minimized
  std::vector<PlanLayerInfo> info;    // per-layer plan facts
  std::vector<Sensitivity> sens;      // measured weight sensitivities
  std::vector<std::vector<double>> err;  // e_i(b) per problem option
};

class QuantPlanner {
 public:
  /// Builds the allocation problem and checks that the budget is feasible. std::invalid_argument
  /// for a model without quantizable layers, no or bad candidate widths, a bad pinned width or
  /// activation bits, or a constraint the allocator refuses; InfeasibleBudget for a budget below
  /// every plan.
  QuantPlanner(const Model& model, PlannerOptions options);

  /// The quantizable layers (model_layers.h), in problem order.
  const std::vector<ModelLayer>& layers() const { return m_layers; }
  /// The allocation problem with every Omega zero.
  const AllocProblem& problem() const { return m_problem; }
  const PlannerOptions& options() const { return m_options; }
  /// Layer i's distinct weight widths, ascending (the order of PlanInputs::chain).
  std::vector<int> weight_bits(std::size_t i) const;

  /// The optimal plan for the measured sensitivities `sens` (one per layer, in layers() order):
  /// every Plan field except command, model_path, model_sha256, created_utc and measured_omega.
  /// std::invalid_argument if `sens` or `in` do not fit the layers.
  PlanResult plan(const std::vector<Sensitivity>& sens, const PlanInputs& in = {}) const;

  /// The plan of another allocation of r.problem (a frontier point), filled like r.plan.
  Plan plan_for(const PlanResult& r, const Allocation& a) const;

 private:
  const Model& m_model;
  PlannerOptions m_options;
  std::vector<ModelLayer> m_layers;
  AllocProblem m_problem;
};

}  // namespace curv::quant
