#include "curvature/curvature_probe_monitor.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace curv {

namespace {
constexpr std::uint64_t kSeedStride = 7919;  // seed of step s: seed + 7919 s
}

CurvatureProbeMonitor::CurvatureProbeMonitor(Dataset subset, ObjectiveOptions objective, CurvatureProbeOptions probe)
    : m_subset(std::move(subset)), m_objective(objective), m_probe(probe) {
  if (m_subset.size() < 1) throw std::invalid_argument("curvature monitor: the data subset is empty");
  check_probe_options(m_probe);
}

CurvatureProbeOptions CurvatureProbeMonitor::probe_options(const Model& model, std::int64_t step) const {
  CurvatureProbeOptions po = m_probe;
  if (po.top == 0) po.top = model.output_shape().empty() ? 1 : numel(model.output_shape());
  po.seed = m_probe.seed + kSeedStride * static_cast<std::uint64_t>(step);
  return po;
}

CurvatureRecord CurvatureProbeMonitor::measure(const Model& model, const CurvatureStep& at) {
  auto objective = Objective::create(model, m_subset, m_objective);
  CurvatureRecord r = probe_curvature(*objective, probe_options(model, at.step));
  r.step = at.step;
  r.epoch = at.epoch;
  r.lr = at.lr;
  return r;
}

}  // namespace curv
