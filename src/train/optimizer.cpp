#include "src/train/optimizer.h"

#include <cmath>
#include <stdexcept>

namespace curv {

OptimizerKind parse_optimizer(const std::string& s) {
  if (s == "sgd") return OptimizerKind::Sgd;
  if (s == "adam") return OptimizerKind::Adam;
  if (s == "adamw") return OptimizerKind::AdamW;
  throw std::invalid_argument("unknown optimizer '" + s + "' (expected sgd, adam or adamw)");
}

const char* optimizer_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::Sgd: return "sgd";
    case OptimizerKind::Adam: return "adam";
    case OptimizerKind::AdamW: return "adamw";
  }
  return "?";
}

namespace {
void require(bool ok, const std::string& what, double v) {
  if (!ok) throw std::invalid_argument("optimizer: " + what + " (got " + std::to_string(v) + ")");
}
}  // namespace

Optimizer::Optimizer(std::int64_t num_params, OptimizerOptions o) : m_n(num_params), m_options(o) {
  if (num_params < 0) throw std::invalid_argument("optimizer: negative parameter count");
  require(std::isfinite(o.momentum) && o.momentum >= 0 && o.momentum < 1, "momentum must be in [0, 1)", o.momentum);
  require(std::isfinite(o.dampening) && o.dampening >= 0 && o.dampening <= 1, "dampening must be in [0, 1]",
          o.dampening);
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "weight decay must be >= 0", o.weight_decay);
  require(std::isfinite(o.beta1) && o.beta1 >= 0 && o.beta1 < 1, "beta1 must be in [0, 1)", o.beta1);
  require(std::isfinite(o.beta2) && o.beta2 >= 0 && o.beta2 < 1, "beta2 must be in [0, 1)", o.beta2);
  require(std::isfinite(o.eps) && o.eps > 0, "eps must be > 0", o.eps);
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    throw std::invalid_argument("optimizer: nesterov needs momentum > 0 and zero dampening");
  if (o.kind != OptimizerKind::Sgd && (o.momentum != 0 || o.nesterov))
    throw std::invalid_argument(std::string("optimizer: momentum and nesterov apply to sgd, not ") +
                                optimizer_name(o.kind) + " (use beta1)");
}

void Optimizer::step(std::vector<double>& w, const std::vector<double>& g, double lr) {
  if (static_cast<std::int64_t>(w.size()) != m_n || static_cast<std::int64_t>(g.size()) != m_n)
    throw std::invalid_argument("optimizer: step on " + std::to_string(w.size()) + " weights and " +
                                std::to_string(g.size()) + " gradient entries, expected " + std::to_string(m_n));
  require(std::isfinite(lr) && lr >= 0, "learning rate must be finite and >= 0", lr);
  const auto& o = m_options;
  ++m_steps;
  if (o.kind == OptimizerKind::Sgd) {
    const bool first = m_buf.empty();
    if (o.momentum > 0 && first) m_buf.assign(m_n, 0.0);
    for (std::int64_t i = 0; i < m_n; ++i) {
      double d = g[i] + o.weight_decay * w[i];
      if (o.momentum > 0) {
        m_buf[i] = first ? d : o.momentum * m_buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * m_buf[i] : m_buf[i];
      }
      w[i] -= lr * d;
    }
    return;
  }
  if (m_m.empty()) {
    m_m.assign(m_n, 0.0);
    m_v.assign(m_n, 0.0);
  }
  const double t = static_cast<double>(m_steps);
  const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
  const double step_size = lr / bc1, sqrt_bc2 = std::sqrt(bc2);
  const bool decoupled = o.kind == OptimizerKind::AdamW;
  for (std::int64_t i = 0; i < m_n; ++i) {
    double gi = g[i];
    if (decoupled)
      w[i] *= 1 - lr * o.weight_decay;
    else
      gi += o.weight_decay * w[i];
    m_m[i] = o.beta1 * m_m[i] + (1 - o.beta1) * gi;
    m_v[i] = o.beta2 * m_v[i] + (1 - o.beta2) * gi * gi;
    w[i] -= step_size * m_m[i] / (std::sqrt(m_v[i]) / sqrt_bc2 + o.eps);
  }
}

std::map<std::string, std::vector<double>> Optimizer::state() const {
  std::map<std::string, std::vector<double>> s;
  if (!m_buf.empty()) s["momentum_buffer"] = m_buf;
  if (!m_m.empty()) {
    s["exp_avg"] = m_m;
    s["exp_avg_sq"] = m_v;
  }
  return s;
}

void Optimizer::set_state(const std::map<std::string, std::vector<double>>& state, std::int64_t steps) {
  if (steps < 0) throw std::invalid_argument("optimizer: negative step count");
  m_buf.clear();
  m_m.clear();
  m_v.clear();
  for (const auto& [name, v] : state) {
    if (static_cast<std::int64_t>(v.size()) != m_n)
      throw std::invalid_argument("optimizer state '" + name + "' has " + std::to_string(v.size()) +
                                  " entries, expected " + std::to_string(m_n));
    for (std::size_t i = 0; i < v.size(); ++i) {
      // A resumed state drives every later step: NaN or inf would poison the weights, and a
      // negative second moment would make Adam's sqrt(v) NaN.
      if (!std::isfinite(v[i]))
        throw std::invalid_argument("optimizer state '" + name + "' holds a non-finite value at index " +
                                    std::to_string(i));
      if (name == "exp_avg_sq" && v[i] < 0)
        throw std::invalid_argument("optimizer state 'exp_avg_sq' holds a negative value at index " + std::to_string(i));
    }
    if (name == "momentum_buffer" && m_options.kind == OptimizerKind::Sgd)
      m_buf = v;
    else if (name == "exp_avg" && m_options.kind != OptimizerKind::Sgd)
      m_m = v;
    else if (name == "exp_avg_sq" && m_options.kind != OptimizerKind::Sgd)
      m_v = v;
    else
      throw std::invalid_argument(std::string("optimizer state '") + name + "' does not belong to " +
                                  optimizer_name(m_options.kind));
  }
  if (m_m.empty() != m_v.empty()) throw std::invalid_argument("optimizer state: exp_avg and exp_avg_sq go together");
  m_steps = steps;
}

}  // namespace curv
