// The true Fisher (labels sampled from the model) on tiny networks in float64: its Monte Carlo mean
// converges to the exact Fisher (= the GGN for cross-entropy and MSE) within its reported standard
// errors, it is a fixed symmetric PSD matrix of rank <= N S, its draws do not depend on the
// micro-batches or the thread count, and the curvature names parse as documented.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <random>

#include "src/core/builder.h"
#include "src/core/objective.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

namespace {

constexpr double kStdErrs = 4.0;   // MC estimate within this many standard errors of the truth
constexpr double kSymTol = 1e-12;  // float64 symmetry
constexpr double kRankTol = 1e-9;  // relative eigenvalue below which a direction counts as null

using curv_test::synthetic_data;

Model mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

Model cnn(std::uint64_t seed) {
  ModelBuilder b({2, 5, 5}, seed);
  int x = b.unary(b.conv(b.input(), 3, 3, 1, 1, "conv1"), UnaryKind::Tanh);
  x = b.avg_pool(x, 2, 1);
  return b.finish(b.linear(b.flatten(x), 3, "fc"));
}

ObjectiveOptions fisher_opts(std::int64_t samples, std::uint64_t seed, std::int64_t micro_batch = 3) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  o.fisher_samples = samples;
  o.fisher_seed = seed;
  return o;
}

Matrix random_directions(std::int64_t P, std::int64_t k, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  Matrix V(P, k);
  for (std::int64_t i = 0; i < V.size(); ++i) V.data()[i] = nd(rng);
  return V;
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

// v_j^T F^ v_j within kStdErrs standard errors of v_j^T G v_j for every column, and the standard
// errors shrink like 1/sqrt(S).
void check_converges(const Model& m, const Dataset& d) {
  auto exact = Objective::create(m, d, fisher_opts(0, 0));
  const Matrix V = random_directions(exact->num_params(), 6, 7);
  Matrix G, F0;
  exact->product(Curvature::GGN, V, G);
  exact->product(Curvature::Fisher, V, F0);
  CHECK(rel(F0, G) < 1e-14);  // fisher_samples = 0: the exact Fisher, which is the GGN here
  CHECK(exact->product_stderr().isZero());
  Vector se_small;
  for (std::int64_t S : {4, 64, 1024}) {
    auto mc = Objective::create(m, d, fisher_opts(S, 11));
    Matrix F;
    mc->product(Curvature::Fisher, V, F);
    const Vector se = mc->product_stderr();
    REQUIRE(se.size() == V.cols());
    for (Eigen::Index j = 0; j < V.cols(); ++j) {
      const double est = V.col(j).dot(F.col(j)), truth = V.col(j).dot(G.col(j));
      INFO("S = ", S, ", column ", j, ": v^T F v = ", est, " +- ", se[j], ", v^T G v = ", truth);
      CHECK(se[j] > 0);
      CHECK(std::abs(est - truth) <= kStdErrs * se[j]);
    }
    if (S == 4) se_small = se;
    if (S == 1024)  // 256 times the draws: standard errors 16 times smaller (allow 8)
      for (Eigen::Index j = 0; j < V.cols(); ++j) CHECK(se[j] < se_small[j] / 8);
  }
}

}  // namespace

TEST_CASE("MC Fisher converges to the exact Fisher (= GGN) within 4 standard errors: cross-entropy and MSE") {
  check_converges(mlp(1), synthetic_data({5}, 9, 3, 2, false));
  check_converges(mlp(3), synthetic_data({5}, 9, 3, 4, true));
  check_converges(cnn(5), synthetic_data({2, 5, 5}, 5, 3, 6, false));
}

TEST_CASE("MC Fisher is a fixed symmetric PSD matrix of rank at most N S") {
  Model m = mlp(21);
  const std::int64_t N = 4, S = 2;
  Dataset d = synthetic_data({5}, N, 3, 22, false);
  auto obj = Objective::create(m, d, fisher_opts(S, 23));
  const std::int64_t P = obj->num_params();
  Matrix F, F2;
  obj->product(Curvature::Fisher, Matrix::Identity(P, P), F);
  obj->product(Curvature::Fisher, Matrix::Identity(P, P), F2);
  CHECK(F == F2);  // the same draws on every call
  CHECK(rel(F, F.transpose()) < kSymTol);
  Eigen::SelfAdjointEigenSolver<Matrix> es(0.5 * (F + F.transpose()));
  const Vector ev = es.eigenvalues();
  const double top = ev.maxCoeff();
  CHECK(ev.minCoeff() >= -kRankTol * top);
  std::int64_t rank = 0;
  for (Eigen::Index i = 0; i < ev.size(); ++i) rank += ev[i] > kRankTol * top;
  INFO("P = ", P, ", rank ", rank);
  CHECK(rank <= N * S);
  CHECK(rank >= 2);
  // Another seed draws other labels.
  auto other = Objective::create(m, d, fisher_opts(S, 24));
  Matrix F3;
  other->product(Curvature::Fisher, Matrix::Identity(P, P), F3);
  CHECK(rel(F3, F) > 1e-6);
}

TEST_CASE("MC Fisher draws do not depend on micro-batches or threads") {
  Model m = cnn(31);
  Dataset d = synthetic_data({2, 5, 5}, 11, 3, 32, false);
  const Matrix V = random_directions(m.num_params(), 3, 33);
  Matrix Y1, Y2, Y3;
  Vector s1, s2, s3;
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
    auto obj = Objective::create(m, d, fisher_opts(5, 34, 2));
    obj->product(Curvature::Fisher, V, Y1);
    s1 = obj->product_stderr();
  }
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
    auto obj = Objective::create(m, d, fisher_opts(5, 34, 2));
    obj->product(Curvature::Fisher, V, Y2);
    s2 = obj->product_stderr();
    auto other_batches = Objective::create(m, d, fisher_opts(5, 34, 4));
    other_batches->product(Curvature::Fisher, V, Y3);
    s3 = other_batches->product_stderr();
  }
  CHECK(Y1 == Y2);
  CHECK(s1 == s2);
  CHECK(rel(Y3, Y1) < 1e-13);  // same draws, other summation order
  CHECK(rel(s3, s1) < 1e-12);
}

TEST_CASE("curvature names are hessian, ggn, fisher and ef, in both directions") {
  for (auto c : {Curvature::Hessian, Curvature::GGN, Curvature::Fisher, Curvature::EmpiricalFisher})
    CHECK(parse_curvature(curvature_name(c)) == c);
  CHECK(std::string(curvature_name(Curvature::Fisher)) == "fisher");
  CHECK(std::string(curvature_name(Curvature::EmpiricalFisher)) == "ef");
  CHECK_THROWS_WITH_AS(parse_curvature("empirical-fisher"),
                       "unknown curvature 'empirical-fisher' (expected hessian, ggn, fisher or ef)",
                       std::invalid_argument);
  Model m = mlp(41);
  Dataset d = synthetic_data({5}, 3, 3, 42, false);
  CHECK_THROWS_WITH_AS(Objective::create(m, d, fisher_opts(-1, 0)),
                       "objective: fisher_samples must be >= 0 (0: exact Fisher), got -1", std::invalid_argument);
}
