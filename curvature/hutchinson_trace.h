#pragma once
/// \file hutchinson_trace.h
/// Hutchinson's trace estimator with Rademacher probes:
///     tr(A) ~= (1/N) sum_j z_j^T A z_j,   z_j in {-1, +1}^n,
/// unbiased with Var[z^T A z] = 2 (||A||_F^2 - sum_i A_ii^2). Reports the estimate, its standard
/// error (sample std / sqrt(N)) and every per-probe sample.
///
/// Probes go through the operator `batch` at a time (one block apply each). With tol > 0 the run
/// stops after the first batch at which stderr <= tol * |estimate| (needs >= 2 probes).
///
/// Determinism: probe j is column j of one seeded stream (see internal/random.h), samples are
/// reduced in probe order, and per-probe dot products use a fixed summation order. So for a
/// given seed the result is bitwise identical for every TBB thread count, and - with tol = 0 - for
/// every batch size, provided the operator's columns do not depend on the block they sit in (true
/// for the model operators; Eigen's dense GEMM may differ in the last bit between block widths).
/// With tol > 0 the stopping point is checked per batch, so the probe count moves in steps of
/// `batch`.
///
/// REQUIRES: probes >= 1, batch >= 1, tol >= 0. Not thread-safe.
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/linear_operator.h"

namespace curv {

struct HutchinsonTraceOptions {
  /// Maximum number of probes (= operator products).
  LinearOperator::Index probes = 100;
  /// Probes per block apply.
  LinearOperator::Index batch = 8;
  /// Stop once stderr <= tol * |estimate|, checked after each batch; 0 runs all probes.
  double tol = 0.0;
  /// Seed of the probe stream.
  std::uint64_t seed = 0;
};

class HutchinsonTrace {
 public:
  using Index = LinearOperator::Index;

  /// Non-owning: `op` must outlive the estimator. Throws std::invalid_argument on bad options.
  HutchinsonTrace(const LinearOperator& op, HutchinsonTraceOptions options = {});

  /// Returns the number of probes used. info(): Successful if tol was met (or tol == 0),
  /// NotConverging if the probe budget ran out first, NumericalIssue on NaN/Inf.
  Index compute();
  CompInfo info() const { return m_info; }

  double estimate() const { return m_estimate; }
  /// Sample standard deviation / sqrt(probes); NaN with a single probe.
  double std_error() const { return m_std_error; }
  Index probes() const { return static_cast<Index>(m_samples.size()); }
  /// z_j^T A z_j in probe order.
  const std::vector<double>& samples() const { return m_samples; }
  std::int64_t num_operations() const { return m_num_operations; }
  const HutchinsonTraceOptions& options() const { return m_options; }

 private:
  const LinearOperator& m_op;
  HutchinsonTraceOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  double m_estimate = 0.0, m_std_error = 0.0;
  std::vector<double> m_samples;
  std::int64_t m_num_operations = 0;
};

}  // namespace curv
