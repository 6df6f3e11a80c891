#pragma once
/// \file mckp.h
/// Exact solvers for the multiple-choice knapsack behind bit allocation (private to quant/).
///
///   minimize  sum_i omega_i(c_i)   over one choice c_i per item i
///   subject to sum_i cost_i(c_i) <= capacity              (integer costs, real omegas of any sign)
///
/// - ParetoDp: dynamic programming over items that keeps, after each item, only the non-dominated
///   (cost, omega) partial sums (Nemhauser-Ullmann). The list after the last item is exactly the
///   Pareto frontier; the optimum for a capacity C is its last point with cost <= C. The number of
///   states is at most the number of distinct partial costs (so it never exceeds a DP over
///   capacity / gcd of the costs) and usually far fewer. Back-pointers cost 5 bytes per state.
/// - branch_and_bound: depth-first search, children in order of their bound, pruned with the LP
///   relaxation of the remaining items (greedy over the lower convex hulls of each item's choices,
///   Sinha-Zoltners), which is a valid lower bound; the result is optimal when the search finishes.
/// - hull_frontier: the supported non-dominated points (vertices of the lower convex hull of all
///   achievable (cost, omega) pairs), from the greedy increment order, i.e. a Lagrangian sweep.
#include <cstdint>
#include <optional>
#include <vector>

namespace curv::quant::internal {

struct MckpChoice {
  std::int64_t cost = 0;
  double omega = 0.0;
};
using MckpItem = std::vector<MckpChoice>;  // one item's choices; REQUIRES: 1..255 choices

struct MckpPoint {
  std::int64_t cost = 0;
  double omega = 0.0;
  std::vector<int> choice;  // [items] index into each item's choices
};

class ParetoDp {
 public:
  /// Builds the frontier restricted to cost <= capacity (points that cannot be completed within
  /// capacity are dropped early). Returns false, leaving the object empty, as soon as more than
  /// max_states states would be kept in total.
  bool run(const std::vector<MckpItem>& items, std::int64_t capacity, std::int64_t max_states);

  std::size_t size() const { return m_cost.size(); }
  std::int64_t cost(std::size_t k) const { return m_cost[k]; }
  double omega(std::size_t k) const { return m_omega[k]; }
  /// The choices of frontier point k (back-pointer walk).
  std::vector<int> choices(std::size_t k) const;
  std::int64_t states() const { return m_states; }

 private:
  std::vector<std::vector<std::uint32_t>> m_parent;  // [item][state] index into the previous list
  std::vector<std::vector<std::uint8_t>> m_choice;   // [item][state]
  std::vector<std::int64_t> m_cost;                  // final frontier, cost ascending
  std::vector<double> m_omega;                       // final frontier, strictly descending
  std::int64_t m_states = 0;
};

struct BnbResult {
  bool found = false;   // a feasible solution exists
  bool proven = false;  // the search finished: the solution is optimal
  std::vector<int> choice;
  std::int64_t cost = 0;
  double omega = 0.0;
  std::int64_t nodes = 0;
};

/// Exact optimum for one capacity; stops after max_nodes nodes (then proven = false).
BnbResult branch_and_bound(const std::vector<MckpItem>& items, std::int64_t capacity, std::int64_t max_nodes);

/// Supported Pareto points, cost ascending and omega strictly descending.
std::vector<MckpPoint> hull_frontier(const std::vector<MckpItem>& items);

}  // namespace curv::quant::internal
