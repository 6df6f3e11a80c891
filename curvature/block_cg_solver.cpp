#include "curvature/block_cg_solver.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/curvature_operator.h"
#include "curvature/internal/cg_step.h"

namespace curv {

namespace {

// C restricted to its diagonal blocks, column by column: a column is nonzero on one block only
// (CG keeps each block's vectors on its block), and its product is read on that block. One pass of
// C serves every block's column (the mode without block operators).
class BlockMaskedOperator final : public LinearOperator {
 public:
  BlockMaskedOperator(const LinearOperator& C, const std::vector<std::pair<Index, Index>>& blocks)
      : m_C(C), m_blocks(blocks) {}
  Index rows() const override { return m_C.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    Matrix CX;
    m_C.apply(X, CX);  // one pass for every block's direction
    Y = Matrix::Zero(X.rows(), X.cols());
    for (Index j = 0; j < X.cols(); ++j) {
      for (const auto& [off, size] : m_blocks)
        if (!X.col(j).segment(off, size).isZero(0)) {
          Y.col(j).segment(off, size) = CX.col(j).segment(off, size);
          break;
        }
    }
  }

 private:
  const LinearOperator& m_C;
  const std::vector<std::pair<Index, Index>>& m_blocks;
};

}  // namespace

BlockCgSolver::BlockCgSolver(const LinearOperator& C, std::vector<std::pair<Index, Index>> blocks, CgOptions options,
                             const LinearOperator* preconditioner)
    : m_C(C), m_blocks(std::move(blocks)), m_options(options), m_M(preconditioner) {
  if (m_blocks.empty()) throw std::invalid_argument("block CG: no blocks");
  std::vector<std::pair<Index, Index>> sorted = m_blocks;
  std::sort(sorted.begin(), sorted.end());
  Index end = 0;
  for (const auto& [off, size] : sorted) {
    if (off < end || size < 1 || off + size > C.rows())
      throw std::invalid_argument("block CG: block (offset " + std::to_string(off) + ", size " + std::to_string(size) +
                                  ") overlaps another or leaves the " + std::to_string(C.rows()) + " rows");
    end = off + size;
  }
  CgSolver check(C, options, preconditioner);  // validates the options
}

BlockCgSolver::BlockCgSolver(const LinearOperator& C, std::vector<std::pair<Index, Index>> blocks,
                             std::vector<const LinearOperator*> block_ops, CgOptions options,
                             const LinearOperator* preconditioner)
    : BlockCgSolver(C, std::move(blocks), options, preconditioner) {
  if (block_ops.empty()) return;  // one pass of C on the L columns, as the other constructor
  if (block_ops.size() != m_blocks.size())
    throw std::invalid_argument("block CG: " + std::to_string(block_ops.size()) + " block operators for " +
                                std::to_string(m_blocks.size()) + " blocks");
  for (std::size_t l = 0; l < block_ops.size(); ++l)
    if (!block_ops[l] || block_ops[l]->rows() != m_blocks[l].second)
      throw std::invalid_argument("block CG: the operator of block " + std::to_string(l) + " has " +
                                  std::to_string(block_ops[l] ? block_ops[l]->rows() : 0) + " rows, the block " +
                                  std::to_string(m_blocks[l].second));
  m_block_ops = std::move(block_ops);
}

BlockCgSolver::Index BlockCgSolver::compute(const Vector& b) { return compute(b, Vector()); }

BlockCgSolver::Index BlockCgSolver::compute(const Vector& b, const Vector& x0) {
  if (x0.size() && x0.size() != b.size())
    throw std::invalid_argument("block CG: the starting point has " + std::to_string(x0.size()) + " rows, expected " +
                                std::to_string(b.size()));
  if (b.size() != m_C.rows())
    throw std::invalid_argument("block CG: right-hand side has " + std::to_string(b.size()) + " rows, expected " +
                                std::to_string(m_C.rows()));
  if (!m_block_ops.empty()) return compute_compact(b, x0);
  const Index L = Index(m_blocks.size());
  Matrix B = Matrix::Zero(b.size(), L);
  for (Index l = 0; l < L; ++l) B.col(l).segment(m_blocks[l].first, m_blocks[l].second) = b.segment(m_blocks[l].first, m_blocks[l].second);
  BlockMaskedOperator D(m_C, m_blocks);
  CgSolver cg(D, m_options, m_M);
  Matrix X0;
  if (x0.size()) {
    X0 = Matrix::Zero(b.size(), L);
    for (Index l = 0; l < L; ++l)
      X0.col(l).segment(m_blocks[l].first, m_blocks[l].second) = x0.segment(m_blocks[l].first, m_blocks[l].second);
  }
  m_iterations = cg.compute(B, X0);
  m_info = cg.info();
  m_operations = cg.num_operations();
  m_x = cg.solution().rowwise().sum();
  m_block_residuals = cg.residuals();
  m_history = cg.residual_history();
  summarize(b);
  return m_iterations;
}

// Block operators: CgSolver's recurrence (cg_solver.h) per block on the block's own vectors, all
// blocks in lockstep, so an iteration costs the active blocks' products plus O(sum of their
// sizes) (on an L-column [P, L] matrix it cost O(P L): 2 GGN products per iteration on ResNet-20).
BlockCgSolver::Index BlockCgSolver::compute_compact(const Vector& b, const Vector& x0) {
  const std::size_t L = m_blocks.size();
  const double lambda = m_options.damping;
  m_operations = 0;
  m_iterations = 0;
  m_info = CompInfo::Successful;
  std::vector<Vector> x(L), r(L), p(L), z(L);
  std::vector<double> bnorm(L), rz(L);
  auto apply = [&](std::size_t l, const Vector& v, Vector& out) {
    Matrix Y;
    m_block_ops[l]->apply(v, Y);
    ++m_operations;
    out = Y.col(0);
    if (lambda != 0) out.noalias() += lambda * v;
  };
  // z_l = M r_l for the listed blocks: M acts on full-length vectors (block-diagonal on the blocks).
  auto precondition = [&](const std::vector<std::size_t>& ls) {
    if (!m_M) {
      for (std::size_t l : ls) z[l] = r[l];
      return;
    }
    if (ls.empty()) return;
    Matrix In = Matrix::Zero(m_C.rows(), Index(ls.size())), Out;
    for (std::size_t a = 0; a < ls.size(); ++a) In.col(Index(a)).segment(m_blocks[ls[a]].first, m_blocks[ls[a]].second) = r[ls[a]];
    m_M->apply(In, Out);
    for (std::size_t a = 0; a < ls.size(); ++a) z[ls[a]] = Out.col(Index(a)).segment(m_blocks[ls[a]].first, m_blocks[ls[a]].second);
  };
  std::vector<std::size_t> all(L), active;
  std::vector<double> hist(L, 1.0);
  for (std::size_t l = 0; l < L; ++l) {
    all[l] = l;
    const auto [off, size] = m_blocks[l];
    r[l] = b.segment(off, size);
    bnorm[l] = r[l].norm();
    if (x0.size() && !x0.segment(off, size).isZero(0)) {
      x[l] = x0.segment(off, size);
      Vector ax;
      apply(l, x[l], ax);
      r[l] -= ax;
    } else {
      x[l] = Vector::Zero(size);
    }
  }
  precondition(all);
  for (std::size_t l = 0; l < L; ++l) {
    p[l] = z[l];
    rz[l] = r[l].dot(z[l]);
    hist[l] = bnorm[l] > 0 ? r[l].norm() / bnorm[l] : 0.0;
    if (bnorm[l] > 0 && hist[l] > m_options.rtol) active.push_back(l);
  }
  std::vector<std::vector<double>> rows{hist};
  auto combined = [&] {
    Matrix X = Matrix::Zero(m_C.rows(), 1);
    for (std::size_t l = 0; l < L; ++l) X.col(0).segment(m_blocks[l].first, m_blocks[l].second) = x[l];
    return X;
  };
  bool broke = false, nan = false;
  while (!active.empty() && m_iterations < m_options.max_iters) {
    ++m_iterations;
    std::vector<std::size_t> still;
    Vector q;
    for (std::size_t l : active) {
      apply(l, p[l], q);
      const auto step = internal::cg_update(x[l], r[l], p[l], q, rz[l], bnorm[l], m_options.rtol, hist[l]);
      nan |= step == internal::CgStep::NotFinite;
      broke |= step == internal::CgStep::Indefinite;
      if (step == internal::CgStep::Active) still.push_back(l);
    }
    rows.push_back(hist);
    if (m_options.on_iteration) m_options.on_iteration(m_iterations, combined());
    precondition(still);
    for (std::size_t l : still) internal::cg_direction(p[l], r[l], z[l], rz[l]);
    active = std::move(still);
  }
  m_history.resize(Index(rows.size()), Index(L));
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t l = 0; l < L; ++l) m_history(Index(i), Index(l)) = rows[i][l];
  // True residuals with one more product per block.
  m_block_residuals.resize(Index(L));
  m_x = combined().col(0);
  for (std::size_t l = 0; l < L; ++l) {
    Vector ax;
    apply(l, x[l], ax);
    const double res = (ax - b.segment(m_blocks[l].first, m_blocks[l].second)).norm();
    m_block_residuals[Index(l)] = bnorm[l] > 0 ? res / bnorm[l] : 0.0;
  }
  m_info = internal::cg_info(nan || !m_block_residuals.allFinite(), broke, !active.empty());
  summarize(b);
  return m_iterations;
}

// From the history and the per-block residuals: each block's iterations and the overall residual.
void BlockCgSolver::summarize(const Vector& b) {
  const std::size_t L = m_blocks.size();
  m_block_iterations.assign(L, 0);
  for (std::size_t l = 0; l < L; ++l) {
    Index it = 0;
    while (it + 1 < m_history.rows() && m_history(it + 1, Index(l)) != m_history(it, Index(l))) ++it;
    m_block_iterations[l] = it;
  }
  double num = 0;
  for (std::size_t l = 0; l < L; ++l) {
    const double bl = b.segment(m_blocks[l].first, m_blocks[l].second).norm();
    num += std::pow(m_block_residuals[Index(l)] * bl, 2);
  }
  const double bn = b.norm();
  m_residual = bn > 0 ? std::sqrt(num) / bn : 0.0;
}

RestrictedBlockOperators::RestrictedBlockOperators(Objective& objective, Curvature kind,
                                                   const std::vector<std::vector<int>>& block_params) {
  for (const auto& ps : block_params) {
    m_ops.push_back(std::make_unique<CurvatureOperator>(objective, kind, ps));
    m_ptrs.push_back(m_ops.back().get());
  }
}

RestrictedBlockOperators::~RestrictedBlockOperators() = default;

std::int64_t RestrictedBlockOperators::num_products() const {
  std::int64_t n = 0;
  for (const auto& op : m_ops) n += op->num_products();
  return n;
}

}  // namespace curv
