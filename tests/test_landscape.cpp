// Loss landscapes (curvature/landscape.h, landscape_directions.h): filter normalization against a
// hand computation, the grid of a quadratic model against its closed form, thread-count
// independence, grid parsing, the loss barrier, and `curv landscape` end to end.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "curvature/landscape.h"
#include "curvature/landscape_directions.h"
#include "curvature/spectra_reader.h"
#include "src/core/builder.h"
#include "test_util.h"

using namespace curv;

namespace {

constexpr double kClosedFormTol = 1e-12;  // float64 model against float64 sums in another order

// x: [3] -> fc (weight [2, 3], bias [2]) -> LayerNorm ln (weight [2], bias [2]).
Model tiny_model() {
  ModelBuilder b({3}, 1);
  const int y = b.linear(b.input(), 2, "fc");
  Model m = b.finish(b.layer_norm(y, "ln"));
  // fc.weight rows with norms 3 and 5; fc.bias; ln.weight and ln.bias.
  m.set_flat_params({1, 2, 2, 0, 3, 4, 0.5, -1, 1.5, 2, -0.25, 0.75});
  return m;
}

// A linear model z = W x + b (W: [D, K]) and MSE data: its loss is quadratic in (W, b).
struct Quadratic {
  Model model;
  Dataset data;
};

Quadratic quadratic(std::int64_t N, std::int64_t K, std::int64_t D) {
  ModelBuilder b({K}, 7);
  Quadratic q{b.finish(b.linear(b.input(), D, "fc")), {}};
  const Eigen::MatrixXd X = curv_test::random_matrix(N, K, 11) * 4, T = curv_test::random_matrix(N, D, 12) * 2;
  q.data.source = "quadratic";
  q.data.sample_shape = {K};
  q.data.target_shape = {D};
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t k = 0; k < K; ++k) q.data.x.push_back(static_cast<float>(X(n, k)));
    for (std::int64_t d = 0; d < D; ++d) q.data.targets.push_back(static_cast<float>(T(n, d)));
  }
  return q;
}

// Residuals r[n, d] = sum_k W[d, k] x[n, k] + b[d] - t[n, d] for flat parameters (W row-major, then b).
Eigen::MatrixXd residuals(const Quadratic& q, const Eigen::VectorXd& w, bool with_targets) {
  const std::int64_t K = q.data.sample_shape[0], D = q.data.target_shape[0], N = q.data.size();
  Eigen::MatrixXd r(N, D);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t d = 0; d < D; ++d) {
      double s = w(D * K + d);
      for (std::int64_t k = 0; k < K; ++k) s += w(d * K + k) * double(q.data.x[n * K + k]);
      r(n, d) = s - (with_targets ? double(q.data.targets[n * D + d]) : 0.0);
    }
  return r;
}

}  // namespace

TEST_CASE("filter normalization: every filter of a weight gets the weight's filter norm (Li et al.), by hand") {
  const Model m = tiny_model();
  const std::vector<double> w = m.flat_params();
  Eigen::VectorXd d(12);
  d << 1, 0, 0, 0, 0, 2, /*fc.bias*/ 7, 7, /*ln.weight*/ 7, 7, /*ln.bias*/ 7, 7;
  const double eps = 1e-10;  // loss-landscape's guard in ||w_i|| / (||d_i|| + 1e-10)

  SUBCASE("nothing ignored: rank-1 tensors take the weights themselves") {
    DirectionOptions o;
    Eigen::VectorXd n = d;
    normalize_direction(m, w, o, n);
    Eigen::VectorXd expect(12);
    expect << 3 / (1 + eps), 0, 0, 0, 0, 2 * 5 / (2 + eps), 0.5, -1, 1.5, 2, -0.25, 0.75;
    CHECK(curv_test::bitwise_equal(n, expect));
  }
  SUBCASE("--ignore bias zeroes the linear bias only; bn zeroes the LayerNorm scale and shift") {
    DirectionOptions o;
    parse_ignore("bias", o);
    Eigen::VectorXd n = d;
    normalize_direction(m, w, o, n);
    CHECK(n.segment(6, 2).isZero(0));
    CHECK(n(8) == 1.5);
    CHECK(n(11) == 0.75);
    parse_ignore("bias,bn", o);
    n = d;
    normalize_direction(m, w, o, n);
    CHECK(n.tail(6).isZero(0));
    CHECK(n(0) == 3 / (1 + eps));
    DirectionOptions bb;
    parse_ignore("biasbn", bb);
    CHECK((bb.ignore_bias && bb.ignore_bn));
  }
  SUBCASE("without filter normalization only the ignored tensors change") {
    DirectionOptions o;
    o.filter_norm = false;
    parse_ignore("bn", o);
    Eigen::VectorXd n = d;
    normalize_direction(m, w, o, n);
    CHECK(n.head(8) == d.head(8));
    CHECK(n.tail(4).isZero(0));
  }
  SUBCASE("random directions: seeded, and filter norms equal the weights' per filter") {
    DirectionOptions o;
    parse_ignore("bias,bn", o);
    const Eigen::VectorXd a = random_direction(m, w, o, 5), b = random_direction(m, w, o, 5);
    CHECK(curv_test::bitwise_equal(a, b));
    CHECK(a.head(3).norm() == doctest::Approx(3).epsilon(1e-9));
    CHECK(a.segment(3, 3).norm() == doctest::Approx(5).epsilon(1e-9));
    CHECK_FALSE(curv_test::bitwise_equal(a, random_direction(m, w, o, 6)));
  }
  DirectionOptions unused;
  CHECK_THROWS_WITH_AS(parse_ignore("bias,weights", unused),
                       "ignore: unknown class 'weights' in 'bias,weights' (expected bias, bn or bias,bn)",
                       std::invalid_argument);
}

TEST_CASE("the landscape of a quadratic model equals its closed form, with constant eigenvalues") {
  const Quadratic q = quadratic(24, 3, 2);
  const std::int64_t P = q.model.num_params();  // 2 x 3 + 2
  const std::vector<double> w0 = q.model.flat_params();
  const Eigen::VectorXd w = Eigen::Map<const Eigen::VectorXd>(w0.data(), P);
  const Eigen::VectorXd dx = curv_test::random_matrix(P, 1, 21).col(0), dy = curv_test::random_matrix(P, 1, 22).col(0);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  oo.micro_batch = 5;
  LandscapeOptions o;
  o.grid = parse_grid("-1.5:1:6,-0.5:2:5");
  o.eig_every = 2;
  o.eig_bottom = true;
  o.eig_tol = 1e-10;
  const LandscapeResult r = compute_landscape(q.model, q.data, oo, w0, dx, dy, o);
  REQUIRE(r.loss.rows() == 6);
  REQUIRE(r.loss.cols() == 5);
  // L(a, b) = mean over n, d of (r0 + a rx + b ry)^2 with residuals linear in the parameters.
  const Eigen::MatrixXd r0 = residuals(q, w, true), rx = residuals(q, dx, false), ry = residuals(q, dy, false);
  const double M = double(r0.size());
  const double c0 = r0.squaredNorm() / M, cx = 2 * (r0.array() * rx.array()).sum() / M,
               cy = 2 * (r0.array() * ry.array()).sum() / M, cxx = rx.squaredNorm() / M,
               cxy = 2 * (rx.array() * ry.array()).sum() / M, cyy = ry.squaredNorm() / M;
  // The Hessian: (2 / (N D)) sum_n [x_n; 1][x_n; 1]^T for each output row, in the flat order.
  const std::int64_t K = 3, D = 2, N = q.data.size();
  Eigen::MatrixXd H = Eigen::MatrixXd::Zero(P, P);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t d = 0; d < D; ++d) {
      Eigen::VectorXd g = Eigen::VectorXd::Zero(P);
      for (std::int64_t k = 0; k < K; ++k) g(d * K + k) = q.data.x[n * K + k];
      g(D * K + d) = 1;
      H += 2.0 / (N * D) * g * g.transpose();
    }
  const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(H).eigenvalues();
  for (Eigen::Index i = 0; i < 6; ++i)
    for (Eigen::Index j = 0; j < 5; ++j) {
      const double a = r.x(i), b = r.y(j);
      const double closed = c0 + cx * a + cy * b + cxx * a * a + cxy * a * b + cyy * b * b;
      INFO("point (", a, ", ", b, ")");
      CHECK(r.loss(i, j) == doctest::Approx(closed).epsilon(kClosedFormTol));
      CHECK(std::isnan(r.accuracy(i, j)));  // regression
      if (i % 2 == 0 && j % 2 == 0) {
        CHECK(r.lambda_max(i, j) == doctest::Approx(ev(P - 1)).epsilon(1e-8));
        CHECK(r.lambda_min(i, j) == doctest::Approx(ev(0)).epsilon(1e-8).scale(ev(P - 1)));
      } else {
        CHECK(std::isnan(r.lambda_max(i, j)));
      }
    }
  CHECK(r.x(0) == -1.5);
  CHECK(r.x(5) == 1);
  CHECK(r.y(4) == 2);
  CHECK(r.products > 0);
}

TEST_CASE("landscape grids are identical for any thread count") {
  const Quadratic q = quadratic(40, 4, 3);
  const std::vector<double> w0 = q.model.flat_params();
  const DirectionOptions dopt;
  const Eigen::VectorXd dx = random_direction(q.model, w0, dopt, 1), dy = random_direction(q.model, w0, dopt, 2);
  LandscapeOptions o;
  o.grid = parse_grid("-1:1:7,-1:1:7");
  o.eig_every = 3;
  o.eig_tol = 1e-6;
  LandscapeResult ref;
  for (int threads : {1, 2, 3}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    const LandscapeResult r = compute_landscape(q.model, q.data, {}, w0, dx, dy, o);
    if (threads == 1) {
      ref = r;
      continue;
    }
    INFO(threads, " threads");
    CHECK(curv_test::bitwise_equal(r.loss, ref.loss));
    CHECK(curv_test::bitwise_equal(r.lambda_max.unaryExpr([](double v) { return std::isnan(v) ? -1.0 : v; }),
                                   ref.lambda_max.unaryExpr([](double v) { return std::isnan(v) ? -1.0 : v; })));
    CHECK(r.products == ref.products);
  }
}

TEST_CASE("grids parse MIN:MAX:N[,MIN:MAX:N] and refuse the rest") {
  const LandscapeGrid g = parse_grid("-1:1:51");
  CHECK((!g.two_d && g.nx == 51 && g.x()(25) == 0.0 && g.y().size() == 1));
  const LandscapeGrid g2 = parse_grid("0:2:3,-1:-1:1");
  CHECK((g2.two_d && g2.x()(1) == 1.0 && g2.y()(0) == -1.0));
  for (const char* bad : {"1:0:5", "-1:1", "-1:1:0", "-1:1:2.5", "a:1:3", "-1:1:3:4", "0:1:1", "-1:1:3,", "0:inf:3"})
    CHECK_THROWS_AS(parse_grid(bad), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_grid("1:0:5"), "grid '1:0:5': MIN 1 is above MAX 0 (expected MIN:MAX:N[,MIN:MAX:N], e.g. -1:1:51)",
                       std::invalid_argument);
}

TEST_CASE("the loss barrier of a path: the largest excess over the line between the endpoint losses") {
  Eigen::VectorXd t(5), loss(5);
  t << -0.5, 0, 0.5, 1, 1.5;
  loss << 9, 1, 3, 2, 9;  // outside [0, 1] does not count
  const Barrier b = loss_barrier(t, loss, 1, 2);
  CHECK(b.barrier == 1.5);  // 3 - (0.5 * 1 + 0.5 * 2)
  CHECK(b.t == 0.5);
  CHECK(b.max_loss == 3);
  Eigen::VectorXd out(1), l1(1);
  out << 2;
  l1 << 1;
  CHECK(std::isnan(loss_barrier(out, l1, 0, 0).barrier));
}

TEST_CASE("curv landscape: 2-D grid file with loss-landscape's dataset names, paths with their barrier") {
  using namespace curv_test;
  const fs::path d = tmpdir() / "landscape";
  fs::create_directories(d);
  const std::string model = std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.onnx";
  const std::string data = std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.npz";
  Run r = curv_test::curv("landscape " + model + " --data " + data + " --grid -1:1:5,-0.5:0.5:3 --filter-norm --ignore bias " +
               "--eig-every 2 --seed 4 --out " + (d / "l.h5").string() + " --json");
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["points"] == 15);
  SpectraReader f(d / "l.h5");
  CHECK(f.read("/landscape/train_loss").shape == std::vector<std::uint64_t>{5, 3});
  CHECK(f.read("/landscape/train_acc").shape == std::vector<std::uint64_t>{5, 3});
  CHECK(f.read("/landscape/xcoordinates").data == std::vector<double>{-1, -0.5, 0, 0.5, 1});
  CHECK(f.read("/landscape/ycoordinates").data == std::vector<double>{-0.5, 0, 0.5});
  const StoredArray lam = f.read("/landscape/lambda_max");
  CHECK(std::isnan(lam.data[1]));
  CHECK(lam.data[0] > 0);
  CHECK(f.string_attribute("/landscape", "kind") == "landscape");
  // The centre of the grid is the model itself.
  CHECK(f.read("/landscape/train_loss").data[2 * 3 + 1] == doctest::Approx(f.number_attribute("/landscape", "loss")));
  // Directions from that file reproduce the grid exactly.
  r = curv_test::curv("landscape " + model + " --data " + data + " --grid -1:1:5,-0.5:0.5:3 --dirs " + (d / "l.h5").string() +
           " --out " + (d / "l2.h5").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(SpectraReader(d / "l2.h5").read("/landscape/train_loss").data == f.read("/landscape/train_loss").data);
  // A path from a model to itself is flat: no barrier.
  r = curv_test::curv("landscape " + model + " --data " + data + " --interpolate " + model + " --out " + (d / "p.h5").string() +
           " --json");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(nlohmann::json::parse(r.out)["barrier"].get<double>() == 0.0);
  check_bad("landscape " + model + " --data " + data + " --grid 1:0:3 --out " + (d / "bad.h5").string(),
            "grid '1:0:3': MIN 1 is above MAX 0");
  check_bad("landscape " + model + " --data " + data + " --ignore weights --out " + (d / "bad.h5").string(),
            "unknown class 'weights'");
  check_bad("landscape " + model + " --data " + data + " --interpolate " +
                std::string(CURV_SOURCE_DIR) + "/data/fmnist_cnn.onnx --out " + (d / "bad.h5").string(),
            "model2");
  CHECK_FALSE(fs::exists(d / "bad.h5"));
}

TEST_CASE("resnet20-noskip (Li et al.'s 'noshort' network): resnet20's layers without the shortcut additions") {
  const Model a = build_arch("resnet20-bn", {1, 28, 28}, 10, 1), b = build_arch("resnet20-noskip-bn", {1, 28, 28}, 10, 1);
  auto count = [](const Model& m, const std::string& type) {
    int n = 0;
    for (const auto& node : m.nodes()) n += node.op->type() == type;
    return n;
  };
  CHECK(count(a, "Add") == 9);
  CHECK(count(b, "Add") == 0);
  CHECK(count(b, "Conv") == count(a, "Conv") - 2);  // no 1x1 projection shortcuts
  CHECK(b.num_params() == a.num_params() - (16 * 32 + 32 * 64) - 2 * (32 + 64));  // their weights and BN
  CHECK(b.output_shape() == Shape{10});
}
