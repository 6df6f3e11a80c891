#include "curvature/hutchinson_diagonal.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"

namespace curv {

HutchinsonDiagonal::HutchinsonDiagonal(const LinearOperator& op, HutchinsonDiagonalOptions options)
    : m_op(op), m_options(options) {
  if (m_options.probes < 1)
    throw std::invalid_argument("HutchinsonDiagonal: probes (= " + std::to_string(m_options.probes) +
                                ") must be >= 1");
  if (m_options.batch < 1)
    throw std::invalid_argument("HutchinsonDiagonal: batch (= " + std::to_string(m_options.batch) +
                                ") must be >= 1");
}

HutchinsonDiagonal::Index HutchinsonDiagonal::compute() {
  const Index n = m_op.rows();
  const std::int64_t products_before = m_op.num_products();
  internal::RandomStream rng(m_options.seed);
  m_mean = Vector::Zero(n);
  Vector m2 = Vector::Zero(n);  // Welford: sum of squared deviations
  m_probes = 0;

  LinearOperator::Matrix Z, AZ;
  while (m_probes < m_options.probes) {
    const Index b = std::min(m_options.batch, m_options.probes - m_probes);
    Z.resize(n, b);
    rng.rademacher(Z);
    internal::checked_apply(m_op, Z, AZ, "HutchinsonDiagonal");
    const Index done = m_probes;
    tbb::parallel_for(tbb::blocked_range<Index>(0, n, 4096), [&](const tbb::blocked_range<Index>& r) {
      for (Index i = r.begin(); i != r.end(); ++i) {
        double mean = m_mean(i), s = m2(i);
        for (Index j = 0; j < b; ++j) {
          const double x = Z(i, j) * AZ(i, j);
          const double delta = x - mean;
          mean += delta / static_cast<double>(done + j + 1);
          s += delta * (x - mean);
        }
        m_mean(i) = mean;
        m2(i) = s;
      }
    });
    m_probes += b;
  }
  if (m_probes >= 2) {
    m_std_error = (m2 / static_cast<double>(m_probes - 1) / static_cast<double>(m_probes)).cwiseSqrt();
  } else {
    m_std_error = Vector::Constant(n, std::numeric_limits<double>::quiet_NaN());
  }
  m_info = m_mean.allFinite() ? CompInfo::Successful : CompInfo::NumericalIssue;
  m_num_operations = m_op.num_products() - products_before;
  return m_probes;
}

}  // namespace curv
