#include "quant/bit_allocator.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "quant/internal/chain_dp.h"
#include "quant/internal/mckp.h"
#include "quant/quantizer.h"

namespace curv::quant {

namespace {

// A budget is met if the plan's cost is within this relative slack of it (printed budgets round).
constexpr double kBudgetRelTol = 1e-9;
constexpr double kBitsPerKB = 8.0 * 1024.0;
constexpr double kBopsPerG = 1e9;

std::string number(double x, int precision) {
  std::ostringstream os;
  os << std::setprecision(precision) << x;
  return os.str();
}

// x rounded to 6 significant digits, never below x (up to 1e-12 relative), so that the printed
// value is itself a feasible budget.
double round_up_6(double x) {
  if (!(x > 0.0)) return x;
  const double f = std::pow(10.0, std::floor(std::log10(x)) - 5.0);
  double r = std::round(x / f) * f;
  if (r < x * (1.0 - 1e-12)) r = (std::round(x / f) + 1.0) * f;
  return std::max(r, x);  // r may sit an ulp below x; it prints the same
}

// "1.5 average bits", "12 KB", "0.3 GBOPs".
std::string budget_text(BudgetKind kind, const std::string& value) {
  switch (kind) {
    case BudgetKind::AvgBits: return value + " average bits";
    case BudgetKind::SizeKB: return value + " KB";
    case BudgetKind::GBops: return value + " GBOPs";
  }
  return value;
}

std::string option_text(const BitOption& o) {
  return std::to_string(o.bits) + (o.act_bits ? "/" + std::to_string(o.act_bits) : "");
}

std::string bits_list(const std::vector<BitOption>& options) {
  std::string s;
  for (const BitOption& o : options) s += (s.empty() ? "" : ", ") + option_text(o);
  return s;
}

// The option with weight width `bits` and activation width `act` (-1: any, the first one).
const BitOption* find_option(const AllocLayer& layer, int bits, int act = -1) {
  for (const BitOption& o : layer.options)
    if (o.bits == bits && (act < 0 || o.act_bits == act)) return &o;
  return nullptr;
}

int option_index(const AllocLayer& layer, int bits, int act) {
  for (std::size_t k = 0; k < layer.options.size(); ++k)
    if (layer.options[k].bits == bits && layer.options[k].act_bits == act) return static_cast<int>(k);
  return -1;
}

}  // namespace

std::string to_string(BudgetKind kind) {
  switch (kind) {
    case BudgetKind::AvgBits:
      return "avg-bits";
    case BudgetKind::SizeKB:
      return "size-kb";
    case BudgetKind::GBops:
      return "bops";
  }
  return "?";
}

BudgetKind budget_kind_from_string(const std::string& s) {
  if (s == "avg-bits") return BudgetKind::AvgBits;
  if (s == "size-kb") return BudgetKind::SizeKB;
  if (s == "bops") return BudgetKind::GBops;
  throw std::invalid_argument("budget kind \"" + s + "\" is not one of avg-bits, size-kb, bops");
}

BitAllocator::BitAllocator(AllocProblem problem, AllocatorOptions options)
    : m_problem(std::move(problem)), m_options(options) {
  const std::vector<AllocLayer>& layers = m_problem.layers;
  if (layers.empty()) throw std::invalid_argument("bit allocation needs at least one layer");
  if (m_problem.act_bits < 1 || m_problem.act_bits > 32)
    throw std::invalid_argument("act_bits (= " + std::to_string(m_problem.act_bits) + ") must be in 1..32");
  if (m_problem.extra_bits < 0)
    throw std::invalid_argument("extra_bits (= " + std::to_string(m_problem.extra_bits) + ") must be >= 0");

  std::map<std::string, int> index;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const AllocLayer& l = layers[i];
    if (l.name.empty()) throw std::invalid_argument("layer " + std::to_string(i) + " has an empty name");
    if (!index.emplace(l.name, static_cast<int>(i)).second)
      throw std::invalid_argument("layer name \"" + l.name + "\" appears twice");
    const std::string where = "layer " + l.name + ": ";
    if (l.numel < 1) throw std::invalid_argument(where + "numel (= " + std::to_string(l.numel) + ") must be >= 1");
    if (l.macs < 0) throw std::invalid_argument(where + "macs (= " + std::to_string(l.macs) + ") must be >= 0");
    if (l.overhead_bits < 0)
      throw std::invalid_argument(where + "overhead_bits (= " + std::to_string(l.overhead_bits) + ") must be >= 0");
    if (l.options.empty()) throw std::invalid_argument(where + "no candidate bit widths");
    for (std::size_t a = 0; a < l.options.size(); ++a) {
      try {
        check_bits(l.options[a].bits);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(where + e.what());
      }
      if (l.options[a].act_bits < 0 || l.options[a].act_bits > 32)
        throw std::invalid_argument(where + "activation bits (= " + std::to_string(l.options[a].act_bits) +
                                    ") must be 0 (the problem's) or in 1..32");
      if (!std::isfinite(l.options[a].omega))
        throw std::invalid_argument(where + "omega at " + option_text(l.options[a]) + " bits is not finite");
      for (std::size_t b = 0; b < a; ++b)
        if (l.options[b].bits == l.options[a].bits && l.options[b].act_bits == l.options[a].act_bits)
          throw std::invalid_argument(where + option_text(l.options[a]) + " bits is listed twice");
    }
    m_numel += l.numel;
    m_overhead += l.overhead_bits;
  }
  m_overhead += m_problem.extra_bits;
  if (!m_problem.chain.empty()) {
    if (!m_problem.shared.empty())
      throw std::invalid_argument("inter-layer terms cannot be combined with shared groups");
    if (m_problem.chain.size() + 1 != layers.size())
      throw std::invalid_argument("inter-layer terms: " + std::to_string(m_problem.chain.size()) + " matrices for " +
                                  std::to_string(layers.size()) + " layers (expected one per adjacent pair)");
    for (std::size_t i = 0; i + 1 < layers.size(); ++i) {
      const auto& c = m_problem.chain[i];
      bool ok = c.size() == layers[i].options.size();
      for (const auto& row : c) {
        ok = ok && row.size() == layers[i + 1].options.size();
        for (double x : row) ok = ok && std::isfinite(x);
      }
      if (!ok)
        throw std::invalid_argument("inter-layer terms of layers " + layers[i].name + " and " + layers[i + 1].name +
                                    " must be a finite " + std::to_string(layers[i].options.size()) + " x " +
                                    std::to_string(layers[i + 1].options.size()) + " matrix");
    }
  }

  auto lookup = [&](const std::string& name, const char* what) {
    auto it = index.find(name);
    if (it == index.end()) throw std::invalid_argument(std::string(what) + " names unknown layer \"" + name + "\"");
    return it->second;
  };
  std::vector<int> group_of(layers.size(), -1);
  for (std::size_t g = 0; g < m_problem.shared.size(); ++g) {
    if (m_problem.shared[g].empty()) throw std::invalid_argument("shared group " + std::to_string(g) + " is empty");
    for (const std::string& name : m_problem.shared[g]) {
      const int i = lookup(name, "a shared group");
      if (group_of[i] >= 0)
        throw std::invalid_argument("layer \"" + name + "\" is listed in more than one shared group (or twice)");
      group_of[i] = static_cast<int>(g);
    }
  }
  for (const auto& [name, bits] : m_problem.pinned) {
    const int i = lookup(name, "a pin");
    if (!find_option(layers[i], bits))
      throw std::invalid_argument("layer " + name + " is pinned to " + std::to_string(bits) +
                                  " bits, which is not among its candidates (" + bits_list(layers[i].options) + ")");
  }

  // Items in order of their first layer; a shared group becomes one item.
  std::vector<char> done(layers.size(), 0);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (done[i]) continue;
    Item item;
    for (std::size_t j = i; j < layers.size(); ++j)
      if (j == i || (group_of[i] >= 0 && group_of[j] == group_of[i])) {
        item.members.push_back(static_cast<int>(j));
        done[j] = 1;
      }
    // Allowed options: (weight, activation) pairs common to all members, restricted by pins on
    // the weight width (which must agree).
    const AllocLayer& first = layers[item.members.front()];
    std::vector<std::pair<int, int>> allowed;
    for (const BitOption& o : first.options) {
      bool common = true;
      for (int m : item.members) common = common && find_option(layers[m], o.bits, o.act_bits);
      if (common) allowed.push_back({o.bits, o.act_bits});
    }
    std::sort(allowed.begin(), allowed.end());
    int pin = 0;
    std::string pin_layer;
    for (int m : item.members) {
      auto it = m_problem.pinned.find(layers[m].name);
      if (it == m_problem.pinned.end()) continue;
      if (pin && it->second != pin)
        throw std::invalid_argument("layers " + pin_layer + " (" + std::to_string(pin) + " bits) and " +
                                    layers[m].name + " (" + std::to_string(it->second) +
                                    " bits) share a bit width but are pinned differently");
      pin = it->second;
      pin_layer = layers[m].name;
    }
    if (pin) {
      std::erase_if(allowed, [&](const std::pair<int, int>& o) { return o.first != pin; });
      if (allowed.empty())
        throw std::invalid_argument("layer " + pin_layer + " is pinned to " + std::to_string(pin) +
                                    " bits, which not every layer of its shared group offers");
    }
    if (allowed.empty()) {
      std::string names;
      for (int m : item.members) names += (names.empty() ? "" : ", ") + layers[m].name;
      throw std::invalid_argument("shared group (" + names + ") has no common candidate bit width");
    }
    for (const auto& [b, act] : allowed) {
      std::int64_t size = 0, bops = 0;
      double omega = 0.0;
      const int a = act ? act : m_problem.act_bits;
      for (int m : item.members) {
        size += layers[m].numel * b;
        bops += layers[m].macs * b * a;
        omega += find_option(layers[m], b, act)->omega;
      }
      item.bits.push_back(b);
      item.act.push_back(act);
      item.size_cost.push_back(size);
      item.bops_cost.push_back(bops);
      item.omega.push_back(omega);
    }
    m_items.push_back(std::move(item));
  }
}

std::vector<int> BitAllocator::bits_of(const std::vector<int>& item_choice) const {
  std::vector<int> bits(m_problem.layers.size(), 0);
  for (std::size_t k = 0; k < m_items.size(); ++k)
    for (int m : m_items[k].members) bits[m] = m_items[k].bits[item_choice[k]];
  return bits;
}

std::vector<int> BitAllocator::act_of(const std::vector<int>& item_choice) const {
  std::vector<int> act(m_problem.layers.size(), 0);
  for (std::size_t k = 0; k < m_items.size(); ++k)
    for (int m : m_items[k].members) act[m] = m_items[k].act[item_choice[k]];
  return act;
}

Allocation BitAllocator::evaluate_choice(const std::vector<int>& item_choice) const {
  return evaluate(bits_of(item_choice), act_of(item_choice));
}

std::vector<std::vector<std::vector<double>>> BitAllocator::chain_terms() const {
  // Without shared groups items are the layers in order; map item choices to layer options.
  std::vector<std::vector<std::vector<double>>> pair;
  const auto& layers = m_problem.layers;
  for (std::size_t i = 0; i + 1 < m_items.size(); ++i) {
    const Item &a = m_items[i], &b = m_items[i + 1];
    std::vector<std::vector<double>> t(a.bits.size(), std::vector<double>(b.bits.size()));
    for (std::size_t x = 0; x < a.bits.size(); ++x)
      for (std::size_t y = 0; y < b.bits.size(); ++y)
        t[x][y] = m_problem.chain[i][option_index(layers[i], a.bits[x], a.act[x])]
                                    [option_index(layers[i + 1], b.bits[y], b.act[y])];
    pair.push_back(std::move(t));
  }
  return pair;
}

Allocation BitAllocator::evaluate(std::span<const int> bits, std::span<const int> act_bits) const {
  const std::vector<AllocLayer>& layers = m_problem.layers;
  if (bits.size() != layers.size())
    throw std::invalid_argument("expected " + std::to_string(layers.size()) + " bit widths, got " +
                                std::to_string(bits.size()));
  if (!act_bits.empty() && act_bits.size() != layers.size())
    throw std::invalid_argument("expected " + std::to_string(layers.size()) + " activation bit widths, got " +
                                std::to_string(act_bits.size()));
  Allocation a;
  a.bits.assign(bits.begin(), bits.end());
  a.method = "given";
  std::vector<int> chosen(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const BitOption* o = find_option(layers[i], bits[i], act_bits.empty() ? -1 : act_bits[i]);
    if (!o)
      throw std::invalid_argument("layer " + layers[i].name + ": " + std::to_string(bits[i]) +
                                  (act_bits.empty() ? "" : "/" + std::to_string(act_bits[i])) +
                                  " bits is not among its candidates (" + bits_list(layers[i].options) + ")");
    auto pin = m_problem.pinned.find(layers[i].name);
    if (pin != m_problem.pinned.end() && pin->second != bits[i])
      throw std::invalid_argument("layer " + layers[i].name + " is pinned to " + std::to_string(pin->second) +
                                  " bits, got " + std::to_string(bits[i]));
    chosen[i] = static_cast<int>(o - layers[i].options.data());
    const int act = o->act_bits ? o->act_bits : m_problem.act_bits;
    a.act_bits.push_back(act);
    a.omega += o->omega;
    a.weight_bits += layers[i].numel * bits[i];
    a.bops += layers[i].macs * bits[i] * act;
  }
  for (std::size_t i = 0; i < m_problem.chain.size(); ++i)
    a.chain_omega += m_problem.chain[i][chosen[i]][chosen[i + 1]];
  a.omega += a.chain_omega;
  for (const Item& item : m_items)
    for (int m : item.members)
      if (bits[m] != bits[item.members.front()] || a.act_bits[m] != a.act_bits[item.members.front()])
        throw std::invalid_argument("layers " + layers[item.members.front()].name + " (" +
                                    std::to_string(bits[item.members.front()]) + " bits) and " + layers[m].name + " (" +
                                    std::to_string(bits[m]) + " bits) must share a bit width");
  a.size_bits = a.weight_bits + m_overhead;
  a.avg_bits = static_cast<double>(a.weight_bits) / static_cast<double>(m_numel);
  return a;
}

double BitAllocator::smallest_feasible(BudgetKind kind) const {
  std::int64_t size = 0, bops = 0;
  for (const Item& item : m_items) {
    size += *std::min_element(item.size_cost.begin(), item.size_cost.end());
    bops += *std::min_element(item.bops_cost.begin(), item.bops_cost.end());
  }
  switch (kind) {
    case BudgetKind::AvgBits:
      return static_cast<double>(size) / static_cast<double>(m_numel);
    case BudgetKind::SizeKB:
      return static_cast<double>(size + m_overhead) / kBitsPerKB;
    case BudgetKind::GBops:
      return static_cast<double>(bops) / kBopsPerG;
  }
  return 0.0;
}

Allocation BitAllocator::solve(const Budget& budget) const {
  if (!std::isfinite(budget.value) || budget.value <= 0.0)
    throw std::invalid_argument("budget (= " + budget_text(budget.kind, number(budget.value, 10)) +
                                ") must be positive and finite");
  const CostKind ck = budget.kind == BudgetKind::GBops ? CostKind::Bops : CostKind::Size;
  double units = budget.value;
  if (budget.kind == BudgetKind::AvgBits) units *= static_cast<double>(m_numel);
  if (budget.kind == BudgetKind::SizeKB) units *= kBitsPerKB;
  if (budget.kind == BudgetKind::GBops) units *= kBopsPerG;
  constexpr double kMaxCapacity = 4e18;
  std::int64_t capacity = static_cast<std::int64_t>(std::min(std::floor(units * (1.0 + kBudgetRelTol)), kMaxCapacity));
  if (budget.kind == BudgetKind::SizeKB) capacity -= m_overhead;

  std::vector<internal::MckpItem> items;
  std::int64_t min_cost = 0;
  for (const Item& item : m_items) {
    internal::MckpItem mi;
    for (std::size_t c = 0; c < item.bits.size(); ++c)
      mi.push_back({ck == CostKind::Size ? item.size_cost[c] : item.bops_cost[c], item.omega[c]});
    std::int64_t m = mi[0].cost;
    for (const internal::MckpChoice& c : mi) m = std::min(m, c.cost);
    min_cost += m;
    items.push_back(std::move(mi));
  }
  if (min_cost > capacity) {
    const double smallest = round_up_6(smallest_feasible(budget.kind));
    throw InfeasibleBudget("infeasible budget: " + budget_text(budget.kind, number(budget.value, 10)) +
                               " is below the smallest feasible budget, " + budget_text(budget.kind, number(smallest, 6)) +
                               " (every layer at its fewest allowed bits)",
                           Budget{budget.kind, smallest});
  }

  if (!m_problem.chain.empty()) {
    internal::ChainDp dp;
    if (!dp.run(items, chain_terms(), capacity, m_options.max_states))
      throw std::runtime_error("the inter-layer dynamic program needs more than max_states (= " +
                               std::to_string(m_options.max_states) + ") states");
    Allocation a = evaluate_choice(dp.choices(dp.size() - 1));
    a.method = "chain-dp";
    a.work = dp.states();
    return a;
  }
  if (m_options.method != AllocMethod::BranchAndBound) {
    internal::ParetoDp dp;
    if (dp.run(items, capacity, m_options.max_states)) {
      Allocation a = evaluate_choice(dp.choices(dp.size() - 1));  // cheapest point is first; best is last
      a.method = "pareto-dp";
      a.work = dp.states();
      return a;
    }
    if (m_options.method == AllocMethod::ParetoDp)
      throw std::runtime_error("Pareto DP needs more than max_states (= " + std::to_string(m_options.max_states) +
                               ") states; use branch and bound");
  }
  const internal::BnbResult r = internal::branch_and_bound(items, capacity, m_options.max_nodes);
  Allocation a = evaluate_choice(r.choice);
  a.method = "branch-and-bound";
  a.work = r.nodes;
  a.status = r.proven ? AllocStatus::Optimal : AllocStatus::NodeLimit;
  return a;
}

ParetoFrontier BitAllocator::pareto_frontier(CostKind cost) const {
  std::vector<internal::MckpItem> items;
  for (const Item& item : m_items) {
    internal::MckpItem mi;
    for (std::size_t c = 0; c < item.bits.size(); ++c)
      mi.push_back({cost == CostKind::Size ? item.size_cost[c] : item.bops_cost[c], item.omega[c]});
    items.push_back(std::move(mi));
  }
  ParetoFrontier f;
  f.cost = cost;
  // Re-evaluated omegas are summed in layer order; a point that no longer improves on the previous
  // one (a tie at rounding level) is dropped so the frontier stays strictly monotone.
  auto push = [&](Allocation a) {
    if (!f.points.empty() && !(a.omega < f.points.back().omega)) return;
    f.points.push_back(std::move(a));
  };
  if (!m_problem.chain.empty()) {
    internal::ChainDp dp;
    if (!dp.run(items, chain_terms(), std::numeric_limits<std::int64_t>::max() / 2, m_options.max_states))
      throw std::runtime_error("the inter-layer dynamic program needs more than max_states (= " +
                               std::to_string(m_options.max_states) + ") states");
    for (std::size_t k = 0; k < dp.size(); ++k) {
      Allocation a = evaluate_choice(dp.choices(k));
      a.method = "chain-dp";
      a.work = dp.states();
      push(std::move(a));
    }
    return f;
  }
  if (m_options.method != AllocMethod::BranchAndBound) {
    internal::ParetoDp dp;
    if (dp.run(items, std::numeric_limits<std::int64_t>::max() / 2, m_options.max_states)) {
      for (std::size_t k = 0; k < dp.size(); ++k) {
        Allocation a = evaluate_choice(dp.choices(k));
        a.method = "pareto-dp";
        a.work = dp.states();
        push(std::move(a));
      }
      return f;
    }
  }
  f.exact = false;
  for (const internal::MckpPoint& p : internal::hull_frontier(items)) {
    Allocation a = evaluate_choice(p.choice);
    a.method = "lagrangian-hull";
    push(std::move(a));
  }
  return f;
}

}  // namespace curv::quant
