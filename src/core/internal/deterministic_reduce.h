#pragma once
// The deterministic sum over micro-batches behind every Objective result (internal).
//
// The chunks [0, n) are cut into at most kReduceLeaves runs of consecutive chunks (a partition that
// depends only on n); leaf(i, acc) adds chunk i into its run's accumulator in chunk order (acc starts
// value-initialized, i.e. empty), and add(x, y) (x += y, either may be empty) combines the runs along
// a fixed binary tree (tbb::parallel_deterministic_reduce with a simple partitioner). So the result
// does not depend on the thread count, and a block product allocates one P x k accumulator per run
// instead of one per chunk (per-chunk accumulators made a 16-direction MLP block pass twice as slow
// as 16 single products).
#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <cstdint>
#include <utility>

namespace curv::internal {

constexpr std::int64_t kReduceLeaves = 32;

/// R: the accumulator (default-constructible, "empty" until its first leaf); Leaf: void(i, R&);
/// Add: void(R& x, R& y) with x += y.
template <class R, class Leaf, class Add>
R deterministic_reduce(std::int64_t n, const Leaf& leaf, const Add& add) {
  struct Body {
    const Leaf& leaf;
    const Add& add;
    R acc{};
    Body(const Leaf& l, const Add& a) : leaf(l), add(a) {}
    Body(Body& b, tbb::split) : leaf(b.leaf), add(b.add) {}
    void operator()(const tbb::blocked_range<std::int64_t>& r) {
      for (std::int64_t i = r.begin(); i < r.end(); ++i) leaf(i, acc);
    }
    void join(Body& rhs) { add(acc, rhs.acc); }
  };
  Body body(leaf, add);
  if (n <= 0) return std::move(body.acc);
  const std::int64_t grain = (n + kReduceLeaves - 1) / kReduceLeaves;
  tbb::parallel_deterministic_reduce(tbb::blocked_range<std::int64_t>(0, n, grain), body, tbb::simple_partitioner());
  return std::move(body.acc);
}

/// x += y for run accumulators (Eigen vectors and matrices) that start empty (size 0) until their
/// first chunk.
template <class M>
void add_run(M& x, M& y) {
  if (x.size() == 0)
    x = std::move(y);
  else if (y.size() != 0)
    x += y;
}

}  // namespace curv::internal
