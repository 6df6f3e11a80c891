#include "quant/internal/chain_dp.h"

#include <cassert>
#include <limits>

namespace curv::quant::internal {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct List {
  std::vector<std::int64_t> cost;
  std::vector<double> omega;
};

// Source s of a merge: list `l` shifted by (dc, dw).
struct Source {
  const List* l;
  std::int64_t dc;
  double dw;
};

// Non-dominated merge of the shifted lists (each cost ascending), by (cost, omega, source), keeping
// a point only if it beats every cheaper one; `take(s, k)` records the kept point's origin.
template <class Take>
List merge(const std::vector<Source>& src, std::int64_t limit, Take take) {
  List out;
  std::vector<std::size_t> head(src.size(), 0);
  double best = kInf;
  for (;;) {
    int sb = -1;
    std::int64_t cb = 0;
    double wb = 0.0;
    for (std::size_t s = 0; s < src.size(); ++s) {
      if (head[s] >= src[s].l->cost.size()) continue;
      const std::int64_t c = src[s].l->cost[head[s]] + src[s].dc;
      if (c > limit) continue;
      const double w = src[s].l->omega[head[s]] + src[s].dw;
      if (sb < 0 || c < cb || (c == cb && w < wb)) sb = static_cast<int>(s), cb = c, wb = w;
    }
    if (sb < 0) break;
    if (wb < best) {
      best = wb;
      out.cost.push_back(cb);
      out.omega.push_back(wb);
      take(sb, head[sb]);
    }
    ++head[sb];
  }
  return out;
}

}  // namespace

bool ChainDp::run(const std::vector<MckpItem>& items, const ChainTerms& pair, std::int64_t capacity,
                  std::int64_t max_states) {
  m_back.clear();
  m_cost.clear();
  m_omega.clear();
  m_end_choice.clear();
  m_end_index.clear();
  m_states = 0;
  const std::size_t n = items.size();
  assert((pair.empty() || pair.size() + 1 == n) && "one pair matrix per consecutive pair of items");
  std::vector<std::int64_t> min_rest(n + 1, 0);
  for (std::size_t i = n; i-- > 0;) {
    assert(!items[i].empty() && items[i].size() < 256 && "an item has 1..255 choices");
    std::int64_t m = items[i][0].cost;
    for (const MckpChoice& c : items[i]) m = std::min(m, c.cost);
    min_rest[i] = min_rest[i + 1] + m;
  }
  if (n == 0 || min_rest[0] > capacity) return true;

  const List origin{{0}, {0.0}};
  std::vector<List> lists;  // per choice of the current item
  for (std::size_t i = 0; i < n; ++i) {
    const MckpItem& item = items[i];
    const std::int64_t limit = capacity - min_rest[i + 1];
    std::vector<List> next(item.size());
    std::vector<std::vector<Back>> back(item.size());
    for (std::size_t c = 0; c < item.size(); ++c) {
      std::vector<Source> src;
      if (i == 0) {
        src.push_back({&origin, item[c].cost, item[c].omega});
      } else {
        for (std::size_t p = 0; p < lists.size(); ++p)
          src.push_back({&lists[p], item[c].cost, item[c].omega + (pair.empty() ? 0.0 : pair[i - 1][p][c])});
      }
      next[c] = merge(src, limit, [&](int s, std::size_t k) {
        back[c].push_back({static_cast<std::uint32_t>(k), static_cast<std::uint8_t>(i == 0 ? 0 : s)});
      });
      m_states += static_cast<std::int64_t>(back[c].size());
      if (m_states > max_states) {
        m_back.clear();
        m_states = 0;
        return false;
      }
    }
    m_back.push_back(std::move(back));
    lists.swap(next);
  }
  std::vector<Source> src;
  for (const List& l : lists) src.push_back({&l, 0, 0.0});
  const List front = merge(src, capacity, [&](int s, std::size_t k) {
    m_end_choice.push_back(static_cast<std::uint8_t>(s));
    m_end_index.push_back(static_cast<std::uint32_t>(k));
  });
  m_cost = front.cost;
  m_omega = front.omega;
  return true;
}

std::vector<int> ChainDp::choices(std::size_t k) const {
  const std::size_t n = m_back.size();
  std::vector<int> ch(n);
  int c = m_end_choice[k];
  std::uint32_t idx = m_end_index[k];
  for (std::size_t i = n; i-- > 0;) {
    ch[i] = c;
    const Back b = m_back[i][c][idx];
    c = b.prev;
    idx = b.parent;
  }
  return ch;
}

}  // namespace curv::quant::internal
