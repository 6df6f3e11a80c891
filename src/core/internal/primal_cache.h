#pragma once
// The primal passes of every micro-batch, kept between Objective calls (internal).
//
// Estimators apply a curvature operator hundreds of times on one sample set, and every product
// needs the activations and gradients of the primal pass. When all micro-batches fit the memory
// budget, each slot keeps its pass until the parameters change; otherwise every call recomputes
// into a temporary that the caller owns. Slots are written only by the task that handles their
// micro-batch, so concurrent micro-batches need no lock.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "src/core/internal/pass.h"

namespace curv::internal {

template <class T>
class PrimalCache {
 public:
  /// `chunks` micro-batches; `enabled` keeps their passes.
  void configure(std::size_t chunks, bool enabled) {
    m_enabled = enabled;
    m_slots.clear();
    m_slots.resize(chunks);
  }
  bool enabled() const { return m_enabled; }
  /// Where the pass of micro-batch c lives: its cache slot when enabled, else `tmp`. Empty when the
  /// pass has not been computed (or was dropped).
  std::unique_ptr<Pass<T>>& slot(std::int64_t c, std::unique_ptr<Pass<T>>& tmp) { return m_enabled ? m_slots[c] : tmp; }
  /// Drops every kept pass (parameters changed).
  void clear() {
    for (auto& s : m_slots) s.reset();
  }
  /// Bytes held by kept passes.
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& s : m_slots)
      if (s) b += s->bytes();
    return b;
  }

 private:
  bool m_enabled = false;
  std::vector<std::unique_ptr<Pass<T>>> m_slots;
};

}  // namespace curv::internal
