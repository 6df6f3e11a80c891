#pragma once
/// \file trainer.h
/// Mini-batch training of a Model with a first-order optimizer (optimizer.h) or a Hessian-diagonal
/// one (AdaHessian, Sophia: diagonal_optimizer.h, whose diagonal is estimated on the step's batch at
/// w with exact Hessian-vector products or sampled-label gradients), optionally sharpness-aware:
///
///   SAM  (Foret et al. 2021)   e = rho g / ||g||,                 step with grad L(w + e)
///   ASAM (Kwon et al. 2021)    e = rho T^2 g / ||T g||, T = |w| + eta (elementwise),
///                                                                 step with grad L(w + e)
///   GNR  (Zhao et al. 2022, gradient-norm penalty by finite differences)
///                              e = rho g / ||g||,  step with (1 - alpha) g + alpha grad L(w + e)
///   GAM  (Zhang et al. 2023, gradient-norm-aware minimization; SharpnessOptions::gam_rho > 0)
///        GAM penalizes first-order flatness, the largest gradient norm in the rho-ball,
///          R1(w) = rho max_{||d|| <= rho} ||grad L(w + d)||,   objective L(w) + alpha R1(w)
///        (GNR penalizes the gradient norm at w itself; SAM the loss, zeroth order). As SAM does
///        for the loss, the inner maximum is one normalized ascent step on ||grad L||, whose
///        gradient is a Hessian-gradient product, and the outer gradient drops d's dependence on w:
///          f(w)  = grad ||grad L(w)|| = H(w) g / ||g||                 (exact HVP, no finite
///          w_a   = w + rho f(w) / ||f(w)||                               difference as in the
///          f_a   = H(w_a) g_a / ||g_a||,  g_a = grad L(w_a)              authors' code)
///          step with  g_base + alpha rho f_a
///        g_base is g, or SAM/ASAM/GNR's direction when one of them is on as well (the paper's
///        "GAM + SAM"). Cost: two gradients and two Hessian-vector products per step; each product
///        follows a gradient at its point and reuses that gradient's primal pass and activation
///        gradients (ObjectiveOptions::keep_activation_grads), so it adds only its tangent sweeps
///        (forward tangent and reverse tangent): 2 x (forward + backward) + 2 x (tangent forward +
///        tangent backward) in all, against SGD's 1 x (forward + backward).
///        The authors' code (four gradients) replaces both products by finite differences along
///        SAM's radius, H(w) g / |g| ~ (grad L(w + r g/|g|) - g) / r, and by default mixes the
///        gradients with GSAM's surrogate-gap decomposition (grad_beta_*, grad_gamma); neither
///        approximation is made here.
///
/// g = grad L(w) is the mini-batch gradient of the loss only; weight decay is the optimizer's and
/// applies at w, never at w + e. BatchNorm layers in training mode use batch statistics in both
/// passes; their running statistics move only with the first pass (as `disable_running_stats` in
/// the reference SAM code).
///
/// Mini-batches: epoch e visits the samples in a permutation drawn from (seed, e) alone, so a run
/// resumed at an epoch boundary sees exactly the batches of an uninterrupted one. Inside a batch
/// the gradient is reduced over micro-batches in a fixed order, so the weights do not depend on
/// the thread count. BatchNorm batch statistics are those of one micro-batch (ghost batches of
/// ObjectiveOptions::micro_batch samples); set micro_batch = batch_size for PyTorch's semantics.
///
/// Not thread-safe; uses oneTBB inside.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"
#include "src/io/train_state.h"
#include "src/train/curvature_monitor.h"
#include "src/train/diagonal_optimizer.h"
#include "src/train/lr_schedule.h"
#include "src/train/optimizer.h"
#include "src/train/step_rule.h"

namespace curv {

enum class SharpnessKind { None, Sam, Asam, Gnr };
const char* sharpness_name(SharpnessKind k);

struct SharpnessOptions {
  SharpnessKind kind = SharpnessKind::None;
  /// Ascent radius (REQUIRES > 0 unless kind is None).
  double rho = 0.05;
  /// ASAM's offset in T = |w| + eta.
  double eta = 0.01;
  /// GNR's mixing weight in [0, 1] (1 is SAM).
  double alpha = 0.5;
  /// GAM's radius (0: off) and penalty weight alpha (> 0).
  double gam_rho = 0.0;
  double gam_alpha = 1.0;
};

struct TrainOptions {
  /// Total epochs (a resumed run trains from its completed epochs up to this).
  std::int64_t epochs = 1;
  /// Samples per mini-batch; 0 means full batch (gradient descent).
  std::int64_t batch_size = 128;
  /// Seed of the per-epoch sample permutations.
  std::uint64_t seed = 0;
  /// Visit the samples in a fresh random order every epoch (false: in data order).
  bool shuffle = true;
  OptimizerOptions optimizer;
  /// A Hessian-diagonal optimizer (AdaHessian, Sophia) instead of `optimizer` when its kind is not
  /// None; the diagonal comes from the step's mini-batch at w (diagonal_optimizer.h).
  DiagonalOptimizerOptions diagonal;
  LrScheduleOptions schedule;
  SharpnessOptions sharpness;
  /// PyTorch BatchNorm momentum for running statistics.
  double bn_momentum = 0.1;
  /// Precision and micro-batch of the gradient passes.
  ObjectiveOptions objective;
  /// The run's settings as a JSON object, stored with the training state (opaque here).
  std::string config;
  /// Quantization-aware training (null: none): maps the latent weights w (flat, Model order) in
  /// place to the weights q(w) the model computes with. Every gradient pass (SAM's included) and
  /// evaluate() run at q(w); the gradient taken there updates w (straight-through estimator,
  /// dq/dw := I). eval_model() and state() keep the latent w.
  std::function<void(std::vector<double>&)> weight_transform;
};

/// Progress of one step, for progress bars.
struct StepInfo {
  std::int64_t epoch = 0;       // 1-based, the epoch being trained
  std::int64_t batch = 0;       // 1-based within the epoch
  std::int64_t batches = 0;     // per epoch
  std::int64_t step = 0;        // steps completed (all epochs)
  double loss = 0, accuracy = 0;  // running means over the epoch so far
  double samples_per_second = 0;
  double lr = 0;
};

class Trainer {
 public:
  /// The model is copied. BatchNorm nodes are switched to training mode for the gradient passes and
  /// to inference mode (running statistics) for evaluation. `test` may be null. Both datasets must
  /// outlive the trainer. Throws std::invalid_argument on bad options or data that does not fit.
  Trainer(const Model& model, const Dataset& train, const Dataset* test, TrainOptions options);
  ~Trainer();

  /// Continues from a saved state (optimizer, counters, history). Throws std::invalid_argument when
  /// the state does not fit (another optimizer, parameter count, or already past `epochs`).
  void restore(const TrainState& state);

  /// Trains up to options().epochs, calling the hooks. Returns false if stopped by request_stop()
  /// (the state is then that of the last completed step; the epoch is not counted).
  bool run();
  /// Asks run() to return after the current step (safe from a signal handler).
  void request_stop() { m_stop.store(true); }

  /// Called after every step.
  std::function<void(const StepInfo&)> on_step;
  /// Called after every finished epoch (its EpochRecord already in the history).
  std::function<void(Trainer&)> on_epoch_end;
  /// Curvature measurements by `monitor` (non-owning, must outlive run(); null: none): before the
  /// first step of a fresh run and then every `every` steps, or at the end of every `every`-th
  /// epoch when `per_epoch`. Each record is appended to the history, then passed to on_curvature.
  /// Throws std::invalid_argument if every < 1 with a monitor.
  void set_curvature_monitor(CurvatureMonitor* monitor, std::int64_t every, bool per_epoch = true);
  /// Called after every curvature measurement with its record (already in the history).
  std::function<void(const CurvatureRecord&)> on_curvature;
  /// A second-order step rule (non-owning, must outlive run(); null: the first-order Optimizer of
  /// options().optimizer) that replaces the optimizer's step; its name, state and per-step logs go
  /// to state() and history().optimizer. Set it before restore(). Throws std::invalid_argument
  /// with sharpness-aware training or a weight_transform (the rule's passes run at w itself).
  void set_step_rule(StepRule* rule);

  /// The model at the current weights (BatchNorm in inference mode, running statistics current).
  const Model& eval_model();
  /// The training state to checkpoint (weights are in eval_model()).
  TrainState state() const;
  const TrainHistory& history() const { return m_state.history; }
  const TrainOptions& options() const { return m_options; }
  std::int64_t steps_per_epoch() const { return m_batches; }
  std::int64_t step() const { return m_state.step; }
  double current_lr() const;
  /// Loss and accuracy of the current weights on a dataset (inference mode; at q(w) under a
  /// weight_transform).
  EvalResult evaluate(const Dataset& data);

 private:
  // Loss/accuracy at w; writes the step direction's gradient g (after SAM etc.) and updates BN stats.
  EvalResult step_gradient(const Dataset& batch, std::vector<double>& g);
  double batch_gradient(const Dataset& batch, const std::vector<double>& w, std::vector<double>& g,
                        std::vector<BatchNormStats>* bn, EvalResult* eval, std::unique_ptr<Objective>* keep = nullptr,
                        bool keep_grads = false);
  // GAM's first-order-flatness term alpha rho f_a, added to g (objective: the batch's at w).
  void add_gam_term(const Dataset& batch, Objective& objective, const std::vector<double>& g0, std::vector<double>& g);
  // The optimizer step (first-order or Hessian-diagonal), with its statistics for the epoch record.
  void optimizer_step(const Dataset& batch, const std::vector<double>& g, double lr);
  std::string optimizer_state_name() const;
  void log_curvature();

  Model m_train_model;  // BatchNorm in training mode
  Model m_eval_model;   // BatchNorm in inference mode
  const Dataset& m_train;
  const Dataset* m_test;
  TrainOptions m_options;
  std::int64_t m_batch_size = 0, m_batches = 0;
  std::unique_ptr<Optimizer> m_optimizer;
  std::unique_ptr<DiagonalOptimizer> m_diagonal;   // instead of m_optimizer when set
  std::unique_ptr<Objective> m_batch_objective;    // the current batch at w (kept for curvature products)
  // Optimizer statistics over the current epoch (EpochRecord::optimizer).
  std::int64_t m_epoch_refreshes = 0, m_epoch_steps = 0;
  double m_epoch_clip_sum = 0, m_epoch_diag_mean = 0;  // diag mean: at the epoch's last refresh
  std::unique_ptr<LrSchedule> m_schedule;
  std::vector<double> m_w;
  TrainState m_state;
  bool m_eval_stale = true;
  std::atomic<bool> m_stop{false};
  CurvatureMonitor* m_monitor = nullptr;
  std::int64_t m_curvature_every = 0;  // 0: never
  bool m_curvature_per_epoch = true;
  StepRule* m_rule = nullptr;
};

}  // namespace curv
