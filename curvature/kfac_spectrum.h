#pragma once
/// \file kfac_spectrum.h
/// `curv spectrum --curvature kfac` as a library: K-FAC's spectrum computed exactly from its
/// factors (kfac.h), per layer and for the whole model (block-diagonal over the layers):
///   eigen/  the eigenvalues alpha_i beta_j of K = A (x) B, top descending and bottom ascending,
///           residuals 0; eigenvectors vec(q_B,j q_A,i^T) in the block's order when save_vectors
///   trace/  tr(A) tr(B) (stderr 0, probes 0)
///   diag/   diag(K) = diag(A) (x) diag(B) (stderr empty), when requested
///   kfac/   the factors and their eigendecompositions (per layer)
/// With `compare_ggn`, each layer's kfac/ attributes also hold its comparison with the exact GGN
/// block G_l (CurvatureOperator on the layer's parameters):
///   ggn_top, ggn_top_residual   the top eigenvalue of G_l (EigenSolver, tol o.eig_tol)
///   ggn_trace, ggn_trace_stderr Hutchinson on G_l (compare_probes probes)
///   frobenius_rel, frobenius_rel_stderr   ||K - G_l||_F / ||G_l||_F, estimated as
///       sqrt(sum_i ||(K - G_l) z_i||^2 / sum_i ||G_l z_i||^2) on Rademacher z_i (the same probes,
///       so E ||M z||^2 = ||M||_F^2), with a delta-method standard error
///   kfac_top, kfac_trace        K's, for the same table
/// Density requests are ignored (K's eigenvalues are all in alpha and beta). Seeds: eigen `seed`,
/// trace and Frobenius probes `seed + 1`.
#include <cstdint>

#include "curvature/kfac.h"
#include "curvature/spectrum_analysis.h"

namespace curv {

/// Fills run.model (when whole_model; requires every parameter in a K-FAC layer, else
/// std::invalid_argument naming the first one that is not) and one block per K-FAC layer named
/// after it. Returns the curvature products used (0 without compare_ggn).
std::int64_t analyze_kfac_spectrum(Objective& objective, const Kfac& kfac, const SpectrumOptions& o, bool whole_model,
                                   bool compare_ggn, std::int64_t compare_probes, std::uint64_t seed, StoreRun& run);

}  // namespace curv
