#pragma once
/// \file solve_store.h
/// The HDF5 file of `curv solve` (docs/hdf5-schema.md, "curv solve"), written atomically
/// (AtomicFile), and the right-hand-side files it reads.
///
///     /              attrs format="curv", schema_version=1, curv_version, created_utc, command
///     /solve/        attrs: the run's settings and summary (model, model_sha256, dataset, samples,
///                    curvature, method, damping, rtol, max_iters, rhs, status, iterations,
///                    products, residual, rhs_norm, x_norm, b_dot_x, seconds, ...)
///        x                 f64 [P]      the solution, parameters in Model order
///        rhs               f64 [P]      b
///        residual_history  f64 [I + 1] relative recursive residual per iteration (block-cg:
///                                      [I + 1, L], one column per block)
///        influence         f64 [N]      -g_n^T x per sample (with --influence)
///        blocks/<layer>/   attrs residual, iterations (block-cg)
///
/// A right-hand-side file is an HDF5 file with a float64 dataset `rhs` of shape [P] (a `curv
/// solve` output qualifies through /solve/rhs or /solve/x: name it FILE.h5 and the reader looks
/// for /rhs, then /solve/x). When the file has a root attribute `model_sha256` it must match the
/// model's.
#include <string>
#include <vector>

#include "curvature/damped_solve.h"
#include "curvature/store_records.h"

namespace curv {

void write_solve_file(const std::string& path, const std::string& command, const std::vector<std::string>& inputs,
                      const AttributeMap& attributes, const DampedSolveResult& result, const Eigen::VectorXd& b);

/// The rhs vector of `path`. Throws std::invalid_argument("<path>: ...") for a missing dataset, a
/// wrong length ("has N entries, the model P parameters") or another model's sha256, and
/// std::runtime_error for unreadable files.
Eigen::VectorXd read_rhs_file(const std::string& path, std::int64_t params, const std::string& model_sha256);

}  // namespace curv
