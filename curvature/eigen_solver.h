#pragma once
/// \file eigen_solver.h
/// Extreme eigenpairs of a symmetric operator with Spectra's implicitly restarted Lanczos
/// (`Spectra::SymEigsSolver`).
///
/// Computes the `top` largest algebraic eigenpairs (returned in descending order) and the
/// `bottom` smallest algebraic ones (ascending), as two independent Spectra runs from the same
/// seeded start vector. Each reported pair comes with its residual ||A v - lambda v||_2, computed
/// with ONE extra block apply over all reported vectors (counted in `num_operations()`).
///
/// Spectra's convergence test per Ritz pair: ||A v - theta v|| <= tol * max(|theta|, eps^(2/3)).
///
///     EigenSolverOptions o; o.top = 5; o.bottom = 2;
///     EigenSolver solver(H, o);
///     solver.compute();
///     if (solver.info() != CompInfo::Successful) { ... }   // partial results still available
///     solver.top_values();  solver.top_residuals();  solver.num_operations();
///
/// REQUIRES: top < rows(), bottom < rows(), top + bottom >= 1, and when given ncv,
/// k < ncv <= rows() for k = top and k = bottom.
/// Not thread-safe; the operator may use TBB inside its apply.
#include <cstdint>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct EigenSolverOptions {
  /// Number of largest algebraic eigenpairs.
  LinearOperator::Index top = 1;
  /// Number of smallest algebraic eigenpairs.
  LinearOperator::Index bottom = 0;
  /// Krylov subspace size per run; 0 means min(rows, max(2 k + 1, k + 7)) for the top run and
  /// min(rows, max(2 k + 1, 20)) for the bottom run (whose eigenvalues cluster near zero).
  LinearOperator::Index ncv = 0;
  /// Relative residual tolerance (Spectra's `tol`).
  double tol = 1e-10;
  /// Maximum number of implicit restarts per run (Spectra's `maxit`).
  LinearOperator::Index max_restarts = 1000;
  /// Seed of the start vector (uniform entries in [-0.5, 0.5)).
  std::uint64_t seed = 0;
};

class EigenSolver {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// Non-owning: `op` must outlive the solver. Throws std::invalid_argument on bad options.
  EigenSolver(const LinearOperator& op, EigenSolverOptions options = {});

  /// Runs both solves and the residual apply. Returns the number of converged eigenpairs
  /// (top + bottom when successful). Non-converged pairs are not reported.
  Index compute();
  CompInfo info() const { return m_info; }

  const Vector& top_values() const { return m_top_values; }        // descending
  const Matrix& top_vectors() const { return m_top_vectors; }      // [rows x top], unit columns
  const Vector& top_residuals() const { return m_top_residuals; }  // ||A v - lambda v||
  const Vector& bottom_values() const { return m_bottom_values; }  // ascending
  const Matrix& bottom_vectors() const { return m_bottom_vectors; }
  const Vector& bottom_residuals() const { return m_bottom_residuals; }

  /// Operator columns applied by compute(), including the residual apply.
  std::int64_t num_operations() const { return m_num_operations; }
  /// Spectra restarts, summed over both runs.
  Index num_iterations() const { return m_num_iterations; }
  /// The Krylov sizes actually used (0 when the run was not requested).
  Index top_ncv() const { return m_top_ncv; }
  Index bottom_ncv() const { return m_bottom_ncv; }
  const EigenSolverOptions& options() const { return m_options; }

 private:
  Index default_ncv(Index k, bool top) const;

  const LinearOperator& m_op;
  EigenSolverOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Vector m_top_values, m_top_residuals, m_bottom_values, m_bottom_residuals;
  Matrix m_top_vectors, m_bottom_vectors;
  std::int64_t m_num_operations = 0;
  Index m_num_iterations = 0;
  Index m_top_ncv = 0, m_bottom_ncv = 0;
};

}  // namespace curv
