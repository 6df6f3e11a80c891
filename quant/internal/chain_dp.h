#pragma once
/// \file chain_dp.h
/// Exact Pareto dynamic program for the multiple-choice knapsack with pairwise terms between
/// consecutive items (private to quant/):
///
///   minimize  sum_i omega_i(c_i) + sum_i pair_i(c_i, c_{i+1})   over one choice c_i per item
///   subject to sum_i cost_i(c_i) <= capacity
///
/// The inter-layer terms dW_i^T H_{i,i+1} dW_{i+1} of adjacent layers form such a chain. The DP
/// keeps, after item i, one list per choice c of item i: the non-dominated (cost, omega) partial
/// sums of items 0..i that end in c. The next item's list for c' merges the lists of every c
/// shifted by (cost(c'), omega(c') + pair_i(c, c')); merging only non-dominated lists is exact
/// because the pair term depends on the partial solution through c alone. After the last item the
/// lists merge into the Pareto frontier; the optimum for a capacity is its last point within it.
/// States are at most (choices per item) x (distinct partial costs).
#include <cstdint>
#include <vector>

#include "quant/internal/mckp.h"

namespace curv::quant::internal {

/// pair[i][a][b]: the term of choice a of item i with choice b of item i + 1 (items.size() - 1 of them).
using ChainTerms = std::vector<std::vector<std::vector<double>>>;

class ChainDp {
 public:
  /// Returns false, leaving the object empty, once more than max_states states would be kept.
  /// REQUIRES: pair.size() + 1 == items.size() (or pair empty), each pair[i] sized to the choices.
  bool run(const std::vector<MckpItem>& items, const ChainTerms& pair, std::int64_t capacity, std::int64_t max_states);

  /// The frontier: cost strictly ascending, omega strictly descending.
  std::size_t size() const { return m_cost.size(); }
  std::int64_t cost(std::size_t k) const { return m_cost[k]; }
  double omega(std::size_t k) const { return m_omega[k]; }
  std::vector<int> choices(std::size_t k) const;
  std::int64_t states() const { return m_states; }

 private:
  struct Back {
    std::uint32_t parent;      // index into the previous item's list of choice `prev`
    std::uint8_t prev;         // choice of the previous item
  };
  // m_back[i][c][k]: back-pointer of state k of item i's list for choice c.
  std::vector<std::vector<std::vector<Back>>> m_back;
  std::vector<std::int64_t> m_cost;
  std::vector<double> m_omega;
  std::vector<std::uint8_t> m_end_choice;  // last item's choice of each frontier point
  std::vector<std::uint32_t> m_end_index;  // its index in that choice's list
  std::int64_t m_states = 0;
};

}  // namespace curv::quant::internal
