#include "curvature/curvature_operator.h"

#include <stdexcept>

namespace curv {

CurvatureOperator::CurvatureOperator(Objective& objective, Curvature kind, std::vector<int> params)
    : m_obj(&objective), m_kind(kind), m_params(std::move(params)) {
  const auto& mp = objective.model().params();
  if (m_params.empty()) {
    m_rows = objective.num_params();
  } else {
    for (int p : m_params) {
      if (p < 0 || p >= static_cast<int>(mp.size()))
        throw std::invalid_argument("CurvatureOperator: parameter index " + std::to_string(p) + " out of range");
      m_rows += mp[p].size;
    }
  }
}

void CurvatureOperator::apply(const Matrix& X, Matrix& Y) const {
  if (X.rows() != m_rows)
    throw std::invalid_argument("CurvatureOperator: X has " + std::to_string(X.rows()) + " rows, expected " +
                                std::to_string(m_rows));
  count_products(X.cols());
  m_obj->product(m_kind, X, Y, m_params);
}

}  // namespace curv
