#pragma once
// Numpy broadcasting of two operands: strides of each input over the output index space.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv::internal {

struct Broadcast {
  Shape out;
  std::vector<std::int64_t> sa, sb;  // element strides of a and b per output dim; 0 = broadcast
  bool same = false;                 // a, b and out have identical shapes

  Broadcast(const Shape& a, const Shape& b) {
    const size_t r = std::max(a.size(), b.size());
    out.assign(r, 1);
    sa.assign(r, 0);
    sb.assign(r, 0);
    auto dim = [r](const Shape& s, size_t i) -> std::int64_t {
      const size_t off = r - s.size();
      return i < off ? 1 : s[i - off];
    };
    for (size_t i = 0; i < r; ++i) {
      const auto da = dim(a, i), db = dim(b, i);
      if (da != db && da != 1 && db != 1)
        throw std::invalid_argument("cannot broadcast " + shape_str(a) + " with " + shape_str(b));
      out[i] = std::max(da, db);
      if (da == 0 || db == 0) out[i] = 0;
    }
    std::int64_t st_a = 1, st_b = 1;
    for (size_t i = r; i-- > 0;) {
      const auto da = dim(a, i), db = dim(b, i);
      sa[i] = (da == 1 && out[i] != 1) ? 0 : st_a;
      sb[i] = (db == 1 && out[i] != 1) ? 0 : st_b;
      st_a *= da;
      st_b *= db;
    }
    same = (a == b);
  }

  /// Calls f(i_out, i_a, i_b) for every output element in row-major order.
  template <class F>
  void for_each(F&& f) const {
    const std::int64_t n = numel(out);
    if (n == 0) return;
    if (same) {
      for (std::int64_t i = 0; i < n; ++i) f(i, i, i);
      return;
    }
    const int r = static_cast<int>(out.size());
    if (r == 0) {
      f(0, 0, 0);
      return;
    }
    std::vector<std::int64_t> idx(r, 0);
    const std::int64_t inner = out[r - 1], ia_step = sa[r - 1], ib_step = sb[r - 1];
    // The usual inner strides (contiguous or broadcast) as compile-time constants, so that the row
    // loops vectorize; the same calls in the same order either way.
    const int kind = (ia_step == 1 && ib_step == 1) ? 1 : (ia_step == 1 && ib_step == 0) ? 2
                   : (ia_step == 0 && ib_step == 1) ? 3 : 0;
    std::int64_t io = 0, base_a = 0, base_b = 0;
    while (true) {
      const std::int64_t ia = base_a, ib = base_b;
      switch (kind) {
        case 1:
          for (std::int64_t t = 0; t < inner; ++t) f(io + t, ia + t, ib + t);
          break;
        case 2:
          for (std::int64_t t = 0; t < inner; ++t) f(io + t, ia + t, ib);
          break;
        case 3:
          for (std::int64_t t = 0; t < inner; ++t) f(io + t, ia, ib + t);
          break;
        default:
          for (std::int64_t t = 0; t < inner; ++t) f(io + t, ia + t * ia_step, ib + t * ib_step);
      }
      io += inner;
      int d = r - 2;
      for (; d >= 0; --d) {
        ++idx[d];
        base_a += sa[d];
        base_b += sb[d];
        if (idx[d] < out[d]) break;
        base_a -= sa[d] * out[d];
        base_b -= sb[d] * out[d];
        idx[d] = 0;
      }
      if (d < 0) break;
    }
  }
};

}  // namespace curv::internal
