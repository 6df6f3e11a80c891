// The engine at scale: a ResNet-18-shaped network (reduced width) and an inverted-residual network
// with depthwise convolutions against finite differences; depthwise convolution against the same
// convolution as a dense one; in-place gradient accumulation (OpCtx::accumulate); results that are
// bitwise identical for 1, 2 and 4 threads with runs of micro-batches and intra-op GEMMs; and the
// memory cap, measured with the engine's own allocation accounting.
#include <doctest/doctest.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <thread>

#include "src/core/builder.h"
#include "src/core/internal/gemm.h"
#include "src/core/internal/graph_executor.h"
#include "src/core/internal/im2col.h"
#include "src/core/internal/onednn_conv.h"
#include "src/core/memory.h"
#include "src/core/objective.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

namespace {

constexpr double kFdStep = 1e-6;
constexpr double kFdTol = 1e-6;       // directional derivatives and HVPs vs central differences (float64)
constexpr double kOracleTol = 1e-12;  // depthwise vs dense convolution (float64)

using curv_test::synthetic_data;

// torchvision's ResNet-18 at width w instead of 64: 7x7/2 stem, BatchNorm (inference mode, random
// statistics), 3x3/2 max-pool, four stages of two BasicBlocks (widths w, 2w, 4w, 8w, strides 1, 2,
// 2, 2; 1x1/2 projections), global average pool, linear head. On 3x32x32 the last stage is 1x1.
Model resnet18_shaped(std::int64_t w, std::uint64_t seed) {
  ModelBuilder b({3, 32, 32}, seed);
  int x = b.relu(b.batch_norm(b.conv(b.input(), w, 7, 2, 3, "conv1", false), "bn1", false, true));
  x = b.max_pool(x, 3, 2, 1);
  std::int64_t cin = w;
  for (int s = 0; s < 4; ++s) {
    const std::int64_t cout = w << s;
    for (int i = 0; i < 2; ++i) {
      const std::string n = "layer" + std::to_string(s + 1) + "." + std::to_string(i);
      const std::int64_t stride = (s > 0 && i == 0) ? 2 : 1;
      int y = b.relu(b.batch_norm(b.conv(x, cout, 3, stride, 1, n + ".conv1", false), n + ".bn1", false, true));
      y = b.batch_norm(b.conv(y, cout, 3, 1, 1, n + ".conv2", false), n + ".bn2", false, true);
      int sc = x;
      if (stride != 1 || cin != cout)
        sc = b.batch_norm(b.conv(x, cout, 1, stride, 0, n + ".downsample.0", false), n + ".downsample.1", false, true);
      x = b.relu(b.add(y, sc));
      cin = cout;
    }
  }
  return b.finish(b.linear(b.flatten(b.global_avg_pool(x)), 10, "fc"));
}

// MobileNetV2-style: stem conv, inverted residual blocks (1x1 expand, 3x3 depthwise with stride 1
// or 2, 1x1 project, residual when shapes match), 1x1 head conv, pooling, linear head.
Model inverted_residual(std::uint64_t seed) {
  ModelBuilder b({3, 12, 12}, seed);
  int x = b.relu(b.conv(b.input(), 4, 3, 2, 1, "stem"));
  struct Blk {
    std::int64_t expand, out, stride;
  };
  std::int64_t cin = 4;
  int i = 0;
  for (const Blk& k : {Blk{2, 4, 1}, Blk{3, 6, 2}, Blk{2, 6, 1}}) {
    const std::string n = "block" + std::to_string(i++);
    const std::int64_t hid = cin * k.expand;
    int y = b.unary(b.conv(x, hid, 1, 1, 0, n + ".expand"), UnaryKind::Tanh);
    y = b.relu(b.conv(y, hid, 3, k.stride, 1, n + ".dw", true, hid));
    y = b.conv(y, k.out, 1, 1, 0, n + ".project");
    x = (k.stride == 1 && cin == k.out) ? b.add(x, y) : y;
    cin = k.out;
  }
  x = b.relu(b.conv(x, 8, 1, 1, 0, "head"));
  return b.finish(b.linear(b.flatten(b.global_avg_pool(x)), 5, "fc"));
}

ObjectiveOptions f64(std::int64_t micro_batch) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  return o;
}

Vector unit_direction(std::int64_t P, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  Vector v(P);
  for (auto& e : v) e = nd(rng);
  return v.normalized();
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

// Gradient along two directions and HVPs along them against central differences of the loss and of
// the gradient.
void check_against_finite_differences(const Model& m, const Dataset& d, std::int64_t micro_batch) {
  auto obj = Objective::create(m, d, f64(micro_batch));
  const std::int64_t P = obj->num_params();
  const auto w0 = obj->params();
  Vector g;
  obj->gradient(g);
  for (std::uint64_t seed : {1, 2}) {
    const Vector v = unit_direction(P, seed);
    Matrix Hv;
    obj->product(Curvature::Hessian, v, Hv);
    auto shifted = w0;
    auto at = [&](double t) {
      for (std::int64_t i = 0; i < P; ++i) shifted[i] = w0[i] + t * v[i];
      obj->set_params(shifted);
    };
    Vector gp, gm;
    at(kFdStep);
    const double lp = obj->gradient(gp);
    at(-kFdStep);
    const double lm = obj->gradient(gm);
    obj->set_params(w0);
    const double dd = (lp - lm) / (2 * kFdStep);
    INFO("P = ", P, ", direction ", seed, ": g.v = ", g.dot(v), ", finite difference ", dd);
    CHECK(std::abs(g.dot(v) - dd) <= kFdTol * std::max(1.0, std::abs(dd)));
    const Vector fd = (gp - gm) / (2 * kFdStep);
    INFO("HVP rel err ", rel(Hv.col(0), fd));
    CHECK(rel(Hv.col(0), fd) < kFdTol);
  }
}

// forward, backward (all inputs), jvp and backward_tangent (k directions, second order) of one op.
template <class T>
struct KernelsOf {
  Tensor<T> y, ty;
  std::vector<Tensor<T>> g, tg;
};
using Kernels = KernelsOf<double>;

template <class T>
KernelsOf<T> run_kernels(const OpPtr& op, const std::vector<Tensor<T>>& in, const Tensor<T>& gy,
                         const std::vector<Tensor<T>>& tin, const Tensor<T>& tgy, std::int64_t k,
                         bool state_after_forward = true) {
  KernelsOf<T> r;
  OpState<T> st;
  OpCtx<T> c;
  std::vector<Shape> shapes;
  for (const auto& t : in) c.in.push_back(t.view()), shapes.push_back(t.shape());
  r.y = Tensor<T>(op->output_shape(shapes));
  c.state = &st;
  op->forward(c, r.y.view());
  if (!state_after_forward) c.state = nullptr;  // derivative kernels without what forward kept
  c.out = r.y.view();
  c.gout = gy.view();
  for (const auto& t : in) r.g.emplace_back(t.shape());
  for (auto& t : r.g) c.gin.push_back(t.view());
  op->backward(c);
  c.k = k;
  for (const auto& t : tin) c.tin.push_back(t.view());
  r.ty = Tensor<T>(with_lead(k, r.y.shape()));
  c.tout = r.ty.view();
  op->jvp(c);
  c.tgout = tgy.view();
  for (const auto& t : in) r.tg.emplace_back(with_lead(k, t.shape()));
  for (auto& t : r.tg) c.tgin.push_back(t.view());
  op->backward_tangent(c);
  return r;
}

template <class T = double>
Tensor<T> random_tensor(const Shape& s, std::mt19937_64& rng) {
  std::normal_distribution<T> nd;
  Tensor<T> t(s);
  for (auto& e : t.vec()) e = nd(rng);
  return t;
}

// w [O, 1, kh, kw] of a depthwise conv as the dense [O, C, kh, kw] weight of the same map (zero
// off the diagonal blocks); `lead` directions stacked in front.
Tensor<double> densify(const Tensor<double>& w, std::int64_t C, std::int64_t lead) {
  const std::int64_t O = w.dim(-4), K = w.dim(-2) * w.dim(-1), m = O / C;
  Tensor<double> d(lead ? Shape{lead, O, C, w.dim(-2), w.dim(-1)} : Shape{O, C, w.dim(-2), w.dim(-1)});
  for (std::int64_t j = 0; j < std::max<std::int64_t>(lead, 1); ++j)
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t e = 0; e < K; ++e) d.data()[((j * O + o) * C + o / m) * K + e] = w.data()[(j * O + o) * K + e];
  return d;
}

// The diagonal blocks of a dense [.., O, C, kh, kw] weight gradient, as [.., O, 1, kh, kw].
Tensor<double> diagonal(const Tensor<double>& d, std::int64_t lead) {
  const std::int64_t O = d.dim(-4), C = d.dim(-3), K = d.dim(-2) * d.dim(-1), m = O / C;
  Tensor<double> w(lead ? Shape{lead, O, 1, d.dim(-2), d.dim(-1)} : Shape{O, 1, d.dim(-2), d.dim(-1)});
  for (std::int64_t j = 0; j < std::max<std::int64_t>(lead, 1); ++j)
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t e = 0; e < K; ++e) w.data()[(j * O + o) * K + e] = d.data()[((j * O + o) * C + o / m) * K + e];
  return w;
}

double max_diff(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.size() == b.size());
  double e = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(a.data()[i] - b.data()[i]));
  return e;
}

// max |a - b| / max |b| of two float32 tensors.
double rel_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.size() == b.size());
  double e = 0, m = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    e = std::max(e, std::abs(double(a.data()[i]) - double(b.data()[i])));
    m = std::max(m, std::abs(double(b.data()[i])));
  }
  return m > 0 ? e / m : e;
}

// Selects the convolution backend for one scope (internal/onednn_conv.h); restores it after.
struct ConvBackend {
  bool old;
  explicit ConvBackend(bool onednn) : old(internal::set_onednn_conv(onednn)) {}
  ~ConvBackend() { internal::set_onednn_conv(old); }
};
bool onednn_compiled_in() {
  ConvBackend on(true);
  return internal::onednn_conv_enabled();
}

}  // namespace

TEST_CASE("ResNet-18-shaped network (width 4): gradient and HVP against finite differences") {
  Model m = resnet18_shaped(4, 3);
  CHECK(m.num_params() > 40000);
  check_against_finite_differences(m, synthetic_data({3, 32, 32}, 6, 10, 4), 2);
}

TEST_CASE("inverted residuals with depthwise convolutions: gradient and HVP against finite differences") {
  check_against_finite_differences(inverted_residual(5), synthetic_data({3, 12, 12}, 5, 5, 6), 2);
}

TEST_CASE("depthwise convolution equals the dense convolution with block-diagonal weights") {
  struct Geo {
    std::int64_t C, m, k, s, p, d, H, W;
  };
  const std::int64_t N = 2, k = 2;
  std::mt19937_64 rng(7);
  for (const Geo& q : {Geo{3, 1, 3, 1, 1, 1, 6, 5}, Geo{3, 1, 3, 2, 1, 1, 7, 6}, Geo{2, 2, 3, 1, 0, 1, 5, 5},
                       Geo{4, 1, 5, 1, 2, 1, 4, 4}, Geo{2, 1, 3, 1, 2, 2, 6, 6}, Geo{3, 2, 3, 2, 0, 1, 8, 7}}) {
    const std::int64_t O = q.C * q.m;
    Conv2dAttrs a;
    a.kernel = {q.k, q.k};
    a.stride = {q.s, q.s};
    a.pads = {q.p, q.p, q.p, q.p};
    a.dilation = {q.d, q.d};
    Conv2dAttrs ad = a;
    ad.groups = q.C;
    const Tensor<double> x = random_tensor({N, q.C, q.H, q.W}, rng), w = random_tensor({O, 1, q.k, q.k}, rng),
                         bias = random_tensor({O}, rng);
    const Shape ys = make_conv(ad)->output_shape({x.shape(), w.shape(), bias.shape()});
    const Tensor<double> gy = random_tensor(ys, rng), tgy = random_tensor(with_lead(k, ys), rng);
    const Tensor<double> tx = random_tensor(with_lead(k, x.shape()), rng),
                         tw = random_tensor(with_lead(k, w.shape()), rng), tb = random_tensor({k, O}, rng);
    const Kernels dw = run_kernels(make_conv(ad), {x, w, bias}, gy, {tx, tw, tb}, tgy, k);
    const Kernels dn =
        run_kernels(make_conv(a), {x, densify(w, q.C, 0), bias}, gy, {tx, densify(tw, q.C, k), tb}, tgy, k);
    INFO("channels ", q.C, " x", q.m, " kernel ", q.k, " stride ", q.s, " pad ", q.p, " dilation ", q.d);
    CHECK(max_diff(dw.y, dn.y) < kOracleTol);
    CHECK(max_diff(dw.g[0], dn.g[0]) < kOracleTol);
    CHECK(max_diff(dw.g[1], diagonal(dn.g[1], 0)) < kOracleTol);
    CHECK(max_diff(dw.g[2], dn.g[2]) < kOracleTol);
    CHECK(max_diff(dw.ty, dn.ty) < kOracleTol);
    CHECK(max_diff(dw.tg[0], dn.tg[0]) < kOracleTol);
    CHECK(max_diff(dw.tg[1], diagonal(dn.tg[1], k)) < kOracleTol);
    CHECK(max_diff(dw.tg[2], dn.tg[2]) < kOracleTol);
  }
}

TEST_CASE("ops that accumulate add their gradients into what the buffers hold") {
  std::mt19937_64 rng(8);
  Conv2dAttrs strided;
  strided.kernel = {3, 3};
  strided.stride = {2, 2};
  strided.pads = {1, 1, 1, 1};
  Conv2dAttrs same = strided;
  same.stride = {1, 1};
  Conv2dAttrs dw = same;
  dw.groups = 4;
  struct Case {
    const char* name;
    OpPtr op;
    std::vector<Shape> in;
  };
  const std::int64_t k = 2;
  for (const Case& cs :
       {Case{"conv 3x3/1", make_conv(same), {{2, 4, 5, 5}, {3, 4, 3, 3}, {3}}},
        Case{"conv 3x3/2", make_conv(strided), {{2, 4, 5, 5}, {3, 4, 3, 3}, {3}}},
        Case{"depthwise", make_conv(dw), {{2, 4, 5, 5}, {4, 1, 3, 3}, {4}}},
        Case{"conv 3x3/1 on 1x1 (dead taps)", make_conv(same), {{2, 4, 1, 1}, {3, 4, 3, 3}, {3}}},
        Case{"conv 3x3/2 on 2x2 (dead taps)", make_conv(strided), {{2, 4, 2, 2}, {3, 4, 3, 3}, {3}}},
        Case{"conv 3x3/1 on 2x2 (dense)", make_conv(same), {{2, 4, 2, 2}, {3, 4, 3, 3}, {3}}},
        Case{"conv 3x3/1 on 1x4 (dead taps, im2col)", make_conv(same), {{2, 4, 1, 4}, {3, 4, 3, 3}, {3}}},
        Case{"gemm", make_gemm(false, true), {{3, 5}, {4, 5}, {4}}},
        Case{"matmul", make_matmul(), {{2, 3, 5}, {5, 4}}}}) {
    REQUIRE(cs.op->accumulates());
    std::vector<Tensor<double>> in, tin;
    for (const auto& s : cs.in) in.push_back(random_tensor(s, rng)), tin.push_back(random_tensor(with_lead(k, s), rng));
    std::vector<Shape> shapes(cs.in);
    const Shape ys = cs.op->output_shape(shapes);
    const Tensor<double> gy = random_tensor(ys, rng), tgy = random_tensor(with_lead(k, ys), rng);
    const Kernels ref = run_kernels(cs.op, in, gy, tin, tgy, k);
    // Again with every gradient buffer pre-filled and its accumulate bit set.
    OpState<double> st;
    OpCtx<double> c;
    for (const auto& t : in) c.in.push_back(t.view());
    Tensor<double> y(ys);
    c.state = &st;
    cs.op->forward(c, y.view());
    c.out = y.view();
    c.gout = gy.view();
    std::vector<Tensor<double>> g, tg, g0, tg0;
    for (const auto& t : in) {
      g0.push_back(random_tensor(t.shape(), rng));
      tg0.push_back(random_tensor(with_lead(k, t.shape()), rng));
    }
    g = g0;
    tg = tg0;
    for (auto& t : g) c.gin.push_back(t.view());
    c.accumulate = (1u << in.size()) - 1;
    cs.op->backward(c);
    c.k = k;
    for (const auto& t : tin) c.tin.push_back(t.view());
    Tensor<double> ty(with_lead(k, ys));
    c.tout = ty.view();
    cs.op->jvp(c);
    c.tgout = tgy.view();
    for (auto& t : tg) c.tgin.push_back(t.view());
    cs.op->backward_tangent(c);
    for (size_t i = 0; i < in.size(); ++i) {
      INFO(cs.name, " input ", i);
      for (std::int64_t e = 0; e < g[i].size(); ++e) g[i].data()[e] -= g0[i].data()[e];
      for (std::int64_t e = 0; e < tg[i].size(); ++e) tg[i].data()[e] -= tg0[i].data()[e];
      CHECK(max_diff(g[i], ref.g[i]) < 1e-12);
      CHECK(max_diff(tg[i], ref.tg[i]) < 1e-12);
    }
  }
}

TEST_CASE("Row gathers of 1x1 convolutions match their definition for every plane size") {
  // to_rows / from_rows have compile-time copies for planes of 1, 2, 4 and 8 positions (im2col.cpp)
  // and a generic loop for the others; each against the index formula, with a channel offset, a
  // row stride wider than the rows, and from_rows both overwriting and adding.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::int64_t HW : {1, 2, 3, 4, 8, 9, 16}) {
    const std::int64_t S = 5, Ctot = 7, c0 = 2, C = 4, ys = Ctot * HW + 3, ld = S * HW + 5;
    std::vector<float> y(S * ys), rows(C * ld, -7.0f);
    for (float& v : y) v = u(rng);
    internal::to_rows(y.data(), S, ys, c0, C, HW, rows.data(), ld);
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t s = 0; s < S; ++s)
        for (std::int64_t i = 0; i < HW; ++i) REQUIRE(rows[c * ld + s * HW + i] == y[s * ys + (c0 + c) * HW + i]);
    for (std::int64_t c = 0; c < C; ++c)  // the padding of each row is left alone
      for (std::int64_t i = S * HW; i < ld; ++i) REQUIRE(rows[c * ld + i] == -7.0f);
    std::vector<float> packed(C * S * HW);
    for (float& v : packed) v = u(rng);
    for (bool add : {false, true}) {
      std::vector<float> out = y;
      internal::from_rows(packed.data(), S, ys, c0, C, HW, out.data(), add);
      for (std::int64_t s = 0; s < S; ++s)
        for (std::int64_t k = 0; k < ys; ++k) {
          const std::int64_t c = k / HW - c0, i = k % HW;
          const bool inside = k < Ctot * HW && c >= 0 && c < C;
          const float want = inside ? (add ? y[s * ys + k] + packed[(c * S + s) * HW + i] : packed[(c * S + s) * HW + i])
                                    : y[s * ys + k];
          REQUIRE(out[s * ys + k] == want);
        }
    }
  }
}

TEST_CASE("GEMMs split into blocks give the same bits on 1, 2 and 4 threads and match the definition") {
  // Row blocks (m >= n), and column blocks (n > m): with op(Y) = Y^T (ty) those are computed as the
  // transposed product in row blocks and transposed back (gemm.cpp), overwriting or adding.
  struct Geo {
    bool tx, ty;
    std::int64_t m, n, k;
    float alpha;
    bool acc;
  };
  for (const Geo& q : {Geo{false, true, 600, 257, 200, 0.5f, true}, Geo{false, true, 64, 1024, 256, 1.0f, false},
                       Geo{true, true, 64, 1024, 256, -2.0f, true}, Geo{false, false, 64, 1024, 256, 1.0f, true},
                       Geo{true, false, 48, 1100, 320, 0.5f, false}}) {
    INFO("tx ", q.tx, " ty ", q.ty, " m ", q.m, " n ", q.n, " k ", q.k, " alpha ", q.alpha, " accumulate ", q.acc);
    const std::int64_t xr = q.tx ? q.k : q.m, xc = q.tx ? q.m : q.k, yr = q.ty ? q.n : q.k, yc = q.ty ? q.k : q.n;
    std::mt19937_64 rng(9);
    std::normal_distribution<float> nd;
    std::vector<float> X(xr * xc), Y(yr * yc), Z0(q.m * q.n);
    for (auto& e : X) e = nd(rng);
    for (auto& e : Y) e = nd(rng);
    for (auto& e : Z0) e = nd(rng);
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 4);
    std::vector<std::vector<float>> Z;
    for (int threads : {1, 2, 4}) {
      tbb::task_arena arena(threads);
      std::vector<float> z = Z0;
      arena.execute([&] { internal::gemm(q.tx, q.ty, X.data(), xr, xc, Y.data(), yr, yc, z.data(), q.alpha, q.acc); });
      Z.push_back(z);
    }
    CHECK(Z[0] == Z[1]);
    CHECK(Z[0] == Z[2]);
    double err = 0, scale = 0;
    for (std::int64_t i = 0; i < q.m; ++i)
      for (std::int64_t j = 0; j < q.n; ++j) {
        double ref = q.acc ? double(Z0[i * q.n + j]) : 0.0;
        for (std::int64_t l = 0; l < q.k; ++l) {
          const double a = q.tx ? X[l * xc + i] : X[i * xc + l], b = q.ty ? Y[j * yc + l] : Y[l * yc + j];
          ref += double(q.alpha) * a * b;
        }
        err = std::max(err, std::abs(ref - double(Z[0][i * q.n + j])));
        scale = std::max(scale, std::abs(ref));
      }
    CHECK(err < 1e-5 * scale * std::sqrt(double(q.k)));
  }
}

TEST_CASE("oneDNN GEMMs match the definition for every transpose, leading dimension, scale and accumulation") {
  // internal::gemm hands float32 products of 2^21 flops and more to oneDNN's matmul (gemm.cpp),
  // with operands read through strides; each case is checked against a double-precision sum on
  // sub-matrices of wider buffers, and the columns outside the product must stay untouched.
  struct Geo {
    bool tx, ty;
    std::int64_t m, n, k;
    float alpha;
    bool acc;
  };
  std::mt19937_64 rng(93);
  std::normal_distribution<float> nd;
  for (const Geo& q : {Geo{false, false, 96, 80, 300, 1.0f, false}, Geo{true, false, 96, 80, 300, 1.0f, true},
                       Geo{false, true, 96, 80, 300, -0.5f, false}, Geo{true, true, 96, 80, 300, 2.0f, true},
                       Geo{false, true, 16, 512, 256, 1.0f, true}, Geo{true, false, 256, 16, 600, 0.25f, false}}) {
    const std::int64_t xr = q.tx ? q.k : q.m, xc = q.tx ? q.m : q.k, yr = q.ty ? q.n : q.k, yc = q.ty ? q.k : q.n;
    const std::int64_t ldx = xc + 3, ldy = yc + 5, ldz = q.n + 7;
    std::vector<float> X(xr * ldx), Y(yr * ldy), Z(q.m * ldz);
    for (auto& e : X) e = nd(rng);
    for (auto& e : Y) e = nd(rng);
    for (auto& e : Z) e = nd(rng);
    const std::vector<float> Z0 = Z;
    INFO("tx ", q.tx, " ty ", q.ty, " m ", q.m, " n ", q.n, " k ", q.k, " alpha ", q.alpha, " accumulate ", q.acc);
    const bool ran = internal::onednn_gemm(q.tx, q.ty, q.m, q.n, q.k, X.data(), ldx, Y.data(), ldy, Z.data(), ldz,
                                           q.alpha, q.acc);
    if (!ran) {
      CHECK_FALSE(internal::onednn_gemm_enabled());  // only without oneDNN (or with it switched off)
      CHECK(Z == Z0);
      continue;
    }
    double err = 0, scale = 0;
    for (std::int64_t i = 0; i < q.m; ++i) {
      for (std::int64_t j = 0; j < q.n; ++j) {
        double ref = q.acc ? double(Z0[i * ldz + j]) : 0.0;
        for (std::int64_t l = 0; l < q.k; ++l) {
          const double a = q.tx ? X[l * ldx + i] : X[i * ldx + l], b = q.ty ? Y[j * ldy + l] : Y[l * ldy + j];
          ref += double(q.alpha) * a * b;
        }
        err = std::max(err, std::abs(ref - double(Z[i * ldz + j])));
        scale = std::max(scale, std::abs(ref));
      }
      for (std::int64_t j = q.n; j < ldz; ++j) CHECK(Z[i * ldz + j] == Z0[i * ldz + j]);
    }
    CHECK(err < 1e-5 * scale * std::sqrt(double(q.k)));
  }
}

TEST_CASE("narrow float32 GEMMs: correct, each row the bits of the row alone, overwrite = adding to zeros") {
  // internal::gemm runs float32 products whose op(Y) has few columns and rows on its own kernel
  // (gemm.cpp, narrow()), chosen by those two sizes only. Each case: against a double-precision sum;
  // rows computed one at a time (and in two uneven blocks) give the same bits as all rows at once,
  // as a block of directions stacked into rows must; an overwrite of NaNs gives the bits of adding
  // to zeros.
  struct Geo {
    bool tx, ty;
    std::int64_t m, n, k;
    float alpha;
  };
  std::mt19937_64 rng(97);
  std::normal_distribution<float> nd;
  std::vector<Geo> geos;
  // Narrow: n up to one packet (16 floats with AVX-512, 8 with AVX2, 4 with SSE) with k <= 256, or
  // n <= 64 with k <= 32; the cases below are narrow on all three.
  for (std::int64_t n : {1, 3, 4})
    for (std::int64_t k : {1, 8, 33, 256}) geos.push_back({(n + k) % 2 == 1, n % 3 == 0, 37, n, k, 1.0f});
  for (std::int64_t n : {5, 8, 16, 17, 40, 64})
    for (std::int64_t k : {1, 8, 16, 32}) geos.push_back({(n + k) % 2 == 1, n % 3 == 0, 37, n, k, 1.0f});
  geos.push_back({false, false, 128, 16, 16, 0.5f});
  geos.push_back({true, true, 19, 64, 32, -2.0f});
  for (const Geo& q : geos) {
    // internal::gemm takes dense operands (leading dimensions are the oneDNN test's business).
    const std::int64_t xr = q.tx ? q.k : q.m, xc = q.tx ? q.m : q.k, yr = q.ty ? q.n : q.k, yc = q.ty ? q.k : q.n;
    std::vector<float> Xd(xr * xc), Yd(yr * yc), Zd0(q.m * q.n);
    for (auto* v : {&Xd, &Yd, &Zd0})
      for (auto& e : *v) e = nd(rng);
    INFO("tx ", q.tx, " ty ", q.ty, " m ", q.m, " n ", q.n, " k ", q.k, " alpha ", q.alpha);
    std::vector<float> acc = Zd0, over(q.m * q.n, std::numeric_limits<float>::quiet_NaN()), zeros(q.m * q.n, 0.0f);
    internal::gemm(q.tx, q.ty, Xd.data(), xr, xc, Yd.data(), yr, yc, acc.data(), q.alpha, true);
    internal::gemm(q.tx, q.ty, Xd.data(), xr, xc, Yd.data(), yr, yc, over.data(), q.alpha, false);
    internal::gemm(q.tx, q.ty, Xd.data(), xr, xc, Yd.data(), yr, yc, zeros.data(), q.alpha, true);
    CHECK(over == zeros);
    double err = 0, scale = 1;
    for (std::int64_t i = 0; i < q.m; ++i)
      for (std::int64_t j = 0; j < q.n; ++j) {
        double ref = Zd0[i * q.n + j];
        for (std::int64_t l = 0; l < q.k; ++l)
          ref += double(q.alpha) * double(q.tx ? Xd[l * xc + i] : Xd[i * xc + l]) *
                 double(q.ty ? Yd[j * yc + l] : Yd[l * yc + j]);
        err = std::max(err, std::abs(ref - double(acc[i * q.n + j])));
        scale = std::max(scale, std::abs(ref));
      }
    CHECK(err < 1e-5 * scale * std::sqrt(double(q.k)));
    // Rows alone and in blocks of 1 and m - 1 (X's rows, or its columns when transposed).
    auto rows = [&](std::int64_t i0, std::int64_t w) {
      std::vector<float> xs(q.tx ? q.k * w : w * q.k), z(w * q.n, 0.0f);
      for (std::int64_t i = 0; i < w; ++i)
        for (std::int64_t l = 0; l < q.k; ++l)
          (q.tx ? xs[l * w + i] : xs[i * q.k + l]) = q.tx ? Xd[l * xc + i0 + i] : Xd[(i0 + i) * xc + l];
      internal::gemm(q.tx, q.ty, xs.data(), q.tx ? q.k : w, q.tx ? w : q.k, Yd.data(), yr, yc, z.data(), q.alpha,
                     false);
      return z;
    };
    std::vector<float> alone, split = rows(0, 1);
    for (std::int64_t i = 0; i < q.m; ++i) {
      const auto r = rows(i, 1);
      alone.insert(alone.end(), r.begin(), r.end());
    }
    const auto rest = rows(1, q.m - 1);
    split.insert(split.end(), rest.begin(), rest.end());
    CHECK(alone == over);
    CHECK(split == over);
  }
}

TEST_CASE("batched narrow float32 GEMMs with a shared X give each batch entry the bits of its product alone") {
  // A primal against k tangent directions (X shared, Y per direction): batched_gemm runs each
  // narrow Y on its own instead of concatenating them into one wide product, so a block of
  // directions gets the bits of single directions by construction (a wide product on Eigen or
  // oneDNN agrees only while neither splits the inner dimension into blocks).
  std::mt19937_64 rng(98);
  std::normal_distribution<float> nd;
  for (bool ty : {false, true}) {
    // 16 directions of [512 x 256] x [256 x 4]: concatenated, a 17 MFLOP product (oneDNN's range).
    const std::int64_t nb = 16, m = 512, n = 4, k = 256;
    const std::int64_t yr = ty ? n : k, yc = ty ? k : n;
    std::vector<float> X(m * k), Y(nb * n * k), Z(nb * m * n);
    for (auto& e : X) e = nd(rng);
    for (auto& e : Y) e = nd(rng);
    internal::batched_gemm<float>(Shape{nb}, {0}, {n * k}, {m * n}, false, ty, X.data(), m, k, Y.data(), yr, yc,
                                  Z.data(), 1.0f, false);
    for (std::int64_t b = 0; b < nb; ++b) {
      std::vector<float> alone(m * n);
      internal::gemm(false, ty, X.data(), m, k, Y.data() + b * n * k, yr, yc, alone.data(), 1.0f, false);
      INFO("ty ", ty, " b ", b);
      CHECK(std::equal(alone.begin(), alone.end(), Z.begin() + b * m * n));
    }
  }
}

TEST_CASE("batched GEMMs that overwrite give the bits of adding to zeros on every path, and never read Z") {
  // batched_gemm has a path per operand layout (batch folded into rows, a reduction folded into the
  // inner dimension, a shared operand packed once either side, one GEMM per batch index, broadcast
  // reductions); with accumulate false each must equal zeros plus the product bit for bit, whatever
  // Z held (NaN here). float32 at sizes that reach oneDNN, and float64.
  struct Case {
    const char* name;
    Shape batch;
    std::vector<std::int64_t> bx, by, bz;  // batch dims of X, Y, Z (1 = broadcast)
    bool tx, ty;
    std::int64_t m, n, k;
  };
  // Every product is 2 * 128 * 112 * 96 = 2.75 MFLOP or more: oneDNN's range in float32.
  const std::int64_t M = 128, N = 112, K = 96;
  const std::vector<Case> cases{
      {"Y shared: rows folded", {4}, {4}, {1}, {4}, false, true, M, N, K},
      {"reduction folded into k", {4}, {4}, {4}, {1}, true, false, M, N, K},
      {"X shared, Y per batch (gathered)", {3}, {1}, {3}, {3}, false, false, M, N, K},
      {"X shared, Y transposed per batch", {3}, {1}, {3}, {3}, false, true, M, N, K},
      {"X per batch transposed, Y shared", {3}, {3}, {1}, {3}, true, false, M, N, K},
      {"one GEMM per batch index", {2, 3}, {2, 3}, {2, 3}, {2, 3}, false, false, M, N, K},
      {"partial reduction over a broadcast dim", {2, 3}, {2, 3}, {2, 3}, {1, 3}, false, true, M, N, K}};
  std::mt19937_64 rng(95);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    std::normal_distribution<T> nd;
    for (const Case& c : cases) {
      const std::int64_t xr = c.tx ? c.k : c.m, xc = c.tx ? c.m : c.k, yr = c.ty ? c.n : c.k, yc = c.ty ? c.k : c.n;
      auto strides = [&](const std::vector<std::int64_t>& b, std::int64_t inner) {
        return internal::broadcast_strides(Shape(b.begin(), b.end()), c.batch, inner);
      };
      auto count = [](const std::vector<std::int64_t>& b) {
        std::int64_t p = 1;
        for (auto d : b) p *= d;
        return p;
      };
      std::vector<T> X(count(c.bx) * xr * xc), Y(count(c.by) * yr * yc);
      for (auto& e : X) e = nd(rng);
      for (auto& e : Y) e = nd(rng);
      const std::int64_t nz = count(c.bz) * c.m * c.n;
      std::vector<T> added(nz, T(0)), over(nz, std::numeric_limits<T>::quiet_NaN());
      const auto sx = strides(c.bx, xr * xc), sy = strides(c.by, yr * yc), sz = strides(c.bz, c.m * c.n);
      internal::batched_gemm<T>(c.batch, sx, sy, sz, c.tx, c.ty, X.data(), xr, xc, Y.data(), yr, yc, added.data(),
                                T(0.5), true);
      internal::batched_gemm<T>(c.batch, sx, sy, sz, c.tx, c.ty, X.data(), xr, xc, Y.data(), yr, yc, over.data(),
                                T(0.5), false);
      INFO(c.name, sizeof(T) == 4 ? " (float32)" : " (float64)");
      CHECK(over == added);
    }
  };
  run(float{});
  run(double{});
}

TEST_CASE("many small float32 GEMMs in one batched oneDNN matmul: each the bits of its product alone, and correct") {
  // Attention's per-(sequence, head) products, [64 x 16] x [16 x 64] (scores, Y transposed) and
  // [64 x 64] x [64 x 16] (context), over a batch of 2 x 3 that nests into one dimension; then the
  // same with X's batch entries spaced irregularly (no single stride: one GEMM per entry).
  if (!internal::onednn_gemm_enabled()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing) or CURV_GEMM_BACKEND=eigen: nothing to compare");
    return;
  }
  std::mt19937_64 rng(96);
  std::normal_distribution<float> nd;
  const Shape batch{2, 3};
  struct Geo {
    bool ty;
    std::int64_t m, n, k;
    bool regular;
  };
  for (const Geo& q : {Geo{true, 64, 64, 16, true}, Geo{false, 64, 16, 64, true}, Geo{true, 64, 64, 16, false}}) {
    const std::int64_t xs = q.m * q.k, ys = q.n * q.k, zs = q.m * q.n;
    // X entries at 0, xs, 2 xs | 3 xs + gap, ...: regular when gap = 0.
    const std::int64_t gap = q.regular ? 0 : 5;
    std::vector<float> X(6 * xs + gap), Y(6 * ys), Z(6 * zs, std::numeric_limits<float>::quiet_NaN());
    for (auto& e : X) e = nd(rng);
    for (auto& e : Y) e = nd(rng);
    const std::vector<std::int64_t> sx{3 * xs + gap, xs}, sy{3 * ys, ys}, sz{3 * zs, zs};
    const std::int64_t yr = q.ty ? q.n : q.k, yc = q.ty ? q.k : q.n;
    internal::batched_gemm<float>(batch, sx, sy, sz, false, q.ty, X.data(), q.m, q.k, Y.data(), yr, yc, Z.data(),
                                  1.0f, false);
    INFO("ty ", q.ty, " m ", q.m, " n ", q.n, " k ", q.k, q.regular ? " (one batch dimension)" : " (irregular)");
    double err = 0;
    for (std::int64_t b0 = 0; b0 < 2; ++b0)
      for (std::int64_t b1 = 0; b1 < 3; ++b1) {
        const float* x = X.data() + b0 * sx[0] + b1 * sx[1];
        const float* y = Y.data() + b0 * sy[0] + b1 * sy[1];
        const float* z = Z.data() + b0 * sz[0] + b1 * sz[1];
        if (q.regular) {
          std::vector<float> alone(zs);
          REQUIRE(internal::onednn_batched_gemm(1, 0, 0, 0, false, q.ty, q.m, q.n, q.k, x, q.k, y, yc, alone.data(),
                                                q.n, 1.0f, false));
          CHECK(std::equal(alone.begin(), alone.end(), z));
        }
        for (std::int64_t i = 0; i < q.m; ++i)
          for (std::int64_t j = 0; j < q.n; ++j) {
            double ref = 0;
            for (std::int64_t l = 0; l < q.k; ++l)
              ref += double(x[i * q.k + l]) * double(q.ty ? y[j * q.k + l] : y[l * q.n + j]);
            err = std::max(err, std::abs(ref - double(z[i * q.n + j])));
          }
      }
    CHECK(err < 1e-4);
  }
}

TEST_CASE("a oneDNN GEMM gives the same bits on a fresh thread as on one that ran oneDNN before") {
  // oneDNN plans a matmul for the OpenMP thread count at its creation; a fresh thread has OpenMP's
  // default (the cores). gemm_prim() sets one thread before building, so the plan, and the bits, of
  // a product depend on its geometry only. A long inner dimension gives the plan a reduction to split.
  if (!internal::onednn_gemm_enabled()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing) or CURV_GEMM_BACKEND=eigen: nothing to compare");
    return;
  }
  const std::int64_t m = 64, n = 48, k = 20000;
  std::mt19937_64 rng(94);
  std::normal_distribution<float> nd;
  std::vector<float> X(k * m), Y(k * n);
  for (auto& e : X) e = nd(rng);
  for (auto& e : Y) e = nd(rng);
  auto run = [&] {
    std::vector<float> z(m * n, 0.0f);
    bool ran = false;
    std::thread t([&] {
      ran = internal::onednn_gemm(true, false, m, n, k, X.data(), m, Y.data(), n, z.data(), n, 1.0f, false);
    });
    t.join();
    CHECK(ran);
    return z;
  };
  const std::vector<float> first = run();
  std::vector<float> again(m * n, 0.0f);
  CHECK(internal::onednn_gemm(true, false, m, n, k, X.data(), m, Y.data(), n, again.data(), n, 1.0f, false));
  CHECK(first == again);
  CHECK(run() == first);
}

TEST_CASE("runs of micro-batches give bitwise identical results for 1, 2 and 4 threads") {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 4);
  struct Setup {
    const char* name;
    Model model;
    Dataset data;
    std::int64_t micro_batch;
  };
  ModelBuilder mb({256}, 11);
  int h = mb.relu(mb.linear(mb.input(), 512, "fc1"));
  h = mb.unary(mb.linear(h, 512, "fc2"), UnaryKind::Tanh);
  std::vector<Setup> setups;
  // 40 micro-batches of 2: 16 runs of 2 or 3; then automatic micro-batches of ResNet-18's shape.
  setups.push_back(
      {"resnet18-shaped, micro-batch 2", resnet18_shaped(4, 12), synthetic_data({3, 32, 32}, 80, 10, 13), 2});
  setups.push_back({"resnet18-shaped, automatic", resnet18_shaped(8, 14), synthetic_data({3, 32, 32}, 70, 10, 15), 0});
  // GEMMs of 64 x 256 x 512 and larger: split into blocks inside each micro-batch.
  setups.push_back({"mlp 256-512-512-10, micro-batch 64", mb.finish(mb.linear(h, 10, "fc3")),
                    synthetic_data({256}, 150, 10, 16), 64});
  for (auto& s : setups) {
    ObjectiveOptions o;
    o.micro_batch = s.micro_batch;
    const std::int64_t P = s.model.num_params();
    Matrix V(P, 3);
    for (int j = 0; j < 3; ++j) V.col(j) = unit_direction(P, 20 + j);
    std::vector<Vector> g(3);
    std::vector<std::vector<Matrix>> Y(3);
    for (int t = 0; t < 3; ++t) {
      tbb::task_arena arena(1 << t);
      arena.execute([&] {
        auto obj = Objective::create(s.model, s.data, o);
        obj->gradient(g[t]);
        for (auto c : {Curvature::Hessian, Curvature::GGN, Curvature::EmpiricalFisher}) {
          Matrix y;
          obj->product(c, V, y);
          Y[t].push_back(y);
        }
        Matrix y1;
        obj->product(Curvature::Hessian, V.col(0), y1);
        Y[t].push_back(y1);
      });
    }
    INFO(s.name);
    for (int t = 1; t < 3; ++t) {
      CHECK(g[t] == g[0]);
      for (size_t i = 0; i < Y[0].size(); ++i) CHECK(Y[t][i] == Y[0][i]);
    }
  }
}

TEST_CASE("Gauss-Newton and Fisher products need no activation gradients: equal with and without the cache") {
  Model m = resnet18_shaped(4, 17);
  Dataset d = synthetic_data({3, 32, 32}, 9, 10, 18);
  ObjectiveOptions o;
  o.micro_batch = 4;
  ObjectiveOptions nc = o;
  nc.cache_bytes = 0;
  auto cached = Objective::create(m, d, o);
  auto uncached = Objective::create(m, d, nc);
  Matrix V(m.num_params(), 2);
  V.col(0) = unit_direction(m.num_params(), 19);
  V.col(1) = unit_direction(m.num_params(), 20);
  Vector g;
  cached->gradient(g);  // keeps passes with their activation gradients
  for (auto c : {Curvature::GGN, Curvature::EmpiricalFisher, Curvature::Hessian}) {
    Matrix a, b;
    cached->product(c, V, a);
    uncached->product(c, V, b);
    INFO(curvature_name(c));
    CHECK(a == b);
  }
  CHECK(uncached->cache_bytes_used() == 0);
}

TEST_CASE("a gradient on passes kept by a Hessian product equals a fresh gradient") {
  // The ViT's position embedding and class token enter through Add and Concat, ops whose output
  // gradients Hessian products do not read; the kept pass must still serve its parameters.
  Model m = build_arch("vit", {1, 28, 28}, 10, 26);
  Dataset d = synthetic_data({1, 28, 28}, 7, 10, 27);
  ObjectiveOptions o = f64(3);
  Vector fresh, after;
  Objective::create(m, d, o)->gradient(fresh);
  auto obj = Objective::create(m, d, o);
  Matrix y;
  obj->product(Curvature::Hessian, unit_direction(m.num_params(), 28), y);
  obj->gradient(after);
  CHECK(obj->primal_passes() == 3);
  CHECK(after == fresh);
}

TEST_CASE("keep_activation_grads: a Hessian product after a gradient skips its backward sweep, results unchanged") {
  // The ViT (Add/Concat parameters, LayerNorm, attention) and the inverted-residual CNN. Without the
  // option the product computes the activation gradients and keeps them (tracked memory grows);
  // with it the gradient kept them already, the product keeps next to nothing more, and gradient
  // and product are bitwise those of the default path.
  // One thread: kernels keep per-thread scratch buffers (tracked) between calls, and on several
  // threads a product could run a convolution on a thread that had not run it yet; under a
  // parallel ctest that scratch (28 KB) exceeded the bound below in 2 of 10 runs.
  tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
  for (int which = 0; which < 2; ++which) {
    Model m = which == 0 ? build_arch("vit", {1, 28, 28}, 10, 26) : inverted_residual(29);
    const Shape in = which == 0 ? Shape{1, 28, 28} : Shape{3, 12, 12};
    Dataset d = synthetic_data(in, 7, which == 0 ? 10 : 5, 30);
    ObjectiveOptions o = f64(3);
    const Matrix V = unit_direction(m.num_params(), 31);
    Vector g_ref, g;
    Matrix h_ref, h;
    auto ref = Objective::create(m, d, o);
    ref->gradient(g_ref);
    const std::size_t ref_after_gradient = tracked_bytes();
    ref->product(Curvature::Hessian, V, h_ref);
    const std::size_t ref_grown = tracked_bytes() - ref_after_gradient;
    o.keep_activation_grads = true;
    auto obj = Objective::create(m, d, o);
    obj->gradient(g);
    const std::size_t after_gradient = tracked_bytes();
    obj->product(Curvature::Hessian, V, h);
    INFO("model ", which, ": default product kept ", ref_grown, " bytes more; with the option ",
         tracked_bytes() - after_gradient);
    CHECK(ref_grown > 0);
    const auto grown = static_cast<std::int64_t>(tracked_bytes()) - static_cast<std::int64_t>(after_gradient);
    CHECK(grown < static_cast<std::int64_t>(ref_grown / 10));
    CHECK(obj->primal_passes() == ref->primal_passes());
    CHECK(g == g_ref);
    CHECK(h == h_ref);
    Vector again;
    obj->gradient(again);  // a gradient on passes that keep their activation gradients
    CHECK(again == g_ref);
  }
}

TEST_CASE("a pass frees the values no derivative reads, and node_inputs computes them again") {
  const Model m = resnet18_shaped(4, 31);
  const internal::GraphExecutor<double> ex(m);
  const auto& nodes = m.nodes();
  const auto& vals = m.values();
  // ReLU reads its output, Add reads nothing, inference-mode BatchNorm and Conv read their inputs:
  // the inputs of ReLUs (BatchNorm or Add outputs) and of Adds (BatchNorm outputs) are freed.
  int freed = 0, relu = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::string t = nodes[i].op->type();
    const int in = nodes[i].inputs[0];
    if (t == "Relu") {
      CHECK(ex.drops(in));
      CHECK_FALSE(ex.drops(nodes[i].output));
      if (relu < 0) relu = static_cast<int>(i);
    }
    if (t == "Add") CHECK(ex.drops(in));  // the residual branch (the shortcut is a ReLU output or a projection)
    if (t == "Conv" || t == "BatchNormalization" || t == "MaxPool") CHECK_FALSE(ex.drops(in));
    freed += vals[nodes[i].output].kind == ValueKind::Node && ex.drops(nodes[i].output);
  }
  // 17 ReLU inputs, 8 residual branches and 3 projections into Adds, the pooled features (Flatten
  // reads no values).
  CHECK(freed == 17 + 8 + 3 + 1);
  CHECK_FALSE(ex.drops(m.output()));
  // The stem's ReLU reads a freed BatchNorm output; the max-pool after it reads the ReLU's output.
  // node_inputs on a kept pass (after a gradient) runs the forward again with every value kept.
  REQUIRE(relu >= 0);
  int pool = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].inputs[0] == nodes[relu].output) pool = static_cast<int>(i);
  REQUIRE(pool >= 0);
  const Dataset d = synthetic_data({3, 32, 32}, 12, 10, 32);
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = 4;
  auto obj = Objective::create(m, d, o);
  Vector g;
  obj->gradient(g);
  REQUIRE(obj->cache_bytes_used() > 0);
  std::vector<Tensor<double>> x(3), y(3);
  obj->node_inputs({relu, pool}, [&](const NodeInput& io) {
    (io.node == relu ? x : y)[io.first_sample / 4] = io.input;
  });
  int negative = 0;
  for (int c = 0; c < 3; ++c) {
    REQUIRE(x[c].size() == y[c].size());
    REQUIRE(x[c].size() > 0);
    bool same = true;
    for (std::int64_t i = 0; i < x[c].size(); ++i) {
      same = same && y[c].data()[i] == std::max(x[c].data()[i], 0.0);
      negative += x[c].data()[i] < 0;
    }
    CHECK(same);
  }
  CHECK(negative > 0);  // the freed value is the ReLU's input, not its output
}

TEST_CASE("the memory cap holds on a model whose passes do not all fit, and results do not change") {
  Model m = resnet18_shaped(8, 21);
  Dataset d = synthetic_data({3, 32, 32}, 64, 10, 22);
  ObjectiveOptions o;
  o.micro_batch = 8;
  const std::int64_t P = m.num_params();
  Matrix V(P, 2);
  V.col(0) = unit_direction(P, 23);
  V.col(1) = unit_direction(P, 24);
  Vector g_ref;
  Matrix h_ref, ggn_ref;
  std::size_t estimate = 0;
  {
    auto obj = Objective::create(m, d, o);
    obj->gradient(g_ref);
    obj->product(Curvature::Hessian, V, h_ref);
    obj->product(Curvature::GGN, V, ggn_ref);
    estimate = obj->cache_bytes_estimate();
    CHECK(obj->cache_bytes_used() > estimate / 2);  // everything kept
    CHECK(obj->primal_passes() == 8);
  }
  // What keeping every pass takes: the working set of one micro-batch in flight (a pass with the
  // values its forward frees later, its tangents, the accumulators) comes first, the cache gets the
  // rest, which is less than half of it.
  const std::size_t cap = estimate;
  o.memory_bytes = cap;
  const std::size_t before = tracked_bytes();
  reset_tracked_peak();
  auto obj = Objective::create(m, d, o);
  Vector g;
  Matrix h, ggn;
  for (int rep = 0; rep < 2; ++rep) {
    obj->gradient(g);
    obj->product(Curvature::Hessian, V, h);
    obj->product(Curvature::GGN, V, ggn);
  }
  const std::size_t peak = tracked_peak_bytes() - before;
  INFO("cap ", cap, " bytes, engine peak ", peak, ", cache ", obj->cache_bytes_used(), " of ", estimate);
  CHECK(peak <= cap);
  CHECK(obj->cache_bytes_used() > 0);
  CHECK(obj->cache_bytes_used() < estimate / 2);
  CHECK(obj->primal_passes() > 8);  // passes that did not fit were recomputed
  CHECK(g == g_ref);
  CHECK(h == h_ref);
  CHECK(ggn == ggn_ref);
}

TEST_CASE("the automatic micro-batch follows the layer shapes") {
  // ResNet-20-like convs with many positions: 16. A ResNet-18 shape whose weights sit at 1x1: 64,
  // evened out over the samples. BatchNorm with batch statistics: the ghost batch of 16.
  ObjectiveOptions o;
  Model wide = resnet18_shaped(16, 25);
  CHECK(resolve_micro_batch(wide, 128, o) == 64);
  CHECK(resolve_micro_batch(wide, 100, o) == 50);
  CHECK(resolve_micro_batch(wide, 10, o) == 10);
  CHECK(resolve_micro_batch(build_arch("resnet20", {3, 32, 32}, 10, 1), 128, o) == 16);
  CHECK(resolve_micro_batch(build_arch("resnet20-bn", {3, 32, 32}, 10, 1, true), 100, o) == 16);
  o.micro_batch = 7;
  CHECK(resolve_micro_batch(wide, 128, o) == 7);
}

TEST_CASE("oneDNN convolutions equal the built-in kernels in float32, and add where asked") {
  if (!onednn_compiled_in()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing): nothing to compare");
    return;
  }
  struct Geo {
    std::int64_t N, C, O, kh, kw, s, d, pt, pl, pb, pr, H, W;
    std::int64_t G = 1;  // groups
  };
  const std::int64_t k = 2;
  std::mt19937_64 rng(31);
  for (const Geo& q : {Geo{3, 4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 7, 6}, Geo{2, 4, 6, 3, 3, 2, 1, 1, 1, 1, 1, 8, 7},
                       Geo{2, 5, 3, 1, 1, 2, 1, 0, 0, 0, 0, 6, 6}, Geo{2, 3, 4, 7, 7, 2, 1, 3, 3, 3, 3, 9, 9},
                       Geo{2, 3, 5, 3, 3, 1, 2, 2, 2, 2, 2, 7, 7}, Geo{2, 3, 4, 3, 2, 1, 1, 1, 0, 2, 1, 5, 6},
                       Geo{4, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, Geo{1, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4},
                       // Winograd kernels (onednn_conv.h): 3x3, stride 1, 32+ channels, 8x8+ planes;
                       // at 16 channels only the tangent pairs' stacked convolutions
                       Geo{2, 32, 48, 3, 3, 1, 1, 1, 1, 1, 1, 9, 10}, Geo{3, 48, 32, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8},
                       Geo{2, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 8, 9}, Geo{3, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4},
                       // depthwise (oneDNN's jit_dw kernels): stride 1, stride 2 with depth multiplier 2,
                       // a 1x1 plane, and a 5x5 kernel
                       Geo{2, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 7, 6, 16}, Geo{3, 8, 16, 3, 3, 2, 1, 1, 1, 1, 1, 9, 8, 8},
                       Geo{4, 24, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 24}, Geo{2, 12, 12, 5, 5, 1, 1, 2, 2, 2, 2, 6, 6, 12}}) {
    Conv2dAttrs a;
    a.kernel = {q.kh, q.kw};
    a.stride = {q.s, q.s};
    a.dilation = {q.d, q.d};
    a.pads = {q.pt, q.pl, q.pb, q.pr};
    a.groups = q.G;
    const OpPtr op = make_conv(a);
    std::vector<Tensor<float>> in{random_tensor<float>({q.N, q.C, q.H, q.W}, rng),
                                  random_tensor<float>({q.O, q.C / q.G, q.kh, q.kw}, rng),
                                  random_tensor<float>({q.O}, rng)};
    std::vector<Tensor<float>> tin;
    for (const auto& t : in) tin.push_back(random_tensor<float>(with_lead(k, t.shape()), rng));
    const Shape ys = op->output_shape({in[0].shape(), in[1].shape(), in[2].shape()});
    const Tensor<float> gy = random_tensor<float>(ys, rng), tgy = random_tensor<float>(with_lead(k, ys), rng);
    KernelsOf<float> ref, dn;
    {
      ConvBackend b(false);
      ref = run_kernels(op, in, gy, tin, tgy, k);
    }
    {
      ConvBackend b(true);
      dn = run_kernels(op, in, gy, tin, tgy, k);
    }
    INFO("N ", q.N, " C ", q.C, " O ", q.O, " groups ", q.G, " kernel ", q.kh, "x", q.kw, " stride ", q.s,
         " dilation ", q.d, " pads ", q.pt, q.pl, q.pb, q.pr, " input ", q.H, "x", q.W);
    // oneDNN builds every primitive the four kernels need for these geometries (a geometry it
    // rejected would run the built-in kernels instead).
    const Shape& os = ys;
    const internal::DnnlConvShape ds{q.N, q.C,  q.H,  q.W,  q.O,  q.kh,  q.kw,  q.s, q.s,
                                     q.d, q.d, q.pt, q.pl, q.pb, q.pr, os[2], os[3], q.G};
    const unsigned pairs =
        internal::kOnednnForwardPair | internal::kOnednnBackwardDataPair | internal::kOnednnBackwardWeightsPair;
    CHECK(internal::onednn_conv_supports(ds, internal::kOnednnPlain | (q.G == 1 ? pairs : 0u)));
    if (q.G > 1) CHECK_FALSE(internal::onednn_conv_supports(ds, pairs));  // grouped: plain calls only
    // The 32/48-channel geometries, and only they, run the Winograd kernels (on a CPU that has
    // them; the 4x4 one on AMD CPUs only); the pairs of the 16-channel 8x9 one too, and its plain
    // convolution does not.
    const std::int64_t plane = internal::onednn_winograd_min_positions();  // 8x8, or 4x4 on AMD
    const bool wino_geometry = q.G == 1 && q.kh == 3 && q.kw == 3 && q.s == 1 && q.d == 1 && q.H * q.W >= plane;
    auto expect_winograd = [&](unsigned kind, std::int64_t min_channels) {
      if (!wino_geometry || q.C < min_channels || q.O < min_channels)
        CHECK_FALSE(internal::onednn_conv_winograd(ds, kind));
      else if (!internal::onednn_conv_winograd(ds, kind))
        MESSAGE("Winograd is switched off, or this CPU's oneDNN has no kernels for kind ", kind, " of ", q.C,
                " -> ", q.O);
    };
    expect_winograd(internal::kOnednnPlain, 32);
    for (unsigned kind : {internal::kOnednnForwardPair, internal::kOnednnBackwardDataPair,
                          internal::kOnednnBackwardWeightsPair})
      expect_winograd(kind, 16);
    CHECK_FALSE(internal::onednn_conv_winograd(ds, 0u));  // not one kind
    CHECK_FALSE(internal::onednn_conv_winograd(ds, internal::kOnednnPlain | internal::kOnednnForwardPair));
    CHECK(rel_diff(dn.y, ref.y) < 1e-5);
    CHECK(rel_diff(dn.ty, ref.ty) < 1e-5);
    for (int i = 0; i < 3; ++i) {
      INFO("input ", i);
      CHECK(rel_diff(dn.g[i], ref.g[i]) < 1e-5);
      CHECK(rel_diff(dn.tg[i], ref.tg[i]) < 1e-5);
    }
    // Again on oneDNN with every gradient buffer pre-filled and its accumulate bit set: each
    // buffer gains what the fresh call wrote.
    ConvBackend b(true);
    OpState<float> st;
    OpCtx<float> c;
    for (const auto& t : in) c.in.push_back(t.view());
    Tensor<float> y(ys);
    c.state = &st;
    op->forward(c, y.view());
    c.out = y.view();
    c.gout = gy.view();
    std::vector<Tensor<float>> g, tg;
    for (const auto& t : in) {
      g.push_back(random_tensor<float>(t.shape(), rng));
      tg.push_back(random_tensor<float>(with_lead(k, t.shape()), rng));
    }
    const std::vector<Tensor<float>> g0 = g, tg0 = tg;
    for (auto& t : g) c.gin.push_back(t.view());
    c.accumulate = 7u;
    op->backward(c);
    c.k = k;
    for (const auto& t : tin) c.tin.push_back(t.view());
    Tensor<float> ty(with_lead(k, ys));
    c.tout = ty.view();
    op->jvp(c);
    c.tgout = tgy.view();
    for (auto& t : tg) c.tgin.push_back(t.view());
    op->backward_tangent(c);
    for (int i = 0; i < 3; ++i) {
      INFO("accumulated input ", i);
      for (std::int64_t e = 0; e < g[i].size(); ++e) g[i].data()[e] -= g0[i].data()[e];
      for (std::int64_t e = 0; e < tg[i].size(); ++e) tg[i].data()[e] -= tg0[i].data()[e];
      CHECK(rel_diff(g[i], dn.g[i]) < 1e-5);
      CHECK(rel_diff(tg[i], dn.tg[i]) < 1e-5);
    }
  }
}

TEST_CASE("the ResNet-18-shaped network gives the same gradient and products on oneDNN and built-in convolutions") {
  if (!onednn_compiled_in()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing): nothing to compare");
    return;
  }
  Model m = resnet18_shaped(8, 41);
  Dataset d = synthetic_data({3, 32, 32}, 12, 10, 42);
  ObjectiveOptions o;  // float32
  o.micro_batch = 4;
  const std::int64_t P = m.num_params();
  Matrix V(P, 2);
  for (int j = 0; j < 2; ++j) V.col(j) = unit_direction(P, 50 + j);
  Vector g[2];
  Matrix H[2], G[2];
  for (int b = 0; b < 2; ++b) {
    ConvBackend cb(b == 1);
    auto obj = Objective::create(m, d, o);
    obj->gradient(g[b]);
    obj->product(Curvature::Hessian, V, H[b]);
    obj->product(Curvature::GGN, V, G[b]);
  }
  CHECK((g[1] - g[0]).norm() / g[0].norm() < 1e-4);
  CHECK((H[1] - H[0]).norm() / H[0].norm() < 1e-4);
  CHECK((G[1] - G[0]).norm() / G[0].norm() < 1e-4);
}

// Runs the four kernels of a 3x3 / pad 1 convolution on an H x W plane with a block of k = 3
// directions and with each direction alone (float32): the block must give the bits of the singles.
void check_block_equals_singles(std::int64_t H, std::int64_t W, std::uint64_t seed, std::int64_t C = 5,
                                std::int64_t O = 7, std::int64_t G = 1) {
  Conv2dAttrs a;
  a.kernel = {3, 3};
  a.pads = {1, 1, 1, 1};
  a.groups = G;
  const OpPtr op = make_conv(a);
  const std::int64_t k = 3, N = 2;
  std::mt19937_64 rng(seed);
  const std::vector<Tensor<float>> in{random_tensor<float>({N, C, H, W}, rng),
                                      random_tensor<float>({O, C / G, 3, 3}, rng), random_tensor<float>({O}, rng)};
  std::vector<Tensor<float>> tin;
  for (const auto& t : in) tin.push_back(random_tensor<float>(with_lead(k, t.shape()), rng));
  const Shape ys{N, O, H, W};
  const Tensor<float> gy = random_tensor<float>(ys, rng), tgy = random_tensor<float>(with_lead(k, ys), rng);
  const KernelsOf<float> block = run_kernels(op, in, gy, tin, tgy, k);
  // Direction j of a [k, ...] tensor as a [1, ...] tensor.
  auto slice = [](const Tensor<float>& t, std::int64_t j, std::int64_t kk) {
    Shape s = t.shape();
    s[0] = 1;
    Tensor<float> r(s);
    const std::int64_t n = t.size() / kk;
    std::copy(t.data() + j * n, t.data() + (j + 1) * n, r.data());
    return r;
  };
  for (std::int64_t j = 0; j < k; ++j) {
    std::vector<Tensor<float>> tj;
    for (const auto& t : tin) tj.push_back(slice(t, j, k));
    const KernelsOf<float> single = run_kernels(op, in, gy, tj, slice(tgy, j, k), 1);
    INFO("plane ", H, "x", W, " direction ", j);
    CHECK(slice(block.ty, j, k).vec() == single.ty.vec());
    for (int i = 0; i < 3; ++i) CHECK(slice(block.tg[i], j, k).vec() == single.tg[i].vec());
  }
}

TEST_CASE("on oneDNN, a convolution gives each direction of a block the same bits as a single product") {
  if (!onednn_compiled_in()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing): nothing to compare");
    return;
  }
  ConvBackend on(true);
  check_block_equals_singles(6, 5, 61);
  check_block_equals_singles(8, 9, 62, 32, 48);  // Winograd kernels
  check_block_equals_singles(8, 9, 64, 16, 16);  // Winograd for the pairs only
  check_block_equals_singles(4, 4, 65, 32, 32);  // 4x4 planes: Winograd on AMD CPUs only
  check_block_equals_singles(5, 6, 63, 8, 16, 8);  // depthwise, depth multiplier 2
}

TEST_CASE("a oneDNN convolution gives the same bits whether or not its primitives were built by onednn_conv_supports") {
  // Each call runs oneDNN on one OpenMP thread, and oneDNN plans a primitive's work split for the
  // thread count at its creation. ConvOp asks onednn_conv_supports() first, which builds the
  // primitives; if that ran before the thread was set to one OpenMP thread, the first shapes a
  // thread met were planned for the default count (the cores) and later ones for one, and which
  // micro-batch a thread met a shape in first decided the bits (2% of the 1-vs-2-thread identity
  // runs). Two fresh threads (OpenMP's default count each), one asking supports() first: the
  // weight gradient (a reduction over samples and positions, which oneDNN splits by threads) must
  // agree bit for bit. Needs a machine with 2 or more cores to tell the two apart.
  if (!onednn_compiled_in()) {
    MESSAGE("oneDNN is not compiled in (libdnnl-dev missing): nothing to compare");
    return;
  }
  ConvBackend on(true);
  const std::int64_t N = 64, C = 8, H = 16, O = 8;
  const internal::DnnlConvShape s{N, C, H, H, O, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, H, H};
  std::mt19937_64 rng(91);
  const Tensor<float> x = random_tensor<float>({N, C, H, H}, rng), w = random_tensor<float>({O, C, 3, 3}, rng),
                      gy = random_tensor<float>({N, O, H, H}, rng);
  auto run = [&](bool ask_first) {
    Tensor<float> gx({N, C, H, H}), gw({O, C, 3, 3});
    std::thread t([&] {
      if (ask_first) REQUIRE(internal::onednn_conv_supports(s, internal::kOnednnPlain));
      internal::onednn_conv_backward(s, gy.data(), x.data(), w.data(), gx.data(), gw.data(), false, false);
    });
    t.join();
    return std::make_pair(gx.vec(), gw.vec());
  };
  const auto asked = run(true), direct = run(false);
  CHECK(asked.first == direct.first);
  CHECK(asked.second == direct.second);
}

TEST_CASE("on a plane smaller than the kernel's window, a convolution gives a block the bits of single products") {
  check_block_equals_singles(2, 2, 62);  // one dense matrix per sample
  check_block_equals_singles(1, 1, 63);  // the centre tap
}

TEST_CASE("the block pool hands freed large buffers to the next allocation of their size class") {
  release_block_pool();
  const std::size_t limit = block_pool_limit();
  if (limit == 0) {  // sanitizer builds: no pool, every buffer goes back to the allocator
    { Buffer<float> b(1 << 20); }
    CHECK(block_pool_bytes() == 0);
    return;
  }
  const float* first = nullptr;
  {
    Buffer<float> b(1 << 20);  // 4 MiB
    first = b.data();
    CHECK(tracked_bytes() >= (4u << 20));
  }
  CHECK(block_pool_bytes() == (4u << 20));
  {
    Buffer<float> c((1 << 20) - 1000);  // same class (4 MiB rounded up by at most 1/8)
    CHECK(c.data() == first);
    CHECK(block_pool_bytes() == 0);
    Buffer<float> d(1 << 20);  // class taken: a new block
    CHECK(d.data() != first);
  }
  CHECK(block_pool_bytes() == (8u << 20));
  { Buffer<float> small(1000); }  // small buffers are not pooled
  CHECK(block_pool_bytes() == (8u << 20));
  // Beyond the limit the oldest blocks are released.
  set_block_pool_limit(6u << 20);
  CHECK(block_pool_bytes() == (4u << 20));
  { Buffer<float> big(2 << 20); }  // 8 MiB: more than the limit, released at once
  CHECK(block_pool_bytes() == (4u << 20));
  release_block_pool();
  CHECK(block_pool_bytes() == 0);
  set_block_pool_limit(limit);
}

TEST_CASE("a convolution whose taps meet only padding equals the convolution on the taps in use") {
  // 3x3 with pads 1 on a 1x1 plane reads only its centre tap: all four kernels give the bits of a
  // 1x1 convolution with the centre weights, and the other taps get zero gradients. The same for
  // stride 2 from a 2x2 plane (taps [1, 3) x [1, 3) in use) against a 2x2 kernel without padding.
  std::mt19937_64 rng(77);
  const std::int64_t k = 2, N = 3, C = 4, O = 5;
  struct Case {
    std::int64_t H, stride, y0, n;  // plane H x H, taps [y0, y0 + n) in both dims
  };
  for (const Case& q : {Case{1, 1, 1, 1}, Case{2, 2, 1, 2}}) {
    Conv2dAttrs full;
    full.kernel = {3, 3};
    full.stride = {q.stride, q.stride};
    full.pads = {1, 1, 1, 1};
    Conv2dAttrs small = full;
    small.kernel = {q.n, q.n};
    small.pads = {0, 0, 0, 0};
    const std::vector<Tensor<double>> in{random_tensor<double>({N, C, q.H, q.H}, rng),
                                         random_tensor<double>({O, C, 3, 3}, rng), random_tensor<double>({O}, rng)};
    std::vector<Tensor<double>> tin;
    for (const auto& t : in) tin.push_back(random_tensor<double>(with_lead(k, t.shape()), rng));
    // Taps [y0, y0 + n)^2 of [m, C, 3, 3] weights.
    auto taps = [&](const Tensor<double>& w, std::int64_t m) {
      Tensor<double> r({m, C, q.n, q.n});
      for (std::int64_t a = 0; a < m * C; ++a)
        for (std::int64_t i = 0; i < q.n; ++i)
          for (std::int64_t j = 0; j < q.n; ++j)
            r.data()[(a * q.n + i) * q.n + j] = w.data()[(a * 3 + q.y0 + i) * 3 + q.y0 + j];
      return r;
    };
    const OpPtr op = make_conv(full), op_small = make_conv(small);
    const Shape ys = op->output_shape({in[0].shape(), in[1].shape(), in[2].shape()});
    REQUIRE(ys == op_small->output_shape({in[0].shape(), {O, C, q.n, q.n}, in[2].shape()}));
    const Tensor<double> gy = random_tensor<double>(ys, rng), tgy = random_tensor<double>(with_lead(k, ys), rng);
    const Kernels a = run_kernels(op, in, gy, tin, tgy, k);
    const Kernels b =
        run_kernels(op_small, {in[0], taps(in[1], O), in[2]}, gy, {tin[0], taps(tin[1], k * O), tin[2]}, tgy, k);
    INFO("plane ", q.H, "x", q.H, " stride ", q.stride);
    CHECK(a.y.vec() == b.y.vec());
    CHECK(a.ty.vec() == b.ty.vec());
    for (int i : {0, 2}) {
      CHECK(a.g[i].vec() == b.g[i].vec());
      CHECK(a.tg[i].vec() == b.tg[i].vec());
    }
    CHECK(taps(a.g[1], O).vec() == b.g[1].vec());
    CHECK(taps(a.tg[1], k * O).vec() == b.tg[1].vec());
    std::int64_t nonzero_outside = 0;  // weight gradients of the taps not in use
    for (const Tensor<double>* t : {&a.g[1], &a.tg[1]})
      for (std::int64_t e = 0; e < t->size(); ++e) {
        const std::int64_t i = e / 3 % 3, j = e % 3;
        const bool in_use = i >= q.y0 && i < q.y0 + q.n && j >= q.y0 && j < q.y0 + q.n;
        nonzero_outside += !in_use && t->data()[e] != 0.0;
      }
    CHECK(nonzero_outside == 0);
    // The tangent kernels keep the trimmed weights in the op state ([O, C n n], smaller than W;
    // forward does not, so gradients hold nothing more), and the kernels give the same bits with
    // them as when they gather them themselves.
    OpState<double> st;
    OpCtx<double> c;
    for (const auto& t : in) c.in.push_back(t.view());
    c.state = &st;
    Tensor<double> y(ys);
    op->forward(c, y.view());
    CHECK(st.saved.empty());
    c.k = k;
    for (const auto& t : tin) c.tin.push_back(t.view());
    Tensor<double> ty(with_lead(k, ys));
    c.tout = ty.view();
    op->jvp(c);
    REQUIRE(st.saved.size() == 1);
    CHECK(st.saved[0].size() == O * C * q.n * q.n);
    const Kernels s = run_kernels(op, in, gy, tin, tgy, k, false);
    CHECK(s.y.vec() == a.y.vec());
    CHECK(s.ty.vec() == a.ty.vec());
    for (int i : {0, 1, 2}) {
      CHECK(s.g[i].vec() == a.g[i].vec());
      CHECK(s.tg[i].vec() == a.tg[i].vec());
    }
  }
}
