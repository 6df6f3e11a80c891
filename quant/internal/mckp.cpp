#include "quant/internal/mckp.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>

namespace curv::quant::internal {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// B&B prunes a subtree whose bound is within this fraction of sum_i max_c |omega_i(c)| of the
// incumbent: such a subtree can only tie, up to the rounding of the omega sums themselves.
constexpr double kPruneRelTol = 1e-12;

// One item's choices reduced to what an optimum can use.
struct ItemHull {
  std::vector<int> undominated;  // cost ascending, omega strictly descending (indices into the item)
  std::vector<int> hull;         // lower convex hull of `undominated`, slopes strictly increasing
};

ItemHull analyse(const MckpItem& item) {
  assert(!item.empty() && item.size() < 256 && "an item has 1..255 choices");
  std::vector<int> idx(item.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
    return item[a].cost != item[b].cost ? item[a].cost < item[b].cost : item[a].omega < item[b].omega;
  });
  ItemHull h;
  double best = kInf;
  for (int i : idx) {
    if (item[i].omega < best) {
      h.undominated.push_back(i);
      best = item[i].omega;
    }
  }
  // Keep b only if it lies strictly below the chord a -> p: slope(a, b) < slope(b, p).
  auto below = [&](int a, int b, int p) {
    const long double ca = item[a].cost, cb = item[b].cost, cp = item[p].cost;
    const long double oa = item[a].omega, ob = item[b].omega, op = item[p].omega;
    return (ob - oa) * (cp - cb) < (op - ob) * (cb - ca);
  };
  for (int p : h.undominated) {
    while (h.hull.size() >= 2 && !below(h.hull[h.hull.size() - 2], h.hull.back(), p)) h.hull.pop_back();
    h.hull.push_back(p);
  }
  return h;
}

// One step along an item's hull: vertex t-1 -> t.
struct Increment {
  double slope;  // d_omega / d_cost < 0
  std::int64_t d_cost;
  double d_omega;
  int pos;  // position of the item in the search order
  int t;
};

// All hull increments, most negative slope first (the LP greedy order). Within one item the slopes
// increase strictly, so each item's increments stay in hull order.
std::vector<Increment> increments(const std::vector<MckpItem>& items, const std::vector<ItemHull>& hulls,
                                  const std::vector<int>& order) {
  std::vector<Increment> inc;
  for (int pos = 0; pos < static_cast<int>(order.size()); ++pos) {
    const MckpItem& item = items[order[pos]];
    const std::vector<int>& hv = hulls[order[pos]].hull;
    for (std::size_t t = 1; t < hv.size(); ++t) {
      const std::int64_t dc = item[hv[t]].cost - item[hv[t - 1]].cost;
      const double dw = item[hv[t]].omega - item[hv[t - 1]].omega;
      inc.push_back({dw / static_cast<double>(dc), dc, dw, pos, static_cast<int>(t)});
    }
  }
  std::stable_sort(inc.begin(), inc.end(), [](const Increment& a, const Increment& b) {
    if (a.slope != b.slope) return a.slope < b.slope;
    return a.pos != b.pos ? a.pos < b.pos : a.t < b.t;
  });
  return inc;
}

class BranchAndBound {
 public:
  BranchAndBound(const std::vector<MckpItem>& items, std::int64_t capacity, std::int64_t max_nodes)
      : m_items(items), m_capacity(capacity), m_max_nodes(max_nodes) {
    const std::size_t n = items.size();
    m_hulls.reserve(n);
    for (const MckpItem& item : items) m_hulls.push_back(analyse(item));
    // Branch first on the items whose choice moves the cost most: their bounds tighten fastest.
    m_order.resize(n);
    std::iota(m_order.begin(), m_order.end(), 0);
    auto spread = [&](int i) {
      const std::vector<int>& u = m_hulls[i].undominated;
      return items[i][u.back()].cost - items[i][u.front()].cost;
    };
    std::stable_sort(m_order.begin(), m_order.end(), [&](int a, int b) { return spread(a) > spread(b); });
    m_inc = increments(items, m_hulls, m_order);
    m_min_cost.assign(n + 1, 0);
    m_base_omega.assign(n + 1, 0.0);
    double scale = 0.0;
    for (std::size_t p = n; p-- > 0;) {
      const int i = m_order[p];
      const MckpChoice& c0 = items[i][m_hulls[i].hull.front()];
      m_min_cost[p] = m_min_cost[p + 1] + c0.cost;
      m_base_omega[p] = m_base_omega[p + 1] + c0.omega;
      double m = 0.0;
      for (const MckpChoice& c : items[i]) m = std::max(m, std::abs(c.omega));
      scale += m;
    }
    m_delta = kPruneRelTol * scale;
  }

  BnbResult run() {
    BnbResult r;
    if (m_min_cost[0] > m_capacity) return r;
    greedy();
    m_current.assign(m_items.size(), 0);
    dfs(0, m_capacity, 0.0);
    r.found = true;
    r.proven = !m_aborted;
    r.choice = m_best_choice;
    r.omega = m_best;
    r.cost = 0;
    for (std::size_t i = 0; i < m_items.size(); ++i) r.cost += m_items[i][r.choice[i]].cost;
    r.nodes = m_nodes;
    return r;
  }

 private:
  // LP relaxation of the items at positions >= k with capacity R (+inf if infeasible).
  double bound(std::size_t k, std::int64_t R) const {
    std::int64_t rem = R - m_min_cost[k];
    if (rem < 0) return kInf;
    double val = m_base_omega[k];
    for (const Increment& inc : m_inc) {
      if (inc.pos < static_cast<int>(k)) continue;
      if (inc.d_cost <= rem) {
        val += inc.d_omega;
        rem -= inc.d_cost;
      } else {
        val += inc.d_omega * (static_cast<double>(rem) / static_cast<double>(inc.d_cost));
        break;
      }
    }
    return val;
  }

  // Integral part of the LP greedy: a feasible first incumbent.
  void greedy() {
    const std::size_t n = m_items.size();
    std::vector<int> vertex(n, 0);
    std::vector<char> blocked(n, 0);
    std::int64_t rem = m_capacity - m_min_cost[0];
    for (const Increment& inc : m_inc) {
      if (blocked[inc.pos]) continue;
      if (inc.d_cost <= rem) {
        rem -= inc.d_cost;
        vertex[inc.pos] = inc.t;
      } else {
        blocked[inc.pos] = 1;
      }
    }
    m_best_choice.assign(n, 0);
    m_best = 0.0;
    for (std::size_t p = 0; p < n; ++p) {
      const int i = m_order[p];
      m_best_choice[i] = m_hulls[i].hull[vertex[p]];
      m_best += m_items[i][m_best_choice[i]].omega;
    }
  }

  void dfs(std::size_t k, std::int64_t R, double acc) {
    if (++m_nodes > m_max_nodes) {
      m_aborted = true;
      return;
    }
    if (k == m_items.size()) {
      if (acc < m_best) {
        m_best = acc;
        m_best_choice = m_current;
      }
      return;
    }
    const int i = m_order[k];
    struct Child {
      double bound;
      int choice;
    };
    std::vector<Child> children;
    for (int u : m_hulls[i].undominated) {
      const MckpChoice& c = m_items[i][u];
      if (c.cost + m_min_cost[k + 1] > R) break;  // undominated is cost ascending
      children.push_back({acc + c.omega + bound(k + 1, R - c.cost), u});
    }
    std::stable_sort(children.begin(), children.end(),
                     [](const Child& a, const Child& b) { return a.bound < b.bound; });
    for (const Child& ch : children) {
      if (ch.bound >= m_best - m_delta) break;  // cannot improve (beyond rounding) on the incumbent
      m_current[i] = ch.choice;
      const MckpChoice& c = m_items[i][ch.choice];
      dfs(k + 1, R - c.cost, acc + c.omega);
      if (m_aborted) return;
    }
  }

  const std::vector<MckpItem>& m_items;
  std::int64_t m_capacity;
  std::int64_t m_max_nodes;
  std::vector<ItemHull> m_hulls;
  std::vector<int> m_order;  // position -> item
  std::vector<Increment> m_inc;
  std::vector<std::int64_t> m_min_cost;  // [pos] sum of the cheapest choices of items at >= pos
  std::vector<double> m_base_omega;      // [pos] their omegas
  double m_delta = 0.0;
  std::vector<int> m_current;
  std::vector<int> m_best_choice;
  double m_best = kInf;
  std::int64_t m_nodes = 0;
  bool m_aborted = false;
};

}  // namespace

bool ParetoDp::run(const std::vector<MckpItem>& items, std::int64_t capacity, std::int64_t max_states) {
  m_parent.clear();
  m_choice.clear();
  m_cost.clear();
  m_omega.clear();
  m_states = 0;
  const std::size_t n = items.size();
  std::vector<std::int64_t> min_rest(n + 1, 0);
  for (std::size_t i = n; i-- > 0;) {
    assert(!items[i].empty() && items[i].size() < 256 && "an item has 1..255 choices");
    std::int64_t m = items[i][0].cost;
    for (const MckpChoice& c : items[i]) m = std::min(m, c.cost);
    min_rest[i] = min_rest[i + 1] + m;
  }
  if (min_rest[0] > capacity) return true;  // nothing fits: empty frontier

  std::vector<std::int64_t> cost{0}, next_cost;
  std::vector<double> omega{0.0}, next_omega;
  for (std::size_t i = 0; i < n; ++i) {
    const MckpItem& item = items[i];
    const std::size_t m = item.size();
    const std::int64_t limit = capacity - min_rest[i + 1];
    std::vector<std::uint32_t> parent;
    std::vector<std::uint8_t> choice;
    next_cost.clear();
    next_omega.clear();
    // m-way merge of the lists cost + c_j (each strictly cost ascending), by (cost, omega, j),
    // keeping a candidate only if it beats every cheaper one: the non-dominated sums.
    std::vector<std::size_t> head(m, 0);
    double best = kInf;
    for (;;) {
      int jbest = -1;
      std::int64_t cbest = 0;
      double wbest = 0.0;
      for (std::size_t j = 0; j < m; ++j) {
        if (head[j] >= cost.size()) continue;
        const std::int64_t c = cost[head[j]] + item[j].cost;
        if (c > limit) continue;
        const double w = omega[head[j]] + item[j].omega;
        if (jbest < 0 || c < cbest || (c == cbest && w < wbest)) {
          jbest = static_cast<int>(j);
          cbest = c;
          wbest = w;
        }
      }
      if (jbest < 0) break;
      if (wbest < best) {
        best = wbest;
        next_cost.push_back(cbest);
        next_omega.push_back(wbest);
        parent.push_back(static_cast<std::uint32_t>(head[jbest]));
        choice.push_back(static_cast<std::uint8_t>(jbest));
        if (m_states + static_cast<std::int64_t>(parent.size()) > max_states) {
          m_parent.clear();
          m_choice.clear();
          m_states = 0;
          return false;
        }
      }
      ++head[jbest];
    }
    m_states += static_cast<std::int64_t>(parent.size());
    m_parent.push_back(std::move(parent));
    m_choice.push_back(std::move(choice));
    cost.swap(next_cost);
    omega.swap(next_omega);
  }
  m_cost = std::move(cost);
  m_omega = std::move(omega);
  return true;
}

std::vector<int> ParetoDp::choices(std::size_t k) const {
  const std::size_t n = m_parent.size();
  std::vector<int> ch(n);
  std::size_t idx = k;
  for (std::size_t i = n; i-- > 0;) {
    ch[i] = m_choice[i][idx];
    idx = m_parent[i][idx];
  }
  return ch;
}

BnbResult branch_and_bound(const std::vector<MckpItem>& items, std::int64_t capacity, std::int64_t max_nodes) {
  return BranchAndBound(items, capacity, max_nodes).run();
}

std::vector<MckpPoint> hull_frontier(const std::vector<MckpItem>& items) {
  const std::size_t n = items.size();
  std::vector<ItemHull> hulls;
  for (const MckpItem& item : items) hulls.push_back(analyse(item));
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  const std::vector<Increment> inc = increments(items, hulls, order);
  MckpPoint p;
  p.choice.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    p.choice[i] = hulls[i].hull.front();
    p.cost += items[i][p.choice[i]].cost;
    p.omega += items[i][p.choice[i]].omega;
  }
  std::vector<MckpPoint> out{p};
  for (const Increment& s : inc) {
    p.choice[s.pos] = hulls[s.pos].hull[s.t];
    p.cost += s.d_cost;
    p.omega += s.d_omega;
    out.push_back(p);
  }
  return out;
}

}  // namespace curv::quant::internal
