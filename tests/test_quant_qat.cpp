// Tests of quantization-aware fine-tuning (Trainer::weight_transform with the plan's weight
// quantizers, activation FakeQuantize nodes): the fake-quantized weights equal apply_plan's, the
// first step is the hand-computed straight-through step, and fine-tuning lowers the loss of the
// quantized model.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "quant/act_quantizer.h"
#include "quant/activation.h"
#include "quant/fake_quant_weights.h"
#include "quant/model_quant.h"
#include "quant/quantized_eval.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "src/io/data_io.h"
#include "src/train/trainer.h"

using namespace curv;
using namespace curv::quant;

namespace {

constexpr double kStepTol = 1e-12;  // same float64 arithmetic, summed in the same order

ObjectiveOptions f64() {
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  return oo;
}

Dataset data(int n, std::uint64_t seed) {
  DataOptions d;
  d.seed = seed;
  return load_dataset("random:6:4:" + std::to_string(n), d);
}

// Weights of a 2-bit plan (and, with `acts`, 4-bit activations with calibrated ranges).
Plan low_bit_plan(const Model& m, const Dataset& d, bool acts) {
  Plan p = uniform_plan(m, 2, Scheme::Symmetric, Granularity::PerChannel, 1);
  if (acts) {
    const auto layers = quantizable_layers(m);
    const auto r = calibrate_activations(m, d, layers, {}, f64());
    for (std::size_t i = 0; i < p.layers.size(); ++i) {
      p.layers[i].act_bits = 4;
      p.layers[i].act_lo = r[i].lo;
      p.layers[i].act_hi = r[i].hi;
      p.layers[i].act_numel = r[i].numel;
    }
  }
  p.totals = compute_totals(p);
  return p;
}

TrainOptions sgd_full_batch(double lr, std::int64_t epochs) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 0;
  o.shuffle = false;
  o.schedule.lr = lr;
  o.objective = f64();
  return o;
}

}  // namespace

TEST_CASE("WeightFakeQuantizer replaces the plan layers by apply_plan's weights, including transposed ones") {
  for (const char* arch : {"mlp:12-8", "vit:7-8-1-2"}) {
    const bool image = std::string(arch).rfind("vit", 0) == 0;
    const Model m = build_arch(arch, image ? Shape{1, 28, 28} : Shape{6}, 4, 2);
    const Plan plan = uniform_plan(m, 3, Scheme::Asymmetric, Granularity::PerChannel, 1);
    Model q = m;
    apply_plan(q, plan);
    std::vector<double> w = m.flat_params();
    WeightFakeQuantizer(m, plan).apply(w);
    CHECK(w == q.flat_params());
  }
}

TEST_CASE("QAT: the first step is the straight-through step w - lr grad L(Q(w)), with and without activations") {
  const Model m = build_arch("mlp:12-8", {6}, 4, 5);
  const Dataset d = data(32, 3);
  for (bool acts : {false, true}) {
    INFO("activations quantized: ", acts);
    const Plan plan = low_bit_plan(m, d, acts);
    const Model train_model = with_activation_quantizers(m, plan);
    auto wq = std::make_shared<WeightFakeQuantizer>(m, plan);
    TrainOptions o = sgd_full_batch(0.1, 1);
    o.weight_transform = [wq](std::vector<double>& w) { wq->apply(w); };
    Trainer t(train_model, d, nullptr, o);
    REQUIRE(t.run());
    // By hand: quantize, take the gradient there (through FakeQuantize's straight-through mask),
    // apply it to the latent weights.
    const std::vector<double> w0 = m.flat_params();
    std::vector<double> q0 = w0;
    wq->apply(q0);
    Model at_q = train_model;
    at_q.set_flat_params(q0);
    Eigen::VectorXd g;
    Objective::create(at_q, d, f64())->gradient(g);
    const std::vector<double> w1 = t.eval_model().flat_params();
    double err = 0, scale = 0;
    for (std::size_t k = 0; k < w0.size(); ++k) {
      err = std::max(err, std::abs(w1[k] - (w0[k] - 0.1 * g[k])));
      scale = std::max(scale, std::abs(w1[k] - w0[k]));
    }
    CHECK(err <= kStepTol);
    CHECK(scale > 1e-6);  // it moved
    // Not the float gradient: the step differs from plain SGD's.
    Eigen::VectorXd gf;
    Objective::create(train_model, d, f64())->gradient(gf);
    CHECK((g - gf).norm() > 1e-6);
  }
}

TEST_CASE("QAT: fine-tuning lowers the loss of the fake-quantized model, and evaluate() measures it") {
  const Model m = build_arch("mlp:12-8", {6}, 4, 5);
  const Dataset d = data(64, 8);
  for (bool acts : {false, true}) {
    INFO("activations quantized: ", acts);
    const Plan plan = low_bit_plan(m, d, acts);
    const double before = evaluate_quantized(m, d, plan, f64()).loss;
    auto wq = std::make_shared<WeightFakeQuantizer>(m, plan);
    TrainOptions o = sgd_full_batch(0.01, 60);
    o.optimizer.kind = OptimizerKind::Adam;
    o.weight_transform = [wq](std::vector<double>& w) { wq->apply(w); };
    Trainer t(with_activation_quantizers(m, plan), d, nullptr, o);
    REQUIRE(t.run());
    Model latent = m;
    latent.set_flat_params(t.eval_model().flat_params());
    const double after = evaluate_quantized(latent, d, plan, f64()).loss;
    INFO("quantized loss before ", before, " after ", after);
    CHECK(after < 0.8 * before);
    CHECK(t.evaluate(d).loss == doctest::Approx(after).epsilon(1e-12));
  }
}

TEST_CASE("staged fine-tuning (HAWQ-V1): stages cover the fine-tuning order cumulatively, inactive layers stay float") {
  const std::vector<std::string> order{"c", "a", "e", "b", "d"};
  CHECK(WeightFakeQuantizer::stage_layers(order, 0, 2) == std::vector<std::string>{"c", "a", "e"});
  CHECK(WeightFakeQuantizer::stage_layers(order, 1, 2) == order);
  CHECK(WeightFakeQuantizer::stage_layers(order, 0, 5) == std::vector<std::string>{"c"});
  CHECK_THROWS_AS(WeightFakeQuantizer::stage_layers(order, 2, 2), std::invalid_argument);
  const Model m = build_arch("mlp:12-8", {6}, 4, 5);
  const Plan plan = uniform_plan(m, 2, Scheme::Symmetric, Granularity::PerChannel, 1);
  WeightFakeQuantizer wq(m, plan);
  wq.set_active({plan.layers[1].name});
  std::vector<double> w = m.flat_params();
  wq.apply(w);
  Model q = m;
  apply_plan(q, plan);
  const auto& P = m.params();
  for (std::size_t p = 0; p < P.size(); ++p)
    for (std::int64_t k = 0; k < P[p].size; ++k) {
      const double want = P[p].name == plan.layers[1].name ? q.flat_params()[P[p].offset + k] : m.flat_params()[P[p].offset + k];
      REQUIRE(w[P[p].offset + k] == want);
    }
  CHECK_THROWS_AS(wq.set_active({"nope"}), std::invalid_argument);
}
