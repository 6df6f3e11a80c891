#pragma once
// Attribute and shape checks shared by the ONNX recurrent ops (internal): LSTM and GRU take the
// same inputs X [T, B, I], W [D, G, I], R [D, G, H] and optional B [D, 2G], where G is the number
// of gates times H, and give Y [T, D, B, H]. Messages start with the op type.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/core/internal/op_checks.h"
#include "src/core/size_limits.h"

namespace curv::internal {

/// hidden_size >= 1 (and within the tensor bound); direction forward, reverse or bidirectional.
inline void check_rnn_attrs(const std::string& type, std::int64_t hidden, const std::string& direction) {
  if (hidden < 1 || hidden > kMaxTensorElements)
    attr_fail(type, "hidden_size must be >= 1, got " + std::to_string(hidden));
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    attr_fail(type, "direction must be forward, reverse or bidirectional, got '" + direction + "'");
}

/// Y's shape [T, D, B, H] for `gates` gate blocks of H rows, after checking the inputs' shapes, Y's
/// size and that of the per-step values the op saves (`saved_per_hidden` H per sample and step).
inline Shape rnn_output_shape(const std::string& type, const std::vector<Shape>& in, std::int64_t D, std::int64_t H,
                              std::int64_t gates, std::int64_t saved_per_hidden) {
  if (in.size() < 3 || in.size() > 4)
    throw std::invalid_argument(type + ": expected inputs X, W, R and optional B");
  const Shape &x = in[0], &w = in[1], &r = in[2];
  const std::int64_t G = checked_mul(gates, H, type + " gates");
  if (x.size() != 3) throw std::invalid_argument(type + ": X " + shape_str(x) + " must be [T, B, I]");
  if (w != Shape{D, G, x[2]})
    throw std::invalid_argument(type + ": W " + shape_str(w) + " must be " + shape_str({D, G, x[2]}));
  if (r != Shape{D, G, H}) throw std::invalid_argument(type + ": R " + shape_str(r) + " must be " + shape_str({D, G, H}));
  if (in.size() == 4 && in[3] != Shape{D, 2 * G})
    throw std::invalid_argument(type + ": B " + shape_str(in[3]) + " must be " + shape_str({D, 2 * G}));
  if (x[0] < 1) throw std::invalid_argument(type + ": X " + shape_str(x) + " has no time steps");
  const Shape out{x[0], D, x[1], H};
  checked_numel(out, type + ": output");
  checked_numel({D, x[0], x[1], saved_per_hidden * H}, type + ": saved gates");
  return out;
}

}  // namespace curv::internal
