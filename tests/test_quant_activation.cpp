// Tests of activation quantization: the FakeQuantize op against the scalar reference and the fast
// path (forward, straight-through derivatives), quantizer parameters and calibration by hand, the
// input-perturbation trick behind activation sensitivities against dense Hessians (per-sample
// Hessians, finite differences of the loss, and the closed form at a linear layer), and models
// with activation quantizers (evaluation, checkpoint round trip).
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "quant/act_quantizer.h"
#include "quant/activation.h"
#include "quant/model_quant.h"
#include "quant/quantized_eval.h"
#include "src/core/builder.h"
#include "src/core/fake_quantize.h"
#include "src/core/objective.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "test_util.h"

using namespace curv;
using namespace curv::quant;

namespace {

constexpr double kDenseTol = 1e-9;  // float64 products vs dense forms

ObjectiveOptions f64(std::int64_t micro_batch = 16) {
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  oo.micro_batch = micro_batch;
  return oo;
}

Dataset data(int n, std::uint64_t seed, const std::string& shape = "5", int classes = 3) {
  DataOptions d;
  d.seed = seed;
  return load_dataset("random:" + shape + ":" + std::to_string(classes) + ":" + std::to_string(n), d);
}

// 5 -> tanh(linear 4) -> tanh(linear 3) -> linear 3: every layer input has curvature.
Model tanh_mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  x = b.unary(b.linear(x, 3, "fc2"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc3"));
}

Eigen::MatrixXd block_hessian(const Model& m, const Dataset& d, int param) {
  auto obj = Objective::create(m, d, f64());
  const std::int64_t n = m.params()[param].size;
  Eigen::MatrixXd H;
  obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(n, n), H, {param});
  return H;
}

}  // namespace

TEST_CASE_TEMPLATE("FakeQuantize: op, scalar reference and fast path agree bit for bit", T, float, double) {
  std::mt19937 rng(4);
  std::normal_distribution<double> normal(0.3, 2.0);
  std::vector<T> x(1000);
  for (T& v : x) v = static_cast<T>(normal(rng));
  x[0] = static_cast<T>(0.5);  // ties round half to even
  for (int bits : {2, 4, 8})
    for (Scheme s : {Scheme::Symmetric, Scheme::Asymmetric}) {
      const FakeQuantizeAttrs a = act_quant_params(-1.0, 2.5, bits, s);  // clips part of x
      std::vector<T> ref(x.size()), fast(x.size()), op(x.size());
      fake_quantize_ref<T>(x, a, ref);
      fake_quantize<T>(x, a, fast);
      const OpPtr f = make_fake_quantize(a);
      OpCtx<T> c;
      OpState<T> st;
      c.state = &st;
      c.in.push_back({x.data(), {static_cast<std::int64_t>(x.size())}});
      f->forward(c, View<T>{op.data(), {static_cast<std::int64_t>(x.size())}});
      CHECK(ref == fast);
      CHECK(ref == op);
      // Outputs are on the grid (q - z) s and inside the clipping range.
      const T s_t = static_cast<T>(a.scale);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const T q = ref[i] / s_t + static_cast<T>(a.zero_point);
        CHECK(std::abs(q - std::nearbyint(q)) < 1e-3);
        CHECK(q >= static_cast<T>(a.qmin) - static_cast<T>(1e-3));
        CHECK(q <= static_cast<T>(a.qmax) + static_cast<T>(1e-3));
      }
      // Straight-through derivatives: g_x = m g_y, y' = m x', g_x' = m g_y' with m = in range.
      std::vector<T> g(x.size()), gx(x.size()), tx(2 * x.size()), ty(2 * x.size()), tg(2 * x.size()), tgx(2 * x.size());
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = static_cast<T>(0.1 * (i % 7) - 0.3);
      for (std::size_t i = 0; i < tx.size(); ++i) tx[i] = static_cast<T>(1 + i % 3), tg[i] = static_cast<T>(2 - i % 5);
      const std::int64_t n = static_cast<std::int64_t>(x.size());
      c.out = {op.data(), {n}};
      c.gout = {g.data(), {n}};
      c.gin = {View<T>{gx.data(), {n}}};
      f->backward(c);
      c.k = 2;
      c.tin = {ConstView<T>{tx.data(), {2, n}}};
      c.tout = View<T>{ty.data(), {2, n}};
      f->jvp(c);
      c.tgout = ConstView<T>{tg.data(), {2, n}};
      c.tgin = {View<T>{tgx.data(), {2, n}}};
      f->backward_tangent(c);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const T code = std::nearbyint(x[i] / static_cast<T>(a.scale)) + static_cast<T>(a.zero_point);
        const bool in = code >= static_cast<T>(a.qmin) && code <= static_cast<T>(a.qmax);
        CHECK(gx[i] == (in ? g[i] : T(0)));
        for (std::size_t j = 0; j < 2; ++j) {
          CHECK(ty[j * x.size() + i] == (in ? tx[j * x.size() + i] : T(0)));
          CHECK(tgx[j * x.size() + i] == (in ? tg[j * x.size() + i] : T(0)));
        }
      }
    }
}

TEST_CASE("activation quantizer parameters by hand, and bad ranges") {
  // Asymmetric, 2 bits, range [-1, 3]: levels -2..1, s = 4/3, z = -2 - rint(-0.75) = -1.
  FakeQuantizeAttrs a = act_quant_params(-1.0, 3.0, 2, Scheme::Asymmetric);
  CHECK(a.qmin == -2);
  CHECK(a.qmax == 1);
  CHECK(a.scale == doctest::Approx(4.0 / 3.0));
  CHECK(a.zero_point == -1);
  std::vector<double> x{-2.0, -1.0, 0.0, 0.6, 0.7, 1.5, 10.0}, y(x.size());
  fake_quantize_ref<double>(x, a, y);
  const double s = 4.0 / 3.0;
  CHECK(y == std::vector<double>{-s, -s, 0.0, 0.0, s, s, 2 * s});
  // Symmetric, 3 bits, range [-1, 3]: levels -3..3, s = 1, z = 0.
  a = act_quant_params(-1.0, 3.0, 3, Scheme::Symmetric);
  CHECK(a.qmin == -3);
  CHECK(a.qmax == 3);
  CHECK(a.scale == 1.0);
  CHECK(a.zero_point == 0);
  // A ReLU output: [0, 6] at 8 bits keeps zero exact.
  a = act_quant_params(0.0, 6.0, 8, Scheme::Asymmetric);
  CHECK(a.zero_point == -128);
  std::vector<double> zero{0.0}, out{1.0};
  fake_quantize<double>(zero, a, out);
  CHECK(out[0] == 0.0);
  // Empty range: s = 1.
  CHECK(act_quant_params(0.0, 0.0, 4, Scheme::Asymmetric).scale == 1.0);
  CHECK_THROWS_AS(act_quant_params(1.0, 0.0, 4, Scheme::Asymmetric), std::invalid_argument);
  CHECK_THROWS_AS(act_quant_params(0.0, INFINITY, 4, Scheme::Asymmetric), std::invalid_argument);
  CHECK_THROWS_AS(act_quant_params(0.0, 1.0, 9, Scheme::Asymmetric), std::invalid_argument);
  CHECK_THROWS_AS(make_fake_quantize({0.0, 0, -1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(make_fake_quantize({1.0, 5, -1, 1}), std::invalid_argument);
}

TEST_CASE("calibration: min/max and percentile ranges, and the activation errors, by hand on the first layer") {
  const Model m = tanh_mlp(3);
  const Dataset d = data(40, 5);
  const auto layers = quantizable_layers(m);
  REQUIRE(layers.size() == 3);
  // The first layer reads the data itself.
  std::vector<double> x(d.x.begin(), d.x.end());
  const auto mm = std::minmax_element(x.begin(), x.end());
  const auto r = calibrate_activations(m, d, layers, {}, f64());
  CHECK(r[0].lo == *mm.first);
  CHECK(r[0].hi == *mm.second);
  CHECK(r[0].numel == 5);
  CHECK(r[1].numel == 4);
  CHECK(r[1].lo >= -1.0);  // tanh outputs
  CHECK(r[1].hi <= 1.0);
  CalibOptions p;
  p.method = CalibMethod::Percentile;
  p.percentile = 95.0;
  const auto rp = calibrate_activations(m, d, layers, p, f64());
  std::vector<double> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  CHECK(rp[0].hi == sorted[static_cast<std::size_t>(std::floor(0.95 * (sorted.size() - 1)))]);
  CHECK(rp[0].lo == sorted[static_cast<std::size_t>(std::floor(0.05 * (sorted.size() - 1)))]);
  CHECK(rp[0].hi < r[0].hi);
  // e(b) = (1/N) sum_n ||Q(x_n) - x_n||^2 on the first layer.
  const std::vector<int> bits{2, 4};
  const auto e = activation_errors(m, d, layers, r, bits, Scheme::Asymmetric, f64());
  for (std::size_t k = 0; k < bits.size(); ++k) {
    const FakeQuantizeAttrs a = act_quant_params(r[0].lo, r[0].hi, bits[k], Scheme::Asymmetric);
    std::vector<double> y(x.size());
    fake_quantize_ref<double>(x, a, y);
    double want = 0;
    for (std::size_t i = 0; i < x.size(); ++i) want += (y[i] - x[i]) * (y[i] - x[i]);
    CHECK(e[0][k] == doctest::Approx(want / 40.0).epsilon(1e-12));
  }
  CHECK(e[1][0] > e[1][1]);
  CalibOptions bad;
  bad.method = CalibMethod::Percentile;
  bad.percentile = 30;
  CHECK_THROWS_AS(calibrate_activations(m, d, layers, bad, f64()), std::invalid_argument);
}

TEST_CASE("activation Hessian by an input perturbation: the mean of per-sample Hessians, checked densely") {
  const Model m = tanh_mlp(7);
  const Dataset d = data(6, 2);
  const auto layers = quantizable_layers(m);
  std::vector<int> deltas;
  const Model pm = with_input_perturbations(m, layers, deltas);
  REQUIRE(deltas.size() == 3);
  CHECK(pm.num_params() == m.num_params() + 5 + 4 + 3);
  CHECK(pm.flat_params().size() == m.flat_params().size() + 12);
  // The perturbation is zero: the model computes the same loss.
  CHECK(Objective::create(pm, d, f64())->value() == doctest::Approx(Objective::create(m, d, f64())->value()).epsilon(1e-14));

  for (std::size_t i = 0; i < layers.size(); ++i) {
    INFO("layer ", layers[i].name);
    const Eigen::MatrixXd H = block_hessian(pm, d, deltas[i]);
    // (1) H_delta = (1/N) sum_n H_delta^(n), the n-th sample's own Hessian: the block diagonal of
    // the Hessian of the mean loss with respect to all N activations, summed.
    Eigen::MatrixXd mean = Eigen::MatrixXd::Zero(H.rows(), H.cols());
    for (std::int64_t n = 0; n < d.size(); ++n) mean += block_hessian(pm, d.subset(n, 1), deltas[i]) / double(d.size());
    CHECK((H - mean).norm() <= kDenseTol * (1 + H.norm()));
    CHECK((H - H.transpose()).norm() <= kDenseTol * (1 + H.norm()));
  }
  // (2) y = W a + b at every layer, so d^2 L / d a^2 = W^T (d^2 L / d b^2) W: the activation
  // Hessian follows from the Hessian block of the layer's bias, a plain parameter.
  for (std::size_t i = 0; i < layers.size(); ++i) {
    INFO("layer ", layers[i].name);
    const Eigen::MatrixXd H = block_hessian(pm, d, deltas[i]);
    const std::string bias = layers[i].name.substr(0, layers[i].name.size() - 6) + "bias";
    const Eigen::MatrixXd Hb = block_hessian(m, d, m.find_param(bias));
    const Tensor<double>& W = m.param(layers[i].param);  // [out, in]
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Wm(
        W.data(), W.dim(0), W.dim(1));
    const Eigen::MatrixXd want = Wm.transpose() * Hb * Wm;
    CHECK((H - want).norm() <= kDenseTol * (1 + want.norm()));
  }
  // (3) At the last layer, logits = W a + b, so d^2 l_n / d a^2 = W^T (diag(p_n) - p_n p_n^T) W.
  {
    const Eigen::MatrixXd H = block_hessian(pm, d, deltas[2]);
    const Tensor<double>& W = m.param(layers[2].param);  // [3, 3]
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Wm(W.data(), 3, 3);
    Eigen::MatrixXd want = Eigen::MatrixXd::Zero(3, 3);
    // Logits per sample from a model that outputs them: the same graph, output = fc3.
    auto obj = Objective::create(m, d, f64());
    std::vector<Eigen::VectorXd> probs;
    obj->node_inputs({layers[2].node}, [&](const curv::NodeInput& io) {
      for (std::int64_t n = 0; n < io.input.dim(0); ++n) {
        Eigen::VectorXd a(3);
        for (int k = 0; k < 3; ++k) a(k) = io.input.data()[n * 3 + k];
        const Tensor<double>& bias = m.param(m.find_param("fc3.bias"));
        Eigen::VectorXd z = Wm * a + Eigen::Map<const Eigen::VectorXd>(bias.data(), 3);
        Eigen::VectorXd p = (z.array() - z.maxCoeff()).exp();
        p /= p.sum();
        want += Wm.transpose() * (Eigen::MatrixXd(p.asDiagonal()) - p * p.transpose()) * Wm / double(d.size());
      }
    });
    CHECK((H - want).norm() <= kDenseTol * (1 + want.norm()));
  }
  // (4) activation_sensitivities = Tr(H_delta) / n_a (many probes; Rademacher on a 3-4-5 block).
  SensitivityOptions so;
  so.trace_probes = 20000;
  so.objective = f64();
  const auto s = activation_sensitivities(m, d, layers, so);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const Eigen::MatrixXd H = block_hessian(pm, d, deltas[i]);
    const double want = H.trace() / double(H.rows());
    CHECK(std::abs(s[i].value - want) <= 4.5 * s[i].trace_stderr / double(H.rows()) + 1e-12);
  }
}

TEST_CASE("models with activation quantizers: FakeQuantize before each planned input, evaluation and checkpoints") {
  const Model m = build_arch("lenet", {1, 28, 28}, 10, 3);
  const Dataset d = data(24, 8, "1x28x28", 10);
  Plan plan = uniform_plan(m, 4, Scheme::Symmetric, Granularity::PerChannel, 1);
  const auto layers = quantizable_layers(m);
  const auto ranges = calibrate_activations(m, d, layers, {}, f64());
  for (std::size_t i = 0; i < plan.layers.size(); ++i) {
    if (i == 1) continue;  // one layer keeps float activations
    plan.layers[i].act_bits = 4;
    plan.layers[i].act_lo = ranges[i].lo;
    plan.layers[i].act_hi = ranges[i].hi;
    plan.layers[i].act_numel = ranges[i].numel;
  }
  plan.totals = compute_totals(plan);
  const Model q = quantized_model(m, plan);
  CHECK(q.num_params() == m.num_params());
  CHECK(q.nodes().size() == m.nodes().size() + plan.layers.size() - 1);
  int fq = 0;
  for (const Node& n : q.nodes())
    if (n.op->type() == "FakeQuantize") {
      ++fq;
      CHECK(n.name.find("/act_quant") != std::string::npos);
    }
  CHECK(fq == static_cast<int>(plan.layers.size()) - 1);
  // Quantizing activations changes the loss; weights-only differs from weights + activations.
  Plan weights_only = plan;
  for (auto& l : weights_only.layers) l.act_bits = 0;
  const double lq = evaluate_quantized(m, d, plan, f64()).loss;
  const double lw = evaluate_quantized(m, d, weights_only, f64()).loss;
  CHECK(lq != lw);
  // The checkpoint of the quantized model rebuilds the FakeQuantize nodes exactly.
  const auto dir = curv_test::scratch_dir("actq");
  save_checkpoint(q, (dir / "q.h5").string());
  const Model back = load_checkpoint((dir / "q.h5").string());
  CHECK(Objective::create(back, d, f64())->evaluate().loss == lq);
  // A plan layer that is not in the model.
  Plan bad = plan;
  bad.layers[0].name = "nope.weight";
  CHECK_THROWS_AS(with_activation_quantizers(m, bad), std::invalid_argument);
}
