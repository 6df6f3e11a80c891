#pragma once
/// \file slq_density.h
/// Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; PyHessian's
/// `density()` + `density_generate()`).
///
/// P Rademacher probes z_p, normalized to v_p = z_p / sqrt(n), each run M Lanczos steps with full
/// reorthogonalization (see lanczos.h). The P processes advance in LOCKSTEP: each step is ONE
/// block apply of the operator on P columns, so M steps cost M block applies and P * M products.
/// Full reorthogonalization keeps every basis: 8 n M P bytes. For a large model set `lockstep`
/// to run the probes in passes of that many (the probes and results are the same, given an
/// operator whose columns do not depend on the block they sit in).
/// Probe p yields Gauss nodes theta_{p,i} (Ritz values, ascending) and weights
/// tau_{p,i} = (s_i)_1^2 (squared first components of T's eigenvectors, sum_i tau_{p,i} = 1), and
///     phi(t) ~= (1/P) sum_p sum_i tau_{p,i} delta(t - theta_{p,i}).
///
/// Because ||z_p||^2 = n exactly, n sum_i tau_{p,i} theta_{p,i}^j = z_p^T A^j z_p for every
/// j < 2 M: `moment(j)` is an unbiased estimate of tr(A^j) (Hutchinson on A^j, same probes).
///
/// Smoothed density on a grid (PyHessian's kernel):
///     sigma^2 = sigma_squared * max(1, theta_max - theta_min + 2 overhead)
///     grid    = grid_size points evenly spaced on
///               [theta_min - overhead - 4 sigma, theta_max + overhead + 4 sigma]
///     values  = (1/P) sum_p sum_i tau_{p,i} N(t; theta_{p,i}, sigma^2), then divided by
///               sum(values) * dx so the Riemann sum of the density is exactly 1.
/// theta_min/max are over all probes. PyHessian uses the same variance (its `sigma_squared=1e-5`
/// times max(1, range)) and normalization, but a grid clipped at +-overhead around the probe-mean
/// extremes; the 4 sigma margin here keeps the outermost kernels whole.
///
/// If a probe's Krylov space becomes invariant (beta ~ 0, e.g. n <= M) it stops early with
/// exact nodes; its row of nodes/weights is padded with zeros beyond `steps(p)`.
///
/// Determinism: bitwise identical for every TBB thread count for a given seed.
/// REQUIRES: probes >= 1, steps >= 1, lockstep >= 0, grid_size >= 2, sigma_squared > 0, overhead >= 0.
/// Not thread-safe.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct SlqDensityOptions {
  /// Lanczos steps M per probe (PyHessian `iter`); capped at rows().
  LinearOperator::Index steps = 100;
  /// Probes P (PyHessian `n_v`).
  LinearOperator::Index probes = 1;
  /// Probes advanced in lockstep per pass; 0 = all P in one pass. Bounds the Lanczos bases'
  /// memory, 8 n M lockstep bytes; passes run one after the other on the same probe stream.
  LinearOperator::Index lockstep = 0;
  /// Points of the density grid (PyHessian `num_bins`).
  LinearOperator::Index grid_size = 10000;
  /// Kernel variance relative to max(1, spectral range) (PyHessian `sigma_squared`).
  double sigma_squared = 1e-5;
  /// Grid margin beyond the extreme nodes (PyHessian `overhead`).
  double overhead = 0.01;
  /// Seed of the probe stream.
  std::uint64_t seed = 0;
};

class SlqDensity {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  /// A moment estimate with its standard error over probes (NaN with one probe).
  struct Moment {
    double estimate = 0.0;
    double std_error = 0.0;
  };

  /// Non-owning: `op` must outlive the estimator. Throws std::invalid_argument on bad options.
  SlqDensity(const LinearOperator& op, SlqDensityOptions options = {});

  /// Returns the number of probes. info(): Successful or NumericalIssue.
  Index compute();
  CompInfo info() const { return m_info; }

  const Matrix& nodes() const { return m_nodes; }      // [P x M] row p ascending, 0-padded
  const Matrix& weights() const { return m_weights; }  // [P x M] rows sum to 1, 0-padded
  /// Valid entries of row p of nodes/weights.
  const std::vector<Index>& steps() const { return m_steps; }
  const Vector& grid() const { return m_grid; }      // [grid_size]
  const Vector& values() const { return m_values; }  // [grid_size], sum(values) * dx == 1
  /// Kernel standard deviation used for `values`.
  double sigma() const { return m_sigma; }

  /// tr(A^j) ~= (1/P) sum_p n sum_i tau_{p,i} theta_{p,i}^j; unbiased for j < 2 M.
  /// REQUIRES: compute() was called (std::logic_error otherwise), j >= 0.
  Moment moment(int j) const;

  /// The operator size n.
  Index dimension() const { return m_op.rows(); }
  std::int64_t num_operations() const { return m_num_operations; }
  Index num_block_applies() const { return m_num_block_applies; }
  const SlqDensityOptions& options() const { return m_options; }

 private:
  void smooth();

  const LinearOperator& m_op;
  SlqDensityOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Matrix m_nodes, m_weights;
  std::vector<Index> m_steps;
  Vector m_grid, m_values;
  double m_sigma = 0.0;
  std::int64_t m_num_operations = 0;
  Index m_num_block_applies = 0;
};

}  // namespace curv
