// Every op's four kernels against central finite differences (float64):
//   backward          <u, J d> = sum_i <g_i, d_i>
//   jvp               y' = (f(x + h d) - f(x - h d)) / 2h          (k = 2 directions)
//   backward_tangent  g' = VJP(x, w) + (VJP(x + h d, u) - VJP(x - h d, u)) / 2h
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <set>

#include "src/core/loss.h"
#include "src/core/op_registry.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

using namespace curv;

namespace {

constexpr double kStep = 1e-5;
constexpr double kRelTol = 1e-6;

// Const, Mask and Index inputs have no tangent / gradient; Mask is 0 or 1 at random (a Where
// condition), Index an integer in [0, 3) (token ids).
enum class Gen { Normal, Positive, AwayFromZero, Wide, Const, Mask, Index };
bool fixed(Gen g) { return g == Gen::Const || g == Gen::Mask || g == Gen::Index; }

struct OpCase {
  OpPtr op;
  std::vector<Shape> shapes;
  std::vector<Gen> gens;  // Gen::Const: input has no tangent / gradient (e.g. running stats)
};

struct Eval {
  std::vector<Tensor<double>> in;
  Shape out_shape;
};

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
}

Tensor<double> forward(const OpPtr& op, const std::vector<Tensor<double>>& in, OpState<double>& st) {
  OpCtx<double> c;
  std::vector<Shape> shapes;
  for (const auto& t : in) c.in.push_back(t.view()), shapes.push_back(t.shape());
  Tensor<double> out(op->output_shape(shapes));
  c.state = &st;
  op->forward(c, out.view());
  return out;
}

// VJP at `in` with output gradient u; returns one gradient per differentiable input.
std::vector<Tensor<double>> vjp(const OpCase& oc, const std::vector<Tensor<double>>& in, const Tensor<double>& u) {
  OpState<double> st;
  Tensor<double> out = forward(oc.op, in, st);
  OpCtx<double> c;
  for (const auto& t : in) c.in.push_back(t.view());
  c.out = out.view();
  c.gout = u.view();
  c.state = &st;
  std::vector<Tensor<double>> g(in.size());
  c.gin.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i)
    if (!fixed(oc.gens[i])) {
      g[i] = Tensor<double>(in[i].shape());
      std::fill(g[i].vec().begin(), g[i].vec().end(), 123.0);  // kernels must overwrite
      c.gin[i] = g[i].view();
    }
  oc.op->backward(c);
  return g;
}

void run_case(const OpCase& oc, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(0.5, 2.0);
  const size_t n = oc.shapes.size();
  std::vector<Tensor<double>> x(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = Tensor<double>(oc.shapes[i]);
    for (auto& v : x[i].vec()) {
      switch (oc.gens[i]) {
        case Gen::Normal:
          v = nd(rng);
          break;
        case Gen::Positive:
        case Gen::Const:
          v = ud(rng);
          break;
        case Gen::AwayFromZero:
          v = (nd(rng) > 0 ? 1 : -1) * ud(rng) * 0.5;
          break;
        case Gen::Wide:
          v = 3 * nd(rng);
          break;
        case Gen::Mask:
          v = nd(rng) > 0 ? 1.0 : 0.0;
          break;
        case Gen::Index:
          v = double(rng() % 3);
          break;
      }
    }
  }
  OpState<double> st;
  Tensor<double> y = forward(oc.op, x, st);
  const std::int64_t k = 2;
  // Directions d (k of them, zero on constant inputs), output weights u and w.
  std::vector<Tensor<double>> d(n);
  for (size_t i = 0; i < n; ++i) {
    if (fixed(oc.gens[i])) continue;
    d[i] = Tensor<double>(with_lead(k, oc.shapes[i]));
    for (auto& v : d[i].vec()) v = nd(rng);
  }
  Tensor<double> u(y.shape()), w(with_lead(k, y.shape()));
  for (auto& v : u.vec()) v = nd(rng);
  for (auto& v : w.vec()) v = nd(rng);

  auto shifted = [&](std::int64_t j, double h) {
    std::vector<Tensor<double>> xs = x;
    for (size_t i = 0; i < n; ++i)
      if (!d[i].empty())
        for (std::int64_t e = 0; e < x[i].size(); ++e) xs[i].data()[e] += h * d[i].data()[j * x[i].size() + e];
    return xs;
  };

  // JVP
  OpCtx<double> c;
  for (const auto& t : x) c.in.push_back(t.view());
  c.out = y.view();
  c.state = &st;
  c.k = k;
  for (size_t i = 0; i < n; ++i)
    c.tin.push_back(d[i].empty() ? ConstView<double>{nullptr, with_lead(k, oc.shapes[i])} : d[i].view());
  Tensor<double> ty(with_lead(k, y.shape()));
  c.tout = ty.view();
  oc.op->jvp(c);
  for (std::int64_t j = 0; j < k; ++j) {
    OpState<double> s1, s2;
    Tensor<double> yp = forward(oc.op, shifted(j, kStep), s1), ym = forward(oc.op, shifted(j, -kStep), s2);
    std::vector<double> fd(y.size()), an(y.size());
    for (std::int64_t e = 0; e < y.size(); ++e) {
      fd[e] = (yp.data()[e] - ym.data()[e]) / (2 * kStep);
      an[e] = ty.data()[j * y.size() + e];
    }
    INFO(oc.op->type(), " ", oc.op->attributes(), " jvp direction ", j);
    CHECK(rel_err(an, fd) < kRelTol);
  }

  // VJP: <u, J d_0> = sum_i <g_i, d_i0>
  {
    auto g = vjp(oc, x, u);
    double lhs = 0, rhs = 0;
    for (std::int64_t e = 0; e < y.size(); ++e) lhs += u.data()[e] * ty.data()[e];
    for (size_t i = 0; i < n; ++i)
      if (!d[i].empty())
        for (std::int64_t e = 0; e < x[i].size(); ++e) rhs += g[i].data()[e] * d[i].data()[e];
    INFO(oc.op->type(), " ", oc.op->attributes(), " vjp: ", lhs, " vs ", rhs);
    CHECK(std::abs(lhs - rhs) <= kRelTol * std::max(1.0, std::abs(lhs)));
  }

  // VJP tangent, with and without the second-order part.
  for (bool so : {true, false}) {
    c.gout = u.view();
    c.tgout = w.view();
    c.second_order = so;
    std::vector<Tensor<double>> tg(n);
    c.tgin.assign(n, View<double>{});
    for (size_t i = 0; i < n; ++i)
      if (!fixed(oc.gens[i])) {
        tg[i] = Tensor<double>(with_lead(k, oc.shapes[i]));
        std::fill(tg[i].vec().begin(), tg[i].vec().end(), -77.0);
        c.tgin[i] = tg[i].view();
      }
    oc.op->backward_tangent(c);
    for (std::int64_t j = 0; j < k; ++j) {
      Tensor<double> wj(y.shape(), std::vector<double>(w.data() + j * y.size(), w.data() + (j + 1) * y.size()));
      auto lin = vjp(oc, x, wj);
      std::vector<Tensor<double>> gp, gm;
      if (so) gp = vjp(oc, shifted(j, kStep), u), gm = vjp(oc, shifted(j, -kStep), u);
      for (size_t i = 0; i < n; ++i) {
        if (fixed(oc.gens[i])) continue;
        const std::int64_t m = x[i].size();
        std::vector<double> ex(m), an(m);
        for (std::int64_t e = 0; e < m; ++e) {
          ex[e] = lin[i].data()[e];
          if (so) ex[e] += (gp[i].data()[e] - gm[i].data()[e]) / (2 * kStep);
          an[e] = tg[i].data()[j * m + e];
        }
        INFO(oc.op->type(), " ", oc.op->attributes(), " vjp tangent input ", i, " direction ", j, " second_order=", so);
        CHECK(rel_err(an, ex) < kRelTol);
      }
    }
  }
}

Conv2dAttrs conv_attrs(std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t d = 1, std::int64_t g = 1) {
  Conv2dAttrs a;
  a.kernel = {k, k};
  a.stride = {s, s};
  a.pads = {p, p, p, p};
  a.dilation = {d, d};
  a.groups = g;
  return a;
}

}  // namespace

// One entry per row of elementwise_table.h (the test fails for a row without one), with the input
// domain of f: away from zero for kinks, positive for Sqrt, Log and Reciprocal, wide (sd 3) where
// f changes form at +-3 or beyond.
TEST_CASE("checked_numel bounds every sub-shape, also when a dim is zero") {
  CHECK(checked_numel({2, 3, 4}, "x") == 24);
  CHECK(checked_numel({0, 5}, "x") == 0);
  CHECK(checked_numel({}, "x") == 1);
  const std::int64_t big = std::int64_t(1) << 40;
  CHECK_THROWS_WITH_AS(checked_numel({big, big}, "x"), doctest::Contains("is too large"), std::invalid_argument);
  // No elements, but its trailing dims' count overflows: rejected like the nonempty shape.
  CHECK_THROWS_WITH_AS(checked_numel({0, big, big}, "x"), doctest::Contains("x [0, 1099511627776, 1099511627776] is too large"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(checked_numel({3, -1}, "x"), doctest::Contains("negative"), std::invalid_argument);
}

TEST_CASE("unary ops match finite differences") {
  using U = UnaryKind;
  const Shape s{2, 3, 4};
  std::set<std::string> tested;
  for (auto [kind, p, q, gen] : std::vector<std::tuple<U, double, double, Gen>>{
           {U::Relu, 0, 0, Gen::AwayFromZero},
           {U::LeakyRelu, 0.1, 0, Gen::AwayFromZero},
           {U::Sigmoid, 0, 0, Gen::Normal},
           {U::Tanh, 0, 0, Gen::Normal},
           {U::Erf, 0, 0, Gen::Normal},
           {U::Gelu, 0, 0, Gen::Normal},
           {U::GeluTanh, 0, 0, Gen::Wide},
           {U::Sqrt, 0, 0, Gen::Positive},
           {U::Pow, 2.0, 0, Gen::Normal},
           {U::Pow, 3.0, 0, Gen::Normal},
           {U::Pow, 0.5, 0, Gen::Positive},
           {U::Exp, 0, 0, Gen::Normal},
           {U::Log, 0, 0, Gen::Positive},
           {U::Neg, 0, 0, Gen::Normal},
           {U::Reciprocal, 0, 0, Gen::Positive},
           {U::Identity, 0, 0, Gen::Normal},
           {U::Softplus, 0, 0, Gen::Wide},
           {U::HardSigmoid, 0.2, 0.5, Gen::Wide},  // PyTorch's export: alpha = 1/6
           {U::HardSigmoid, 1.0 / 6, 0.5, Gen::Wide},
           {U::HardSwish, 0, 0, Gen::Wide},
           {U::Elu, 1.0, 0, Gen::AwayFromZero},
           {U::Elu, 0.7, 0, Gen::AwayFromZero},
           {U::Selu, kSeluAlpha, kSeluGamma, Gen::AwayFromZero},
           {U::Clip, -0.5, 0.8, Gen::Normal},
           {U::Clip, 0.0, 6.0, Gen::Wide},                // ReLU6
           {U::Clip, 0.0, kClipNone, Gen::AwayFromZero},  // one bound
           {U::Clip, 0.5, -0.5, Gen::Normal},             // min > max: y = max
           {U::Abs, 0, 0, Gen::AwayFromZero},
           {U::Not, 0, 0, Gen::Normal}}) {
    run_case({make_unary(kind, p, q), {s}, {gen}}, 1);
    tested.insert(make_unary(kind, p, q)->type());
  }
  for (const OpTypeInfo& t : op_types()) {
    INFO("unary op ", t.type, " has no finite-difference case");
    if (t.unary) CHECK(tested.count(t.type) == 1);
  }
}

// The new ops' values and slopes at chosen points, kinks included, against their definitions and
// PyTorch's autograd (torch.nn.functional.hardswish etc. give these derivatives at the kinks).
TEST_CASE("unary ops take PyTorch's values and derivatives at kinks") {
  using U = UnaryKind;
  struct Point {
    U kind;
    double p, q, x, f, df;
  };
  for (const Point& t : std::vector<Point>{{U::HardSwish, 0, 0, -3, 0, -0.5},
                                           {U::HardSwish, 0, 0, 3, 3, 1.5},
                                           {U::HardSwish, 0, 0, 1, 4.0 / 6, 1.0 / 3 + 0.5},
                                           {U::HardSwish, 0, 0, -4, 0, 0},
                                           {U::HardSigmoid, 1.0 / 6, 0.5, 3.5, 1, 0},
                                           {U::HardSigmoid, 1.0 / 6, 0.5, -3.5, 0, 0},
                                           {U::HardSigmoid, 1.0 / 6, 0.5, 0, 0.5, 1.0 / 6},
                                           {U::Elu, 0.5, 0, 0, 0, 0.5},
                                           {U::Clip, 0, 6, 0, 0, 1},
                                           {U::Clip, 0, 6, 6, 6, 1},
                                           {U::Clip, 0, 6, 7, 6, 0},
                                           {U::Clip, 1, -1, 0.5, -1, 0},
                                           {U::Softplus, 0, 0, 800, 800, 1},
                                           {U::Softplus, 0, 0, -800, 0, 0},
                                           {U::Abs, 0, 0, 0, 0, 0},  // torch.abs: sgn(0) = 0
                                           // torch.nn.functional.gelu(approximate="tanh") and its grad at 1
                                           {U::GeluTanh, 0, 0, 1.0, 0.8411919906082768, 1.0829640838457826},
                                           {U::Abs, 0, 0, -2, 2, -1},
                                           {U::Not, 0, 0, 0, 1, 0},
                                           {U::Not, 0, 0, 0.25, 0, 0}}) {
    OpPtr op = make_unary(t.kind, t.p, t.q);
    Tensor<double> x(Shape{1}, {t.x}), g(Shape{1}, {1.0});
    OpState<double> st;
    const Tensor<double> y = forward(op, {x}, st);
    OpCtx<double> c;
    c.in.push_back(x.view());
    c.out = y.view();
    c.gout = g.view();
    c.state = &st;
    Tensor<double> gx(Shape{1});
    c.gin.push_back(gx.view());
    op->backward(c);
    INFO(op->type(), " ", op->attributes(), " at x = ", t.x);
    CHECK(y.data()[0] == doctest::Approx(t.f).epsilon(1e-15));
    CHECK(gx.data()[0] == doctest::Approx(t.df).epsilon(1e-15));
  }
}

TEST_CASE("broadcasting binary ops match finite differences") {
  for (auto kind : {BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul, BinaryKind::Div, BinaryKind::Max,
                    BinaryKind::Min, BinaryKind::Equal, BinaryKind::Less, BinaryKind::Greater, BinaryKind::And}) {
    const Gen g1 = kind == BinaryKind::Div ? Gen::Positive : Gen::Normal;
    run_case({make_binary(kind), {{2, 3, 4}, {2, 3, 4}}, {Gen::Normal, g1}}, 2);
    run_case({make_binary(kind), {{2, 3, 4}, {3, 1}}, {Gen::Normal, g1}}, 3);
    run_case({make_binary(kind), {{4}, {2, 3, 1}}, {Gen::Normal, g1}}, 4);
    run_case({make_binary(kind), {{2, 3, 4}, {}}, {Gen::Normal, g1}}, 5);
  }
  // PRelu: the slope broadcasts to X (per channel [C, 1, 1] as nn.PReLU exports it, or one value).
  const std::vector<Gen> prelu{Gen::AwayFromZero, Gen::Normal};
  run_case({make_binary(BinaryKind::PRelu), {{2, 3, 2, 2}, {3, 1, 1}}, prelu}, 6);
  run_case({make_binary(BinaryKind::PRelu), {{2, 3, 4}, {1}}, prelu}, 7);
  run_case({make_binary(BinaryKind::PRelu), {{2, 3, 4}, {2, 3, 4}}, prelu}, 8);
  CHECK_THROWS_WITH_AS(make_binary(BinaryKind::PRelu)->output_shape({{3, 1}, {3, 4}}),
                       "PRelu: slope [3, 4] does not broadcast to X [3, 1]", std::invalid_argument);
}

std::vector<double> vals(const Tensor<double>& t) { return {t.data(), t.data() + t.size()}; }

// Max / Min / ReduceMax at ties and the comparisons, against PyTorch's autograd: torch.maximum /
// minimum give each tied input half the gradient; torch.amax splits it evenly among the maxima.
TEST_CASE("Max, Min, comparisons and ReduceMax take PyTorch's values and derivatives at ties") {
  const Tensor<double> a(Shape{3}, {1, 2, 3}), b(Shape{3}, {1, 1, 4}), g(Shape{3}, {1, 1, 1});
  struct Expect {
    BinaryKind kind;
    std::vector<double> y, ga, gb;
  };
  for (const Expect& e : std::vector<Expect>{{BinaryKind::Max, {1, 2, 4}, {0.5, 1, 0}, {0.5, 0, 1}},
                                             {BinaryKind::Min, {1, 1, 3}, {0.5, 0, 1}, {0.5, 1, 0}},
                                             {BinaryKind::Equal, {1, 0, 0}, {0, 0, 0}, {0, 0, 0}},
                                             {BinaryKind::Less, {0, 0, 1}, {0, 0, 0}, {0, 0, 0}},
                                             {BinaryKind::Greater, {0, 1, 0}, {0, 0, 0}, {0, 0, 0}},
                                             {BinaryKind::And, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}}}) {
    OpPtr op = make_binary(e.kind);
    OpState<double> st;
    const Tensor<double> y = forward(op, {a, b}, st);
    auto gr = vjp({op, {{3}, {3}}, {Gen::Normal, Gen::Normal}}, {a, b}, g);
    INFO(op->type());
    CHECK(vals(y) == e.y);
    CHECK(vals(gr[0]) == e.ga);
    CHECK(vals(gr[1]) == e.gb);
  }
  // amax over dim 1 of [[2, 2, 1], [0, 3, 3]] with output gradient [1, 6]: [[.5, .5, 0], [0, 3, 3]]
  const Tensor<double> x(Shape{2, 3}, {2, 2, 1, 0, 3, 3}), gy(Shape{2}, {1, 6});
  OpPtr rmax = make_reduce_max(false, {1}, false);
  OpState<double> st;
  CHECK(vals(forward(rmax, {x}, st)) == std::vector<double>{2, 3});
  auto gx = vjp({rmax, {{2, 3}}, {Gen::Normal}}, {x}, gy);
  CHECK(vals(gx[0]) == std::vector<double>{0.5, 0.5, 0, 0, 3, 3});
  OpPtr rmin = make_reduce_max(true, {}, true);
  CHECK(vals(forward(rmin, {x}, st)) == std::vector<double>{0});
}

TEST_CASE("Where, Expand, Tile, Trilu and ReduceMax match finite differences") {
  // Where: condition a 0/1 mask (no derivative), the branches broadcast.
  run_case({make_where(), {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}}, {Gen::Mask, Gen::Normal, Gen::Normal}}, 30);
  run_case({make_where(), {{3, 4}, {2, 1, 4}, {}}, {Gen::Mask, Gen::Normal, Gen::Normal}}, 31);
  run_case({make_where(), {{1, 4}, {2, 3, 1}, {3, 4}}, {Gen::Mask, Gen::Normal, Gen::Normal}}, 32);
  run_case({make_where(), {{2, 3}, {}, {2, 3}}, {Gen::Mask, Gen::Const, Gen::Normal}}, 33);
  run_case({make_expand({2, 3, 4}), {{3, 1}}, {Gen::Normal}}, 34);
  run_case({make_expand({3, 1}), {{2, 1, 4}}, {Gen::Normal}}, 35);  // bidirectional
  // a parameter expanded to the batch (cls_token.expand(B, -1, -1)): N = 2 from the reference
  run_case({make_expand({1, 3, 4}, {0}), {{3, 1}, {2, 5}}, {Gen::Normal, Gen::Const}}, 43);
  run_case({make_tile({2, 1, 3}), {{2, 3, 2}}, {Gen::Normal}}, 36);
  run_case({make_trilu(0, false), {{2, 4, 4}}, {Gen::Normal}}, 37);
  run_case({make_trilu(1, true), {{2, 3, 5}}, {Gen::Normal}}, 38);
  run_case({make_trilu(-2, false), {{5, 3}}, {Gen::Normal}}, 39);
  run_case({make_reduce_max(false, {-1}, true), {{2, 3, 4}}, {Gen::Normal}}, 40);
  run_case({make_reduce_max(false, {0, 2}, false), {{2, 3, 4}}, {Gen::Normal}}, 41);
  run_case({make_reduce_max(true, {}, false), {{2, 3, 4}}, {Gen::Normal}}, 42);
}

TEST_CASE("Einsum matches finite differences on attention, bilinear and transposing equations") {
  const std::vector<Gen> two{Gen::Normal, Gen::Normal}, three{Gen::Normal, Gen::Normal, Gen::Normal};
  run_case({make_einsum("bhqd,bhkd->bhqk"), {{2, 2, 3, 4}, {2, 2, 5, 4}}, two}, 50);
  run_case({make_einsum("bhqk,bhkd->bhqd"), {{2, 2, 3, 5}, {2, 2, 5, 4}}, two}, 51);
  run_case({make_einsum("bi,oij,bj->bo"), {{2, 3}, {4, 3, 5}, {2, 5}}, three}, 52);
  run_case({make_einsum("ij,jk->ik"), {{3, 4}, {4, 2}}, two}, 53);
  run_case({make_einsum("ij->ji"), {{3, 4}}, {Gen::Normal}}, 54);
  run_case({make_einsum("bij -> b"), {{2, 3, 4}}, {Gen::Normal}}, 55);
  run_case({make_einsum("ij,kj"), {{3, 4}, {2, 4}}, two}, 56);  // implicit output "ik"
  run_case({make_einsum("btc,bsc->bts"), {{2, 3, 4}, {2, 3, 4}}, two}, 57);
}

TEST_CASE("Einsum computes the contraction and rejects what it does not support by name") {
  const Tensor<double> a(Shape{2, 3}, {1, 2, 3, 4, 5, 6}), b(Shape{3, 2}, {1, 0, 0, 1, 1, 1});
  OpState<double> st;
  CHECK(vals(forward(make_einsum("ij,jk->ik"), {a, b}, st)) == std::vector<double>{4, 5, 10, 11});
  CHECK(vals(forward(make_einsum("ij->ji"), {a}, st)) == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(vals(forward(make_einsum("ij,kj"), {a, a}, st)) == std::vector<double>{14, 32, 32, 77});
  CHECK_THROWS_WITH_AS(make_einsum("...ij,...jk->...ik"),
                       "Einsum: equation '...ij,...jk->...ik' uses an ellipsis '...', which is not supported",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_einsum("ii->i"),
                       "Einsum: equation 'ii->i' repeats label 'i' within operand 'ii' (diagonals are not supported)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_einsum("ij->k"), "Einsum: equation 'ij->k' has output label 'k' that no operand has",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_einsum("ij,jk->ik")->output_shape({{2, 3}, {4, 2}}),
                       "Einsum: equation 'ij,jk->ik' has label 'j' of size 3 and 4 (shapes do not match)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_einsum("ij,jk->ik")->output_shape({{2, 3}}),
                       "Einsum: equation 'ij,jk->ik' has 2 operands, got 1 inputs", std::invalid_argument);
}

TEST_CASE("Where selects by the mask, and a masked -inf reaches no gradient or tangent") {
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor<double> c(Shape{2, 2}, {1, 0, 1, 1}), a(Shape{}, {-inf}), b(Shape{2, 2}, {1, 2, 3, 4});
  OpPtr op = make_where();
  OpState<double> st;
  const Tensor<double> y = forward(op, {b, b, b}, st);
  CHECK(y.vec() == b.vec());
  // the causal-mask form: where(mask == 0, -inf, scores) as exported; here mask 0 selects b
  const Tensor<double> yy = forward(op, {c, b, a}, st);
  CHECK(vals(yy) == std::vector<double>{1, -inf, 3, 4});
  auto g = vjp({op, {{2, 2}, {2, 2}, {}}, {Gen::Mask, Gen::Normal, Gen::Normal}}, {c, b, a},
               Tensor<double>(Shape{2, 2}, {1, 1, 1, 1}));
  CHECK(vals(g[1]) == std::vector<double>{1, 0, 1, 1});
  CHECK(vals(g[2]) == std::vector<double>{1});
  CHECK_THROWS_WITH_AS(op->output_shape({{2, 3}, {3}, {4}}),
                       "Where: condition [2, 3], X [3] and Y [4] do not broadcast", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_expand({4})->output_shape({{2, 3}}),
                       "Expand: input [2, 3] does not broadcast with shape [4]", std::invalid_argument);
  CHECK(make_expand({1, 3, 4}, {0})->output_shape({{3, 1}, {7, 2}}) == Shape{7, 3, 4});
  CHECK_THROWS_WITH_AS(make_expand({2, 3}, {0}), "Expand: batch axis 0 must index an entry 1 of shape [2, 3]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_tile({2})->output_shape({{2, 3}}),
                       "Tile: repeats [2] must have one value per dim of input [2, 3]", std::invalid_argument);
}

TEST_CASE("Gemm and MatMul match finite differences") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Shape a = ta ? Shape{4, 3} : Shape{3, 4}, b = tb ? Shape{5, 4} : Shape{4, 5};
      run_case({make_gemm(ta, tb, 0.7, 1.3), {a, b, {5}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 10);
      run_case({make_gemm(ta, tb), {a, b}, {Gen::Normal, Gen::Normal}}, 11);
    }
  run_case({make_gemm(false, true), {{3, 4}, {5, 4}, {3, 1}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 12);
  run_case({make_matmul(), {{2, 3, 4}, {4, 5}}, {Gen::Normal, Gen::Normal}}, 13);
  run_case({make_matmul(), {{2, 2, 3, 4}, {2, 2, 4, 3}}, {Gen::Normal, Gen::Normal}}, 14);
  run_case({make_matmul(), {{2, 1, 3, 4}, {3, 4, 2}}, {Gen::Normal, Gen::Normal}}, 15);
  run_case({make_matmul(), {{4}, {2, 4, 3}}, {Gen::Normal, Gen::Normal}}, 16);
  run_case({make_matmul(), {{2, 3, 4}, {4}}, {Gen::Normal, Gen::Normal}}, 17);
  // Inner dimension >= 16: tangent products against a shared primal operand take the gathered
  // single-GEMM path of batched_gemm.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Shape a = ta ? Shape{17, 3} : Shape{3, 17}, b = tb ? Shape{5, 17} : Shape{17, 5};
      run_case({make_gemm(ta, tb, 0.7), {a, b, {5}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 18);
    }
  run_case({make_matmul(), {{2, 3, 18}, {18, 4}}, {Gen::Normal, Gen::Normal}}, 19);
  run_case({make_matmul(), {{3, 16}, {2, 16, 5}}, {Gen::Normal, Gen::Normal}}, 19);
}

TEST_CASE("Conv2d matches finite differences") {
  const std::vector<Gen> g3{Gen::Normal, Gen::Normal, Gen::Normal};
  run_case({make_conv(conv_attrs(3, 1, 1)), {{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}, g3}, 20);
  run_case({make_conv(conv_attrs(3, 2, 1)), {{2, 3, 6, 6}, {4, 3, 3, 3}, {4}}, g3}, 21);
  run_case({make_conv(conv_attrs(3, 1, 2, 2)), {{2, 2, 5, 5}, {3, 2, 3, 3}, {3}}, g3}, 22);
  run_case({make_conv(conv_attrs(3, 1, 1, 1, 2)), {{2, 4, 4, 4}, {6, 2, 3, 3}, {6}}, g3}, 23);
  run_case({make_conv(conv_attrs(1, 1, 0)), {{2, 3, 4, 4}, {5, 3, 1, 1}}, {Gen::Normal, Gen::Normal}}, 24);
  run_case({make_conv(conv_attrs(1, 2, 0)), {{2, 3, 5, 5}, {5, 3, 1, 1}, {5}}, g3}, 25);
  Conv2dAttrs asym = conv_attrs(2, 1, 0);
  asym.pads = {1, 0, 0, 1};
  run_case({make_conv(asym), {{1, 2, 4, 5}, {2, 2, 2, 2}}, {Gen::Normal, Gen::Normal}}, 26);
  // Width-preserving geometries other than 3x3/pad 1 (the shifted-plane im2col and the adjoint path).
  Conv2dAttrs wide = conv_attrs(3, 1, 0);
  wide.pads = {1, 0, 0, 2};  // Ho = H - 1, Wo = W
  run_case({make_conv(wide), {{2, 2, 4, 6}, {3, 2, 3, 3}, {3}}, g3}, 27);
  run_case({make_conv(conv_attrs(5, 1, 2)), {{1, 2, 6, 3}, {2, 2, 5, 5}}, {Gen::Normal, Gen::Normal}}, 28);
  // Output planes of at most 16 positions: the table im2col / col2im and, for stride 1, GEMM + col2im
  // instead of the adjoint correlation. 3x3/pad 1 on a 1x1 plane is ResNet-18's last stage at 32x32;
  // the dilated one has padding taps inside the table.
  run_case({make_conv(conv_attrs(3, 1, 1)), {{3, 4, 1, 1}, {5, 4, 3, 3}, {5}}, g3}, 29);
  run_case({make_conv(conv_attrs(3, 1, 2, 2)), {{2, 2, 4, 4}, {3, 2, 3, 3}, {3}}, g3}, 30);
  run_case({make_conv(conv_attrs(3, 2, 1)), {{2, 3, 3, 4}, {2, 3, 3, 3}}, {Gen::Normal, Gen::Normal}}, 31);
  // Kernel taps that meet only padding (run on the taps in use): stride 2 from a 2x2 plane, a 1xW
  // plane (dead rows only), groups, and a dilated kernel whose outer taps fall in the padding.
  run_case({make_conv(conv_attrs(3, 2, 1)), {{2, 3, 2, 2}, {4, 3, 3, 3}, {4}}, g3}, 32);
  run_case({make_conv(conv_attrs(3, 1, 1)), {{2, 2, 1, 4}, {3, 2, 3, 3}, {3}}, g3}, 33);
  run_case({make_conv(conv_attrs(3, 1, 1, 1, 2)), {{2, 4, 1, 1}, {6, 2, 3, 3}, {6}}, g3}, 34);
  run_case({make_conv(conv_attrs(3, 1, 2, 2)), {{2, 2, 1, 2}, {3, 2, 3, 3}}, {Gen::Normal, Gen::Normal}}, 35);
  // Planes smaller than the kernel's window, run as one dense matrix per sample: 3x3/pad 1 on a 2x2
  // plane (every output reads every input), on a 1x3 plane (outputs 0 and 2 do not reach inputs 2
  // and 0: zeros in the matrix), a 1x1 kernel on a 1x1 plane and a 2x2 kernel on a 2x2 plane
  // (the matrix is W itself).
  run_case({make_conv(conv_attrs(3, 1, 1)), {{2, 3, 2, 2}, {4, 3, 3, 3}, {4}}, g3}, 36);
  run_case({make_conv(conv_attrs(3, 1, 1)), {{2, 2, 1, 3}, {3, 2, 3, 3}, {3}}, g3}, 37);
  run_case({make_conv(conv_attrs(1, 1, 0)), {{3, 4, 1, 1}, {2, 4, 1, 1}, {2}}, g3}, 38);
  run_case({make_conv(conv_attrs(2, 1, 0)), {{2, 3, 2, 2}, {4, 3, 2, 2}}, {Gen::Normal, Gen::Normal}}, 39);
}

ConvTranspose2dAttrs convt_attrs(std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t op = 0,
                                 std::int64_t d = 1, std::int64_t g = 1) {
  ConvTranspose2dAttrs a;
  a.kernel = {k, k};
  a.stride = {s, s};
  a.pads = {p, p, p, p};
  a.output_padding = {op, op};
  a.dilation = {d, d};
  a.groups = g;
  return a;
}

TEST_CASE("ConvTranspose2d matches finite differences") {
  const std::vector<Gen> g3{Gen::Normal, Gen::Normal, Gen::Normal};
  run_case({make_conv_transpose(convt_attrs(2, 2, 0)), {{2, 3, 3, 3}, {3, 2, 2, 2}, {2}}, g3}, 70);
  run_case({make_conv_transpose(convt_attrs(3, 2, 1, 1)), {{2, 2, 3, 4}, {2, 3, 3, 3}, {3}}, g3}, 71);
  run_case({make_conv_transpose(convt_attrs(3, 1, 1)), {{1, 2, 4, 4}, {2, 2, 3, 3}}, {Gen::Normal, Gen::Normal}}, 72);
  run_case({make_conv_transpose(convt_attrs(3, 2, 2, 0, 2, 2)), {{2, 4, 3, 3}, {4, 1, 3, 3}, {2}}, g3}, 73);
  ConvTranspose2dAttrs asym = convt_attrs(3, 3, 0);
  asym.kernel = {3, 2};
  asym.stride = {2, 3};
  asym.pads = {1, 0, 0, 1};
  asym.output_padding = {1, 2};
  run_case({make_conv_transpose(asym), {{2, 2, 3, 2}, {2, 1, 3, 2}, {1}}, g3}, 74);
}

// ConvTranspose forward against its definition Y[o, i s - p + k d] += X[c, i] W[c, o, k], summed
// directly (float64), and the attribute checks.
TEST_CASE("ConvTranspose2d forward equals the direct sum") {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> nd;
  for (auto [k, s, p, op, d, g] : std::vector<std::array<std::int64_t, 6>>{
           {2, 2, 0, 0, 1, 1}, {3, 2, 1, 1, 1, 1}, {3, 1, 0, 0, 2, 2}, {4, 3, 2, 2, 1, 1}, {1, 1, 0, 0, 1, 3}}) {
    const std::int64_t N = 2, Cg = 2, C = Cg * g, Og = 2, O = Og * g, H = 3, W = 4;
    Tensor<double> x({N, C, H, W}), w({C, Og, k, k}), b({O});
    for (auto* t : {&x, &w, &b})
      for (std::int64_t i = 0; i < t->size(); ++i) t->data()[i] = nd(rng);
    OpState<double> st;
    const Tensor<double> y = forward(make_conv_transpose(convt_attrs(k, s, p, op, d, g)), {x, w, b}, st);
    const std::int64_t Ho = s * (H - 1) + op + (k - 1) * d + 1 - 2 * p, Wo = s * (W - 1) + op + (k - 1) * d + 1 - 2 * p;
    REQUIRE(y.shape() == Shape{N, O, Ho, Wo});
    std::vector<double> ref(y.size());
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t i = 0; i < Ho * Wo; ++i) ref[(n * O + o) * Ho * Wo + i] = b.data()[o];
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t oo = 0; oo < Og; ++oo)
          for (std::int64_t ih = 0; ih < H; ++ih)
            for (std::int64_t iw = 0; iw < W; ++iw)
              for (std::int64_t kh = 0; kh < k; ++kh)
                for (std::int64_t kw = 0; kw < k; ++kw) {
                  const std::int64_t oh = ih * s - p + kh * d, ow = iw * s - p + kw * d, o = (c / Cg) * Og + oo;
                  if (oh < 0 || oh >= Ho || ow < 0 || ow >= Wo) continue;
                  ref[((n * O + o) * Ho + oh) * Wo + ow] +=
                      x.data()[((n * C + c) * H + ih) * W + iw] * w.data()[((c * Og + oo) * k + kh) * k + kw];
                }
    double err = 0;
    for (std::int64_t i = 0; i < y.size(); ++i) err = std::max(err, std::abs(y.data()[i] - ref[i]));
    INFO("kernel ", k, " stride ", s, " pad ", p, " output_padding ", op, " dilation ", d, " groups ", g);
    CHECK(err < 1e-12);
  }
  CHECK_THROWS_WITH_AS(make_conv_transpose(convt_attrs(3, 2, 0, 2)),
                       "ConvTranspose: output_padding [2, 2] must be >= 0 and smaller than strides [2, 2]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_conv_transpose(convt_attrs(3, 1, 0))->output_shape({{1, 4, 3, 3}, {2, 2, 3, 3}}),
                       "ConvTranspose: X [1, 4, 3, 3] has 4 channels but W [2, 2, 3, 3] with group=1 expects 2, a "
                       "multiple of the group count",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_conv_transpose(convt_attrs(1, 1, 1))->output_shape({{1, 2, 1, 1}, {2, 2, 1, 1}}),
                       "ConvTranspose: pads [1, 1, 1, 1] leave no output for X [1, 2, 1, 1] and W [2, 2, 1, 1]",
                       std::invalid_argument);
}

ResizeAttrs resize_attrs(const char* mode, const char* coords, std::vector<double> scales,
                         std::vector<std::int64_t> sizes = {}, const char* nearest = "floor") {
  ResizeAttrs a;
  a.mode = mode;
  a.coordinate_transformation_mode = coords;
  a.nearest_mode = nearest;
  a.scales = std::move(scales);
  a.sizes = std::move(sizes);
  return a;
}

TEST_CASE("Resize matches finite differences, and its forward matches PyTorch's interpolate") {
  run_case({make_resize(resize_attrs("nearest", "asymmetric", {2, 2})), {{2, 3, 3, 4}}, {Gen::Normal}}, 80);
  run_case({make_resize(resize_attrs("linear", "half_pixel", {2, 3})), {{2, 2, 3, 4}}, {Gen::Normal}}, 81);
  run_case({make_resize(resize_attrs("linear", "align_corners", {}, {5, 2})), {{1, 2, 3, 4}}, {Gen::Normal}}, 82);
  run_case({make_resize(resize_attrs("nearest", "half_pixel", {}, {2, 7}, "round_prefer_ceil")),
            {{1, 2, 3, 4}},
            {Gen::Normal}},
           83);
  // torch.nn.functional.interpolate(x, scale_factor=2, mode=...) of x = arange(6).reshape(1, 1, 2, 3)
  const Tensor<double> x({1, 1, 2, 3}, {0, 1, 2, 3, 4, 5});
  OpState<double> st;
  const Tensor<double> near = forward(make_resize(resize_attrs("nearest", "asymmetric", {2, 2})), {x}, st);
  CHECK(near.vec() == Buffer<double>{0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5});
  const Tensor<double> bil = forward(make_resize(resize_attrs("linear", "half_pixel", {2, 2})), {x}, st);
  const std::vector<double> torch_bilinear{0,    0.25, 0.75, 1.25, 1.75, 2,    0.75, 1,    1.5,  2,    2.5,  2.75,
                                           2.25, 2.5,  3,    3.5,  4,    4.25, 3,    3.25, 3.75, 4.25, 4.75, 5};
  for (std::size_t i = 0; i < torch_bilinear.size(); ++i) CHECK(bil.data()[i] == doctest::Approx(torch_bilinear[i]));
  const Tensor<double> ac = forward(make_resize(resize_attrs("linear", "align_corners", {}, {3, 5})), {x}, st);
  const std::vector<double> torch_align{0, 0.5, 1, 1.5, 2, 1.5, 2, 2.5, 3, 3.5, 3, 3.5, 4, 4.5, 5};
  for (std::size_t i = 0; i < torch_align.size(); ++i) CHECK(ac.data()[i] == doctest::Approx(torch_align[i]));
  CHECK_THROWS_WITH_AS(make_resize(resize_attrs("cubic", "half_pixel", {2, 2})),
                       "Resize: mode 'cubic' is not supported (nearest or linear)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_resize(resize_attrs("linear", "tf_crop_and_resize", {2, 2})),
                       "Resize: coordinate_transformation_mode 'tf_crop_and_resize' is not supported (half_pixel, "
                       "pytorch_half_pixel, asymmetric or align_corners)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_resize(resize_attrs("linear", "half_pixel", {2, 0})),
                       "Resize: scales [2, 0] must be > 0 and <= 1e6", std::invalid_argument);
}

TEST_CASE("LSTM matches finite differences through time") {
  const std::vector<Gen> g4{Gen::Normal, Gen::Normal, Gen::Normal, Gen::Normal};
  // X [T, B, I], W [D, 4H, I], R [D, 4H, H], B [D, 8H]
  run_case({make_lstm(3, "forward"), {{4, 2, 2}, {1, 12, 2}, {1, 12, 3}, {1, 24}}, g4}, 90);
  run_case({make_lstm(2, "reverse"), {{3, 2, 3}, {1, 8, 3}, {1, 8, 2}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 91);
  run_case({make_lstm(2, "bidirectional"), {{3, 2, 2}, {2, 8, 2}, {2, 8, 2}, {2, 16}}, g4}, 92);
  run_case({make_lstm(2, "forward"), {{1, 3, 2}, {1, 8, 2}, {1, 8, 2}, {1, 16}}, g4}, 93);
  CHECK_THROWS_WITH_AS(make_lstm(2, "sideways"),
                       "LSTM: direction must be forward, reverse or bidirectional, got 'sideways'",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_lstm(2, "forward")->output_shape({{3, 2, 2}, {1, 8, 3}, {1, 8, 2}}),
                       "LSTM: W [1, 8, 3] must be [1, 8, 2]", std::invalid_argument);
}

TEST_CASE("GRU matches finite differences through time") {
  const std::vector<Gen> g4{Gen::Normal, Gen::Normal, Gen::Normal, Gen::Normal};
  // X [T, B, I], W [D, 3H, I], R [D, 3H, H], B [D, 6H]
  run_case({make_gru(3, "forward"), {{4, 2, 2}, {1, 9, 2}, {1, 9, 3}, {1, 18}}, g4}, 95);
  run_case({make_gru(2, "reverse"), {{3, 2, 3}, {1, 6, 3}, {1, 6, 2}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 96);
  run_case({make_gru(2, "bidirectional"), {{3, 2, 2}, {2, 6, 2}, {2, 6, 2}, {2, 12}}, g4}, 97);
  CHECK_THROWS_WITH_AS(make_gru(0, "forward"), "GRU: hidden_size must be >= 1, got 0", std::invalid_argument);
}

// Conv forward against the definition, summed directly (float64), over geometries that take each
// im2col path: width-preserving (shifted planes), strided, dilated, grouped, asymmetric padding.
TEST_CASE("Conv2d forward equals the direct sum") {
  struct Geo {
    std::int64_t kh, kw, s, d, g, pt, pl, pb, pr, H, W;
  };
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  for (const Geo& q : std::vector<Geo>{{3, 3, 1, 1, 1, 1, 1, 1, 1, 7, 5},
                                       {3, 3, 1, 1, 1, 1, 0, 0, 2, 4, 6},
                                       {5, 5, 1, 1, 1, 2, 2, 2, 2, 6, 3},
                                       {3, 1, 1, 1, 2, 0, 0, 0, 0, 5, 4},
                                       {3, 3, 2, 1, 1, 1, 1, 1, 1, 7, 6},
                                       {3, 3, 1, 2, 1, 2, 2, 2, 2, 6, 6},
                                       {2, 3, 1, 1, 1, 3, 1, 0, 1, 3, 9},
                                       {3, 3, 1, 1, 1, 3, 1, 0, 1, 1, 4},  // padding rows only
                                       {3, 3, 1, 1, 1, 1, 1, 1, 1, 2, 2},  // dense matrix per sample
                                       {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},
                                       {3, 3, 2, 1, 1, 1, 1, 1, 1, 2, 2}}) {
    Conv2dAttrs a;
    a.kernel = {q.kh, q.kw};
    a.stride = {q.s, q.s};
    a.dilation = {q.d, q.d};
    a.groups = q.g;
    a.pads = {q.pt, q.pl, q.pb, q.pr};
    const std::int64_t N = 3, Cg = 2, C = Cg * q.g, O = 2 * q.g, Og = O / q.g;
    Tensor<double> x({N, C, q.H, q.W}), w({O, Cg, q.kh, q.kw});
    for (auto* t : {&x, &w})
      for (std::int64_t i = 0; i < t->size(); ++i) t->data()[i] = nd(rng);
    OpPtr op = make_conv(a);
    OpState<double> st;
    Tensor<double> y = forward(op, {x, w}, st);
    const std::int64_t Ho = y.shape()[2], Wo = y.shape()[3];
    double err = 0;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t oh = 0; oh < Ho; ++oh)
          for (std::int64_t ow = 0; ow < Wo; ++ow) {
            double ref = 0;
            const std::int64_t gi = o / Og;
            for (std::int64_t c = 0; c < Cg; ++c)
              for (std::int64_t i = 0; i < q.kh; ++i)
                for (std::int64_t j = 0; j < q.kw; ++j) {
                  const std::int64_t ih = oh * q.s - q.pt + i * q.d, iw = ow * q.s - q.pl + j * q.d;
                  if (ih < 0 || ih >= q.H || iw < 0 || iw >= q.W) continue;
                  ref += w.data()[((o * Cg + c) * q.kh + i) * q.kw + j] *
                         x.data()[((n * C + gi * Cg + c) * q.H + ih) * q.W + iw];
                }
            err = std::max(err, std::abs(y.data()[((n * O + o) * Ho + oh) * Wo + ow] - ref));
          }
    INFO("kernel ", q.kh, "x", q.kw, " stride ", q.s, " dilation ", q.d, " groups ", q.g, " input ", q.H, "x", q.W);
    CHECK(err < 1e-12);
  }
}

TEST_CASE("pooling matches finite differences") {
  Pool2dAttrs a;
  run_case({make_max_pool(a), {{2, 3, 4, 4}}, {Gen::Normal}}, 30);
  a.kernel = {3, 3};
  a.stride = {2, 2};
  a.pads = {1, 1, 1, 1};
  run_case({make_max_pool(a), {{2, 2, 5, 5}}, {Gen::Normal}}, 31);
  run_case({make_average_pool(a), {{2, 2, 5, 5}}, {Gen::Normal}}, 32);
  a.count_include_pad = true;
  a.ceil_mode = true;
  run_case({make_average_pool(a), {{2, 2, 6, 6}}, {Gen::Normal}}, 33);
  run_case({make_global_average_pool(), {{2, 3, 4, 5}}, {Gen::Normal}}, 34);
}

TEST_CASE("MaxPool forward equals the direct maximum, the first tap at ties, on both of its paths") {
  // The reference visits a window's taps row by row, takes the first one in the plane, then any
  // that is strictly greater (so a NaN is kept where it comes first and skipped after). Inputs from
  // {0, 1, 2} tie in most windows; a few NaNs. Dilation 1 runs the undilated path, 2 the general one.
  struct Geo {
    std::int64_t kh, kw, sh, sw, dh, pt, pl, pb, pr, H, W;
    bool ceil;
  };
  for (const Geo& q : std::vector<Geo>{{3, 3, 2, 2, 1, 1, 1, 1, 1, 8, 8, false},
                                       {2, 2, 2, 2, 1, 0, 0, 0, 0, 5, 5, true},
                                       {3, 3, 1, 1, 1, 1, 1, 1, 1, 4, 5, false},
                                       {5, 5, 1, 1, 1, 2, 2, 2, 2, 3, 3, false},
                                       {1, 1, 1, 1, 1, 0, 0, 0, 0, 3, 4, false},
                                       {3, 2, 2, 1, 1, 0, 1, 1, 0, 7, 5, true},
                                       {3, 3, 1, 1, 2, 2, 2, 2, 2, 6, 6, false}}) {
    Pool2dAttrs a;
    a.kernel = {q.kh, q.kw};
    a.stride = {q.sh, q.sw};
    a.dilation = {q.dh, q.dh};
    a.pads = {q.pt, q.pl, q.pb, q.pr};
    a.ceil_mode = q.ceil;
    const std::int64_t N = 2, C = 3, hw = q.H * q.W;
    Tensor<double> x({N, C, q.H, q.W});
    std::mt19937_64 rng(7);
    for (std::int64_t i = 0; i < x.size(); ++i) x.data()[i] = double(rng() % 3);
    x.data()[1] = x.data()[hw + 5] = x.data()[x.size() - 1] = std::numeric_limits<double>::quiet_NaN();
    OpState<double> st;
    const Tensor<double> y = forward(make_max_pool(a), {x}, st);
    const std::int64_t Ho = y.dim(2), Wo = y.dim(3);
    int bad = 0;
    for (std::int64_t p = 0; p < N * C; ++p)
      for (std::int64_t oh = 0; oh < Ho; ++oh)
        for (std::int64_t ow = 0; ow < Wo; ++ow) {
          double best = 0;
          std::int64_t arg = -1;
          for (std::int64_t i = 0; i < q.kh; ++i)
            for (std::int64_t j = 0; j < q.kw; ++j) {
              const std::int64_t h = oh * q.sh - q.pt + i * q.dh, w = ow * q.sw - q.pl + j * q.dh;
              if (h < 0 || h >= q.H || w < 0 || w >= q.W) continue;
              const double v = x.data()[p * hw + h * q.W + w];
              if (arg < 0 || v > best) best = v, arg = p * hw + h * q.W + w;
            }
          const std::int64_t o = (p * Ho + oh) * Wo + ow;
          const double got = y.data()[o];
          const bool same = std::isnan(best) ? std::isnan(got) : got == best;
          if (!same || st.index[o] != arg) ++bad;
        }
    INFO("kernel ", q.kh, "x", q.kw, " stride ", q.sh, "x", q.sw, " dilation ", q.dh, " input ", q.H, "x", q.W,
         " ceil ", q.ceil);
    CHECK(bad == 0);
  }
}

TEST_CASE("softmax and normalization ops match finite differences") {
  run_case({make_softmax(-1, false), {{3, 5}}, {Gen::Normal}}, 40);
  run_case({make_softmax(1, false), {{2, 4, 3}}, {Gen::Normal}}, 41);
  run_case({make_softmax(-1, true), {{3, 5}}, {Gen::Normal}}, 42);
  run_case({make_softmax(0, true), {{4, 3}}, {Gen::Normal}}, 43);
  run_case({make_layer_norm(-1, 1e-5), {{2, 3, 6}, {6}, {6}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 44);
  run_case({make_layer_norm(1, 1e-5), {{2, 3, 4}, {3, 4}}, {Gen::Normal, Gen::Normal}}, 45);
  const std::vector<Gen> g3{Gen::Normal, Gen::Normal, Gen::Normal};
  run_case({make_instance_norm(1e-5), {{2, 3, 3, 4}, {3}, {3}}, g3}, 49);
  run_case({make_instance_norm(1e-3), {{3, 2, 5}, {2}, {2}}, g3}, 39);
  const std::vector<Gen> bn{Gen::Normal, Gen::Normal, Gen::Normal, Gen::Const, Gen::Const};
  run_case({make_batch_norm(1e-5, false), {{2, 3, 4, 4}, {3}, {3}, {3}, {3}}, bn}, 46);
  run_case({make_batch_norm(1e-5, true), {{3, 3, 2, 2}, {3}, {3}, {3}, {3}}, bn}, 47);
  run_case({make_batch_norm(1e-5, true), {{5, 4}, {4}, {4}, {4}, {4}}, bn}, 48);
}

TEST_CASE("shape ops match finite differences") {
  run_case({make_reshape({0, -1, 2}), {{2, 3, 4}}, {Gen::Normal}}, 50);
  run_case({make_flatten(1), {{2, 3, 4}}, {Gen::Normal}}, 51);
  run_case({make_transpose({0, 2, 1, 3}), {{2, 3, 4, 2}}, {Gen::Normal}}, 52);
  run_case({make_transpose({}), {{2, 3, 4}}, {Gen::Normal}}, 53);
  run_case({make_slice({1, 0}, {3, -1}, {1, 2}, {1, 2}), {{2, 4, 5}}, {Gen::Normal}}, 54);
  run_case({make_slice({-1}, {-100}, {1}, {-1}), {{2, 4}}, {Gen::Normal}}, 55);
  run_case({make_concat(1), {{2, 3, 2}, {2, 1, 2}, {2, 2, 2}}, {Gen::Normal, Gen::Normal, Gen::Normal}}, 56);
  run_case({make_gather(1, {2, 0, 2, -1}, {2, 2}), {{2, 4, 3}}, {Gen::Normal}}, 57);
  run_case({make_gather(0, {1}, {}), {{3, 4}}, {Gen::Normal}}, 58);
}

TEST_CASE("Embedding (Gather with data indices) matches finite differences, repeated ids add up") {
  // Table [3, 4] rows looked up by ids [2, 5] (batch 2, 5 positions; ids repeat, so the VJP's
  // scatter-add sums several rows); a middle axis; a scalar row (inner = 1).
  run_case({make_embedding(0), {{3, 4}, {2, 5}}, {Gen::Normal, Gen::Index}}, 61);
  run_case({make_embedding(1), {{2, 3, 2}, {4}}, {Gen::Normal, Gen::Index}}, 62);
  run_case({make_embedding(-1), {{2, 3}, {3, 2}}, {Gen::Normal, Gen::Index}}, 63);
  // Exact values: y = W[ids], and g_W rows sum the output gradient of every position with that id.
  Tensor<double> W({3, 2}, {1, 2, 3, 4, 5, 6}), ids({1, 3}, {2, 0, 2});
  OpState<double> st;
  Tensor<double> y = forward(make_embedding(0), {W, ids}, st);
  CHECK(y.shape() == Shape{1, 3, 2});
  CHECK(y.vec() == Buffer<double>{5, 6, 1, 2, 5, 6});
  OpCtx<double> c;
  c.in = {W.view(), ids.view()};
  c.out = y.view();
  Tensor<double> gy({1, 3, 2}, {1, 10, 100, 1000, 7, 70}), gW({3, 2});
  c.gout = gy.view();
  c.gin = {gW.view(), View<double>{}};
  make_embedding(0)->backward(c);
  CHECK(gW.vec() == Buffer<double>{100, 1000, 0, 0, 8, 80});
  // Ids outside [0, rows) or not integers are refused.
  Tensor<double> bad({1, 1}, {3}), frac({1, 1}, {0.5}), neg({1, 1}, {-1});
  CHECK_THROWS_WITH_AS(forward(make_embedding(0), {W, bad}, st), doctest::Contains("not an integer in [0, 3)"),
                       std::invalid_argument);
  CHECK_THROWS_AS(forward(make_embedding(0), {W, frac}, st), std::invalid_argument);
  CHECK_THROWS_AS(forward(make_embedding(0), {W, neg}, st), std::invalid_argument);
  run_case({make_unsqueeze({1, -1}), {{2, 3}}, {Gen::Normal}}, 59);
  run_case({make_squeeze({1}), {{2, 1, 3}}, {Gen::Normal}}, 60);
  run_case({make_reduce(true, {-1}, true), {{2, 3, 4}}, {Gen::Normal}}, 61);
  run_case({make_reduce(false, {0, 2}, false), {{2, 3, 4}}, {Gen::Normal}}, 62);
  run_case({make_reduce(true, {}, false), {{2, 3}}, {Gen::Normal}}, 63);
  run_case({make_identity("Dropout"), {{2, 3}}, {Gen::Normal}}, 64);
}

TEST_CASE("ops reject bad shapes with a message naming them") {
  CHECK_THROWS_WITH_AS(make_binary(BinaryKind::Add)->output_shape({{2, 3}, {4}}),
                       "Add: cannot broadcast [2, 3] with [4]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_gemm(false, false)->output_shape({{2, 3}, {4, 5}}),
                       "Gemm: inner dimensions differ, A [2, 3] x B [4, 5]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_conv(conv_attrs(3, 1, 1))->output_shape({{1, 2, 5, 5}, {4, 3, 3, 3}}),
                       "Conv: X [1, 2, 5, 5] has 2 channels but W [4, 3, 3, 3] with group=1 expects 3",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_reshape({5, -1})->output_shape({{2, 3}}), "Reshape: cannot reshape [2, 3] to [5, -1]",
                       std::invalid_argument);
}

TEST_CASE("float32 GELU: within a few ulp of the exact function, and the same bits with and without saved values") {
  // The float kernels evaluate erf and exp in vectorized chunks (unary_ops.cpp, gelu_bulk); every
  // path (forward with or without saving f' and f'', backward, JVP and VJP tangent with or without
  // the saved values) must give the same bits, and f, f', f'' must stay near the exact values.
  const OpPtr op = make_unary(UnaryKind::Gelu, 0, 0);
  std::vector<float> xs;
  for (int i = 0; i <= 1000; ++i) xs.push_back(-10.0f + 0.02f * float(i));  // [-10, 10]
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 3.9999f, -4.0001f, 40.0f, -40.0f, 1e4f, -1e4f}) xs.push_back(v);
  const std::int64_t n = std::int64_t(xs.size());  // not a multiple of the chunk: the padded tail is used
  const Tensor<float> x({n}, xs), ones({n}, std::vector<float>(std::size_t(n), 1.0f)), zeros({n});
  struct Values {
    Tensor<float> f, df, d2f, tan;
  };
  auto run = [&](bool with_state) {
    Values v{Tensor<float>({n}), Tensor<float>({n}), Tensor<float>({n}), Tensor<float>({n})};
    OpState<float> st;
    OpCtx<float> c;
    c.in = {x.cview()};
    c.state = with_state ? &st : nullptr;
    op->forward(c, v.f.view());
    c.out = v.f.cview();
    c.gout = ones.cview();  // backward: g_x = f'(x)
    c.gin = {v.df.view()};
    op->backward(c);
    c.k = 1;  // JVP with x' = 1: y' = f'(x)
    c.tin = {ones.cview()};
    c.tout = v.tan.view();
    op->jvp(c);
    c.tgout = zeros.cview();  // VJP tangent with g_y' = 0, g_y = 1, x' = 1: g_x' = f''(x)
    c.tgin = {v.d2f.view()};
    c.second_order = true;
    op->backward_tangent(c);
    return v;
  };
  const Values saved = run(true), plain = run(false);
  auto bits = [](const Tensor<float>& a, const Tensor<float>& b) {
    return std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
  };
  CHECK(bits(saved.f, plain.f));
  CHECK(bits(saved.df, plain.df));
  CHECK(bits(saved.tan, plain.tan));
  CHECK(bits(saved.d2f, plain.d2f));
  CHECK(bits(saved.tan, saved.df));  // y' = f'(x) x' with x' = 1
  const double eps = std::numeric_limits<float>::epsilon();
  for (std::int64_t i = 0; i < n; ++i) {
    const double xi = xs[std::size_t(i)];
    const double phi = std::exp(-0.5 * xi * xi) / std::sqrt(2 * M_PI);
    const double cdf = 0.5 * std::erfc(-xi / std::sqrt(2.0));
    const double f = xi * cdf, df = cdf + xi * phi, d2f = phi * (2 - xi * xi);
    INFO("x = ", xi);
    // A few ulp of the larger of the value and 1 (1 + erf cancels for x below about -3: absolute).
    CHECK(std::abs(saved.f.data()[i] - f) <= 8 * eps * std::max(1.0, std::abs(f)));
    CHECK(std::abs(saved.df.data()[i] - df) <= 8 * eps * std::max(1.0, std::abs(df)));
    CHECK(std::abs(saved.d2f.data()[i] - d2f) <= 8 * eps * std::max(1.0, std::abs(d2f)));
  }
}

TEST_CASE("element-wise tangent kernels give each direction of a block the bits of a single product") {
  // With one direction, ops whose f' needs only x (ReLU, LeakyReLU, Tanh, ...) multiply f'(x) into
  // the tangent in one pass; with several they fill an f' array first. Both must give the same bits,
  // for the JVP and for the VJP tangent (first order, and second order where the op has curvature).
  const std::int64_t n = 1000, k = 3;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> nd;
  auto draw = [&](std::int64_t m) {
    std::vector<float> v(static_cast<std::size_t>(m));
    for (auto& e : v) e = nd(rng);
    return v;
  };
  std::vector<float> xs = draw(n);
  xs[0] = 0.0f;  // the kink
  xs[1] = -0.0f;
  const Tensor<float> x({n}, xs), gy({n}, draw(n)), tx({k, n}, draw(k * n)), tgy({k, n}, draw(k * n));
  for (UnaryKind kind :
       {UnaryKind::Relu, UnaryKind::LeakyRelu, UnaryKind::Tanh, UnaryKind::Softplus, UnaryKind::Gelu}) {
    for (bool second_order : {false, true}) {
      const OpPtr op = make_unary(kind, kind == UnaryKind::LeakyRelu ? 0.1 : 0.0, 0.0);
      CAPTURE(op->type());
      CAPTURE(second_order);
      Tensor<float> y({n});
      OpState<float> st;
      OpCtx<float> c;
      c.in = {x.cview()};
      c.state = &st;
      op->forward(c, y.view());
      c.out = y.cview();
      c.gout = gy.cview();
      c.second_order = second_order;
      // Runs the JVP and the VJP tangent on directions [j0, j0 + kk) of tx and tgy.
      auto run = [&](std::int64_t j0, std::int64_t kk) {
        std::pair<std::vector<float>, std::vector<float>> r{std::vector<float>(std::size_t(kk * n)),
                                                            std::vector<float>(std::size_t(kk * n))};
        c.k = kk;
        c.tin = {ConstView<float>{tx.data() + j0 * n, {kk, n}}};
        c.tout = View<float>{r.first.data(), {kk, n}};
        op->jvp(c);
        c.tgout = ConstView<float>{tgy.data() + j0 * n, {kk, n}};
        c.tgin = {View<float>{r.second.data(), {kk, n}}};
        op->backward_tangent(c);
        return r;
      };
      const auto block = run(0, k);
      for (std::int64_t j = 0; j < k; ++j) {
        const auto single = run(j, 1);
        CAPTURE(j);
        CHECK(std::memcmp(block.first.data() + j * n, single.first.data(), sizeof(float) * std::size_t(n)) == 0);
        CHECK(std::memcmp(block.second.data() + j * n, single.second.data(), sizeof(float) * std::size_t(n)) == 0);
      }
    }
  }
}

TEST_CASE("float32 Softmax and LogSoftmax: near float64, exact zeros under a -inf mask, the same bits on any axis") {
  // The float kernels use Eigen's vectorized exp and sums in 16 fixed lanes (softmax.cpp); rows
  // along other axes are gathered into contiguous rows. Checked against the float64 kernels (std::exp).
  std::mt19937_64 rng(23);
  std::normal_distribution<double> nd(0.0, 3.0);
  for (bool log : {false, true}) {
    for (std::int64_t L : {1, 5, 16, 17, 64, 100}) {
      CAPTURE(log);
      CAPTURE(L);
      const std::int64_t R = 4, n = R * L, k = 2;
      auto draw = [&](std::int64_t m) {
        std::vector<double> v(static_cast<std::size_t>(m));
        for (auto& e : v) e = nd(rng);
        return v;
      };
      std::vector<double> xd = draw(n);
      // A causal-style mask: -inf in row 1 after its first element, and far below the max in row 2.
      if (!log && L > 1)
        for (std::int64_t t = 1; t < L; ++t) xd[std::size_t(L + t)] = -std::numeric_limits<double>::infinity();
      if (L > 1) xd[std::size_t(2 * L + 1)] = -200.0;
      if (L > 2) xd[std::size_t(3 * L + 2)] = *std::max_element(xd.begin() + 3 * L, xd.begin() + 4 * L) - 87.5;
      const std::vector<double> gd = draw(n), txd = draw(k * n), tgd = draw(k * n);
      auto to_f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
      // All four kernels on rows of length L along `axis` of `shape`; returns y, g_x, y' (k), g_x' (k).
      auto run = [&](auto zero, const Shape& shape, std::int64_t axis, const auto& x, const auto& g, const auto& tx,
                     const auto& tg, std::int64_t kk) {
        using T = decltype(zero);
        const OpPtr op = make_softmax(axis, log);
        Shape ks = shape;
        ks.insert(ks.begin(), kk);
        const Tensor<T> X(shape, x), G(shape, g), TX(ks, tx), TG(ks, tg);
        std::array<Tensor<T>, 4> r{Tensor<T>(shape), Tensor<T>(shape), Tensor<T>(ks), Tensor<T>(ks)};
        OpCtx<T> c;
        c.in = {X.cview()};
        op->forward(c, r[0].view());
        c.out = r[0].cview();
        c.gout = G.cview();
        c.gin = {r[1].view()};
        op->backward(c);
        c.k = kk;
        c.tin = {TX.cview()};
        c.tout = r[2].view();
        op->jvp(c);
        c.tgout = TG.cview();
        c.tgin = {r[3].view()};
        c.second_order = true;
        op->backward_tangent(c);
        return r;
      };
      const auto f = run(0.0f, {R, L}, -1, to_f(xd), to_f(gd), to_f(txd), to_f(tgd), k);
      // The reference: float64 kernels on the float inputs.
      auto round = [&](const std::vector<double>& v) {
        std::vector<double> r(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) r[i] = double(float(v[i]));
        return r;
      };
      const auto d = run(0.0, {R, L}, -1, round(xd), round(gd), round(txd), round(tgd), k);
      for (int q = 0; q < 4; ++q) {
        CAPTURE(q);
        std::vector<double> a(f[q].data(), f[q].data() + f[q].size()), b(d[q].data(), d[q].data() + d[q].size());
        for (float v : std::vector<float>(f[q].data(), f[q].data() + f[q].size())) {
          CHECK(std::isfinite(v));
          CHECK(std::fpclassify(v) != FP_SUBNORMAL);  // exp(-87.5) is subnormal in float: flushed to 0
        }
        CHECK(rel_err(a, b) < 2e-6);
      }
      if (!log && L > 1)
        for (std::int64_t t = 1; t < L; ++t) {  // masked: exactly zero probability, gradient and tangents
          CHECK(f[0].data()[L + t] == 0.0f);
          CHECK(f[1].data()[L + t] == 0.0f);
          for (std::int64_t j = 0; j < k; ++j) {
            CHECK(f[2].data()[j * n + L + t] == 0.0f);
            CHECK(f[3].data()[j * n + L + t] == 0.0f);
          }
        }
      // Each direction of the block has the bits of a single product.
      for (std::int64_t j = 0; j < k; ++j) {
        const auto tx1 = to_f(std::vector<double>(txd.begin() + j * n, txd.begin() + (j + 1) * n));
        const auto tg1 = to_f(std::vector<double>(tgd.begin() + j * n, tgd.begin() + (j + 1) * n));
        const auto s = run(0.0f, {R, L}, -1, to_f(xd), to_f(gd), tx1, tg1, 1);
        CHECK(std::memcmp(s[2].data(), f[2].data() + j * n, sizeof(float) * std::size_t(n)) == 0);
        CHECK(std::memcmp(s[3].data(), f[3].data() + j * n, sizeof(float) * std::size_t(n)) == 0);
      }
      // Along axis 1 of [2, L, 2] (rows gathered with stride 2): the bits of the same rows along the last axis.
      auto to_strided = [&](const std::vector<float>& v, std::int64_t dirs) {  // [dirs][4 rows][L] -> [dirs][2][L][2]
        std::vector<float> r(v.size());
        for (std::int64_t j = 0; j < dirs; ++j)
          for (std::int64_t row = 0; row < R; ++row)
            for (std::int64_t t = 0; t < L; ++t)
              r[std::size_t(j * n + (row / 2) * L * 2 + t * 2 + row % 2)] = v[std::size_t(j * n + row * L + t)];
        return r;
      };
      const auto s = run(0.0f, {2, L, 2}, 1, to_strided(to_f(xd), 1), to_strided(to_f(gd), 1),
                         to_strided(to_f(txd), k), to_strided(to_f(tgd), k), k);
      for (int q = 0; q < 4; ++q) {
        const std::int64_t dirs = q < 2 ? 1 : k;
        const auto want = to_strided(std::vector<float>(f[q].data(), f[q].data() + f[q].size()), dirs);
        CHECK(std::memcmp(s[q].data(), want.data(), sizeof(float) * want.size()) == 0);
      }
    }
  }
  // A NaN makes its row NaN and leaves the others alone.
  const OpPtr op = make_softmax(-1, false);
  const Tensor<float> x({2, 20}, [] {
    std::vector<float> v(40, 0.5f);
    v[3] = std::numeric_limits<float>::quiet_NaN();
    return v;
  }());
  Tensor<float> y({2, 20});
  OpCtx<float> c;
  c.in = {x.cview()};
  op->forward(c, y.view());
  for (int i = 0; i < 20; ++i) CHECK(std::isnan(y.data()[i]));
  for (int i = 20; i < 40; ++i) CHECK(y.data()[i] == doctest::Approx(0.05f));
}

TEST_CASE("cross-entropy softmax rows: within a few ulp of std::exp, NaN kept") {
  // softmax_row (loss.cpp) takes Eigen's vectorized double exp in padded chunks of 8.
  std::mt19937_64 rng(29);
  std::normal_distribution<double> nd(0.0, 30.0);
  for (std::int64_t C : {1, 3, 8, 10, 17, 100}) {
    CAPTURE(C);
    std::vector<double> z(static_cast<std::size_t>(C)), p(z.size()), ref(z.size());
    for (auto& v : z) v = nd(rng);
    if (C > 2) z[1] = -800.0;  // below double exp's range: 0
    const double lse = softmax_row(z.data(), C, p.data());
    const double m = *std::max_element(z.begin(), z.end());
    double s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += (ref[std::size_t(c)] = std::exp(z[std::size_t(c)] - m));
    for (auto& v : ref) v /= s;
    CHECK(lse == doctest::Approx(m + std::log(s)).epsilon(1e-15));
    const double eps = std::numeric_limits<double>::epsilon();
    for (std::int64_t c = 0; c < C; ++c) CHECK(std::abs(p[std::size_t(c)] - ref[std::size_t(c)]) <= 8 * eps * ref[std::size_t(c)] + 1e-300);
    // float logits: the same values widened to double
    std::vector<float> zf(z.begin(), z.end());
    std::vector<double> pf(z.size());
    softmax_row(zf.data(), C, pf.data());
    double sf = 0;
    for (std::int64_t c = 0; c < C; ++c) sf += std::exp(double(zf[std::size_t(c)]) - double(*std::max_element(zf.begin(), zf.end())));
    for (std::int64_t c = 0; c < C; ++c)
      CHECK(std::abs(pf[std::size_t(c)] - std::exp(double(zf[std::size_t(c)]) - double(*std::max_element(zf.begin(), zf.end()))) / sf) <=
            8 * eps * pf[std::size_t(c)] + 1e-300);
  }
  std::vector<double> z = {0.5, std::numeric_limits<double>::quiet_NaN(), 1.0, 2.0}, p(4);
  CHECK(std::isnan(softmax_row(z.data(), 4, p.data())));
  for (double v : p) CHECK(std::isnan(v));
}
