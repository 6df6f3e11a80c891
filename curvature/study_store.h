#pragma once
/// \file study_store.h
/// Where `curv study --out F.h5` keeps its results, so that a kill at any moment (even kill -9)
/// loses no committed run and never leaves F.h5 unreadable.
///
///     F.h5                    the study file: every completed run of the study, one group each
///     F.h5.runs/              one file per completed run: <name>.<hash16>.run (hash16: the first
///                             16 hex digits of the run's settings hash), the writes of the run's
///                             group recorded by h5::Object::recording (src/io/hdf5.h): an internal
///                             journal, read by curv study only
///     F.h5.runs/assembled.json  what F.h5 holds: the run files written into it, a hash of the
///                             study header, and F.h5's identity (device, inode, size, mtime in ns)
///                             right after its last commit
///
/// Why recordings and not one HDF5 file per run: building even a small HDF5 file costs ~0.5 ms of
/// libhdf5 CPU between two runs (the library's code and metadata cache are cold by then), and its
/// group then had to be copied into F.h5 (~0.3 ms). A recording costs microseconds; its writes
/// are performed once, on F.h5, in a batch. The content of F.h5 is the same.
///
/// Commit protocol. A run's file is written to a temporary beside it and renamed when complete
/// (src/io/atomic_file.h): the rename is the run's commit, so a run file that exists is complete,
/// and its name says which settings made it. F.h5 is only ever replaced the same way: rebuilt
/// from the run files (assemble) or extended by runs (copied to a temporary, the runs' recordings
/// replayed into it, renamed: append). Whatever the moment of a kill, F.h5 is the last complete
/// version and every finished run has its file; `--resume` scans the folder (file names only) and
/// reruns exactly the runs whose <name>.<hash16>.run is missing, so an edited study reruns the
/// runs whose settings changed. Temporaries of killed writers are removed by scan(). A run file
/// that is damaged (edited by hand, a disk error) makes the rebuild of F.h5 fail with its name.
/// assemble() leaves F.h5 alone when assembled.json says it already holds exactly the completed
/// runs under the same header and F.h5 has not changed since (a resume with nothing to do, or
/// with only new runs to add, then rewrites nothing); anything else rebuilds it. The manifest is
/// written after F.h5's rename, so a kill between the two only costs a rebuild. F.h5's root
/// `command` attribute is therefore the command that last rebuilt it.
///
/// Commits (fsync of the temporary, rename, fsync of the folder: milliseconds of waiting on the
/// disk) run on one background thread, at idle priority (SCHED_IDLE), while the next run computes,
/// for run files and for F.h5 alike. All HDF5 work stays on the calling thread; the background
/// thread only creates the temporaries, writes their bytes and commits them, so the file creation,
/// which costs ~0.2-0.5 ms of file-system work while other files are being synced, overlaps the
/// next run too. Commits run in the order given and at most two are queued: commit_run() waits for
/// room, append(), assemble(), finish_commits() and the destructor wait for all of them, so every
/// reader of a file sees it committed. A failed commit is reported (thrown) by the next
/// commit_run(), check_commits(), finish_commits(), append() or assemble(). A run counts as
/// completed once its file is committed: a kill in the few milliseconds before loses that run (at
/// most the last two; --resume runs them again), as a kill just before it finished would; F.h5 is
/// then its previous version.
///
/// F.h5's root attributes are those of every curv results file (spectra_store.h) plus `study`
/// (the study file's text), `study_file` and `study_name`; each run group carries `kind`,
/// `settings` (JSON), `settings_hash` and `entry`, then the kind's own attributes and data.
/// Not thread-safe.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "curvature/run_kind.h"

namespace curv {

class AtomicFile;

/// What F.h5 records about the study.
struct StudyHeader {
  std::string command;     // the command line
  std::string study_file;  // path of the study file
  std::string study_text;  // its content
  std::string study_name;
};

/// Writes a curv results file holding one group `group` atomically (temporary + rename, refusing
/// to replace one of `inputs`): root attributes, the group's `attributes`, then `write(group)`.
/// Used by `curv landscape`.
void write_run_file(const std::string& path, const std::vector<std::string>& inputs, const std::string& command,
                    const std::string& group, const AttributeMap& attributes,
                    const std::function<void(const h5::Object&)>& write);

class StudyStore {
 public:
  /// `out` is F.h5; `inputs` (models, data) are refused as outputs. Creates nothing yet.
  StudyStore(std::filesystem::path out, std::vector<std::string> inputs);
  /// Waits for the commits in flight (an error is dropped: call finish_commits() first).
  ~StudyStore();
  StudyStore(const StudyStore&) = delete;
  StudyStore& operator=(const StudyStore&) = delete;

  const std::filesystem::path& out() const { return m_out; }
  /// "<out>.runs"
  std::filesystem::path runs_dir() const;
  /// "<runs_dir>/<name>.<hash16>.h5"
  std::filesystem::path run_path(const PlannedRun& run) const;

  /// Lists the committed run files and removes temporaries left by dead writers.
  /// Returns the number of run files found.
  std::size_t scan();
  /// The run's file exists (as of the last scan or commit in this process).
  bool complete(const PlannedRun& run) const;

  /// Records the run's group (`attributes`, then `write(group)`) and writes the recording as the
  /// run's file atomically; the commit (rename) completes in the background (see above).
  void commit_run(const PlannedRun& run, const AttributeMap& attributes,
                  const std::function<void(const h5::Object&)>& write);
  /// Rebuilds F.h5 from the files of the complete runs among `runs`, in that order (committed in
  /// the background).
  void assemble(const std::vector<const PlannedRun*>& runs, const StudyHeader& header);
  /// Writes the (complete) runs' groups into F.h5: one copy of F.h5, the runs' recordings
  /// replayed into it, one atomic commit for all of them (in the background).
  /// REQUIRES: assemble() ran in this process.
  void append(const std::vector<const PlannedRun*>& runs);
  /// Waits for the commits in flight; throws the first failure (std::runtime_error naming the file).
  void finish_commits();
  /// Throws the first failure of a commit finished since the last report, without waiting.
  void check_commits();
  /// CPU seconds used so far by the background thread (file creation, writes, fsyncs, renames).
  double background_cpu_seconds() const;

 private:
  class CommitThread;
  void commit_study_file(std::shared_ptr<AtomicFile> out);
  void commit_in_background(std::function<void()> job);

  std::filesystem::path m_out;
  std::vector<std::string> m_inputs;
  std::set<std::string> m_files;          // file names present in runs_dir (committed or in flight)
  std::set<std::string> m_assembled;      // run file names whose groups F.h5 holds (or will, once committed)
  std::string m_header_hash;              // of the StudyHeader of the last assemble()
  bool m_dir_ready = false;                // runs_dir exists (created by this process's first commit)
  std::unique_ptr<CommitThread> m_thread;  // runs the commits (created on first use)
};

}  // namespace curv
