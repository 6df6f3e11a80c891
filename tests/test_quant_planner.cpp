// Tests of quant/planner (the `curv quant plan` pipeline) and quant/quantized_eval: the plan for
// given sensitivities against brute force over every bit assignment, pins, feasibility before any
// sensitivity work, the baseline orders, and the evaluation of a quantized model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

#include "quant/act_quantizer.h"
#include "quant/activation.h"
#include "quant/inter_layer.h"
#include "quant/model_quant.h"
#include "quant/planner.h"
#include "quant/quantized_eval.h"
#include "quant/selection.h"
#include "src/core/builder.h"
#include "src/io/data_io.h"
#include "src/train/trainer.h"
#include "test_util.h"

using namespace curv;
using namespace curv::quant;
using curv_test::thrown_message;

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

// ---- the one size model --------------------------------------------------------------------------

TEST_CASE("size model: uniform b bits is feasible under --avg-bits b for every scheme and granularity") {
  // Gemm weights (mlp), Conv weights (lenet), and a transposed MatMul weight (vit).
  std::vector<Model> models{mlp(), build_arch("lenet", {1, 28, 28}, 10, 1), build_arch("vit:7-16-1-2", {1, 28, 28}, 10, 1)};
  for (const Model& m : models) {
    for (Scheme scheme : {Scheme::Symmetric, Scheme::Asymmetric})
      for (Granularity g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::Group})
        for (int b = kMinBits; b <= kMaxBits; ++b) {
          INFO(to_string(scheme), " ", to_string(g), " ", b, " bits");
          PlannerOptions o;
          o.spec.scheme = scheme;
          o.spec.granularity = g;
          o.spec.groups = 2;
          o.candidate_bits = {b};
          o.budget = {BudgetKind::AvgBits, double(b)};
          QuantPlanner planner(m, o);  // does not throw: feasible
          std::vector<double> ones(planner.layers().size(), 1.0);
          const PlanResult r = planner.plan(given(ones));
          CHECK(r.plan.totals.avg_bits == double(b));  // metadata never counts against it
          // The same plan as quant eval --uniform b: same sizes.
          const Plan u = uniform_plan(m, b, scheme, g, 2);
          CHECK(u.totals.avg_bits == double(b));
          CHECK(u.totals.size_bytes == r.plan.totals.size_bytes);
          CHECK(u.totals.overhead_bits == r.plan.totals.overhead_bits);
          // --size-kb at exactly that size is feasible too, and a byte less is not.
          PlannerOptions s = o;
          s.budget = {BudgetKind::SizeKB, double(u.totals.size_bytes) / 1024.0};
          CHECK_NOTHROW(QuantPlanner(m, s));
          s.budget = {BudgetKind::SizeKB, double(u.totals.size_bytes - 1) / 1024.0};
          CHECK_THROWS_AS(QuantPlanner(m, s), InfeasibleBudget);
        }
    // With mixed candidates, the optimum under --avg-bits b is never below what a uniform b plan
    // could use if Omega falls with bits: all-equal sensitivities on one layer size give uniform b.
    PlannerOptions o;
    o.candidate_bits = {2, 3, 4, 8};
    o.budget = {BudgetKind::AvgBits, 3.0};
    QuantPlanner planner(m, o);
    const auto& layers = planner.layers();
    CHECK(BitAllocator(planner.problem()).evaluate(std::vector<int>(layers.size(), 3)).avg_bits == 3.0);
  }
}

// ---- activations, inter-layer terms, selection -------------------------------------------------------

namespace {

Dataset small_data(int n = 48, std::uint64_t seed = 4) {
  DataOptions dopt;
  dopt.seed = seed;
  return load_dataset("random:6:4:" + std::to_string(n), dopt);
}

ObjectiveOptions f64() {
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  return oo;
}

// The dense Hessian over the listed parameters (in that order).
Eigen::MatrixXd dense_hessian(const Model& m, const Dataset& d, const std::vector<int>& params) {
  auto obj = Objective::create(m, d, f64());
  std::int64_t n = 0;
  for (int p : params) n += m.params()[p].size;
  Eigen::MatrixXd H;
  obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(n, n), H, params);
  return 0.5 * (H + H.transpose());
}

}  // namespace

TEST_CASE("inter-layer terms and measured_omega equal the dense Hessian's quadratic forms") {
  const Model m = mlp();
  const Dataset d = small_data();
  const auto layers = quantizable_layers(m);
  std::vector<int> params;
  for (const auto& l : layers) params.push_back(l.param);
  const Eigen::MatrixXd H = dense_hessian(m, d, params);
  QuantSpec spec;
  const std::vector<std::vector<int>> bits(layers.size(), std::vector<int>{2, 4});
  const InterLayerTerms t = inter_layer_terms(m, d, layers, spec, bits, f64());
  REQUIRE(t.c.size() == 2);
  REQUIRE(t.diag.size() == 3);
  CHECK(t.products == 6);
  std::vector<std::int64_t> off{0};
  for (const auto& l : layers) off.push_back(off.back() + l.numel);
  for (std::size_t i = 0; i + 1 < layers.size(); ++i)
    for (std::size_t x = 0; x < 2; ++x)
      for (std::size_t y = 0; y < 2; ++y) {
        QuantSpec a = spec, b = spec;
        a.bits = bits[i][x];
        b.bits = bits[i + 1][y];
        const std::vector<double> da = quantization_delta(m, layers[i], a), db = quantization_delta(m, layers[i + 1], b);
        const Eigen::Map<const Eigen::VectorXd> va(da.data(), layers[i].numel), vb(db.data(), layers[i + 1].numel);
        const double want = va.dot(H.block(off[i], off[i + 1], layers[i].numel, layers[i + 1].numel) * vb);
        CHECK(t.c[i][x][y] == doctest::Approx(want).epsilon(1e-9).scale(1e-6));
      }
  // The measured diagonal terms 1/2 dW_i^T H_ii dW_i, the last layer included.
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (std::size_t x = 0; x < 2; ++x) {
      QuantSpec a = spec;
      a.bits = bits[i][x];
      const std::vector<double> da = quantization_delta(m, layers[i], a);
      const Eigen::Map<const Eigen::VectorXd> va(da.data(), layers[i].numel);
      const double want = 0.5 * va.dot(H.block(off[i], off[i], layers[i].numel, layers[i].numel) * va);
      CHECK(t.diag[i][x] == doctest::Approx(want).epsilon(1e-9).scale(1e-6));
    }
  // 1/2 dW^T H dW of a whole plan, one product.
  const Plan plan = uniform_plan(m, 3, Scheme::Symmetric, Granularity::PerChannel, 1);
  Eigen::VectorXd dw(off.back());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    QuantSpec s = spec;
    s.bits = 3;
    const auto di = quantization_delta(m, layers[i], s);
    dw.segment(off[i], layers[i].numel) = Eigen::Map<const Eigen::VectorXd>(di.data(), layers[i].numel);
  }
  CHECK(measured_omega(m, d, plan, f64()) == doctest::Approx(0.5 * dw.dot(H * dw)).epsilon(1e-9));
}

TEST_CASE("QuantPlanner with inter-layer terms: the plan is the enumerated optimum of diagonal + chain Omega") {
  const Model m = mlp();
  const Dataset d = small_data();
  PlannerOptions o;
  o.candidate_bits = {2, 3, 4, 8};
  o.budget = {BudgetKind::AvgBits, 3.2};
  QuantPlanner planner(m, o);
  const auto& layers = planner.layers();
  std::vector<std::vector<int>> widths;
  for (std::size_t i = 0; i < layers.size(); ++i) widths.push_back(planner.weight_bits(i));
  PlanInputs in;
  in.chain = inter_layer_terms(m, d, layers, o.spec, widths, f64()).c;
  const std::vector<double> s = {0.5, 4.0, 0.02};
  const PlanResult r = planner.plan(given(s), in);
  // Enumerate: 1/2 s_i e_i(b_i) + sum chain terms, within the budget.
  const auto e = errors(m, layers, o.spec, o.candidate_bits);  // 1/2 e
  std::int64_t total = 0;
  for (const auto& l : layers) total += l.numel;
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> best_bits;
  for (std::size_t a = 0; a < 4; ++a)
    for (std::size_t b = 0; b < 4; ++b)
      for (std::size_t c = 0; c < 4; ++c) {
        const std::size_t k[3] = {a, b, c};
        std::int64_t wb = 0;
        double w = 0.0;
        for (std::size_t i = 0; i < 3; ++i) wb += layers[i].numel * o.candidate_bits[k[i]], w += s[i] * e[i][k[i]];
        auto wi = [&](std::size_t i, std::size_t kk) {
          return std::find(widths[i].begin(), widths[i].end(), o.candidate_bits[kk]) - widths[i].begin();
        };
        w += in.chain[0][wi(0, a)][wi(1, b)] + in.chain[1][wi(1, b)][wi(2, c)];
        if (double(wb) <= 3.2 * double(total) * (1 + 1e-12) && w < best)
          best = w, best_bits = {o.candidate_bits[a], o.candidate_bits[b], o.candidate_bits[c]};
      }
  CHECK(r.plan.totals.predicted_omega == doctest::Approx(best).epsilon(1e-10));
  std::vector<int> got;
  for (const auto& l : r.plan.layers) got.push_back(l.bits);
  CHECK(got == best_bits);
  CHECK(r.plan.optimizer_method == "chain-dp");
  CHECK(r.plan.inter_layer_omega != 0.0);
  // With measured diagonal terms too, Omega is the block-tridiagonal quadratic form 1/2 dW^T H dW
  // restricted to adjacent blocks: check it against the dense Hessian for the chosen plan.
  const InterLayerTerms t = inter_layer_terms(m, d, layers, o.spec, widths, f64());
  in.diag = t.diag;
  const PlanResult q = planner.plan(given(s), in);
  std::vector<int> params;
  for (const auto& l : layers) params.push_back(l.param);
  const Eigen::MatrixXd H = dense_hessian(m, d, params);
  Eigen::MatrixXd T = H;
  std::vector<std::int64_t> off{0};
  for (const auto& l : layers) off.push_back(off.back() + l.numel);
  T.block(off[0], off[2], layers[0].numel, layers[2].numel).setZero();  // not adjacent
  T.block(off[2], off[0], layers[2].numel, layers[0].numel).setZero();
  Eigen::VectorXd dw(off.back());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    QuantSpec qs = o.spec;
    qs.bits = q.plan.layers[i].bits;
    const auto di = quantization_delta(m, layers[i], qs);
    dw.segment(off[i], layers[i].numel) = Eigen::Map<const Eigen::VectorXd>(di.data(), layers[i].numel);
  }
  CHECK(q.plan.totals.predicted_omega == doctest::Approx(0.5 * dw.dot(T * dw)).epsilon(1e-9));
}

TEST_CASE("measured selection and --max-drop pick frontier plans by their calibration loss and accuracy") {
  // A model that fits its calibration data, so that low bit widths cost accuracy.
  const Dataset calib = small_data(60, 9);
  TrainOptions to;
  to.epochs = 150;
  to.batch_size = 0;
  to.optimizer.kind = OptimizerKind::Adam;
  to.schedule.lr = 0.03;
  to.objective = f64();
  Trainer trainer(mlp(), calib, nullptr, to);
  REQUIRE(trainer.run());
  const Model m = trainer.eval_model();
  REQUIRE(trainer.evaluate(calib).accuracy > 0.8);
  PlannerOptions o;
  o.candidate_bits = {2, 3, 4, 8};
  o.budget = {BudgetKind::AvgBits, 4.0};
  QuantPlanner planner(m, o);
  const PlanResult r = planner.plan(given({0.5, 4.0, 0.02}));
  SUBCASE("measured: the K points nearest the budget and the widest uniform plan, lowest loss wins") {
    const SelectionResult s = select_measured(planner, r, m, calib, 3, f64(), o.budget);
    REQUIRE(s.evaluated.size() == 4);
    double best = std::numeric_limits<double>::infinity();
    for (const auto& e : s.evaluated) {
      best = std::min(best, e.eval.loss);
      CHECK(e.avg_bits <= 4.0 + 1e-12);
      const Plan p = e.point < r.frontier.points.size() ? planner.plan_for(r, r.frontier.points[e.point]) : s.plan;
      if (e.point < r.frontier.points.size()) CHECK(evaluate_quantized(m, calib, p, f64()).loss == e.eval.loss);
    }
    CHECK(s.evaluated.back().point == r.frontier.points.size());  // the uniform candidate
    CHECK(s.evaluated.back().avg_bits == 4.0);
    CHECK(evaluate_quantized(m, calib, s.plan, f64()).loss == best);
    CHECK(s.plan.selection["method"] == "measured");
    CHECK(s.plan.selection["evaluated"].size() == 4);
  }
  SUBCASE("max-drop: the bisection's plan meets the drop, and an impossible drop names the best one") {
    const SelectionResult s = select_max_drop(planner, r, m, calib, 5.0, f64(), std::nullopt);
    const EvalResult ref = Objective::create(m, calib, f64())->evaluate();
    const EvalResult got = evaluate_quantized(m, calib, s.plan, f64());
    CHECK(100.0 * (ref.accuracy - got.accuracy) <= 5.0);
    // Bisection over the cost-ordered frontier: every evaluated point below the chosen one failed.
    for (const auto& e : s.evaluated)
      if (e.point < s.chosen) CHECK(100.0 * (ref.accuracy - e.eval.accuracy) > 5.0);
    CHECK(s.evaluated.size() <= 2 + static_cast<std::size_t>(std::ceil(std::log2(double(r.frontier.points.size())))));
    PlannerOptions tight = o;
    tight.candidate_bits = {2};
    tight.budget = {BudgetKind::AvgBits, 2.0};
    QuantPlanner p2(m, tight);
    const PlanResult r2 = p2.plan(given({0.5, 4.0, 0.02}));
    REQUIRE(r2.frontier.points.size() == 1);
    const double d2 = 100.0 * (ref.accuracy - evaluate_quantized(m, calib, r2.plan, f64()).accuracy);
    REQUIRE(d2 > 0.0);  // 2 bits lose accuracy on this model and data
    const std::string msg =
        thrown_message<std::invalid_argument>([&] { select_max_drop(p2, r2, m, calib, d2 / 2, f64(), std::nullopt); });
    INFO(msg);
    CHECK(msg.find("no frontier point is within a drop of") != std::string::npos);
    CHECK(msg.find("accuracy points: the largest one") != std::string::npos);
  }
}

TEST_CASE("activations in the planner: options are (weight, activation) pairs and Omega adds the activation part") {
  const Model m = mlp();
  const Dataset d = small_data();
  PlannerOptions o;
  o.candidate_bits = {2, 4, 8};
  o.act_candidate_bits = {4, 8};
  o.budget = {BudgetKind::GBops, 1e-9 * 6000.0};  // 200 MACs: between 2x4 and 8x8 bits
  QuantPlanner planner(m, o);
  for (const auto& l : planner.problem().layers) CHECK(l.options.size() == 6);
  const auto& layers = planner.layers();
  PlanInputs in;
  in.act_ranges = calibrate_activations(m, d, layers, {}, f64());
  in.act_err = activation_errors(m, d, layers, in.act_ranges, o.act_candidate_bits, Scheme::Asymmetric, f64());
  SensitivityOptions so;
  so.trace_probes = 64;
  so.objective = f64();
  in.act_sens = activation_sensitivities(m, d, layers, so);
  const PlanResult r = planner.plan(given({0.5, 4.0, 0.02}), in);
  CHECK(r.plan.totals.bops <= 6000);
  CHECK(r.frontier.cost == CostKind::Bops);
  CHECK(has_activation_quantization(r.plan));
  std::int64_t bops = 0;
  for (const auto& l : r.plan.layers) {
    CHECK((l.act_bits == 4 || l.act_bits == 8));
    bops += l.macs * l.bits * l.act_bits;
    const std::size_t k = l.act_bits == 4 ? 0 : 1;
    const std::size_t i = &l - r.plan.layers.data();
    CHECK(l.act_omega == doctest::Approx(0.5 * in.act_sens[i].value * in.act_err[i][k]));
    CHECK(l.act_lo == in.act_ranges[i].lo);
  }
  CHECK(bops == r.plan.totals.bops);
  // Round trip through JSON keeps the activation fields and totals.
  Plan named = r.plan;
  named.command = "test";
  named.model_sha256 = std::string(64, 'a');
  const Plan back = plan_from_json(plan_to_json(named), "mem");
  CHECK(back.layers[1].act_bits == r.plan.layers[1].act_bits);
  CHECK(back.totals.predicted_omega == r.plan.totals.predicted_omega);
  // Missing activation inputs are an error.
  CHECK_THROWS_AS(planner.plan(given({0.5, 4.0, 0.02})), std::invalid_argument);
}
