// Tests of quant/planner (the `curv quant plan` pipeline) and quant/quantized_eval: the plan for
// given sensitivities against brute force over every bit assignment, pins, feasibility before any
// sensitivity work, the baseline orders, and the evaluation of a quantized model.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

#include "quant/model_quant.h"
#include "quant/planner.h"
#include "quant/quantized_eval.h"
#include "src/core/builder.h"
#include "src/io/data_io.h"

using namespace curv;
using namespace curv::quant;

namespace {

constexpr double kOmegaRelTol = 1e-12;  // plan omegas vs the brute-force sum (same terms)

// Three quantizable layers of different sizes.
Model mlp() { return build_arch("mlp:12-8", {6}, 4, 3); }

std::vector<Sensitivity> given(const std::vector<double>& values) {
  std::vector<Sensitivity> s;
  for (double v : values) s.push_back(trace_sensitivity(v, 1));
  return s;
}

// e_i(b) = ||Q_b(W_i) - W_i||^2 of every layer for the given widths, by the scalar model of
// sensitivity.h with s = 1.
std::vector<std::vector<double>> errors(const Model& m, const std::vector<ModelLayer>& layers, const QuantSpec& spec,
                                        const std::vector<int>& bits) {
  std::vector<std::vector<double>> e;
  for (const auto& l : layers) {
    const Tensor<double>& w = m.param(l.param);
    std::vector<std::int64_t> shape(l.shape.begin(), l.shape.end());
    e.push_back(loss_increase<double>(1.0, std::span<const double>(w.data(), w.size()), shape, spec, bits));
  }
  return e;
}

// min over all assignments with sum n_i b_i <= avg * sum n_i of sum s_i e_i(b_i).
double brute_force(const std::vector<ModelLayer>& layers, const std::vector<std::vector<double>>& e,
                   const std::vector<int>& bits, const std::vector<double>& s, double avg) {
  std::int64_t total = 0;
  for (const auto& l : layers) total += l.numel;
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> pick(layers.size(), 0);
  std::function<void(std::size_t)> rec = [&](std::size_t i) {
    if (i == layers.size()) {
      std::int64_t wb = 0;
      double omega = 0;
      for (std::size_t k = 0; k < layers.size(); ++k) {
        wb += layers[k].numel * bits[pick[k]];
        omega += s[k] * e[k][pick[k]];
      }
      if (double(wb) <= avg * double(total) * (1 + 1e-12)) best = std::min(best, omega);
      return;
    }
    for (std::size_t c = 0; c < bits.size(); ++c) pick[i] = c, rec(i + 1);
  };
  rec(0);
  return best;
}

}  // namespace

TEST_CASE("QuantPlanner: the plan for given sensitivities is the brute-force optimum") {
  const Model m = mlp();
  PlannerOptions o;
  o.candidate_bits = {2, 3, 4, 8};
  o.budget = {BudgetKind::AvgBits, 3.5};
  QuantPlanner planner(m, o);
  const auto& layers = planner.layers();
  REQUIRE(layers.size() == 3);
  for (const auto& l : planner.problem().layers)
    for (const auto& b : l.options) CHECK(b.omega == 0.0);  // no sensitivities yet

  const std::vector<double> s = {0.5, 4.0, 0.02};
  const PlanResult r = planner.plan(given(s));
  const auto e = errors(m, layers, o.spec, o.candidate_bits);
  const double best = brute_force(layers, e, o.candidate_bits, s, 3.5);
  INFO("plan omega ", r.plan.totals.predicted_omega, " brute force ", best);
  CHECK(r.plan.totals.predicted_omega == doctest::Approx(best).epsilon(kOmegaRelTol));
  CHECK(r.plan.totals.avg_bits <= 3.5 + 1e-12);
  CHECK(r.plan.sensitivity_kind == "trace");
  CHECK(r.plan.order == "hessian");
  CHECK_FALSE(r.plan.order_seed);
  CHECK(*r.plan.hessian_omega == doctest::Approx(r.plan.totals.predicted_omega).epsilon(kOmegaRelTol));
  CHECK(r.plan.candidate_bits == o.candidate_bits);
  REQUIRE(r.plan.budget);
  CHECK(r.plan.budget->value == 3.5);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    CHECK(r.plan.layers[i].name == layers[i].name);
    CHECK(r.plan.layers[i].sensitivity == s[i]);
  }
  // The frontier holds the optimum: its best point within the budget has the plan's omega.
  double front_best = std::numeric_limits<double>::infinity();
  for (const auto& p : r.frontier.points)
    if (p.avg_bits <= 3.5 + 1e-12) front_best = std::min(front_best, p.omega);
  CHECK(front_best == doctest::Approx(best).epsilon(kOmegaRelTol));
  CHECK_THROWS_WITH_AS(planner.plan(given({1.0})), "1 sensitivities for 3 quantizable layers", std::invalid_argument);
}

TEST_CASE("QuantPlanner: pins, infeasible budgets before any sensitivity, baseline orders") {
  const Model m = mlp();
  SUBCASE("first and last layer pinned to a width outside the candidates") {
    PlannerOptions o;
    o.candidate_bits = {2, 4};
    o.pin_first_last = 8;
    o.budget = {BudgetKind::AvgBits, 6.0};
    QuantPlanner planner(m, o);
    const auto& p = planner.problem();
    CHECK(p.pinned.size() == 2);
    CHECK(p.layers.front().options.size() == 3);
    CHECK(p.layers[1].options.size() == 2);
    const PlanResult r = planner.plan(given({1, 1, 1}));
    CHECK(r.plan.layers.front().bits == 8);
    CHECK(r.plan.layers.back().bits == 8);
    CHECK(r.plan.layers.front().pinned);
  }
  SUBCASE("an infeasible budget fails in the constructor, naming the smallest feasible one") {
    PlannerOptions o;
    o.candidate_bits = {4, 8};
    o.budget = {BudgetKind::AvgBits, 3.0};
    try {
      QuantPlanner planner(m, o);
      FAIL("no exception");
    } catch (const InfeasibleBudget& e) {
      CHECK(e.smallest_feasible().value == 4.0);
    }
  }
  SUBCASE("bad settings") {
    PlannerOptions o;
    o.budget = {BudgetKind::AvgBits, 4.0};
    o.candidate_bits = {};
    CHECK_THROWS_WITH_AS(QuantPlanner(m, o), "no candidate bit widths given", std::invalid_argument);
    o.candidate_bits = {2, 9};
    CHECK_THROWS_AS(QuantPlanner(m, o), std::invalid_argument);
    ModelBuilder b({4}, 1);
    const Model norm_only = b.finish(b.layer_norm(b.input(), "ln"));
    o.candidate_bits = {2, 4};
    CHECK_THROWS_WITH_AS(QuantPlanner(norm_only, o), "the model has no Conv/Gemm/MatMul weights to quantize",
                         std::invalid_argument);
  }
  SUBCASE("reverse order: the reversed values decide, the measured ones are reported") {
    PlannerOptions o;
    o.budget = {BudgetKind::AvgBits, 3.0};
    const std::vector<double> s = {0.5, 4.0, 0.02};
    const PlanResult h = QuantPlanner(m, o).plan(given(s));
    o.order = SensitivityOrder::Reverse;
    const PlanResult r = QuantPlanner(m, o).plan(given(s));
    CHECK(r.plan.order == "reverse");
    CHECK(r.plan.layers[0].sensitivity == 0.5);   // middle rank stays
    CHECK(r.plan.layers[1].sensitivity == 0.02);  // most sensitive gets the smallest value
    CHECK(r.plan.layers[2].sensitivity == 4.0);
    CHECK(*r.plan.hessian_omega >= h.plan.totals.predicted_omega * (1 - 1e-12));
    o.order = SensitivityOrder::Random;
    o.order_seed = 9;
    const PlanResult x = QuantPlanner(m, o).plan(given(s));
    CHECK(x.plan.order == "random");
    CHECK(x.plan.order_seed == 9);
  }
}

TEST_CASE("evaluate_quantized equals apply_plan then evaluate, and 8 bits barely move the loss") {
  const Model m = mlp();
  DataOptions dopt;
  dopt.seed = 4;
  const Dataset d = load_dataset("random:6:4:40", dopt);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  const Plan plan = uniform_plan(m, 4, Scheme::Symmetric, Granularity::PerChannel, 1);
  const EvalResult got = evaluate_quantized(m, d, plan, oo);
  Model q = m;
  apply_plan(q, plan);
  const EvalResult want = Objective::create(q, d, oo)->evaluate();
  CHECK(got.loss == want.loss);
  CHECK(got.accuracy == want.accuracy);
  CHECK(got.samples == 40);
  const double fp = Objective::create(m, d, oo)->evaluate().loss;
  const double q8 = evaluate_quantized(m, d, uniform_plan(m, 8, Scheme::Symmetric, Granularity::PerChannel, 1), oo).loss;
  CHECK(std::abs(q8 - fp) < 1e-2 * std::abs(fp));
  CHECK(std::abs(got.loss - fp) > std::abs(q8 - fp));  // 4 bits move it more than 8
}
