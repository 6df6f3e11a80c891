#pragma once
/// \file curvature_probe_monitor.h
/// The curvature logger of training runs: a CurvatureMonitor (src/train/curvature_monitor.h)
/// that measures a model with probe_curvature (curvature_probe.h) on a fixed data subset.
///
/// Measurement at step s: an Objective of the model on the subset (the given objective options),
/// then probe_curvature with the given probe options, except
///   - top = 0 means the model's output count (the number of classes of a classifier; the top
///     eigenspace that holds most of the gradient, Gur-Ari et al. 2018);
///   - the seed is probe.seed + 7919 s, so each measurement draws fresh start vectors and probes
///     and a resumed run repeats the measurements of an uninterrupted one.
///
/// Not thread-safe. The subset is copied.
#include "curvature/curvature_probe.h"
#include "src/core/dataset.h"
#include "src/core/objective.h"
#include "src/train/curvature_monitor.h"

namespace curv {

class CurvatureProbeMonitor final : public CurvatureMonitor {
 public:
  /// Throws std::invalid_argument for an empty subset, negative top or trace probes, a probe
  /// batch < 1, or a tolerance outside (0, 1).
  CurvatureProbeMonitor(Dataset subset, ObjectiveOptions objective, CurvatureProbeOptions probe);

  CurvatureRecord measure(const Model& model, const CurvatureStep& at) override;

  /// The probe options of the measurement at `step` for `model` (top and seed resolved).
  CurvatureProbeOptions probe_options(const Model& model, std::int64_t step) const;
  const Dataset& subset() const { return m_subset; }

 private:
  Dataset m_subset;
  ObjectiveOptions m_objective;
  CurvatureProbeOptions m_probe;
};

}  // namespace curv
