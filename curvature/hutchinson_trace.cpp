#include "curvature/hutchinson_trace.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"

namespace curv {

HutchinsonTrace::HutchinsonTrace(const LinearOperator& op, HutchinsonTraceOptions options)
    : m_op(op), m_options(options) {
  const auto& o = m_options;
  if (o.probes < 1)
    throw std::invalid_argument("HutchinsonTrace: probes (= " + std::to_string(o.probes) + ") must be >= 1");
  if (o.batch < 1)
    throw std::invalid_argument("HutchinsonTrace: batch (= " + std::to_string(o.batch) + ") must be >= 1");
  if (!(o.tol >= 0.0))
    throw std::invalid_argument("HutchinsonTrace: tol (= " + std::to_string(o.tol) + ") must be >= 0");
}

HutchinsonTrace::Index HutchinsonTrace::compute() {
  const Index n = m_op.rows();
  const std::int64_t products_before = m_op.num_products();
  internal::RandomStream rng(m_options.seed);
  m_samples.clear();
  m_samples.reserve(m_options.probes);
  bool met_tol = false;

  LinearOperator::Matrix Z, AZ;
  while (static_cast<Index>(m_samples.size()) < m_options.probes) {
    const Index b = std::min(m_options.batch, m_options.probes - static_cast<Index>(m_samples.size()));
    Z.resize(n, b);
    rng.rademacher(Z);
    internal::checked_apply(m_op, Z, AZ, "HutchinsonTrace");
    const std::size_t first = m_samples.size();
    m_samples.resize(first + b);
    tbb::parallel_for(Index(0), b, [&](Index j) {
      m_samples[first + j] = internal::det_dot(Z.col(j).data(), AZ.col(j).data(), n);
    });
    internal::mean_and_stderr(m_samples.data(), static_cast<Index>(m_samples.size()), m_estimate, m_std_error);
    if (m_options.tol > 0.0 && m_samples.size() >= 2 && m_std_error <= m_options.tol * std::abs(m_estimate)) {
      met_tol = true;
      break;
    }
  }
  m_info = !std::isfinite(m_estimate)               ? CompInfo::NumericalIssue
           : (m_options.tol == 0.0 || met_tol) ? CompInfo::Successful
                                                    : CompInfo::NotConverging;
  m_num_operations = m_op.num_products() - products_before;
  return static_cast<Index>(m_samples.size());
}

}  // namespace curv
