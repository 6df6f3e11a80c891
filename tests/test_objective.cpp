// The objective on tiny networks (float64): gradients against finite differences, the matrix-free
// Hessian against the dense finite-difference Hessian, GGN and Fisher structure, blocks of
// directions against single products, thread-count independence, and bad calls.
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

constexpr double kGradTol = 1e-6;
constexpr double kHessTol = 1e-6;
constexpr double kSymTol = 1e-12;
constexpr double kFdStep = 1e-5;

using curv_test::synthetic_data;

Model mlp_tanh(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  x = b.unary(b.linear(x, 4, "fc2"), UnaryKind::Sigmoid);
  return b.finish(b.linear(x, 3, "fc3"));
}

Model cnn_gelu(std::uint64_t seed, bool bn, bool bn_train) {
  ModelBuilder b({2, 6, 6}, seed);
  int x = b.conv(b.input(), 3, 3, 1, 1, "conv1");
  if (bn) x = b.batch_norm(x, "bn1", bn_train, true);
  x = b.max_pool(b.unary(x, UnaryKind::Gelu), 2, 2);
  x = b.conv(x, 4, 2, 1, 0, "conv2");
  x = b.avg_pool(b.unary(x, UnaryKind::Tanh), 2, 1);
  x = b.flatten(x);
  return b.finish(b.linear(x, 3, "fc"));
}

// One pre-norm transformer block with two heads on [T=3, D=4] tokens, mean-pooled, linear head.
Model transformer(std::uint64_t seed) {
  const std::int64_t T = 3, D = 4, H = 2, dh = 2;
  ModelBuilder b({T, D}, seed);
  int x = b.input();
  int h = b.layer_norm(x, "ln1");
  int q = b.linear_nd(h, D, "attn.q"), k = b.linear_nd(h, D, "attn.k"), v = b.linear_nd(h, D, "attn.v");
  auto heads = [&](int t) {
    return b.node("", make_transpose({0, 2, 1, 3}), {b.node("", make_reshape({0, T, H, dh}), {t})});
  };
  int qh = heads(q), kh = heads(k), vh = heads(v);
  int kt = b.node("", make_transpose({0, 1, 3, 2}), {kh});
  int s = b.node("", make_matmul(), {qh, kt});
  Tensor<double> scale({1}, {1.0 / std::sqrt(double(dh))});
  s = b.binary(s, b.constant("scale", scale), BinaryKind::Mul);
  int a = b.node("", make_softmax(-1, false), {s});
  int o = b.node("", make_matmul(), {a, vh});
  o = b.node("", make_reshape({0, T, D}), {b.node("", make_transpose({0, 2, 1, 3}), {o})});
  x = b.add(x, b.linear_nd(o, D, "attn.out"));
  h = b.layer_norm(x, "ln2");
  h = b.linear_nd(b.unary(b.linear_nd(h, 6, "mlp.fc1"), UnaryKind::Gelu), D, "mlp.fc2");
  x = b.add(x, h);
  x = b.node("", make_reduce(true, {1}, false), {x});
  return b.finish(b.linear(x, 3, "head"));
}

ObjectiveOptions f64(std::int64_t micro_batch = 3) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  return o;
}

Vector fd_gradient(Objective& obj) {
  const auto w0 = obj.params();
  Vector g(w0.size());
  for (size_t i = 0; i < w0.size(); ++i) {
    auto w = w0;
    w[i] = w0[i] + kFdStep;
    obj.set_params(w);
    const double fp = obj.value();
    w[i] = w0[i] - kFdStep;
    obj.set_params(w);
    g[i] = (fp - obj.value()) / (2 * kFdStep);
  }
  obj.set_params(w0);
  return g;
}

// Dense Hessian by central differences of the exact gradient.
Matrix fd_hessian(Objective& obj) {
  const auto w0 = obj.params();
  const std::int64_t P = w0.size();
  Matrix H(P, P);
  Vector gp, gm;
  for (std::int64_t i = 0; i < P; ++i) {
    auto w = w0;
    w[i] = w0[i] + kFdStep;
    obj.set_params(w);
    obj.gradient(gp);
    w[i] = w0[i] - kFdStep;
    obj.set_params(w);
    obj.gradient(gm);
    H.col(i) = (gp - gm) / (2 * kFdStep);
  }
  obj.set_params(w0);
  return 0.5 * (H + H.transpose());
}

Matrix dense(Objective& obj, Curvature c) {
  const std::int64_t P = obj.num_params();
  Matrix Y;
  obj.product(c, Matrix::Identity(P, P), Y);
  return Y;
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

void check_network(const Model& m, const Dataset& d) {
  auto obj = Objective::create(m, d, f64());
  Vector g;
  obj->gradient(g);
  const Vector gfd = fd_gradient(*obj);
  INFO("gradient rel err ", rel(g, gfd));
  CHECK(rel(g, gfd) < kGradTol);

  const Matrix H = dense(*obj, Curvature::Hessian);
  const Matrix Hfd = fd_hessian(*obj);
  INFO("P = ", obj->num_params(), ", Hessian rel err ", rel(H, Hfd), ", asymmetry ", rel(H, H.transpose()));
  CHECK(rel(H, Hfd) < kHessTol);
  CHECK(rel(H, H.transpose()) < kSymTol);

  const Matrix G = dense(*obj, Curvature::GGN);
  CHECK(rel(G, G.transpose()) < kSymTol);
  Eigen::SelfAdjointEigenSolver<Matrix> es(0.5 * (G + G.transpose()));
  INFO("GGN eigenvalues in [", es.eigenvalues().minCoeff(), ", ", es.eigenvalues().maxCoeff(), "]");
  CHECK(es.eigenvalues().minCoeff() >= -1e-12 * es.eigenvalues().maxCoeff());
}

}  // namespace

TEST_CASE("MLP with tanh: gradient, dense Hessian, GGN (cross-entropy and MSE)") {
  check_network(mlp_tanh(1), synthetic_data({5}, 7, 3, 2));
  check_network(mlp_tanh(3), synthetic_data({5}, 7, 3, 4, true));
}

TEST_CASE("CNN with pooling and GELU, with BatchNorm in both modes") {
  check_network(cnn_gelu(5, false, false), synthetic_data({2, 6, 6}, 5, 3, 6));
  check_network(cnn_gelu(7, true, false), synthetic_data({2, 6, 6}, 5, 3, 8));
  check_network(cnn_gelu(9, true, true), synthetic_data({2, 6, 6}, 6, 3, 10));
}

TEST_CASE("one-block transformer: gradient, dense Hessian, GGN") {
  check_network(transformer(11), synthetic_data({3, 4}, 5, 3, 12));
  check_network(transformer(13), synthetic_data({3, 4}, 5, 3, 14, true));
}

TEST_CASE("overlapping slices of one tensor (a split): gradient and dense Hessian against finite differences") {
  // Three Slices read one hidden layer, two of them overlapping; their gradients meet in one
  // tensor, which Slice adds into in place (its accumulate path), in both sweeps of a Hessian product.
  ModelBuilder b({5}, 31);
  const int h = b.unary(b.linear(b.input(), 6, "fc1"), UnaryKind::Tanh);
  const int a = b.node("a", make_slice({0}, {4}, {1}, {1}), {h});
  const int c = b.node("c", make_slice({2}, {6}, {1}, {1}), {h});
  const int e = b.node("e", make_slice({1}, {5}, {1}, {2}), {h});
  const int ac = b.binary(b.unary(a, UnaryKind::Tanh), c, BinaryKind::Mul);
  const int cat = b.node("cat", make_concat(1), {ac, e});
  check_network(b.finish(b.linear(cat, 3, "fc2")), synthetic_data({5}, 6, 3, 32));
}

TEST_CASE("Hessian equals GGN for a linear model with MSE") {
  ModelBuilder b({4}, 21);
  Model m = b.finish(b.linear(b.input(), 2, "fc"));
  Dataset d = synthetic_data({4}, 6, 2, 22, true);
  auto obj = Objective::create(m, d, f64());
  CHECK(rel(dense(*obj, Curvature::Hessian), dense(*obj, Curvature::GGN)) < 1e-13);
}

TEST_CASE("empirical Fisher equals the mean outer product of per-sample gradients") {
  Model m = mlp_tanh(31);
  Dataset d = synthetic_data({5}, 6, 3, 32);
  auto obj = Objective::create(m, d, f64());
  const std::int64_t P = obj->num_params();
  Matrix F = Matrix::Zero(P, P);
  for (std::int64_t n = 0; n < d.size(); ++n) {
    Dataset one = d.subset(n, 1);
    auto o1 = Objective::create(m, one, f64());
    Vector g;
    o1->gradient(g);
    F += g * g.transpose() / double(d.size());
  }
  CHECK(rel(dense(*obj, Curvature::EmpiricalFisher), F) < 1e-12);
}

TEST_CASE("k-direction products equal k single products and parameter blocks are diagonal blocks") {
  Model m = cnn_gelu(41, true, false);
  Dataset d = synthetic_data({2, 6, 6}, 7, 3, 42);
  auto obj = Objective::create(m, d, f64(2));
  const std::int64_t P = obj->num_params();
  std::mt19937_64 rng(43);
  std::normal_distribution<double> nd;
  Matrix V(P, 5);
  for (std::int64_t i = 0; i < V.size(); ++i) V.data()[i] = nd(rng);
  for (auto c : {Curvature::Hessian, Curvature::GGN, Curvature::EmpiricalFisher}) {
    Matrix Y;
    obj->product(c, V, Y);
    for (int j = 0; j < V.cols(); ++j) {
      Matrix y1;
      obj->product(c, V.col(j), y1);
      INFO(curvature_name(c), " column ", j);
      CHECK(rel(Y.col(j), y1) < 1e-13);
    }
  }
  // Direction groups (here 2 + 2 + 1 directions per tangent pass) do not change the result.
  ObjectiveOptions og = f64(2);
  og.group_directions = 2;
  auto grouped = Objective::create(m, d, og);
  for (auto c : {Curvature::Hessian, Curvature::GGN, Curvature::EmpiricalFisher}) {
    Matrix Y, Yg;
    obj->product(c, V, Y);
    grouped->product(c, V, Yg);
    INFO(curvature_name(c), " in groups of 2");
    CHECK(rel(Yg, Y) < 1e-13);
  }
  // Block of the second layer's parameters = the matching diagonal block of the full Hessian.
  const Matrix H = dense(*obj, Curvature::Hessian);
  const auto blocks = m.blocks("layers");
  for (const auto& blk : blocks) {
    std::int64_t off = m.params()[blk.params[0]].offset;
    Matrix Hb;
    obj->product(Curvature::Hessian, Matrix::Identity(blk.size, blk.size), Hb, blk.params);
    INFO("block ", blk.name);
    CHECK(rel(Hb, H.block(off, off, blk.size, blk.size)) < 1e-13);
  }
}

TEST_CASE("results are identical for 1 and 2 threads, in float32 and float64") {
  Model m = cnn_gelu(51, true, true);
  Dataset d = synthetic_data({2, 6, 6}, 23, 3, 52);
  for (auto prec : {Precision::Float32, Precision::Float64}) {
    ObjectiveOptions o;
    o.precision = prec;
    o.micro_batch = 4;
    const std::int64_t P = m.num_params();
    Matrix V = Matrix::Ones(P, 3);
    V.col(1).setLinSpaced(-1, 1);
    Vector g1, g2;
    Matrix Y1, Y2;
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
      auto obj = Objective::create(m, d, o);
      obj->gradient(g1);
      obj->product(Curvature::Hessian, V, Y1);
    }
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
      auto obj = Objective::create(m, d, o);
      obj->gradient(g2);
      obj->product(Curvature::Hessian, V, Y2);
    }
    CHECK(g1 == g2);
    CHECK(Y1 == Y2);
  }
}

TEST_CASE("the primal pass is cached across products and dropped when parameters change") {
  Model m = mlp_tanh(61);
  Dataset d = synthetic_data({5}, 10, 3, 62);
  auto obj = Objective::create(m, d, f64(4));  // 3 micro-batches
  Matrix V = Matrix::Ones(obj->num_params(), 2), Y;
  obj->product(Curvature::Hessian, V, Y);
  CHECK(obj->primal_passes() == 3);
  obj->product(Curvature::Hessian, V, Y);
  CHECK(obj->primal_passes() == 3);
  CHECK(obj->cache_bytes_used() > 0);
  obj->set_params(obj->params());
  obj->product(Curvature::Hessian, V, Y);
  CHECK(obj->primal_passes() == 6);
  ObjectiveOptions nc = f64(4);
  nc.cache_bytes = 0;
  auto obj2 = Objective::create(m, d, nc);
  Matrix Y2;
  obj2->product(Curvature::Hessian, V, Y2);
  obj2->product(Curvature::Hessian, V, Y2);
  CHECK(obj2->primal_passes() == 6);
  CHECK(Y == Y2);
}

TEST_CASE("bad calls throw with messages naming tensors and shapes") {
  Model m = mlp_tanh(71);
  Dataset d = synthetic_data({5}, 4, 3, 72);
  auto obj = Objective::create(m, d, f64());
  Matrix Y;
  CHECK_THROWS_WITH_AS(obj->product(Curvature::Hessian, Matrix::Ones(7, 1), Y),
                       "objective: direction block has 7 rows, expected 59 (the parameters it acts on)",
                       std::invalid_argument);
  Dataset empty = d.subset(0, 0);
  CHECK_THROWS_WITH_AS(Objective::create(m, empty, f64()), "objective: empty sample set (synthetic)",
                       std::invalid_argument);
  Dataset wrong = synthetic_data({6}, 4, 3, 73);
  CHECK_THROWS_WITH_AS(Objective::create(m, wrong, f64()),
                       "objective: data samples [6] from synthetic do not fit the model input 'input' [5]",
                       std::invalid_argument);
  Dataset badlab = d;
  badlab.labels[2] = 3;
  CHECK_THROWS_WITH_AS(Objective::create(m, badlab, f64()),
                       "objective: label 3 in synthetic out of range for 3 model outputs", std::invalid_argument);
  ModelBuilder b({5}, 1);
  int x = b.linear(b.input(), 4, "fc1");
  int y = b.linear(b.input(), 3, "fc2");
  CHECK_THROWS_WITH_AS(b.add(x, y),
                       "node '/Add_0' (Add) on fc1/Gemm, fc2/Gemm: Add: cannot broadcast [1, 4] with [1, 3]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(build_arch("vgg", {3, 32, 32}, 10, 1), doctest::Contains("unknown arch 'vgg'"),
                       std::invalid_argument);
}

TEST_CASE("resnet20 has the CIFAR ResNet-20 parameter count") {
  Model m = build_arch("resnet20", {3, 32, 32}, 10, 1);
  CHECK(m.num_params() == 271690);
  CHECK(m.output_shape() == Shape{10});
}
