#pragma once
// A row's sum in a fixed order, shared by the row kernels (internal): Softmax's sums in the
// model's precision, LayerNorm's and BatchNorm's in double (row_norm.h).
#include <array>
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

// N sums over one row in one pass: terms(i, v) writes the N terms of element i into v[0..N). Each
// sum gets exactly the operations lane_sum gives it alone (same partial sums, same tree), so
// fusing sums into one loop never changes their bits; it only reads the row once.
template <class Acc, int N, class F>
std::array<Acc, N> lane_sums(std::int64_t M, F&& terms) {
  constexpr int L = 16;
  Acc acc[N][L] = {};
  Acc v[N];
  std::int64_t i = 0;
  for (; i + L <= M; i += L)
    for (int l = 0; l < L; ++l) {
      terms(i + l, v);
      for (int n = 0; n < N; ++n) acc[n][l] += v[n];
    }
  for (int l = 0; i < M; ++i, ++l) {
    terms(i, v);
    for (int n = 0; n < N; ++n) acc[n][l] += v[n];
  }
  std::array<Acc, N> r;
  for (int n = 0; n < N; ++n) {
    for (int w = L / 2; w > 0; w /= 2)
      for (int l = 0; l < w; ++l) acc[n][l] += acc[n][l + w];
    r[n] = acc[n][0];
  }
  return r;
}

}  // namespace curv::internal
