#pragma once
/// \file cg_solver.h
/// Conjugate gradients on the damped system (C + lambda I) x = b for k right-hand sides at once,
/// optionally preconditioned by M ~ (C + lambda I)^-1 (Jacobi from a Hutchinson diagonal:
/// DiagonalOperator; K-FAC: KfacOperator in Inverse mode).
///
///   r0 = b, z0 = M r0, p0 = z0;  per iteration i and column j:
///   q = (C + lambda I) p,  a = r^T z / p^T q,  x += a p,  r -= a q,  z = M r,
///   b = r_new^T z_new / r^T z,  p = z + b p
///
/// The k columns advance in lockstep: one block apply of C per iteration serves every column that
/// has not converged (converged columns drop out of the block). A column converges when its
/// recursive residual ||r|| <= rtol ||b||. At the end the true relative residuals
/// ||(C + lambda I) x - b|| / ||b|| are recomputed with one more block apply (counted), since the
/// recursive residual drifts in floating point.
///
/// Status (info()): Successful when every column converged; NotConverging when max_iters ran out
/// (the iterates so far are the result); NumericalIssue when p^T (C + lambda I) p <= 0 (the damped
/// operator is not positive definite along p: a Hessian needs more damping; the column stops at
/// its last iterate) or a NaN appeared. Non-convergence is a status, not an exception.
///
/// Non-owning: the operators must outlive the solver. Not thread-safe; the operators may use TBB.
/// REQUIRES: lambda >= 0 finite, 0 < rtol < 1, max_iters >= 1, preconditioner rows == C rows.
#include <cstdint>
#include <functional>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct CgOptions {
  /// lambda: the system is (C + lambda I) x = b.
  double damping = 0.0;
  /// Stop a column when ||r|| <= rtol ||b|| (recursive residual).
  double rtol = 1e-6;
  /// Iterations (block applies of C) before NotConverging.
  LinearOperator::Index max_iters = 1000;
  /// Called after every iteration with its number (1-based) and the current iterates X (n x k):
  /// Hessian-free's CG backtracking keeps some of them. Empty: not called.
  std::function<void(LinearOperator::Index, const LinearOperator::Matrix&)> on_iteration;
};

class CgSolver {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// `preconditioner`: nullptr for plain CG. Throws std::invalid_argument on bad options.
  CgSolver(const LinearOperator& C, CgOptions options = {}, const LinearOperator* preconditioner = nullptr);

  /// Solves for the columns of B (rows == C.rows()). Returns the number of iterations.
  Index compute(const Matrix& B);
  /// Starts from X0 instead of 0 (warm start): r0 = B - (C + lambda I) X0 costs one more block
  /// apply (counted). Relative residuals stay relative to ||b||. REQUIRES: X0 has B's shape.
  Index compute(const Matrix& B, const Matrix& X0);
  CompInfo info() const { return m_info; }

  const Matrix& solution() const { return m_x; }
  /// True relative residuals ||(C + lambda I) x_j - b_j|| / ||b_j|| (0 for a zero b_j).
  const Vector& residuals() const { return m_residuals; }
  /// Relative recursive residual of every column after each iteration: [iterations + 1, k]
  /// (row 0 is the start, 1); a converged column keeps its last value.
  const Matrix& residual_history() const { return m_history; }
  Index num_iterations() const { return m_iterations; }
  /// Columns of C applied (including the final residual apply); preconditioner applies apart.
  std::int64_t num_operations() const { return m_operations; }
  std::int64_t num_preconditioner_operations() const { return m_prec_operations; }
  const CgOptions& options() const { return m_options; }

 private:
  void apply_damped(const Matrix& X, Matrix& Y);

  const LinearOperator& m_C;
  const LinearOperator* m_M;
  CgOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Matrix m_x, m_history;
  Vector m_residuals;
  Index m_iterations = 0;
  std::int64_t m_operations = 0, m_prec_operations = 0;
};

}  // namespace curv
