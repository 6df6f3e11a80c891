#include "curvature/hutch_plus_plus.h"

#include <tbb/parallel_for.h>

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"

namespace curv {

namespace {

using Matrix = LinearOperator::Matrix;
using Vector = LinearOperator::Vector;
using Index = LinearOperator::Index;

// Y = A X in blocks of `batch` columns (bounds memory of the operator's block pass).
void apply_batched(const LinearOperator& op, const Matrix& X, Matrix& Y, Index batch) {
  Y.resize(X.rows(), X.cols());
  Matrix Xb, Yb;
  for (Index c = 0; c < X.cols(); c += batch) {
    const Index b = std::min(batch, X.cols() - c);
    Xb = X.middleCols(c, b);
    internal::checked_apply(op, Xb, Yb, "HutchPlusPlus");
    Y.middleCols(c, b) = Yb;
  }
}

}  // namespace

HutchPlusPlus::HutchPlusPlus(const LinearOperator& op, HutchPlusPlusOptions options) : m_op(op), m_options(options) {
  if (m_options.probes < 3)
    throw std::invalid_argument("HutchPlusPlus: probes (= " + std::to_string(m_options.probes) +
                                ") must be >= 3 (a third each for sketch, low-rank trace and residual)");
  if (m_options.batch < 1)
    throw std::invalid_argument("HutchPlusPlus: batch (= " + std::to_string(m_options.batch) + ") must be >= 1");
}

HutchPlusPlus::Index HutchPlusPlus::compute() {
  const Index n = m_op.rows();
  const Index m = m_options.probes;
  const Index k = std::min(m / 3, n);
  const Index g = m - 2 * k;
  const std::int64_t products_before = m_op.num_products();
  internal::RandomStream rng(m_options.seed);
  m_rank = k;

  Matrix S(n, k), G(n, g);
  rng.rademacher(S);
  rng.rademacher(G);

  // Q = orth(A S): thin Q of a Householder QR (no pivoting; rank deficiency leaves Q orthonormal).
  Matrix AS;
  apply_batched(m_op, S, AS, m_options.batch);
  Eigen::HouseholderQR<Matrix> qr(AS);
  const Matrix Q = qr.householderQ() * Matrix::Identity(n, k);

  // t1 = tr(Q^T A Q) = sum_i q_i . (A q_i)
  Matrix AQ;
  apply_batched(m_op, Q, AQ, m_options.batch);
  m_low_rank_trace = 0.0;
  for (Index i = 0; i < k; ++i) m_low_rank_trace += internal::det_dot(Q.col(i).data(), AQ.col(i).data(), n);

  // G' = (I - Q Q^T) G, column by column so each column's arithmetic is fixed.
  tbb::parallel_for(Index(0), g, [&](Index j) {
    Vector gj = G.col(j);
    const Vector c = Q.transpose() * gj;
    gj.noalias() -= Q * c;
    G.col(j) = gj;
  });
  Matrix AG;
  apply_batched(m_op, G, AG, m_options.batch);
  m_samples.assign(g, 0.0);
  tbb::parallel_for(Index(0), g, [&](Index j) { m_samples[j] = internal::det_dot(G.col(j).data(), AG.col(j).data(), n); });
  internal::mean_and_stderr(m_samples.data(), g, m_residual_trace, m_std_error);

  m_info = std::isfinite(estimate()) ? CompInfo::Successful : CompInfo::NumericalIssue;
  m_num_operations = m_op.num_products() - products_before;
  return 2 * k + g;
}

}  // namespace curv
