#pragma once
/// \file block_cg_solver.h
/// Block-diagonal conjugate gradients (Zhang et al. 2017, block-diagonal Hessian-free): one CG per
/// parameter block on its diagonal block,
///     (C_ll + lambda I) x_l = b_l   for every block l,   x = [x_1; ...; x_L],
/// all blocks advancing in lockstep. Every iteration is ONE block apply of C on the L (active)
/// block directions, each zero outside its block, so one primal pass of the model serves all
/// blocks; the output of column l is read on block l only, which is exactly C_ll p_l. Each block
/// has its own step sizes and stops at its own ||r_l|| <= rtol ||b_l||.
///
/// Costs per iteration: L operator columns (one pass with L directions) where full CG spends 1;
/// a K-FAC or Jacobi preconditioner is block-diagonal already and applies per column.
///
/// Alternatively each block comes as its own operator C_ll (`block_ops`, e.g. a CurvatureOperator
/// on the block's parameters): then every block's vectors have the block's own size (an iteration
/// costs the active blocks' products plus O(their sizes), not O(P L)), CgOptions::on_iteration
/// receives the combined iterate as one column (the sum of the L-column pass's columns), and an
/// iteration is one product per active block, and a model's
/// product restricted to block l runs its forward tangent from block l on and its reverse tangent
/// back to block l only, skipping the block's zero prefix that the L-column pass computes. On a
/// chain of L equal dense layers (GEMMs: a full product 2 at the first layer and 4 at each other,
/// W x' + V x forward and W^T g' + g' x^T back; block l's own product 2 at layer l and 2 at each
/// later one) that is L (L + 1) GEMMs against L (4L - 2) for the L-column pass: about (L + 1) / 4
/// products instead of L. Same matrices; the rounding of the products may differ from the
/// L-column pass.
///
/// A third source of block operators, for the GGN and the Fisher of linear layers, is
/// GramBlockOperators (gram_blocks.h): the exact C_ll from per-sample factors stored by one sweep,
/// with no pass through the model per iteration.
///
/// Status and residuals as CgSolver (cg_solver.h): per block residual_history() columns, and
/// residual() = ||(D + lambda I) x - b|| / ||b||, D = blockdiag(C_ll), from the true per-block
/// residuals.
///
/// REQUIRES: blocks are disjoint row ranges (offset, size) of C covering any subset of its rows
/// (rows outside every block get x = 0); a preconditioner must be block-diagonal on the same
/// blocks (Jacobi, or K-FAC with blocks = its layers). Non-owning; not thread-safe.
#include <utility>
#include <memory>
#include <vector>

#include "curvature/cg_solver.h"

namespace curv {

class Objective;
enum class Curvature;

class BlockCgSolver {
 public:
  using Index = LinearOperator::Index;
  using Vector = LinearOperator::Vector;
  using Matrix = LinearOperator::Matrix;

  BlockCgSolver(const LinearOperator& C, std::vector<std::pair<Index, Index>> blocks, CgOptions options = {},
                const LinearOperator* preconditioner = nullptr);
  /// With block_ops[l] = C_ll (rows == blocks[l].second; C then only gives the size and is not
  /// applied); empty block_ops: as the constructor above.
  BlockCgSolver(const LinearOperator& C, std::vector<std::pair<Index, Index>> blocks,
                std::vector<const LinearOperator*> block_ops, CgOptions options = {},
                const LinearOperator* preconditioner = nullptr);

  /// Solves for one right-hand side b (rows == C.rows()). Returns the iterations (lockstep steps).
  Index compute(const Vector& b);
  /// Warm start from x0 (every block from its own segment; one more block apply, counted).
  Index compute(const Vector& b, const Vector& x0);
  CompInfo info() const { return m_info; }

  const Vector& solution() const { return m_x; }
  /// ||(D + lambda I) x - b|| / ||b||.
  double residual() const { return m_residual; }
  /// Per block: true relative residual ||(C_ll + lambda I) x_l - b_l|| / ||b_l||.
  const Vector& block_residuals() const { return m_block_residuals; }
  /// Per block: iterations until it converged (or stopped).
  const std::vector<Index>& block_iterations() const { return m_block_iterations; }
  /// [iterations + 1, L] relative recursive residuals per block.
  const Matrix& residual_history() const { return m_history; }
  Index num_iterations() const { return m_iterations; }
  std::int64_t num_operations() const { return m_operations; }

 private:
  Index compute_compact(const Vector& b, const Vector& x0);
  void summarize(const Vector& b);

  const LinearOperator& m_C;
  std::vector<std::pair<Index, Index>> m_blocks;
  std::vector<const LinearOperator*> m_block_ops;  // empty: one pass of m_C on the L columns
  CgOptions m_options;
  const LinearOperator* m_M;
  CompInfo m_info = CompInfo::NotComputed;
  Vector m_x, m_block_residuals;
  Matrix m_history;
  double m_residual = 0;
  std::vector<Index> m_block_iterations;
  Index m_iterations = 0;
  std::int64_t m_operations = 0;
};

/// The block operators of block-CG's restricted mode (`block_ops` above): C_ll as a
/// CurvatureOperator (curvature_operator.h) on block l's own parameters, one per entry of
/// `block_params` (parameter indices into Model::params()). Empty `block_params`: no operators,
/// and BlockCgSolver runs the L-column pass. REQUIRES: `objective` outlives this.
class RestrictedBlockOperators {
 public:
  RestrictedBlockOperators(Objective& objective, Curvature kind, const std::vector<std::vector<int>>& block_params);
  ~RestrictedBlockOperators();
  RestrictedBlockOperators(const RestrictedBlockOperators&) = delete;
  RestrictedBlockOperators& operator=(const RestrictedBlockOperators&) = delete;

  const std::vector<const LinearOperator*>& ops() const { return m_ptrs; }
  /// Products applied so far, summed over the blocks.
  std::int64_t num_products() const;

 private:
  std::vector<std::unique_ptr<LinearOperator>> m_ops;
  std::vector<const LinearOperator*> m_ptrs;  // m_ops, as BlockCgSolver takes them
};

}  // namespace curv
