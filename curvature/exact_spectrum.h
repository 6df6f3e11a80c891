#pragma once
/// \file exact_spectrum.h
/// The exact spectrum of a small operator: the oracle for the estimators and `--exact` mode.
///
/// Builds the dense matrix A = [A e_1, ..., A e_n] with block applies of `block` identity
/// columns (n products), measures its asymmetry ||A - A^T||_F / ||A||_F (0 for a zero matrix;
/// round-off in a model Hessian gives ~1e-7 in float32, ~1e-15 in float64), symmetrizes it,
/// (A + A^T) / 2, and diagonalizes that with Eigen's SelfAdjointEigenSolver. Trace and diagonal
/// are those of the symmetrized matrix (the same as of A).
///
/// REQUIRES: rows() <= max_size (std::invalid_argument otherwise: the dense matrix takes
/// 8 n^2 bytes, 200 MB at n = 5000), block >= 1. Not thread-safe.
#include <cstdint>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct ExactSpectrumOptions {
  /// Largest operator size accepted.
  LinearOperator::Index max_size = 5000;
  /// Identity columns per block apply.
  LinearOperator::Index block = 64;
  /// Compute eigenvectors too (values only otherwise).
  bool compute_vectors = true;
};

class ExactSpectrum {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// Non-owning: `op` must outlive the object. Throws std::invalid_argument if the operator is
  /// larger than max_size or options are bad.
  ExactSpectrum(const LinearOperator& op, ExactSpectrumOptions options = {});

  /// Returns the number of eigenvalues (rows()). info(): Successful or NumericalIssue.
  Index compute();
  CompInfo info() const { return m_info; }

  const Matrix& matrix() const { return m_matrix; }           // symmetrized [n x n]
  const Vector& eigenvalues() const { return m_eigenvalues; }  // [n] ascending
  const Matrix& eigenvectors() const { return m_eigenvectors; }  // [n x n], empty without vectors
  /// The k largest eigenvalues, descending, and the k smallest, ascending. REQUIRES k <= n.
  Vector top(Index k) const;
  Vector bottom(Index k) const;
  /// Eigenvectors matching top(k) / bottom(k). REQUIRES compute_vectors.
  Matrix top_vectors(Index k) const;
  Matrix bottom_vectors(Index k) const;
  double trace() const { return m_trace; }
  const Vector& diagonal() const { return m_diagonal; }
  /// ||A - A^T||_F / ||A||_F of the matrix as applied, before symmetrization.
  double asymmetry() const { return m_asymmetry; }
  std::int64_t num_operations() const { return m_num_operations; }
  const ExactSpectrumOptions& options() const { return m_options; }

 private:
  void check_k(Index k, bool vectors) const;

  const LinearOperator& m_op;
  ExactSpectrumOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Matrix m_matrix, m_eigenvectors;
  Vector m_eigenvalues, m_diagonal;
  double m_trace = 0.0, m_asymmetry = 0.0;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
