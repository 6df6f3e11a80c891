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
/// Convergence of a Ritz pair (theta, v), both tests relative to the size of the operator:
///   top run     ||A v - theta v|| <= tol * max(|theta|, eps^(2/3))          (Spectra's own test;
///               the top pairs of a curvature operator carry its norm)
///   bottom run  ||A v - theta v|| <= tol * (c - theta),   c = theta_max + nu
/// where nu = max |Ritz value| and theta_max the largest Ritz value seen by the top run (or, without
/// a top run, by `scale_steps` plain Lanczos steps from the start vector). The bottom run works on
/// B = A - c I, which has the same Krylov spaces and eigenvectors; c - theta lies between nu and
/// about 3 nu for the wanted pairs, so eigenvalues at or near zero (a GGN, a Fisher, a small block:
/// lambda_min ~ 0) converge to a tolerance of the operator's norm instead of never (a test relative
/// to |theta| ~ 0 cannot be met). Bottom eigenvalues are the Rayleigh quotients v^T A v.
///
/// Limits of Krylov methods remain: one start vector sees one direction of a multiple eigenvalue
/// (in exact arithmetic), and eigenvalues clustered within about tol ||A|| of each other resolve
/// slowly; the second bottom pair of a GGN (a huge null space next to many tiny eigenvalues) takes
/// far more restarts than the first.
///
/// Each run stops after `max_restarts` implicit restarts. A run that did not converge is not an
/// error: info() is then CompInfo::NotConverging, and the best Ritz pairs of its last Krylov space
/// are reported with their residuals (top_converged() / bottom_converged() count the pairs that met
/// the test).
///
///     EigenSolverOptions o; o.top = 5; o.bottom = 2;
///     EigenSolver solver(H, o);
///     solver.compute();
///     if (solver.info() != CompInfo::Successful) { ... }   // best pairs still available
///     solver.top_values();  solver.top_residuals();  solver.num_operations();
///
/// REQUIRES: top < rows(), bottom < rows(), top + bottom >= 1, and when given ncv,
/// k < ncv <= rows() for k = top and k = bottom; 0 < tol < 1; 1 <= max_restarts <= 100000.
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
  /// Relative residual tolerance (see the file comment for what it is relative to).
  double tol = 1e-10;
  /// Maximum number of implicit restarts per run (Spectra's `maxit`); a run that reaches it
  /// reports NotConverging with its best pairs.
  LinearOperator::Index max_restarts = 300;
  /// Lanczos steps of the norm estimate for a bottom run without a top run (capped at rows).
  LinearOperator::Index scale_steps = 10;
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

  /// Runs both solves and the residual apply. Returns the number of eigenpairs that met the
  /// tolerance (top + bottom when successful). All requested pairs are reported either way.
  Index compute();
  /// Successful, NotConverging (a run reached max_restarts) or NumericalIssue (NaN/Inf).
  CompInfo info() const { return m_info; }

  const Vector& top_values() const { return m_top_values; }        // descending
  const Matrix& top_vectors() const { return m_top_vectors; }      // [rows x top], unit columns
  const Vector& top_residuals() const { return m_top_residuals; }  // ||A v - lambda v||
  const Vector& bottom_values() const { return m_bottom_values; }  // ascending
  const Matrix& bottom_vectors() const { return m_bottom_vectors; }
  const Vector& bottom_residuals() const { return m_bottom_residuals; }
  /// Pairs of each run that met the tolerance (== top / bottom when the run converged).
  Index top_converged() const { return m_top_converged; }
  Index bottom_converged() const { return m_bottom_converged; }

  /// nu: the operator's scale used by the bottom run's test (0 without a bottom run).
  double scale() const { return m_scale; }
  /// c: the shift of the bottom run, B = A - c I (0 without a bottom run).
  double bottom_shift() const { return m_bottom_shift; }

  /// Operator columns applied by compute(), including the norm estimate and the residual apply.
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
  Index m_top_converged = 0, m_bottom_converged = 0;
  double m_scale = 0.0, m_bottom_shift = 0.0;
  std::int64_t m_num_operations = 0;
  Index m_num_iterations = 0;
  Index m_top_ncv = 0, m_bottom_ncv = 0;
};

}  // namespace curv
