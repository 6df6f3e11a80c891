#pragma once
// PyTorch-made fixtures under data/fixtures/ as tests read them: the path, an .npz's x/y as a
// Dataset, and the relative L2 error used to compare curv against the stored references.
// Shared by the training tests (first-order, diagonal and second-order optimizers).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "src/core/dataset.h"
#include "src/io/internal/npz.h"

namespace curv_test {

inline std::string fixture(const std::string& name) {
  return std::string(CURV_SOURCE_DIR) + "/data/fixtures/" + name;
}

/// Arrays x (inputs) and y (integer labels) of a fixture .npz as a Dataset.
inline curv::Dataset npz_data(const curv::NpzFile& z) {
  curv::Dataset d;
  d.source = z.path();
  const auto& x = z.get("x");
  d.sample_shape = curv::Shape(x.shape.begin() + 1, x.shape.end());
  d.x.assign(x.data.begin(), x.data.end());
  d.labels = z.get("y").ints;
  return d;
}

/// ||a - b|| / ||b|| over indexable vectors of equal length.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace curv_test
