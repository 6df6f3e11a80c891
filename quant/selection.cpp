#include "quant/selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "quant/quantized_eval.h"

namespace curv::quant {

namespace {

constexpr double kBudgetRelTol = 1e-9;  // as the allocator

std::vector<std::size_t> feasible_points(const PlanResult& r, const std::optional<Budget>& budget, std::int64_t numel) {
  std::vector<std::size_t> idx;
  for (std::size_t k = 0; k < r.frontier.points.size(); ++k)
    if (!budget || within_budget(r.frontier.points[k], *budget, numel)) idx.push_back(k);
  return idx;
}

std::int64_t total_numel(const QuantPlanner& planner) {
  std::int64_t n = 0;
  for (const auto& l : planner.layers()) n += l.numel;
  return n;
}

EvaluatedPoint evaluate_point(const QuantPlanner& planner, const PlanResult& r, std::size_t k, const Model& model,
                              const Dataset& calib, const ObjectiveOptions& objective) {
  const Allocation& a = r.frontier.points[k];
  const Plan p = planner.plan_for(r, a);
  EvaluatedPoint e;
  e.point = k;
  e.size_bytes = p.totals.size_bytes;
  e.avg_bits = p.totals.avg_bits;
  e.bops = p.totals.bops;
  e.omega = a.omega;
  e.eval = evaluate_quantized(model, calib, p, objective);
  return e;
}

// Drop in accuracy points (classification) or loss percent (regression) against the float model.
double drop(const EvalResult& q, const EvalResult& ref) {
  if (std::isnan(ref.accuracy)) return 100.0 * (q.loss - ref.loss) / std::abs(ref.loss);
  return 100.0 * (ref.accuracy - q.accuracy);
}

nlohmann::json describe(const SelectionResult& s, const char* method, const Dataset& calib) {
  nlohmann::json ev = nlohmann::json::array();
  for (const EvaluatedPoint& e : s.evaluated)
    ev.push_back({{"point", e.point},
                  {"size_bytes", e.size_bytes},
                  {"avg_bits", e.avg_bits},
                  {"bops", e.bops},
                  {"omega", e.omega},
                  {"loss", e.eval.loss},
                  {"accuracy", std::isnan(e.eval.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(e.eval.accuracy)}});
  return {{"method", method},
          {"calib_data", calib.source},
          {"calib_samples", calib.size()},
          {"float_loss", s.reference.loss},
          {"float_accuracy", std::isnan(s.reference.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(s.reference.accuracy)},
          {"chosen_point", s.chosen},
          {"evaluated", ev}};
}

// Every layer at the widest candidate width b (pinned layers at their pin, activations at their
// widest) such that the plan meets the budget; nullopt if none does.
std::optional<Allocation> widest_uniform(const QuantPlanner& planner, const PlanResult& r,
                                         const std::optional<Budget>& budget) {
  const BitAllocator alloc(r.problem);
  std::vector<int> widths = planner.options().candidate_bits;
  std::sort(widths.rbegin(), widths.rend());
  for (int b : widths) {
    std::vector<int> bits, act;
    for (const AllocLayer& l : r.problem.layers) {
      const auto pin = r.problem.pinned.find(l.name);
      bits.push_back(pin != r.problem.pinned.end() ? pin->second : b);
      int a = 0;
      for (const BitOption& o : l.options)
        if (o.bits == bits.back()) a = std::max(a, o.act_bits);
      act.push_back(a);  // raw option value: 0 when activations are not quantized
    }
    try {
      const Allocation u = alloc.evaluate(bits, act);
      if (!budget || within_budget(u, *budget, total_numel(planner))) return u;
    } catch (const std::invalid_argument&) {
      // shared groups with pins that a uniform width breaks: no uniform candidate
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

bool within_budget(const Allocation& a, const Budget& b, std::int64_t numel) {
  const double slack = 1.0 + kBudgetRelTol;
  switch (b.kind) {
    case BudgetKind::AvgBits: return static_cast<double>(a.weight_bits) <= b.value * static_cast<double>(numel) * slack;
    case BudgetKind::SizeKB: return static_cast<double>(a.size_bits) <= b.value * 8192.0 * slack;
    case BudgetKind::GBops: return static_cast<double>(a.bops) <= b.value * 1e9 * slack;
  }
  return false;
}

SelectionResult select_measured(const QuantPlanner& planner, const PlanResult& r, const Model& model,
                                const Dataset& calib, int candidates, const ObjectiveOptions& objective,
                                const std::optional<Budget>& budget) {
  if (candidates < 1) throw std::invalid_argument("measured selection needs at least 1 candidate (got " + std::to_string(candidates) + ")");
  const std::vector<std::size_t> idx = feasible_points(r, budget, total_numel(planner));
  if (idx.empty()) throw std::invalid_argument("no frontier point meets the budget");
  SelectionResult s;
  s.reference = Objective::create(model, calib, objective)->evaluate();
  const std::size_t first = idx.size() > static_cast<std::size_t>(candidates) ? idx.size() - candidates : 0;
  std::size_t best = 0;
  for (std::size_t j = idx.size(); j-- > first;) {  // nearest the budget first
    s.evaluated.push_back(evaluate_point(planner, r, idx[j], model, calib, objective));
    const EvaluatedPoint& e = s.evaluated.back();
    if (s.evaluated.size() == 1 || e.eval.loss <= s.evaluated[best].eval.loss) best = s.evaluated.size() - 1;
  }
  // The widest uniform plan within the budget (pins kept) is a candidate too: the frontier of a
  // wrong quadratic model may dominate it away, and the measurement should be able to pick it.
  const std::optional<Allocation> uniform = widest_uniform(planner, r, budget);
  if (uniform) {
    const Plan up = planner.plan_for(r, *uniform);
    EvaluatedPoint e;
    e.point = r.frontier.points.size();  // not a frontier point
    e.size_bytes = up.totals.size_bytes;
    e.avg_bits = up.totals.avg_bits;
    e.bops = up.totals.bops;
    e.omega = uniform->omega;
    e.eval = evaluate_quantized(model, calib, up, objective);
    s.evaluated.push_back(e);
    if (e.eval.loss < s.evaluated[best].eval.loss) best = s.evaluated.size() - 1;
  }
  s.chosen = s.evaluated[best].point;
  s.plan = planner.plan_for(r, s.chosen < r.frontier.points.size() ? r.frontier.points[s.chosen] : *uniform);
  s.plan.selection = describe(s, "measured", calib);
  s.plan.selection["candidates"] = candidates;
  s.plan.selection["uniform_chosen"] = s.chosen >= r.frontier.points.size();
  return s;
}

SelectionResult select_max_drop(const QuantPlanner& planner, const PlanResult& r, const Model& model,
                                const Dataset& calib, double max_drop, const ObjectiveOptions& objective,
                                const std::optional<Budget>& budget) {
  if (!(max_drop >= 0.0)) throw std::invalid_argument("the accuracy drop must be >= 0");
  const std::vector<std::size_t> idx = feasible_points(r, budget, total_numel(planner));
  if (idx.empty()) throw std::invalid_argument("no frontier point meets the budget");
  SelectionResult s;
  s.reference = Objective::create(model, calib, objective)->evaluate();
  auto meets = [&](std::size_t j) {
    s.evaluated.push_back(evaluate_point(planner, r, idx[j], model, calib, objective));
    return drop(s.evaluated.back().eval, s.reference) <= max_drop;
  };
  std::size_t hi = idx.size() - 1;
  if (!meets(hi)) {
    const EvaluatedPoint& e = s.evaluated.back();
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "no frontier point is within a drop of %g %s: the largest one (%lld bytes, %.4g average bits) drops "
                  "%.4g (calibration %s %.6g against %.6g for the float model)",
                  max_drop, std::isnan(s.reference.accuracy) ? "percent of loss" : "accuracy points",
                  static_cast<long long>(e.size_bytes), e.avg_bits, drop(e.eval, s.reference),
                  std::isnan(s.reference.accuracy) ? "loss" : "accuracy",
                  std::isnan(s.reference.accuracy) ? e.eval.loss : e.eval.accuracy,
                  std::isnan(s.reference.accuracy) ? s.reference.loss : s.reference.accuracy);
    throw std::invalid_argument(buf);
  }
  std::size_t lo = 0;
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (meets(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  s.chosen = idx[hi];
  s.plan = planner.plan_for(r, r.frontier.points[s.chosen]);
  s.plan.selection = describe(s, "max-drop", calib);
  s.plan.selection["max_drop"] = max_drop;
  return s;
}

}  // namespace curv::quant
