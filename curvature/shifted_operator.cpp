#include "curvature/shifted_operator.h"

#include "curvature/internal/checked_apply.h"

namespace curv {

void ShiftedOperator::apply(const Matrix& X, Matrix& Y) const {
  count_products(X.cols());
  internal::checked_apply(m_A, X, Y, "ShiftedOperator");
  Y -= m_sigma * X;
}

}  // namespace curv
