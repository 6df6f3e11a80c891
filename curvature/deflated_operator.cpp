#include "curvature/deflated_operator.h"

#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"

namespace curv {

namespace {
constexpr double kOrthonormalityTol = 1e-8;
}

DeflatedOperator::DeflatedOperator(const LinearOperator& A, Matrix V, Vector values, DeflationMode mode)
    : m_A(A), m_V(std::move(V)), m_values(std::move(values)), m_mode(mode) {
  if (m_V.rows() != m_A.rows())
    throw std::invalid_argument("DeflatedOperator: vectors have " + std::to_string(m_V.rows()) +
                                " rows, the operator has " + std::to_string(m_A.rows()));
  if (mode == DeflationMode::Hotelling && m_values.size() != m_V.cols())
    throw std::invalid_argument("DeflatedOperator: " + std::to_string(m_values.size()) + " values for " +
                                std::to_string(m_V.cols()) + " vectors");
  const double err =
      m_V.cols() == 0
          ? 0.0
          : (m_V.transpose() * m_V - Matrix::Identity(m_V.cols(), m_V.cols())).cwiseAbs().maxCoeff();
  if (!(err <= kOrthonormalityTol))
    throw std::invalid_argument("DeflatedOperator: vectors must be orthonormal (|V^T V - I|_max = " +
                                std::to_string(err) + " > 1e-8)");
}

DeflatedOperator DeflatedOperator::hotelling(const LinearOperator& A, Matrix V, Vector values) {
  return DeflatedOperator(A, std::move(V), std::move(values), DeflationMode::Hotelling);
}

DeflatedOperator DeflatedOperator::projection(const LinearOperator& A, Matrix V) {
  return DeflatedOperator(A, std::move(V), Vector(), DeflationMode::Projection);
}

void DeflatedOperator::apply(const Matrix& X, Matrix& Y) const {
  count_products(X.cols());
  if (m_mode == DeflationMode::Hotelling) {
    // B X = A X - V (diag(lambda) V^T X)
    internal::checked_apply(m_A, X, Y, "DeflatedOperator");
    const Matrix C = m_values.asDiagonal() * (m_V.transpose() * X);
    Y.noalias() -= m_V * C;
  } else {
    // B X = P A P X with P = I - V V^T
    Matrix PX = X;
    PX.noalias() -= m_V * (m_V.transpose() * X);
    internal::checked_apply(m_A, PX, Y, "DeflatedOperator");
    const Matrix C = m_V.transpose() * Y;
    Y.noalias() -= m_V * C;
  }
}

}  // namespace curv
