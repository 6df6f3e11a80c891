#pragma once
/// \file spectra_store.h
/// Writes curvature results to HDF5, all at once, atomically.
///
/// Layout, schema_version 1 (full description with types: docs/hdf5-schema.md):
///
///     /                          attrs format="curv", schema_version=1 (int64), schema_minor=1
///                                      (int64), curv_version, created_utc (ISO 8601, "Z"), command
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
///        gradient/               norm f64 (), values f64 [P] optional, top_overlap f64 [k] optional
///        blocks/<block>/         same groups per parameter block (creation order tracked)
///        kfac/<layer>/           --curvature kfac (schema_minor 1): A, B f64 [n, n], alpha, beta
///                                f64 [n] (ascending eigenvalues), QA, QB f64 [n, n] (eigenvectors);
///                                attrs layer, in, out, positions, --compare results
///
/// Strings are variable-length UTF-8; groups and datasets a run does not have are absent.
///
/// Atomicity: nothing touches the disk before `commit()`, which writes through an `AtomicFile`
/// (src/io/atomic_file.h): "<path>.curv-tmp.<pid>", closed and renamed onto <path>. If anything
/// fails (bad record shapes, HDF5 errors, rename, SIGINT/SIGTERM) the temporary file is removed:
/// <path> is never left half-written, and a file already at <path> stays as it was. commit()
/// refuses to replace one of the `inputs` (the model, the data), a read-only file, or a file in a
/// missing folder.
///
///     SpectraStore store("out.h5", "curv spectrum model.onnx --data ...");
///     StoreRun& run = store.add_run();              // "spectrum"
///     run.attributes["model"] = std::string("model.onnx");
///     run.model.eigen = eigen_record(solver);
///     run.add_block("fc1.weight").trace = trace_record(hutchinson);
///     store.commit();
///
/// Errors: std::runtime_error("<path>: <object>: <problem> (<HDF5's message>)") for HDF5
/// failures (src/io/hdf5.h) and "<path>: <problem>" for refused targets; std::invalid_argument
/// naming the dataset for inconsistent records and for bad group names; std::logic_error for
/// calls after commit().
/// Not thread-safe (HDF5 is built without thread-safety).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "curvature/store_records.h"

namespace curv {

namespace h5 {
class Object;
}

/// Version of the layout written here; bumped on any incompatible change.
inline constexpr std::int64_t kSpectraSchemaVersion = 1;
/// Revision within schema_version 1, root attribute `schema_minor` (absent: 0). 1: K-FAC factors
/// are under <run>/kfac/<layer>/ (0: under <run>/blocks/<layer>/kfac/).
inline constexpr std::int64_t kSpectraSchemaMinor = 1;

class SpectraStore {
 public:
  enum class Mode {
    Create,  ///< the committed file holds exactly the runs added here (replacing <path>)
    Append,  ///< copy an existing curv file at <path> (if any) and add the runs to it
  };

  /// `command` is stored as the root attribute "command" (the full command line). `inputs` are
  /// the files the results were computed from, which commit() refuses to replace.
  SpectraStore(std::filesystem::path path, std::string command, Mode mode = Mode::Create,
               std::vector<std::string> inputs = {});
  SpectraStore(const SpectraStore&) = delete;
  SpectraStore& operator=(const SpectraStore&) = delete;
  ~SpectraStore();

  /// Adds a run group. REQUIRES: a valid group name (non-empty, no '/', not "." or "..") not
  /// added before (std::invalid_argument). The reference stays valid until the store dies.
  StoreRun& add_run(const std::string& name = "spectrum");

  /// Writes everything to the temporary file and renames it onto <path>. Once only.
  void commit();

  const std::filesystem::path& path() const { return m_path; }
  /// "<path>.curv-tmp.<pid>", which exists only during commit()
  std::filesystem::path temp_path() const;
  bool committed() const { return m_committed; }

 private:
  void write(const std::string& file, bool append) const;

  std::filesystem::path m_path;
  std::string m_command;
  Mode m_mode;
  std::vector<std::string> m_inputs;
  std::vector<std::pair<std::string, std::unique_ptr<StoreRun>>> m_runs;
  bool m_committed = false;
};

/// The root attributes of a curv results file (format, schema_version, curv_version,
/// created_utc, command), for writers of such files other than SpectraStore (curv study,
/// curv landscape).
void write_root_attributes(const h5::Object& file, const std::string& command);

/// Writes `run` into `group` (its attributes, sections and blocks), exactly as SpectraStore does
/// for each of its runs. std::invalid_argument for inconsistent records or bad block names.
void write_run(const h5::Object& group, const StoreRun& run);

}  // namespace curv
