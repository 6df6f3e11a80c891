#include "curvature/block_trace.h"

#include <Eigen/QR>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"

namespace curv {

namespace {

std::string num(std::int64_t x) { return std::to_string(x); }

}  // namespace

BlockTrace::BlockTrace(const LinearOperator& op, std::vector<Index> block_sizes, BlockTraceOptions options)
    : m_op(op), m_sizes(std::move(block_sizes)), m_options(options) {
  const auto& o = m_options;
  if (m_sizes.empty()) throw std::invalid_argument("BlockTrace: no blocks given");
  Index total = 0;
  for (std::size_t i = 0; i < m_sizes.size(); ++i) {
    if (m_sizes[i] < 1)
      throw std::invalid_argument("BlockTrace: block " + num(i) + " has size " + num(m_sizes[i]) + " (must be >= 1)");
    m_offsets.push_back(total);
    total += m_sizes[i];
  }
  if (total != op.rows())
    throw std::invalid_argument("BlockTrace: the blocks hold " + num(total) + " rows, the operator has " +
                                num(op.rows()));
  if (o.min_probes < 2 || o.max_probes < o.min_probes)
    throw std::invalid_argument("BlockTrace: need 2 <= min_probes (= " + num(o.min_probes) + ") <= max_probes (= " +
                                num(o.max_probes) + ")");
  if (o.batch < 1) throw std::invalid_argument("BlockTrace: batch (= " + num(o.batch) + ") must be >= 1");
  if (!(o.tol >= 0.0)) throw std::invalid_argument("BlockTrace: tol (= " + std::to_string(o.tol) + ") must be >= 0");
  if (o.sketch < 0 || o.sketch >= op.rows())
    throw std::invalid_argument("BlockTrace: sketch rank (= " + num(o.sketch) + ") must be in 0.." +
                                num(op.rows() - 1));
  if (o.power < 0) throw std::invalid_argument("BlockTrace: power (= " + num(o.power) + ") must be >= 0");
}

bool BlockTrace::converged(Index i) const {
  const double se = m_std_error.at(i);
  return m_options.tol == 0.0 || (std::isfinite(se) && se <= m_options.tol * std::abs(m_estimate.at(i)));
}

void BlockTrace::build_sketch() {
  const Index P = m_op.rows(), k = m_options.sketch;
  const std::size_t L = m_sizes.size();
  m_known.assign(L, 0.0);
  if (k == 0) {
    m_Q.resize(P, 0);
    m_Z.resize(P, 0);
    return;
  }
  // Range finder: Q = orth(A^(power) A S).
  internal::RandomStream rng(m_options.seed + 1);
  Matrix S(P, k), Y;
  rng.gaussian(S);
  internal::checked_apply(m_op, S, Y, "BlockTrace");
  for (Index p = 0; p < m_options.power; ++p) {
    Eigen::HouseholderQR<Matrix> qr(Y);
    S = qr.householderQ() * Matrix::Identity(P, k);
    internal::checked_apply(m_op, S, Y, "BlockTrace");
  }
  Eigen::HouseholderQR<Matrix> qr(Y);
  m_Q = qr.householderQ() * Matrix::Identity(P, k);
  internal::checked_apply(m_op, m_Q, m_Z, "BlockTrace");
  // A = Q T Q^T + Q W^T + W Q^T + R with T = Q^T Z (symmetrized), W = Z - Q T.
  Matrix T = m_Q.transpose() * m_Z;
  T = 0.5 * (T + T.transpose()).eval();
  const Matrix QT = m_Q * T;
  const Matrix W = m_Z - QT;
  // Block traces of the known part: rows of block i of Q T Q^T + 2 sym(Q W^T) on the diagonal.
  for (std::size_t i = 0; i < L; ++i) {
    const Index r0 = m_offsets[i], n = m_sizes[i];
    const auto Qi = m_Q.middleRows(r0, n);
    m_known[i] = (QT.middleRows(r0, n).array() * Qi.array()).sum() + 2.0 * (W.middleRows(r0, n).array() * Qi.array()).sum();
  }
}

BlockTrace::Index BlockTrace::compute() {
  const Index P = m_op.rows();
  const std::size_t L = m_sizes.size();
  const std::int64_t products_before = m_op.num_products();
  build_sketch();
  m_samples.assign(L, {});
  m_estimate.assign(L, 0.0);
  m_std_error.assign(L, std::numeric_limits<double>::quiet_NaN());
  m_probes = 0;
  internal::RandomStream rng(m_options.seed);
  bool all_met = false, finite = true;
  Matrix V, AV;
  while (m_probes < m_options.max_probes) {
    const Index b = std::min(m_options.batch, m_options.max_probes - m_probes);
    V.resize(P, b);
    rng.rademacher(V);
    internal::checked_apply(m_op, V, AV, "BlockTrace");
    if (m_options.sketch > 0) {
      // R v = u - Q (Q^T u), u = A v - Z (Q^T v).
      AV.noalias() -= m_Z * (m_Q.transpose() * V);
      AV.noalias() -= m_Q * (m_Q.transpose() * AV);
    }
    for (Index j = 0; j < b; ++j)
      for (std::size_t i = 0; i < L; ++i)
        m_samples[i].push_back(
            internal::det_dot(V.col(j).data() + m_offsets[i], AV.col(j).data() + m_offsets[i], m_sizes[i]));
    m_probes += b;
    all_met = true;
    for (std::size_t i = 0; i < L; ++i) {
      double mean = 0.0, se = 0.0;
      internal::mean_and_stderr(m_samples[i].data(), m_probes, mean, se);
      m_estimate[i] = m_known[i] + mean;
      m_std_error[i] = se;
      finite = finite && std::isfinite(m_estimate[i]);
      all_met = all_met && converged(static_cast<Index>(i));
    }
    if (!finite) break;
    if (m_options.tol > 0.0 && m_probes >= m_options.min_probes && all_met) break;
  }
  m_info = !finite ? CompInfo::NumericalIssue
           : (m_options.tol == 0.0 || all_met) ? CompInfo::Successful
                                              : CompInfo::NotConverging;
  m_num_operations = m_op.num_products() - products_before;
  return m_probes;
}

}  // namespace curv
