#pragma once
// What one micro-batch keeps from its primal pass (internal to the Objective).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/core/op.h"
#include "src/core/tensor.h"

namespace curv::internal {

/// The primal pass of samples [first, first + count): values, op states and (after backward)
/// gradients, indexed like Model::values() / Model::nodes().
template <class T>
struct Pass {
  std::int64_t first = 0, count = 0;
  std::vector<Tensor<T>> vals;     // by value id: Input and Node values
  std::vector<OpState<T>> states;  // by node
  std::vector<Tensor<T>> grads;    // by value id: dL/dv of Node values (parameters' go to a sink)
  double loss_sum = 0;
  std::int64_t correct = 0;
  bool has_grad = false;

  /// Bytes of the values, gradients and op states.
  std::size_t bytes() const {
    std::size_t b = state_bytes();
    for (const auto& t : vals) b += t.size() * sizeof(T);
    for (const auto& t : grads) b += t.size() * sizeof(T);
    return b;
  }
  /// Bytes of what ops saved for their derivative kernels.
  std::size_t state_bytes() const {
    std::size_t b = 0;
    for (const auto& s : states) {
      for (const auto& t : s.saved) b += t.size() * sizeof(T);
      b += s.index.size() * sizeof(std::int64_t);
    }
    return b;
  }
};

}  // namespace curv::internal
