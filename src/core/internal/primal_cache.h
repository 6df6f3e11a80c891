#pragma once
// The primal passes of micro-batches, kept between Objective calls within a memory cap (internal).
//
// Estimators apply a curvature operator hundreds of times on one sample set, and every product
// needs the activations (and, for the Hessian, the gradients) of the primal pass. After a chunk's
// pass is computed, offer() keeps it if its bytes, counted with the gradients it may still grow,
// fit under the cap next to the passes already kept; otherwise the caller drops it and the next
// call recomputes it. So the cache never holds more than the cap, and a sample set whose passes do
// not all fit is served partly from the cache and partly by recomputation. Which chunks are kept
// can depend on timing, results never do (a recomputed pass is bit-identical).
//
// Slots are written only by the task that handles their chunk; the byte count is atomic.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "src/core/internal/pass.h"

namespace curv::internal {

template <class T>
class PrimalCache {
 public:
  /// `chunks` micro-batches, at most `cap` bytes kept; drops every kept pass.
  void configure(std::size_t chunks, std::size_t cap) {
    clear();
    m_slots.clear();
    m_slots.resize(chunks);
    m_reserved.assign(chunks, 0);
    m_cap = cap;
  }
  std::size_t cap() const { return m_cap; }
  /// Lowers (or raises) the cap, dropping kept passes from the last chunk down until they fit.
  void set_cap(std::size_t cap) {
    m_cap = cap;
    for (std::size_t c = m_slots.size(); c-- > 0 && m_bytes.load() > m_cap;) drop(c);
  }
  /// The kept pass of chunk c, or nullptr.
  Pass<T>* get(std::int64_t c) const { return m_slots[c].get(); }
  /// Keeps `p` (moved from) as chunk c's pass when `bytes` (its size with the gradients it may
  /// still grow) fits under the cap; otherwise leaves p with the caller.
  bool offer(std::int64_t c, std::unique_ptr<Pass<T>>& p, std::size_t bytes) {
    std::size_t cur = m_bytes.load();
    do {
      if (cur + bytes > m_cap) return false;
    } while (!m_bytes.compare_exchange_weak(cur, cur + bytes));
    m_reserved[c] = bytes;
    m_slots[c] = std::move(p);
    return true;
  }
  /// Drops every kept pass (parameters changed).
  void clear() {
    for (std::size_t c = 0; c < m_slots.size(); ++c) drop(c);
  }
  /// Bytes reserved by kept passes (their gradients included).
  std::size_t bytes() const { return m_bytes.load(); }

 private:
  void drop(std::size_t c) {
    if (!m_slots[c]) return;
    m_slots[c].reset();
    m_bytes -= m_reserved[c];
    m_reserved[c] = 0;
  }
  std::vector<std::unique_ptr<Pass<T>>> m_slots;
  std::vector<std::size_t> m_reserved;
  std::atomic<std::size_t> m_bytes{0};
  std::size_t m_cap = 0;
};

}  // namespace curv::internal
