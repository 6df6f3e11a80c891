#pragma once
/// \file selection.h
/// Accuracy-aware selection among the plans of a Pareto frontier (planner.h), measured on
/// calibration data instead of trusting the second-order model:
///
///   measured   the K frontier points with the largest cost within the budget (the ones nearest
///              it), and the widest uniform plan within the budget (which the frontier of a wrong
///              quadratic model can dominate away), are quantized and evaluated on the calibration
///              set; the lowest calibration loss wins (ties: the plan nearest the budget).
///   max-drop   the smallest frontier point whose calibration accuracy is at most X percentage
///              points below the float model's (for regression: whose loss exceeds the float loss
///              by at most X percent), found by bisection over the frontier ordered by cost, i.e.
///              assuming the drop does not grow with size; about log2(K) evaluations. When even
///              the largest point misses X, std::invalid_argument names its drop.
/// A budget, if given, caps both searches.
#include <cstdint>
#include <optional>
#include <vector>

#include "quant/planner.h"
#include "src/core/dataset.h"
#include "src/core/objective.h"

namespace curv::quant {

struct EvaluatedPoint {
  std::size_t point = 0;  // index into the frontier (frontier size: the uniform candidate)
  std::int64_t size_bytes = 0;
  double avg_bits = 0.0;
  std::int64_t bops = 0;
  double omega = 0.0;
  EvalResult eval;
};

struct SelectionResult {
  std::size_t chosen = 0;              // frontier index
  Plan plan;                           // the chosen point as a plan, with plan.selection filled
  EvalResult reference;                // the float model on the calibration data
  std::vector<EvaluatedPoint> evaluated;  // in the order they were evaluated
};

/// True when allocation `a` meets `budget` (the allocator's relative slack of 1e-9).
bool within_budget(const Allocation& a, const Budget& budget, std::int64_t numel);

/// Measured selection among the `candidates` frontier points nearest the budget (>= 1).
SelectionResult select_measured(const QuantPlanner& planner, const PlanResult& r, const Model& model,
                                const Dataset& calib, int candidates, const ObjectiveOptions& objective,
                                const std::optional<Budget>& budget);

/// The smallest frontier point within `max_drop` (>= 0), by bisection.
SelectionResult select_max_drop(const QuantPlanner& planner, const PlanResult& r, const Model& model,
                                const Dataset& calib, double max_drop, const ObjectiveOptions& objective,
                                const std::optional<Budget>& budget);

}  // namespace curv::quant
