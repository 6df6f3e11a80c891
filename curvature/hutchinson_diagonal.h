#pragma once
/// \file hutchinson_diagonal.h
/// Diagonal estimator (Bekas, Kokiopoulou, Saad 2007) with Rademacher probes:
///     diag(A) ~= (1/N) sum_j z_j (.) A z_j
/// with a standard error per entry (sample std over probes / sqrt(N)). Each entry's variance is
/// sum_{k != i} A_ik^2, so a diagonally dominant A converges fastest. Its sum is Hutchinson's
/// trace estimate on the same probes.
///
/// Determinism: probes come from one seeded stream in a fixed order and every entry is
/// accumulated over probes in probe order (Welford), so results are bitwise independent of the
/// TBB thread count and of `batch` (given an operator whose columns do not depend on the block
/// they sit in).
///
/// REQUIRES: probes >= 1, batch >= 1. Not thread-safe.
#include <cstdint>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct HutchinsonDiagonalOptions {
  /// Number of probes (= operator products).
  LinearOperator::Index probes = 100;
  /// Probes per block apply.
  LinearOperator::Index batch = 8;
  /// Seed of the probe stream.
  std::uint64_t seed = 0;
};

class HutchinsonDiagonal {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;

  /// Non-owning: `op` must outlive the estimator. Throws std::invalid_argument on bad options.
  HutchinsonDiagonal(const LinearOperator& op, HutchinsonDiagonalOptions options = {});

  /// Returns the number of probes used. info(): Successful or NumericalIssue.
  Index compute();
  CompInfo info() const { return m_info; }

  const Vector& estimate() const { return m_mean; }  // [rows]
  /// [rows] per-entry standard error; NaN with a single probe.
  const Vector& std_error() const { return m_std_error; }
  Index probes() const { return m_probes; }
  std::int64_t num_operations() const { return m_num_operations; }
  const HutchinsonDiagonalOptions& options() const { return m_options; }

 private:
  const LinearOperator& m_op;
  HutchinsonDiagonalOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  Vector m_mean, m_std_error;
  Index m_probes = 0;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
