#pragma once
/// \file step_rule.h
/// How the Trainer runs a second-order optimizer (`curv train --optimizer kfac|hf|bhf`) without
/// depending on curvature/: train declares this interface, curvature/ implements it (KfacStepRule
/// in curvature/kfac_step_rule.h, HessianFreeStepRule in curvature/hessian_free_step_rule.h), and
/// the program that assembles a run hands one to the Trainer, as with CurvatureMonitor:
///
///     KfacStepRule rule(model.num_params(), kfac_options);
///     trainer.set_step_rule(&rule);   // replaces the first-order Optimizer's step
///     trainer.run();                  // per-step logs in trainer.history().optimizer
///
/// A step rule sees the mini-batch, the model at the current weights w and the mini-batch gradient
/// g = grad L(w) (loss only; weight decay is the rule's), and updates w in place. Its state goes
/// to the checkpoint as named flat vectors (TrainState::optimizer_state) so that a run resumed at
/// an epoch boundary continues bit for bit.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"
#include "src/io/train_state.h"

namespace curv {

/// What one step of a rule sees.
struct StepContext {
  /// The training model with its parameters at w (the rule may set other parameters on it for
  /// its own passes but must leave w on it when it returns).
  Model* model = nullptr;
  const Dataset* batch = nullptr;
  /// Precision and micro-batch of the passes (the Trainer's).
  ObjectiveOptions objective;
  /// The mini-batch's Objective at w with the primal passes of the gradient kept (nullptr: none);
  /// a rule may run its passes on the batch at w through it instead of recomputing them.
  Objective* batch_objective = nullptr;
  double loss = 0;         // mini-batch loss at w
  double lr = 0;           // this step's learning rate
  std::int64_t step = 0;   // steps completed before this one
};

class StepRule {
 public:
  virtual ~StepRule() = default;
  /// Stored as TrainState::optimizer ("kfac", "hf", "bhf").
  virtual std::string name() const = 0;
  /// One update of w in place. `log` (never null) receives what a user needs to trust the step
  /// (CG iterations and residuals, damping, reduction ratio, inverse refreshes).
  virtual void step(const StepContext& at, std::vector<double>& w, const std::vector<double>& g,
                    OptimizerRecord& log) = 0;
  virtual std::map<std::string, std::vector<double>> state() const = 0;
  /// Restores state(); throws std::invalid_argument on unknown names or lengths.
  virtual void set_state(const std::map<std::string, std::vector<double>>& state) = 0;
};

}  // namespace curv
