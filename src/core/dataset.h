#pragma once
/// \file dataset.h
/// An in-memory sample set: the model's data inputs [N, ...sample_shape] and either integer class
/// labels (cross-entropy on logits) or float targets [N, ...target_shape] (mean squared error).
///
/// Inputs. The first data array is `x` (`sample_shape`, named `x_name`); further arrays are in
/// `more`. The Objective binds each model input to the array of the same name, and a single-input
/// model to `x` whatever its name.
///
/// Integer data (token ids, attention masks stored as integers) is held exactly as float32 values:
/// every integer of magnitude <= 2^24 is a float32, and loaders refuse larger ones. It enters the
/// graph as a tensor of the model precision, where ops that read indices (Embedding) convert it back
/// to int64 and check range. `integer` records the dtype for messages and `curv info`.
///
/// Labels. `label_shape` is the per-sample shape of integer labels: [] for one class per sample,
/// [T] (or more dims) for one class per position (language models: next-token targets). Positions
/// whose label equals the loss's ignore index (-100 by default, as in PyTorch) are skipped.
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv {

/// Largest integer magnitude data may hold: every integer up to it is exact in float32.
inline constexpr std::int64_t kMaxExactDataInteger = std::int64_t(1) << 24;

/// One named data array beyond the first: values [N, ...sample_shape].
struct DataArray {
  std::string name;
  Shape sample_shape;
  std::vector<float> values;
  bool integer = false;
};

struct Dataset {
  std::string source;              // file or builtin name, for messages
  std::string x_name = "x";        // array name of the first input
  bool x_integer = false;          // x holds integers (token ids)
  Shape sample_shape;              // per-sample input shape
  std::vector<float> x;            // N * numel(sample_shape)
  std::vector<DataArray> more;     // further inputs, by name
  std::vector<std::int64_t> labels;  // classification: N * numel(label_shape) labels
  Shape label_shape;               // classification: per-sample label shape ([]: one per sample)
  Shape target_shape;              // regression: per-sample target shape
  std::vector<float> targets;      // regression: N * numel(target_shape)

  std::int64_t size() const {
    const auto s = numel(sample_shape);
    return s > 0 ? static_cast<std::int64_t>(x.size()) / s : 0;
  }
  bool classification() const { return targets.empty(); }
  /// Number of input arrays (x and `more`).
  std::int64_t num_inputs() const { return 1 + static_cast<std::int64_t>(more.size()); }
  /// Samples [first, first + count) as a new dataset. REQUIRES: within range.
  Dataset subset(std::int64_t first, std::int64_t count) const;
  /// Samples idx[0..count) in that order as a new dataset. REQUIRES: indices in range.
  Dataset gather(const std::int64_t* idx, std::int64_t count) const;
};

}  // namespace curv
