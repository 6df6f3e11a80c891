#include "quant/planner.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace curv::quant {

QuantPlanner::QuantPlanner(const Model& model, PlannerOptions options)
    : m_model(model), m_options(std::move(options)), m_layers(quantizable_layers(model)) {
  const PlannerOptions& o = m_options;
  if (m_layers.empty()) throw std::invalid_argument("the model has no Conv/Gemm/MatMul weights to quantize");
  if (o.candidate_bits.empty()) throw std::invalid_argument("no candidate bit widths given");
  for (int b : o.candidate_bits) check_bits(b);
  if (o.pin_first_last != 0) check_bits(o.pin_first_last);

  m_problem.act_bits = o.act_bits;
  m_problem.extra_bits = 8 * unquantized_bytes(model, m_layers);
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    const ModelLayer& l = m_layers[i];
    AllocLayer al;
    al.name = l.name;
    al.numel = l.numel;
    al.macs = l.macs;
    al.overhead_bits = scale_overhead_bits(o.spec.scheme, num_groups(o.spec, l.shape[0]));
    for (int b : o.candidate_bits) al.options.push_back({b, 0.0});
    if (o.pin_first_last != 0 && (i == 0 || i + 1 == m_layers.size())) {
      m_problem.pinned[l.name] = o.pin_first_last;
      const auto& c = o.candidate_bits;
      if (std::find(c.begin(), c.end(), o.pin_first_last) == c.end()) al.options.push_back({o.pin_first_last, 0.0});
    }
    m_problem.layers.push_back(std::move(al));
  }
  m_problem.shared = o.shared;
  // Feasibility does not depend on the Omegas: fail before any Hessian work.
  BitAllocator(m_problem).solve(o.budget);
}

PlanResult QuantPlanner::plan(const std::vector<Sensitivity>& sens) const {
  const PlannerOptions& o = m_options;
  if (sens.size() != m_layers.size())
    throw std::invalid_argument(std::to_string(sens.size()) + " sensitivities for " + std::to_string(m_layers.size()) +
                                " quantizable layers");
  // Omega_i(b) = s'_i e_i(b) with s' the ordered sensitivities (the measured ones for "hessian");
  // the measured s_i e_i(b) is kept to report what the curvature model predicts.
  std::vector<double> measured;
  for (const auto& s : sens) measured.push_back(s.value);
  const std::vector<double> used = reorder_sensitivities(measured, o.order, o.order_seed);
  AllocProblem problem = m_problem;
  const auto err = quantization_errors(m_model, m_layers, o.spec, problem);
  set_omegas(problem, err, used);
  std::vector<PlanLayerInfo> info;
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    PlanLayerInfo pi;
    pi.scheme = o.spec.scheme;
    pi.granularity = o.spec.granularity;
    pi.groups = num_groups(o.spec, m_layers[i].shape[0]);
    pi.sensitivity = used[i];
    pi.negative_top_eigenvalue = sens[i].negative_top_eigenvalue;
    info.push_back(pi);
  }
  const BitAllocator alloc(problem);
  const Allocation a = alloc.solve(o.budget);
  PlanResult r;
  r.frontier = alloc.pareto_frontier(CostKind::Size);
  r.plan = make_plan(alloc.problem(), a, info);
  r.plan.sensitivity_kind = to_string(sens.front().kind);
  r.plan.order = to_string(o.order);
  if (o.order == SensitivityOrder::Random) r.plan.order_seed = static_cast<std::int64_t>(o.order_seed);
  r.plan.measured_omega = predicted_omega(problem, err, measured, a.bits);
  r.plan.budget = o.budget;
  r.plan.candidate_bits = o.candidate_bits;
  return r;
}

}  // namespace curv::quant
