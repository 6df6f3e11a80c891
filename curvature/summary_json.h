#pragma once
/// \file summary_json.h
/// The `--json` summary of `curv spectrum` built from the same records the HDF5 store writes,
/// with the keys scripts rely on (DESIGN.md):
///     eigen.top (descending), eigen.bottom (ascending), eigen.residuals (top then bottom),
///     eigen.converged (every pair met the tolerance; the status is in eigen.settings.status),
///     trace.estimate, trace.stderr, trace.probes, diag.probes, density.{probes, steps, sigma},
///     blocks.<name>.<same keys>   (for a StoreRun)
/// Vectors, per-probe samples and density arrays are left to the HDF5 file.
/// Non-finite numbers (e.g. the stderr of a single probe) become JSON null.
#include <nlohmann/json_fwd.hpp>

#include "curvature/store_records.h"

namespace curv {

nlohmann::json summary_json(const StoreSection& section);
/// The run's model section plus "blocks": {name: section summary}.
nlohmann::json summary_json(const StoreRun& run);

}  // namespace curv
