#include "curvature/hessian_free_step_rule.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

#include "curvature/block_cg_solver.h"
#include "curvature/cg_solver.h"
#include "curvature/curvature_operator.h"

namespace curv {

void validate_hessian_free(const HessianFreeOptions& o) {
  const char* opt = o.blocks.empty() ? "hf" : "bhf";
  auto bad = [&](const std::string& what, double v) {
    throw std::invalid_argument(std::string(opt) + ": " + what + " (got " + std::to_string(v) + ")");
  };
  if (o.curvature != Curvature::GGN && o.curvature != Curvature::Hessian)
    throw std::invalid_argument(std::string(opt) + ": the curvature must be ggn or hessian");
  if (!std::isfinite(o.damping) || o.damping < 0 || (o.curvature == Curvature::Hessian && o.damping == 0))
    bad(o.curvature == Curvature::Hessian ? "--damping must be > 0 with the (indefinite) Hessian"
                                          : "--damping must be >= 0",
        o.damping);
  if (o.max_iters < 1) bad("--cg-max-iters must be >= 1", double(o.max_iters));
  if (!(o.rtol > 0 && o.rtol < 1)) bad("--cg-rtol must be in (0, 1)", o.rtol);
  if (!(o.cg_decay >= 0 && o.cg_decay <= 1)) bad("--cg-decay must be in [0, 1]", o.cg_decay);
  if (o.curvature_batch < 0) bad("--curvature-batch must be >= 0 (0: the whole mini-batch)", double(o.curvature_batch));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) bad("--weight-decay must be >= 0", o.weight_decay);
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> r;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) r.push_back(item);
  return r;
}

}  // namespace

HessianFreeStepRule::HessianFreeStepRule(const Model& model, HessianFreeOptions options)
    : m_options(std::move(options)), m_n(model.num_params()), m_damping(m_options.damping) {
  validate_hessian_free(m_options);
  if (m_options.blocks.empty()) return;
  const std::vector<ParamBlock> layers = model.blocks("layers");
  std::vector<std::vector<int>> groups;
  if (m_options.blocks == "layers") {
    for (const auto& b : layers) {
      groups.push_back(b.params);
      m_block_names.push_back(b.name);
    }
  } else {
    std::map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < layers.size(); ++i) index[layers[i].name] = i;
    std::vector<bool> used(layers.size(), false);
    for (const auto& grp : split(m_options.blocks, ',')) {
      std::vector<int> params;
      for (const auto& name : split(grp, '+')) {
        const auto it = index.find(name);
        if (it == index.end())
          throw std::invalid_argument("bhf: --blocks names '" + name + "', which is no layer of the model");
        if (used[it->second]) throw std::invalid_argument("bhf: --blocks names layer '" + name + "' twice");
        used[it->second] = true;
        params.insert(params.end(), layers[it->second].params.begin(), layers[it->second].params.end());
      }
      if (params.empty()) throw std::invalid_argument("bhf: --blocks has an empty group in '" + m_options.blocks + "'");
      groups.push_back(params);
      m_block_names.push_back(grp);
    }
    for (std::size_t i = 0; i < layers.size(); ++i)
      if (!used[i]) {
        groups.push_back(layers[i].params);
        m_block_names.push_back(layers[i].name);
      }
  }
  for (std::size_t b = 0; b < groups.size(); ++b) {
    auto& ps = groups[b];
    std::sort(ps.begin(), ps.end());
    const std::int64_t off = model.params()[ps.front()].offset;
    std::int64_t end = off;
    for (int p : ps) {
      if (model.params()[p].offset != end)
        throw std::invalid_argument("bhf: block '" + m_block_names[b] +
                                    "' is not one contiguous range of the parameter vector");
      end += model.params()[p].size;
    }
    m_blocks.emplace_back(off, end - off);
    m_block_params.push_back(ps);
  }
}

void HessianFreeStepRule::step(const StepContext& at, std::vector<double>& w, const std::vector<double>& g,
                               OptimizerRecord& log) {
  using Vec = Eigen::VectorXd;
  using Mat = Eigen::MatrixXd;
  const double wd = m_options.weight_decay;
  const std::int64_t n = m_n;
  Vec gt(n);
  for (std::int64_t i = 0; i < n; ++i) gt[i] = g[i] + wd * w[i];
  const Vec b = -gt;

  // Curvature on the first curvature_batch samples of the mini-batch, at w.
  const std::int64_t N = at.batch->size();
  const std::int64_t nc = m_options.curvature_batch > 0 ? std::min(m_options.curvature_batch, N) : N;
  const Dataset cbatch = nc < N ? at.batch->subset(0, nc) : Dataset();
  const Dataset& cdata = nc < N ? cbatch : *at.batch;
  // On the whole mini-batch the products reuse the gradient's kept primal passes when offered.
  std::unique_ptr<Objective> own;
  at.model->set_flat_params(w);
  if (nc < N || !at.batch_objective) own = Objective::create(*at.model, cdata, at.objective);
  CurvatureOperator C(own ? *own : *at.batch_objective, m_options.curvature);

  CgOptions co;
  co.damping = m_damping + wd;
  co.rtol = m_options.rtol;
  co.max_iters = m_options.max_iters;
  std::vector<std::pair<std::int64_t, Vec>> kept;  // (iteration, iterate) for backtracking
  std::int64_t next_keep = 1;
  double gamma_pow = 1;
  if (m_options.backtrack)
    co.on_iteration = [&](LinearOperator::Index it, const Mat& X) {
      // Keeps iteration it when it is one of ceil(1.3^j), j = 0, 1, ... (Martens 2010).
      if (it != next_keep) return;
      kept.emplace_back(it, X.rowwise().sum());
      while (std::ceil(gamma_pow) <= double(it)) gamma_pow *= 1.3;
      next_keep = std::int64_t(std::ceil(gamma_pow));
    };
  Vec x0;
  if (!m_prev.empty() && m_options.cg_decay > 0) {
    x0.resize(n);
    for (std::int64_t i = 0; i < n; ++i) x0[i] = m_options.cg_decay * m_prev[i];
  }
  Vec x;
  std::int64_t iterations = 0, products = 0;
  double residual = 0;
  if (m_blocks.empty()) {
    CgSolver cg(C, co);
    iterations = cg.compute(b, x0.size() ? Mat(x0) : Mat());
    x = cg.solution().col(0);
    residual = cg.residuals()[0];
    products = cg.num_operations();
  } else {
    const RestrictedBlockOperators own_ops(own ? *own : *at.batch_objective, m_options.curvature,
                                           m_options.restricted_blocks ? m_block_params : std::vector<std::vector<int>>{});
    BlockCgSolver cg(C, m_blocks, own_ops.ops(), co);
    iterations = cg.compute(b, x0);
    x = cg.solution();
    residual = cg.residual();
    products = cg.num_operations();
  }
  m_prev.assign(x.data(), x.data() + n);
  if (kept.empty() || kept.back().first != iterations) kept.emplace_back(iterations, x);

  // f(w + lr d) on the mini-batch (loss + wd/2 ||.||^2).
  ObjectiveOptions eo = at.objective;
  eo.cache_bytes = 0;
  double wsq = 0;
  for (double v : w) wsq += v * v;
  const double f0 = at.loss + 0.5 * wd * wsq;
  std::vector<double> trial(n);
  auto f_at = [&](const Vec& d) {
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      trial[i] = w[i] + at.lr * d[i];
      s += trial[i] * trial[i];
    }
    at.model->set_flat_params(trial);
    return Objective::create(*at.model, *at.batch, eo)->evaluate().loss + 0.5 * wd * s;
  };
  std::size_t chosen = kept.size() - 1;
  double f_new = f_at(kept[chosen].second);
  if (m_options.backtrack)
    while (chosen > 0) {
      const double f_prev = f_at(kept[chosen - 1].second);
      if (!(f_prev < f_new)) break;
      --chosen;
      f_new = f_prev;
    }
  const Vec d = kept[chosen].second;

  // rho against the undamped quadratic model on the curvature batch (one more product).
  at.model->set_flat_params(w);
  const Vec s = at.lr * d;
  Mat Cs;
  C.apply(Mat(s), Cs);
  ++products;
  const double q = gt.dot(s) + 0.5 * (s.dot(Cs.col(0)) + wd * s.squaredNorm());
  const double rho = q != 0 ? (f_new - f0) / q : 0.0;

  log.values["cg_iterations"] = double(iterations);
  log.values["cg_residual"] = residual;
  log.values["cg_products"] = double(products);
  log.values["cg_chosen"] = double(kept[chosen].first);
  log.values["damping"] = m_damping;
  log.values["rho"] = rho;
  log.values["loss_after"] = f_new;

  if (m_options.adapt_damping && std::isfinite(rho)) {
    if (rho > 0.75) m_damping *= 2.0 / 3.0;
    else if (rho < 0.25) m_damping *= 1.5;
  }
  double rate = 1;
  if (m_options.line_search) {
    // Armijo on the rate: f(w + a s) <= f0 + 0.01 a gt^T s, a = 0.8^k, k <= 30; else no step.
    const double slope = gt.dot(s);
    double f_a = f_new;
    int k = 0;
    while (!(f_a <= f0 + 0.01 * rate * slope) && k < 30) {
      rate *= 0.8;
      ++k;
      f_a = f_at(Vec(rate * d));
    }
    if (!(f_a <= f0 + 0.01 * rate * slope)) {
      rate = 0;
      f_a = f0;
    }
    f_new = f_a;
    log.values["line_search_rate"] = rate;
    log.values["loss_after"] = f_new;
  }
  for (std::int64_t i = 0; i < n; ++i) w[i] += rate * s[i];
  m_last_d.assign(d.data(), d.data() + n);
  ++m_steps;
}

std::map<std::string, std::vector<double>> HessianFreeStepRule::state() const {
  std::map<std::string, std::vector<double>> s;
  s["hf_damping"] = {m_damping};
  s["hf_steps"] = {double(m_steps)};
  if (!m_prev.empty()) s["hf_cg_start"] = m_prev;
  return s;
}

void HessianFreeStepRule::set_state(const std::map<std::string, std::vector<double>>& s) {
  m_prev.clear();
  bool damping = false;
  for (const auto& [key, v] : s) {
    if (key == "hf_damping" && v.size() == 1) {
      m_damping = v[0];
      damping = true;
    } else if (key == "hf_steps" && v.size() == 1) {
      m_steps = std::int64_t(v[0]);
    } else if (key == "hf_cg_start" && std::int64_t(v.size()) == m_n) {
      m_prev = v;
    } else {
      throw std::invalid_argument(name() + " state: unexpected '" + key + "' of " + std::to_string(v.size()) + " values");
    }
  }
  if (!damping) throw std::invalid_argument(name() + " state: missing hf_damping");
}

}  // namespace curv
