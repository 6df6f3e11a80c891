#pragma once
/// \file memory.h
/// Memory accounting of the engine, and the resident memory of the process.
///
/// Every Tensor and scratch Buffer allocates through UninitAllocator (tensor.h), which counts the
/// bytes it holds: tracked_bytes() is what the engine holds now (all threads, all objects),
/// tracked_peak_bytes() the most it held since the last reset_tracked_peak(). Eigen matrices that
/// callers own (direction blocks, results) and Eigen's GEMM packing buffers are not counted.
///
/// Resident memory (Linux /proc; 0 elsewhere): resident_bytes() is VmRSS, peak_resident_bytes()
/// VmHWM, and reset_peak_resident() returns freed heap to the system (malloc_trim) and restarts
/// VmHWM from the current VmRSS, so that the peak of one call can be measured (with the scalable
/// allocator it also returns tbbmalloc's cached blocks first).
#include <cstddef>

namespace curv {

std::size_t tracked_bytes();
std::size_t tracked_peak_bytes();
void reset_tracked_peak();

std::size_t resident_bytes();
std::size_t peak_resident_bytes();
void reset_peak_resident();

/// The engine's pool of freed large buffers (memory.cpp; builds with CURV_SCALABLE_ALLOC, the
/// default without sanitizers). Buffers of 256 KiB and more go back to the pool when the engine
/// frees them and are handed out again to the next allocation of their size class (sizes rounded
/// up to 1/8 of their power of two), so that repeated passes reuse pages that are already mapped
/// instead of faulting fresh ones in. At most block_pool_limit() bytes (default 1 GiB) stay pooled;
/// the oldest blocks beyond it go back to the allocator. Pooled bytes are not in tracked_bytes()
/// (the engine does not hold them), but they are resident: a process's memory is its engine peak
/// plus at most the limit. reset_peak_resident() and release_block_pool() empty the pool.
std::size_t block_pool_bytes();
std::size_t block_pool_limit();
void set_block_pool_limit(std::size_t bytes);
void release_block_pool();

namespace internal {
/// The engine's buffer memory (UninitAllocator): oneTBB's scalable allocator in builds with
/// CURV_SCALABLE_ALLOC (the default without sanitizers), operator new otherwise. The engine frees
/// and allocates every node's value, gradient and tangent per micro-batch pass from the TBB worker
/// threads; glibc gives each worker an arena of 64 MB heaps and unmaps a heap as soon as it is
/// empty, so about half of a transformer's products faulted their buffers in again (license_bert:
/// a cached HVP took 0.15 or 0.34 s from one run to the next, with 550-730k page faults against
/// 275k). tbbmalloc keeps freed blocks in per-thread pools. Only the engine's buffers use it:
/// libhdf5 and the rest keep glibc's allocator, whose checks turn some of libhdf5's memory errors on
/// corrupt files into the crashes that curv's probe process detects. Throws std::bad_alloc.
/// Large buffers (256 KiB and more) come from and return to the block pool above; engine_free
/// takes the size that was allocated.
void* engine_alloc(std::size_t bytes);
void engine_free(void* p, std::size_t bytes) noexcept;
void track_alloc(std::size_t bytes) noexcept;
void track_free(std::size_t bytes) noexcept;
}  // namespace internal

}  // namespace curv
