// Tests of curvature/ operators and eigensolvers: operator wrappers (shift, scale, deflation),
// EigenSolver (Spectra), ExactSpectrum, PowerIteration (PyHessian semantics) and Lanczos.
//
// Oracles: diagonal operators, the tridiagonal Toeplitz matrix tridiag(-1, 2, -1) with eigenvalues
// 2 - 2 cos(k pi / (n + 1)), and random symmetric matrices Q diag(lambda) Q^T with a planted
// spectrum (Q from a Householder QR of a random matrix).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "curvature/curvature_operator.h"
#include "curvature/deflated_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/lanczos.h"
#include "curvature/power_iteration.h"
#include "curvature/scaled_operator.h"
#include "curvature/shifted_operator.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "tests/test_util.h"

using namespace curv;
using namespace curv_test;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using Index = Eigen::Index;

namespace {

// Tolerances (dense double-precision problems of size <= 400).
constexpr double kEigenTol = 1e-8;          // eigenvalues vs closed form / planted spectrum
constexpr double kResidualTol = 1e-8;       // ||A v - lambda v|| of converged pairs
constexpr double kOperatorTol = 1e-12;      // wrapper operators vs dense algebra (relative)
constexpr double kQuadratureTol = 1e-9;     // Gauss quadrature exactness (relative)
constexpr double kOrthoTol = 1e-12;         // ||V^T V - I||_max of a Lanczos basis
constexpr double kPowerErrorFactor = 10.0;  // power iteration error ~ tol r^2/(1-r^2) <= 10 tol here
// Eigenvalues at or near zero vs the exact ones, relative to ||A|| (bottom run at tol <= 1e-8).
constexpr double kNormRelTol = 1e-8;
// A converged pair's true residual vs the test's tol * (c - theta) <= 3 tol ||A|| (Ritz estimate
// and true residual agree to rounding).
constexpr double kResidualFactor = 3.0;

// An operator too large to densify; never applied.
class HugeOperator final : public LinearOperator {
 public:
  Index rows() const override { return 5001; }
  void apply(const Matrix&, Matrix&) const override { throw std::logic_error("HugeOperator applied"); }
};

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

// ---- eigenvalues at and near zero: a tolerance relative to the operator's norm -------------------
TEST_CASE("EigenSolver: bottom pairs at and near zero converge within the restart cap") {
  SUBCASE("rank-deficient PSD diagonal matrix: lambda = 0 (x3), then 0.1 .. 10") {
    const Index n = 300;
    Vector d(n);
    for (Index i = 0; i < n; ++i) d(i) = i < 3 ? 0.0 : 0.1 + 9.9 * static_cast<double>(i - 3) / (n - 4);
    const DenseOperator op(d.asDiagonal().toDenseMatrix());
    for (const Index top : {Index{0}, Index{1}}) {
      EigenSolverOptions o;
      o.top = top;
      o.bottom = 2;
      o.tol = 1e-8;
      o.max_restarts = 100;
      EigenSolver solver(op, o);
      const Index nconv = solver.compute();
      INFO("top = " << top << ": bottom " << solver.bottom_values().transpose() << ", residuals "
                    << solver.bottom_residuals().transpose() << ", " << solver.num_iterations() << " restarts, "
                    << solver.num_operations() << " products");
      CHECK(solver.info() == CompInfo::Successful);
      CHECK(nconv == top + 2);
      CHECK(solver.bottom_converged() == 2);
      // nu estimates ||A|| = 10 (from the top run's Krylov space, or a few Lanczos steps).
      CHECK(solver.scale() > 5.0);
      CHECK(solver.scale() <= 10.0 * (1 + 1e-12));
      CHECK(std::abs(solver.bottom_values()(0)) <= kNormRelTol * 10.0);
      // One start vector sees one direction of a multiple eigenvalue in exact arithmetic, so the
      // second pair is another null vector (found through rounding) or the next eigenvalue, 0.1.
      const double b1 = solver.bottom_values()(1);
      CHECK(std::min(std::abs(b1), std::abs(b1 - 0.1)) <= kNormRelTol * 10.0);
      for (Index i = 0; i < 2; ++i) CHECK(solver.bottom_residuals()(i) <= kResidualFactor * o.tol * 10.0);
      CHECK(solver.num_operations() == op.num_products());
      op.reset_num_products();
    }
  }
  SUBCASE("a simple zero eigenvalue: bottom pairs match the planted spectrum") {
    const Index n = 250;
    Vector lambda = Vector::LinSpaced(n, 0.0, 5.0);  // 0, 0.02, 0.04, ...
    const DenseOperator op(planted(lambda, 19));
    EigenSolverOptions o;
    o.bottom = 3;
    o.top = 0;
    o.tol = 1e-10;
    o.max_restarts = 200;
    EigenSolver solver(op, o);
    solver.compute();
    INFO("bottom " << solver.bottom_values().transpose() << ", " << solver.num_iterations() << " restarts");
    REQUIRE(solver.info() == CompInfo::Successful);
    for (Index i = 0; i < 3; ++i) CHECK(std::abs(solver.bottom_values()(i) - lambda(i)) <= kNormRelTol * 5.0);
  }
  SUBCASE("near zero and negative: planted spectrum with -1e-6, 0, 2e-6 at the bottom") {
    const Index n = 200;
    Vector lambda = Vector::LinSpaced(n, 0.0, 4.0);
    lambda(0) = -1e-6;
    lambda(1) = 0.0;
    lambda(2) = 2e-6;
    const DenseOperator op(planted(lambda, 17));
    EigenSolverOptions o;
    o.top = 1;
    o.bottom = 3;
    o.tol = 1e-10;
    o.max_restarts = 200;
    EigenSolver solver(op, o);
    solver.compute();
    INFO("bottom " << solver.bottom_values().transpose() << ", " << solver.num_iterations() << " restarts");
    REQUIRE(solver.info() == CompInfo::Successful);
    for (Index i = 0; i < 3; ++i) CHECK(std::abs(solver.bottom_values()(i) - lambda(i)) <= kNormRelTol * 4.0);
    CHECK(solver.bottom_values()(0) < solver.bottom_values()(1));
    CHECK(solver.bottom_values()(1) < solver.bottom_values()(2));
  }
  SUBCASE("the Gauss-Newton matrix of a tiny network (rank <= samples x outputs < parameters)") {
    ModelBuilder b({6}, 3);
    const int h = b.unary(b.linear(b.input(), 8, "fc1"), UnaryKind::Tanh);
    const Model m = b.finish(b.linear(h, 3, "fc2"));
    Dataset data;
    data.source = "synthetic";
    data.sample_shape = {6};
    const Matrix x = random_matrix(6, 5, 23);
    for (Index i = 0; i < x.size(); ++i) data.x.push_back(static_cast<float>(2.0 * x.data()[i]));
    for (std::int64_t i = 0; i < 5; ++i) data.labels.push_back(i % 3);
    ObjectiveOptions oo;
    oo.precision = Precision::Float64;
    auto obj = Objective::create(m, data, oo);
    const CurvatureOperator ggn(*obj, Curvature::GGN);
    ExactSpectrum exact(ggn);
    exact.compute();
    const Vector all = exact.eigenvalues();  // ascending
    const double norm = std::max(std::abs(all(0)), std::abs(all(all.size() - 1)));
    REQUIRE(std::abs(all(0)) <= 1e-12 * norm);  // 5 samples x 2 logit directions: rank <= 10 < 59
    EigenSolverOptions o;
    o.top = 1;
    o.bottom = 2;
    o.tol = 1e-8;
    o.max_restarts = 100;
    EigenSolver solver(ggn, o);
    solver.compute();
    INFO("GGN P = " << ggn.rows() << ": bottom " << solver.bottom_values().transpose() << ", residuals "
                    << solver.bottom_residuals().transpose() << ", " << solver.num_iterations() << " restarts");
    CHECK(solver.info() == CompInfo::Successful);
    CHECK(std::abs(solver.top_values()(0) - all(all.size() - 1)) <= kEigenTol * norm);
    for (Index i = 0; i < 2; ++i) {
      CHECK(std::abs(solver.bottom_values()(i)) <= kNormRelTol * norm);
      CHECK(solver.bottom_residuals()(i) <= kResidualFactor * o.tol * norm);
    }
  }
}

TEST_CASE("EigenSolver: a restart cap too small is a status with the best pairs and residuals") {
  const Index n = 400;
  Vector lambda = Vector::LinSpaced(n, 0.0, 1.0);
  const DenseOperator op(planted(lambda, 29));  // no gaps: hard for Lanczos
  EigenSolverOptions o;
  o.top = 3;
  o.bottom = 3;
  o.tol = 1e-12;
  o.max_restarts = 2;
  EigenSolver solver(op, o);
  const Index nconv = solver.compute();
  INFO("top " << solver.top_values().transpose() << " residuals " << solver.top_residuals().transpose());
  INFO("bottom " << solver.bottom_values().transpose() << " residuals " << solver.bottom_residuals().transpose());
  CHECK(solver.info() == CompInfo::NotConverging);
  CHECK(nconv < 6);
  CHECK(nconv == solver.top_converged() + solver.bottom_converged());
  REQUIRE(solver.top_values().size() == 3);
  REQUIRE(solver.bottom_values().size() == 3);
  REQUIRE(solver.top_residuals().size() == 3);
  REQUIRE(solver.bottom_residuals().size() == 3);
  CHECK(solver.num_iterations() <= 2 * o.max_restarts + 2);
  // The best Ritz pairs: inside the spectrum, ordered, unit vectors, residuals that are real
  // ||A v - lambda v|| values (finite, not all below the tolerance).
  const Matrix A = op.matrix();
  for (Index i = 0; i < 3; ++i) {
    CHECK(solver.top_values()(i) <= 1.0 + 1e-12);
    CHECK(solver.bottom_values()(i) >= -1e-12);
    // The extreme Ritz values of the last Krylov space, not arbitrary ones.
    CHECK(solver.top_values()(i) > 0.75);
    CHECK(solver.bottom_values()(i) < 0.25);
    const Vector v = solver.bottom_vectors().col(i);
    CHECK(v.norm() == doctest::Approx(1.0).epsilon(1e-10));
    CHECK(solver.bottom_residuals()(i) ==
          doctest::Approx((A * v - solver.bottom_values()(i) * v).norm()).epsilon(1e-8));
  }
  CHECK(solver.top_values()(0) >= solver.top_values()(1));
  CHECK(solver.bottom_values()(0) <= solver.bottom_values()(1));
  CHECK(std::max(solver.top_residuals().maxCoeff(), solver.bottom_residuals().maxCoeff()) > o.tol);
}

TEST_CASE("EigenSolver: tolerance and restart cap out of range name the value") {
  const DenseOperator op(toeplitz(10));
  EigenSolverOptions o;
  o.max_restarts = 0;
  CHECK_THROWS_WITH_AS(EigenSolver(op, o), "EigenSolver: max_restarts (= 0) must be in 1..100000",
                       std::invalid_argument);

  o = {};
  o.tol = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(EigenSolver(op, o), "EigenSolver: tol (= inf) must be in (0, 1)", std::invalid_argument);
  o.tol = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(EigenSolver(op, o), std::invalid_argument);
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
