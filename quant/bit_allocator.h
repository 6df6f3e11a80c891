#pragma once
/// \file bit_allocator.h
/// Mixed-precision bit allocation as an exact multiple-choice knapsack (HAWQ-V2 style).
///
/// Layer i (n_i weights, MACs_i multiply-accumulates per sample) takes one option from its
/// candidates: a weight bit width b_i and, when activations are quantized, an activation width a_i
/// (0: the problem's act_bits), each option with a predicted loss increase Omega_i(b, a) (see
/// sensitivity.h). Accounting (the one size model of curv, docs/quant-plan.md):
///   weight bits  W(b)   = sum_i n_i b_i
///   size         S(b)   = W(b) + sum_i overhead_i + extra_bits        (bits; KB = S / 8192)
///   average bits A(b)   = W(b) / sum_i n_i      (quantized weights only, no scales or float parts)
///   BOPs         B(b)   = sum_i MACs_i * b_i * a_i
/// overhead_i is the bit-independent scale/zero-point storage (`scale_overhead_bits`), extra_bits
/// any storage kept unquantized (biases, norms). The problem is
///   minimize sum_i Omega_i(b_i)  subject to  budget  (A <= avg_bits | S <= 8192 size_kb | B <= 1e9 gbops)
/// with optional constraints: named layers share one option (merged into one super-item whose
/// choices are the common candidates, costs and Omegas summed), and pinned layers (one allowed
/// weight width). A uniform B-bit assignment has A = B exactly, so it is always feasible under
/// --avg-bits B. Budgets compare with a relative slack of 1e-9 so that a value printed to 6+ digits
/// is reachable.
///
/// Inter-layer terms (optional, `chain`): Omega gains sum_i C_i(o_i, o_{i+1}) over consecutive layers,
/// e.g. dW_i^T H_{i,i+1} dW_{i+1}; the problem stays an exact dynamic program over the chain
/// (quant/internal/chain_dp.h). Chains exclude shared groups and need the DP (no branch and bound).
///
/// Solvers (quant/internal/mckp.h), all exact, no external solver:
///   - Pareto DP: non-dominated partial sums item by item; yields the whole Pareto frontier and the
///     optimum for any budget (the frontier's last point within budget). Used while it keeps at most
///     `max_states` states.
///   - Branch and bound with LP-relaxation bounds: optimal for one budget when it finishes within
///     `max_nodes` nodes (status Optimal), else the best plan found (status NodeLimit).
///   - Frontier fallback when the DP is too large: the supported Pareto points (lower convex hull,
///     Lagrangian sweep); ParetoFrontier::exact is then false.
/// Omega ties are broken deterministically; B&B is optimal up to 1e-12 * sum_i max_b |Omega_i(b)|.
#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace curv::quant {

/// One candidate of a layer: weight bits, activation bits (0: the problem's act_bits) and its
/// predicted loss increase.
struct BitOption {
  int bits = 8;
  double omega = 0.0;
  int act_bits = 0;
};

struct AllocLayer {
  std::string name;
  std::int64_t numel = 0;          // weights quantized (>= 1)
  std::int64_t macs = 0;           // multiply-accumulates per sample (>= 0), for BOPs
  std::int64_t overhead_bits = 0;  // scales / zero points, independent of the bit width
  std::vector<BitOption> options;  // distinct (bits in 2..8, act_bits 0 or 1..32) pairs, finite omegas
};

struct AllocProblem {
  std::vector<AllocLayer> layers;
  std::vector<std::vector<std::string>> shared;  // groups of layer names that take one bit width
  std::map<std::string, int> pinned;             // layer name -> its only allowed bit width
  int act_bits = 8;                              // activation bits in BOPs (1..32)
  std::int64_t extra_bits = 0;                   // unquantized storage counted in the size
  /// Inter-layer terms, empty or layers.size() - 1 matrices: chain[i][a][b] is added to Omega when
  /// layer i takes its option a and layer i + 1 its option b (indices into `options`).
  std::vector<std::vector<std::vector<double>>> chain;
};

enum class BudgetKind { AvgBits, SizeKB, GBops };
struct Budget {
  BudgetKind kind = BudgetKind::AvgBits;
  double value = 0.0;  // average bits | KB (1024 bytes) | 1e9 bit-operations
};
enum class CostKind { Size, Bops };  // the cost axis of a frontier
enum class AllocMethod { Auto, ParetoDp, BranchAndBound };
enum class AllocStatus { Optimal, NodeLimit };

struct AllocatorOptions {
  AllocMethod method = AllocMethod::Auto;  // Auto: Pareto DP, B&B if the DP exceeds max_states
  std::int64_t max_states = 8'000'000;     // DP states (about 5 bytes kept + 32 bytes transient each)
  std::int64_t max_nodes = 200'000'000;    // B&B nodes before returning NodeLimit
};

/// A bit assignment with its totals.
struct Allocation {
  std::vector<int> bits;         // [layers], problem order
  std::vector<int> act_bits;     // [layers], activation bits of the chosen options (act_bits if 0)
  double omega = 0.0;            // predicted loss increase, sum_i Omega_i(b_i) (+ chain terms)
  double chain_omega = 0.0;      // of which inter-layer terms
  std::int64_t weight_bits = 0;  // sum_i n_i b_i
  std::int64_t size_bits = 0;    // weight_bits + overheads + extra_bits
  double avg_bits = 0.0;         // weight_bits / sum_i n_i
  std::int64_t bops = 0;         // sum_i MACs_i b_i act_bits
  AllocStatus status = AllocStatus::Optimal;
  std::string method;     // "pareto-dp" | "chain-dp" | "branch-and-bound" | "lagrangian-hull" | "given"
  std::int64_t work = 0;  // DP states or B&B nodes
  double size_kb() const { return static_cast<double>(size_bits) / 8192.0; }
};

/// Non-dominated plans: cost strictly increasing, omega strictly decreasing.
struct ParetoFrontier {
  CostKind cost = CostKind::Size;
  bool exact = true;  // false: supported points only (convex hull)
  std::vector<Allocation> points;
};

/// Thrown by solve() for a budget below every plan; names the smallest feasible budget.
class InfeasibleBudget : public std::invalid_argument {
 public:
  InfeasibleBudget(const std::string& what, Budget smallest) : std::invalid_argument(what), m_smallest(smallest) {}
  Budget smallest_feasible() const { return m_smallest; }

 private:
  Budget m_smallest;
};

class BitAllocator {
 public:
  /// Validates and merges the constraints. std::invalid_argument for: no layers, duplicate or empty
  /// names, numel < 1, macs < 0, bits outside 2..8 or repeated, non-finite omega, an unknown name in
  /// `shared` or `pinned`, a layer in two shared groups, pinned bits not among the layer's options,
  /// conflicting pins in one group, a group without a common bit width.
  explicit BitAllocator(AllocProblem problem, AllocatorOptions options = {});

  /// Exact minimum of total Omega within the budget. InfeasibleBudget if no plan fits;
  /// std::invalid_argument for a non-finite or non-positive budget.
  Allocation solve(const Budget& budget) const;

  /// All non-dominated (cost, Omega) plans (exact unless the DP exceeds max_states).
  ParetoFrontier pareto_frontier(CostKind cost = CostKind::Size) const;

  /// Totals of a given assignment; std::invalid_argument if it breaks a constraint. `act_bits`
  /// (empty: the first option of each layer with those weight bits) picks among options that share
  /// a weight width by their BitOption::act_bits (0 for options without activation widths).
  Allocation evaluate(std::span<const int> bits, std::span<const int> act_bits = {}) const;

  /// The smallest budget of this kind that some plan meets (every item at its cheapest choice).
  double smallest_feasible(BudgetKind kind) const;

  const AllocProblem& problem() const { return m_problem; }

 private:
  struct Item {                           // a layer, or a shared group merged into one
    std::vector<int> members;             // layer indices
    std::vector<int> bits;                // [choice] weight width
    std::vector<int> act;                 // [choice] activation width (0: act_bits)
    std::vector<std::int64_t> size_cost;  // [choice] sum n_i b
    std::vector<std::int64_t> bops_cost;  // [choice] sum MACs_i b a
    std::vector<double> omega;            // [choice]
  };
  std::vector<int> bits_of(const std::vector<int>& item_choice) const;
  std::vector<int> act_of(const std::vector<int>& item_choice) const;
  Allocation evaluate_choice(const std::vector<int>& item_choice) const;
  std::vector<std::vector<std::vector<double>>> chain_terms() const;  // [item][choice][choice]

  AllocProblem m_problem;
  AllocatorOptions m_options;
  std::vector<Item> m_items;
  std::int64_t m_numel = 0;     // sum n_i
  std::int64_t m_overhead = 0;  // sum overhead_i + extra_bits
};

/// "avg-bits" | "size-kb" | "bops" (the CLI flag names), and back.
std::string to_string(BudgetKind kind);
BudgetKind budget_kind_from_string(const std::string& s);

}  // namespace curv::quant
