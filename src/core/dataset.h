#pragma once
/// \file dataset.h
/// An in-memory sample set: inputs x [N, ...sample_shape] in float32, and either integer class
/// labels (cross-entropy on logits) or float targets [N, ...target_shape] (mean squared error).
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv {

struct Dataset {
  std::string source;              // file or builtin name, for messages
  Shape sample_shape;              // per-sample input shape
  std::vector<float> x;            // N * numel(sample_shape)
  std::vector<std::int64_t> labels;  // classification: N labels
  Shape target_shape;              // regression: per-sample target shape
  std::vector<float> targets;      // regression: N * numel(target_shape)

  std::int64_t size() const {
    const auto s = numel(sample_shape);
    return s > 0 ? static_cast<std::int64_t>(x.size()) / s : 0;
  }
  bool classification() const { return targets.empty(); }
  /// Samples [first, first + count) as a new dataset. REQUIRES: within range.
  Dataset subset(std::int64_t first, std::int64_t count) const;
};

}  // namespace curv
