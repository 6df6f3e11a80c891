#include "quant/planner.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace curv::quant {

namespace {

std::string count_mismatch(const char* what, std::size_t got, std::size_t layers) {
  return std::to_string(got) + " " + what + " for " + std::to_string(layers) + " quantizable layers";
}

}  // namespace

QuantPlanner::QuantPlanner(const Model& model, PlannerOptions options)
    : m_model(model), m_options(std::move(options)), m_layers(quantizable_layers(model)) {
  const PlannerOptions& o = m_options;
  if (m_layers.empty()) throw std::invalid_argument("the model has no Conv/Gemm/MatMul weights to quantize");
  if (o.candidate_bits.empty()) throw std::invalid_argument("no candidate bit widths given");
  for (int b : o.candidate_bits) check_bits(b);
  for (int a : o.act_candidate_bits) check_bits(a);
  if (o.pin_first_last != 0) check_bits(o.pin_first_last);

  m_problem.act_bits = o.act_bits;
  m_problem.extra_bits = 8 * unquantized_bytes(model, m_layers);
  const std::vector<int> acts = o.act_candidate_bits.empty() ? std::vector<int>{0} : o.act_candidate_bits;
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    const ModelLayer& l = m_layers[i];
    AllocLayer al;
    al.name = l.name;
    al.numel = l.numel;
    al.macs = l.macs;
    al.overhead_bits = scale_overhead_bits(o.spec.scheme, num_groups(o.spec, l.channels));
    std::vector<int> widths = o.candidate_bits;
    if (o.pin_first_last != 0 && (i == 0 || i + 1 == m_layers.size())) {
      m_problem.pinned[l.name] = o.pin_first_last;
      if (std::find(widths.begin(), widths.end(), o.pin_first_last) == widths.end()) widths.push_back(o.pin_first_last);
    }
    for (int b : widths)
      for (int a : acts) al.options.push_back({b, 0.0, a});
    m_problem.layers.push_back(std::move(al));
  }
  m_problem.shared = o.shared;
  // Feasibility does not depend on the Omegas: fail before any Hessian work.
  BitAllocator(m_problem).solve(o.budget);
}

std::vector<int> QuantPlanner::weight_bits(std::size_t i) const {
  std::vector<int> w;
  for (const BitOption& o : m_problem.layers.at(i).options) w.push_back(o.bits);
  std::sort(w.begin(), w.end());
  w.erase(std::unique(w.begin(), w.end()), w.end());
  return w;
}

PlanResult QuantPlanner::plan(const std::vector<Sensitivity>& sens, const PlanInputs& in) const {
  const PlannerOptions& o = m_options;
  const std::size_t L = m_layers.size();
  if (sens.size() != L) throw std::invalid_argument(count_mismatch("sensitivities", sens.size(), L));
  const bool acts = !o.act_candidate_bits.empty();
  if (acts && (in.act_sens.size() != L || in.act_ranges.size() != L || in.act_err.size() != L))
    throw std::invalid_argument("activation quantization needs the sensitivity, range and errors of every layer's input (" +
                                count_mismatch("activation sensitivities", in.act_sens.size(), L) + ")");
  if (!in.chain.empty() && in.chain.size() + 1 != L)
    throw std::invalid_argument(count_mismatch("inter-layer matrices", in.chain.size(), L - 1));
  if (!in.diag.empty() && in.diag.size() != L)
    throw std::invalid_argument(count_mismatch("measured diagonal rows", in.diag.size(), L));

  // Omega_i(b) = 1/2 s'_i e_i(b) with s' the ordered sensitivities (the measured ones for
  // "hessian"); the measured 1/2 s_i e_i(b) is kept to report what the curvature model predicts.
  std::vector<double> measured;
  for (const auto& s : sens) measured.push_back(s.value);
  const std::vector<double> used = reorder_sensitivities(measured, o.order, o.order_seed);
  PlanResult r;
  r.sens = sens;
  r.problem = m_problem;
  r.err = quantization_errors(m_model, m_layers, o.spec, r.problem);
  set_omegas(r.problem, r.err, used);
  for (std::size_t i = 0; i < L; ++i) {
    PlanLayerInfo pi;
    pi.scheme = o.spec.scheme;
    pi.granularity = o.spec.granularity;
    pi.groups = num_groups(o.spec, m_layers[i].channels);
    pi.transposed = m_layers[i].transposed;
    pi.sensitivity = used[i];
    pi.negative_top_eigenvalue = sens[i].negative_top_eigenvalue;
    AllocLayer& al = r.problem.layers[i];
    if (!in.diag.empty()) {  // measured 1/2 dW^T H_ii dW instead of 1/2 s ||dW||^2
      const std::vector<int> w = weight_bits(i);
      if (in.diag[i].size() != w.size())
        throw std::invalid_argument("layer " + m_layers[i].name + ": " + std::to_string(in.diag[i].size()) +
                                    " measured diagonal terms for " + std::to_string(w.size()) + " weight widths");
      for (BitOption& opt : al.options) opt.omega = in.diag[i][std::find(w.begin(), w.end(), opt.bits) - w.begin()];
    }
    if (acts) {
      if (in.act_err[i].size() != o.act_candidate_bits.size())
        throw std::invalid_argument("layer " + m_layers[i].name + ": " + std::to_string(in.act_err[i].size()) +
                                    " activation errors for " + std::to_string(o.act_candidate_bits.size()) +
                                    " activation widths");
      pi.act_scheme = o.act_scheme;
      pi.act_lo = in.act_ranges[i].lo;
      pi.act_hi = in.act_ranges[i].hi;
      pi.act_numel = in.act_ranges[i].numel;
      pi.act_sensitivity = in.act_sens[i].value;
      for (BitOption& opt : al.options) {
        const auto k = std::find(o.act_candidate_bits.begin(), o.act_candidate_bits.end(), opt.act_bits) -
                       o.act_candidate_bits.begin();
        const double part = 0.5 * in.act_sens[i].value * in.act_err[i][k];
        opt.omega += part;
        pi.act_omega.push_back(part);
      }
    }
    r.info.push_back(std::move(pi));
  }
  if (!in.chain.empty()) {
    for (std::size_t i = 0; i + 1 < L; ++i) {
      const std::vector<int> wa = weight_bits(i), wb = weight_bits(i + 1);
      const auto& c = in.chain[i];
      if (c.size() != wa.size() || std::any_of(c.begin(), c.end(), [&](const auto& row) { return row.size() != wb.size(); }))
        throw std::invalid_argument("inter-layer terms of " + m_layers[i].name + " and " + m_layers[i + 1].name +
                                    " must be a " + std::to_string(wa.size()) + " x " + std::to_string(wb.size()) +
                                    " matrix over their weight widths");
      const auto& oa = r.problem.layers[i].options;
      const auto& ob = r.problem.layers[i + 1].options;
      std::vector<std::vector<double>> t(oa.size(), std::vector<double>(ob.size()));
      for (std::size_t x = 0; x < oa.size(); ++x)
        for (std::size_t y = 0; y < ob.size(); ++y)
          t[x][y] = c[std::find(wa.begin(), wa.end(), oa[x].bits) - wa.begin()]
                     [std::find(wb.begin(), wb.end(), ob[y].bits) - wb.begin()];
      r.problem.chain.push_back(std::move(t));
    }
  }
  const BitAllocator alloc(r.problem);
  const Allocation a = alloc.solve(o.budget);
  r.frontier = alloc.pareto_frontier(o.budget.kind == BudgetKind::GBops ? CostKind::Bops : CostKind::Size);
  r.plan = plan_for(r, a);
  return r;
}

Plan QuantPlanner::plan_for(const PlanResult& r, const Allocation& a) const {
  const PlannerOptions& o = m_options;
  Plan p = make_plan(r.problem, a, r.info);
  p.sensitivity_kind = to_string(r.sens.front().kind);
  p.order = to_string(o.order);
  if (o.order == SensitivityOrder::Random) p.order_seed = static_cast<std::int64_t>(o.order_seed);
  std::vector<double> measured;
  for (const auto& s : r.sens) measured.push_back(s.value);
  p.hessian_omega = predicted_omega(r.problem, r.err, measured, a.bits);
  p.budget = o.budget;
  p.candidate_bits = o.candidate_bits;
  // HAWQ-V1's block-wise fine-tuning order: descending lambda_max(H_i) ||dW_i||^2 (stable).
  const bool have_lambda =
      std::all_of(r.sens.begin(), r.sens.end(), [](const Sensitivity& s) { return std::isfinite(s.lambda_max); });
  if (have_lambda) {
    std::vector<double> key;
    for (std::size_t i = 0; i < m_layers.size(); ++i) {
      const auto& opts = r.problem.layers[i].options;
      const auto k = std::find_if(opts.begin(), opts.end(), [&](const BitOption& b) { return b.bits == a.bits[i]; }) -
                     opts.begin();
      key.push_back(r.sens[i].lambda_max * r.err[i][k]);
    }
    std::vector<std::size_t> idx(m_layers.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t x, std::size_t y) { return key[x] > key[y]; });
    for (std::size_t i : idx) p.fine_tune_order.push_back(m_layers[i].name);
  }
  return p;
}

}  // namespace curv::quant
