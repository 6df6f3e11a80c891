#pragma once
// Strided batched matrix products on row-major storage, the workhorse of MatMul, Gemm and Conv.
#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

namespace curv::internal {

/// Z[b] += alpha * op(X[b]) * op(Y[b]) for every index b of `batch`.
/// X is stored row-major [xr, xc] (op = transpose when tx), likewise Y; Z is [zr, zc].
/// sx, sy, sz: element strides of each operand per batch dim (0 = broadcast; several b may then
/// accumulate into one Z, which is how reductions over broadcast dims happen). With `accumulate`
/// false, Z = the sum instead (what Z held is never read; the bits are those of adding to zeros).
template <class T>
void batched_gemm(const Shape& batch, const std::vector<std::int64_t>& sx, const std::vector<std::int64_t>& sy,
                  const std::vector<std::int64_t>& sz, bool tx, bool ty, const T* X, std::int64_t xr, std::int64_t xc,
                  const T* Y, std::int64_t yr, std::int64_t yc, T* Z, T alpha, bool accumulate = true);

/// Single product Z (+)= alpha * op(X) * op(Y); `accumulate` false overwrites Z.
template <class T>
void gemm(bool tx, bool ty, const T* X, std::int64_t xr, std::int64_t xc, const T* Y, std::int64_t yr,
          std::int64_t yc, T* Z, T alpha, bool accumulate);

/// Contiguous row-major strides of `s`, with 0 where s[i] == 1 and `full`[i] != 1 (broadcast).
std::vector<std::int64_t> broadcast_strides(const Shape& s, const Shape& full, std::int64_t inner);

}  // namespace curv::internal
