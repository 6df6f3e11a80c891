#include "curvature/exact_spectrum.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"

namespace curv {

ExactSpectrum::ExactSpectrum(const LinearOperator& op, ExactSpectrumOptions options) : m_op(op), m_options(options) {
  const Index n = op.rows();
  if (n > m_options.max_size) {
    const double mb = 8.0 * static_cast<double>(n) * static_cast<double>(n) / 1e6;
    throw std::invalid_argument("ExactSpectrum: operator size (= " + std::to_string(n) + ") exceeds max_size (= " +
                                std::to_string(m_options.max_size) + "); the dense matrix would take " +
                                std::to_string(static_cast<long long>(mb)) + " MB");
  }
  if (m_options.block < 1)
    throw std::invalid_argument("ExactSpectrum: block (= " + std::to_string(m_options.block) + ") must be >= 1");
}

ExactSpectrum::Index ExactSpectrum::compute() {
  const Index n = m_op.rows();
  const std::int64_t products_before = m_op.num_products();
  Matrix A(n, n), E, AE;
  for (Index c = 0; c < n; c += m_options.block) {
    const Index b = std::min(m_options.block, n - c);
    E = Matrix::Identity(n, n).middleCols(c, b);
    internal::checked_apply(m_op, E, AE, "ExactSpectrum");
    A.middleCols(c, b) = AE;
  }
  m_num_operations = m_op.num_products() - products_before;

  const double fro = A.norm();
  m_asymmetry = fro > 0.0 ? (A - A.transpose()).norm() / fro : 0.0;
  m_matrix = 0.5 * (A + A.transpose());
  m_diagonal = m_matrix.diagonal();
  m_trace = m_diagonal.sum();

  if (!m_matrix.allFinite()) {
    m_info = CompInfo::NumericalIssue;
    return 0;
  }
  Eigen::SelfAdjointEigenSolver<Matrix> es(m_matrix,
                                           m_options.compute_vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
  if (es.info() != Eigen::Success) {
    m_info = CompInfo::NumericalIssue;
    return 0;
  }
  m_eigenvalues = es.eigenvalues();
  if (m_options.compute_vectors) m_eigenvectors = es.eigenvectors();
  m_info = CompInfo::Successful;
  return n;
}

void ExactSpectrum::check_k(Index k, bool vectors) const {
  if (m_info != CompInfo::Successful) throw std::logic_error("ExactSpectrum: call compute() first (successfully)");
  if (k < 0 || k > m_eigenvalues.size())
    throw std::invalid_argument("ExactSpectrum: k (= " + std::to_string(k) + ") must be in [0, " +
                                std::to_string(m_eigenvalues.size()) + "]");
  if (vectors && !m_options.compute_vectors)
    throw std::logic_error("ExactSpectrum: eigenvectors were not computed (compute_vectors = false)");
}

ExactSpectrum::Vector ExactSpectrum::top(Index k) const {
  check_k(k, false);
  return m_eigenvalues.tail(k).reverse();
}

ExactSpectrum::Vector ExactSpectrum::bottom(Index k) const {
  check_k(k, false);
  return m_eigenvalues.head(k);
}

ExactSpectrum::Matrix ExactSpectrum::top_vectors(Index k) const {
  check_k(k, true);
  return m_eigenvectors.rightCols(k).rowwise().reverse();
}

ExactSpectrum::Matrix ExactSpectrum::bottom_vectors(Index k) const {
  check_k(k, true);
  return m_eigenvectors.leftCols(k);
}

}  // namespace curv
