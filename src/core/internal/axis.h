#pragma once
// Axis arguments of ops (ONNX convention: negative counts from the end).
#include <cstdint>
#include <stdexcept>
#include <string>

namespace curv::internal {

/// `a` in [-rank, rank) as an index in [0, rank); throws std::invalid_argument naming `op`.
inline std::int64_t norm_axis(std::int64_t a, std::int64_t rank, const std::string& op) {
  if (a < -rank || a >= rank)
    throw std::invalid_argument(op + ": axis " + std::to_string(a) + " out of range for rank " + std::to_string(rank));
  return a < 0 ? a + rank : a;
}

}  // namespace curv::internal
