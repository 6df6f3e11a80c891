#include "curvature/woodbury_inverse.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace curv {

WoodburyInverse::WoodburyInverse(Matrix G, double lambda) : m_G(std::move(G)), m_lambda(lambda) {
  if (!(lambda > 0) || !std::isfinite(lambda))
    throw std::invalid_argument("Woodbury inverse: damping (= " + std::to_string(lambda) + ") must be > 0 and finite");
  if (!m_G.allFinite()) throw std::invalid_argument("Woodbury inverse: the gradient window has NaN or inf entries");
  const Index m = m_G.cols();
  Matrix S = m_G.transpose() * m_G;
  S.diagonal().array() += double(m) * lambda;
  m_llt.compute(S);
  if (m_llt.info() != Eigen::Success) throw std::runtime_error("Woodbury inverse: Cholesky of the m x m system failed");
}

void WoodburyInverse::apply(const Matrix& X, Matrix& Y) const {
  if (X.rows() != rows())
    throw std::invalid_argument("Woodbury inverse: X has " + std::to_string(X.rows()) + " rows, expected " +
                                std::to_string(rows()));
  count_products(X.cols());
  const Matrix T = m_llt.solve(m_G.transpose() * X);
  Y.noalias() = (X - m_G * T) / m_lambda;
}

Eigen::MatrixXd per_sample_gradients(const Model& model, const Dataset& data, std::int64_t first, std::int64_t m,
                                     const ObjectiveOptions& options) {
  if (first < 0 || m < 1 || first + m > data.size())
    throw std::invalid_argument("per-sample gradients: samples " + std::to_string(first) + ".." +
                                std::to_string(first + m - 1) + " out of range (" + std::to_string(data.size()) +
                                " samples in " + data.source + ")");
  Eigen::MatrixXd G(model.num_params(), m);
  for (std::int64_t i = 0; i < m; ++i) {
    const Dataset one = data.subset(first + i, 1);
    auto obj = Objective::create(model, one, options);
    Eigen::VectorXd g;
    obj->gradient(g);
    G.col(i) = g;
  }
  return G;
}

}  // namespace curv
