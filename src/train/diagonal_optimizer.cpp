#include "src/train/diagonal_optimizer.h"

#include <cmath>
#include <stdexcept>

namespace curv {

DiagonalKind diagonal_kind(const std::string& optimizer) {
  if (optimizer == "adahessian") return DiagonalKind::AdaHessian;
  if (optimizer == "sophia") return DiagonalKind::Sophia;
  return DiagonalKind::None;
}

const char* diagonal_kind_name(DiagonalKind k) {
  switch (k) {
    case DiagonalKind::None: return "none";
    case DiagonalKind::AdaHessian: return "adahessian";
    case DiagonalKind::Sophia: return "sophia";
  }
  return "?";
}

namespace {
void require(bool ok, const std::string& what, double v) {
  if (!ok) throw std::invalid_argument("optimizer: " + what + " (got " + std::to_string(v) + ")");
}
}  // namespace

void validate(const DiagonalOptimizerOptions& o) {
  require(std::isfinite(o.beta1) && o.beta1 >= 0 && o.beta1 < 1, "beta1 must be in [0, 1)", o.beta1);
  require(std::isfinite(o.beta2) && o.beta2 >= 0 && o.beta2 < 1, "beta2 must be in [0, 1)", o.beta2);
  require(std::isfinite(o.eps) && o.eps > 0, "eps must be > 0", o.eps);
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "weight decay must be >= 0", o.weight_decay);
  require(o.hessian_every >= 1, "the Hessian diagonal must be refreshed every >= 1 steps", double(o.hessian_every));
  require(o.hessian_power >= 0 && o.hessian_power <= 1, "the Hessian power must be in [0, 1]", o.hessian_power);
  if (o.kind == DiagonalKind::Sophia) {
    require(std::isfinite(o.gamma) && o.gamma > 0, "Sophia's gamma must be > 0", o.gamma);
    require(std::isfinite(o.clip) && o.clip > 0, "Sophia's clip threshold rho must be > 0", o.clip);
  }
  if (o.kind == DiagonalKind::None) throw std::invalid_argument("optimizer: no Hessian-diagonal optimizer chosen");
  if (o.kind == DiagonalKind::AdaHessian && o.estimator != DiagonalEstimator::Hutchinson)
    throw std::invalid_argument("optimizer: adahessian uses the hutchinson estimator (gnb is Sophia's)");
}

DiagonalOptimizer::DiagonalOptimizer(const Model& model, DiagonalOptimizerOptions o)
    : m_n(model.num_params()), m_options(o), m_params(model.params()) {
  validate(o);
}

void DiagonalOptimizer::refresh(std::vector<double> d) {
  if (std::int64_t(d.size()) != m_n)
    throw std::invalid_argument("optimizer: Hessian diagonal of " + std::to_string(d.size()) + " entries, expected " +
                                std::to_string(m_n));
  ++m_refreshes;
  if (m_options.kind == DiagonalKind::AdaHessian) {
    for (double& x : d) x = std::abs(x);
    if (m_options.spatial_average) average_over_kernels(m_params, d);
    m_d = std::move(d);
    return;
  }
  // Sophia: h <- b2 h + (1 - b2) D^ at the refresh steps only.
  if (m_v.empty()) m_v.assign(m_n, 0.0);
  const double b2 = m_options.beta2;
  for (std::int64_t i = 0; i < m_n; ++i) m_v[i] = b2 * m_v[i] + (1 - b2) * d[i];
  m_d = std::move(d);
}

void DiagonalOptimizer::step(std::vector<double>& w, const std::vector<double>& g, double lr) {
  if (std::int64_t(w.size()) != m_n || std::int64_t(g.size()) != m_n)
    throw std::invalid_argument("optimizer: step on " + std::to_string(w.size()) + " weights and " +
                                std::to_string(g.size()) + " gradient entries, expected " + std::to_string(m_n));
  require(std::isfinite(lr) && lr >= 0, "learning rate must be finite and >= 0", lr);
  if (m_d.empty()) throw std::logic_error("optimizer: the first step needs a Hessian diagonal (refresh)");
  const auto& o = m_options;
  ++m_steps;
  if (m_m.empty()) m_m.assign(m_n, 0.0);
  if (o.kind == DiagonalKind::AdaHessian) {
    if (m_v.empty()) m_v.assign(m_n, 0.0);
    const double t = double(m_steps), k = o.hessian_power;
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    const double bc2k = std::pow(std::sqrt(bc2), k);
    for (std::int64_t i = 0; i < m_n; ++i) {
      m_m[i] = o.beta1 * m_m[i] + (1 - o.beta1) * g[i];
      m_v[i] = o.beta2 * m_v[i] + (1 - o.beta2) * m_d[i] * m_d[i];
      const double denom = std::pow(std::sqrt(m_v[i]), k) / bc2k + o.eps;
      w[i] = w[i] - lr * (m_m[i] / bc1 / denom + o.weight_decay * w[i]);
    }
    return;
  }
  std::int64_t clipped = 0;
  for (std::int64_t i = 0; i < m_n; ++i) {
    m_m[i] = o.beta1 * m_m[i] + (1 - o.beta1) * g[i];
    w[i] *= 1 - lr * o.weight_decay;
    const double r = m_m[i] / std::max(o.gamma * m_v[i], o.eps);
    const double c = std::max(std::min(r, o.clip), -o.clip);
    if (c != r) ++clipped;
    w[i] -= lr * c;
  }
  m_clip_fraction = m_n ? double(clipped) / double(m_n) : 0.0;
}

std::map<std::string, std::vector<double>> DiagonalOptimizer::state() const {
  std::map<std::string, std::vector<double>> s;
  if (!m_m.empty()) s["exp_avg"] = m_m;
  if (!m_v.empty()) s[m_options.kind == DiagonalKind::AdaHessian ? "exp_hessian_diag_sq" : "hessian"] = m_v;
  if (!m_d.empty()) s["hessian_diag"] = m_d;
  s["refreshes"] = {double(m_refreshes)};
  s["clip_fraction"] = {m_clip_fraction};
  return s;
}

void DiagonalOptimizer::set_state(const std::map<std::string, std::vector<double>>& state, std::int64_t steps) {
  if (steps < 0) throw std::invalid_argument("optimizer: negative step count");
  const bool ada = m_options.kind == DiagonalKind::AdaHessian;
  const std::string second = ada ? "exp_hessian_diag_sq" : "hessian";
  m_m.clear();
  m_v.clear();
  m_d.clear();
  m_refreshes = 0;
  m_clip_fraction = 0;
  for (const auto& [name, v] : state) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw std::invalid_argument("optimizer state '" + name + "' holds a non-finite value at index " +
                                    std::to_string(i));
    if (name == "refreshes" || name == "clip_fraction") {
      if (v.size() != 1) throw std::invalid_argument("optimizer state '" + name + "' must hold one value");
      if (name == "refreshes") {
        if (v[0] < 0 || v[0] != std::floor(v[0])) throw std::invalid_argument("optimizer state 'refreshes' is not a count");
        m_refreshes = std::int64_t(v[0]);
      } else {
        m_clip_fraction = v[0];
      }
      continue;
    }
    if (std::int64_t(v.size()) != m_n)
      throw std::invalid_argument("optimizer state '" + name + "' has " + std::to_string(v.size()) +
                                  " entries, expected " + std::to_string(m_n));
    if (name == "exp_avg")
      m_m = v;
    else if (name == second)
      m_v = v;
    else if (name == "hessian_diag")
      m_d = v;
    else
      throw std::invalid_argument("optimizer state '" + name + "' does not belong to " +
                                  diagonal_kind_name(m_options.kind));
    if (ada && name == second)
      for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i] < 0)
          throw std::invalid_argument("optimizer state '" + name + "' holds a negative value at index " +
                                      std::to_string(i));
  }
  if (steps > 0 && (m_m.empty() || m_d.empty()))
    throw std::invalid_argument("optimizer state: " + std::string(diagonal_kind_name(m_options.kind)) + " after " +
                                std::to_string(steps) + " steps needs exp_avg and hessian_diag");
  m_steps = steps;
}

}  // namespace curv
