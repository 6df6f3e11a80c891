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
/// VmHWM from the current VmRSS, so that the peak of one call can be measured.
#include <cstddef>

namespace curv {

std::size_t tracked_bytes();
std::size_t tracked_peak_bytes();
void reset_tracked_peak();

std::size_t resident_bytes();
std::size_t peak_resident_bytes();
void reset_peak_resident();

namespace internal {
void track_alloc(std::size_t bytes) noexcept;
void track_free(std::size_t bytes) noexcept;
}  // namespace internal

}  // namespace curv
