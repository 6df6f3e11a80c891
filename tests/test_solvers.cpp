// Inverse-curvature solvers in float64 against dense LDLT solves of the same damped matrices on
// tiny networks: CG and PCG (Jacobi from a Hutchinson diagonal, K-FAC), several right-hand sides,
// block-diagonal CG against the dense block-diagonal solve, the Woodbury inverse against the dense
// inverse, statuses (breakdown, iteration cap), and 1 vs 2 threads.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <random>

#include "curvature/block_cg_solver.h"
#include "curvature/cg_solver.h"
#include "curvature/damped_solve.h"
#include "curvature/gram_blocks.h"
#include "curvature/curvature_operator.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/kfac_operator.h"
#include "curvature/woodbury_inverse.h"
#include "src/core/builder.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

namespace {

constexpr double kSolveTol = 1e-8;  // relative error of a solution against the dense LDLT solve
constexpr double kRtol = 1e-12;     // CG stopping tolerance in these tests

using curv_test::synthetic_data;

ObjectiveOptions f64(std::int64_t micro_batch = 3) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  o.fisher_samples = 2;
  return o;
}

Model mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

Model cnn(std::uint64_t seed) {
  ModelBuilder b({2, 5, 5}, seed);
  int x = b.unary(b.conv(b.input(), 3, 3, 2, 1, "conv1"), UnaryKind::Tanh);
  return b.finish(b.linear(b.flatten(x), 3, "fc"));
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

// C with its off-diagonal blocks zeroed: the layers' blocks (Model::blocks("layers")) only.
Matrix block_diagonal(const Matrix& C, const Model& m) {
  Matrix D = Matrix::Zero(C.rows(), C.cols());
  for (const auto& blk : m.blocks("layers")) {
    const Eigen::Index off = m.params()[blk.params[0]].offset;
    D.block(off, off, blk.size, blk.size) = C.block(off, off, blk.size, blk.size);
  }
  return D;
}

Matrix dense(const LinearOperator& op) {
  Matrix Y;
  op.apply(Matrix::Identity(op.rows(), op.rows()), Y);
  return 0.5 * (Y + Y.transpose());
}

// Damping that makes C + lambda I safely positive definite (C may be an indefinite Hessian).
double safe_damping(const Matrix& C) {
  Eigen::SelfAdjointEigenSolver<Matrix> es(C);
  return std::max(0.0, -es.eigenvalues().minCoeff()) + 0.05 * es.eigenvalues().maxCoeff();
}

Vector dense_solve(const Matrix& C, double lambda, const Vector& b) {
  return (C + lambda * Matrix::Identity(C.rows(), C.rows())).ldlt().solve(b);
}

}  // namespace

TEST_CASE("CG equals the dense LDLT solve for the Hessian, GGN, Fisher and empirical Fisher") {
  for (bool conv : {false, true}) {
    Model m = conv ? cnn(1) : mlp(1);
    Dataset d = conv ? synthetic_data({2, 5, 5}, 7, 3, 2, false) : synthetic_data({5}, 7, 3, 2, false);
    auto obj = Objective::create(m, d, f64());
    Vector g;
    obj->gradient(g);
    for (auto kind : {Curvature::Hessian, Curvature::GGN, Curvature::Fisher, Curvature::EmpiricalFisher}) {
      CurvatureOperator C(*obj, kind);
      const Matrix Cd = dense(C);
      const double lambda = safe_damping(Cd);
      CgOptions o;
      o.damping = lambda;
      o.rtol = kRtol;
      o.max_iters = 10 * C.rows();
      CgSolver cg(C, o);
      cg.compute(g);
      const Vector x = dense_solve(Cd, lambda, g);
      INFO(curvature_name(kind), (conv ? " CNN" : " MLP"), ": rel err ", rel(cg.solution(), x), " after ",
           cg.num_iterations(), " iterations");
      CHECK(cg.info() == CompInfo::Successful);
      CHECK(rel(cg.solution(), x) < kSolveTol);
      CHECK(cg.residuals()[0] < 1e-10);
      CHECK(cg.num_operations() == cg.num_iterations() + 1);  // one per iteration, one for the residual
      CHECK(cg.residual_history().rows() == cg.num_iterations() + 1);
    }
  }
}

TEST_CASE("PCG with Jacobi (Hutchinson diagonal) and K-FAC preconditioners equals the dense solve") {
  Model m = cnn(3);
  Dataset d = synthetic_data({2, 5, 5}, 6, 3, 4, false);
  auto obj = Objective::create(m, d, f64());
  Vector g;
  obj->gradient(g);
  CurvatureOperator C(*obj, Curvature::GGN);
  const Matrix Cd = dense(C);
  const double lambda = 1e-2;
  const Vector x = dense_solve(Cd, lambda, g);
  CgOptions o;
  o.damping = lambda;
  o.rtol = kRtol;
  o.max_iters = 10 * C.rows();

  HutchinsonDiagonalOptions ho;
  ho.probes = 20;
  HutchinsonDiagonal hd(C, ho);
  hd.compute();
  const DiagonalOperator jacobi((hd.estimate().array().max(0.0) + lambda).inverse().matrix());
  Kfac kfac(*obj);
  const KfacOperator kinv(kfac, m, {}, KfacOperator::Mode::Inverse, lambda);
  for (const LinearOperator* M : {static_cast<const LinearOperator*>(&jacobi), static_cast<const LinearOperator*>(&kinv)}) {
    CgSolver pcg(C, o, M);
    pcg.compute(g);
    INFO((M == &jacobi ? "Jacobi" : "K-FAC"), ": rel err ", rel(pcg.solution(), x), " in ", pcg.num_iterations());
    CHECK(pcg.info() == CompInfo::Successful);
    CHECK(rel(pcg.solution(), x) < kSolveTol);
    CHECK(pcg.num_preconditioner_operations() >= pcg.num_iterations());
  }
}

TEST_CASE("K-FAC-preconditioned CG solves in one iteration where K-FAC is exact (linear model, MSE)") {
  ModelBuilder b({6}, 5);
  Model lin = b.finish(b.linear(b.input(), 3, "fc"));
  Dataset d = synthetic_data({6}, 9, 3, 6, true);
  auto obj = Objective::create(lin, d, f64());
  Vector g;
  obj->gradient(g);
  CurvatureOperator C(*obj, Curvature::GGN);
  Kfac kfac(*obj);
  const double lambda = 1e-3;
  const KfacOperator kinv(kfac, lin, {}, KfacOperator::Mode::Inverse, lambda);
  CgOptions o;
  o.damping = lambda;
  o.rtol = 1e-10;
  CgSolver pcg(C, o, &kinv);
  pcg.compute(g);
  CHECK(pcg.info() == CompInfo::Successful);
  CHECK(pcg.num_iterations() == 1);
  CHECK(rel(pcg.solution(), dense_solve(dense(C), lambda, g)) < kSolveTol);
}

TEST_CASE("CG on several right-hand sides in lockstep equals one solve per column") {
  Model m = mlp(7);
  Dataset d = synthetic_data({5}, 8, 3, 8, false);
  auto obj = Objective::create(m, d, f64());
  CurvatureOperator C(*obj, Curvature::GGN);
  const Matrix B = Matrix::Random(C.rows(), 3);
  CgOptions o;
  o.damping = 0.1;
  o.rtol = kRtol;
  CgSolver all(C, o);
  all.compute(B);
  CHECK(all.info() == CompInfo::Successful);
  const Matrix Cd = dense(C);
  for (int j = 0; j < 3; ++j) {
    CgSolver one(C, o);
    one.compute(B.col(j));
    CHECK(rel(all.solution().col(j), one.solution()) < kSolveTol);
    CHECK(rel(all.solution().col(j), dense_solve(Cd, 0.1, B.col(j))) < kSolveTol);
  }
}

TEST_CASE("block-diagonal CG equals the dense block-diagonal solve, plain and K-FAC-preconditioned") {
  Model m = cnn(9);
  Dataset d = synthetic_data({2, 5, 5}, 6, 3, 10, false);
  auto obj = Objective::create(m, d, f64());
  Vector g;
  obj->gradient(g);
  CurvatureOperator C(*obj, Curvature::GGN);
  const Matrix Cd = dense(C);
  const double lambda = 1e-2;
  std::vector<std::pair<Eigen::Index, Eigen::Index>> blocks;
  Matrix D = Matrix::Zero(Cd.rows(), Cd.cols());
  for (const auto& blk : m.blocks("layers")) {
    const Eigen::Index off = m.params()[blk.params[0]].offset;
    blocks.push_back({off, blk.size});
    D.block(off, off, blk.size, blk.size) = Cd.block(off, off, blk.size, blk.size);
  }
  REQUIRE(blocks.size() == 2);
  const Vector x = dense_solve(D, lambda, g);
  CgOptions o;
  o.damping = lambda;
  o.rtol = kRtol;
  o.max_iters = 10 * C.rows();
  Kfac kfac(*obj);
  const KfacOperator kinv(kfac, m, {}, KfacOperator::Mode::Inverse, lambda);
  for (const LinearOperator* M : {static_cast<const LinearOperator*>(nullptr), static_cast<const LinearOperator*>(&kinv)}) {
    C.reset_num_products();
    BlockCgSolver bcg(C, blocks, o, M);
    bcg.compute(g);
    INFO((M ? "K-FAC" : "plain"), ": rel err ", rel(bcg.solution(), x), " in ", bcg.num_iterations());
    CHECK(bcg.info() == CompInfo::Successful);
    CHECK(rel(bcg.solution(), x) < kSolveTol);
    CHECK(bcg.residual() < 1e-10);
    CHECK(bcg.block_residuals().size() == 2);
    // Lockstep: at most one pass (with <= L directions) per iteration, plus the residual pass.
    CHECK(bcg.num_operations() <= 2 * (bcg.num_iterations() + 1));
    CHECK(C.num_products() == bcg.num_operations());
    for (auto it : bcg.block_iterations()) CHECK(it <= bcg.num_iterations());
  }
  // Each block as its own operator (a CurvatureOperator on the block's parameters): the same solve.
  std::vector<CurvatureOperator> own;
  std::vector<const LinearOperator*> ops;
  for (const auto& blk : m.blocks("layers")) own.emplace_back(*obj, Curvature::GGN, blk.params);
  for (const auto& op : own) ops.push_back(&op);
  C.reset_num_products();
  BlockCgSolver restricted(C, blocks, ops, o);
  restricted.compute(g);
  INFO("block operators: rel err ", rel(restricted.solution(), x));
  CHECK(restricted.info() == CompInfo::Successful);
  CHECK(rel(restricted.solution(), x) < kSolveTol);
  CHECK(restricted.residual() < 1e-10);
  CHECK(C.num_products() == 0);  // only the block operators were applied
  CHECK(own[0].num_products() + own[1].num_products() == restricted.num_operations());
  // Block operators with the K-FAC preconditioner, a warm start and the iteration callback: each
  // block's own recurrence, as in the L-column pass, and the same solution.
  for (const bool warm : {false, true}) {
    INFO("preconditioned block operators, warm start ", warm);
    const Vector x0 = warm ? Vector(0.5 * x) : Vector();
    CgOptions po = o;
    std::int64_t calls = 0;
    po.on_iteration = [&](Eigen::Index it, const Matrix& X) {
      ++calls;
      CHECK(X.cols() == 1);  // the combined iterate
      CHECK(it == calls);
    };
    BlockCgSolver pass(C, blocks, o, &kinv), compact(C, blocks, ops, po, &kinv);
    pass.compute(g, x0);
    compact.compute(g, x0);
    CHECK(compact.info() == CompInfo::Successful);
    CHECK(rel(compact.solution(), x) < kSolveTol);
    CHECK(rel(compact.solution(), pass.solution()) < kSolveTol);
    CHECK(calls == compact.num_iterations());
    // The pass and the block operators round differently: at rtol 1e-12 a block may take one
    // iteration more or less.
    for (std::size_t l = 0; l < blocks.size(); ++l)
      CHECK(std::abs(compact.block_iterations()[l] - pass.block_iterations()[l]) <= 1);
    CHECK(compact.block_residuals().maxCoeff() < 1e-10);  // true residuals at rounding level, as the pass's
    CHECK(pass.block_residuals().maxCoeff() < 1e-10);
  }
  std::vector<const LinearOperator*> wrong(ops.rbegin(), ops.rend());
  if (blocks[0].second != blocks[1].second) CHECK_THROWS_AS(BlockCgSolver(C, blocks, wrong, o), std::invalid_argument);
  CHECK_THROWS_AS(BlockCgSolver(C, blocks, {ops[0]}, o), std::invalid_argument);
}

TEST_CASE("CG statuses: breakdown on an indefinite matrix and NotConverging at the iteration cap") {
  const DenseOperator indefinite(Matrix(Eigen::Vector2d(1.0, -1.0).asDiagonal()));
  CgSolver cg(indefinite);
  cg.compute(Vector::Ones(2));
  CHECK(cg.info() == CompInfo::NumericalIssue);
  Matrix A = Matrix::Random(50, 50);
  const DenseOperator spd(A * A.transpose() + 1e-3 * Matrix::Identity(50, 50));
  CgOptions o;
  o.max_iters = 2;
  o.rtol = 1e-12;
  CgSolver capped(spd, o);
  capped.compute(Vector::Ones(50));
  CHECK(capped.info() == CompInfo::NotConverging);
  CHECK(capped.num_iterations() == 2);
  CHECK(capped.residuals()[0] > 1e-12);
  CgOptions bad;
  bad.damping = -1;
  CHECK_THROWS_WITH_AS(CgSolver(spd, bad), "CG: damping (= -1.000000) must be >= 0 and finite", std::invalid_argument);
}

TEST_CASE("Woodbury inverse equals the dense inverse of lambda I + (1/m) G G^T, with per-sample gradients") {
  Model m = mlp(11);
  Dataset d = synthetic_data({5}, 8, 3, 12, false);
  const std::int64_t win = 5;
  const Matrix G = per_sample_gradients(m, d, 2, win, f64());
  // (1/m) G G^T is the empirical Fisher of those m samples.
  const Dataset window = d.subset(2, win);
  auto sub = Objective::create(m, window, f64());
  CurvatureOperator ef(*sub, Curvature::EmpiricalFisher);
  CHECK(rel(G * G.transpose() / double(win), dense(ef)) < 1e-12);
  for (double lambda : {1e-4, 1e-1, 10.0}) {
    WoodburyInverse W(G, lambda);
    const Matrix F = lambda * Matrix::Identity(G.rows(), G.rows()) + G * G.transpose() / double(win);
    const Matrix V = Matrix::Random(G.rows(), 3);
    Matrix Y;
    W.apply(V, Y);
    INFO("damping ", lambda);
    CHECK(rel(Y, F.ldlt().solve(V)) < kSolveTol);
    CHECK(rel(F * Y, V) < 1e-9);
  }
  CHECK_THROWS_WITH_AS(WoodburyInverse(G, 0.0), "Woodbury inverse: damping (= 0.000000) must be > 0 and finite",
                       std::invalid_argument);
}

TEST_CASE("CG and block-CG solutions are identical for 1 and 2 threads") {
  Model m = cnn(13);
  Dataset d = synthetic_data({2, 5, 5}, 11, 3, 14, false);
  Vector x1, x2, y1, y2;
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    const ObjectiveOptions oo = f64(2);
    auto obj = Objective::create(m, d, oo);
    Vector g;
    obj->gradient(g);
    CurvatureOperator C(*obj, Curvature::Fisher);
    CgOptions o;
    o.damping = 0.01;
    CgSolver cg(C, o);
    cg.compute(g);
    (threads == 1 ? x1 : x2) = cg.solution();
    BlockCgSolver bcg(C, {{0, 84}, {84, C.rows() - 84}}, o);
    bcg.compute(g);
    (threads == 1 ? y1 : y2) = bcg.solution();
  }
  CHECK(x1 == x2);
  CHECK(y1 == y2);
}

TEST_CASE("damped_solve: every method against its dense oracle, influence scores, option checks") {
  Model m = mlp(15);
  Dataset d = synthetic_data({5}, 6, 3, 16, false);
  const ObjectiveOptions oo = f64();
  auto obj = Objective::create(m, d, oo);
  Vector g;
  obj->gradient(g);
  CurvatureOperator C(*obj, Curvature::GGN);
  const Matrix Cd = dense(C);
  const double lambda = 0.05;
  DampedSolveOptions o;
  o.damping = lambda;
  o.rtol = kRtol;
  for (auto method : {SolveMethod::Cg, SolveMethod::Pcg, SolveMethod::BlockCg, SolveMethod::Kfac, SolveMethod::Woodbury}) {
    o.method = method;
    o.preconditioner = method == SolveMethod::BlockCg ? "none" : "kfac";
    o.window = d.size();
    const DampedSolveResult r = damped_solve(*obj, d, g, o, oo);
    INFO(solve_method_name(method));
    CHECK(r.info == CompInfo::Successful);
    Vector expect;
    if (method == SolveMethod::Cg || method == SolveMethod::Pcg) {
      expect = dense_solve(Cd, lambda, g);
    } else if (method == SolveMethod::BlockCg) {
      expect = dense_solve(block_diagonal(Cd, m), lambda, g);
      CHECK(r.blocks.size() == 2);
    } else if (method == SolveMethod::Kfac) {
      Kfac kfac(*obj);
      expect = dense_solve(dense(KfacOperator(kfac, m)), lambda, g);
    } else {
      const Matrix G = per_sample_gradients(m, d, 0, d.size(), oo);
      expect = dense_solve(G * G.transpose() / double(d.size()), lambda, g);
    }
    CHECK(rel(r.x, expect) < kSolveTol);
    const double res = (Cd * r.x + lambda * r.x - g).norm() / g.norm();
    CHECK(std::abs(r.residual - res) <= 1e-8 * std::max(res, 1e-6));
    CHECK(r.b_dot_x == doctest::Approx(g.dot(r.x)).epsilon(1e-12));
  }
  o.method = SolveMethod::Cg;
  o.influence = true;
  const DampedSolveResult r = damped_solve(*obj, d, g, o, oo);
  const Matrix G = per_sample_gradients(m, d, 0, d.size(), oo);
  CHECK(rel(r.influence, -(G.transpose() * r.x)) < 1e-12);
  DampedSolveOptions bad;
  bad.curvature = "hessian";
  bad.damping = 0;
  CHECK_THROWS_WITH_AS(validate_damped_solve(bad), "damping must be > 0 for the Hessian, which may be indefinite (got 0)",
                       std::invalid_argument);
  bad.curvature = "ggn";
  CHECK(validate_damped_solve(bad).find("damping 0") == 0);  // a warning, not an error
  bad.curvature = "empirical-fisher";
  CHECK_THROWS_AS(validate_damped_solve(bad), std::invalid_argument);
}

TEST_CASE("damped_solve block-cg with restricted blocks equals the dense block solve, 1 vs 2 threads identical") {
  Model m = mlp(17);
  Dataset d = synthetic_data({5}, 9, 3, 18, false);
  const double lambda = 0.02;
  for (const char* curvature : {"ggn", "fisher", "hessian"}) {
    INFO(curvature);
    Vector x[2];
    for (int threads : {1, 2}) {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
      const ObjectiveOptions oo = f64(2);
      auto obj = Objective::create(m, d, oo);
      Vector g;
      obj->gradient(g);
      CurvatureOperator C(*obj, parse_curvature(curvature));
      const Matrix Cd = dense(C);
      REQUIRE(m.blocks("layers").size() == 2);
      const Matrix D = block_diagonal(Cd, m);
      const double damp = lambda + safe_damping(D);  // the Hessian's blocks may be indefinite
      DampedSolveOptions o;
      o.curvature = curvature;
      o.method = SolveMethod::BlockCg;
      o.preconditioner = "none";
      o.damping = damp;
      o.rtol = kRtol;
      o.restricted_blocks = true;
      const DampedSolveResult r = damped_solve(*obj, d, g, o, oo);
      CHECK(r.info == CompInfo::Successful);
      CHECK(rel(r.x, dense_solve(D, damp, g)) < kSolveTol);
      const double res = (Cd * r.x + damp * r.x - g).norm() / g.norm();
      CHECK(std::abs(r.residual - res) <= 1e-8 * std::max(res, 1e-6));
      // Block products (one per active block and iteration) and the full residual's.
      std::int64_t block_products = 0;
      for (const auto& b : r.blocks) block_products += b.iterations;
      CHECK(r.products >= block_products + 1);
      CHECK(r.products <= 2 * (r.iterations + 1) + 1);
      // The unrestricted L-column pass solves the same system.
      o.restricted_blocks = false;
      o.block_products = BlockProducts::Pass;
      const DampedSolveResult plain = damped_solve(*obj, d, g, o, oo);
      CHECK(rel(r.x, plain.x) < kSolveTol);
      x[threads - 1] = r.x;
    }
    CHECK(x[0] == x[1]);
  }
  DampedSolveOptions bad;
  bad.restricted_blocks = true;
  bad.method = SolveMethod::Cg;
  CHECK_THROWS_WITH_AS(validate_damped_solve(bad), "restricted blocks apply to block-cg, not cg", std::invalid_argument);
  bad.method = SolveMethod::BlockCg;
  bad.curvature = "kfac";
  CHECK_THROWS_AS(validate_damped_solve(bad), std::invalid_argument);
}

namespace {

// A CNN with a LayerNorm between its layers: the LayerNorm's block is no linear layer (gram leaves
// it to a restricted operator).
Model cnn_ln(std::uint64_t seed) {
  ModelBuilder b({2, 5, 5}, seed);
  int x = b.unary(b.conv(b.input(), 3, 3, 2, 1, "conv1"), UnaryKind::Tanh);
  x = b.layer_norm(b.flatten(x), "ln");
  x = b.unary(b.linear(x, 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

Matrix block_of(const Matrix& C, const Model& m, const ParamBlock& blk) {
  const Eigen::Index off = m.params()[blk.params[0]].offset;
  return C.block(off, off, blk.size, blk.size);
}

}  // namespace

TEST_CASE("gram block products equal the exact diagonal blocks of the GGN, Fisher and empirical Fisher") {
  struct Case {
    const char* name;
    Model model;
    Dataset data;
  };
  std::vector<Case> cases;
  cases.push_back({"mlp", mlp(21), synthetic_data({5}, 7, 3, 22, false)});
  cases.push_back({"cnn", cnn(23), synthetic_data({2, 5, 5}, 6, 3, 24, false)});
  cases.push_back({"cnn+layernorm", cnn_ln(25), synthetic_data({2, 5, 5}, 5, 3, 26, false)});
  {
    ModelBuilder b({5}, 27);  // MSE: Lambda_n = (2 / D) I
    int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
    cases.push_back({"mlp-mse", b.finish(b.linear(x, 3, "fc2")), synthetic_data({5}, 6, 3, 28, true)});
  }
  for (auto& c : cases) {
    for (const char* curvature : {"ggn", "fisher", "ef"}) {
      for (std::int64_t S : {std::int64_t(0), std::int64_t(3)}) {
        if (std::string(curvature) != "fisher" && S == 3) continue;
        INFO(c.name, " ", curvature, " fisher_samples ", S);
        ObjectiveOptions oo = f64(2);
        oo.fisher_samples = S;
        oo.fisher_seed = 5;
        auto obj = Objective::create(c.model, c.data, oo);
        const Curvature kind = parse_curvature(curvature);
        const Matrix Cd = dense(CurvatureOperator(*obj, kind));
        const auto blocks = c.model.blocks("layers");
        GramBlockOperators gram(*obj, c.data, oo, kind, blocks);
        const bool ln = std::string(c.name) == "cnn+layernorm";
        CHECK(gram.covered() == (ln ? blocks.size() - 1 : blocks.size()));
        CHECK(gram.reason().empty() == !ln);
        CHECK(gram.cotangents() == (kind == Curvature::EmpiricalFisher ? 1 : S > 0 ? S : 3));
        CHECK(gram.bytes() > 0);
        for (std::size_t l = 0; l < blocks.size(); ++l) {
          INFO("block ", blocks[l].name);
          if (!gram.ops()[l]) {
            CHECK(blocks[l].name == "ln");
            continue;
          }
          const Matrix G = block_of(Cd, c.model, blocks[l]);
          CHECK(rel(dense(*gram.ops()[l]), G) < 1e-11);
        }
      }
    }
  }
  // Not covered: the Hessian, a cap below the store, BatchNorm with batch statistics.
  Model m = cnn(29);
  Dataset d = synthetic_data({2, 5, 5}, 4, 3, 30, false);
  const ObjectiveOptions oo = f64(2);
  auto obj = Objective::create(m, d, oo);
  GramBlockOperators h(*obj, d, oo, Curvature::Hessian, m.blocks("layers"));
  CHECK(h.covered() == 0);
  CHECK(h.bytes() == 0);
  CHECK(h.reason().find("Hessian") != std::string::npos);
  GramBlockOperators capped(*obj, d, oo, Curvature::GGN, m.blocks("layers"), 100);
  CHECK(capped.covered() == 0);
  CHECK(capped.reason().find("cap") != std::string::npos);
  ModelBuilder b({5}, 31);
  int x = b.batch_norm(b.linear(b.input(), 4, "fc1"), "bn", true);
  Model bn = b.finish(b.linear(b.unary(x, UnaryKind::Tanh), 3, "fc2"));
  Dataset d5 = synthetic_data({5}, 6, 3, 32, false);
  auto obn = Objective::create(bn, d5, oo);
  GramBlockOperators mixed(*obn, d5, oo, Curvature::GGN, bn.blocks("layers"));
  CHECK(mixed.covered() == 0);
  CHECK(mixed.reason().find("mixes the batch") != std::string::npos);
}

TEST_CASE("damped_solve block-cg: gram products (the default where they apply) solve the dense block system") {
  Model m = cnn_ln(33);
  Dataset d = synthetic_data({2, 5, 5}, 7, 3, 34, false);
  const double lambda = 0.03;
  Vector x[2];
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    const ObjectiveOptions oo = f64(2);
    auto obj = Objective::create(m, d, oo);
    Vector g;
    obj->gradient(g);
    const Matrix Cd = dense(CurvatureOperator(*obj, Curvature::GGN));
    const Matrix D = block_diagonal(Cd, m);
    DampedSolveOptions o;
    o.method = SolveMethod::BlockCg;
    o.preconditioner = "none";
    o.damping = lambda;
    o.rtol = kRtol;
    const DampedSolveResult r = damped_solve(*obj, d, g, o, oo);
    CHECK(r.block_products == "gram+restricted");  // the LayerNorm block is restricted
    CHECK(r.gram_blocks == 3);
    CHECK(r.gram_bytes > 0);
    CHECK(r.info == CompInfo::Successful);
    CHECK(rel(r.x, dense_solve(D, lambda, g)) < kSolveTol);
    // Model products: the LayerNorm block's (one per iteration while active) and the residual's.
    CHECK(r.products <= r.iterations + 2);
    x[threads - 1] = r.x;
    // Forced gram, a cap that leaves no room: auto falls back to restricted, gram fails.
    o.gram_max_bytes = 10;
    const DampedSolveResult fallback = damped_solve(*obj, d, g, o, oo);
    CHECK(fallback.block_products == "restricted");
    CHECK(fallback.gram_note.find("cap") != std::string::npos);
    CHECK(rel(fallback.x, r.x) < kSolveTol);
    o.block_products = BlockProducts::Gram;
    CHECK_THROWS_AS(damped_solve(*obj, d, g, o, oo), std::invalid_argument);
    o.block_products = BlockProducts::Auto;
    o.curvature = "hessian";
    o.damping = lambda + safe_damping(Cd);
    CHECK(damped_solve(*obj, d, g, o, oo).block_products == "restricted");
  }
  CHECK(x[0] == x[1]);
  DampedSolveOptions bad;
  bad.method = SolveMethod::BlockCg;
  bad.curvature = "hessian";
  bad.block_products = BlockProducts::Gram;
  CHECK_THROWS_AS(validate_damped_solve(bad), std::invalid_argument);
  bad.curvature = "ggn";
  bad.restricted_blocks = true;
  CHECK_THROWS_AS(validate_damped_solve(bad), std::invalid_argument);
  bad.restricted_blocks = false;
  bad.method = SolveMethod::Cg;
  CHECK_THROWS_WITH_AS(validate_damped_solve(bad), "block products apply to block-cg, not cg", std::invalid_argument);
}

TEST_CASE("gram block products of a float32 model agree with the float64 blocks to float32 rounding") {
  Model m = cnn(35);
  Dataset d = synthetic_data({2, 5, 5}, 9, 3, 36, false);
  ObjectiveOptions o32;
  o32.micro_batch = 4;
  ObjectiveOptions o64 = f64(4);
  auto obj32 = Objective::create(m, d, o32);
  auto obj64 = Objective::create(m, d, o64);
  const auto blocks = m.blocks("layers");
  GramBlockOperators g32(*obj32, d, o32, Curvature::GGN, blocks);
  const Matrix Cd = dense(CurvatureOperator(*obj64, Curvature::GGN));
  REQUIRE(g32.covered() == blocks.size());
  for (std::size_t l = 0; l < blocks.size(); ++l) CHECK(rel(dense(*g32.ops()[l]), block_of(Cd, m, blocks[l])) < 1e-5);
}
