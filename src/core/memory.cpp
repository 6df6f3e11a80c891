#include "src/core/memory.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>
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

void* engine_alloc(std::size_t bytes) {
#if CURV_SCALABLE_ALLOC
  void* p = scalable_malloc(bytes == 0 ? 1 : bytes);
  if (!p) throw std::bad_alloc();
  return p;
#else
  return ::operator new(bytes);
#endif
}

void engine_free(void* p) noexcept {
#if CURV_SCALABLE_ALLOC
  scalable_free(p);
#else
  ::operator delete(p);
#endif
}

}  // namespace internal

std::size_t tracked_bytes() { return g_live.load(); }
std::size_t tracked_peak_bytes() { return g_peak.load(); }
void reset_tracked_peak() { g_peak.store(g_live.load()); }

std::size_t resident_bytes() { return proc_status_bytes("VmRSS"); }
std::size_t peak_resident_bytes() { return proc_status_bytes("VmHWM"); }

void reset_peak_resident() {
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
