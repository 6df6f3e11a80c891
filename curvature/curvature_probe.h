#pragma once
/// \file curvature_probe.h
/// One curvature measurement of an Objective, as logged over training (`curv train
/// --log-curvature`): the top-k eigenpairs of the Hessian (Spectra Lanczos; lambda_max with its
/// residual ||H v - lambda v||), the Hutchinson trace with its standard error, and the fraction
/// of the gradient that lies in the top-k eigenspace (Gur-Ari et al. 2018):
///
///     overlap = ||V_k^T g||^2 / ||g||^2,   V_k = the k top eigenvectors (orthonormal)
///
/// The estimate is approximate in two documented ways: eigenpairs to the relative tolerance
/// `eig_tol` (within `max_restarts`; lambda_max_residual says how well), and the trace to its
/// reported standard error.
#include <cstdint>

#include "src/core/objective.h"
#include "src/io/train_state.h"

namespace curv {

struct CurvatureProbeOptions {
  /// Curvature the eigenpairs and trace are taken of.
  Curvature kind = Curvature::Hessian;
  /// Top eigenpairs (k of the overlap); clamped to rows - 1.
  std::int64_t top = 10;
  /// Relative residual tolerance of the eigenpairs (Spectra's tol), in (0, 1).
  double eig_tol = 1e-3;
  /// Implicit restarts of the eigensolver before it reports its best pairs.
  std::int64_t max_restarts = 300;
  /// Krylov size (0: Spectra default max(2k + 1, 20)).
  std::int64_t ncv = 0;
  /// Hutchinson probes (0: no trace) and probes per block product.
  std::int64_t trace_probes = 10;
  std::int64_t probe_batch = 10;
  /// Seed of the Lanczos start vector and the probes.
  std::uint64_t seed = 0;
};

/// Measures at the objective's current parameters. Fills every CurvatureRecord field except
/// step, epoch and lr (the caller's). If the eigensolver reaches max_restarts, the best pairs it
/// found are reported (lambda_max_residual tells how good lambda_max is). Throws
/// std::invalid_argument for bad options (check_probe_options).
CurvatureRecord probe_curvature(Objective& objective, const CurvatureProbeOptions& options);

/// std::invalid_argument naming the field and value unless top >= 0, trace_probes >= 0,
/// probe_batch >= 1, ncv >= 0, max_restarts >= 1 and 0 < eig_tol < 1.
void check_probe_options(const CurvatureProbeOptions& options);

}  // namespace curv
