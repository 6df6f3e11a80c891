// Tests of quant/ bit allocation: the exact allocator against brute force (optimum and Pareto
// frontier), larger instances (DP vs branch and bound), infeasible budgets and invalid problems,
// and the baseline sensitivity orders (reverse, random) solved by the same allocator.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/bit_allocator.h"
#include "quant/model_quant.h"
#include "quant/sensitivity.h"

using namespace curv::quant;

namespace {

// Optimizer totals vs brute force (omega sums in different orders), relative to sum max |Omega|.
constexpr double kOmegaRelTol = 1e-10;
// Budgets are met up to this relative slack (BitAllocator's documented rounding).
constexpr double kBudgetSlack = 1e-9;

}  // namespace

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
                       "infeasible budget: 1.5 average bits is below the smallest feasible budget, 2 average bits "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  p.pinned["first"] = 8;  // 800 + 600 weight bits
  BitAllocator pinned(p);
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::AvgBits, 3}),
                       "infeasible budget: 3 average bits is below the smallest feasible budget, 3.5 average bits "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  // (1400 + 64 overhead bits) / 8192 = 0.1787109375 KB, shown rounded up to 6 digits.
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::SizeKB, 0.1}),
                       "infeasible budget: 0.1 KB is below the smallest feasible budget, 0.178711 KB "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  CHECK_NOTHROW(pinned.solve({BudgetKind::SizeKB, 0.178711}));
  // (1000 * 8 + 2000 * 2) * 8 activation bits = 96000 BOPs.
  CHECK_THROWS_WITH_AS(pinned.solve({BudgetKind::GBops, 5e-5}),
                       "infeasible budget: 5e-05 GBOPs is below the smallest feasible budget, 9.6e-05 GBOPs "
                       "(every layer at its fewest allowed bits)",
                       InfeasibleBudget);
  const Allocation best = pinned.solve({BudgetKind::AvgBits, 5.0});  // 800 + 300 b <= 5 * 400: b <= 4
  CHECK(best.bits == std::vector<int>{8, 4});
  CHECK(best.omega == doctest::Approx(2.1));
  CHECK(best.size_bits == 800 + 1200 + 64);
  CHECK(best.bops == (1000 * 8 + 2000 * 4) * 8);
  CHECK_THROWS_WITH_AS(a.solve({BudgetKind::AvgBits, -1}), "budget (= -1 average bits) must be positive and finite",
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
                       "order \"inverse\" is not one of hessian, reverse, random, equal", std::invalid_argument);
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

// ---- inter-layer terms: a chain of pairwise terms stays an exact dynamic program ----------------

namespace {

// All assignments of a problem with chain terms: (size cost, bops cost, omega incl. chain terms).
std::vector<std::tuple<std::int64_t, std::int64_t, double, std::vector<std::size_t>>> enumerate_chain(
    const AllocProblem& p) {
  std::vector<std::tuple<std::int64_t, std::int64_t, double, std::vector<std::size_t>>> all;
  const std::size_t L = p.layers.size();
  std::vector<std::size_t> idx(L, 0);
  for (;;) {
    bool ok = true;
    for (std::size_t i = 0; i < L; ++i) {
      const auto pin = p.pinned.find(p.layers[i].name);
      ok = ok && (pin == p.pinned.end() || p.layers[i].options[idx[i]].bits == pin->second);
    }
    if (ok) {
      std::int64_t size = 0, bops = 0;
      double omega = 0.0;
      for (std::size_t i = 0; i < L; ++i) {
        const BitOption& o = p.layers[i].options[idx[i]];
        size += p.layers[i].numel * o.bits;
        bops += p.layers[i].macs * o.bits * (o.act_bits ? o.act_bits : p.act_bits);
        omega += o.omega;
        if (i + 1 < L && !p.chain.empty()) omega += p.chain[i][idx[i]][idx[i + 1]];
      }
      all.emplace_back(size, bops, omega, idx);
    }
    std::size_t k = 0;
    while (k < L && ++idx[k] == p.layers[k].options.size()) idx[k++] = 0;
    if (k == L) break;
  }
  return all;
}

AllocProblem chain_problem(std::mt19937& rng, int layers, int choices) {
  std::uniform_int_distribution<int> numel(1, 50), macs(0, 300), coin(0, 3);
  std::normal_distribution<double> normal;
  const std::vector<int> pool{2, 3, 4, 8};
  AllocProblem p;
  for (int i = 0; i < layers; ++i) {
    AllocLayer l;
    l.name = "l" + std::to_string(i);
    l.numel = numel(rng);
    l.macs = macs(rng);
    const double s = std::exp(normal(rng));
    for (int c = 0; c < choices; ++c)
      l.options.push_back({pool[c], s * double(l.numel) * std::pow(4.0, -pool[c]) * (1 + 0.2 * normal(rng))});
    std::shuffle(l.options.begin(), l.options.end(), rng);
    p.layers.push_back(std::move(l));
  }
  // Signed pair terms of the size of the diagonal ones (they can flip a choice).
  for (int i = 0; i + 1 < layers; ++i) {
    std::vector<std::vector<double>> c(choices, std::vector<double>(choices));
    for (auto& row : c)
      for (double& x : row) x = 0.05 * normal(rng) * double(p.layers[i].numel + p.layers[i + 1].numel) / 16.0;
    p.chain.push_back(std::move(c));
  }
  if (coin(rng) == 0) p.pinned[p.layers[2].name] = p.layers[2].options[1].bits;
  return p;
}

}  // namespace

TEST_CASE("allocator: with inter-layer chain terms the DP equals enumeration (6 layers x 4 choices)") {
  std::mt19937 rng(77);
  int checked = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const AllocProblem p = chain_problem(rng, 6, 4);
    const auto all = enumerate_chain(p);
    const BitAllocator alloc(p);
    std::int64_t total = 0, max_size = 0, min_size = std::numeric_limits<std::int64_t>::max();
    for (const auto& l : p.layers) total += l.numel;
    for (const auto& t : all) max_size = std::max(max_size, std::get<0>(t)), min_size = std::min(min_size, std::get<0>(t));
    double scale = 1e-300;
    for (const auto& t : all) scale = std::max(scale, std::abs(std::get<2>(t)));
    for (int k = 0; k < 5; ++k) {
      const double avg = (min_size + (max_size - min_size) * (k + 0.5) / 5.0) / double(total);
      double best = std::numeric_limits<double>::infinity();
      for (const auto& t : all)
        if (double(std::get<0>(t)) <= avg * double(total) * (1 + kBudgetSlack)) best = std::min(best, std::get<2>(t));
      const Allocation a = alloc.solve({BudgetKind::AvgBits, avg});
      INFO("trial ", trial, " budget ", avg, " dp ", a.omega, " enumeration ", best);
      CHECK(a.method == "chain-dp");
      CHECK(std::abs(a.omega - best) <= kOmegaRelTol * scale);
      CHECK(a.avg_bits <= avg * (1 + kBudgetSlack));
      // The reported chain part is the sum of the pair terms of the chosen options.
      double chain = 0.0;
      for (std::size_t i = 0; i + 1 < p.layers.size(); ++i) {
        auto opt = [&](std::size_t l, int bits) {
          for (std::size_t o = 0; o < p.layers[l].options.size(); ++o)
            if (p.layers[l].options[o].bits == bits) return o;
          return std::size_t(0);
        };
        chain += p.chain[i][opt(i, a.bits[i])][opt(i + 1, a.bits[i + 1])];
      }
      CHECK(a.chain_omega == doctest::Approx(chain).epsilon(1e-12));
      ++checked;
    }
    // The frontier equals the enumerated non-dominated set (cost strictly up, omega strictly down).
    std::map<std::int64_t, double> best_at;
    for (const auto& t : all) {
      auto [it, fresh] = best_at.emplace(std::get<0>(t), std::get<2>(t));
      if (!fresh) it->second = std::min(it->second, std::get<2>(t));
    }
    std::vector<std::pair<std::int64_t, double>> want;
    for (const auto& [c, w] : best_at)
      if (want.empty() || w < want.back().second - kOmegaRelTol * scale) want.push_back({c, w});
    const ParetoFrontier f = alloc.pareto_frontier();
    REQUIRE(f.points.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      CHECK(f.points[k].weight_bits == want[k].first);
      CHECK(std::abs(f.points[k].omega - want[k].second) <= kOmegaRelTol * scale);
    }
  }
  CHECK(checked == 300);
  // Chains exclude shared groups and need one matrix per adjacent pair.
  AllocProblem p = chain_problem(rng, 3, 2);
  p.shared = {{"l0", "l1"}};
  CHECK_THROWS_WITH_AS(BitAllocator{p}, "inter-layer terms cannot be combined with shared groups", std::invalid_argument);
  p.shared.clear();
  p.chain.pop_back();
  CHECK_THROWS_AS(BitAllocator{p}, std::invalid_argument);
}

TEST_CASE("allocator: joint weight and activation widths under a BOPs budget equal brute force") {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> numel(1, 40), macs(1, 500);
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 40; ++trial) {
    AllocProblem p;
    p.act_bits = 8;
    for (int i = 0; i < 5; ++i) {
      AllocLayer l;
      l.name = "l" + std::to_string(i);
      l.numel = numel(rng);
      l.macs = macs(rng);
      const double sw = std::exp(normal(rng)), sa = std::exp(normal(rng));
      for (int b : {2, 4, 8})
        for (int a : {4, 8}) l.options.push_back({b, sw * std::pow(4.0, -b) + sa * std::pow(4.0, -a), a});
      p.layers.push_back(std::move(l));
    }
    const auto all = enumerate_chain(p);
    std::int64_t lo = std::numeric_limits<std::int64_t>::max(), hi = 0;
    for (const auto& t : all) lo = std::min(lo, std::get<1>(t)), hi = std::max(hi, std::get<1>(t));
    const double g = (lo + 0.6 * (hi - lo)) / 1e9;
    double best = std::numeric_limits<double>::infinity();
    for (const auto& t : all)
      if (double(std::get<1>(t)) <= g * 1e9 * (1 + kBudgetSlack)) best = std::min(best, std::get<2>(t));
    const BitAllocator alloc(p);
    const Allocation a = alloc.solve({BudgetKind::GBops, g});
    CHECK(a.omega == doctest::Approx(best).epsilon(1e-12));
    CHECK(double(a.bops) <= g * 1e9 * (1 + kBudgetSlack));
    std::int64_t bops = 0;
    for (std::size_t i = 0; i < p.layers.size(); ++i) bops += p.layers[i].macs * a.bits[i] * a.act_bits[i];
    CHECK(bops == a.bops);
    // The same weight width twice with one activation width is refused.
    AllocProblem dup = p;
    dup.layers[0].options.push_back(dup.layers[0].options[0]);
    CHECK_THROWS_WITH_AS(BitAllocator{dup}, "layer l0: 2/4 bits is listed twice", std::invalid_argument);
  }
}
