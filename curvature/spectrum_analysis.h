#pragma once
/// \file spectrum_analysis.h
/// `curv spectrum` as a library: the estimators requested for a curvature operator, run on the
/// whole model and on parameter blocks, into the records of a StoreRun (spectra_store.h).
///
/// For one operator A (the whole model, or the diagonal block of some parameter tensors),
/// analyze_spectrum fills, as requested,
///   eigen/    top / bottom eigenpairs: EigenSolver (Spectra Lanczos, restart cap and a tolerance
///             relative to ||A||), or PowerIteration (PyHessian's, top pairs only)
///   trace/    Hutchinson or Hutch++
///   diag/     Hutchinson diagonal
///   density/  stochastic Lanczos quadrature
/// and in exact mode eigen/, trace/ and diag/ from the dense matrix (A e_1 .. A e_P) and its full
/// eigendecomposition, to validate the estimators (density still by SLQ).
/// Seeds: eigenpairs `seed`, trace `seed + 1`, diagonal `seed + 2`, density `seed + 3`, the same
/// for every operator.
///
///     SpectrumOptions o; o.top = 5; o.trace_probes = 100;
///     const auto blocks = select_blocks(model, "layers");
///     const std::int64_t products = analyze_model_spectrum(objective, Curvature::Hessian, true,
///                                                          blocks, o, seed, store.add_run());
///
/// Requests are checked against every operator before the first product (check_spectrum_request),
/// so a bad request fails at once with std::invalid_argument naming the operator and the limit.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "curvature/linear_operator.h"
#include "curvature/store_records.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv {

enum class EigenMethod { Lanczos, Power };
enum class TraceMethod { Hutchinson, HutchPlusPlus };

struct SpectrumOptions {
  /// Largest and smallest algebraic eigenpairs (0: none). Lanczos needs k < P, power iteration
  /// and exact mode k <= P, for the operator size P; bottom pairs need Lanczos or exact mode.
  std::int64_t top = 1;
  std::int64_t bottom = 0;
  EigenMethod eig_method = EigenMethod::Lanczos;
  /// Lanczos: Krylov size per run (0: automatic), relative tolerance and restart cap (see
  /// eigen_solver.h). Power iteration uses eig_tol as PyHessian's tol.
  std::int64_t ncv = 0;
  double eig_tol = 1e-6;
  std::int64_t eig_max_restarts = 300;
  /// Store the eigenvectors.
  bool save_vectors = false;
  /// Trace probes (0: no trace), and Hutchinson's early stop at stderr <= trace_tol |estimate|.
  std::int64_t trace_probes = 0;
  double trace_tol = 0.0;
  TraceMethod trace_method = TraceMethod::Hutchinson;
  /// Probes per block product of the trace and diagonal estimators.
  std::int64_t probe_batch = 8;
  /// Hutchinson diagonal with this many probes.
  bool diag = false;
  std::int64_t diag_probes = 50;
  /// SLQ density: Lanczos steps per probe and probes (advanced in lockstep).
  bool density = false;
  std::int64_t slq_steps = 100;
  std::int64_t slq_probes = 4;
  /// Dense matrix and full eigendecomposition instead of the eigen, trace and diagonal estimators.
  bool exact = false;
  /// Largest operator that exact mode densifies (its P x P matrix takes 8 P^2 bytes).
  std::int64_t exact_max_size = 5000;
  /// Whole model only: the gradient g of the loss (gradient/: ||g||, g itself when save_vectors,
  /// and the cumulative share of g in the top eigenvectors' span when top > 0).
  bool gradient = false;
};

/// std::invalid_argument naming `label` (e.g. "the model", "block 'fc1'") and the limit if `o`
/// cannot run on an operator of `size` rows: eigenpair counts against the size, bottom pairs
/// with power iteration, exact mode above exact_max_size.
void check_spectrum_request(const SpectrumOptions& o, std::int64_t size, const std::string& label);

/// Runs every estimator requested by `o` on `op` into `section` (eigen, trace, diag, density).
/// Checks the request first. Non-convergence is reported in the records' status, not thrown.
void analyze_spectrum(const LinearOperator& op, const SpectrumOptions& o, std::uint64_t seed, StoreSection& section);

/// Parameter blocks by name: "all" (none: the whole model only), "layers", "tensors", or a
/// comma-separated list of layer or tensor names (layer names first). std::invalid_argument
/// naming a name that is neither.
std::vector<ParamBlock> select_blocks(const Model& model, const std::string& spec);

/// Called after every block product with the section label ("all" or the block name) and the
/// products of that section so far, and once more with done = true when the section is finished.
using SpectrumProgress = std::function<void(const std::string& label, std::int64_t products, bool done)>;

/// analyze_spectrum on the whole model's curvature (when `whole_model`) into run.model and on
/// each block into a run block section (with attribute "params" = its size). Checks every
/// operator first. Returns the products used.
std::int64_t analyze_model_spectrum(Objective& objective, Curvature kind, bool whole_model,
                                    const std::vector<ParamBlock>& blocks, const SpectrumOptions& o,
                                    std::uint64_t seed, StoreRun& run, const SpectrumProgress& progress = {});

}  // namespace curv
