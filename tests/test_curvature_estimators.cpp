// Tests of curvature/ stochastic estimators: Hutchinson trace and diagonal, Hutch++, SLQ spectral
// density, and their determinism (same seed, same bits for any thread count and batch size).
//
// Oracles: random symmetric matrices Q diag(lambda) Q^T with a planted spectrum (known trace,
// moments and cluster masses) and exact Gauss quadrature on the probes' Krylov spaces.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "curvature/hutch_plus_plus.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/slq_density.h"
#include "tests/test_util.h"

using namespace curv;
using namespace curv_test;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using Index = Eigen::Index;

namespace {

// Tolerances.
constexpr double kEigenTol = 1e-8;          // Ritz values of an invariant subspace vs the planted spectrum
constexpr double kQuadratureTol = 1e-9;     // Gauss quadrature exactness (relative)
constexpr double kStdErrors = 3.0;          // statistical checks: within 3 standard errors
constexpr double kDensityMassTol = 1e-12;   // Riemann sum of the density vs 1
constexpr double kClusterMassTol = 0.08;    // SLQ mass of a spectral cluster vs its true fraction

// A dense operator whose columns never depend on the block they sit in (one GEMV per column on
// its own copy), like the model operators: lets us test bitwise batch-size independence.
class ColumnwiseOperator final : public LinearOperator {
 public:
  explicit ColumnwiseOperator(Matrix A) : m_A(std::move(A)) {}
  Index rows() const override { return m_A.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    Y.resize(X.rows(), X.cols());
    for (Index j = 0; j < X.cols(); ++j) {
      const Vector x = X.col(j);
      const Vector y = m_A * x;
      Y.col(j) = y;
    }
  }

 private:
  Matrix m_A;
};

// Records the width of every block apply.
class CountingOperator final : public LinearOperator {
 public:
  explicit CountingOperator(const LinearOperator& A) : m_A(A) {}
  Index rows() const override { return m_A.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    widths.push_back(X.cols());
    m_A.apply(X, Y);
  }
  mutable std::vector<Index> widths;

 private:
  const LinearOperator& m_A;
};

}  // namespace

// ================================================================================================
TEST_CASE("HutchinsonTrace: within 3 standard errors, tolerance stop") {
  const Index n = 100;
  const Vector lambda = Vector::LinSpaced(n, -1.0, 3.0);
  const DenseOperator op(planted(lambda, 21));
  const double exact = lambda.sum();

  HutchinsonTraceOptions o;
  o.probes = 200;
  o.seed = 5;
  HutchinsonTrace h(op, o);
  CHECK(h.compute() == 200);
  CHECK(h.info() == CompInfo::Successful);
  INFO("estimate " << h.estimate() << " +- " << h.std_error() << ", exact " << exact);
  CHECK(std::abs(h.estimate() - exact) <= kStdErrors * h.std_error());
  CHECK(h.num_operations() == 200);
  CHECK(h.samples().size() == 200u);

  SUBCASE("stops at the first batch meeting tol") {
    o.tol = 0.05;
    o.batch = 4;
    HutchinsonTrace t(op, o);
    const Index used = t.compute();
    CHECK(t.info() == CompInfo::Successful);
    CHECK(used < 200);
    CHECK(used % 4 == 0);
    CHECK(t.std_error() <= 0.05 * std::abs(t.estimate()));
  }
  SUBCASE("a budget too small for tol is NotConverging") {
    o.tol = 1e-6;
    o.probes = 16;
    HutchinsonTrace t(op, o);
    CHECK(t.compute() == 16);
    CHECK(t.info() == CompInfo::NotConverging);
  }
  SUBCASE("bad options") {
    o.batch = 0;
    CHECK_THROWS_WITH_AS(HutchinsonTrace(op, o), "HutchinsonTrace: batch (= 0) must be >= 1", std::invalid_argument);
  }
}

TEST_CASE("HutchPlusPlus beats Hutchinson at equal products on a decaying spectrum") {
  const Index n = 300;
  Vector lambda(n);
  for (Index i = 0; i < n; ++i) lambda(i) = std::exp(-static_cast<double>(i) / 10.0);
  const DenseOperator op(planted(lambda, 31));
  const double exact = lambda.sum();
  const Index budget = 60;
  const int seeds = 20;

  double se_h = 0.0, se_pp = 0.0;
  for (int s = 0; s < seeds; ++s) {
    HutchinsonTraceOptions ho;
    ho.probes = budget;
    ho.seed = 1000 + s;
    HutchinsonTrace h(op, ho);
    h.compute();
    HutchPlusPlusOptions po;
    po.probes = budget;
    po.seed = 1000 + s;
    HutchPlusPlus pp(op, po);
    CHECK(pp.compute() == budget);
    CHECK(pp.num_operations() == budget);
    CHECK(h.num_operations() == budget);
    se_h += (h.estimate() - exact) * (h.estimate() - exact);
    se_pp += (pp.estimate() - exact) * (pp.estimate() - exact);
  }
  const double rmse_h = std::sqrt(se_h / seeds), rmse_pp = std::sqrt(se_pp / seeds);
  MESSAGE("trace " << exact << ", " << budget << " products, RMSE over " << seeds << " seeds: Hutchinson " << rmse_h
                   << ", Hutch++ " << rmse_pp);
  CHECK(rmse_pp < rmse_h);

  HutchPlusPlusOptions po;
  po.probes = 2;
  CHECK_THROWS_WITH_AS(HutchPlusPlus(op, po),
                       "HutchPlusPlus: probes (= 2) must be >= 3 (a third each for sketch, low-rank trace and residual)",
                       std::invalid_argument);
}

TEST_CASE("HutchinsonDiagonal: entries within 3 standard errors, same probes as the trace") {
  const Index n = 100;
  Matrix A = planted(Vector::LinSpaced(n, 0.5, 2.0), 41);
  A.diagonal().array() += 3.0;  // diagonally dominant
  const DenseOperator op(A);
  HutchinsonDiagonalOptions o;
  o.probes = 400;
  o.seed = 8;
  HutchinsonDiagonal d(op, o);
  CHECK(d.compute() == 400);
  Index within = 0;
  for (Index i = 0; i < n; ++i)
    if (std::abs(d.estimate()(i) - A(i, i)) <= kStdErrors * d.std_error()(i)) ++within;
  MESSAGE("diagonal: " << within << " of " << n << " entries within 3 stderr");
  CHECK(within >= 95);

  HutchinsonTraceOptions to;
  to.probes = 400;
  to.seed = 8;
  HutchinsonTrace t(op, to);
  t.compute();
  CHECK(d.estimate().sum() == doctest::Approx(t.estimate()).epsilon(1e-12));
}

// ================================================================================================
TEST_CASE("SlqDensity: lockstep block applies, exact moments, density integrates to 1") {
  const Index n = 150;
  const Vector lambda = Vector::LinSpaced(n, -1.5, 1.5);
  const Matrix A = planted(lambda, 51);
  const DenseOperator op(A);

  SUBCASE("one block apply with P columns per Lanczos step") {
    const CountingOperator counting(op);
    SlqDensityOptions o;
    o.probes = 6;
    o.steps = 12;
    o.grid_size = 500;
    SlqDensity slq(counting, o);
    CHECK(slq.compute() == 6);
    CHECK(counting.widths == std::vector<Index>(12, 6));
    CHECK(slq.num_operations() == 72);
    CHECK(slq.num_block_applies() == 12);
    CHECK(slq.nodes().rows() == 6);
    CHECK(slq.nodes().cols() == 12);

    // Passes of 4 then 2 probes: same nodes (the operator here is column-consistent only up to
    // GEMM rounding, so compare to round-off).
    const CountingOperator counting2(op);
    o.lockstep = 4;
    SlqDensity passes(counting2, o);
    passes.compute();
    std::vector<Index> expected(12, 4);
    expected.insert(expected.end(), 12, 2);
    CHECK(counting2.widths == expected);
    CHECK((passes.nodes() - slq.nodes()).cwiseAbs().maxCoeff() <= 1e-10);
  }
  SUBCASE("moments n sum tau theta^j equal Hutchinson on A^j with the same probes, j < 2M") {
    SlqDensityOptions o;
    o.probes = 5;
    o.steps = 8;
    o.grid_size = 200;
    o.seed = 77;
    SlqDensity slq(op, o);
    slq.compute();
    Matrix Aj = Matrix::Identity(n, n);
    for (int j = 0; j < 2 * o.steps; ++j) {
      HutchinsonTraceOptions ho;
      ho.probes = o.probes;
      ho.seed = o.seed;
      const DenseOperator ajop(Aj);
      HutchinsonTrace h(ajop, ho);
      h.compute();
      const double m = slq.moment(j).estimate;
      INFO("j = " << j << " SLQ " << m << " Hutchinson " << h.estimate());
      CHECK(std::abs(m - h.estimate()) <= kQuadratureTol * std::max(1.0, std::abs(h.estimate())));
      Aj = Aj * A;
    }
  }
  SUBCASE("moments j = 0, 1, 2 within 3 standard errors of tr(A^j)") {
    SlqDensityOptions o;
    o.probes = 64;
    o.steps = 20;
    o.grid_size = 1000;
    SlqDensity slq(op, o);
    slq.compute();
    CHECK(slq.moment(0).estimate == doctest::Approx(static_cast<double>(n)).epsilon(1e-12));
    const double tr1 = lambda.sum(), tr2 = lambda.squaredNorm();
    const auto m1 = slq.moment(1), m2 = slq.moment(2);
    INFO("tr(A) " << tr1 << " ~ " << m1.estimate << " +- " << m1.std_error << "; tr(A^2) " << tr2 << " ~ "
                  << m2.estimate << " +- " << m2.std_error);
    CHECK(std::abs(m1.estimate - tr1) <= kStdErrors * m1.std_error);
    CHECK(std::abs(m2.estimate - tr2) <= kStdErrors * m2.std_error);
  }
  SUBCASE("density: unit mass, cluster mass, grid covers the nodes") {
    // 70% of the spectrum near -1, 30% near +2.
    Vector d(n);
    for (Index i = 0; i < n; ++i) d(i) = i < 105 ? -1.0 + 0.002 * i : 2.0 + 0.002 * (i - 105);
    const DenseOperator dop(planted(d, 61));
    SlqDensityOptions o;
    o.probes = 20;
    o.steps = 30;
    o.grid_size = 4000;
    SlqDensity slq(dop, o);
    slq.compute();
    REQUIRE(slq.info() == CompInfo::Successful);
    const Vector& g = slq.grid();
    const double dx = g(1) - g(0);
    CHECK(slq.values().sum() * dx == doctest::Approx(1.0).epsilon(kDensityMassTol));
    CHECK(g(0) < slq.nodes().minCoeff());
    CHECK(g(g.size() - 1) > slq.nodes().maxCoeff());
    double left = 0.0;
    for (Index i = 0; i < g.size(); ++i)
      if (g(i) < 0.5) left += slq.values()(i) * dx;
    MESSAGE("SLQ mass of the cluster near -1: " << left << " (true 0.7), kernel sigma " << slq.sigma());
    CHECK(std::abs(left - 0.7) <= kClusterMassTol);
    CHECK(slq.sigma() == doctest::Approx(std::sqrt(1e-5 * (slq.nodes().maxCoeff() - slq.nodes().minCoeff() + 0.02))));
  }
  SUBCASE("invariant Krylov space: early stop, zero padding, moments still per-probe exact") {
    // 5 distinct eigenvalues: every probe's Krylov space is invariant after 5 steps.
    Vector d(30);
    for (Index i = 0; i < 30; ++i) d(i) = 1.0 + static_cast<double>(i % 5);
    const Matrix D = planted(d, 71);
    const DenseOperator small(D);
    SlqDensityOptions o;
    o.probes = 3;
    o.steps = 100;
    o.grid_size = 100;
    o.seed = 5;
    SlqDensity slq(small, o);
    slq.compute();
    REQUIRE(slq.info() == CompInfo::Successful);
    CHECK(slq.nodes().cols() == 30);  // M capped at n
    for (Index p = 0; p < 3; ++p) {
      CHECK(slq.steps()[p] == 5);
      CHECK((slq.nodes().row(p).tail(25).array() == 0.0).all());
      CHECK((slq.weights().row(p).tail(25).array() == 0.0).all());
      CHECK((slq.nodes().row(p).head(5).transpose() - Vector::LinSpaced(5, 1.0, 5.0)).cwiseAbs().maxCoeff() <=
            kEigenTol);
    }
    CHECK(slq.num_block_applies() == 5);
    Matrix Dj = D;
    for (int j = 1; j <= 12; ++j) {  // far beyond 2 * 5 steps: the quadrature is exact on span(V)
      HutchinsonTraceOptions ho;
      ho.probes = 3;
      ho.seed = 5;
      const DenseOperator djop(Dj);
      HutchinsonTrace h(djop, ho);
      h.compute();
      INFO("j = " << j);
      CHECK(std::abs(slq.moment(j).estimate - h.estimate()) <= kQuadratureTol * std::abs(h.estimate()));
      Dj = Dj * D;
    }
  }
  SUBCASE("moment before compute is a logic error") {
    SlqDensity slq(op);
    CHECK_THROWS_WITH_AS(slq.moment(1), "SlqDensity::moment: call compute() first", std::logic_error);
  }
}

// ================================================================================================
TEST_CASE("determinism: same seed gives bitwise equal results for 1 and 2 threads and any batch") {
  const Index n = 97;  // odd: columns of a block sit at different alignments
  const ColumnwiseOperator op(planted(Vector::LinSpaced(n, -2.0, 3.0), 81));

  auto trace_run = [&](int threads, Index batch) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    HutchinsonTraceOptions o;
    o.probes = 37;
    o.batch = batch;
    o.seed = 99;
    HutchinsonTrace h(op, o);
    h.compute();
    return std::make_pair(h.estimate(), h.samples());
  };
  const auto ref = trace_run(1, 8);
  for (int threads : {1, 2})
    for (Index batch : {1, 3, 8, 64}) {
      const auto r = trace_run(threads, batch);
      INFO("threads " << threads << " batch " << batch);
      CHECK(r.first == ref.first);
      CHECK(r.second == ref.second);
    }

  auto diag_run = [&](int threads, Index batch) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    HutchinsonDiagonalOptions o;
    o.probes = 21;
    o.batch = batch;
    o.seed = 3;
    HutchinsonDiagonal d(op, o);
    d.compute();
    return Matrix(d.estimate());
  };
  const Matrix dref = diag_run(1, 5);
  CHECK(bitwise_equal(diag_run(2, 5), dref));
  CHECK(bitwise_equal(diag_run(2, 1), dref));
  CHECK(bitwise_equal(diag_run(1, 21), dref));

  auto hpp_run = [&](int threads, Index batch) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    HutchPlusPlusOptions o;
    o.probes = 30;
    o.batch = batch;
    o.seed = 4;
    HutchPlusPlus h(op, o);
    h.compute();
    return h.estimate();
  };
  const double href = hpp_run(1, 8);
  CHECK(hpp_run(2, 8) == href);
  CHECK(hpp_run(2, 3) == href);
  CHECK(hpp_run(1, 30) == href);

  auto slq_run = [&](int threads, Index lockstep = 0) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    SlqDensityOptions o;
    o.lockstep = lockstep;
    o.probes = 4;
    o.steps = 15;
    o.grid_size = 300;
    o.seed = 12;
    SlqDensity s(op, o);
    s.compute();
    return std::make_tuple(s.nodes(), s.weights(), Matrix(s.values()));
  };
  const auto [n1, w1, v1] = slq_run(1);
  const auto [n2, w2, v2] = slq_run(2);
  CHECK(bitwise_equal(n1, n2));
  CHECK(bitwise_equal(w1, w2));
  CHECK(bitwise_equal(v1, v2));
  const auto [n3, w3, v3] = slq_run(2, 1);  // probes one at a time
  CHECK(bitwise_equal(n1, n3));
  CHECK(bitwise_equal(w1, w3));
  CHECK(bitwise_equal(v1, v3));
}
