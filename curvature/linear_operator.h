#pragma once
/// \file linear_operator.h
/// The operator concept every estimator in curvature/ consumes.
///
/// A `LinearOperator` is a symmetric P x P matrix known only through products. It is
/// Spectra-compatible (`Scalar`, `rows()`, `cols()`, `perform_op(x, y)`), so
/// `Spectra::SymEigsSolver<LinearOperator>` works with no glue, and it has a block product
/// `apply(X, Y)` that computes Y = A X for k directions at once: implementations share one pass of
/// the model across the k columns, so estimators should batch their products (probes in lockstep).
///
/// Scalars are double: Lanczos vectors, dot products and reductions are float64 whatever precision
/// the model computes in.
///
/// Thread-safety: `apply` may use TBB internally; callers must not call one operator from two
/// threads at once (scratch buffers are mutable).
#include <Eigen/Core>
#include <cstdint>

namespace curv {

class LinearOperator {
 public:
  using Scalar = double;
  using Index = Eigen::Index;
  using Vector = Eigen::VectorXd;
  using Matrix = Eigen::MatrixXd;

  virtual ~LinearOperator() = default;

  virtual Index rows() const = 0;
  Index cols() const { return rows(); }

  /// Y = A X for a P x k block of directions.
  /// REQUIRES: X.rows() == rows(). Y is resized to X's shape.
  virtual void apply(const Matrix& X, Matrix& Y) const = 0;

  /// Spectra's single-vector product: y_out = A x_in, both of length rows().
  void perform_op(const Scalar* x_in, Scalar* y_out) const {
    Eigen::Map<const Matrix> x(x_in, rows(), 1);
    Matrix y;
    apply(x, y);
    Eigen::Map<Vector>(y_out, rows()) = y.col(0);
  }

  /// Number of operator columns applied so far (a block of k counts k).
  std::int64_t num_products() const { return m_num_products; }
  void reset_num_products() const { m_num_products = 0; }

 protected:
  // Implementations add X.cols() here in apply(); perform_op counts through apply().
  void count_products(Index k) const { m_num_products += k; }

 private:
  mutable std::int64_t m_num_products = 0;
};

/// A dense symmetric matrix as an operator; the oracle in tests and `--exact` mode.
class DenseOperator final : public LinearOperator {
 public:
  explicit DenseOperator(Matrix A) : m_A(std::move(A)) {}
  Index rows() const override { return m_A.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    Y.noalias() = m_A * X;
  }
  const Matrix& matrix() const { return m_A; }

 private:
  Matrix m_A;
};

/// A diagonal matrix as an operator: Jacobi preconditioners (1 / (diag + lambda)) and tests.
class DiagonalOperator final : public LinearOperator {
 public:
  explicit DiagonalOperator(Vector d) : m_d(std::move(d)) {}
  Index rows() const override { return m_d.size(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    Y.noalias() = m_d.asDiagonal() * X;
  }
  const Vector& diagonal() const { return m_d; }

 private:
  Vector m_d;
};

}  // namespace curv
