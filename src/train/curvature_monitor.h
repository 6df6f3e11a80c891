#pragma once
/// \file curvature_monitor.h
/// How the Trainer measures curvature over training (`curv train --log-curvature`) without
/// depending on curvature/: train declares this interface, curvature/ implements it
/// (`CurvatureProbeMonitor`: top Hessian eigenpairs, Hutchinson trace and gradient overlap on a
/// fixed data subset), and the program that assembles a run hands one to the Trainer.
///
///     CurvatureProbeMonitor monitor(train.subset(0, 1000), objective_options, probe_options);
///     trainer.set_curvature_monitor(&monitor, 1, true);   // every epoch
///     trainer.run();                                     // records in trainer.history().curvature
#include <cstdint>

#include "src/core/model.h"
#include "src/io/train_state.h"

namespace curv {

/// Where in training a measurement is taken.
struct CurvatureStep {
  std::int64_t step = 0;  // optimizer steps completed
  double epoch = 0;       // step / steps per epoch
  double lr = 0;          // learning rate of the next step
};

class CurvatureMonitor {
 public:
  virtual ~CurvatureMonitor() = default;

  /// One measurement of `model` (current weights, BatchNorm in inference mode) at `at`. The
  /// trainer overwrites the record's step, epoch and lr with `at`. Throws on bad settings.
  virtual CurvatureRecord measure(const Model& model, const CurvatureStep& at) = 0;
};

}  // namespace curv
