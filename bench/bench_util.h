// Pieces the C++ benchmarks share: the synthetic batch they time on, and best-of timing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>

#include "src/core/dataset.h"
#include "src/core/timer.h"

namespace curv::bench {

/// n samples of standard-normal inputs of shape `sample` and uniform labels in [0, 10), all drawn
/// from one generator seeded 2 (inputs first, then labels), so every benchmark times the same batch.
inline Dataset synthetic_dataset(const Shape& sample, std::int64_t n) {
  Dataset d;
  d.source = "synthetic";
  d.sample_shape = sample;
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd;
  d.x.resize(n * numel(sample));
  for (auto& v : d.x) v = nd(rng);
  for (std::int64_t i = 0; i < n; ++i) d.labels.push_back(static_cast<std::int64_t>(rng() % 10));
  return d;
}

/// The shortest wall time of `reps` calls of f.
template <class F>
double best_of(int reps, F&& f) {
  double b = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    f();
    b = std::min(b, t.seconds());
  }
  return b;
}

}  // namespace curv::bench
