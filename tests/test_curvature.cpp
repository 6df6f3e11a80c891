// Tests of curvature/: operator wrappers, eigen solvers, trace/diagonal estimators, SLQ density,
// exact spectrum and the HDF5 spectra store.
//
// Oracles: diagonal operators, the tridiagonal Toeplitz matrix tridiag(-1, 2, -1) with eigenvalues
// 2 - 2 cos(k pi / (n + 1)), and random symmetric matrices Q diag(lambda) Q^T with a planted
// spectrum (Q from a Householder QR of a random matrix).
#include <doctest/doctest.h>
#include <hdf5.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "curvature/deflated_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutch_plus_plus.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/lanczos.h"
#include "curvature/power_iteration.h"
#include "curvature/scaled_operator.h"
#include "curvature/shifted_operator.h"
#include "curvature/slq_density.h"
#include "curvature/spectra_reader.h"
#include "curvature/spectra_store.h"
#include "curvature/summary_json.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using Index = Eigen::Index;
namespace fs = std::filesystem;

namespace {

// ---- named tolerances --------------------------------------------------------------------------
constexpr double kEigenTol = 1e-8;          // eigenvalues vs closed form / planted spectrum
constexpr double kResidualTol = 1e-8;       // ||A v - lambda v|| of converged pairs
constexpr double kOperatorTol = 1e-12;      // wrapper operators vs dense algebra (relative)
constexpr double kQuadratureTol = 1e-9;     // Gauss quadrature exactness (relative)
constexpr double kOrthoTol = 1e-12;         // ||V^T V - I||_max of a Lanczos basis
constexpr double kStdErrors = 3.0;          // statistical checks: within 3 standard errors
constexpr double kPowerErrorFactor = 10.0;  // power iteration error ~ tol r^2/(1-r^2) <= 10 tol here
constexpr double kDensityMassTol = 1e-12;   // Riemann sum of the density vs 1
constexpr double kClusterMassTol = 0.08;    // SLQ mass of a spectral cluster vs its true fraction

// ---- oracles -----------------------------------------------------------------------------------
Matrix random_matrix(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 eng(seed);
  Matrix M(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) M(i, j) = static_cast<double>(eng() >> 11) * 0x1.0p-53 - 0.5;
  return M;
}

Matrix toeplitz(Index n) {
  Matrix A = Matrix::Zero(n, n);
  for (Index i = 0; i < n; ++i) {
    A(i, i) = 2.0;
    if (i + 1 < n) A(i, i + 1) = A(i + 1, i) = -1.0;
  }
  return A;
}

// Eigenvalues of tridiag(-1, 2, -1), ascending.
Vector toeplitz_eigenvalues(Index n) {
  Vector v(n);
  for (Index k = 1; k <= n; ++k) v(k - 1) = 2.0 - 2.0 * std::cos(static_cast<double>(k) * std::numbers::pi / (n + 1));
  return v;
}

// Q diag(values) Q^T with a random orthogonal Q.
Matrix planted(const Vector& values, std::uint64_t seed) {
  const Index n = values.size();
  Eigen::HouseholderQR<Matrix> qr(random_matrix(n, n, seed));
  const Matrix Q = qr.householderQ();
  const Matrix A = Q * values.asDiagonal() * Q.transpose();
  return 0.5 * (A + A.transpose());
}

Vector sorted_desc(Vector v) {
  std::sort(v.data(), v.data() + v.size(), std::greater<>());
  return v;
}

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

// An operator too large to densify; never applied.
class HugeOperator final : public LinearOperator {
 public:
  Index rows() const override { return 5001; }
  void apply(const Matrix&, Matrix&) const override { throw std::logic_error("HugeOperator applied"); }
};

template <class E, class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

bool bitwise_equal(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::equal(a.data(), a.data() + a.size(), b.data());
}

fs::path test_dir() {
  const fs::path d = fs::temp_directory_path() / ("curv_test_curvature_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// ================================================================================================
TEST_CASE("wrapper operators match dense algebra") {
  const Index n = 40;
  Vector lambda = Vector::LinSpaced(n, -3.0, 5.0);
  const Matrix A = planted(lambda, 1);
  const DenseOperator op(A);
  const Matrix X = random_matrix(n, 5, 2);
  Matrix Y;

  ShiftedOperator shifted(op, 1.5);
  shifted.apply(X, Y);
  CHECK((Y - (A * X - 1.5 * X)).norm() <= kOperatorTol * (A * X).norm());

  ScaledOperator scaled(op, -2.0);
  scaled.apply(X, Y);
  CHECK((Y + 2.0 * A * X).norm() <= kOperatorTol * (A * X).norm());
  CHECK(scaled.num_products() == 5);

  // Deflate the two largest eigenpairs (taken from the exact spectrum).
  ExactSpectrum exact(op);
  exact.compute();
  const Matrix V = exact.top_vectors(2);
  const Vector top2 = exact.top(2);

  SUBCASE("Hotelling: deflated eigenvalues move to 0, the rest stay") {
    auto hot = DeflatedOperator::hotelling(op, V, top2);
    ExactSpectrum e(hot);
    e.compute();
    Vector expected = lambda;
    expected(n - 1) = 0.0;
    expected(n - 2) = 0.0;
    std::sort(expected.data(), expected.data() + n);
    CHECK((e.eigenvalues() - expected).cwiseAbs().maxCoeff() <= kEigenTol);
  }
  SUBCASE("projection: (I - VV^T) A (I - VV^T)") {
    auto proj = DeflatedOperator::projection(op, V);
    proj.apply(X, Y);
    const Matrix P = Matrix::Identity(n, n) - V * V.transpose();
    CHECK((Y - P * A * P * X).norm() <= kOperatorTol * (A * X).norm());
  }
  SUBCASE("non-orthonormal vectors are refused") {
    CHECK_THROWS_WITH_AS(DeflatedOperator::projection(op, Matrix::Ones(n, 1)),
                         "DeflatedOperator: vectors must be orthonormal (|V^T V - I|_max = 39.000000 > 1e-8)",
                         std::invalid_argument);
  }
}

// ================================================================================================
TEST_CASE("EigenSolver: Toeplitz top and bottom to 1e-8") {
  const Index n = 200;
  const DenseOperator op(toeplitz(n));
  const Vector exact = toeplitz_eigenvalues(n);
  EigenSolverOptions o;
  o.top = 4;
  o.bottom = 4;
  EigenSolver solver(op, o);
  CHECK(solver.info() == CompInfo::NotComputed);
  CHECK(solver.compute() == 8);
  REQUIRE(solver.info() == CompInfo::Successful);
  for (Index i = 0; i < 4; ++i) {
    INFO("i = " << i << " top residual " << solver.top_residuals()(i) << " bottom residual "
                << solver.bottom_residuals()(i));
    CHECK(std::abs(solver.top_values()(i) - exact(n - 1 - i)) <= kEigenTol);
    CHECK(std::abs(solver.bottom_values()(i) - exact(i)) <= kEigenTol);
    CHECK(solver.top_residuals()(i) <= kResidualTol);
    CHECK(solver.bottom_residuals()(i) <= kResidualTol);
  }
  CHECK(solver.num_operations() == op.num_products());
  MESSAGE("Toeplitz n=200, 4+4 eigenpairs: " << solver.num_operations() << " products");
}

TEST_CASE("EigenSolver: indefinite planted spectrum and a diagonal operator") {
  SUBCASE("indefinite") {
    const Index n = 150;
    Vector lambda = Vector::LinSpaced(n, -6.0, 4.0);
    lambda(0) = -9.0;  // a well separated negative end
    lambda(n - 1) = 7.0;
    const DenseOperator op(planted(lambda, 7));
    EigenSolverOptions o;
    o.top = 3;
    o.bottom = 3;
    o.seed = 42;
    EigenSolver solver(op, o);
    solver.compute();
    REQUIRE(solver.info() == CompInfo::Successful);
    for (Index i = 0; i < 3; ++i) {
      INFO("i = " << i << " residuals " << solver.top_residuals()(i) << ", " << solver.bottom_residuals()(i));
      CHECK(std::abs(solver.top_values()(i) - lambda(n - 1 - i)) <= kEigenTol);
      CHECK(std::abs(solver.bottom_values()(i) - lambda(i)) <= kEigenTol);
      CHECK(solver.top_residuals()(i) <= kResidualTol * 10);
      CHECK(solver.bottom_residuals()(i) <= kResidualTol * 10);
    }
    // Eigenvectors: unit norm, orthogonal.
    const Matrix& V = solver.top_vectors();
    CHECK((V.transpose() * V - Matrix::Identity(3, 3)).cwiseAbs().maxCoeff() <= 1e-10);
  }
  SUBCASE("diagonal") {
    const Index n = 60;
    Vector d(n);
    for (Index i = 0; i < n; ++i) d(i) = std::pow(0.8, static_cast<double>(i)) * (i % 2 ? -1.0 : 1.0);
    const DenseOperator op(d.asDiagonal().toDenseMatrix());
    EigenSolverOptions o;
    o.top = 2;
    o.bottom = 2;
    EigenSolver solver(op, o);
    solver.compute();
    REQUIRE(solver.info() == CompInfo::Successful);
    const Vector desc = sorted_desc(d);
    CHECK(std::abs(solver.top_values()(0) - desc(0)) <= kEigenTol);
    CHECK(std::abs(solver.top_values()(1) - desc(1)) <= kEigenTol);
    CHECK(std::abs(solver.bottom_values()(0) - desc(n - 1)) <= kEigenTol);
    CHECK(std::abs(solver.bottom_values()(1) - desc(n - 2)) <= kEigenTol);
  }
}

TEST_CASE("EigenSolver: bad options name the constraint") {
  const DenseOperator op(toeplitz(10));
  EigenSolverOptions o;
  o.top = 10;
  CHECK_THROWS_WITH_AS(EigenSolver(op, o),
                       "EigenSolver: top (= 10) must be < the operator size (= 10); use ExactSpectrum",
                       std::invalid_argument);
  o.top = 3;
  o.ncv = 3;
  CHECK_THROWS_WITH_AS(EigenSolver(op, o), "EigenSolver: ncv (= 3) must satisfy top (= 3) < ncv <= operator size (= 10)",
                       std::invalid_argument);
  o = {};
  o.top = 0;
  CHECK_THROWS_WITH_AS(EigenSolver(op, o),
                       "EigenSolver: top (= 0) and bottom (= 0) must be >= 0 with top + bottom >= 1",
                       std::invalid_argument);
}

// ================================================================================================
TEST_CASE("ExactSpectrum: closed form, trace, diagonal, asymmetry, size limit") {
  const Index n = 50;
  const DenseOperator op(toeplitz(n));
  ExactSpectrumOptions o;
  o.block = 7;  // not a divisor of n
  ExactSpectrum exact(op, o);
  CHECK(exact.compute() == n);
  REQUIRE(exact.info() == CompInfo::Successful);
  CHECK((exact.eigenvalues() - toeplitz_eigenvalues(n)).cwiseAbs().maxCoeff() <= kEigenTol);
  CHECK(exact.trace() == doctest::Approx(2.0 * n).epsilon(1e-14));
  CHECK((exact.diagonal().array() == 2.0).all());
  CHECK(exact.asymmetry() == 0.0);
  CHECK(exact.num_operations() == n);
  CHECK(exact.top(2)(0) > exact.top(2)(1));

  Matrix B = toeplitz(4);
  B(0, 1) = -0.5;  // not symmetric
  const DenseOperator bop(B);
  ExactSpectrum eb(bop);
  eb.compute();
  CHECK(eb.asymmetry() == doctest::Approx(std::sqrt(0.5) / B.norm()));
  CHECK(eb.matrix()(0, 1) == doctest::Approx(-0.75));

  const HugeOperator huge;
  CHECK_THROWS_WITH_AS(ExactSpectrum{huge},
                       "ExactSpectrum: operator size (= 5001) exceeds max_size (= 5000); the dense matrix would take "
                       "200 MB",
                       std::invalid_argument);
}

// ================================================================================================
TEST_CASE("PowerIteration: PyHessian semantics, and more products than Lanczos for 1e-3") {
  // lambda_1 = 10, lambda_2 = 9 (ratio 0.9), the rest in [-4, 8.5]: hard-ish for power iteration.
  const Index n = 400;
  Vector lambda = Vector::LinSpaced(n, -4.0, 8.5);
  lambda(n - 2) = 9.0;
  lambda(n - 1) = 10.0;
  const DenseOperator op(planted(lambda, 11));

  PowerIterationOptions po;  // PyHessian defaults: tol 1e-3, 100 iterations
  PowerIteration power(op, po);
  CHECK(power.compute() == 1);
  REQUIRE(power.info() == CompInfo::Successful);
  const double power_err = std::abs(power.values()(0) - 10.0) / 10.0;
  INFO("power: value " << power.values()(0) << " residual " << power.residuals()(0));
  CHECK(power_err <= kPowerErrorFactor * po.tol);
  CHECK(power.num_operations() == power.iterations()[0] + 1);  // + the residual apply

  LanczosOptions lo;
  lo.steps = 100;
  lo.nev = 1;
  lo.tol = 1e-3;
  Lanczos lanczos(op, lo);
  lanczos.compute(Matrix::Ones(n, 1));
  REQUIRE(lanczos.info() == CompInfo::Successful);
  const Index m = lanczos.steps(0);
  const double lanczos_value = lanczos.ritz_values(0)(m - 1);
  CHECK(std::abs(lanczos_value - 10.0) / 10.0 <= po.tol);

  EigenSolverOptions eo;
  eo.tol = 1e-3;
  EigenSolver spectra(op, eo);
  spectra.compute();
  CHECK(std::abs(spectra.top_values()(0) - 10.0) / 10.0 <= po.tol);

  MESSAGE("top eigenvalue to 1e-3: power iteration " << power.iterations()[0] << " products (error " << power_err
                                                      << "), Lanczos " << lanczos.num_operations()
                                                      << " products (error "
                                                      << std::abs(lanczos_value - 10.0) / 10.0 << "), Spectra "
                                                      << spectra.num_operations() << " products incl. residual");
  CHECK(power.iterations()[0] > lanczos.num_operations());

  SUBCASE("deflation finds the next eigenvalues in order of magnitude") {
    Vector d(30);
    for (Index i = 0; i < 30; ++i) d(i) = 0.1 * static_cast<double>(i);
    d(29) = 10.0;
    d(28) = -6.0;  // larger in magnitude than 5: power iteration finds it second
    d(27) = 3.0;
    const DenseOperator dop(planted(d, 5));
    PowerIterationOptions o;
    o.top = 3;
    o.tol = 1e-8;
    o.max_iterations = 1000;
    PowerIteration p(dop, o);
    CHECK(p.compute() == 3);
    CHECK(p.values()(0) == doctest::Approx(10.0).epsilon(1e-6));
    CHECK(p.values()(1) == doctest::Approx(-6.0).epsilon(1e-6));
    CHECK(p.values()(2) == doctest::Approx(3.0).epsilon(1e-6));
  }
}

// ================================================================================================
TEST_CASE("Lanczos: orthonormal basis, exact Gauss quadrature for degree < 2m, breakdown") {
  const Index n = 120;
  const Vector lambda = Vector::LinSpaced(n, -1.5, 1.5);
  const Matrix A = planted(lambda, 3);
  const DenseOperator op(A);
  Matrix z(n, 1);
  for (Index i = 0; i < n; ++i) z(i, 0) = (i * 7919 % 13) % 2 ? 1.0 : -1.0;

  LanczosOptions o;
  o.steps = 10;
  Lanczos lanczos(op, o);
  CHECK(lanczos.compute(z) == 1);
  REQUIRE(lanczos.steps(0) == 10);
  const Matrix& V = lanczos.basis(0);
  CHECK((V.transpose() * V - Matrix::Identity(10, 10)).cwiseAbs().maxCoeff() <= kOrthoTol);
  CHECK(lanczos.ritz_weights(0).sum() == doctest::Approx(1.0).epsilon(1e-14));

  // q^T A^j q / ||q||^2 = sum_i tau_i theta_i^j for j < 2 m = 20.
  Vector Ajz = z.col(0);
  const double zz = z.col(0).squaredNorm();
  for (int j = 0; j < 20; ++j) {
    const double exact = z.col(0).dot(Ajz) / zz;
    const double quad =
        (lanczos.ritz_weights(0).array() * lanczos.ritz_values(0).array().pow(static_cast<double>(j))).sum();
    INFO("j = " << j << " exact " << exact << " quadrature " << quad);
    CHECK(std::abs(quad - exact) <= kQuadratureTol * std::max(1.0, std::abs(exact)));
    Ajz = A * Ajz;
  }

  SUBCASE("Ritz pairs: residual estimates match true residuals") {
    const Matrix Y = lanczos.ritz_vectors(0);
    const Vector est = lanczos.ritz_residuals(0);
    for (Index i = 0; i < Y.cols(); ++i) {
      const double r = (A * Y.col(i) - lanczos.ritz_values(0)(i) * Y.col(i)).norm();
      CHECK(r == doctest::Approx(est(i)).epsilon(1e-6).scale(1e-10));
    }
  }
  SUBCASE("breakdown on an invariant subspace: 5 distinct eigenvalues") {
    Vector d(50);
    for (Index i = 0; i < 50; ++i) d(i) = static_cast<double>(i % 5) - 1.0;
    const DenseOperator dop(d.asDiagonal().toDenseMatrix());
    Lanczos lz(dop, o);
    lz.compute(Matrix::Ones(50, 1));
    CHECK(lz.steps(0) == 5);
    CHECK(lz.broke_down(0));
    CHECK((lz.ritz_values(0) - Vector::LinSpaced(5, -1.0, 3.0)).cwiseAbs().maxCoeff() <= kEigenTol);
    CHECK(lz.ritz_weights(0).minCoeff() == doctest::Approx(0.2));
  }
  SUBCASE("eigen mode: top Ritz values of the Toeplitz matrix") {
    const DenseOperator top(toeplitz(100));
    LanczosOptions eo;
    eo.steps = 100;
    eo.nev = 2;
    eo.tol = 1e-12;
    Lanczos lz(top, eo);
    lz.compute(Matrix::Ones(100, 1) + random_matrix(100, 1, 9));
    CHECK(lz.info() == CompInfo::Successful);
    const Vector ev = toeplitz_eigenvalues(100);
    const Index m = lz.steps(0);
    CHECK(std::abs(lz.ritz_values(0)(m - 1) - ev(99)) <= kEigenTol);
    CHECK(std::abs(lz.ritz_values(0)(m - 2) - ev(98)) <= kEigenTol);
  }
  SUBCASE("a zero start vector is refused") {
    CHECK_THROWS_WITH_AS(lanczos.compute(Matrix::Zero(n, 2)), "Lanczos: start vector 0 has norm 0.000000",
                         std::invalid_argument);
  }
}

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

// ================================================================================================
namespace {

std::string h5_string_attribute(hid_t obj, const char* name) {
  const hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  const hid_t type = H5Aget_type(attr);
  std::string out;
  if (H5Tis_variable_str(type) > 0) {
    const hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5T_CSET_UTF8);
    char* buf = nullptr;
    H5Aread(attr, mem, &buf);
    out = buf;
    H5free_memory(buf);
    H5Tclose(mem);
  }
  H5Tclose(type);
  H5Aclose(attr);
  return out;
}

std::vector<hsize_t> h5_dims(hid_t file, const char* dataset) {
  const hid_t d = H5Dopen2(file, dataset, H5P_DEFAULT);
  const hid_t s = H5Dget_space(d);
  std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(s));
  H5Sget_simple_extent_dims(s, dims.data(), nullptr);
  H5Sclose(s);
  H5Dclose(d);
  return dims;
}

// A run with every group filled from real estimators on a small operator.
void fill_run(StoreRun& run, const LinearOperator& op) {
  run.attributes["model"] = std::string("tiny.onnx");
  run.attributes["model_sha256"] = std::string("abc123");
  run.attributes["samples"] = std::int64_t{256};
  run.attributes["curvature"] = std::string("hessian");
  run.attributes["seed"] = std::int64_t{0};
  EigenSolverOptions eo;
  eo.top = 3;
  eo.bottom = 2;
  EigenSolver es(op, eo);
  es.compute();
  run.model.eigen = eigen_record(es, true);
  HutchinsonTraceOptions to;
  to.probes = 10;
  HutchinsonTrace ht(op, to);
  ht.compute();
  run.model.trace = trace_record(ht);
  HutchinsonDiagonalOptions dop;
  dop.probes = 10;
  HutchinsonDiagonal hd(op, dop);
  hd.compute();
  run.model.diag = diag_record(hd);
  SlqDensityOptions so;
  so.probes = 2;
  so.steps = 5;
  so.grid_size = 50;
  SlqDensity slq(op, so);
  slq.compute();
  run.model.density = density_record(slq);
}

}  // namespace

TEST_CASE("SpectraStore: write, read back with the HDF5 C API") {
  const fs::path dir = test_dir();
  const fs::path path = dir / "spectrum.h5";
  const Index n = 20;
  const Matrix A = planted(Vector::LinSpaced(n, -1.0, 2.0), 91);
  const DenseOperator op(A);

  SpectraStore store(path, "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");
  StoreRun& run = store.add_run();
  fill_run(run, op);
  ExactSpectrum exact(op);
  exact.compute();
  run.add_block("layer2").trace = trace_record(exact);
  run.add_block("layer10").eigen = eigen_record(exact, 2, 1);
  CHECK_FALSE(fs::exists(path));
  store.commit();
  CHECK(store.committed());
  REQUIRE(fs::exists(path));
  CHECK_FALSE(fs::exists(store.temp_path()));

  // --- plain HDF5 C API ---
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  CHECK(h5_string_attribute(f, "format") == "curv");
  CHECK(h5_string_attribute(f, "curv_version") == "0.1.0");
  CHECK(h5_string_attribute(f, "command") == "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");
  const std::string created = h5_string_attribute(f, "created_utc");
  CHECK(created.size() == 20u);
  CHECK(created[10] == 'T');
  CHECK(created.back() == 'Z');
  {
    const hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
    const hid_t t = H5Aget_type(a);
    CHECK(H5Tget_class(t) == H5T_INTEGER);
    CHECK(H5Tget_size(t) == 8u);
    std::int64_t v = 0;
    H5Aread(a, H5T_NATIVE_INT64, &v);
    CHECK(v == 1);
    H5Tclose(t);
    H5Aclose(a);
  }
  {
    const hid_t g = H5Gopen2(f, "/spectrum", H5P_DEFAULT);
    CHECK(h5_string_attribute(g, "model") == "tiny.onnx");
    CHECK(h5_string_attribute(g, "curvature") == "hessian");
    H5Gclose(g);
  }
  CHECK(h5_dims(f, "/spectrum/eigen/values") == std::vector<hsize_t>{3});
  CHECK(h5_dims(f, "/spectrum/eigen/vectors") == std::vector<hsize_t>{20, 3});
  CHECK(h5_dims(f, "/spectrum/eigen/bottom_vectors") == std::vector<hsize_t>{20, 2});
  CHECK(h5_dims(f, "/spectrum/trace/estimate").empty());  // scalar
  CHECK(h5_dims(f, "/spectrum/trace/samples") == std::vector<hsize_t>{10});
  CHECK(h5_dims(f, "/spectrum/diag/estimate") == std::vector<hsize_t>{20});
  CHECK(h5_dims(f, "/spectrum/density/nodes") == std::vector<hsize_t>{2, 5});
  CHECK(h5_dims(f, "/spectrum/density/weights") == std::vector<hsize_t>{2, 5});
  CHECK(h5_dims(f, "/spectrum/density/grid") == std::vector<hsize_t>{50});
  {
    // [P, k] in C order: element (i, j) is component i of eigenvector j.
    std::vector<double> buf(20 * 3);
    const hid_t d = H5Dopen2(f, "/spectrum/eigen/vectors", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    H5Dclose(d);
    const Matrix& V = run.model.eigen->vectors;
    CHECK(buf[5 * 3 + 2] == V(5, 2));
    CHECK(buf[19 * 3 + 0] == V(19, 0));
  }
  H5Fclose(f);

  // --- SpectraReader ---
  SpectraReader reader(path);
  const StoredArray values = reader.read("/spectrum/eigen/values");
  for (Index i = 0; i < 3; ++i) CHECK(values.data[i] == run.model.eigen->values(i));
  CHECK(values.data[0] > values.data[1]);
  CHECK(reader.read_scalar("/spectrum/trace/estimate") == run.model.trace->estimate);
  CHECK(reader.read_scalar("/spectrum/trace/probes") == 10.0);
  CHECK(reader.string_attribute("/spectrum/eigen", "method") == "lanczos");
  CHECK(reader.number_attribute("/", "schema_version") == 1.0);
  CHECK(reader.number_attribute("/spectrum", "samples") == 256.0);
  CHECK(reader.read_scalar("/spectrum/blocks/layer2/trace/estimate") == doctest::Approx(A.trace()));
  CHECK(reader.exists("/spectrum/blocks/layer10/eigen/bottom_values"));
  CHECK_FALSE(reader.exists("/spectrum/blocks/layer10/trace"));
  CHECK(reader.children("/spectrum/blocks") == std::vector<std::string>{"layer2", "layer10"});  // creation order
  CHECK(reader.children("/") == std::vector<std::string>{"spectrum"});
  CHECK_THROWS_WITH_AS(reader.read("/spectrum/nope"), (path.string() + ": no dataset '/spectrum/nope'").c_str(),
                       std::runtime_error);

  // --- JSON summary keys ---
  const nlohmann::json js = summary_json(run);
  CHECK(js["eigen"]["top"].size() == 3u);
  CHECK(js["eigen"]["bottom"].size() == 2u);
  CHECK(js["eigen"]["residuals"].size() == 5u);
  CHECK(js["trace"]["probes"] == 10);
  CHECK(js["blocks"]["layer2"]["trace"]["estimate"].get<double>() == doctest::Approx(A.trace()));

  SUBCASE("append mode adds a run and keeps the first") {
    SpectraStore more(path, "curv study s.json", SpectraStore::Mode::Append);
    more.add_run("spectrum_step100").model.trace = trace_record(exact);
    more.commit();
    SpectraReader r(path);
    CHECK(r.children("/") == std::vector<std::string>{"spectrum", "spectrum_step100"});
    CHECK(r.string_attribute("/", "command") == "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");

    const std::string before = read_bytes(path);
    SpectraStore dup(path, "again", SpectraStore::Mode::Append);
    dup.add_run("spectrum");
    CHECK_THROWS_WITH_AS(dup.commit(), (path.string() + ": run group '/spectrum' already exists").c_str(),
                         std::invalid_argument);
    CHECK(read_bytes(path) == before);
    CHECK_FALSE(fs::exists(dup.temp_path()));
  }
  fs::remove_all(dir);
}

TEST_CASE("SpectraStore: a failure while writing leaves no file at the target and no temp file") {
  const fs::path dir = test_dir();
  const fs::path path = dir / "broken.h5";
  const DenseOperator op(planted(Vector::LinSpaced(12, 0.0, 1.0), 93));

  SUBCASE("inconsistent record found mid-write") {
    SpectraStore store(path, "curv spectrum");
    StoreRun& run = store.add_run();
    fill_run(run, op);
    run.model.density->weights = Matrix::Zero(2, 4);  // nodes are [2 x 5]
    CHECK_THROWS_WITH_AS(store.commit(),
                         (path.string() + ": /spectrum/density/weights: shape [2 x 4] differs from nodes [2 x 5]").c_str(),
                         std::invalid_argument);
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(store.temp_path()));
    CHECK_FALSE(store.committed());
  }
  SUBCASE("HDF5 error mid-write keeps the previous good file") {
    {
      SpectraStore good(path, "first");
      fill_run(good.add_run(), op);
      good.commit();
    }
    const std::string before = read_bytes(path);
    SpectraStore store(path, "second");
    StoreRun& run = store.add_run();
    fill_run(run, op);
    run.add_block("fc1").trace = run.model.trace;
    run.add_block("fc1").trace = run.model.trace;  // duplicate group
    const std::string msg = thrown_message<std::runtime_error>([&] { store.commit(); });
    INFO(msg);
    CHECK(msg == path.string() + ": /spectrum/blocks/fc1: cannot create group (name already exists)");
    CHECK(read_bytes(path) == before);
    CHECK_FALSE(fs::exists(store.temp_path()));
  }
  SUBCASE("unwritable location names the file") {
    const fs::path bad = dir / "missing-dir" / "x.h5";
    SpectraStore store(bad, "curv spectrum");
    store.add_run();
    const std::string msg = thrown_message<std::runtime_error>([&] { store.commit(); });
    CHECK(msg == bad.string() + ": folder '" + (dir / "missing-dir").string() + "' does not exist");
  }
  SUBCASE("bad names and call order") {
    SpectraStore store(path, "curv spectrum");
    CHECK_THROWS_WITH_AS(store.add_run("a/b"),
                         "SpectraStore: run name 'a/b' must be non-empty, without '/', and not '.' or '..'",
                         std::invalid_argument);
    store.add_run().add_block("");
    CHECK_THROWS_WITH_AS(store.commit(),
                         "SpectraStore: block name '' in run 'spectrum' must be non-empty, without '/', and not '.' or "
                         "'..'",
                         std::invalid_argument);
    CHECK_FALSE(fs::exists(path));
    SpectraStore ok(path, "curv spectrum");
    ok.add_run();
    ok.commit();
    CHECK_THROWS_WITH_AS(ok.commit(), ("SpectraStore::commit: " + path.string() + " was already committed").c_str(),
                         std::logic_error);
  }
  fs::remove_all(dir);
}
