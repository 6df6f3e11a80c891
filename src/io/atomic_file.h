#pragma once
/// \file atomic_file.h
/// Every file curv writes (checkpoints, ONNX exports, spectra stores, quantization plans and
/// their HDF5 files) is replaced atomically through `AtomicFile`, and every command checks its
/// outputs with `check_output_paths` before it starts computing.
///
///     check_output_paths({out}, {model, data});   // at the start of a command: fail fast
///     ...
///     AtomicFile f(out, {model});                 // checks again, removes stale temporaries
///     write_everything_to(f.temp_path());
///     f.commit();                                 // rename onto `out`
///
/// Contract:
///   - The content goes to "<target>.curv-tmp.<pid>" in the target's folder and is renamed onto
///     the target by commit() (after fsync), so a file at the target is always complete. The new
///     file keeps the permission bits of the file it replaces.
///   - An output that is the same file as one of the inputs (same device and inode, so also
///     through symbolic or hard links) is refused, as is an existing read-only output, a folder,
///     a non-regular file (a device, a FIFO), and a target whose folder is missing or unwritable.
///   - Temporaries "<target>.curv-tmp.<pid>" whose process no longer runs (left by a killed
///     writer) are removed when the target is written again.
///   - If the object dies without commit() (an exception while writing), the temporary is removed.
///   - SIGINT, SIGTERM and SIGHUP while a temporary exists: a process-wide registry lists the live
///     temporaries, and an async-signal-safe handler unlinks them and re-raises the signal (the
///     process then dies of it, status 128 + signal in a shell), so the old output stays intact
///     and no temporary is left. The handler is installed only where the signal's disposition is
///     the default one, and only while a temporary exists: a program that handles the signal
///     itself (`curv train` stops after the current step) keeps its handler, and the write it is
///     doing completes normally.
///
/// Test hook: with the environment variable CURV_TEST_HOLD_BEFORE_RENAME=SECONDS, commit() waits
/// that long (at most 60 s) with the complete temporary in place before renaming it, so that tests
/// can interrupt a writer at that point.
///
/// Errors: std::runtime_error("<target>: <problem>"). Not copyable; one AtomicFile per target at
/// a time in a process (std::logic_error otherwise). Thread-safe between distinct targets.
#include <string>
#include <vector>

namespace curv {

/// Checks that each of `outputs` can be written without losing data (see the file comment), and
/// that no two outputs name the same file. Inputs that do not exist as files (built-in dataset
/// names, "random:...") are ignored. Throws std::runtime_error("<output>: <problem>").
void check_output_paths(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs = {});

class AtomicFile {
 public:
  /// Prepares to replace `target`: check_output_paths({target}, inputs), removes stale
  /// temporaries of the target (a walk of its folder; `remove_stale` false skips it, for callers
  /// that clean the folder themselves), and registers temp_path() for removal on a signal.
  /// Creates nothing: the writer creates temp_path() itself.
  explicit AtomicFile(std::string target, const std::vector<std::string>& inputs = {}, bool remove_stale = true);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  /// Removes temp_path() unless committed; never touches the target.
  ~AtomicFile();

  /// Syncs temp_path() to disk and renames it onto target(). Once only (std::logic_error).
  void commit();

  const std::string& target() const { return m_target; }
  /// "<target>.curv-tmp.<pid>"
  const std::string& temp_path() const { return m_temp; }
  bool committed() const { return m_committed; }

  /// The temporary name of `target` for process `pid`.
  static std::string temp_name(const std::string& target, long pid);

 private:
  std::string m_target;
  std::string m_temp;
  int m_slot = -1;  // index in the process-wide registry of live temporaries
  bool m_committed = false;
};

}  // namespace curv
