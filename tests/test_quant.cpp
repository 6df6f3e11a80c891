// Tests for quant/: quantizers vs their scalar references and hand-computed cases, the loss-increase
// model, the exact bit allocator vs brute force (optimum and Pareto frontier), plan JSON, sha256.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "quant/bit_allocator.h"
#include "quant/model_quant.h"
#include "quant/plan.h"
#include "quant/quantizer.h"
#include "quant/sensitivity.h"
#include "src/io/sha256.h"
#include "src/core/builder.h"
#include "src/io/data_io.h"
#include "src/core/objective.h"

using namespace curv::quant;

namespace {

// |dequantized - w| <= scale * (1/2 + kBoundSlackUlps * eps): rint is exact, w / s and (q - z) s
// each round once, on values up to 2^7 in level units.
constexpr double kBoundSlackUlps = 512.0;
// Optimizer totals vs brute force (omega sums in different orders), relative to sum max |Omega|.
constexpr double kOmegaRelTol = 1e-10;
// Hand-computed dequantized values.
constexpr double kHandTol = 1e-6;
// Budgets are met up to this relative slack (BitAllocator's documented rounding).
constexpr double kBudgetSlack = 1e-9;

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("curv_test_quant_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

template <typename T>
QuantizedTensor<T> q_of(const std::vector<T>& w, std::vector<std::int64_t> shape, int bits, Scheme scheme,
                        Granularity gran = Granularity::PerTensor, int groups = 1) {
  return quantize<T>(w, shape, QuantSpec{bits, scheme, gran, groups});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Quantizers

TEST_CASE_TEMPLATE("quantize: fast path equals the scalar reference on random tensors", T, float, double) {
  std::mt19937 rng(42);
  const std::vector<std::vector<std::int64_t>> shapes = {{7, 5}, {16, 3, 3, 3}, {10}, {1, 33}, {}, {4, 1}, {9, 40}};
  for (const auto& shape : shapes) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    const std::int64_t out = shape.empty() ? 1 : shape[0];
    for (int flavor = 0; flavor < 5; ++flavor) {
      std::vector<T> w(static_cast<std::size_t>(n));
      std::normal_distribution<double> normal(0.0, 1.0);
      std::uniform_real_distribution<double> uni(0.1, 2.0);
      for (std::size_t i = 0; i < w.size(); ++i) {
        switch (flavor) {
          case 0:
            w[i] = static_cast<T>(normal(rng));
            break;
          case 1:
            w[i] = static_cast<T>(uni(rng));
            break;  // all positive
          case 2:
            w[i] = static_cast<T>(-uni(rng));
            break;  // all negative
          case 3:
            w[i] = i < w.size() / 2 ? T(0) : static_cast<T>(normal(rng));
            break;  // zero channels
          default:
            w[i] = static_cast<T>(std::round(4.0 * normal(rng)) / 2.0);
            break;  // many ties
        }
      }
      for (int bits = kMinBits; bits <= kMaxBits; ++bits)
        for (Scheme scheme : {Scheme::Symmetric, Scheme::Asymmetric})
          for (int g : {0, 1, 2, 3, static_cast<int>(out)}) {  // 0: per-tensor, out: also per-channel
            QuantSpec spec{bits, scheme, g == 0 ? Granularity::PerTensor : Granularity::Group, std::max(g, 1)};
            if (g > out) continue;
            for (int pc = 0; pc < (g == out ? 2 : 1); ++pc) {
              if (pc) spec.granularity = Granularity::PerChannel;
              CAPTURE(bits);
              CAPTURE(flavor);
              CAPTURE(g);
              CAPTURE(shape.size());
              const auto fast = quantize<T>(w, shape, spec);
              const auto ref = quantize_ref<T>(w, shape, spec);
              REQUIRE(fast.codes == ref.codes);
              REQUIRE(fast.scales == ref.scales);
              REQUIRE(fast.zero_points == ref.zero_points);
              REQUIRE(fast.group_begin == ref.group_begin);
              REQUIRE(fast.dequantized == ref.dequantized);
              // Properties: levels in range, symmetric zero point 0, error within half a step.
              const int qmin = level_min(bits, scheme), qmax = level_max(bits, scheme);
              const std::int64_t inner = n / out;
              for (std::int64_t gi = 0; gi < fast.num_groups(); ++gi) {
                const double s = static_cast<double>(fast.scales[gi]);
                const int z = fast.zero_points[gi];
                if (scheme == Scheme::Symmetric) CHECK(z == 0);
                CHECK(s > 0.0);
                for (std::int64_t i = fast.group_begin[gi] * inner; i < fast.group_begin[gi + 1] * inner; ++i) {
                  const int q = fast.codes[i];
                  CHECK(q >= qmin);
                  CHECK(q <= qmax);
                  CHECK(fast.dequantized[i] == static_cast<T>(static_cast<T>(q - z) * fast.scales[gi]));
                  const double err = std::abs(static_cast<double>(fast.dequantized[i]) - static_cast<double>(w[i]));
                  CHECK(err <= s * (0.5 + kBoundSlackUlps * std::numeric_limits<T>::epsilon()));
                }
              }
            }
          }
    }
  }
}

TEST_CASE_TEMPLATE("quantize: hand-computed cases", T, float, double) {
  SUBCASE("symmetric 4-bit per-tensor: s = max|w| / 7") {
    const auto q = q_of<T>({-1.0, -0.3, 0.05, 0.7}, {4}, 4, Scheme::Symmetric);
    CHECK(q.scales == std::vector<T>{T(1) / T(7)});
    CHECK(q.codes == std::vector<std::int8_t>{-7, -2, 0, 5});
    const double expect[] = {-1.0, -2.0 / 7, 0.0, 5.0 / 7};
    for (int i = 0; i < 4; ++i)
      CHECK(static_cast<double>(q.dequantized[i]) == doctest::Approx(expect[i]).epsilon(kHandTol));
    const double err = std::pow(-0.3 + 2.0 / 7, 2) + std::pow(0.05, 2) + std::pow(0.7 - 5.0 / 7, 2);
    const std::vector<T> w{-1.0, -0.3, 0.05, 0.7};
    const std::vector<std::int64_t> shape{4};
    CHECK(quantization_error_sq<T>(w, shape, {4, Scheme::Symmetric, Granularity::PerTensor, 1}) ==
          doctest::Approx(err).epsilon(kHandTol));
  }
  SUBCASE("ties round to even; 3-bit symmetric levels are -3..3") {
    const auto q = q_of<T>({3, 0.5, 1.5, 2.5, -0.5, -2.5, -3}, {7}, 3, Scheme::Symmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.codes == std::vector<std::int8_t>{3, 0, 2, 2, 0, -2, -3});
  }
  SUBCASE("2-bit symmetric has the three levels -1, 0, 1") {
    const auto q = q_of<T>({-2, -0.9, 1.1, 2}, {4}, 2, Scheme::Symmetric);
    CHECK(q.scales[0] == T(2));
    CHECK(q.codes == std::vector<std::int8_t>{-1, 0, 1, 1});
  }
  SUBCASE("asymmetric 2-bit: levels -2..1, zero point maps 0 exactly") {
    auto q = q_of<T>({0, 1, 2, 3}, {4}, 2, Scheme::Asymmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.zero_points[0] == -2);
    CHECK(q.codes == std::vector<std::int8_t>{-2, -1, 0, 1});
    CHECK(q.dequantized == std::vector<T>{0, 1, 2, 3});
    q = q_of<T>({-1, 0, 2}, {3}, 2, Scheme::Asymmetric);
    CHECK(q.zero_points[0] == -1);
    CHECK(q.codes == std::vector<std::int8_t>{-2, -1, 1});
    CHECK(q.dequantized == std::vector<T>{-1, 0, 2});
  }
  SUBCASE("asymmetric, all positive: the range is extended to include 0") {
    const auto q = q_of<T>({1, 2, 3, 4}, {4}, 2, Scheme::Asymmetric);  // s = 4/3, w/s = .75 1.5 2.25 3
    CHECK(q.scales[0] == T(4) / T(3));
    CHECK(q.zero_points[0] == -2);
    CHECK(q.codes == std::vector<std::int8_t>{-1, 0, 0, 1});
    const double expect[] = {4.0 / 3, 8.0 / 3, 8.0 / 3, 4.0};
    for (int i = 0; i < 4; ++i)
      CHECK(static_cast<double>(q.dequantized[i]) == doctest::Approx(expect[i]).epsilon(kHandTol));
  }
  SUBCASE("per-channel: one scale per output channel (first dim)") {
    const auto q = q_of<T>({7, -3, 14, 4}, {2, 2}, 4, Scheme::Symmetric, Granularity::PerChannel);
    CHECK(q.scales == std::vector<T>{1, 2});
    CHECK(q.codes == std::vector<std::int8_t>{7, -3, 7, 2});
  }
  SUBCASE("group-wise: G groups of consecutive channels, floor(g out / G) boundaries") {
    // shape [5, 2], G = 2: channels {0, 1} and {2, 3, 4}.
    const auto q = q_of<T>({1, -1, 0.5, 0, 4, 1, -2, 0, 3, 0}, {5, 2}, 8, Scheme::Symmetric, Granularity::Group, 2);
    CHECK(q.group_begin == std::vector<std::int64_t>{0, 2, 5});
    CHECK(q.scales == std::vector<T>{T(1) / T(127), T(4) / T(127)});
    CHECK(q.codes[0] == 127);
    CHECK(q.codes[4] == 127);
    CHECK(q.codes[6] == -64);  // -2 / (4/127) = -63.5 -> ties to even
    CHECK(num_groups({8, Scheme::Symmetric, Granularity::Group, 3}, 10) == 3);
    CHECK(group_boundaries({8, Scheme::Symmetric, Granularity::Group, 3}, 10) ==
          std::vector<std::int64_t>{0, 3, 6, 10});
  }
  SUBCASE("an all-zero tensor gets scale 1 and dequantizes to 0") {
    auto q = q_of<T>({0, 0, 0}, {3}, 4, Scheme::Symmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.codes == std::vector<std::int8_t>{0, 0, 0});
    q = q_of<T>({0, 0, 0}, {3}, 4, Scheme::Asymmetric);
    CHECK(q.zero_points[0] == -8);
    CHECK(q.dequantized == std::vector<T>{0, 0, 0});
  }
}

TEST_CASE("quantize: bad input names the constraint and the value") {
  const std::vector<double> w{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<std::int64_t> shape{5, 2};
  for (int bits : {1, 9}) {
    CHECK_THROWS_WITH_AS(quantize<double>(w, shape, {bits}),
                         ("bits (= " + std::to_string(bits) + ") must be in 2..8").c_str(), std::invalid_argument);
    CHECK_THROWS_WITH_AS(quantize_ref<double>(w, shape, {bits}),
                         ("bits (= " + std::to_string(bits) + ") must be in 2..8").c_str(), std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(quantize<double>(w, shape, {4, Scheme::Symmetric, Granularity::Group, 6}),
                       "groups (= 6) must be in 1..out (= 5) for group-wise quantization", std::invalid_argument);
  const std::vector<std::int64_t> bad{3, 4};
  CHECK_THROWS_WITH_AS(quantize<double>(w, bad, {4}), "shape [3, 4] has 12 elements but the tensor has 10",
                       std::invalid_argument);
  std::vector<float> nan{1, 2, 3, std::numeric_limits<float>::quiet_NaN()};
  const std::vector<std::int64_t> s4{4};
  CHECK_THROWS_WITH_AS(quantize<float>(nan, s4, {4}), "weight 3 is not finite (nan)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(quantize_ref<float>(nan, s4, {4}), "weight 3 is not finite (nan)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(scheme_from_string("sym"), "scheme \"sym\" is not one of symmetric, asymmetric",
                       std::invalid_argument);
  CHECK(granularity_from_string(to_string(Granularity::Group)) == Granularity::Group);
  CHECK(scale_overhead_bits(Scheme::Asymmetric, 3) == 3 * (32 + 8));
}

// ---------------------------------------------------------------------------------------------
// Sensitivity and Omega

TEST_CASE("sensitivity: HAWQ-V1, HAWQ-V2, Q-BERT statistics and the negative-eigenvalue flag") {
  CHECK(eig_sensitivity(2.5).value == 2.5);
  CHECK_FALSE(eig_sensitivity(2.5).negative_top_eigenvalue);
  CHECK(eig_sensitivity(-0.5).negative_top_eigenvalue);
  CHECK(trace_sensitivity(10.0, 5).value == 2.0);
  CHECK(trace_sensitivity(10.0, 5, -1.0).negative_top_eigenvalue);
  const std::vector<double> lambdas{1, 2, 3, 4};
  const Sensitivity s = eig_stats_sensitivity(lambdas);
  CHECK(s.mean == 2.5);
  CHECK(s.stddev == doctest::Approx(std::sqrt(1.25)));
  CHECK(s.value == doctest::Approx(2.5 + std::sqrt(1.25)));
  CHECK(s.subsets == 4);
  CHECK(sensitivity_kind_from_string("eig-stats") == SensitivityKind::EigStats);
  CHECK_THROWS_WITH_AS(sensitivity_kind_from_string("hessian"),
                       "sensitivity \"hessian\" is not one of eig, trace, eig-stats", std::invalid_argument);
  CHECK_THROWS_AS(eig_stats_sensitivity(std::span<const double>{}), std::invalid_argument);

  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  std::vector<float> w(64);
  for (float& x : w) x = static_cast<float>(normal(rng));
  const std::vector<std::int64_t> shape{8, 8};
  const std::vector<int> bits{2, 3, 4, 8};
  const QuantSpec spec{8, Scheme::Symmetric, Granularity::PerChannel, 1};
  const std::vector<double> omega = loss_increase<float>(0.7, w, shape, spec, bits);
  REQUIRE(omega.size() == bits.size());
  for (std::size_t k = 0; k < bits.size(); ++k) {
    QuantSpec sb = spec;
    sb.bits = bits[k];
    CHECK(omega[k] == doctest::Approx(0.7 * quantization_error_sq<float>(w, shape, sb)));
  }
  CHECK(omega[0] > omega[1]);
  CHECK(omega[2] > omega[3]);
  const std::vector<int> bad{4, 12};
  CHECK_THROWS_WITH_AS(loss_increase<float>(0.7, w, shape, spec, bad), "bits (= 12) must be in 2..8",
                       std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Bit allocation

namespace {

struct BruteResult {
  bool feasible = false;
  double best = std::numeric_limits<double>::infinity();
  // All assignments that satisfy the constraints: (size cost, bops cost, omega).
  std::vector<std::tuple<std::int64_t, std::int64_t, double>> all;
};

// Enumerates every assignment, summing omega in layer order.
BruteResult brute_force(const AllocProblem& p) {
  BruteResult r;
  const std::size_t L = p.layers.size();
  std::vector<std::size_t> idx(L, 0);
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < L; ++i) index[p.layers[i].name] = i;
  for (;;) {
    bool ok = true;
    for (const auto& [name, b] : p.pinned) ok = ok && p.layers[index[name]].options[idx[index[name]]].bits == b;
    for (const auto& g : p.shared)
      for (const auto& name : g)
        ok = ok && p.layers[index[name]].options[idx[index[name]]].bits ==
                       p.layers[index[g[0]]].options[idx[index[g[0]]]].bits;
    if (ok) {
      std::int64_t size = 0, bops = 0;
      double omega = 0.0;
      for (std::size_t i = 0; i < L; ++i) {
        const BitOption& o = p.layers[i].options[idx[i]];
        size += p.layers[i].numel * o.bits;
        bops += p.layers[i].macs * o.bits * p.act_bits;
        omega += o.omega;
      }
      r.all.emplace_back(size, bops, omega);
    }
    std::size_t k = 0;
    while (k < L && ++idx[k] == p.layers[k].options.size()) idx[k++] = 0;
    if (k == L) break;
  }
  return r;
}

double omega_scale(const AllocProblem& p) {
  double s = 1e-300;
  for (const auto& l : p.layers) {
    double m = 0.0;
    for (const auto& o : l.options) m = std::max(m, std::abs(o.omega));
    s += m;
  }
  return s;
}

// Random problem: up to 8 layers x 4 candidate bit widths, small sizes (many cost ties), optional
// shared groups and pins; omegas either HAWQ-like (s n 4^-b, some s < 0) or arbitrary.
AllocProblem random_problem(std::mt19937& rng, bool constraints) {
  std::uniform_int_distribution<int> nl(1, 8), nm(1, 4), numel(1, 40), macs(0, 200), coin(0, 3);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uni(-1.0, 5.0);
  AllocProblem p;
  const int L = nl(rng);
  std::vector<int> pool{2, 3, 4, 5, 6, 8};
  std::shuffle(pool.begin(), pool.end(), rng);
  const std::vector<int> common(pool.begin(), pool.begin() + nm(rng));
  const bool hawq = coin(rng) != 0;
  p.act_bits = coin(rng) == 0 ? 4 : 8;
  p.extra_bits = coin(rng) * 8;
  for (int i = 0; i < L; ++i) {
    AllocLayer l;
    l.name = "layer" + std::to_string(i);
    l.numel = numel(rng);
    l.macs = macs(rng);
    l.overhead_bits = 32 * coin(rng);
    std::vector<int> bits = common;
    std::shuffle(bits.begin(), bits.end(), rng);  // options in any order
    const double s = std::exp(normal(rng)) * (coin(rng) == 0 ? -0.2 : 1.0);
    for (int b : bits)
      l.options.push_back(
          {b, hawq ? s * static_cast<double>(l.numel) * std::pow(4.0, -b) * (1 + 0.1 * normal(rng)) : uni(rng)});
    p.layers.push_back(std::move(l));
  }
  if (constraints && L >= 3) {
    std::vector<std::string> names;
    for (const auto& l : p.layers) names.push_back(l.name);
    std::shuffle(names.begin(), names.end(), rng);
    p.shared.push_back({names[0], names[1]});
    if (L >= 6 && coin(rng) < 2) p.shared.push_back({names[2], names[3], names[4]});
    p.pinned[p.layers.front().name] = p.layers.front().options[0].bits;
    if (coin(rng) < 2) p.pinned[p.layers.back().name] = p.layers.back().options.back().bits;
    // Pins inside one shared group must agree.
    for (const auto& g : p.shared) {
      int pin = 0;
      for (const auto& n : g)
        if (p.pinned.count(n)) pin = pin ? pin : p.pinned[n];
      if (pin)
        for (const auto& n : g) p.pinned[n] = pin;
    }
  }
  return p;
}

void check_constraints(const AllocProblem& p, const Allocation& a) {
  std::map<std::string, int> bits;
  for (std::size_t i = 0; i < p.layers.size(); ++i) {
    bits[p.layers[i].name] = a.bits[i];
    bool candidate = false;
    for (const auto& o : p.layers[i].options) candidate = candidate || o.bits == a.bits[i];
    CHECK(candidate);
  }
  for (const auto& [name, b] : p.pinned) CHECK(bits[name] == b);
  for (const auto& g : p.shared)
    for (const auto& name : g) CHECK(bits[name] == bits[g[0]]);
}

}  // namespace

TEST_CASE("allocator: exact optimum equals brute force (up to 8 layers x 4 choices, groups, pins)") {
  std::mt19937 rng(20240601);
  int solved = 0, infeasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const bool constraints = trial % 2 == 1;
    const AllocProblem p = random_problem(rng, constraints);
    CAPTURE(trial);
    const BruteResult brute = brute_force(p);
    REQUIRE(!brute.all.empty());
    std::int64_t numel = 0, overhead = p.extra_bits;
    for (const auto& l : p.layers) {
      numel += l.numel;
      overhead += l.overhead_bits;
    }
    std::int64_t min_size = std::numeric_limits<std::int64_t>::max(), max_size = 0, min_bops = min_size, max_bops = 0;
    for (const auto& [size, bops, omega] : brute.all) {
      min_size = std::min(min_size, size);
      max_size = std::max(max_size, size);
      min_bops = std::min(min_bops, bops);
      max_bops = std::max(max_bops, bops);
    }
    const BitAllocator dp(p);
    const BitAllocator bnb(p, AllocatorOptions{AllocMethod::BranchAndBound});
    const double tol = kOmegaRelTol * omega_scale(p);
    std::uniform_real_distribution<double> frac(-0.1, 1.05);
    for (int k = 0; k < 6; ++k) {
      const BudgetKind kind = static_cast<BudgetKind>(k % 3);
      const double f = frac(rng);
      double value = 0.0;
      if (kind == BudgetKind::AvgBits) value = (min_size + f * (max_size - min_size)) / static_cast<double>(numel);
      if (kind == BudgetKind::SizeKB) value = (min_size + overhead + f * (max_size - min_size)) / 8192.0;
      if (kind == BudgetKind::GBops) value = (min_bops + f * (max_bops - min_bops)) / 1e9;
      if (!(value > 0.0)) continue;  // e.g. every layer without MACs
      const Budget budget{kind, value};
      // Brute-force optimum under the same accounting.
      double best = std::numeric_limits<double>::infinity();
      for (const auto& [size, bops, omega] : brute.all) {
        const double used = kind == BudgetKind::AvgBits  ? static_cast<double>(size)
                            : kind == BudgetKind::SizeKB ? static_cast<double>(size + overhead)
                                                         : static_cast<double>(bops);
        const double cap = kind == BudgetKind::AvgBits  ? value * numel
                           : kind == BudgetKind::SizeKB ? value * 8192.0
                                                        : value * 1e9;
        if (used <= cap * (1 + kBudgetSlack)) best = std::min(best, omega);
      }
      CAPTURE(k);
      CAPTURE(value);
      if (!std::isfinite(best)) {
        ++infeasible;
        CHECK_THROWS_AS(dp.solve(budget), InfeasibleBudget);
        CHECK_THROWS_AS(bnb.solve(budget), InfeasibleBudget);
        try {
          dp.solve(budget);
        } catch (const InfeasibleBudget& e) {
          CHECK(e.smallest_feasible().value >= dp.smallest_feasible(kind));
          CHECK_NOTHROW(dp.solve(e.smallest_feasible()));  // the printed value is itself feasible
        }
        continue;
      }
      ++solved;
      for (const BitAllocator* alloc : {&dp, &bnb}) {
        const Allocation a = alloc->solve(budget);
        CAPTURE(a.method);
        CHECK(a.status == AllocStatus::Optimal);
        CHECK(std::abs(a.omega - best) <= tol);
        check_constraints(p, a);
        if (kind == BudgetKind::AvgBits) CHECK(a.avg_bits <= value * (1 + kBudgetSlack));
        if (kind == BudgetKind::SizeKB) CHECK(a.size_kb() <= value * (1 + kBudgetSlack));
        if (kind == BudgetKind::GBops) CHECK(static_cast<double>(a.bops) <= value * 1e9 * (1 + kBudgetSlack));
      }
    }
  }
  CHECK(solved > 1000);
  CHECK(infeasible > 20);
}

TEST_CASE("allocator: the Pareto frontier equals the brute-force non-dominated set and holds every optimum") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const AllocProblem p = random_problem(rng, trial % 2 == 1);
    CAPTURE(trial);
    const BruteResult brute = brute_force(p);
    const double tol = kOmegaRelTol * omega_scale(p);
    for (CostKind ck : {CostKind::Size, CostKind::Bops}) {
      // Brute-force frontier: sort by (cost, omega), keep strict omega improvements.
      std::vector<std::pair<std::int64_t, double>> pts;
      for (const auto& [size, bops, omega] : brute.all) pts.emplace_back(ck == CostKind::Size ? size : bops, omega);
      std::sort(pts.begin(), pts.end());
      std::vector<std::pair<std::int64_t, double>> front;
      for (const auto& pt : pts)
        if (front.empty() || pt.second < front.back().second) front.push_back(pt);

      const BitAllocator alloc(p);
      const ParetoFrontier f = alloc.pareto_frontier(ck);
      CHECK(f.exact);
      REQUIRE(f.points.size() == front.size());
      for (std::size_t k = 0; k < front.size(); ++k) {
        const Allocation& a = f.points[k];
        CHECK((ck == CostKind::Size ? a.weight_bits : a.bops) == front[k].first);
        CHECK(std::abs(a.omega - front[k].second) <= tol);
        check_constraints(p, a);
        if (k > 0) {  // monotone: more size, strictly less Omega
          CHECK((ck == CostKind::Size ? a.weight_bits > f.points[k - 1].weight_bits : a.bops > f.points[k - 1].bops));
          CHECK(a.omega < f.points[k - 1].omega);
        }
      }
      // The optimum for each budget is a frontier point: the last one within the budget.
      if (ck == CostKind::Size) {
        std::int64_t numel = 0;
        for (const auto& l : p.layers) numel += l.numel;
        for (const auto& [cost, omega] : front) {
          const Allocation a = alloc.solve({BudgetKind::AvgBits, static_cast<double>(cost) / numel});
          CHECK(a.weight_bits <= cost);
          CHECK(std::abs(a.omega - omega) <= tol);
        }
      }
      // Fallback frontier (convex hull, Lagrangian sweep): supported points, all on the exact frontier.
      const ParetoFrontier hull = BitAllocator(p, AllocatorOptions{AllocMethod::BranchAndBound}).pareto_frontier(ck);
      CHECK_FALSE(hull.exact);
      REQUIRE(!hull.points.empty());
      CHECK(hull.points.front().omega == doctest::Approx(f.points.front().omega));
      CHECK(hull.points.back().omega == doctest::Approx(f.points.back().omega));
      for (std::size_t k = 0; k < hull.points.size(); ++k) {
        const std::int64_t c = ck == CostKind::Size ? hull.points[k].weight_bits : hull.points[k].bops;
        auto it = std::find_if(front.begin(), front.end(), [&](const auto& pt) { return pt.first == c; });
        REQUIRE(it != front.end());
        CHECK(std::abs(hull.points[k].omega - it->second) <= tol);
        if (k > 0) CHECK(hull.points[k].omega < hull.points[k - 1].omega);
      }
    }
  }
}

TEST_CASE("allocator: larger instances, DP and branch and bound agree and DP state cap falls back to B&B") {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> size(100, 100000);
  AllocProblem p;
  for (int i = 0; i < 40; ++i) {
    AllocLayer l{"conv" + std::to_string(i), size(rng), 0, 32 * 16, {}};
    l.macs = l.numel * 64;
    const double s = std::exp(2.0 * normal(rng));
    for (int b : {2, 3, 4, 6, 8}) l.options.push_back({b, s * static_cast<double>(l.numel) * std::pow(4.0, -b)});
    p.layers.push_back(std::move(l));
  }
  p.pinned["conv0"] = 8;
  p.pinned["conv39"] = 8;
  p.shared = {{"conv5", "conv6", "conv7"}};
  const BitAllocator dp(p);
  const BitAllocator bnb(p, AllocatorOptions{AllocMethod::BranchAndBound});
  const BitAllocator capped(p, AllocatorOptions{AllocMethod::Auto, 10});
  const double tol = kOmegaRelTol * omega_scale(p);
  for (double avg : {2.5, 3.0, 3.5, 4.0, 5.0, 7.0}) {
    CAPTURE(avg);
    const Allocation a = dp.solve({BudgetKind::AvgBits, avg});
    const Allocation b = bnb.solve({BudgetKind::AvgBits, avg});
    const Allocation c = capped.solve({BudgetKind::AvgBits, avg});
    CHECK(a.method == "pareto-dp");
    CHECK(b.method == "branch-and-bound");
    CHECK(c.method == "branch-and-bound");
    CHECK(b.status == AllocStatus::Optimal);
    CHECK(std::abs(a.omega - b.omega) <= tol);
    CHECK(std::abs(a.omega - c.omega) <= tol);
    CHECK(a.avg_bits <= avg * (1 + kBudgetSlack));
    check_constraints(p, a);
    check_constraints(p, b);
  }
  const ParetoFrontier f = dp.pareto_frontier();
  CHECK(f.exact);
  CHECK(f.points.size() > 100);
  const ParetoFrontier h = capped.pareto_frontier();
  CHECK_FALSE(h.exact);
  CHECK(h.points.size() < f.points.size());
  CHECK_THROWS_AS(BitAllocator(p, AllocatorOptions{AllocMethod::ParetoDp, 10}).solve({BudgetKind::AvgBits, 4.0}),
                  std::runtime_error);
}

TEST_CASE("allocator: infeasible budgets name the smallest feasible budget in the same unit") {
  AllocProblem p;
  p.layers = {{"first", 100, 1000, 32, {{2, 5.0}, {4, 1.0}, {8, 0.1}}},
              {"last", 300, 2000, 32, {{2, 9.0}, {4, 2.0}, {8, 0.2}}}};
  BitAllocator a(p);
  CHECK(a.smallest_feasible(BudgetKind::AvgBits) == 2.0);
  CHECK_THROWS_WITH_AS(a.solve({BudgetKind::AvgBits, 1.5}),
                       "infeasible budget: --avg-bits 1.5 is below the smallest feasible budget --avg-bits 2 "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  p.pinned["first"] = 8;  // 800 + 600 weight bits
  BitAllocator pinned(p);
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::AvgBits, 3}),
                       "infeasible budget: --avg-bits 3 is below the smallest feasible budget --avg-bits 3.5 "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  // (1400 + 64 overhead bits) / 8192 = 0.1787109375 KB, shown rounded up to 6 digits.
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::SizeKB, 0.1}),
                       "infeasible budget: --size-kb 0.1 is below the smallest feasible budget --size-kb 0.178711 "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  CHECK_NOTHROW(pinned.solve({BudgetKind::SizeKB, 0.178711}));
  // (1000 * 8 + 2000 * 2) * 8 activation bits = 96000 BOPs.
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::GBops, 5e-5}),
                       "infeasible budget: --bops 5e-05 is below the smallest feasible budget --bops 9.6e-05 "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  const Allocation best = pinned.solve({BudgetKind::AvgBits, 5.0});  // 800 + 300 b <= 5 * 400: b <= 4
  CHECK(best.bits == std::vector<int>{8, 4});
  CHECK(best.omega == doctest::Approx(2.1));
  CHECK(best.size_bits == 800 + 1200 + 64);
  CHECK(best.bops == (1000 * 8 + 2000 * 4) * 8);
  CHECK_THROWS_WITH_AS(a.solve({BudgetKind::AvgBits, -1}), "budget --avg-bits (= -1) must be positive and finite",
                       std::invalid_argument);
}

TEST_CASE("allocator: invalid problems are rejected with the names involved") {
  auto base = [] {
    AllocProblem p;
    p.layers = {{"a", 10, 0, 0, {{2, 3.0}, {4, 1.0}, {8, 0.5}}}, {"b", 10, 0, 0, {{3, 3.0}, {6, 1.0}}}};
    return p;
  };
  AllocProblem p = base();
  p.shared = {{"a", "zz"}};
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "a shared group names unknown layer \"zz\"", std::invalid_argument);
  p = base();
  p.shared = {{"a", "b"}};
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "shared group (a, b) has no common candidate bit width", std::invalid_argument);
  p = base();
  p.pinned["a"] = 3;
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "layer a is pinned to 3 bits, which is not among its candidates (2, 4, 8)",
                       std::invalid_argument);
  p = base();
  p.layers[1].options = {{4, 1.0}, {8, 0.1}};
  p.shared = {{"a", "b"}};
  p.pinned = {{"a", 4}, {"b", 8}};
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "layers a (4 bits) and b (8 bits) share a bit width but are pinned differently",
                       std::invalid_argument);
  p = base();
  p.layers[0].options.push_back({9, 0.0});
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "layer a: bits (= 9) must be in 2..8", std::invalid_argument);
  p = base();
  p.layers[1].name = "a";
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "layer name \"a\" appears twice", std::invalid_argument);
  p = base();
  BitAllocator ok(p);
  const std::vector<int> bad{4, 4};
  CHECK_THROWS_WITH_AS(ok.evaluate(bad), "layer b: 4 bits is not among its candidates (3, 6)", std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Baseline orders (reverse, random): same values, reassigned, solved by the same allocator

TEST_CASE("order: hessian keeps, reverse rank-reverses, random permutes reproducibly by seed") {
  const std::vector<double> s{3.0, 1.0, 2.0, 5.0, -0.5};
  CHECK(reorder_sensitivities(s, SensitivityOrder::Hessian) == s);
  // Ascending ranks: -0.5 (4), 1 (1), 2 (2), 3 (0), 5 (3); the k-th smallest takes the k-th largest.
  CHECK(reorder_sensitivities(s, SensitivityOrder::Reverse) == std::vector<double>{1.0, 3.0, 2.0, -0.5, 5.0});
  CHECK(reorder_sensitivities(reorder_sensitivities(s, SensitivityOrder::Reverse), SensitivityOrder::Reverse) == s);
  // Ties keep layer order among themselves: [1, 1, 2] -> the two 1s take 2 and 1 in index order.
  const std::vector<double> tie{1.0, 1.0, 2.0};
  CHECK(reorder_sensitivities(tie, SensitivityOrder::Reverse) == std::vector<double>{2.0, 1.0, 1.0});

  std::vector<double> many(20);
  std::iota(many.begin(), many.end(), 1.0);
  const auto r7 = reorder_sensitivities(many, SensitivityOrder::Random, 7);
  CHECK(r7 == reorder_sensitivities(many, SensitivityOrder::Random, 7));
  auto sorted = r7;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == many);  // a permutation of the same values
  CHECK(r7 != many);
  CHECK(r7 != reorder_sensitivities(many, SensitivityOrder::Random, 8));
  // Every position is reachable: over seeds, the value at position 0 takes many different values.
  std::set<double> first;
  for (std::uint64_t seed = 0; seed < 200; ++seed) first.insert(reorder_sensitivities(many, SensitivityOrder::Random, seed)[0]);
  CHECK(first.size() == many.size());

  CHECK(to_string(SensitivityOrder::Reverse) == "reverse");
  CHECK(sensitivity_order_from_string("random") == SensitivityOrder::Random);
  CHECK_THROWS_WITH_AS(sensitivity_order_from_string("inverse"),
                       "order \"inverse\" is not one of hessian, reverse, random", std::invalid_argument);
  const std::vector<double> nan{1.0, std::numeric_limits<double>::quiet_NaN()};
  CHECK_THROWS_AS(reorder_sensitivities(nan, SensitivityOrder::Reverse), std::invalid_argument);
}

TEST_CASE("order: the reverse plan gives the most bits to the least sensitive layers, all orders meet the budget") {
  // Five layers of equal size and equal quantization error e(b) = 4^-b: with Omega_i(b) = s'_i e(b)
  // the exact optimum gives at least as many bits to a layer with larger s'.
  const std::vector<double> s{5.0, 0.1, 50.0, 1.0, 0.01};
  const std::vector<int> cand{2, 3, 4, 8};
  const Budget budget{BudgetKind::AvgBits, 4.0};
  AllocProblem p;
  std::vector<std::vector<double>> err;  // e_i(b) = 4^-b
  for (std::size_t i = 0; i < s.size(); ++i) {
    AllocLayer l{"l" + std::to_string(i), 1000, 0, 64, {}};
    err.emplace_back();
    for (int b : cand) {
      l.options.push_back({b, 0.0});
      err.back().push_back(std::pow(4.0, -b));
    }
    p.layers.push_back(l);
  }
  auto solve = [&](SensitivityOrder order, std::uint64_t seed) {
    set_omegas(p, err, reorder_sensitivities(s, order, seed));
    return BitAllocator(p).solve(budget);
  };
  const Allocation h = solve(SensitivityOrder::Hessian, 0), r = solve(SensitivityOrder::Reverse, 0);
  INFO("hessian bits ", h.bits[0], h.bits[1], h.bits[2], h.bits[3], h.bits[4]);
  INFO("reverse bits ", r.bits[0], r.bits[1], r.bits[2], r.bits[3], r.bits[4]);
  CHECK(*std::max_element(h.bits.begin(), h.bits.end()) > *std::min_element(h.bits.begin(), h.bits.end()));
  for (std::size_t i = 0; i < s.size(); ++i)
    for (std::size_t j = 0; j < s.size(); ++j)
      if (s[i] > s[j]) {
        CHECK(h.bits[i] >= h.bits[j]);
        CHECK(r.bits[i] <= r.bits[j]);
      }
  CHECK(r.bits[4] == *std::max_element(r.bits.begin(), r.bits.end()));  // least sensitive: most bits
  CHECK(r.bits[2] == *std::min_element(r.bits.begin(), r.bits.end()));  // most sensitive: fewest
  CHECK(h.bits[2] > r.bits[2]);
  // Same values, so the same multiset of bit widths (equal layers): the plans have the same size.
  auto hb = h.bits, rb = r.bits;
  std::sort(hb.begin(), hb.end());
  std::sort(rb.begin(), rb.end());
  CHECK(hb == rb);
  CHECK(h.size_bits == r.size_bits);
  for (const Allocation& a : {h, r}) CHECK(a.avg_bits <= budget.value * (1 + kBudgetSlack));
  // Under the measured sensitivities the Hessian plan is optimal, the reverse plan strictly worse.
  CHECK(predicted_omega(p, err, s, h.bits) == doctest::Approx(h.omega).epsilon(1e-14));
  CHECK(predicted_omega(p, err, s, r.bits) > predicted_omega(p, err, s, h.bits));
  const std::vector<int> bad(s.size(), 5);
  CHECK_THROWS_WITH_AS(predicted_omega(p, err, s, bad), "predicted_omega: layer l0: 5 bits is not among its options",
                       std::invalid_argument);
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const Allocation a = solve(SensitivityOrder::Random, seed);
    CHECK(a.avg_bits <= budget.value * (1 + kBudgetSlack));
    CHECK(a.bits == solve(SensitivityOrder::Random, seed).bits);
    CHECK(predicted_omega(p, err, s, a.bits) >= predicted_omega(p, err, s, h.bits));
  }
}

// ---------------------------------------------------------------------------------------------
// Plans

namespace {

Plan sample_plan() {
  AllocProblem p;
  p.layers = {{"conv1", 432, 442368, scale_overhead_bits(Scheme::Symmetric, 16), {{4, 0.3}, {8, 0.01}}},
              {"conv2", 2304, 2359296, scale_overhead_bits(Scheme::Symmetric, 16), {{2, 0.9}, {4, 0.2}, {8, 0.02}}},
              {"conv3", 2304, 2359296, scale_overhead_bits(Scheme::Symmetric, 16), {{2, 0.7}, {4, 0.1}, {8, 0.03}}},
              {"fc", 640, 640, scale_overhead_bits(Scheme::Asymmetric, 2), {{4, 0.05}, {8, 0.004}}}};
  p.shared = {{"conv2", "conv3"}};
  p.pinned = {{"conv1", 8}, {"fc", 8}};
  p.extra_bits = 32 * 84;
  const BitAllocator alloc(p);
  const Allocation a = alloc.solve({BudgetKind::AvgBits, 4.0});
  std::vector<PlanLayerInfo> info(4, PlanLayerInfo{Scheme::Symmetric, Granularity::PerChannel, 16, 1.5, false});
  info[3] = {Scheme::Asymmetric, Granularity::Group, 2, -0.25, true};
  Plan plan = make_plan(p, a, info);
  plan.command = "curv quant plan model.onnx --data fashion-mnist:train --avg-bits 4";
  plan.model_path = "model.onnx";
  plan.model_sha256 = curv::sha256_hex("model bytes");
  plan.sensitivity_kind = "trace";
  plan.budget = Budget{BudgetKind::AvgBits, 4.0};
  plan.created_utc = utc_timestamp();
  return plan;
}

}  // namespace

TEST_CASE("plan: make_plan respects the constraints and computes the totals") {
  const Plan plan = sample_plan();
  REQUIRE(plan.layers.size() == 4);
  CHECK(plan.layers[0].bits == 8);
  CHECK(plan.layers[0].pinned);
  CHECK(plan.layers[3].bits == 8);
  CHECK(plan.layers[1].bits == plan.layers[2].bits);
  CHECK(plan.totals.avg_bits <= 4.0);
  CHECK(plan.totals.weight_bits == 432 * 8 + 2304 * 2 * plan.layers[1].bits + 640 * 8);
  CHECK(plan.totals.overhead_bits == 3 * 16 * 32 + 2 * 40);
  CHECK(plan.totals.size_bytes == (plan.totals.weight_bits + plan.totals.overhead_bits + 7) / 8 + 336);
  CHECK(plan.candidate_bits == std::vector<int>{2, 4, 8});
  CHECK(plan.optimizer_method == "pareto-dp");
  CHECK(plan.curv_version == curv_version_string());
}

TEST_CASE("plan: JSON round trip") {
  const Plan plan = sample_plan();
  const std::string path = temp_path("plan.json");
  write_plan(plan, path);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  const Plan back = read_plan(path);
  CHECK(plan_to_json(back) == plan_to_json(plan));
  CHECK(back.layers[3].scheme == Scheme::Asymmetric);
  CHECK(back.layers[3].granularity == Granularity::Group);
  CHECK(back.layers[3].negative_top_eigenvalue);
  CHECK(back.budget->kind == BudgetKind::AvgBits);
  CHECK(back.totals.predicted_omega == plan.totals.predicted_omega);
  CHECK(back.order == "hessian");
  CHECK_FALSE(back.order_seed);

  Plan random = plan;
  random.order = "random";
  random.order_seed = 42;
  random.measured_omega = 0.125;
  write_plan(random, path);
  const Plan rback = read_plan(path);
  CHECK(rback.order == "random");
  CHECK(rback.order_seed == 42);
  CHECK(rback.measured_omega == 0.125);
  CHECK(plan_to_json(rback) == plan_to_json(random));
}

TEST_CASE("plan: corrupt, foreign or wrong-schema files raise \"<path>: <what is wrong>\"") {
  const Plan plan = sample_plan();
  const std::string path = temp_path("bad.json");
  const nlohmann::json good = plan_to_json(plan);
  auto with = [&](auto edit) {
    nlohmann::json j = good;
    edit(j);
    write_text(path, j.dump(2));
  };
  auto expect = [&](const std::string& what) {
    CHECK_THROWS_WITH_AS(read_plan(path), (path + ": " + what).c_str(), std::runtime_error);
  };
  CHECK_THROWS_WITH_AS(read_plan(path + ".missing"), (path + ".missing: cannot open for reading").c_str(),
                       std::runtime_error);
  write_text(path, good.dump(2).substr(0, 200));
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains((path + ": not valid JSON (").c_str()), std::runtime_error);
  write_text(path, "");
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains((path + ": not valid JSON (").c_str()), std::runtime_error);
  write_text(path, "[1, 2, 3]");
  expect("expected an object, got array [1,2,3]");
  with([](auto& j) { j["format"] = "curv-spectrum"; });
  expect("not a curv quantization plan (expected \"format\": \"curv-quant-plan\")");
  with([](auto& j) { j["schema_version"] = 2; });
  expect("schema_version: 2 is not supported (this curv reads 1)");
  with([](auto& j) { j["layers"][0].erase("bits"); });
  expect("layers[0].bits: missing");
  with([](auto& j) { j["layers"][1]["bits"] = "4"; });
  expect("layers[1].bits: expected an integer, got string \"4\"");
  with([](auto& j) { j["layers"][0]["bits"] = 9; });
  expect("layers[0].bits: 9 is outside 2..8");
  with([](auto& j) { j["layers"][0]["scheme"] = "sym"; });
  expect("layers[0].scheme: scheme \"sym\" is not one of symmetric, asymmetric");
  with([](auto& j) { j["layers"][2]["name"] = "conv2"; });
  expect("layers[2].name: \"conv2\" appears twice");
  with([](auto& j) { j["model"]["sha256"] = "xyz"; });
  expect("model.sha256: \"xyz\" is not 64 lower-case hex digits");
  with([](auto& j) { j["order"] = "inverse"; });
  expect("order: order \"inverse\" is not one of hessian, reverse, random");
  with([](auto& j) { j["order_seed"] = -1; });
  expect("order_seed: -1 is outside 0..9223372036854775807");
  with([](auto& j) { j["layers"] = nlohmann::json::array(); });
  expect("layers: empty (a plan has at least one layer)");
  with([](auto& j) { j["totals"]["size_bytes"] = 999; });
  expect("totals.size_bytes: 999 does not match the layers (" + std::to_string(plan.totals.size_bytes) + ")");
  with([](auto& j) { j["totals"]["predicted_omega"] = 1.0; });
  expect(std::string("totals.predicted_omega: 1.0 does not match the layers (") +
         nlohmann::json(plan.totals.predicted_omega).dump() + ")");
  with([](auto& j) { j["layers"][2]["bits"] = 8; });  // conv2 and conv3 share a width
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains("shared[0]: layers conv2"), std::runtime_error);

  // An invalid plan is never written.
  Plan bad = plan;
  bad.layers[0].bits = 1;
  const std::string out = temp_path("never.json");
  CHECK_THROWS_AS(write_plan(bad, out), std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("plan: a plan for another model is refused by sha256") {
  const std::string model = temp_path("model.bin");
  write_text(model, "model bytes");
  Plan plan = sample_plan();
  CHECK_NOTHROW(check_plan_model(plan, "plan.json", model));
  write_text(model, "other model");
  CHECK_THROWS_WITH_AS(check_plan_model(plan, "plan.json", model),
                       ("plan.json: plan was made for a model with sha256 " + plan.model_sha256 + ", but " + model +
                        " has sha256 " + curv::sha256_hex("other model"))
                           .c_str(),
                       std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// sha256

TEST_CASE("sha256: FIPS 180-4 test vectors, streaming and files") {
  using namespace curv;
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 h;  // one million 'a', fed in uneven pieces
  const std::string chunk(997, 'a');
  std::size_t left = 1000000;
  while (left > 0) {
    const std::size_t n = std::min(left, chunk.size() - left % 7);
    h.update(chunk.data(), n);
    left -= n;
  }
  CHECK(Sha256::hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  for (std::size_t n : {55, 56, 63, 64, 65, 119, 120}) {  // padding boundaries: one-shot equals byte by byte
    const std::string s(n, 'x');
    Sha256 b;
    for (char c : s) b.update(&c, 1);
    CHECK(Sha256::hex(b.finish()) == sha256_hex(s));
  }
  const std::string file = temp_path("abc.txt");
  write_text(file, "abc");
  CHECK(sha256_file(file) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_THROWS_WITH_AS(sha256_file(file + ".missing"), (file + ".missing: cannot open for reading").c_str(),
                       std::runtime_error);
}

TEST_CASE("trace sensitivities match the traces of the dense Hessian blocks, reproducibly") {
  using namespace curv;
  const Model m = build_arch("mlp:6", {4}, 3, 5);
  DataOptions dopt;
  dopt.seed = 6;
  const Dataset d = load_dataset("random:4:3:20", dopt);
  const auto layers = quant::quantizable_layers(m);
  REQUIRE(layers.size() == 2);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  auto obj = Objective::create(m, d, oo);
  quant::SensitivityOptions so;
  so.kind = quant::SensitivityKind::Trace;
  so.trace_probes = 4000;
  so.objective = oo;
  const auto per_layer = quant::layer_sensitivities(m, d, layers, so);
  const auto again = quant::layer_sensitivities(m, d, layers, so);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::int64_t n = layers[i].numel;
    Eigen::MatrixXd H;
    obj->product(Curvature::Hessian, Eigen::MatrixXd::Identity(n, n), H, {layers[i].param});
    const double exact = H.trace() / double(n);
    INFO("layer ", i, " exact ", exact, " estimate ", per_layer[i].value);
    CHECK(per_layer[i].value == doctest::Approx(exact).epsilon(0.05));
    CHECK(per_layer[i].value == again[i].value);  // seeded
  }
}
