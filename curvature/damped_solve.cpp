#include "curvature/damped_solve.h"

#include <cmath>
#include <memory>
#include <stdexcept>

#include "curvature/block_cg_solver.h"
#include "curvature/curvature_operator.h"
#include "curvature/gram_blocks.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/kfac_operator.h"
#include "curvature/woodbury_inverse.h"

namespace curv {

const char* solve_method_name(SolveMethod m) {
  switch (m) {
    case SolveMethod::Cg: return "cg";
    case SolveMethod::Pcg: return "pcg";
    case SolveMethod::BlockCg: return "block-cg";
    case SolveMethod::Kfac: return "kfac";
    case SolveMethod::Woodbury: return "woodbury";
  }
  return "?";
}

SolveMethod parse_solve_method(const std::string& s) {
  for (auto m : {SolveMethod::Cg, SolveMethod::Pcg, SolveMethod::BlockCg, SolveMethod::Kfac, SolveMethod::Woodbury})
    if (s == solve_method_name(m)) return m;
  throw std::invalid_argument("unknown solve method '" + s + "' (expected cg, pcg, block-cg, kfac or woodbury)");
}

const char* block_products_name(BlockProducts b) {
  switch (b) {
    case BlockProducts::Auto: return "auto";
    case BlockProducts::Gram: return "gram";
    case BlockProducts::Restricted: return "restricted";
    case BlockProducts::Pass: return "pass";
  }
  return "?";
}

BlockProducts parse_block_products(const std::string& s) {
  for (auto b : {BlockProducts::Auto, BlockProducts::Gram, BlockProducts::Restricted, BlockProducts::Pass})
    if (s == block_products_name(b)) return b;
  throw std::invalid_argument("unknown block products '" + s + "' (expected auto, gram, restricted or pass)");
}

std::string validate_damped_solve(const DampedSolveOptions& o) {
  const std::string& c = o.curvature;
  if (c != "kfac") parse_curvature(c);  // throws for an unknown name
  if (o.preconditioner != "kfac" && o.preconditioner != "jacobi" && o.preconditioner != "none")
    throw std::invalid_argument("unknown preconditioner '" + o.preconditioner + "' (expected kfac, jacobi or none)");
  if (o.method == SolveMethod::Pcg && o.preconditioner == "none")
    throw std::invalid_argument("pcg needs a preconditioner (kfac or jacobi)");
  if (!std::isfinite(o.damping) || o.damping < 0)
    throw std::invalid_argument("damping must be finite and >= 0, got " + std::to_string(o.damping));
  if (o.damping == 0) {
    if (c == "hessian")
      throw std::invalid_argument("damping must be > 0 for the Hessian, which may be indefinite (got 0)");
    if (o.method == SolveMethod::Kfac || o.method == SolveMethod::Woodbury)
      throw std::invalid_argument(std::string("damping must be > 0 for the ") + solve_method_name(o.method) +
                                  " inverse (got 0)");
    if (o.method == SolveMethod::Pcg && o.preconditioner == "kfac")
      throw std::invalid_argument("damping must be > 0 for the K-FAC preconditioner (got 0)");
  }
  if (!(o.rtol > 0 && o.rtol < 1)) throw std::invalid_argument("rtol must be in (0, 1), got " + std::to_string(o.rtol));
  if (o.restricted_blocks && o.method != SolveMethod::BlockCg)
    throw std::invalid_argument(std::string("restricted blocks apply to block-cg, not ") + solve_method_name(o.method));
  if (o.restricted_blocks && o.block_products != BlockProducts::Auto && o.block_products != BlockProducts::Restricted)
    throw std::invalid_argument(std::string("restricted blocks contradict block products '") +
                                block_products_name(o.block_products) + "'");
  if (o.block_products != BlockProducts::Auto && o.method != SolveMethod::BlockCg)
    throw std::invalid_argument(std::string("block products apply to block-cg, not ") + solve_method_name(o.method));
  if (o.block_products == BlockProducts::Gram && (c == "kfac" || c == "hessian"))
    throw std::invalid_argument("gram block products need ggn, fisher or ef (the " + c +
                                " has no per-sample factorization)");
  if (o.block_products == BlockProducts::Restricted && c == "kfac")
    throw std::invalid_argument("restricted blocks apply to hessian, ggn, fisher and ef (K-FAC is block-diagonal already)");
  if (o.restricted_blocks && c == "kfac")
    throw std::invalid_argument("restricted blocks apply to hessian, ggn, fisher and ef (K-FAC is block-diagonal already)");
  if (o.max_iters < 1 || o.window < 1 || o.diag_probes < 1)
    throw std::invalid_argument("max_iters, window and diag_probes must be >= 1");
  if (o.damping == 0)
    return "damping 0: " + c + " is positive semi-definite but singular when the parameters outnumber the samples "
           "times the outputs; CG may not converge";
  return {};
}

DampedSolveResult damped_solve(Objective& objective, const Dataset& data, const Eigen::VectorXd& b,
                               const DampedSolveOptions& o, const ObjectiveOptions& objective_options) {
  validate_damped_solve(o);
  const Model& model = objective.model();
  if (b.size() != objective.num_params())
    throw std::invalid_argument("right-hand side has " + std::to_string(b.size()) + " entries, the model " +
                                std::to_string(objective.num_params()) + " parameters");
  // K-FAC, when the curvature, the method or the preconditioner needs it.
  const bool needs_kfac = o.curvature == "kfac" || o.method == SolveMethod::Kfac ||
                          ((o.method == SolveMethod::Pcg || o.method == SolveMethod::BlockCg) && o.preconditioner == "kfac");
  std::unique_ptr<Kfac> kfac;
  if (needs_kfac) kfac = std::make_unique<Kfac>(objective, o.kfac);
  std::unique_ptr<LinearOperator> C;
  if (o.curvature == "kfac")
    C = std::make_unique<KfacOperator>(*kfac, model);
  else
    C = std::make_unique<CurvatureOperator>(objective, parse_curvature(o.curvature));
  std::unique_ptr<LinearOperator> M;
  const bool precondition = o.method == SolveMethod::Pcg || (o.method == SolveMethod::BlockCg && o.preconditioner != "none");
  if (precondition && o.preconditioner == "kfac") {
    M = std::make_unique<KfacOperator>(*kfac, model, std::vector<int>{}, KfacOperator::Mode::Inverse, o.damping);
  } else if (precondition) {
    HutchinsonDiagonalOptions ho;
    ho.probes = o.diag_probes;
    ho.seed = o.seed;
    HutchinsonDiagonal hd(*C, ho);
    hd.compute();
    M = std::make_unique<DiagonalOperator>((hd.estimate().array().max(0.0) + o.damping).inverse().matrix());
  }

  DampedSolveResult r;
  CgOptions co;
  co.damping = o.damping;
  co.rtol = o.rtol;
  co.max_iters = o.max_iters;
  if (o.method == SolveMethod::Cg || o.method == SolveMethod::Pcg) {
    CgSolver cg(*C, co, M.get());
    r.iterations = cg.compute(b);
    r.x = cg.solution().col(0);
    r.info = cg.info();
    r.residual = cg.residuals()[0];
    r.residual_history = cg.residual_history();
  } else if (o.method == SolveMethod::BlockCg) {
    std::vector<std::pair<Eigen::Index, Eigen::Index>> ranges;
    const auto blocks = model.blocks("layers");
    for (const auto& blk : blocks) ranges.push_back({model.params()[blk.params[0]].offset, blk.size});
    const BlockProducts mode = o.restricted_blocks ? BlockProducts::Restricted : o.block_products;
    // gram where it covers a block (auto, gram), restricted for the rest (auto, gram, restricted).
    std::unique_ptr<GramBlockOperators> gram;
    if (o.curvature != "kfac" && (mode == BlockProducts::Auto || mode == BlockProducts::Gram)) {
      gram = std::make_unique<GramBlockOperators>(objective, data, objective_options, parse_curvature(o.curvature),
                                                  blocks, o.gram_max_bytes);
      if (mode == BlockProducts::Gram && gram->covered() == 0)
        throw std::invalid_argument("gram block products: " + gram->reason());
      r.gram_blocks = std::int64_t(gram->covered());
      r.gram_bytes = gram->bytes();
      r.gram_seconds = gram->setup_seconds();
      r.gram_note = gram->reason();
    }
    std::vector<std::vector<int>> own_params;  // C_ll on layer l's own parameters, for the blocks gram leaves
    std::vector<std::size_t> own_blocks;
    if (mode != BlockProducts::Pass && o.curvature != "kfac")
      for (std::size_t l = 0; l < blocks.size(); ++l)
        if (!gram || !gram->ops()[l]) {
          own_params.push_back(blocks[l].params);
          own_blocks.push_back(l);
        }
    const RestrictedBlockOperators own(objective, parse_curvature(o.curvature == "kfac" ? "ggn" : o.curvature), own_params);
    std::vector<const LinearOperator*> ops;
    if (r.gram_blocks > 0 || !own_blocks.empty()) {
      ops = gram ? gram->ops() : std::vector<const LinearOperator*>(blocks.size(), nullptr);
      for (std::size_t i = 0; i < own_blocks.size(); ++i) ops[own_blocks[i]] = own.ops()[i];
    }
    r.block_products = ops.empty() ? "pass"
                       : r.gram_blocks == 0 ? "restricted"
                       : own_blocks.empty() ? "gram"
                                            : "gram+restricted";
    BlockCgSolver bcg(*C, ranges, ops, co, M.get());
    r.iterations = bcg.compute(b);
    r.products += own.num_products();
    r.x = bcg.solution();
    r.info = bcg.info();
    r.residual_history = bcg.residual_history();
    for (size_t l = 0; l < blocks.size(); ++l)
      r.blocks.push_back({blocks[l].name, bcg.block_residuals()[Eigen::Index(l)], bcg.block_iterations()[l]});
  } else {
    std::unique_ptr<LinearOperator> inv;
    if (o.method == SolveMethod::Kfac) {
      inv = std::make_unique<KfacOperator>(*kfac, model, std::vector<int>{}, KfacOperator::Mode::Inverse, o.damping);
    } else {
      const std::int64_t m = std::min<std::int64_t>(o.window, data.size());
      inv = std::make_unique<WoodburyInverse>(per_sample_gradients(model, data, 0, m, objective_options), o.damping);
    }
    Eigen::MatrixXd X;
    inv->apply(b, X);
    r.x = X.col(0);
    r.iterations = 1;
    r.info = CompInfo::Successful;
  }
  if (o.method != SolveMethod::BlockCg && o.method != SolveMethod::Cg && o.method != SolveMethod::Pcg) {
    Eigen::MatrixXd Ax;
    C->apply(r.x, Ax);
    const double bn = b.norm();
    r.residual = bn > 0 ? (Ax.col(0) + o.damping * r.x - b).norm() / bn : 0.0;
    r.residual_history = Eigen::MatrixXd::Constant(1, 1, r.residual);
  } else if (o.method == SolveMethod::BlockCg) {
    // The residual against C itself (the solve used its diagonal blocks).
    Eigen::MatrixXd Ax;
    C->apply(r.x, Ax);
    const double bn = b.norm();
    r.residual = bn > 0 ? (Ax.col(0) + o.damping * r.x - b).norm() / bn : 0.0;
  }
  if (o.curvature == "fisher") {
    Eigen::MatrixXd Fb;
    C->apply(b, Fb);
    if (objective.product_stderr().size() == 1 && objective.product_stderr()[0] > 0) {
      r.fisher_quad = b.dot(Fb.col(0));
      r.fisher_quad_stderr = objective.product_stderr()[0];
    }
  }
  r.products += C->num_products();
  r.rhs_norm = b.norm();
  r.x_norm = r.x.norm();
  r.b_dot_x = b.dot(r.x);
  if (o.influence) {
    const Eigen::MatrixXd G = per_sample_gradients(model, data, 0, data.size(), objective_options);
    r.influence = -(G.transpose() * r.x);
  }
  return r;
}

}  // namespace curv
