#pragma once
/// \file planner.h
/// The planning pipeline of `curv quant plan` (HAWQ-V2 style), as a library:
///
///   1. problem    one allocation item per quantizable layer (model_quant.h): the candidate
///                 widths (plus the pinned width of the first and last layer), the scale
///                 overhead of the scheme and granularity, shared groups, activation bits for
///                 BOPs, the unquantized storage; every Omega still zero
///   2. budget     BitAllocator(problem).solve(budget): feasibility does not depend on the
///                 sensitivities, so an impossible budget or constraint fails in the constructor,
///                 before any Hessian work (InfeasibleBudget names the smallest feasible budget)
///   3. order      the measured sensitivities s_i, or a baseline s'_i that keeps their values but
///                 not their link to the Hessian (SensitivityOrder: reverse, random by seed)
///   4. plan       Omega_i(b) = s'_i e_i(b) with e_i(b) = ||Q_b(W_i) - W_i||^2, the exact optimum
///                 within the budget, the Pareto frontier over size, and the plan with its totals;
///                 measured_omega = sum_i s_i e_i(b_i) with the measured s_i, whatever the order.
///
///     QuantPlanner planner(model, options);                      // throws if infeasible
///     auto sens = layer_sensitivities(model, data, planner.layers(), sensitivity_options);
///     PlanResult r = planner.plan(sens);                         // r.plan, r.frontier
///
/// The model must outlive the planner. Not thread-safe.
#include <cstdint>
#include <string>
#include <vector>

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
  /// Activation bits in the BOPs count (1..32).
  int act_bits = 8;
  /// Which layer gets which sensitivity (measured, or a baseline), and the seed of Random.
  SensitivityOrder order = SensitivityOrder::Hessian;
  std::uint64_t order_seed = 0;
};

/// A plan with the Pareto frontier of its problem (both with the ordered sensitivities).
struct PlanResult {
  Plan plan;
  ParetoFrontier frontier;
};

class QuantPlanner {
 public:
  /// Builds the allocation problem and checks that the budget is feasible. std::invalid_argument
  /// for a model without quantizable layers, no or bad candidate widths, a bad pinned width or
  /// activation bits, or a constraint the allocator refuses; InfeasibleBudget for a budget below
  /// every plan.
  QuantPlanner(const Model& model, PlannerOptions options);

  /// The quantizable layers (model_quant.h), in problem order.
  const std::vector<ModelLayer>& layers() const { return m_layers; }
  /// The allocation problem with every Omega zero.
  const AllocProblem& problem() const { return m_problem; }
  const PlannerOptions& options() const { return m_options; }

  /// The optimal plan for the measured sensitivities `sens` (one per layer, in layers() order):
  /// every Plan field except command, model_path, model_sha256 and created_utc.
  /// std::invalid_argument if `sens` does not have one entry per layer.
  PlanResult plan(const std::vector<Sensitivity>& sens) const;

 private:
  const Model& m_model;
  PlannerOptions m_options;
  std::vector<ModelLayer> m_layers;
  AllocProblem m_problem;
};

}  // namespace curv::quant
