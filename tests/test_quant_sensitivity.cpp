// Tests of quant/ sensitivities: HAWQ-V1, HAWQ-V2 and Q-BERT statistics, the loss-increase model
// Omega, and trace sensitivities of a tiny network against its dense Hessian blocks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "quant/model_quant.h"
#include "quant/sensitivity.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "src/io/data_io.h"

using namespace curv::quant;

TEST_CASE("sensitivity: HAWQ-V1, HAWQ-V2, Q-BERT statistics and the negative-eigenvalue flag") {
  CHECK(eig_sensitivity(2.5).value == 2.5);
  CHECK_FALSE(eig_sensitivity(2.5).negative_top_eigenvalue);
  CHECK(eig_sensitivity(-0.5).negative_top_eigenvalue);
  CHECK(trace_sensitivity(10.0, 5).value == 2.0);
  CHECK(trace_sensitivity(10.0, 5, -1.0).negative_top_eigenvalue);
  const std::vector<double> lambdas{1, 2, 3, 4};
  const Sensitivity s = eig_stats_sensitivity(lambdas);
  CHECK(s.mean == 2.5);
  CHECK(s.stddev == doctest::Approx(std::sqrt(1.25)));
  CHECK(s.value == doctest::Approx(2.5 + std::sqrt(1.25)));
  CHECK(s.subsets == 4);
  CHECK(sensitivity_kind_from_string("eig-stats") == SensitivityKind::EigStats);
  CHECK_THROWS_WITH_AS(sensitivity_kind_from_string("hessian"),
                       "sensitivity \"hessian\" is not one of eig, trace, eig-stats", std::invalid_argument);
  CHECK_THROWS_AS(eig_stats_sensitivity(std::span<const double>{}), std::invalid_argument);

  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  std::vector<float> w(64);
  for (float& x : w) x = static_cast<float>(normal(rng));
  const std::vector<std::int64_t> shape{8, 8};
  const std::vector<int> bits{2, 3, 4, 8};
  const QuantSpec spec{8, Scheme::Symmetric, Granularity::PerChannel, 1};
  const std::vector<double> omega = loss_increase<float>(0.7, w, shape, spec, bits);
  REQUIRE(omega.size() == bits.size());
  for (std::size_t k = 0; k < bits.size(); ++k) {
    QuantSpec sb = spec;
    sb.bits = bits[k];
    CHECK(omega[k] == doctest::Approx(0.7 * quantization_error_sq<float>(w, shape, sb)));
  }
  CHECK(omega[0] > omega[1]);
  CHECK(omega[2] > omega[3]);
  const std::vector<int> bad{4, 12};
  CHECK_THROWS_WITH_AS(loss_increase<float>(0.7, w, shape, spec, bad), "bits (= 12) must be in 2..8",
                       std::invalid_argument);
}

TEST_CASE("trace sensitivities match the traces of the dense Hessian blocks, reproducibly") {
  using namespace curv;
  const Model m = build_arch("mlp:6", {4}, 3, 5);
  DataOptions dopt;
  dopt.seed = 6;
  const Dataset d = load_dataset("random:4:3:20", dopt);
  const auto layers = quant::quantizable_layers(m);
  REQUIRE(layers.size() == 2);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  auto obj = Objective::create(m, d, oo);
  quant::SensitivityOptions so;
  so.kind = quant::SensitivityKind::Trace;
  so.trace_probes = 4000;
  so.objective = oo;
  const auto per_layer = quant::layer_sensitivities(m, d, layers, so);
  const auto again = quant::layer_sensitivities(m, d, layers, so);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::int64_t n = layers[i].numel;
    Eigen::MatrixXd H;
    obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(n, n), H, {layers[i].param});
    const double exact = H.trace() / double(n);
    INFO("layer ", i, " exact ", exact, " estimate ", per_layer[i].value);
    CHECK(per_layer[i].value == doctest::Approx(exact).epsilon(0.05));
    CHECK(per_layer[i].value == again[i].value);  // seeded
  }
}
