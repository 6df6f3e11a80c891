#pragma once
/// \file study_runner.h
/// Runs a planned study (study_plan.h) into a StudyStore (study_store.h): checks every selected
/// run against its inputs before the first one starts, skips the runs already committed (on
/// resume), executes the rest one by one through their RunKind (run_kind.h), commits each run's
/// file and keeps F.h5 current.
///
///     StudyPlan plan = plan_study("study.json");
///     StudyRunner runner(plan, "out.h5", {.resume = true});
///     runner.check();                       // std::invalid_argument naming the entry and run
///     StudyReport rep = runner.run(on_event);
///
/// F.h5 refresh: after a run, F.h5 is extended by the runs finished since the last refresh unless
/// that refresh was less than 1000 of its own durations ago, which bounds the time spent rewriting
/// F.h5 to about 0.1% of the study (a refresh of a 100-run F.h5 takes ~10 ms, so F.h5 then lags
/// the run files by up to ~10 s); F.h5 is rebuilt from the run files at the start (so it matches
/// the study as edited) and extended by the remaining runs at the end. Run files are committed
/// after every run, so throttling never loses a run (see study_store.h).
///
/// Distribution: execute() is the unit of work (one run in, one committed run file out); a
/// runner over several processes gives runs to workers and calls assemble on one of them.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "curvature/study_plan.h"
#include "curvature/study_store.h"

namespace curv {

struct StudyOptions {
  /// Keep the committed runs of a previous invocation (else an existing runs folder is refused).
  bool resume = false;
  /// Run only the runs whose name matches one of these shell patterns (F.h5 still gets every
  /// complete run of the study).
  std::vector<std::string> only;
  /// Continue after a failed run (it is reported, not committed) instead of stopping.
  bool keep_going = false;
  /// The command line, stored in every file.
  std::string command;
};

/// One run's outcome.
struct RunStatus {
  const PlannedRun* run = nullptr;
  std::string state;        // "done" (this invocation), "skipped" (committed before), "pending", "failed"
  double seconds = 0;       // execution
  std::int64_t products = 0;
  std::int64_t estimate = 0;  // estimated products (dry run)
  nlohmann::json summary = nlohmann::json::object();
  std::string error;
};

struct StudyReport {
  std::vector<RunStatus> runs;
  double seconds = 0;          // the whole invocation after planning
  double run_seconds = 0;      // summed execution of the runs
  double load_seconds = 0;     // loading models and data
  double store_seconds = 0;    // committing run files, refreshing F.h5, the resume scan (this thread)
  double background_cpu_seconds = 0;  // CPU time of the store's background thread (StudyStore)
  double check_seconds = 0;    // checking the runs (loads included)
  std::int64_t failed = 0;
};

/// Events for progress displays (called on the calling thread).
struct StudyEvent {
  enum class Type { Start, Progress, Done } type;
  const RunStatus* status = nullptr;  // the run concerned
  std::int64_t index = 0;             // 1-based among the runs to execute
  std::int64_t total = 0;             // runs to execute
  std::int64_t products = 0;          // Progress: products so far in this run
};
using StudyObserver = std::function<void(const StudyEvent&)>;

class StudyRunner {
 public:
  /// Refuses (std::runtime_error) an existing runs folder holding runs unless options.resume.
  StudyRunner(const StudyPlan& plan, std::filesystem::path out, StudyOptions options);
  ~StudyRunner();

  /// Loads the inputs of every selected run that is not complete and checks it with its kind.
  /// Throws std::invalid_argument("<study file>: <entry>: run '<name>': <problem>").
  void check();
  /// The selected runs with state "skipped" (complete) or "pending" and their estimated products.
  std::vector<RunStatus> dry_run();
  /// Executes the pending selected runs (check() first if it has not run).
  StudyReport run(const StudyObserver& observer = {});
  /// Executes one run and commits its run file (not F.h5).
  RunStatus execute(const PlannedRun& run, const RunProgress& progress = {});

  const StudyStore& store() const { return m_store; }

 private:
  const StudyPlan& m_plan;
  StudyOptions m_options;
  StudyStore m_store;
  InputCache m_inputs;
  std::vector<const PlannedRun*> m_selected;
  bool m_checked = false;
  double m_check_seconds = 0, m_scan_seconds = 0;
};

/// Every file a study's runs read (models, data, directions), resolved: outputs must not be one.
std::vector<std::string> study_inputs(const StudyPlan& plan);

}  // namespace curv
