#pragma once
// A row's sum in a fixed order, shared by the row kernels (internal): Softmax's sums in the
// model's precision, LayerNorm's and BatchNorm's in double (row_norm.h).
#include <cstdint>

namespace curv::internal {

// sum_{i < M} term(i) in Acc: element i goes to partial sum i mod 16 (the loop vectorizes), then
// the 16 partial sums add as a pairwise tree, l + 8, l + 4, l + 2, l + 1: four dependent adds
// instead of fifteen, which is what a short row (16 features of a small transformer) waits for.
// The order depends only on M, never on threads or on where the row sits.
template <class Acc, class F>
Acc lane_sum(std::int64_t M, F&& term) {
  constexpr int L = 16;
  Acc acc[L] = {};
  std::int64_t i = 0;
  for (; i + L <= M; i += L)
    for (int l = 0; l < L; ++l) acc[l] += Acc(term(i + l));
  for (int l = 0; i < M; ++i, ++l) acc[l] += Acc(term(i));
  for (int w = L / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

}  // namespace curv::internal
