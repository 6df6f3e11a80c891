#include "curvature/kfac_step_rule.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/kfac_operator.h"
#include "src/core/ops.h"

namespace curv {

void validate_kfac_step(const KfacStepOptions& o) {
  auto bad = [](const std::string& what, double v) {
    throw std::invalid_argument("kfac: " + what + " (got " + std::to_string(v) + ")");
  };
  if (!(o.stat_decay >= 0 && o.stat_decay < 1)) bad("--stat-decay must be in [0, 1)", o.stat_decay);
  if (o.inv_every < 1) bad("--inv-every must be >= 1", double(o.inv_every));
  if (o.factor_every < 1) bad("--factor-every must be >= 1", double(o.factor_every));
  if (o.inv_every % o.factor_every)
    bad("--inv-every must be a multiple of --factor-every (" + std::to_string(o.factor_every) + ")", double(o.inv_every));
  if (!(o.damping > 0) || !std::isfinite(o.damping)) bad("--damping must be > 0 and finite", o.damping);
  if (!(o.kl_clip >= 0) || !std::isfinite(o.kl_clip)) bad("--kl-clip must be >= 0 (0: off)", o.kl_clip);
  if (!(o.momentum >= 0 && o.momentum < 1)) bad("--momentum must be in [0, 1)", o.momentum);
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) bad("--weight-decay must be >= 0", o.weight_decay);
}

namespace {
OptimizerOptions sgd_options(const KfacStepOptions& o) {
  OptimizerOptions s;
  s.kind = OptimizerKind::Sgd;
  s.momentum = o.momentum;
  s.weight_decay = o.weight_decay;
  return s;
}
}  // namespace

KfacStepRule::KfacStepRule(const Model& model, KfacStepOptions options, std::string* notes)
    : m_options(options), m_n(model.num_params()), m_damping(options.damping), m_sgd(model.num_params(), sgd_options(options)) {
  validate_kfac_step(options);
  // The Trainer runs BatchNorm with batch statistics, which makes the samples interact: no
  // per-sample factors exist (Kfac refuses such a model at the first step; say it now).
  for (const auto& n : model.nodes())
    if (batch_norm_mode(*n.op, true))
      throw std::invalid_argument("kfac: BatchNorm node '" + n.name +
                                  "' trains with batch statistics, so samples interact and K-FAC has no per-sample "
                                  "factors (use a model without BatchNorm)");
  LinearLayers found = find_linear_layers(model);
  if (found.layers.empty())
    throw std::invalid_argument("kfac: the model has no layer K-FAC supports (Linear/Gemm, MatMul with a weight, Conv)");
  m_layers = found.layers;
  std::vector<bool> covered(model.params().size(), false);
  for (const auto& l : m_layers)
    for (int p : l.params) covered[p] = true;
  for (std::size_t p = 0; p < covered.size(); ++p)
    if (covered[p]) {
      m_kfac_params.push_back(int(p));
      m_rows.emplace_back(model.params()[p].offset, model.params()[p].size);
    }
  if (notes) {
    notes->clear();
    for (const auto& u : found.unsupported)
      *notes += (notes->empty() ? "kfac: SGD (no K-FAC preconditioning) for " : ", ") + model.params()[u.param].name +
                " (" + u.reason + ")";
  }
}

KfacStepRule::~KfacStepRule() = default;

void KfacStepRule::step(const StepContext& at, std::vector<double>& w, const std::vector<double>& g,
                        OptimizerRecord& log) {
  const std::int64_t t = m_steps;
  // Mini-batch factors (no eigendecomposition) every factor_every steps, and always when the
  // Kfac holder does not exist yet (the first step of a run or of a resumed run).
  const bool factors = t % m_options.factor_every == 0;
  if (factors || !m_kfac) {
    // The factors' passes run on the gradient's kept primal passes when the trainer offers them.
    std::unique_ptr<Objective> own;
    if (!at.batch_objective) own = Objective::create(*at.model, *at.batch, at.objective);
    Objective* obj = at.batch_objective ? at.batch_objective : own.get();
    KfacOptions ko;
    ko.type = m_options.type;
    ko.seed = m_options.seed * 0x9e3779b97f4a7c15ull + std::uint64_t(t);
    ko.decompose = false;
    Kfac batch(*obj, ko);
    if (batch.num_layers() != m_layers.size()) throw std::logic_error("kfac: the model's layers changed");
    if (factors && m_A.empty()) {
      for (std::size_t l = 0; l < m_layers.size(); ++l) {
        m_A.push_back(batch.layer(l).A);
        m_B.push_back(batch.layer(l).B);
      }
    } else if (factors) {
      const double d = m_options.stat_decay;
      for (std::size_t l = 0; l < m_layers.size(); ++l) {
        m_A[l] = d * m_A[l] + (1 - d) * batch.layer(l).A;
        m_B[l] = d * m_B[l] + (1 - d) * batch.layer(l).B;
      }
    }
    if (!m_kfac) {
      m_kfac = std::make_unique<Kfac>(batch);
      if (!m_A_inv.empty())  // restored: the eigendecompositions of the checkpoint's last refresh
        for (std::size_t l = 0; l < m_layers.size(); ++l) m_kfac->set_factors(l, m_A_inv[l], m_B_inv[l], true);
    }
  }
  const bool refresh = t % m_options.inv_every == 0;
  if (refresh) {
    m_A_inv = m_A;
    m_B_inv = m_B;
    for (std::size_t l = 0; l < m_layers.size(); ++l) m_kfac->set_factors(l, m_A_inv[l], m_B_inv[l], true);
  }

  // v = (K + lambda I)^-1 g on the K-FAC rows, g elsewhere.
  Eigen::Index rows = 0;
  for (const auto& r : m_rows) rows += r.second;
  Eigen::MatrixXd G(rows, 1), V;
  Eigen::Index o = 0;
  for (const auto& [off, size] : m_rows) {
    for (std::int64_t i = 0; i < size; ++i) G(o + i, 0) = g[off + i];
    o += size;
  }
  KfacOperator inv(*m_kfac, *at.model, m_kfac_params, KfacOperator::Mode::Inverse, m_damping);
  inv.apply(G, V);
  double nu = 1;
  if (m_options.kl_clip > 0) {
    const double vg = std::abs(V.col(0).dot(G.col(0))) * at.lr * at.lr;
    if (vg > 0) nu = std::min(1.0, std::sqrt(m_options.kl_clip / vg));
    V *= nu;
  }
  std::vector<double> d = g;
  o = 0;
  for (const auto& [off, size] : m_rows) {
    for (std::int64_t i = 0; i < size; ++i) d[off + i] = V(o + i, 0);
    o += size;
  }
  const std::vector<double> w_old = m_options.adapt_damping ? w : std::vector<double>();
  m_sgd.step(w, d, at.lr);

  log.values["damping"] = m_damping;
  log.values["inverse_refresh"] = refresh ? 1.0 : 0.0;
  log.values["factor_update"] = factors ? 1.0 : 0.0;
  log.values["kl_nu"] = nu;
  if (m_options.adapt_damping) {
    // rho = (L(w_new) - L(w)) / M(s), M(s) = g^T s + 1/2 s^T (K + lambda I) s on the K-FAC rows
    // (the fallback rows count with K = 0).
    Eigen::MatrixXd S(rows, 1), KS;
    double gs = 0, ss_rest = 0;
    for (std::int64_t i = 0; i < m_n; ++i) gs += g[i] * (w[i] - w_old[i]);
    o = 0;
    std::vector<bool> in_kfac(m_n, false);
    for (const auto& [off, size] : m_rows) {
      for (std::int64_t i = 0; i < size; ++i) {
        S(o + i, 0) = w[off + i] - w_old[off + i];
        in_kfac[off + i] = true;
      }
      o += size;
    }
    for (std::int64_t i = 0; i < m_n; ++i)
      if (!in_kfac[i]) ss_rest += (w[i] - w_old[i]) * (w[i] - w_old[i]);
    KfacOperator K(*m_kfac, *at.model, m_kfac_params, KfacOperator::Mode::Multiply);
    K.apply(S, KS);
    const double quad = S.col(0).dot(KS.col(0)) + m_damping * (S.squaredNorm() + ss_rest);
    const double model_change = gs + 0.5 * quad;
    at.model->set_flat_params(w);
    ObjectiveOptions oo = at.objective;
    oo.cache_bytes = 0;
    const double new_loss = Objective::create(*at.model, *at.batch, oo)->evaluate().loss;
    const double rho = model_change != 0 ? (new_loss - at.loss) / model_change : 0.0;
    const double omega = 19.0 / 20.0;
    if (rho > 0.75) m_damping *= omega;
    else if (rho < 0.25) m_damping /= omega;
    log.values["rho"] = rho;
  }
  ++m_steps;
}

namespace {
void append(std::vector<double>& v, const Eigen::MatrixXd& M) { v.insert(v.end(), M.data(), M.data() + M.size()); }
}  // namespace

std::map<std::string, std::vector<double>> KfacStepRule::state() const {
  auto s = m_sgd.state();
  s["kfac_damping"] = {m_damping};
  s["kfac_steps"] = {double(m_steps)};
  if (!m_A.empty()) {
    std::vector<double> run, inv;
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      append(run, m_A[l]);
      append(run, m_B[l]);
      append(inv, m_A_inv[l]);
      append(inv, m_B_inv[l]);
    }
    s["kfac_factors"] = std::move(run);
    s["kfac_refreshed_factors"] = std::move(inv);
  }
  return s;
}

void KfacStepRule::set_state(const std::map<std::string, std::vector<double>>& s) {
  std::map<std::string, std::vector<double>> sgd;
  auto one = [&](const char* name) {
    const auto it = s.find(name);
    if (it == s.end() || it->second.size() != 1) throw std::invalid_argument(std::string("kfac state: missing ") + name);
    return it->second[0];
  };
  m_damping = one("kfac_damping");
  m_steps = std::int64_t(one("kfac_steps"));
  m_A.clear();
  m_B.clear();
  m_A_inv.clear();
  m_B_inv.clear();
  m_kfac.reset();
  std::size_t expected = 0;
  for (const auto& l : m_layers) expected += std::size_t(l.in_ext() * l.in_ext() + l.out * l.out);
  for (const auto& [name, v] : s) {
    if (name == "kfac_damping" || name == "kfac_steps") continue;
    if (name == "kfac_factors" || name == "kfac_refreshed_factors") {
      if (v.size() != expected)
        throw std::invalid_argument("kfac state: '" + name + "' has " + std::to_string(v.size()) + " values, expected " +
                                    std::to_string(expected));
      auto& A = name == "kfac_factors" ? m_A : m_A_inv;
      auto& B = name == "kfac_factors" ? m_B : m_B_inv;
      std::size_t o = 0;
      for (const auto& l : m_layers) {
        A.push_back(Eigen::Map<const Eigen::MatrixXd>(v.data() + o, l.in_ext(), l.in_ext()));
        o += std::size_t(l.in_ext() * l.in_ext());
        B.push_back(Eigen::Map<const Eigen::MatrixXd>(v.data() + o, l.out, l.out));
        o += std::size_t(l.out * l.out);
      }
      continue;
    }
    sgd[name] = v;
  }
  if (m_A.empty() != m_A_inv.empty()) throw std::invalid_argument("kfac state: factors without their refresh or back");
  m_sgd.set_state(sgd, m_steps);
}

}  // namespace curv
