#include "curvature/study_runner.h"

#include <algorithm>
#include <stdexcept>

#include "src/core/timer.h"

namespace curv {

namespace {

constexpr double kRefreshFactor = 1000;  // F.h5 refresh at most every 1000 refresh durations (0.1%)

// A commit that failed in the background (StudyStore::finish_commits).
struct CommitError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string where(const StudyPlan& plan, const PlannedRun& run) {
  return plan.file.string() + ": " + run.entry + ": run '" + run.name + "': ";
}

}  // namespace

std::vector<std::string> study_inputs(const StudyPlan& plan) {
  InputCache paths(plan.root);
  std::vector<std::string> files;
  for (const auto& r : plan.runs)
    for (auto& f : paths.input_files(r.settings)) files.push_back(std::move(f));
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

StudyRunner::StudyRunner(const StudyPlan& plan, std::filesystem::path out, StudyOptions options)
    : m_plan(plan), m_options(std::move(options)), m_store(std::move(out), study_inputs(plan)), m_inputs(plan.root) {
  m_selected = select_runs(plan, m_options.only);
  Timer t;
  const std::size_t found = m_store.scan();
  m_scan_seconds = t.seconds();
  if (found > 0 && !m_options.resume)
    throw std::runtime_error(m_store.runs_dir().string() + ": holds " + std::to_string(found) +
                             " completed runs of an earlier study: pass --resume to keep them, or remove the folder");
}

StudyRunner::~StudyRunner() = default;

void StudyRunner::check() {
  Timer t;
  for (const PlannedRun* r : m_selected) {
    if (m_store.complete(*r)) continue;
    const RunKind* kind = find_run_kind(r->kind);
    try {
      kind->check(*r, m_inputs);
    } catch (const std::exception& e) {
      throw std::invalid_argument(where(m_plan, *r) + e.what());
    }
  }
  m_checked = true;
  m_check_seconds = t.seconds();
}

std::vector<RunStatus> StudyRunner::dry_run() {
  std::vector<RunStatus> out;
  for (const PlannedRun* r : m_selected) {
    RunStatus s;
    s.run = r;
    s.state = m_store.complete(*r) ? "skipped" : "pending";
    try {
      s.estimate = find_run_kind(r->kind)->estimate_products(*r, m_inputs);
    } catch (const std::exception& e) {
      throw std::invalid_argument(where(m_plan, *r) + e.what());
    }
    out.push_back(std::move(s));
  }
  return out;
}

RunStatus StudyRunner::execute(const PlannedRun& run, const RunProgress& progress) {
  const RunKind* kind = find_run_kind(run.kind);
  RunStatus s;
  s.run = &run;
  Timer t;
  RunResult r = kind->execute(run, m_inputs, progress);
  s.seconds = t.seconds();
  // Earlier commits ran in the background during this run; their failure is not this run's.
  try {
    m_store.check_commits();
  } catch (const std::exception& e) {
    throw CommitError(e.what());
  }
  AttributeMap attrs;
  attrs["kind"] = run.kind;
  attrs["settings"] = run.settings.dump();
  attrs["settings_hash"] = run.hash;
  attrs["entry"] = run.entry;
  for (const auto& [k, v] : r.attributes) attrs[k] = v;
  try {
    m_store.commit_run(run, attrs, r.write);  // may wait for room behind earlier commits
  } catch (const std::exception& e) {
    throw CommitError(e.what());
  }
  s.state = "done";
  s.products = r.products;
  s.summary = std::move(r.summary);
  return s;
}

StudyReport StudyRunner::run(const StudyObserver& observer) {
  Timer total;
  StudyReport rep;
  if (!m_checked) check();
  rep.check_seconds = m_check_seconds;
  rep.store_seconds = m_scan_seconds;
  StudyHeader header{m_options.command, m_plan.file.string(), m_plan.text, m_plan.name};
  std::vector<const PlannedRun*> all;
  for (const auto& r : m_plan.runs) all.push_back(&r);
  Timer st;
  m_store.assemble(all, header);
  double refresh_cost = st.seconds(), since_refresh = 0;
  rep.store_seconds += refresh_cost;
  std::vector<const PlannedRun*> unrefreshed;

  for (const PlannedRun* r : m_selected) {
    RunStatus s;
    s.run = r;
    s.state = m_store.complete(*r) ? "skipped" : "pending";
    rep.runs.push_back(std::move(s));
  }
  std::int64_t todo = 0, index = 0;
  for (const auto& s : rep.runs) todo += s.state == "pending";
  for (auto& s : rep.runs) {
    if (s.state != "pending") continue;
    const PlannedRun& run = *s.run;
    ++index;
    if (observer) observer({StudyEvent::Type::Start, &s, index, todo, 0});
    RunProgress progress;
    if (observer) progress = [&](std::int64_t p) { observer({StudyEvent::Type::Progress, &s, index, todo, p}); };
    Timer t;
    try {
      RunStatus done = execute(run, progress);
      s.state = done.state;
      s.seconds = done.seconds;
      s.products = done.products;
      s.summary = std::move(done.summary);
      rep.run_seconds += s.seconds;
      rep.store_seconds += t.seconds() - s.seconds;
      since_refresh += t.seconds();
      unrefreshed.push_back(&run);
    } catch (const CommitError&) {
      throw;  // an earlier file could not be committed (a full disk): the study stops
    } catch (const std::exception& e) {
      s.state = "failed";
      s.error = where(m_plan, run) + e.what();
      ++rep.failed;
      if (!m_options.keep_going) {
        // F.h5 gets every completed run before the error is reported.
        m_store.assemble(all, header);
        m_store.finish_commits();
        if (observer) observer({StudyEvent::Type::Done, &s, index, todo, 0});
        throw std::runtime_error(s.error);
      }
    }
    if (!unrefreshed.empty() && since_refresh >= kRefreshFactor * refresh_cost) {
      Timer a;
      m_store.append(unrefreshed);  // one copy of F.h5 for all of them
      unrefreshed.clear();
      refresh_cost = a.seconds();
      rep.store_seconds += refresh_cost;
      since_refresh = 0;
    }
    if (observer) observer({StudyEvent::Type::Done, &s, index, todo, 0});
  }
  // The final F.h5: the runs not yet appended, committed before the study returns.
  st.reset();
  m_store.append(unrefreshed);
  m_store.finish_commits();
  rep.store_seconds += st.seconds();
  rep.background_cpu_seconds = m_store.background_cpu_seconds();
  rep.seconds = total.seconds();
  rep.load_seconds = m_inputs.load_seconds();
  return rep;
}

}  // namespace curv
