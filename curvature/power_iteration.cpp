#include "curvature/power_iteration.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"

namespace curv {

namespace {
constexpr double kPyHessianDenominatorFloor = 1e-6;  // |lambda| + 1e-6 in PyHessian's test
}

PowerIteration::PowerIteration(const LinearOperator& op, PowerIterationOptions options)
    : m_op(op), m_options(options) {
  const auto& o = m_options;
  if (o.top < 1 || o.top > op.rows())
    throw std::invalid_argument("PowerIteration: top (= " + std::to_string(o.top) +
                                ") must be in [1, operator size (= " + std::to_string(op.rows()) + ")]");
  if (o.max_iterations < 1)
    throw std::invalid_argument("PowerIteration: max_iterations (= " + std::to_string(o.max_iterations) +
                                ") must be >= 1");
  if (!(o.tol > 0.0))
    throw std::invalid_argument("PowerIteration: tol (= " + std::to_string(o.tol) + ") must be > 0");
}

PowerIteration::Index PowerIteration::compute() {
  const Index n = m_op.rows();
  const Index top = m_options.top;
  const std::int64_t products_before = m_op.num_products();
  internal::RandomStream rng(m_options.seed);

  m_values = Vector::Zero(top);
  m_vectors = Matrix::Zero(n, top);
  m_iterations.assign(top, 0);
  m_converged.assign(top, false);
  m_info = CompInfo::Successful;

  Matrix x(n, 1), y;
  Index nconv = 0;
  for (Index i = 0; i < top; ++i) {
    Vector v(n);
    rng.gaussian(v);
    v /= v.norm();
    double lambda = 0.0;
    bool have_lambda = false;
    for (Index it = 0; it < m_options.max_iterations; ++it) {
      for (Index j = 0; j < i; ++j) v -= v.dot(m_vectors.col(j)) * m_vectors.col(j);
      v /= v.norm();
      x.col(0) = v;
      internal::checked_apply(m_op, x, y, "PowerIteration");
      ++m_iterations[i];
      const double mu = y.col(0).dot(v);
      const double norm = y.col(0).norm();
      if (!std::isfinite(mu) || !std::isfinite(norm)) {
        m_info = CompInfo::NumericalIssue;
        lambda = mu;
        break;
      }
      if (norm == 0.0) {  // v is in the null space: eigenvalue 0, exactly
        lambda = 0.0;
        m_converged[i] = true;
        break;
      }
      v = y.col(0) / norm;
      if (!have_lambda) {
        lambda = mu;
        have_lambda = true;
      } else if (std::abs(lambda - mu) / (std::abs(lambda) + kPyHessianDenominatorFloor) < m_options.tol) {
        m_converged[i] = true;
        break;
      } else {
        lambda = mu;
      }
    }
    m_values(i) = lambda;
    m_vectors.col(i) = v;
    if (m_converged[i]) ++nconv;
  }
  if (m_info == CompInfo::Successful && nconv < top) m_info = CompInfo::NotConverging;

  Matrix AV;
  internal::checked_apply(m_op, m_vectors, AV, "PowerIteration");
  m_residuals = (AV - m_vectors * m_values.asDiagonal()).colwise().norm().transpose();
  m_num_operations = m_op.num_products() - products_before;
  return nconv;
}

}  // namespace curv
