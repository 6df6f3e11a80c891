#pragma once
/// \file lanczos.h
/// Plain Lanczos with full reorthogonalization, for several start vectors in lockstep.
///
/// Each column q of `starts` [n x P] runs its own Lanczos process
///     A V_m = V_m T_m + beta_m v_{m+1} e_m^T,   T_m = tridiag(beta, alpha, beta),  v_1 = q / ||q||
/// and the P processes advance together: step j does ONE block apply of A on the P (still
/// active) vectors v_j. After the three-term recurrence every new vector is reorthogonalized
/// against its whole basis with classical Gram-Schmidt applied twice, so V_m stays orthonormal to
/// working precision (memory: n * m doubles per start vector).
///
/// A process stops early on
///  - breakdown: beta_j <= breakdown_tol * max_i ||A v_i|| (span(V_j) is invariant: its Ritz
///    values are exact eigenvalues and Gauss quadrature with it is exact), or
///  - convergence (only when nev > 0, "eigen mode"): the nev largest Ritz values satisfy
///    |beta_m s_{m,i}| <= tol * max(|theta_i|, eps^(2/3))  (s_i: eigenvectors of T_m). This check
///    diagonalizes T_m at every step, O(m^3): keep `steps` moderate in eigen mode.
///
/// Ritz values theta_i (eigenvalues of T_m, ascending) and weights tau_i = (s_i)_1^2 (the squared
/// first components, summing to 1) give the Gauss quadrature
///     q^T f(A) q / ||q||^2  ~=  sum_i tau_i f(theta_i),   exact for polynomials of degree < 2 m.
///
/// Determinism: per-start work is independent of the other starts and of the TBB thread count
/// (each start's arithmetic runs in one task, on its own storage).
/// REQUIRES: starts has rows() rows, >= 1 column, no zero column; steps >= 1.
/// Not thread-safe; the operator may use TBB inside its apply.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct LanczosOptions {
  /// Maximum Lanczos steps m per start vector (capped at rows()).
  LinearOperator::Index steps = 100;
  /// > 0: eigen mode, a start stops once its nev largest Ritz values converged; 0: run all steps.
  LinearOperator::Index nev = 0;
  /// Ritz convergence tolerance (relative), used when nev > 0.
  double tol = 1e-10;
  /// Breakdown (invariant subspace) threshold relative to max_i ||A v_i||.
  double breakdown_tol = 1e-10;
};

class Lanczos {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// Non-owning: `op` must outlive the object. Throws std::invalid_argument on bad options.
  Lanczos(const LinearOperator& op, LanczosOptions options = {});

  /// Runs one process per column of `starts` [n x P]. Returns the number of starts that finished
  /// successfully (ran all steps, broke down on an invariant subspace, or converged in eigen mode).
  Index compute(const Matrix& starts);
  /// Successful; NotConverging if in eigen mode some start used all steps unconverged;
  /// NumericalIssue on NaN/Inf.
  CompInfo info() const { return m_info; }

  Index num_starts() const { return static_cast<Index>(m_alpha.size()); }
  /// Steps m taken by start p (<= min(steps, rows())).
  Index steps(Index p) const { return m_alpha[p].size(); }
  const Vector& alpha(Index p) const { return m_alpha[p]; }  // [m] diagonal of T
  /// [m]: beta(p)[j] = ||f_j|| couples v_j and v_{j+1}; the last entry is the final residual norm
  /// beta_m (tiny after a breakdown). T's off-diagonal is beta(p).head(m - 1).
  const Vector& beta(Index p) const { return m_beta[p]; }
  bool broke_down(Index p) const { return m_broke_down[p]; }
  bool converged(Index p) const { return m_converged[p]; }

  const Vector& ritz_values(Index p) const { return m_ritz_values[p]; }    // [m] ascending
  const Vector& ritz_weights(Index p) const { return m_ritz_weights[p]; }  // [m] sum to 1
  /// [m]: |beta_m s_{m,i}| = ||A y_i - theta_i y_i|| in exact arithmetic.
  Vector ritz_residuals(Index p) const;
  /// [n x m]: y_i = V_m s_i, unit columns, in the order of ritz_values (ascending).
  Matrix ritz_vectors(Index p) const;
  /// [n x m] orthonormal Lanczos basis V_m.
  const Matrix& basis(Index p) const { return m_basis[p]; }

  /// Operator columns applied by compute().
  std::int64_t num_operations() const { return m_num_operations; }
  /// Block applies by compute() (one per lockstep step).
  Index num_block_applies() const { return m_num_block_applies; }
  const LanczosOptions& options() const { return m_options; }

 private:
  const LinearOperator& m_op;
  LanczosOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  std::vector<Matrix> m_basis;  // per start: [n x m]
  std::vector<Vector> m_alpha, m_beta, m_ritz_values, m_ritz_weights;
  std::vector<Matrix> m_ritz_S;  // per start: eigenvectors of T [m x m]
  std::vector<bool> m_broke_down, m_converged;
  std::int64_t m_num_operations = 0;
  Index m_num_block_applies = 0;
};

}  // namespace curv
