#pragma once
// The deterministic sum over micro-batches behind every Objective result (internal).
//
// The chunks [0, n) are cut into R = run_count(n, max_runs) runs of consecutive chunks (a partition
// that depends only on n and max_runs). Workers take runs in increasing order; a run adds its chunks
// in chunk order into one accumulator, and finished runs are committed into the result in run order
// 0, 1, ..., R-1, one at a time, by whichever worker completes the run that unblocks them:
//
//   result = commit(R-1, ... commit(1, commit(0, acc_0)) ...),   acc_r = chunks of run r, in order.
//
// So every result is one fixed sequence of floating-point operations, whatever the thread count and
// scheduling. Accumulators come from a pool and return to it after their commit; since runs start
// in order and take about equally long, at most about `workers` + 1 exist at once (not R), and a
// worker that would run ahead of the commits by `max_live` runs waits. This is what keeps the
// memory of a P-parameter gradient at a few P-sized buffers instead of one per run.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace curv::internal {

/// Runs of n chunks: min(n, max_runs) (0 when n == 0).
inline std::int64_t run_count(std::int64_t n, std::int64_t max_runs) {
  return std::max<std::int64_t>(0, std::min(n, max_runs));
}

/// First chunk of run r of R over n chunks (runs differ in length by at most one chunk).
inline std::int64_t run_begin(std::int64_t r, std::int64_t R, std::int64_t n) { return r * (n / R) + std::min(r, n % R); }

/// Acc: the accumulator type. make() -> std::unique_ptr<Acc>: a new accumulator; run(r, c0, c1, acc):
/// chunks [c0, c1) of run r into `acc` (which may hold a previous run's values: run resets it);
/// commit(r, acc): called for r = 0, 1, ... in order, never concurrently. `workers` bounds the runs
/// in progress at once (>= 1; memory budget), independently of the thread count.
template <class Acc, class Make, class Run, class Commit>
void ordered_runs(std::int64_t n, std::int64_t max_runs, std::int64_t workers, const Make& make, const Run& run,
                  const Commit& commit) {
  const std::int64_t R = run_count(n, max_runs);
  if (R == 0) return;
  workers = std::clamp<std::int64_t>(workers, 1, R);
  const std::int64_t max_live = workers + 1;  // accumulators: in progress + finished ahead of the commits

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Acc>> pool, done(R);
  std::int64_t next_run = 0, next_commit = 0;
  bool committing = false, failed = false;

  auto take = [&](std::int64_t& r) -> std::unique_ptr<Acc> {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return failed || next_run >= R || next_run < next_commit + max_live; });
    if (failed || next_run >= R) return nullptr;
    r = next_run++;
    if (pool.empty()) return make();
    auto a = std::move(pool.back());
    pool.pop_back();
    return a;
  };
  auto finish = [&](std::int64_t r, std::unique_ptr<Acc> acc) {
    std::unique_lock<std::mutex> lock(mu);
    done[r] = std::move(acc);
    if (committing) return;
    committing = true;
    while (next_commit < R && done[next_commit]) {
      std::unique_ptr<Acc> a = std::move(done[next_commit]);
      const std::int64_t c = next_commit;
      lock.unlock();
      commit(c, *a);
      lock.lock();
      ++next_commit;
      pool.push_back(std::move(a));
      cv.notify_all();
    }
    committing = false;
  };

  tbb::parallel_for(std::int64_t(0), workers, [&](std::int64_t) {
    for (;;) {
      std::int64_t r = -1;
      std::unique_ptr<Acc> acc = take(r);
      if (!acc) return;
      try {
        run(r, run_begin(r, R, n), run_begin(r + 1, R, n), *acc);
      } catch (...) {
        // The run never commits: release the workers that wait for it, then let TBB rethrow.
        std::lock_guard<std::mutex> lock(mu);
        failed = true;
        cv.notify_all();
        throw;
      }
      finish(r, std::move(acc));
    }
  });
}

}  // namespace curv::internal
