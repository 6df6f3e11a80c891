#pragma once
/// \file study_store.h
/// Where `curv study --out F.h5` keeps its results, so that a kill at any moment (even kill -9)
/// loses no committed run and never leaves F.h5 unreadable.
///
///     F.h5                    the study file: every completed run of the study, one group each
///     F.h5.runs/              one file per completed run: <name>.<hash16>.h5 (hash16: the first 16
///                             hex digits of the run's settings hash), a curv results file holding
///                             the single group <name>
///     F.h5.runs/assembled.json  what F.h5 holds: the run files copied into it, a hash of the
///                             study header, and F.h5's identity (device, inode, size, mtime in ns)
///                             right after its last commit
///
/// Commit protocol. A run's file is written to a temporary beside it and renamed when complete
/// (src/io/atomic_file.h): the rename is the run's commit, so a run file that exists is complete,
/// and its name says which settings made it. F.h5 is only ever replaced the same way: rebuilt
/// from the run files (assemble) or extended by one run (copied to a temporary, the run's group
/// copied in, renamed: append). Whatever the moment of a kill, F.h5 is the last complete version
/// and every finished run has its file; `--resume` scans the folder (file names only, no HDF5
/// reads) and reruns exactly the runs whose <name>.<hash16>.h5 is missing, so an edited study
/// reruns the runs whose settings changed. Temporaries of killed writers are removed by scan().
/// assemble() leaves F.h5 alone when assembled.json says it already holds exactly the completed
/// runs under the same header and F.h5 has not changed since (a resume with nothing to do, or
/// with only new runs to add, then copies nothing); anything else rebuilds it. The manifest is
/// written after F.h5's rename, so a kill between the two only costs a rebuild. F.h5's root
/// `command` attribute is therefore the command that last rebuilt it.
///
/// Commits (fsync of the temporary, rename, fsync of the folder: milliseconds of waiting on the
/// disk) run on one background thread while the next run computes, for run files and for F.h5
/// alike. All HDF5 work stays on the calling thread: a run file is built in memory (HDF5's core
/// driver) and the background thread only creates its temporary, writes the bytes and commits it,
/// so the file creation, which costs ~0.2-0.5 ms of file-system work while other files are being
/// synced, overlaps the next run too. At most one commit is in flight: the next
/// commit_run(), append(), assemble(), finish_commits() and the destructor wait for it first, so
/// every reader of a file sees it committed, and a failed commit is reported (thrown) by the next
/// of these calls. A run counts as completed once its file is committed: a kill during the few
/// milliseconds of a commit loses that one run (it is rerun by --resume), as a kill just before it
/// finished would; F.h5 is then its previous version.
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
/// Used for run files and by `curv landscape`.
void write_run_file(const std::string& path, const std::vector<std::string>& inputs, const std::string& command,
                    const std::string& group, const AttributeMap& attributes,
                    const std::function<void(const h5::Object&)>& write);

class StudyStore {
 public:
  /// `out` is F.h5; `inputs` (models, data) are refused as outputs. Creates nothing yet.
  StudyStore(std::filesystem::path out, std::vector<std::string> inputs);
  /// Waits for the commit in flight (its error, if any, is dropped: call finish_commits() first).
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

  /// Writes the run's file atomically: root attributes, then group <name> with `attributes`,
  /// then `write(group)`; the commit (rename) completes in the background (see above).
  void commit_run(const PlannedRun& run, const std::string& command, const AttributeMap& attributes,
                  const std::function<void(const h5::Object&)>& write);
  /// Rebuilds F.h5 from the files of the complete runs among `runs`, in that order (committed in
  /// the background).
  void assemble(const std::vector<const PlannedRun*>& runs, const StudyHeader& header);
  /// Copies the (complete) runs' groups into F.h5: one copy of F.h5 and one atomic commit for
  /// all of them, committed in the background. REQUIRES: assemble() ran in this process.
  void append(const std::vector<const PlannedRun*>& runs);
  /// Waits for the commit in flight; throws its error (std::runtime_error naming the file).
  void finish_commits();
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
  std::unique_ptr<CommitThread> m_thread;  // runs the commit in flight, if any (created on first use)
};

}  // namespace curv
