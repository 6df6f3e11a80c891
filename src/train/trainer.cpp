#include "src/train/trainer.h"

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>

#include "src/core/ops.h"
#include "src/core/timer.h"

namespace curv {

const char* sharpness_name(SharpnessKind k) {
  switch (k) {
    case SharpnessKind::None: return "none";
    case SharpnessKind::Sam: return "sam";
    case SharpnessKind::Asam: return "asam";
    case SharpnessKind::Gnr: return "gnr";
  }
  return "?";
}

namespace {

// Every BatchNorm node switched to `training`.
Model with_batch_norm_mode(const Model& m, bool training) {
  Model r = m;
  for (std::size_t i = 0; i < r.nodes().size(); ++i)
    if (OpPtr op = batch_norm_mode(*r.nodes()[i].op, training)) r.replace_op(static_cast<int>(i), op);
  return r;
}

// Epoch e's visiting order: Fisher-Yates driven by a stream seeded from (seed, e) only.
std::vector<std::int64_t> permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch, bool shuffle) {
  std::vector<std::int64_t> p(n);
  for (std::int64_t i = 0; i < n; ++i) p[i] = i;
  if (!shuffle) return p;
  std::seed_seq seq{std::uint32_t(seed), std::uint32_t(seed >> 32), std::uint32_t(epoch), std::uint32_t(epoch >> 32),
                    0x7261696eu};
  std::mt19937_64 rng(seq);
  for (std::int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng() % std::uint64_t(i + 1)]);
  return p;
}

Dataset gather(const Dataset& d, const std::int64_t* idx, std::int64_t count) { return d.gather(idx, count); }

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

bool mixes_batch(const Model& m) {
  for (const auto& n : m.nodes())
    if (n.op->mixes_batch()) return true;
  return false;
}

}  // namespace

Trainer::Trainer(const Model& model, const Dataset& train, const Dataset* test, TrainOptions o)
    : m_train_model(with_batch_norm_mode(model, true)),
      m_eval_model(with_batch_norm_mode(model, false)),
      m_train(train),
      m_test(test),
      m_options(o) {
  if (o.epochs < 1) throw std::invalid_argument("epochs must be >= 1 (got " + std::to_string(o.epochs) + ")");
  if (o.batch_size < 0) throw std::invalid_argument("batch size must be >= 0 (0: full batch)");
  const auto& s = o.sharpness;
  if (s.kind != SharpnessKind::None && !(std::isfinite(s.rho) && s.rho > 0))
    throw std::invalid_argument("SAM radius rho must be > 0 (got " + std::to_string(s.rho) + ")");
  if (!(std::isfinite(s.eta) && s.eta >= 0)) throw std::invalid_argument("ASAM eta must be >= 0");
  if (!(s.alpha >= 0 && s.alpha <= 1)) throw std::invalid_argument("GNR alpha must be in [0, 1]");
  if (!(std::isfinite(s.gam_rho) && s.gam_rho >= 0))
    throw std::invalid_argument("GAM radius rho must be >= 0 (got " + std::to_string(s.gam_rho) + ")");
  if (s.gam_rho > 0 && !(std::isfinite(s.gam_alpha) && s.gam_alpha > 0))
    throw std::invalid_argument("GAM alpha must be > 0 (got " + std::to_string(s.gam_alpha) + ")");
  if (!(o.bn_momentum >= 0 && o.bn_momentum <= 1))
    throw std::invalid_argument("BatchNorm momentum must be in [0, 1] (got " + std::to_string(o.bn_momentum) + ")");
  // Validates shapes and labels of both sets against the model (no pass is run).
  Objective::create(m_train_model, train, m_options.objective);
  if (test) Objective::create(m_eval_model, *test, m_options.objective);

  const std::int64_t n = train.size();
  m_batch_size = o.batch_size == 0 ? n : std::min(o.batch_size, n);
  m_batches = (n + m_batch_size - 1) / m_batch_size;
  if (mixes_batch(m_train_model)) {
    // BatchNorm needs two values per channel in every micro-batch (ghost batch).
    const std::int64_t mb = resolve_micro_batch(m_train_model, m_batch_size, m_options.objective);
    auto lonely = [mb](std::int64_t size) { return size % mb == 1 || size == 1; };
    if (lonely(m_batch_size))
      throw std::invalid_argument("batch size " + std::to_string(m_batch_size) + " with micro-batch " +
                                  std::to_string(mb) + " leaves a BatchNorm micro-batch of one sample");
    if (n % m_batch_size && lonely(n % m_batch_size)) --m_batches;  // drop the last, lonely batch
  }
  m_optimizer = std::make_unique<Optimizer>(model.num_params(), o.optimizer);
  if (o.diagonal.kind != DiagonalKind::None) {
    m_diagonal = std::make_unique<DiagonalOptimizer>(model, o.diagonal);
    if (o.diagonal.estimator == DiagonalEstimator::GaussNewtonBartlett && !train.classification())
      throw std::invalid_argument("the Gauss-Newton-Bartlett estimator samples class labels: " + train.source +
                                  " has regression targets (use the hutchinson estimator)");
  }
  m_schedule = std::make_unique<LrSchedule>(o.schedule, m_batches, o.epochs * m_batches);
  m_w = model.flat_params();
  m_state.optimizer = optimizer_state_name();
}

std::string Trainer::optimizer_state_name() const {
  if (m_rule) return m_rule->name();
  return m_diagonal ? diagonal_kind_name(m_options.diagonal.kind) : optimizer_name(m_options.optimizer.kind);
}

Trainer::~Trainer() = default;

void Trainer::restore(const TrainState& s) {
  if (s.epoch >= m_options.epochs)
    throw std::invalid_argument("the checkpoint has already trained " + std::to_string(s.epoch) +
                                " epochs, all that this run asks for: raise the epoch count to continue");
  if (s.step != s.epoch * m_batches)
    throw std::invalid_argument("the checkpoint stopped at step " + std::to_string(s.step) + " after " +
                                std::to_string(s.epoch) + " epochs, which does not match " +
                                std::to_string(m_batches) + " batches per epoch (another batch size or data set?)");
  if (s.optimizer != optimizer_state_name())
    throw std::invalid_argument("the checkpoint's optimizer state is " + s.optimizer + ", this run uses " +
                                optimizer_state_name());
  if (m_rule)
    m_rule->set_state(s.optimizer_state);
  else if (m_diagonal)
    m_diagonal->set_state(s.optimizer_state, s.optimizer_steps);
  else
    m_optimizer->set_state(s.optimizer_state, s.optimizer_steps);
  m_state.epoch = s.epoch;
  m_state.step = s.step;
  m_state.history = s.history;
}

double Trainer::current_lr() const { return m_schedule->at(m_state.step); }

const Model& Trainer::eval_model() {
  if (m_eval_stale) {
    m_eval_model.set_flat_params(m_w);
    for (int i = 0; i < m_eval_model.num_constants(); ++i) m_eval_model.constant(i) = m_train_model.constant(i);
    m_eval_stale = false;
  }
  return m_eval_model;
}

TrainState Trainer::state() const {
  TrainState s = m_state;
  s.optimizer = optimizer_state_name();
  s.optimizer_steps = m_rule ? m_state.step : m_diagonal ? m_diagonal->steps() : m_optimizer->steps();
  s.optimizer_state = m_rule ? m_rule->state() : m_diagonal ? m_diagonal->state() : m_optimizer->state();
  s.config = m_options.config;
  return s;
}

EvalResult Trainer::evaluate(const Dataset& data) {
  ObjectiveOptions oo = m_options.objective;
  oo.cache_bytes = 0;
  if (!m_options.weight_transform) return Objective::create(eval_model(), data, oo)->evaluate();
  Model q = eval_model();
  std::vector<double> w = m_w;
  m_options.weight_transform(w);
  q.set_flat_params(w);
  return Objective::create(q, data, oo)->evaluate();
}

double Trainer::batch_gradient(const Dataset& batch, const std::vector<double>& w, std::vector<double>& g,
                               std::vector<BatchNormStats>* bn, EvalResult* eval, std::unique_ptr<Objective>* keep,
                               bool keep_grads) {
  if (m_options.weight_transform) {
    std::vector<double> q = w;
    m_options.weight_transform(q);
    m_train_model.set_flat_params(q);
  } else {
    m_train_model.set_flat_params(w);
  }
  ObjectiveOptions oo = m_options.objective;
  oo.cache_bytes = std::numeric_limits<std::size_t>::max() / 4;  // evaluate() reuses the gradient's pass
  oo.keep_activation_grads = keep_grads;  // a Hessian product follows at w: it skips its backward sweep
  auto obj = Objective::create(m_train_model, batch, oo);
  Eigen::VectorXd gv;
  const double loss = obj->gradient(gv);
  g.assign(gv.data(), gv.data() + gv.size());
  if (eval) *eval = obj->evaluate();
  if (bn) *bn = obj->batch_norm_stats();
  if (keep) *keep = std::move(obj);
  return loss;
}

EvalResult Trainer::step_gradient(const Dataset& batch, std::vector<double>& g) {
  std::vector<BatchNormStats> bn;
  EvalResult ev;
  // The batch's objective at w stays for curvature products (GAM, the Hessian diagonal) and for
  // step rules (K-FAC's factors and HF's products reuse its primal passes). A Hessian product
  // follows the gradient at w for GAM and for a Hutchinson refresh of the diagonal.
  const bool gam = m_options.sharpness.gam_rho > 0;
  const bool keep = m_diagonal || gam || m_rule;
  const bool hvp_next = gam || (m_diagonal && m_diagonal->refresh_due() &&
                                m_options.diagonal.estimator == DiagonalEstimator::Hutchinson);
  batch_gradient(batch, m_w, g, &bn, &ev, keep ? &m_batch_objective : nullptr, hvp_next);
  const std::vector<double> g0 = m_options.sharpness.gam_rho > 0 ? g : std::vector<double>();
  const auto& s = m_options.sharpness;
  if (s.kind != SharpnessKind::None) {
    const std::size_t P = m_w.size();
    std::vector<double> e(P), w_adv(P), g_adv;
    if (s.kind == SharpnessKind::Asam) {
      // e = rho T^2 g / ||T g||, T = |w| + eta
      double tg2 = 0;
      for (std::size_t i = 0; i < P; ++i) {
        const double t = std::abs(m_w[i]) + s.eta;
        tg2 += t * t * g[i] * g[i];
        e[i] = t * t * g[i];
      }
      const double scale = s.rho / (std::sqrt(tg2) + 1e-12);
      for (auto& x : e) x *= scale;
    } else {
      const double scale = s.rho / (norm(g) + 1e-12);
      for (std::size_t i = 0; i < P; ++i) e[i] = scale * g[i];
    }
    for (std::size_t i = 0; i < P; ++i) w_adv[i] = m_w[i] + e[i];
    batch_gradient(batch, w_adv, g_adv, nullptr, nullptr);
    if (s.kind == SharpnessKind::Gnr)
      for (std::size_t i = 0; i < P; ++i) g[i] = (1 - s.alpha) * g[i] + s.alpha * g_adv[i];
    else
      g = std::move(g_adv);
  }
  if (s.gam_rho > 0) add_gam_term(batch, *m_batch_objective, g0, g);
  update_running_stats(m_train_model, bn, m_options.bn_momentum);
  return ev;
}

namespace {
// H v on the objective's batch at its parameters.
std::vector<double> hessian_times(Objective& obj, const std::vector<double>& v) {
  const Objective::Matrix V = Eigen::Map<const Eigen::VectorXd>(v.data(), std::int64_t(v.size()));
  Objective::Matrix Y;
  obj.product(Curvature::Hessian, V, Y);
  return std::vector<double>(Y.data(), Y.data() + Y.rows());
}
}  // namespace

void Trainer::add_gam_term(const Dataset& batch, Objective& objective, const std::vector<double>& g0,
                           std::vector<double>& g) {
  const auto& s = m_options.sharpness;
  const std::size_t P = m_w.size();
  // f = H(w) g0 / ||g0||, w_a = w + rho f / ||f||
  std::vector<double> f = hessian_times(objective, g0);
  const double gn = norm(g0) + 1e-12;
  for (double& x : f) x /= gn;
  const double scale = s.gam_rho / (norm(f) + 1e-12);
  std::vector<double> w_a(P), g_a;
  for (std::size_t i = 0; i < P; ++i) w_a[i] = m_w[i] + scale * f[i];
  std::unique_ptr<Objective> at_a;
  batch_gradient(batch, w_a, g_a, nullptr, nullptr, &at_a, true);
  // f_a = H(w_a) g_a / ||g_a||; step with g + alpha rho f_a
  const std::vector<double> f_a = hessian_times(*at_a, g_a);
  const double c = s.gam_alpha * s.gam_rho / (norm(g_a) + 1e-12);
  for (std::size_t i = 0; i < P; ++i) g[i] += c * f_a[i];
}

void Trainer::optimizer_step(const Dataset& batch, const std::vector<double>& g, double lr) {
  if (!m_diagonal) {
    m_optimizer->step(m_w, g, lr);
    return;
  }
  const auto& d = m_options.diagonal;
  OptimizerRecord rec;  // per step under /history/optimizer, as the second-order rules log
  rec.step = m_state.step + 1;
  rec.values["hessian_refresh"] = m_diagonal->refresh_due() ? 1.0 : 0.0;
  if (m_diagonal->refresh_due()) {
    std::vector<double> at = m_w;  // the gradient passes' weights: q(w) under a weight_transform
    if (m_options.weight_transform) m_options.weight_transform(at);
    std::vector<double> est =
        d.estimator == DiagonalEstimator::Hutchinson
            ? hutchinson_diagonal(*m_batch_objective, d.seed, m_diagonal->next_draw())
            : gauss_newton_bartlett_diagonal(m_train_model, at, batch, m_options.objective, d.seed,
                                             m_diagonal->next_draw());
    double mean = 0;
    for (double x : est) mean += x;
    m_epoch_diag_mean = est.empty() ? 0.0 : mean / double(est.size());
    rec.values["hessian_diag_mean"] = m_epoch_diag_mean;
    m_diagonal->refresh(std::move(est));
    ++m_epoch_refreshes;
  }
  m_diagonal->step(m_w, g, lr);
  m_epoch_clip_sum += m_diagonal->clip_fraction();
  ++m_epoch_steps;
  if (d.kind == DiagonalKind::Sophia) rec.values["clip_fraction"] = m_diagonal->clip_fraction();
  m_state.history.optimizer.push_back(std::move(rec));
}

void Trainer::set_curvature_monitor(CurvatureMonitor* monitor, std::int64_t every, bool per_epoch) {
  if (monitor && every < 1)
    throw std::invalid_argument("curvature measurements every " + std::to_string(every) +
                                (per_epoch ? " epochs" : " steps") + ": the interval must be >= 1");
  m_monitor = monitor;
  m_curvature_every = monitor ? every : 0;
  m_curvature_per_epoch = per_epoch;
}

void Trainer::set_step_rule(StepRule* rule) {
  if (rule && m_options.sharpness.kind != SharpnessKind::None)
    throw std::invalid_argument(rule->name() + " cannot be combined with sharpness-aware training (" +
                                sharpness_name(m_options.sharpness.kind) + ")");
  if (rule && m_options.sharpness.gam_rho > 0)
    throw std::invalid_argument(rule->name() + " cannot be combined with GAM");
  if (rule && m_options.weight_transform)
    throw std::invalid_argument(rule->name() + " cannot be combined with quantization-aware training");
  if (rule && m_diagonal)
    throw std::invalid_argument(rule->name() + " cannot be combined with " + optimizer_state_name());
  m_rule = rule;
  m_state.optimizer = optimizer_state_name();
}

void Trainer::log_curvature() {
  if (!m_monitor) return;
  CurvatureStep at;
  at.step = m_state.step;
  at.epoch = double(m_state.step) / double(m_batches);
  at.lr = current_lr();
  CurvatureRecord r = m_monitor->measure(eval_model(), at);
  r.step = at.step;
  r.epoch = at.epoch;
  r.lr = at.lr;
  m_state.history.curvature.push_back(std::move(r));
  if (on_curvature) on_curvature(m_state.history.curvature.back());
}

bool Trainer::run() {
  m_stop.store(false);
  if (m_state.step == 0 && m_curvature_every > 0 && m_state.history.curvature.empty()) log_curvature();
  for (std::int64_t e = m_state.epoch + 1; e <= m_options.epochs; ++e) {
    Timer epoch_timer;
    const auto perm = permutation(m_train.size(), m_options.seed, e, m_options.shuffle);
    double loss_sum = 0, acc_sum = 0, train_seconds = 0;
    std::int64_t seen = 0;
    std::vector<double> g;
    double lr = 0;
    for (std::int64_t b = 0; b < m_batches; ++b) {
      if (m_stop.load()) return false;
      Timer step_timer;
      const std::int64_t first = b * m_batch_size;
      const std::int64_t count = std::min(m_batch_size, m_train.size() - first);
      const Dataset batch = gather(m_train, perm.data() + first, count);
      lr = m_schedule->at(m_state.step);
      const EvalResult r = step_gradient(batch, g);
      if (m_rule) {
        StepContext at;
        at.model = &m_train_model;  // at w: step_gradient's last pass (no SAM with a rule)
        at.batch = &batch;
        at.objective = m_options.objective;
        at.batch_objective = m_batch_objective.get();
        at.loss = r.loss;
        at.lr = lr;
        at.step = m_state.step;
        OptimizerRecord rec;
        m_rule->step(at, m_w, g, rec);
        rec.step = m_state.step + 1;
        if (!rec.values.empty()) m_state.history.optimizer.push_back(std::move(rec));
      } else {
        optimizer_step(batch, g, lr);
      }
      m_batch_objective.reset();
      ++m_state.step;
      m_eval_stale = true;
      train_seconds += step_timer.seconds();
      loss_sum += r.loss * double(count);
      acc_sum += (std::isnan(r.accuracy) ? 0.0 : r.accuracy) * double(count);
      seen += count;
      if (on_step) {
        StepInfo info;
        info.epoch = e;
        info.batch = b + 1;
        info.batches = m_batches;
        info.step = m_state.step;
        info.loss = loss_sum / double(seen);
        info.accuracy = m_train.classification() ? acc_sum / double(seen) : std::numeric_limits<double>::quiet_NaN();
        info.samples_per_second = double(seen) / std::max(train_seconds, 1e-9);
        info.lr = lr;
        on_step(info);
      }
      if (!m_curvature_per_epoch && m_curvature_every > 0 && m_state.step % m_curvature_every == 0) log_curvature();
    }
    EpochRecord rec;
    rec.epoch = e;
    rec.step = m_state.step;
    rec.lr = lr;
    rec.train_loss = loss_sum / double(std::max<std::int64_t>(seen, 1));
    rec.train_accuracy = m_train.classification() ? acc_sum / double(std::max<std::int64_t>(seen, 1))
                                                  : std::numeric_limits<double>::quiet_NaN();
    rec.samples_per_second = double(seen) / std::max(train_seconds, 1e-9);
    if (m_diagonal) {
      rec.optimizer["hessian_refreshes"] = double(m_epoch_refreshes);
      if (m_epoch_refreshes > 0) rec.optimizer["hessian_diag_mean"] = m_epoch_diag_mean;
      if (m_options.diagonal.kind == DiagonalKind::Sophia)
        rec.optimizer["clip_fraction"] = m_epoch_clip_sum / double(std::max<std::int64_t>(m_epoch_steps, 1));
      m_epoch_refreshes = m_epoch_steps = 0;
      m_epoch_clip_sum = 0;
    }
    rec.test_loss = rec.test_accuracy = std::numeric_limits<double>::quiet_NaN();
    if (m_test) {
      const EvalResult t = evaluate(*m_test);
      rec.test_loss = t.loss;
      rec.test_accuracy = t.accuracy;
    }
    m_state.epoch = e;
    if (m_curvature_per_epoch && m_curvature_every > 0 && e % m_curvature_every == 0) log_curvature();
    rec.seconds = epoch_timer.seconds();
    m_state.history.epochs.push_back(rec);
    if (on_epoch_end) on_epoch_end(*this);
  }
  return true;
}

}  // namespace curv
