#pragma once
/// \file hdf5_probe.h
/// Guards curv against the HDF5 library itself. libhdf5 1.10 trusts the metadata of the files it
/// reads: some corruptions make it crash (a global-heap entry or attribute table that points
/// nowhere) or loop forever (a global-heap collection whose free space never ends) inside
/// H5Aread, H5Aiterate2 or H5Dread, whatever the caller checks first (docs/robustness.md).
///
/// `probe_file` therefore lets a forked child process walk the file first, doing every kind of
/// read that h5::Object's readers do: it lists every group, opens every object, reads every
/// attribute that holds one value (strings through the global heap included), inspects every
/// dataset's type, dataspace and storage, and reads the datasets that fit a budget. If the child
/// dies of a signal or does not finish in time, the file is refused before the calling process
/// touches it; errors that HDF5 reports normally are left to the caller's checked readers.
#include <string>

#include <functional>

namespace curv::h5::internal {

/// Runs `read` (a loader's HDF5 reads of `path`) in a forked child first and, if the child
/// neither crashed nor hung, then in this process. The child is an exact copy of this process,
/// so libhdf5 does there exactly what it will do here: a crash or an endless loop on corrupt
/// metadata is met in the child, and std::runtime_error("<file>: the HDF5 library crashed ...")
/// is thrown instead. Exceptions of `read` itself are left to the run in this process. Inside
/// `read` (child and parent), h5::Object::open skips its own walk. CURV_HDF5_PROBE=0 runs `read`
/// directly. Costs a second read: used by the loaders of checkpoints, training state and .h5 datasets.
void guarded(const std::string& file, const std::function<void()>& read);

/// True inside guarded() (the walk of probe_file is then redundant).
bool in_guarded_read();

/// "" when a child process walked `path` cleanly, else the problem: "the HDF5 library crashed
/// (signal 11) reading the file's metadata", "reading the file's metadata did not finish within
/// 10 s" (10 s plus 1 s per 50 MB of file), or "corrupt HDF5 metadata (<HDF5's message>)" when
/// HDF5 reported an error where well-formed metadata gives none (after such an error libhdf5's
/// own error paths are what crash). Environment: CURV_HDF5_PROBE=0 switches the walk off (for
/// debugging), CURV_HDF5_PROBE_SECONDS=S replaces the 10 s base (tests).
/// REQUIRES: no HDF5 call is in progress in another thread (HDF5 is not thread-safe anyway).
std::string probe_file(const std::string& path);

}  // namespace curv::h5::internal
