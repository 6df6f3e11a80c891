#pragma once
/// \file block_trace.h
/// Traces of the diagonal blocks A_ii of a symmetric operator A (one block per layer) from shared
/// probes: one product A v of the whole operator per probe serves every block,
///     tr(A_ii) ~= (1/N) sum_j v_j,i^T (A v_j)_i,     v_j in {-1, +1}^P (Rademacher),
/// instead of one block product per block and probe (HAWQ-V2, PyHessian). The shared sample of
/// block i is unbiased but carries the off-diagonal blocks as noise:
///     Var[v_i^T (A v)_i] = 2 (||A_ii||_F^2 - sum_p (A_ii)_pp^2) + sum_{j != i} ||A_ij||_F^2,
/// which swamps small blocks coupled to large ones.
///
/// Control variate (`sketch` = k > 0): a randomized range finder, Q = orth(A^(power) A S) with a
/// Gaussian P x k sketch S (independent of the probes), and Z = A Q, T = Q^T Z, W = Z - Q T split
///     A = Q T Q^T + Q W^T + W Q^T + R,      R = (I - Q Q^T) A (I - Q Q^T),
/// where the first three terms have exactly computable block traces (the control variate's known
/// mean, `known()`), and only R is probed:  R v = u - Q (Q^T u),  u = A v - Z (Q^T v),  still one
/// product per probe. When Q holds the dominant eigenvectors (the outliers of a network's Hessian
/// that couple its layers), R's off-diagonal blocks are small and so is the variance. The estimate
/// stays unbiased for any Q. With k = 0 this is plain shared-probe Hutchinson.
///
/// Stopping: after `min_probes`, the run stops once every block has stderr_i <= tol |estimate_i|
/// (checked per batch of probes), or after `max_probes`. Each block reports its estimate, standard
/// error (sample std / sqrt(N) of its residual samples) and every sample, so the convergence of
/// each block's trace with the probe count can be plotted.
///
/// Cost: k (power + 2) products for the sketch, then one product per probe, plus O(P k) per probe.
/// Determinism: probes and sketch come from seeded streams (internal/random.h); results are
/// bitwise identical for any thread count. REQUIRES: blocks partition 0..P-1 in order (sizes >= 1
/// summing to op.rows()), k < P, max_probes >= min_probes >= 2, batch >= 1, tol >= 0.
/// Not thread-safe.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct BlockTraceOptions {
  /// Shared probes at most (= whole-operator products after the sketch).
  LinearOperator::Index max_probes = 64;
  /// Probes before the stopping rule is checked.
  LinearOperator::Index min_probes = 8;
  /// Probes per block apply.
  LinearOperator::Index batch = 4;
  /// Stop once every block has stderr <= tol * |estimate|; 0 runs max_probes.
  double tol = 0.0;
  /// Rank k of the control variate's sketch (0: plain shared-probe Hutchinson).
  LinearOperator::Index sketch = 0;
  /// Power iterations of the range finder (each costs k products).
  LinearOperator::Index power = 1;
  /// Seed of the probes (the sketch uses seed + 1).
  std::uint64_t seed = 0;
};

class BlockTrace {
 public:
  using Index = LinearOperator::Index;
  using Matrix = LinearOperator::Matrix;

  /// Non-owning: `op` must outlive the estimator. Throws std::invalid_argument on bad options or
  /// block sizes that do not partition the operator.
  BlockTrace(const LinearOperator& op, std::vector<Index> block_sizes, BlockTraceOptions options = {});

  /// Returns the number of probes used. info(): Successful if every block met tol (or tol == 0),
  /// NotConverging if max_probes ran out first, NumericalIssue on NaN/Inf.
  Index compute();
  CompInfo info() const { return m_info; }

  Index num_blocks() const { return static_cast<Index>(m_sizes.size()); }
  /// Estimate of tr(A_ii) = known part + mean of the residual samples.
  const std::vector<double>& estimates() const { return m_estimate; }
  /// Standard errors of the estimates (NaN with fewer than two probes).
  const std::vector<double>& std_errors() const { return m_std_error; }
  /// The exactly computed part of each block trace (0 without a sketch).
  const std::vector<double>& known() const { return m_known; }
  /// Whether block i met the tolerance.
  bool converged(Index i) const;
  Index probes() const { return m_probes; }
  /// samples()[i][j] = v_j,i^T (R v_j)_i, block i, probe j (known part not included).
  const std::vector<std::vector<double>>& samples() const { return m_samples; }
  /// Operator products used (sketch + probes).
  std::int64_t num_operations() const { return m_num_operations; }
  const BlockTraceOptions& options() const { return m_options; }

 private:
  void build_sketch();

  const LinearOperator& m_op;
  std::vector<Index> m_sizes, m_offsets;
  BlockTraceOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Matrix m_Q, m_Z;  // P x k basis and A Q
  std::vector<double> m_known, m_estimate, m_std_error;
  std::vector<std::vector<double>> m_samples;
  Index m_probes = 0;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
