// K-FAC (curvature/kfac.h) in float64: factors against an explicit per-sample computation written
// out in this file (the networks' forward passes and Jacobians by hand) for tiny MLPs and CNNs and
// every type; K against the exact GGN block where theory says they agree (one sample; a linear
// model under MSE); the damped inverses against K + l I and the factored formula; eigenvalues and
// trace; thread-count invariance; layers K-FAC does not support, named.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <random>

#include "curvature/kfac.h"
#include "curvature/kfac_operator.h"
#include "curvature/kfac_spectrum.h"
#include "curvature/curvature_operator.h"
#include "src/core/builder.h"
#include "src/core/loss.h"
#include "src/core/memory.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

namespace {

constexpr double kFactorTol = 1e-10;  // factors and K vs their oracles (float64)
constexpr double kInvTol = 1e-10;     // damped inverse times K + l I vs identity
constexpr double kSliceTol = 1e-13;   // factors from sliced expansions vs whole ones (rounding)
constexpr double kF32Tol = 1e-6;      // a float32 model's factors vs float64's (seen: 2e-8 - 8e-8)

using curv_test::synthetic_data;

ObjectiveOptions f64(std::int64_t micro_batch = 2) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  return o;
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

Matrix param_matrix(const Model& m, const std::string& name, std::int64_t rows, std::int64_t cols) {
  const auto& t = m.param(m.find_param(name));
  Matrix W(rows, cols);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) W(i, j) = t.data()[i * cols + j];
  return W;
}

// What one sample contributes to a layer: inputs a_t (with the bias 1) and Jacobians J_t of the
// logits w.r.t. the layer output at position t.
struct SampleLayer {
  std::vector<Vector> a;
  std::vector<Matrix> J;
};

// The loss-curvature matrices of one sample per type: Lambda (exact), the mean of sampled d d^T
// (mc) and g g^T at the data label (empirical), all from the logits z.
Matrix loss_matrix(KfacType type, const Vector& z, std::int64_t label, std::int64_t n, std::int64_t S,
                   std::uint64_t seed) {
  const Vector p = (z.array() - z.maxCoeff()).exp().matrix() / (z.array() - z.maxCoeff()).exp().sum();
  if (type == KfacType::Exact) return Matrix(p.asDiagonal()) - p * p.transpose();
  if (type == KfacType::Empirical) {
    Vector g = p;
    g[label] -= 1;
    return g * g.transpose();
  }
  std::vector<double> d(S * z.size());
  ConstView<double> zv{z.data(), {1, z.size()}};
  loss_sample_gradients<double>(LossKind::CrossEntropy, zv, n, S, seed, d.data());
  Matrix M = Matrix::Zero(z.size(), z.size());
  for (std::int64_t s = 0; s < S; ++s) {
    const Eigen::Map<const Vector> ds(d.data() + s * z.size(), z.size());
    M += ds * ds.transpose() / double(S);
  }
  return M;
}

// A = 1/(N T) sum a a^T, B = 1/N sum J^T L J, from per-sample contributions.
void explicit_factors(const std::vector<SampleLayer>& per, const std::vector<Matrix>& L, Matrix& A, Matrix& B) {
  const double N = double(per.size()), T = double(per[0].a.size());
  A = Matrix::Zero(per[0].a[0].size(), per[0].a[0].size());
  B = Matrix::Zero(per[0].J[0].cols(), per[0].J[0].cols());
  for (size_t n = 0; n < per.size(); ++n)
    for (size_t t = 0; t < per[n].a.size(); ++t) {
      A += per[n].a[t] * per[n].a[t].transpose() / (N * T);
      B += per[n].J[t].transpose() * L[n] * per[n].J[t] / N;
    }
}

// fc1 (5 -> 4) -> tanh -> fc2 (4 -> 3).
Model mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

// conv1 (2 -> 3 channels, 3 x 3, stride s, pad p) -> tanh -> flatten -> fc (-> 3).
Model cnn(std::uint64_t seed, std::int64_t stride, std::int64_t pad) {
  ModelBuilder b({2, 5, 5}, seed);
  int x = b.unary(b.conv(b.input(), 3, 3, stride, pad, "conv1"), UnaryKind::Tanh);
  return b.finish(b.linear(b.flatten(x), 3, "fc"));
}

// Factors of every layer and type against the explicit computation, given per-sample forward
// passes `sample(n, layers, z)` that fill the per-layer contributions and the logits.
template <class Sample>
void check_factors(const Model& m, const Dataset& d, Sample&& sample) {
  const std::int64_t N = d.size(), S = 3;
  const std::uint64_t seed = 17;
  std::vector<std::vector<SampleLayer>> per;  // [layer][n]
  std::vector<Vector> z(N);
  for (std::int64_t n = 0; n < N; ++n) {
    std::vector<SampleLayer> layers;
    sample(n, layers, z[n]);
    if (per.empty()) per.resize(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) per[l].push_back(layers[l]);
  }
  auto obj = Objective::create(m, d, f64());
  for (KfacType type : {KfacType::Exact, KfacType::MonteCarlo, KfacType::Empirical}) {
    KfacOptions o;
    o.type = type;
    o.mc_samples = S;
    o.seed = seed;
    Kfac kfac(*obj, o);
    REQUIRE(kfac.num_layers() == per.size());
    std::vector<Matrix> L(N);
    for (std::int64_t n = 0; n < N; ++n) L[n] = loss_matrix(type, z[n], d.labels[n], n, S, seed);
    for (size_t l = 0; l < per.size(); ++l) {
      Matrix A, B;
      explicit_factors(per[l], L, A, B);
      INFO(std::string(kfac_type_name(type)), " layer ", kfac.layer(l).layer.name, ": A err ", rel(kfac.layer(l).A, A),
           ", B err ", rel(kfac.layer(l).B, B));
      CHECK(rel(kfac.layer(l).A, A) < kFactorTol);
      CHECK(rel(kfac.layer(l).B, B) < kFactorTol);
    }
  }
}

Vector sample_x(const Dataset& d, std::int64_t n) {
  const std::int64_t D = numel(d.sample_shape);
  Vector x(D);
  for (std::int64_t i = 0; i < D; ++i) x[i] = d.x[n * D + i];
  return x;
}

}  // namespace

TEST_CASE("K-FAC factors equal an explicit per-sample computation: MLP, exact, mc and empirical") {
  Model m = mlp(1);
  Dataset d = synthetic_data({5}, 7, 3, 2, false);
  const Matrix W1 = param_matrix(m, "fc1.weight", 4, 5), W2 = param_matrix(m, "fc2.weight", 3, 4);
  const Matrix b1 = param_matrix(m, "fc1.bias", 4, 1), b2 = param_matrix(m, "fc2.bias", 3, 1);
  check_factors(m, d, [&](std::int64_t n, std::vector<SampleLayer>& layers, Vector& z) {
    const Vector x = sample_x(d, n);
    const Vector h = (W1 * x + b1).array().tanh().matrix();
    z = W2 * h + b2;
    Vector a1(6), a2(5);
    a1 << x, 1;
    a2 << h, 1;
    const Matrix J1 = W2 * Matrix((1 - h.array().square()).matrix().asDiagonal());
    layers = {{{a1}, {J1}}, {{a2}, {Matrix::Identity(3, 3)}}};
  });
}

TEST_CASE("K-FAC factors equal an explicit per-sample computation: CNN with KFC expand (two geometries)") {
  for (auto [stride, pad] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {2, 0}}) {
    INFO("stride ", stride, ", pad ", pad);
    Model m = cnn(3, stride, pad);
    Dataset d = synthetic_data({2, 5, 5}, 5, 3, 4, false);
    const std::int64_t Ho = (5 + 2 * pad - 3) / stride + 1, T = Ho * Ho, F = 3 * T;
    const Matrix Wc = param_matrix(m, "conv1.weight", 3, 18), bc = param_matrix(m, "conv1.bias", 3, 1);
    const Matrix Wf = param_matrix(m, "fc.weight", 3, F), bf = param_matrix(m, "fc.bias", 3, 1);
    check_factors(m, d, [&](std::int64_t n, std::vector<SampleLayer>& layers, Vector& z) {
      const Vector x = sample_x(d, n);  // [2, 5, 5]
      SampleLayer conv, fc;
      Vector hflat(F);
      for (std::int64_t oh = 0; oh < Ho; ++oh)
        for (std::int64_t ow = 0; ow < Ho; ++ow) {
          Vector a = Vector::Zero(19);  // (c, ki, kj) patch + 1
          for (std::int64_t c = 0; c < 2; ++c)
            for (std::int64_t ki = 0; ki < 3; ++ki)
              for (std::int64_t kj = 0; kj < 3; ++kj) {
                const std::int64_t r = oh * stride - pad + ki, s = ow * stride - pad + kj;
                if (r >= 0 && r < 5 && s >= 0 && s < 5) a[c * 9 + ki * 3 + kj] = x[c * 25 + r * 5 + s];
              }
          a[18] = 1;
          const Vector y = Wc * a.head(18) + bc;
          for (std::int64_t o = 0; o < 3; ++o) hflat[o * T + oh * Ho + ow] = std::tanh(y[o]);
          conv.a.push_back(a);
        }
      z = Wf * hflat + bf;
      for (std::int64_t t = 0; t < T; ++t) {
        Matrix J(3, 3);  // d z / d y[:, t]
        for (std::int64_t o = 0; o < 3; ++o) J.col(o) = Wf.col(o * T + t) * (1 - hflat[o * T + t] * hflat[o * T + t]);
        conv.J.push_back(J);
      }
      Vector a2(F + 1);
      a2 << hflat, 1;
      fc.a.push_back(a2);
      fc.J.push_back(Matrix::Identity(3, 3));
      layers = {conv, fc};
    });
  }
}

TEST_CASE("K-FAC equals the exact GGN block for one sample (Gemm and MatMul layers) and a linear model under MSE") {
  ModelBuilder b({5}, 5);
  int x = b.unary(b.linear_nd(b.input(), 4, "mm1"), UnaryKind::Tanh);
  x = b.unary(b.linear(x, 4, "fc2"), UnaryKind::Sigmoid);
  Model m = b.finish(b.linear(x, 3, "fc3"));
  for (bool regression : {false, true}) {
    Dataset one = synthetic_data({5}, 1, 3, 6, regression);
    auto obj = Objective::create(m, one, f64());
    Kfac kfac(*obj);
    REQUIRE(kfac.num_layers() == 3);
    CHECK(kfac.unsupported().empty());  // mm1's bias is the Add after its MatMul
    for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
      const auto& layer = kfac.layer(l).layer;
      Matrix G;
      obj->product(Curvature::GGN, Matrix::Identity(layer.size, layer.size), G, layer.params);
      INFO("layer ", layer.name, (regression ? " (MSE)" : " (CE)"), ": rel err ", rel(kfac.dense(l), G));
      CHECK(rel(kfac.dense(l), G) < kFactorTol);
    }
  }
  // A linear model under MSE: J = I and Lambda = 2/D I, so K = GGN on any number of samples.
  ModelBuilder lb({6}, 7);
  Model lin = lb.finish(lb.linear(lb.input(), 3, "fc"));
  Dataset d = synthetic_data({6}, 9, 3, 8, true);
  auto obj = Objective::create(lin, d, f64(4));
  Kfac kfac(*obj);
  Matrix G;
  obj->product(Curvature::GGN, Matrix::Identity(lin.num_params(), lin.num_params()), G);
  CHECK(rel(kfac.dense(0), G) < kFactorTol);
}

TEST_CASE("K-FAC damped inverses: exact inverts K + l I, factored is the pi-adjusted Kronecker inverse") {
  Model m = cnn(9, 1, 1);
  Dataset d = synthetic_data({2, 5, 5}, 6, 3, 10, false);
  auto obj = Objective::create(m, d, f64());
  Kfac kfac(*obj);
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const auto& f = kfac.layer(l);
    const std::int64_t n = f.layer.size;
    for (double lambda : {1e-3, 0.1, 10.0}) {
      INFO("layer ", f.layer.name, ", damping ", lambda);
      const Matrix KI = kfac.dense(l) + lambda * Matrix::Identity(n, n);
      Matrix X;
      kfac.inverse(l, lambda, KfacDamping::Exact, KI, X);
      CHECK((X - Matrix::Identity(n, n)).norm() / std::sqrt(double(n)) < kInvTol);
      // Factored: (B + s/pi I) X~ (A + pi s I) = V~ in the [out, in_ext] view.
      const Matrix V = Matrix::Random(n, 2);
      kfac.inverse(l, lambda, KfacDamping::Factored, V, X);
      const double pi = std::sqrt((f.A.trace() / f.A.rows()) / (f.B.trace() / f.B.rows())), s = std::sqrt(lambda);
      for (int j = 0; j < 2; ++j) {
        const Matrix Xm = layer_matrix(m, f.layer, X.col(j).data()), Vm = layer_matrix(m, f.layer, V.col(j).data());
        const Matrix back = (f.B + s / pi * Matrix::Identity(f.B.rows(), f.B.rows())) * Xm *
                            (f.A + pi * s * Matrix::Identity(f.A.rows(), f.A.rows()));
        CHECK(rel(back, Vm) < kInvTol);
      }
    }
  }
  Matrix Y;
  CHECK_THROWS_WITH_AS(kfac.inverse(0, 0.0, KfacDamping::Exact, Matrix::Ones(kfac.layer(0).layer.size, 1), Y),
                       "K-FAC: the inverse needs damping > 0, got 0.000000", std::invalid_argument);
}

TEST_CASE("K-FAC eigenvalues are the factor eigenvalue products and the trace is tr(A) tr(B)") {
  Model m = mlp(11);
  Dataset d = synthetic_data({5}, 8, 3, 12, false);
  auto obj = Objective::create(m, d, f64());
  Kfac kfac(*obj);
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const Matrix K = kfac.dense(l);
    Eigen::SelfAdjointEigenSolver<Matrix> es(0.5 * (K + K.transpose()));
    Vector dense = es.eigenvalues().reverse();
    const Vector ev = kfac.eigenvalues(l);
    CHECK((ev - dense).norm() <= 1e-10 * dense.norm());
    CHECK(std::abs(kfac.trace(l) - K.trace()) <= 1e-12 * K.trace());
  }
}

TEST_CASE("K-FAC factors are identical for 1 and 2 threads") {
  Model m = cnn(13, 1, 1);
  Dataset d = synthetic_data({2, 5, 5}, 11, 3, 14, false);
  std::vector<Matrix> f1, f2;
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    auto obj = Objective::create(m, d, f64(2));
    KfacOptions o;
    o.type = KfacType::MonteCarlo;
    o.mc_samples = 2;
    Kfac kfac(*obj, o);
    auto& f = threads == 1 ? f1 : f2;
    for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
      f.push_back(kfac.layer(l).A);
      f.push_back(kfac.layer(l).B);
    }
  }
  REQUIRE(f1.size() == f2.size());
  for (size_t i = 0; i < f1.size(); ++i) CHECK(f1[i] == f2[i]);
}

TEST_CASE("layers K-FAC does not support are named with the reason") {
  ModelBuilder b({4, 5, 5}, 15);
  int x = b.conv(b.input(), 4, 3, 1, 1, "dw", true, 4);  // depthwise: group = 4
  x = b.batch_norm(x, "bn", false, true);
  Model m = b.finish(b.linear(b.flatten(x), 3, "fc"));
  const LinearLayers found = find_linear_layers(m);
  REQUIRE(found.layers.size() == 1);
  CHECK(found.layers[0].name == "fc");
  REQUIRE(found.unsupported.size() >= 3);
  CHECK(m.params()[found.unsupported[0].param].name == "dw.weight");
  CHECK(found.unsupported[0].reason == "node 'dw/Conv' (Conv) is a grouped convolution (group = 4)");
  bool bn_named = false;
  for (const auto& u : found.unsupported)
    bn_named = bn_named || u.reason.find("is not a Linear, MatMul-with-weight or Conv layer") != std::string::npos;
  CHECK(bn_named);
  ModelBuilder tb({2, 5, 5}, 16);
  int y = tb.batch_norm(tb.conv(tb.input(), 3, 3, 1, 1, "c"), "bn", true, true);
  Model train_bn = tb.finish(tb.linear(tb.flatten(y), 3, "fc"));
  Dataset d = synthetic_data({2, 5, 5}, 4, 3, 17, false);
  auto obj = Objective::create(train_bn, d, f64());
  CHECK_THROWS_WITH_AS(Kfac{*obj}, doctest::Contains("node 'bn/BatchNormalization' mixes the batch"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_kfac_type("kron"), "unknown K-FAC type 'kron' (expected exact, mc or empirical)",
                       std::invalid_argument);
}

TEST_CASE("KfacOperator is block-diagonal over the layers, on all parameters or a block, and inverts K + l I") {
  Model m = cnn(17, 2, 1);
  Dataset d = synthetic_data({2, 5, 5}, 6, 3, 18, false);
  auto obj = Objective::create(m, d, f64());
  Kfac kfac(*obj);
  const std::int64_t P = m.num_params();
  KfacOperator K(kfac, m);
  REQUIRE(K.rows() == P);
  Matrix dense;
  K.apply(Matrix::Identity(P, P), dense);
  Matrix expect = Matrix::Zero(P, P);
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const auto& layer = kfac.layer(l).layer;
    const std::int64_t off = m.params()[layer.params[0]].offset;
    expect.block(off, off, layer.size, layer.size) = kfac.dense(l);
  }
  CHECK(rel(dense, expect) < 1e-14);
  const double lambda = 0.05;
  KfacOperator Kinv(kfac, m, {}, KfacOperator::Mode::Inverse, lambda);
  Matrix X;
  Kinv.apply(dense + lambda * Matrix::Identity(P, P), X);
  CHECK((X - Matrix::Identity(P, P)).norm() / std::sqrt(double(P)) < kInvTol);
  CHECK(Kinv.num_products() == P);
  // One layer's block, listed bias first: rows follow the listed order.
  const auto& fc = kfac.layer(1).layer;
  const std::vector<int> listed{fc.params[1], fc.params[0]};
  KfacOperator Kb(kfac, m, listed);
  Matrix Yb;
  const Matrix V = Matrix::Random(fc.size, 2);
  Kb.apply(V, Yb);
  const std::int64_t nb = m.params()[fc.params[1]].size, nw = m.params()[fc.params[0]].size;
  Matrix Vl(fc.size, 2), Yl;
  Vl << V.bottomRows(nw), V.topRows(nb);
  kfac.multiply(1, Vl, Yl);
  CHECK(rel(Yb.topRows(nb), Yl.bottomRows(nb)) < 1e-14);
  CHECK(rel(Yb.bottomRows(nw), Yl.topRows(nw)) < 1e-14);
  CHECK_THROWS_WITH_AS(KfacOperator(kfac, m, {fc.params[0]}), doctest::Contains("layer 'fc' needs its weight and bias together"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(KfacOperator(kfac, m, {}, KfacOperator::Mode::Inverse, 0.0),
                       "K-FAC inverse: damping must be > 0, got 0.000000", std::invalid_argument);
  // A model with a parameter K-FAC does not cover: the whole-model operator names it.
  ModelBuilder b({4}, 19);
  int x = b.layer_norm(b.linear(b.input(), 4, "fc1"), "ln");
  Model ln = b.finish(b.linear(x, 3, "fc2"));
  Dataset d2 = synthetic_data({4}, 4, 3, 20, false);
  auto obj2 = Objective::create(ln, d2, f64());
  Kfac k2(*obj2);
  CHECK_THROWS_WITH_AS(KfacOperator(k2, ln), doctest::Contains("K-FAC does not cover parameter 'ln.weight': node"),
                       std::invalid_argument);
}

TEST_CASE("K-FAC spectrum: eigenpairs, trace and diagonal from the factors, per layer and whole model") {
  Model m = cnn(21, 1, 1);
  Dataset d = synthetic_data({2, 5, 5}, 6, 3, 22, false);
  auto obj = Objective::create(m, d, f64());
  Kfac kfac(*obj);
  SpectrumOptions o;
  o.top = 3;
  o.bottom = 2;
  o.diag = true;
  o.save_vectors = true;
  StoreRun run;
  CHECK(analyze_kfac_spectrum(*obj, kfac, o, true, false, 0, 0, run) == 0);
  REQUIRE(run.blocks.size() == 2);
  std::vector<double> all;
  double trace = 0;
  for (std::size_t l = 0; l < 2; ++l) {
    const auto& [name, s] = run.blocks[l];
    CHECK(name == kfac.layer(l).layer.name);
    const Matrix K = kfac.dense(l);
    Eigen::SelfAdjointEigenSolver<Matrix> es(0.5 * (K + K.transpose()));
    const Vector ev = es.eigenvalues();  // ascending
    all.insert(all.end(), ev.data(), ev.data() + ev.size());
    trace += K.trace();
    REQUIRE(s.eigen);
    for (int i = 0; i < 3; ++i) CHECK(s.eigen->values[i] == doctest::Approx(ev[ev.size() - 1 - i]).epsilon(1e-10));
    for (int i = 0; i < 2; ++i) CHECK(std::abs(s.eigen->bottom_values[i] - ev[i]) <= 1e-10 * ev[ev.size() - 1]);
    for (int i = 0; i < 3; ++i) {
      const Vector v = s.eigen->vectors.col(i);
      CHECK(v.norm() == doctest::Approx(1.0).epsilon(1e-12));
      CHECK((K * v - s.eigen->values[i] * v).norm() <= 1e-10 * s.eigen->values[0]);
    }
    CHECK(s.trace->estimate == doctest::Approx(K.trace()).epsilon(1e-12));
    CHECK(rel(s.diag->estimate, K.diagonal()) < 1e-12);
    REQUIRE(s.kfac);
    CHECK(s.kfac->A == kfac.layer(l).A);
  }
  std::sort(all.begin(), all.end(), std::greater<double>());
  CHECK(run.model.eigen->values[0] == doctest::Approx(all[0]).epsilon(1e-10));
  CHECK(run.model.eigen->values[2] == doctest::Approx(all[2]).epsilon(1e-10));
  CHECK(run.model.trace->estimate == doctest::Approx(trace).epsilon(1e-12));
}

TEST_CASE("K-FAC vs GGN comparison: Frobenius error 0 where K-FAC is exact, within 4 standard errors elsewhere") {
  ModelBuilder lb({6}, 23);
  Model lin = lb.finish(lb.linear(lb.input(), 3, "fc"));
  Dataset dl = synthetic_data({6}, 9, 3, 24, true);
  auto ol = Objective::create(lin, dl, f64());
  Kfac kl(*ol);
  SpectrumOptions o;
  o.top = 1;
  o.eig_tol = 1e-10;
  StoreRun exact_run;
  CHECK(analyze_kfac_spectrum(*ol, kl, o, true, true, 50, 1, exact_run) > 0);
  const auto& ea = exact_run.blocks[0].second.kfac->attributes;
  CHECK(std::get<double>(ea.at("frobenius_rel")) < 1e-10);
  CHECK(std::get<double>(ea.at("ggn_top")) == doctest::Approx(std::get<double>(ea.at("kfac_top"))).epsilon(1e-8));

  Model m = mlp(25);
  Dataset d = synthetic_data({5}, 10, 3, 26, false);
  auto obj = Objective::create(m, d, f64());
  Kfac kfac(*obj);
  StoreRun run;
  analyze_kfac_spectrum(*obj, kfac, o, false, true, 400, 2, run);
  CHECK(run.model.eigen == std::nullopt);
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const auto& layer = kfac.layer(l).layer;
    Matrix G;
    obj->product(Curvature::GGN, Matrix::Identity(layer.size, layer.size), G, layer.params);
    const double truth = (kfac.dense(l) - G).norm() / G.norm();
    const auto& a = run.blocks[l].second.kfac->attributes;
    const double est = std::get<double>(a.at("frobenius_rel")), se = std::get<double>(a.at("frobenius_rel_stderr"));
    INFO(layer.name, ": ||K - G|| / ||G|| = ", truth, ", estimate ", est, " +- ", se);
    CHECK(truth > 1e-3);
    CHECK(std::abs(est - truth) <= 4 * se);
    CHECK(std::get<double>(a.at("ggn_top")) == doctest::Approx(Eigen::SelfAdjointEigenSolver<Matrix>(G).eigenvalues().maxCoeff()).epsilon(1e-5));
  }
}

TEST_CASE("K-FAC under a memory cap its expanded layer inputs do not fit: sliced, within the cap, same factors") {
  // conv (4 -> 8 channels, 3 x 3 on 32 x 32, 1024 positions) -> tanh -> mean over positions ->
  // fc: a micro-batch of 16 expands to 16 x 1024 rows of 37 inputs (4.8 MB in float64), several
  // times the conv's own im2col chunk and more than the pass and the factor sums.
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
  ModelBuilder b({4, 32, 32}, 31);
  int x = b.unary(b.conv(b.input(), 8, 3, 1, 1, "conv"), UnaryKind::Tanh);
  Model m = b.finish(b.linear(b.flatten(b.global_avg_pool(x)), 5, "fc"));
  Dataset d = synthetic_data({4, 32, 32}, 32, 5, 32, false);
  const std::size_t expanded = std::size_t(16 * 1024 * 37) * sizeof(double);
  for (KfacType type : {KfacType::Exact, KfacType::MonteCarlo}) {
    KfacOptions ko;
    ko.type = type;
    ObjectiveOptions o = f64(16);
    o.cache_bytes = 0;  // no kept passes: the peak is one micro-batch's working set
    std::vector<Matrix> ref;
    std::size_t before = tracked_bytes();
    reset_tracked_peak();
    {
      auto obj = Objective::create(m, d, o);
      Kfac k(*obj, ko);
      for (std::size_t l = 0; l < k.num_layers(); ++l) ref.insert(ref.end(), {k.layer(l).A, k.layer(l).B});
    }
    const std::size_t free_peak = tracked_peak_bytes() - before;
    // The uncapped peak is the pass's values with the whole expansion; half the expansion less
    // fits only if it is sliced (the reverse passes, after it, need less).
    o.memory_bytes = free_peak - expanded / 2;
    before = tracked_bytes();
    reset_tracked_peak();
    auto obj = Objective::create(m, d, o);
    Kfac k(*obj, ko);
    const std::size_t peak = tracked_peak_bytes() - before;
    INFO(kfac_type_name(type), ": uncapped peak ", free_peak, ", cap ", o.memory_bytes, ", capped peak ", peak);
    CHECK(peak <= o.memory_bytes);
    CHECK(peak < free_peak);
    std::size_t i = 0;
    for (std::size_t l = 0; l < k.num_layers(); ++l) {
      CHECK(rel(k.layer(l).A, ref[i++]) < kSliceTol);  // the same rows in other slices
      CHECK(rel(k.layer(l).B, ref[i++]) < kSliceTol);
    }
  }
}

TEST_CASE("K-FAC of a float32 model (float32 rank-k updates): float64's factors to float32 rounding, 1 and 2 threads identical") {
  // 4 x 12 x 12 input, conv 3 x 3 pad 1 (144 positions): a micro-batch of 32 has 4608 rows, more
  // than one 4096-row chunk of the float32 accumulation.
  ModelBuilder b({4, 12, 12}, 41);
  int x = b.unary(b.conv(b.input(), 6, 3, 1, 1, "conv"), UnaryKind::Tanh);
  Model m = b.finish(b.linear(b.flatten(b.global_avg_pool(x)), 5, "fc"));
  Dataset d = synthetic_data({4, 12, 12}, 64, 5, 42, false);
  KfacOptions ko;
  ko.type = KfacType::MonteCarlo;
  ObjectiveOptions o64 = f64(32);
  auto ref = Objective::create(m, d, o64);
  Kfac k64(*ref, ko);
  std::vector<std::vector<Matrix>> f32;
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    ObjectiveOptions o;
    o.precision = Precision::Float32;
    o.micro_batch = 32;
    auto obj = Objective::create(m, d, o);
    Kfac k(*obj, ko);
    f32.emplace_back();
    for (std::size_t l = 0; l < k.num_layers(); ++l) f32.back().insert(f32.back().end(), {k.layer(l).A, k.layer(l).B});
  }
  REQUIRE(f32[0].size() == 2 * k64.num_layers());
  for (std::size_t i = 0; i < f32[0].size(); ++i) {
    CHECK(f32[0][i] == f32[1][i]);
    const Matrix& want = i % 2 ? k64.layer(i / 2).B : k64.layer(i / 2).A;
    INFO("factor ", i, ": relative difference to float64 ", rel(f32[0][i], want));
    CHECK(rel(f32[0][i], want) < kF32Tol);  // float32 forward, backward and sums
    CHECK(rel(f32[0][i], want) > 0);     // it did run in float32
  }
}

TEST_CASE("KFC expand scaling on convolutions, where the answer is known by hand") {
  // (1) A convolution with one output position (kernel = input): for one sample K is the GGN block.
  {
    ModelBuilder b({2, 3, 3}, 11);
    const int x = b.unary(b.conv(b.input(), 4, 3, 1, 0, "conv"), UnaryKind::Tanh);
    Model m = b.finish(b.linear(b.flatten(x), 3, "fc"));
    Dataset one = synthetic_data({2, 3, 3}, 1, 3, 12, false);
    auto obj = Objective::create(m, one, f64());
    Kfac kfac(*obj);
    REQUIRE(kfac.num_layers() == 2);
    const auto& layer = kfac.layer(0).layer;
    REQUIRE(layer.positions == 1);
    Matrix G;
    obj->product(Curvature::GGN, Matrix::Identity(layer.size, layer.size), G, layer.params);
    CHECK(rel(kfac.dense(0), G) < kFactorTol);
  }
  // (2) T = 4 positions: a 1x1 convolution whose output, flattened, is the model output under MSE
  // (Lambda = c I, and position t writes its own outputs, so J_t^T Lambda J_t' = 0 for t != t', and
  // J_t^T Lambda J_t = c I). By hand the GGN block is
  //     G = (1/N) sum_n sum_t a_nt a_nt^T (x) c I,
  // and KFC expand gives A = (1/(N T)) sum_{n,t} a_nt a_nt^T and B = (1/N) sum_{n,t} c I = T c I:
  // K = A (x) B = G, for any N and inputs. A summed over positions (no 1/T) would give T G, B
  // averaged over positions G / T. With a linear layer after the flatten that mixes the positions,
  // the cross terms J_t^T Lambda J_t' are not 0 and expand is an approximation (not vacuous).
  for (int variant = 0; variant < 3; ++variant) {  // disjoint outputs; the same, equal inputs; mixed
    const bool mixed = variant == 2;
    ModelBuilder b({3, 1, 4}, 13);
    const int y = b.flatten(b.conv(b.input(), 2, 1, 1, 0, "conv"));
    Model m = b.finish(mixed ? b.linear(y, 3, "fc") : y);
    Dataset d = synthetic_data({3, 1, 4}, 5, mixed ? 3 : 8, 14, true);
    if (variant >= 1)  // the same input at every position
      for (std::size_t i = 0; i < d.x.size(); i += 4)
        for (std::size_t t = 1; t < 4; ++t) d.x[i + t] = d.x[i];
    auto obj = Objective::create(m, d, f64());
    Kfac kfac(*obj);
    REQUIRE(kfac.num_layers() == (mixed ? 2u : 1u));
    const auto& layer = kfac.layer(0).layer;
    REQUIRE(layer.positions == 4);
    Matrix G;
    obj->product(Curvature::GGN, Matrix::Identity(layer.size, layer.size), G, layer.params);
    INFO("variant ", variant, ": rel err ", rel(kfac.dense(0), G), ", tr K / tr G ", kfac.dense(0).trace() / G.trace());
    if (mixed)
      CHECK(rel(kfac.dense(0), G) > 1e-2);
    else
      CHECK(rel(kfac.dense(0), G) < kFactorTol);
  }
}
