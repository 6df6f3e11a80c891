#pragma once
/// \file spectra_store.h
/// Writes curvature results to HDF5, all at once, atomically.
///
/// Layout, schema_version 1 (full description with types: docs/hdf5-schema.md):
///
///     /                          attrs format="curv", schema_version=1 (int64), curv_version,
///                                      created_utc (ISO 8601, "Z"), command
///     /<run>/                    one group per run (default "spectrum"); attrs: StoreRun::attributes
///        eigen/                  attrs: EigenRecord::attributes
///           values     f64 [k]      top eigenvalues, descending
///           residuals  f64 [k]      ||A v - lambda v||
///           vectors    f64 [P, k]   optional; column j is the eigenvector of values[j]
///           bottom_values, bottom_residuals [kb], bottom_vectors [P, kb]   ascending, optional
///        trace/                  estimate f64 (), stderr f64 (), probes i64 (), samples f64 [N]
///        diag/                   estimate f64 [P], stderr f64 [P], probes i64 ()
///        density/                nodes f64 [probes, M], weights f64 [probes, M],
///                                steps i64 [probes], grid f64 [G], values f64 [G]
///        blocks/<block>/         same groups per parameter block (creation order tracked)
///
/// Strings are variable-length UTF-8; groups and datasets a run does not have are absent.
///
/// Atomicity: nothing touches the disk before `commit()`, which writes "<path>.tmp.<pid>",
/// closes it and renames it onto <path>. If anything fails (bad record shapes, HDF5 errors,
/// rename) the temporary file is removed and the exception propagates: <path> is never left
/// half-written, and a file already at <path> stays as it was.
///
///     SpectraStore store("out.h5", "curv spectrum model.onnx --data ...");
///     StoreRun& run = store.add_run();              // "spectrum"
///     run.attributes["model"] = std::string("model.onnx");
///     run.model.eigen = eigen_record(solver);
///     run.add_block("fc1.weight").trace = trace_record(hutchinson);
///     store.commit();
///
/// Errors: std::runtime_error("<path>: cannot create HDF5 file: ...") and likewise naming the
/// object for HDF5 failures; std::invalid_argument naming the dataset for inconsistent records
/// and for bad group names; std::logic_error for calls after commit(). HDF5's automatic error
/// printing is turned off while the store works.
/// Not thread-safe (HDF5 is built without thread-safety).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "curvature/store_records.h"

namespace curv {

/// Version of the layout written here; bumped on any incompatible change.
inline constexpr std::int64_t kSpectraSchemaVersion = 1;

class SpectraStore {
 public:
  enum class Mode {
    Create,  ///< the committed file holds exactly the runs added here (replacing <path>)
    Append,  ///< copy an existing curv file at <path> (if any) and add the runs to it
  };

  /// `command` is stored as the root attribute "command" (the full command line).
  SpectraStore(std::filesystem::path path, std::string command, Mode mode = Mode::Create);
  SpectraStore(const SpectraStore&) = delete;
  SpectraStore& operator=(const SpectraStore&) = delete;
  /// Removes a leftover temporary file; never touches <path>.
  ~SpectraStore();

  /// Adds a run group. REQUIRES: a valid group name (non-empty, no '/', not "." or "..") not
  /// added before (std::invalid_argument). The reference stays valid until the store dies.
  StoreRun& add_run(const std::string& name = "spectrum");

  /// Writes everything to the temporary file and renames it onto <path>. Once only.
  void commit();

  const std::filesystem::path& path() const { return m_path; }
  /// "<path>.tmp.<pid>"
  std::filesystem::path temp_path() const;
  bool committed() const { return m_committed; }

 private:
  void write(const std::filesystem::path& file) const;

  std::filesystem::path m_path;
  std::string m_command;
  Mode m_mode;
  std::vector<std::pair<std::string, std::unique_ptr<StoreRun>>> m_runs;
  bool m_committed = false;
};

}  // namespace curv
