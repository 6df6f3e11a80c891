// Tests of quant/ sensitivities: HAWQ-V1 (lambda_max / n), the eig bound, HAWQ-V2 and Q-BERT
// (|mean| + std over random disjoint subsets) statistics, the loss-increase model Omega, and the
// per-layer traces of a tiny network against its dense Hessian blocks, by per-layer probes and by
// shared probes with the control variate (curvature/block_trace.h).
#include <doctest/doctest.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "curvature/block_trace.h"
#include "quant/hessian_sensitivity.h"
#include "quant/model_quant.h"
#include "quant/sensitivity.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "src/io/data_io.h"
#include "test_util.h"

using namespace curv::quant;

TEST_CASE("sensitivity: HAWQ-V1, eig bound, HAWQ-V2, Q-BERT statistics and the negative-eigenvalue flag") {
  // HAWQ-V1 as published: lambda_max / n.
  CHECK(eig_sensitivity(2.5, 5).value == 0.5);
  CHECK(eig_sensitivity(2.5, 5).lambda_max == 2.5);
  CHECK(eig_sensitivity(2.5, 5).kind == SensitivityKind::Eig);
  CHECK_FALSE(eig_sensitivity(2.5, 5).negative_top_eigenvalue);
  CHECK(eig_sensitivity(-0.5, 1).negative_top_eigenvalue);
  CHECK_THROWS_AS(eig_sensitivity(1.0, 0), std::invalid_argument);
  // The Rayleigh bound keeps lambda_max itself.
  CHECK(eig_bound_sensitivity(2.5).value == 2.5);
  CHECK(eig_bound_sensitivity(2.5).kind == SensitivityKind::EigBound);
  CHECK(trace_sensitivity(10.0, 5).value == 2.0);
  CHECK(trace_sensitivity(10.0, 5).trace == 10.0);
  CHECK(trace_sensitivity(10.0, 5, -1.0).negative_top_eigenvalue);
  const std::vector<double> lambdas{1, 2, 3, 4};
  const Sensitivity s = eig_stats_sensitivity(lambdas);
  CHECK(s.mean == 2.5);
  CHECK(s.stddev == doctest::Approx(std::sqrt(1.25)));
  CHECK(s.value == doctest::Approx(2.5 + std::sqrt(1.25)));
  CHECK(s.subsets == 4);
  // Q-BERT's |mean|: negative eigenvalues keep the block sensitive (mean + std would rank it last).
  const std::vector<double> negative{-4, -2, -3, -3};
  const Sensitivity n = eig_stats_sensitivity(negative);
  CHECK(n.mean == -3.0);
  CHECK(n.stddev == doctest::Approx(std::sqrt(0.5)));
  CHECK(n.value == doctest::Approx(3.0 + std::sqrt(0.5)));
  CHECK(n.negative_top_eigenvalue);
  CHECK(n.value > s.value);
  CHECK(sensitivity_kind_from_string("eig-stats") == SensitivityKind::EigStats);
  CHECK(sensitivity_kind_from_string("eig-bound") == SensitivityKind::EigBound);
  CHECK_THROWS_WITH_AS(sensitivity_kind_from_string("hessian"),
                       "sensitivity \"hessian\" is not one of eig, eig-bound, trace, eig-stats", std::invalid_argument);
  CHECK_THROWS_AS(eig_stats_sensitivity(std::span<const double>{}), std::invalid_argument);

  // Omega(b) = 1/2 s ||Q_b(W) - W||^2.
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
    CHECK(omega[k] == doctest::Approx(0.5 * 0.7 * quantization_error_sq<float>(w, shape, sb)));
  }
  CHECK(omega[0] > omega[1]);
  CHECK(omega[2] > omega[3]);
  const std::vector<int> bad{4, 12};
  CHECK_THROWS_WITH_AS(loss_increase<float>(0.7, w, shape, spec, bad), "bits (= 12) must be in 2..8",
                       std::invalid_argument);

  // The equal-sensitivity baseline: every layer gets the mean (of |s| if the mean is not positive).
  const std::vector<double> v{1.0, 2.0, 6.0};
  CHECK(reorder_sensitivities(v, SensitivityOrder::Equal) == std::vector<double>{3.0, 3.0, 3.0});
  const std::vector<double> neg{-1.0, -3.0};
  CHECK(reorder_sensitivities(neg, SensitivityOrder::Equal) == std::vector<double>{2.0, 2.0});
  CHECK(sensitivity_order_from_string("equal") == SensitivityOrder::Equal);
}

TEST_CASE("Q-BERT subsets: disjoint, of round(frac N) samples, reproducible by seed") {
  const auto a = random_subsets(100, 4, 0.1, 7);
  REQUIRE(a.size() == 4);
  std::set<std::int64_t> all;
  for (const auto& s : a) {
    CHECK(s.size() == 10);
    for (std::int64_t i : s) {
      CHECK(i >= 0);
      CHECK(i < 100);
      all.insert(i);
    }
  }
  CHECK(all.size() == 40);  // disjoint
  CHECK(random_subsets(100, 4, 0.1, 7) == a);
  CHECK(random_subsets(100, 4, 0.1, 8) != a);
  // Not the consecutive slices of the data.
  bool consecutive = true;
  for (std::size_t k = 1; k < a[0].size(); ++k) consecutive = consecutive && a[0][k] == a[0][k - 1] + 1;
  CHECK_FALSE(consecutive);
  CHECK_THROWS_WITH_AS(random_subsets(100, 12, 0.1, 0),
                       "eig-stats: 12 disjoint subsets of 10 samples (fraction 0.100000) need 120 samples and at "
                       "least 2 subsets; the data has 100",
                       std::invalid_argument);
  CHECK_THROWS_AS(random_subsets(100, 2, 1.5, 0), std::invalid_argument);
}

namespace {

using Matrix = Eigen::MatrixXd;

// Block traces of a dense matrix for the given block sizes.
std::vector<double> block_traces(const Matrix& A, const std::vector<Eigen::Index>& sizes) {
  std::vector<double> t;
  Eigen::Index r = 0;
  for (Eigen::Index n : sizes) {
    t.push_back(A.block(r, r, n, n).trace());
    r += n;
  }
  return t;
}

// A "network-like" symmetric matrix: a few large outlier directions spread over all blocks (they
// couple the blocks) plus a small diagonal-dominant bulk.
Matrix outlier_matrix(Eigen::Index P, int outliers, std::uint64_t seed) {
  Eigen::VectorXd values = Eigen::VectorXd::Constant(P, 0.01);
  for (int k = 0; k < outliers; ++k) values(k) = 50.0 / (k + 1);
  for (Eigen::Index k = outliers; k < P; ++k) values(k) = 0.01 + 0.02 * double(k % 7);
  return curv_test::planted(values, seed);
}

}  // namespace

TEST_CASE("BlockTrace: unbiased block traces from shared probes, exact when the sketch spans the range") {
  using curv::BlockTrace;
  using curv::BlockTraceOptions;
  using curv::DenseOperator;
  const std::vector<Eigen::Index> sizes{3, 40, 7, 30};
  const Matrix A = outlier_matrix(80, 4, 11);
  const std::vector<double> exact = block_traces(A, sizes);
  DenseOperator op(A);
  SUBCASE("a sketch spanning the range leaves no residual: exact with zero variance") {
    Eigen::VectorXd values = Eigen::VectorXd::Zero(80);
    for (int k = 0; k < 6; ++k) values(k) = (k % 2 ? -1.0 : 1.0) * (10.0 + k);  // rank 6, indefinite
    const Matrix B = curv_test::planted(values, 3);
    DenseOperator lowrank(B);
    BlockTraceOptions o;
    o.sketch = 8;
    o.power = 0;
    o.max_probes = o.min_probes = 4;
    o.seed = 2;
    BlockTrace bt(lowrank, sizes, o);
    bt.compute();
    const std::vector<double> want = block_traces(B, sizes);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      INFO("block ", i, " known ", bt.known()[i], " exact ", want[i]);
      CHECK(bt.known()[i] == doctest::Approx(want[i]).epsilon(1e-9).scale(10.0));
      CHECK(bt.estimates()[i] == doctest::Approx(want[i]).epsilon(1e-9).scale(10.0));
      CHECK(bt.std_errors()[i] < 1e-9);
    }
  }
  SUBCASE("plain and control-variate estimates converge to the exact block traces") {
    for (Eigen::Index k : {Eigen::Index(0), Eigen::Index(8)}) {
      BlockTraceOptions o;
      o.sketch = k;
      o.max_probes = 4000;
      o.min_probes = 4000;
      o.batch = 200;
      o.seed = 5;
      BlockTrace bt(op, sizes, o);
      CHECK(bt.compute() == 4000);
      CHECK(bt.info() == curv::CompInfo::Successful);
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        INFO("sketch ", k, " block ", i, " estimate ", bt.estimates()[i], " +- ", bt.std_errors()[i], " exact ", exact[i]);
        CHECK(std::abs(bt.estimates()[i] - exact[i]) <= 4.5 * bt.std_errors()[i] + 1e-9);
      }
      CHECK(bt.num_operations() == 4000 + (k ? k * 3 : 0));  // power 1: AS, A(orth), AQ
    }
  }
  SUBCASE("the control variate removes most of the variance the outliers put into small blocks") {
    BlockTraceOptions o;
    o.max_probes = o.min_probes = 400;
    o.batch = 50;
    o.seed = 9;
    BlockTrace plain(op, sizes, o);
    plain.compute();
    o.sketch = 8;
    BlockTrace cv(op, sizes, o);
    cv.compute();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      INFO("block ", i, " plain stderr ", plain.std_errors()[i], " cv stderr ", cv.std_errors()[i]);
      CHECK(cv.std_errors()[i] < 0.2 * plain.std_errors()[i]);
    }
  }
  SUBCASE("stopping at a relative standard error") {
    BlockTraceOptions o;
    o.sketch = 8;
    o.tol = 0.02;
    o.max_probes = 5000;
    o.seed = 1;
    BlockTrace bt(op, sizes, o);
    const auto probes = bt.compute();
    CHECK(bt.info() == curv::CompInfo::Successful);
    CHECK(probes < 5000);
    for (std::size_t i = 0; i < sizes.size(); ++i) CHECK(bt.converged(static_cast<Eigen::Index>(i)));
    // Same seed, same result.
    BlockTrace again(op, sizes, o);
    again.compute();
    CHECK(again.estimates() == bt.estimates());
  }
  SUBCASE("bad settings") {
    CHECK_THROWS_AS(BlockTrace(op, {3, 40}), std::invalid_argument);
    CHECK_THROWS_AS(BlockTrace(op, {0, 80}), std::invalid_argument);
    BlockTraceOptions o;
    o.sketch = 80;
    CHECK_THROWS_AS(BlockTrace(op, sizes, o), std::invalid_argument);
    o = {};
    o.min_probes = 1;
    CHECK_THROWS_AS(BlockTrace(op, sizes, o), std::invalid_argument);
  }
}

TEST_CASE("trace sensitivities match the traces of the dense Hessian blocks: per layer and shared, reproducibly") {
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
  std::vector<double> exact;
  for (const auto& l : layers) {
    Eigen::MatrixXd H;
    obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(l.numel, l.numel), H, {l.param});
    exact.push_back(H.trace() / double(l.numel));
  }
  for (quant::TraceMethod method : {quant::TraceMethod::PerLayer, quant::TraceMethod::Shared}) {
    quant::SensitivityOptions so;
    so.kind = quant::SensitivityKind::Trace;
    so.trace_method = method;
    so.trace_probes = 4000;
    so.trace_sketch = 4;
    so.objective = oo;
    quant::SensitivityReport rep;
    const auto s = quant::layer_sensitivities(m, d, layers, so, &rep);
    const auto again = quant::layer_sensitivities(m, d, layers, so);
    REQUIRE(rep.trace_samples.size() == layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      INFO(quant::to_string(method), " layer ", i, " exact ", exact[i], " estimate ", s[i].value, " +- ",
           s[i].trace_stderr / double(layers[i].numel));
      CHECK(std::abs(s[i].value - exact[i]) <= 4.5 * s[i].trace_stderr / double(layers[i].numel) + 1e-12);
      CHECK(s[i].value == again[i].value);  // seeded
      CHECK(s[i].trace_probes == 4000);
    }
    if (method == quant::TraceMethod::Shared) {
      CHECK(rep.shared_probes == 4000);
      CHECK(rep.products == 4000 + 3 * 4);
    } else {
      CHECK(rep.products == 2 * 4000);
    }
  }
  // With a tolerance, shared probes stop early and layers that miss it fall back to per-layer probes.
  quant::SensitivityOptions so;
  so.kind = quant::SensitivityKind::Trace;
  so.trace_method = quant::TraceMethod::Shared;
  so.trace_probes = 16;
  so.trace_tol = 1e-6;  // unreachable in 16 probes
  so.trace_sketch = 0;
  so.objective = oo;
  quant::SensitivityReport rep;
  quant::layer_sensitivities(m, d, layers, so, &rep);
  CHECK(rep.fallback_layers == 2);
  CHECK(rep.products == 16 + 2 * 16);
}

TEST_CASE("eig sensitivities: V1 divides lambda_max by the layer size and eig-bound does not, Q-BERT on subsets") {
  using namespace curv;
  const Model m = build_arch("mlp:6", {4}, 3, 5);
  DataOptions dopt;
  dopt.seed = 6;
  const Dataset d = load_dataset("random:4:3:40", dopt);
  const auto layers = quant::quantizable_layers(m);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  auto top = [&](const Dataset& data, const quant::ModelLayer& l) {
    auto obj = Objective::create(m, data, oo);
    Eigen::MatrixXd H;
    obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(l.numel, l.numel), H, {l.param});
    return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(0.5 * (H + H.transpose())).eigenvalues().maxCoeff();
  };
  quant::SensitivityOptions so;
  so.objective = oo;
  so.eig_tol = 1e-10;
  so.kind = quant::SensitivityKind::Eig;
  const auto v1 = quant::layer_sensitivities(m, d, layers, so);
  so.kind = quant::SensitivityKind::EigBound;
  const auto bound = quant::layer_sensitivities(m, d, layers, so);
  so.kind = quant::SensitivityKind::EigStats;
  so.subsets = 3;
  so.subset_frac = 0.25;
  so.seed = 4;
  const auto qbert = quant::layer_sensitivities(m, d, layers, so);
  const auto subsets = quant::random_subsets(d.size(), 3, 0.25, 4);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const double lam = top(d, layers[i]);
    CHECK(v1[i].value == doctest::Approx(lam / double(layers[i].numel)).epsilon(1e-6));
    CHECK(bound[i].value == doctest::Approx(lam).epsilon(1e-6));
    std::vector<double> per;
    for (const auto& idx : subsets) per.push_back(top(quant::gather_samples(d, idx), layers[i]));
    const quant::Sensitivity want = quant::eig_stats_sensitivity(per);
    CHECK(qbert[i].value == doctest::Approx(want.value).epsilon(1e-6));
    CHECK(qbert[i].subsets == 3);
  }
}
