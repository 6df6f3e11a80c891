#pragma once
/// \file size_limits.h
/// Sizes computed from shapes and attributes (which come from files) are computed with
/// overflow-checked arithmetic and bounded by kMaxTensorElements, so an absurd value (a 2^62 pad or
/// dim) is an error naming it, never a wrap-around, a huge allocation or an endless loop.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "src/core/tensor.h"

namespace curv {

/// The largest tensor (elements) of a model at batch size 2, and the largest per-sample patch
/// matrix of a convolution: 2^32 elements (16 GiB in float32).
constexpr std::int64_t kMaxTensorElements = std::int64_t(1) << 32;

/// a + b and a * b; throw std::invalid_argument("<what> overflows ...") when the result does not
/// fit in int64.
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const std::string& what) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw std::invalid_argument(what + " overflows (" + std::to_string(a) + " + " + std::to_string(b) + ")");
  return r;
}
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const std::string& what) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw std::invalid_argument(what + " overflows (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  return r;
}

/// The element count of `s`; throws std::invalid_argument naming `what` when a dim is negative or
/// the count exceeds `limit`, counting the nonzero dims only (an empty [0, 2^40, 2^40] is rejected:
/// any sub-shape's count must be computable).
inline std::int64_t checked_numel(const Shape& s, const std::string& what, std::int64_t limit = kMaxTensorElements) {
  std::int64_t n = 1, bound = 1;
  for (const std::int64_t d : s) {
    if (d < 0) throw std::invalid_argument(what + " " + shape_str(s) + " has a negative dimension");
    if (d != 0 && bound > limit / d)
      throw std::invalid_argument(what + " " + shape_str(s) + " is too large (more than " + std::to_string(limit) +
                                  " elements)");
    if (d != 0) bound *= d;
    n *= d;
  }
  if (n > limit)
    throw std::invalid_argument(what + " " + shape_str(s) + " is too large (more than " + std::to_string(limit) +
                                " elements)");
  return n;
}

}  // namespace curv
