#pragma once
/// \file damped_solve.h
/// One damped curvature solve, (C + lambda I) x = b, as `curv solve` runs it: the curvature C
/// ("hessian", "ggn", "fisher", "ef" through Objective products, or "kfac": K-FAC's K), the method
///   cg        CgSolver on C
///   pcg       CgSolver on C, preconditioned by K-FAC's damped inverse or Jacobi (1 / (d + lambda),
///             d a Hutchinson diagonal of C clamped at 0)
///   block-cg  BlockCgSolver on C's per-layer diagonal blocks (Model::blocks("layers")). How a
///             block's product C_ll p_l is formed (block_products; the same matrices, different
///             rounding):
///               gram        from per-sample factors stored by one sweep (gram_blocks.h): exact for
///                           linear layers under ggn, fisher and ef, no model pass per iteration
///               restricted  a CurvatureOperator on the block's own parameters (the forward
///                           tangent starts at the layer, the reverse tangent stops there)
///               pass        one pass of C with one column per active layer
///               auto        (default) gram for the blocks it covers when its store fits in
///                           gram_max_bytes, restricted for the others
///   kfac      x = (K + lambda I)^-1 b (exact damping; one K-FAC inverse)
///   woodbury  x = (lambda I + (1/m) G G^T)^-1 b over the per-sample gradients of the first m
///             samples (M-FAC; the empirical Fisher of that window)
/// and the result's summary: the true relative residual ||(C + lambda I) x - b|| / ||b|| against
/// the chosen C (for kfac and woodbury this measures how well they approximate C's solve, for
/// block-cg how far the block-diagonal solution is from C's; its blocks report their own), the
/// products of C spent (including the residual's), ||b||, ||x||, b^T x and, on request, influence
/// scores -g_n^T x for every sample (Koh & Liang 2017), with g_n the per-sample loss gradient.
///
/// Damping: lambda >= 0; the checks that depend on the kind (the Hessian and the inverse methods
/// need lambda > 0) are validate_damped_solve()'s. Non-convergence is a status in the result.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "curvature/cg_solver.h"
#include "curvature/kfac.h"
#include "src/core/objective.h"

namespace curv {

enum class SolveMethod { Cg, Pcg, BlockCg, Kfac, Woodbury };
enum class BlockProducts { Auto, Gram, Restricted, Pass };
/// "auto" | "gram" | "restricted" | "pass".
const char* block_products_name(BlockProducts b);
BlockProducts parse_block_products(const std::string& s);
/// "cg" | "pcg" | "block-cg" | "kfac" | "woodbury".
const char* solve_method_name(SolveMethod m);
SolveMethod parse_solve_method(const std::string& s);

struct DampedSolveOptions {
  /// "hessian" | "ggn" | "fisher" | "ef" | "kfac".
  std::string curvature = "ggn";
  SolveMethod method = SolveMethod::Cg;
  /// lambda.
  double damping = 1e-3;
  /// CG tolerance on ||r|| / ||b|| and iteration cap (cg, pcg, block-cg).
  double rtol = 1e-6;
  std::int64_t max_iters = 1000;
  /// pcg and block-cg: "kfac", "jacobi" or "none" (pcg needs one of the first two).
  std::string preconditioner = "kfac";
  /// block-cg: products restricted to each layer's own parameters (not for curvature "kfac");
  /// the same as block_products = Restricted (the older spelling, kept).
  bool restricted_blocks = false;
  /// block-cg: how the block products are formed (see the header).
  BlockProducts block_products = BlockProducts::Auto;
  /// block-cg, gram: the cap on the stored per-sample factors (bytes; 0: none). auto falls back to
  /// restricted above it, gram fails.
  std::size_t gram_max_bytes = std::size_t(4e9);
  /// Jacobi: Hutchinson probes of the diagonal, and their seed.
  std::int64_t diag_probes = 20;
  std::uint64_t seed = 0;
  /// K-FAC (curvature kfac, method kfac, K-FAC preconditioner).
  KfacOptions kfac;
  /// woodbury: the window m (first m samples; clamped to the sample count).
  std::int64_t window = 32;
  /// Per-sample influence scores -g_n^T x.
  bool influence = false;
};

struct BlockSolveSummary {
  std::string name;
  double residual = 0;
  std::int64_t iterations = 0;
};

struct DampedSolveResult {
  Eigen::VectorXd x;
  double residual = 0;          // ||(C + lambda I) x - b|| / ||b||
  std::int64_t iterations = 0;  // CG iterations (1 for kfac and woodbury)
  std::int64_t products = 0;    // columns of C applied, residual included (restricted block-cg:
                                // plus the block products, one per active layer and iteration)
  double rhs_norm = 0, x_norm = 0, b_dot_x = 0;
  CompInfo info = CompInfo::NotComputed;
  Eigen::MatrixXd residual_history;  // [iterations + 1, 1] or [iterations + 1, L] for block-cg
  std::vector<BlockSolveSummary> blocks;  // block-cg
  /// block-cg: what formed the block products ("gram", "restricted", "gram+restricted", "pass"),
  /// the blocks gram covered, the bytes of its store, the seconds of its sweep (included in no
  /// product count: it is R reverse passes per micro-batch), and why it covered less than all.
  std::string block_products;
  std::int64_t gram_blocks = 0;
  std::size_t gram_bytes = 0;
  double gram_seconds = 0;
  std::string gram_note;
  Eigen::VectorXd influence;              // [N] when requested
  /// curvature "fisher" with sampled labels: b^T F b for the Monte Carlo F and its standard error
  /// from the label sampling (Objective::product_stderr; one more product, counted); NaN otherwise.
  double fisher_quad = std::numeric_limits<double>::quiet_NaN();
  double fisher_quad_stderr = std::numeric_limits<double>::quiet_NaN();
};

/// std::invalid_argument naming the problem unless the options fit together: a known curvature
/// and preconditioner, lambda finite and >= 0, lambda > 0 for the Hessian (possibly indefinite)
/// and for the kfac and woodbury methods, rtol in (0, 1), max_iters, window, diag_probes >= 1,
/// restricted_blocks only with block-cg on an Objective curvature (not kfac).
/// Returns a warning (empty when none): lambda = 0 on a PSD curvature (singular for P > N C).
std::string validate_damped_solve(const DampedSolveOptions& o);

/// Solves (C + lambda I) x = b on the objective's sample set (`data` is that set: woodbury and
/// influence take per-sample gradients from it). REQUIRES: b.size() == objective.num_params().
DampedSolveResult damped_solve(Objective& objective, const Dataset& data, const Eigen::VectorXd& b,
                               const DampedSolveOptions& options, const ObjectiveOptions& objective_options);

}  // namespace curv
