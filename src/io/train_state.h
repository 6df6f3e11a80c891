#pragma once
/// \file train_state.h
/// What a training run keeps besides the weights, so that a run resumed from a checkpoint
/// continues exactly where it stopped: the optimizer state, the step and epoch counters, the
/// settings, and the history of per-epoch metrics and curvature measurements. Stored in curv
/// checkpoints under `/train` and `/history` (docs/hdf5-schema.md).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace curv {

/// Metrics of one finished epoch. Train loss and accuracy are means over the epoch's mini-batches
/// at the weights before each step (as training scripts print them); test metrics are exact at the
/// end of the epoch (NaN when there is no test set).
struct EpochRecord {
  std::int64_t epoch = 0;  // 1-based
  std::int64_t step = 0;   // optimizer steps completed at the end of the epoch
  double lr = 0;           // rate of the epoch's last step
  double train_loss = 0, train_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0;             // wall time of the epoch (training and evaluation)
  double samples_per_second = 0;  // training throughput (steps only)
  /// Optimizer statistics of the epoch by name (/history/optimizer_epochs/NAME; NaN where an epoch has
  /// none), e.g. AdaHessian's and Sophia's "hessian_refreshes", "hessian_diag_mean" and Sophia's
  /// "clip_fraction" (mean over the epoch's steps).
  std::map<std::string, double> optimizer;
};

/// One curvature measurement on the fixed evaluation subset.
struct CurvatureRecord {
  std::int64_t step = 0;  // optimizer steps completed when measured
  double epoch = 0;       // step / steps per epoch
  double loss = 0;        // loss on the subset
  double lambda_max = 0, lambda_max_residual = 0;  // top Hessian eigenpair, ||H v - lambda v||
  double trace = 0, trace_stderr = 0;              // Hutchinson
  double grad_overlap = 0;  // ||V_k^T g||^2 / ||g||^2, g the subset gradient, V_k the top-k eigenvectors
  double grad_norm = 0;
  double lr = 0;  // learning rate at that step (for the 2 / lr line)
  std::int64_t hvps = 0;
  double seconds = 0;
  std::vector<double> top_values;  // the k top eigenvalues, descending
};

/// One step of a second-order optimizer (src/train/step_rule.h): named scalars such as
/// "cg_iterations", "cg_residual", "damping", "rho" (reduction ratio), "inverse_refresh".
/// Stored as /history/optimizer/<name> columns (NaN where a step did not log a name).
struct OptimizerRecord {
  std::int64_t step = 0;  // optimizer steps completed after this step
  std::map<std::string, double> values;
};

struct TrainHistory {
  std::vector<EpochRecord> epochs;
  std::vector<CurvatureRecord> curvature;
  std::vector<OptimizerRecord> optimizer;  // second-order optimizers only
};

struct TrainState {
  std::int64_t epoch = 0;  // completed epochs
  std::int64_t step = 0;   // completed optimizer steps
  std::string optimizer;   // optimizer_name() of the state below
  std::int64_t optimizer_steps = 0;
  std::map<std::string, std::vector<double>> optimizer_state;  // flat, in parameter order
  std::string config;  // JSON object with the run's settings
  TrainHistory history;
};

}  // namespace curv
