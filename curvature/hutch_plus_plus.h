#pragma once
/// \file hutch_plus_plus.h
/// Hutch++ (Meyer, Musco, Musco, Woodruff 2021): low-rank deflation + Hutchinson on the rest.
///
/// With a budget of m products (same meaning as HutchinsonTrace's `probes`): k = floor(m / 3),
///     S  [n x k] Rademacher,  Q = orth(A S)                                   (k products)
///     t1 = tr(Q^T A Q)                                                        (k products)
///     G  [n x g] Rademacher, g = m - 2k,  G' = (I - Q Q^T) G
///     t2 = (1/g) sum_j g'_j^T A g'_j                                          (g products)
///     tr(A) ~= t1 + t2.
/// For a spectrum that decays, the error is O(1/m) instead of Hutchinson's O(1/sqrt(m)).
/// k is capped at n (then Q spans everything and t2 ~= 0). `std_error()` is the standard error
/// of t2 given Q (sample std of the g samples / sqrt(g)); it ignores the randomness of Q.
///
/// Determinism: S then G are drawn from one seeded stream in that order; as for HutchinsonTrace
/// results are bitwise independent of the TBB thread count and of `batch` (given an operator
/// whose columns do not depend on the block they sit in).
///
/// REQUIRES: probes >= 3 (k >= 1 and g >= 1), batch >= 1. Not thread-safe.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct HutchPlusPlusOptions {
  /// Total budget of operator products m (split k = m / 3, k, m - 2 k).
  LinearOperator::Index probes = 99;
  /// Columns per block apply.
  LinearOperator::Index batch = 8;
  /// Seed of the probe stream.
  std::uint64_t seed = 0;
};

class HutchPlusPlus {
 public:
  using Index = LinearOperator::Index;

  /// Non-owning: `op` must outlive the estimator. Throws std::invalid_argument on bad options.
  HutchPlusPlus(const LinearOperator& op, HutchPlusPlusOptions options = {});

  /// Returns the number of products used (= probes). info(): Successful or NumericalIssue.
  Index compute();
  CompInfo info() const { return m_info; }

  double estimate() const { return m_low_rank_trace + m_residual_trace; }
  /// Standard error of the residual part given Q; NaN when g == 1.
  double std_error() const { return m_std_error; }
  double low_rank_trace() const { return m_low_rank_trace; }  // t1 = tr(Q^T A Q)
  double residual_trace() const { return m_residual_trace; }  // t2
  Index rank() const { return m_rank; }                        // k
  Index probes() const { return m_rank * 2 + static_cast<Index>(m_samples.size()); }
  /// g'_j^T A g'_j in probe order (their mean is t2).
  const std::vector<double>& samples() const { return m_samples; }
  std::int64_t num_operations() const { return m_num_operations; }
  const HutchPlusPlusOptions& options() const { return m_options; }

 private:
  const LinearOperator& m_op;
  HutchPlusPlusOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  double m_low_rank_trace = 0.0, m_residual_trace = 0.0, m_std_error = 0.0;
  Index m_rank = 0;
  std::vector<double> m_samples;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
