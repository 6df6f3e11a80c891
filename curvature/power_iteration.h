#pragma once
/// \file power_iteration.h
/// PyHessian's `hessian.eigenvalues()` reproduced step for step, so HVP counts compare like for
/// like with PyHessian (and with Lanczos / `EigenSolver` on the same operator).
///
/// For i = 0 .. top-1: v = normalize(gaussian(seed)); then up to max_iterations times
///     v  = orthonormalize v against the i vectors already found (modified Gram-Schmidt)
///     Av = A v                                  (one product)
///     mu = v . Av                               (Rayleigh quotient)
///     v  = Av / ||Av||
///     stop when |lambda - mu| / (|lambda| + 1e-6) < tol, else lambda = mu
/// and report lambda (the quotient of the previous step, as PyHessian does) and v.
///
/// Power iteration converges to the eigenvalue of largest MAGNITUDE in the deflated space, not
/// the largest algebraic one; its error after stopping is about tol * r^2 / (1 - r^2) relative,
/// r = |lambda_2 / lambda_1|, so it can exceed tol on a small gap. Each pair's residual
/// ||A v - lambda v|| comes from one extra block apply over all found vectors (counted in
/// `num_operations()`, not in `iterations()`).
///
/// REQUIRES: 1 <= top <= rows(), max_iterations >= 1, tol > 0.
/// Not thread-safe; the operator may use TBB inside its apply.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct PowerIterationOptions {
  /// Number of eigenpairs, found one after the other (PyHessian `top_n`).
  LinearOperator::Index top = 1;
  /// Maximum products per eigenpair (PyHessian `maxIter`).
  LinearOperator::Index max_iterations = 100;
  /// Relative change of consecutive Rayleigh quotients that stops an eigenpair (PyHessian `tol`).
  double tol = 1e-3;
  /// Seed of the Gaussian start vectors.
  std::uint64_t seed = 0;
};

class PowerIteration {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// Non-owning: `op` must outlive the solver. Throws std::invalid_argument on bad options.
  PowerIteration(const LinearOperator& op, PowerIterationOptions options = {});

  /// Returns the number of eigenpairs that met tol within max_iterations.
  Index compute();
  CompInfo info() const { return m_info; }

  /// In the order found (largest magnitude first in exact arithmetic), NOT sorted.
  const Vector& values() const { return m_values; }
  const Matrix& vectors() const { return m_vectors; }  // [rows x top], unit columns
  const Vector& residuals() const { return m_residuals; }
  /// Products spent on each eigenpair (PyHessian's loop count).
  const std::vector<Index>& iterations() const { return m_iterations; }
  const std::vector<bool>& converged() const { return m_converged; }
  /// All operator columns applied by compute(), including the residual apply.
  std::int64_t num_operations() const { return m_num_operations; }
  const PowerIterationOptions& options() const { return m_options; }

 private:
  const LinearOperator& m_op;
  PowerIterationOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Vector m_values, m_residuals;
  Matrix m_vectors;
  std::vector<Index> m_iterations;
  std::vector<bool> m_converged;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
