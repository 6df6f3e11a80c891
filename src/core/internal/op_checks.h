#pragma once
// Checks of op attributes in op constructors (internal). Messages start with the op type, as
// make_op turns "<Type>: <what>" into "node '<name>' (<Type>): <what>".
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv::internal {

[[noreturn]] inline void attr_fail(const std::string& type, const std::string& what) {
  throw std::invalid_argument(type + ": " + what);
}

template <std::size_t N>
std::string list_str(const std::array<std::int64_t, N>& v) {
  return shape_str(Shape(v.begin(), v.end()));
}

/// Every entry of `v` (named `name`) is >= `min`.
template <class V>
void require_at_least(const std::string& type, const char* name, const V& v, std::int64_t min) {
  for (const std::int64_t x : v)
    if (x < min)
      attr_fail(type, std::string(name) + " must be >= " + std::to_string(min) + ", got " +
                          shape_str(Shape(v.begin(), v.end())));
}

/// Every entry of `v` (named `name`) is <= `max`.
template <class V>
void require_at_most(const std::string& type, const char* name, const V& v, std::int64_t max) {
  for (const std::int64_t x : v)
    if (x > max)
      attr_fail(type, std::string(name) + " must be <= " + std::to_string(max) + ", got " +
                          shape_str(Shape(v.begin(), v.end())));
}

}  // namespace curv::internal
