#pragma once
/// \file hessian_free_step_rule.h
/// Hessian-free optimization (`curv train --optimizer hf`, Martens 2010) and its block-diagonal
/// variant (`--optimizer bhf`, Zhang, Xiong, Bradbury et al. 2017) as a StepRule
/// (src/train/step_rule.h) on the solvers of curvature/: CgSolver (hf) and BlockCgSolver (bhf).
/// Step t on a mini-batch with gradient g at w (f = the mini-batch loss + wd/2 ||w||^2, so the
/// right-hand side is -(g + wd w) and the curvature C + wd I):
///
///   curvature  C = GGN (or Hessian) of the first `curvature_batch` samples of the mini-batch
///              (0: all), a CurvatureOperator on its own Objective
///   solve      hf:  (C + wd I + lambda I) d = -(g + wd w)                 by CG (CgSolver)
///              bhf: (C_ll + wd I + lambda I) d_l = -(g + wd w)_l per block by block CG
///              (BlockCgSolver: every block its own CG, all in lockstep; one pass per iteration
///              with the L block directions as L tangent columns, see below)
///              warm-started from x0 = cg_decay * d_prev (the last step's final CG iterate), at
///              most max_iters iterations, stopping at ||r|| <= rtol ||b||
///   backtrack  (backtrack = true) the CG iterates of iterations ceil(1.3^j) and the last one are
///              kept; from the last, step back to the previous kept iterate while it has a lower
///              f(w + lr d) (Martens 2010 section 4.6); the chosen d is the step
///   line search (line_search = true; Martens & Sutskever 2012, section 8.8) on s = lr d: the
///              largest a in 1, 0.8, 0.8^2, ... (a >= 0.8^30, else a = 0: the step is rejected)
///              with f(w + a s) <= f(w) + 0.01 a (g + wd w)^T s
///   update     w <- w + a lr d   (a = 1 without the line search; lr = 1 is Martens' step)
///   damping    rho = (f(w + lr d) - f(w)) / q(lr d),  q(s) = (g + wd w)^T s + 1/2 s^T (C + wd I) s
///              (the undamped model on the curvature batch, full C for bhf too: one more product);
///              with adapt_damping (Levenberg-Marquardt): lambda <- 2/3 lambda if rho > 3/4,
///              lambda <- 3/2 lambda if rho < 1/4
///
/// Block-diagonal products in one pass. BHF needs C_ll p_l for every block l at once. With the
/// stacked direction p = sum_l p_l a single product C p returns sum_m C_lm p_m on block l: the
/// off-diagonal blocks C_lm = J_l^T Lambda J_m (m != l) mix in, and no single ordinary product
/// separates them (J p = sum_m J_m p_m loses which block contributed). The cheapest exact
/// alternative is what BlockCgSolver does: one primal pass of the model carrying the L block
/// directions as L tangent columns (Objective::product on an [P, L] block, the activations shared),
/// the output of column l read on block l only. Per iteration this costs L tangent/adjoint sweeps
/// over the whole model (the primal pass is kept), about L GGN products' worth of work. With
/// restricted_blocks each block's product runs on its own parameters instead (L products on the
/// kept primal passes): column l's forward tangent starts at block l and its reverse tangent stops
/// there, so a chain of L equal layers costs about (L + 1) / 4 products per iteration (block_cg_solver.h
/// counts the GEMMs; 1 for L = 2), and less on a network whose cost sits in its first layers
/// (LeNet-5's 5 blocks: 0.8-0.95 of one GGN product, bench/bench_second_order). That sum of the
/// blocks' suffix sweeps is the floor for exact block-diagonal products: block l's product needs
/// its forward tangent from the block to the output and its reverse tangent back to the block;
/// only the L-column pass's zero prefixes and its off-block parameter tangents are avoidable.
///
/// Logged per step: cg_iterations, cg_residual (true relative residual of the final iterate),
/// cg_products, cg_chosen (iteration of the backtracked iterate), damping (of this step), rho
/// (of the backtracked step, before the line search), loss_after (after the step), and with the
/// line search line_search_rate (a). State (checkpoints): lambda, the warm start d_prev and the step count.
#include <string>
#include <utility>
#include <vector>

#include "src/core/objective.h"
#include "src/train/step_rule.h"

namespace curv {

struct HessianFreeOptions {
  /// Curvature::GGN or Curvature::Hessian.
  Curvature curvature = Curvature::GGN;
  /// bhf: the parameter blocks, "layers" (Model::blocks("layers")) or a comma-separated list of
  /// groups of layer names joined by '+' ("fc1+fc2,fc3"; layers not named get a block each).
  /// Empty: hf (one CG on all parameters).
  std::string blocks;
  double damping = 1.0;
  bool adapt_damping = true;
  std::int64_t max_iters = 50;
  double rtol = 1e-4;
  double cg_decay = 0.95;
  std::int64_t curvature_batch = 0;
  bool backtrack = true;
  bool line_search = false;
  double weight_decay = 0.0;
  /// bhf: each block's products on its own parameters (BlockCgSolver's block operators: one product
  /// per block and iteration, its tangents only from the block on, skipping the block's zero
  /// prefix) instead of one pass with the L block directions as columns. Same matrices; the
  /// rounding may differ, so it is off by default (results of existing runs stay bit for bit).
  bool restricted_blocks = false;
};

/// std::invalid_argument naming the option unless damping > 0 (>= 0 for the GGN) and finite,
/// max_iters >= 1, rtol in (0, 1), cg_decay in [0, 1], curvature_batch >= 0, weight_decay >= 0.
void validate_hessian_free(const HessianFreeOptions& o);

class HessianFreeStepRule final : public StepRule {
 public:
  /// Throws std::invalid_argument on bad options or blocks (unknown layer names, a block whose
  /// parameters are not contiguous in the flat vector).
  HessianFreeStepRule(const Model& model, HessianFreeOptions options);

  std::string name() const override { return m_options.blocks.empty() ? "hf" : "bhf"; }
  void step(const StepContext& at, std::vector<double>& w, const std::vector<double>& g,
            OptimizerRecord& log) override;
  std::map<std::string, std::vector<double>> state() const override;
  void set_state(const std::map<std::string, std::vector<double>>& state) override;

  double damping() const { return m_damping; }
  /// bhf: the blocks as (offset, size) ranges of the flat parameter vector, and their names.
  const std::vector<std::pair<std::int64_t, std::int64_t>>& blocks() const { return m_blocks; }
  const std::vector<std::string>& block_names() const { return m_block_names; }
  /// The last step's direction d (before lr) and its final CG iterate (the next warm start / decay).
  const std::vector<double>& last_direction() const { return m_last_d; }

 private:
  HessianFreeOptions m_options;
  std::int64_t m_n;
  double m_damping;
  std::int64_t m_steps = 0;
  std::vector<double> m_prev;    // final CG iterate of the last step (warm start before decay)
  std::vector<double> m_last_d;  // the chosen (backtracked) direction of the last step
  std::vector<std::pair<std::int64_t, std::int64_t>> m_blocks;
  std::vector<std::vector<int>> m_block_params;  // parameter indices of each block
  std::vector<std::string> m_block_names;
};

}  // namespace curv
