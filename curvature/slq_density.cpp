#include "curvature/slq_density.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>

#include "curvature/internal/random.h"
#include "curvature/lanczos.h"

namespace curv {

namespace {
constexpr double kKernelMarginSigmas = 4.0;  // grid reaches 4 sigma beyond the extreme nodes
}

SlqDensity::SlqDensity(const LinearOperator& op, SlqDensityOptions options) : m_op(op), m_options(options) {
  const auto& o = m_options;
  if (o.steps < 1) throw std::invalid_argument("SlqDensity: steps (= " + std::to_string(o.steps) + ") must be >= 1");
  if (o.probes < 1)
    throw std::invalid_argument("SlqDensity: probes (= " + std::to_string(o.probes) + ") must be >= 1");
  if (o.lockstep < 0)
    throw std::invalid_argument("SlqDensity: lockstep (= " + std::to_string(o.lockstep) + ") must be >= 0");
  if (o.grid_size < 2)
    throw std::invalid_argument("SlqDensity: grid_size (= " + std::to_string(o.grid_size) + ") must be >= 2");
  if (!(o.sigma_squared > 0.0))
    throw std::invalid_argument("SlqDensity: sigma_squared (= " + std::to_string(o.sigma_squared) + ") must be > 0");
  if (!(o.overhead >= 0.0))
    throw std::invalid_argument("SlqDensity: overhead (= " + std::to_string(o.overhead) + ") must be >= 0");
}

SlqDensity::Index SlqDensity::compute() {
  const Index n = m_op.rows();
  const Index P = m_options.probes;
  const Index M = std::min(m_options.steps, n);
  const std::int64_t products_before = m_op.num_products();

  // v_p = z_p / sqrt(n): ||z_p||^2 = n exactly for Rademacher z_p.
  Matrix Z(n, P);
  internal::RandomStream(m_options.seed).rademacher(Z);
  Z /= std::sqrt(static_cast<double>(n));

  LanczosOptions lo;
  lo.steps = M;
  m_nodes = Matrix::Zero(P, M);
  m_weights = Matrix::Zero(P, M);
  m_steps.assign(P, 0);
  m_num_block_applies = 0;
  bool numerical_issue = false;
  const Index pass = m_options.lockstep > 0 ? std::min(m_options.lockstep, P) : P;
  for (Index first = 0; first < P; first += pass) {
    const Index count = std::min(pass, P - first);
    Lanczos lanczos(m_op, lo);
    lanczos.compute(Z.middleCols(first, count));
    m_num_block_applies += lanczos.num_block_applies();
    if (lanczos.info() == CompInfo::NumericalIssue) numerical_issue = true;
    for (Index q = 0; q < count; ++q) {
      const Index p = first + q;
      const Index m = lanczos.ritz_values(q).size();
      m_steps[p] = m;
      m_nodes.row(p).head(m) = lanczos.ritz_values(q).transpose();
      m_weights.row(p).head(m) = lanczos.ritz_weights(q).transpose();
    }
  }
  m_num_operations = m_op.num_products() - products_before;
  if (numerical_issue || !m_nodes.allFinite() || !m_weights.allFinite()) {
    m_info = CompInfo::NumericalIssue;
    m_grid.resize(0);
    m_values.resize(0);
    return P;
  }
  smooth();
  m_info = m_values.allFinite() ? CompInfo::Successful : CompInfo::NumericalIssue;
  return P;
}

void SlqDensity::smooth() {
  const Index P = m_nodes.rows();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (Index p = 0; p < P; ++p) {
    if (m_steps[p] == 0) continue;
    lo = std::min(lo, m_nodes.row(p).head(m_steps[p]).minCoeff());
    hi = std::max(hi, m_nodes.row(p).head(m_steps[p]).maxCoeff());
  }
  const double overhead = m_options.overhead;
  const double var = m_options.sigma_squared * std::max(1.0, hi - lo + 2.0 * overhead);
  m_sigma = std::sqrt(var);
  const double a = lo - overhead - kKernelMarginSigmas * m_sigma;
  const double b = hi + overhead + kKernelMarginSigmas * m_sigma;
  const Index G = m_options.grid_size;
  m_grid = Vector::LinSpaced(G, a, b);
  m_values.resize(G);

  const double norm = 1.0 / std::sqrt(2.0 * std::numbers::pi * var);
  tbb::parallel_for(tbb::blocked_range<Index>(0, G, 256), [&](const tbb::blocked_range<Index>& r) {
    for (Index g = r.begin(); g != r.end(); ++g) {
      const double t = m_grid(g);
      double s = 0.0;
      for (Index p = 0; p < P; ++p)
        for (Index i = 0; i < m_steps[p]; ++i) {
          const double d = t - m_nodes(p, i);
          s += m_weights(p, i) * std::exp(-d * d / (2.0 * var));
        }
      m_values(g) = norm * s / static_cast<double>(P);
    }
  });
  // PyHessian's normalization: Riemann sum of the density is 1.
  const double dx = (b - a) / static_cast<double>(G - 1);
  const double mass = m_values.sum() * dx;
  if (mass > 0.0) m_values /= mass;
}

SlqDensity::Moment SlqDensity::moment(int j) const {
  if (m_info == CompInfo::NotComputed) throw std::logic_error("SlqDensity::moment: call compute() first");
  if (j < 0) throw std::invalid_argument("SlqDensity::moment: j (= " + std::to_string(j) + ") must be >= 0");
  const Index P = m_nodes.rows();
  const double n = static_cast<double>(m_op.rows());
  std::vector<double> per_probe(P);
  for (Index p = 0; p < P; ++p) {
    double s = 0.0;
    for (Index i = 0; i < m_steps[p]; ++i) s += m_weights(p, i) * std::pow(m_nodes(p, i), j);
    per_probe[p] = n * s;
  }
  Moment m;
  internal::mean_and_stderr(per_probe.data(), P, m.estimate, m.std_error);
  return m;
}

}  // namespace curv
