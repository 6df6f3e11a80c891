#pragma once
/// \file allocator_tuning.h
/// glibc malloc settings for programs that run the engine (the curv binary, the benchmarks).
///
/// The engine allocates and frees every node's value, gradient and tangent per micro-batch pass
/// (tensors of about 1-4 MB on the language models of bench/compare_lm.sh). With glibc's defaults
/// each worker thread's arena gave that memory back to the system at once (trim threshold about 2x
/// the dynamic mmap threshold) and faulted it in again on the next pass: a million page faults and
/// about 20% of a Hessian-vector product's CPU time in the kernel. Keeping up to 256 MB of free heap
/// per arena (and mmap only for blocks above 32 MB) makes the passes reuse their pages; `curv
/// bench` still returns freed heap before each measurement (reset_peak_resident). The engine's
/// tensors themselves come from oneTBB's allocator by default (memory.h); this still matters for
/// everything else (Eigen matrices of the estimators, sanitizer-free builds without CURV_TBBMALLOC).
/// A process-wide setting: call it first thing in main(), never from a library.
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace curv {

inline void tune_glibc_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

}  // namespace curv
