#include "curvature/scaled_operator.h"

#include "curvature/internal/checked_apply.h"

namespace curv {

void ScaledOperator::apply(const Matrix& X, Matrix& Y) const {
  count_products(X.cols());
  internal::checked_apply(m_A, X, Y, "ScaledOperator");
  Y *= m_scale;
}

}  // namespace curv
