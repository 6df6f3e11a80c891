#include "src/core/memory.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>
#if CURV_SCALABLE_ALLOC
#include <tbb/scalable_allocator.h>
#endif

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
#endif

namespace curv {

namespace {

std::atomic<std::size_t> g_live{0};
std::atomic<std::size_t> g_peak{0};

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), 0 when unavailable.
std::size_t proc_status_bytes(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  std::size_t kb = 0;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') {
      std::sscanf(line + n + 1, "%zu", &kb);
      break;
    }
  std::fclose(f);
  return kb * 1024;
}

}  // namespace

namespace internal {

void track_alloc(std::size_t bytes) noexcept {
  const std::size_t now = g_live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::size_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void track_free(std::size_t bytes) noexcept { g_live.fetch_sub(bytes, std::memory_order_relaxed); }

namespace {

void* raw_alloc(std::size_t bytes) {
#if CURV_SCALABLE_ALLOC
  void* p = scalable_malloc(bytes == 0 ? 1 : bytes);
  if (!p) throw std::bad_alloc();
  return p;
#else
  return ::operator new(bytes);
#endif
}

void raw_free(void* p) noexcept {
#if CURV_SCALABLE_ALLOC
  scalable_free(p);
#else
  ::operator delete(p);
#endif
}

#if CURV_SCALABLE_ALLOC
// (The pool exists only with the scalable allocator: sanitizer builds hand every block back.)

// The size class of a pooled block: `bytes` rounded up to 1/8 of its power of two (at most 12.5%
// more), so that a tensor whose element count varies a little (the last micro-batch) still finds
// the blocks of its full-size peers.
std::size_t block_class(std::size_t bytes) {
  int lg = 63 - __builtin_clzll(static_cast<unsigned long long>(bytes));
  const std::size_t step = std::size_t(1) << (lg - 3);
  return (bytes + step - 1) / step * step;
}

// Freed engine buffers of at least kMinPooled bytes, kept for the next allocation of their size
// class instead of going back to the allocator. Without it each micro-batch pass took fresh pages
// for its large tensors and P-sized accumulators and faulted them in: on ResNet-50 (23.5M
// parameters) about 30k page faults per gradient and 60k per Hessian-vector product, 5 us each in
// this machine's kernel, 10-15% of the product's time. Blocks are reused last-in first-out within
// a class; beyond the byte limit the oldest pooled blocks are released.
class BlockPool {
 public:
  static constexpr std::size_t kMinPooled = std::size_t(256) << 10;

  void* take(std::size_t cls) {
    std::lock_guard<std::mutex> lock(m_mu);
    auto it = m_free.find(cls);
    if (it == m_free.end() || it->second.empty()) return nullptr;
    void* p = it->second.back().p;
    it->second.pop_back();
    m_pooled -= cls;
    return p;
  }

  void give(void* p, std::size_t cls) noexcept {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(m_mu);
      if (cls > m_limit) {
        release.push_back(p);
      } else {
        try {
          m_free[cls].push_back({p, m_clock++});
          m_pooled += cls;
        } catch (...) {
          release.push_back(p);
        }
        evict_to(m_limit, release);
      }
    }
    for (void* q : release) raw_free(q);
  }

  void set_limit(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(m_mu);
      m_limit = bytes;
    }
    trim(bytes);
  }
  std::size_t limit() {
    std::lock_guard<std::mutex> lock(m_mu);
    return m_limit;
  }
  std::size_t pooled() {
    std::lock_guard<std::mutex> lock(m_mu);
    return m_pooled;
  }
  void release_all() { trim(0); }

 private:
  struct Entry {
    void* p;
    std::uint64_t stamp;
  };

  // Releases the oldest pooled blocks until at most `bytes` stay pooled (freed outside the lock).
  void trim(std::size_t bytes) {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(m_mu);
      evict_to(bytes, release);
    }
    for (void* q : release) raw_free(q);
  }

  // Moves the oldest pooled blocks into `out` until at most `bytes` stay pooled. Within a class the
  // entries are in stamp order, so the oldest block overall is the front of some class.
  void evict_to(std::size_t bytes, std::vector<void*>& out) noexcept {
    while (m_pooled > bytes) {
      auto oldest = m_free.end();
      for (auto it = m_free.begin(); it != m_free.end(); ++it)
        if (!it->second.empty() && (oldest == m_free.end() || it->second.front().stamp < oldest->second.front().stamp))
          oldest = it;
      if (oldest == m_free.end()) break;
      try {
        out.push_back(oldest->second.front().p);
      } catch (...) {
        raw_free(oldest->second.front().p);
      }
      oldest->second.erase(oldest->second.begin());
      m_pooled -= oldest->first;
    }
  }

  std::mutex m_mu;
  std::map<std::size_t, std::vector<Entry>> m_free;
  std::size_t m_pooled = 0;
  std::size_t m_limit = std::size_t(1) << 30;
  std::uint64_t m_clock = 0;
};

// Leaked on purpose: engine buffers held by static objects may be freed after static destruction.
BlockPool& pool() {
  static BlockPool* p = new BlockPool;
  return *p;
}
#endif  // CURV_SCALABLE_ALLOC

}  // namespace

void* engine_alloc(std::size_t bytes) {
#if CURV_SCALABLE_ALLOC
  if (bytes >= BlockPool::kMinPooled) {
    const std::size_t cls = block_class(bytes);
    if (void* p = pool().take(cls)) return p;
    return raw_alloc(cls);
  }
#endif
  return raw_alloc(bytes);
}

void engine_free(void* p, std::size_t bytes) noexcept {
  if (!p) return;
#if CURV_SCALABLE_ALLOC
  if (bytes >= BlockPool::kMinPooled) return pool().give(p, block_class(bytes));
#endif
  (void)bytes;
  raw_free(p);
}

}  // namespace internal

std::size_t tracked_bytes() { return g_live.load(); }
std::size_t tracked_peak_bytes() { return g_peak.load(); }
void reset_tracked_peak() { g_peak.store(g_live.load()); }

std::size_t resident_bytes() { return proc_status_bytes("VmRSS"); }
std::size_t peak_resident_bytes() { return proc_status_bytes("VmHWM"); }

std::size_t block_pool_bytes() {
#if CURV_SCALABLE_ALLOC
  return internal::pool().pooled();
#else
  return 0;
#endif
}

std::size_t block_pool_limit() {
#if CURV_SCALABLE_ALLOC
  return internal::pool().limit();
#else
  return 0;
#endif
}

void set_block_pool_limit(std::size_t bytes) {
#if CURV_SCALABLE_ALLOC
  internal::pool().set_limit(bytes);
#else
  (void)bytes;
#endif
}

void release_block_pool() {
#if CURV_SCALABLE_ALLOC
  internal::pool().release_all();
#endif
}

void reset_peak_resident() {
  release_block_pool();
#if CURV_SCALABLE_ALLOC
  scalable_allocation_command(TBBMALLOC_CLEAN_ALL_BUFFERS, nullptr);
#endif
#if defined(__linux__) && defined(__GLIBC__)
  malloc_trim(0);
#endif
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);  // "5": reset the peak RSS (VmHWM) to the current RSS
    std::fclose(f);
  }
}

}  // namespace curv
