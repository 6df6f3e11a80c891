// curv study: resumable batch studies of spectra, evaluations and landscapes declared in a JSON
// file (docs/study.md). Planning, checks, execution and storage are curvature/study_*.h.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "curvature/study_runner.h"
#include "src/core/timer.h"
#include "src/io/atomic_file.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct StudyCli {
  std::string file, out;
  bool resume = false, dry_run = false, json = false, keep_going = false, schema = false;
  std::vector<std::string> only;
  int threads = 0;
};

std::string duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

// An overall bar with ETA on a terminal, one line per finished run otherwise.
class StudyProgress {
 public:
  StudyProgress() : m_tty(isatty(fileno(stderr))) {}
  void operator()(const StudyEvent& e) {
    const std::string& name = e.status->run->name;
    if (e.type == StudyEvent::Type::Done) {
      if (e.status->state == "done") m_busy += e.status->seconds, ++m_done;
      const double eta = m_done ? m_busy / m_done * double(e.total - e.index) : NAN;
      if (m_tty) {
        bar(e.index, e.total, eta, name + " " + e.status->state);
        if (e.index == e.total) std::fprintf(stderr, "\n");
      } else {
        std::fprintf(stderr, "study: %lld/%lld %s %s in %.2f s, %lld products, ETA %s\n", (long long)e.index,
                     (long long)e.total, name.c_str(), e.status->state.c_str(), e.status->seconds,
                     (long long)e.status->products, duration(eta).c_str());
      }
    } else if (m_tty) {
      const double eta = m_done ? m_busy / m_done * double(e.total - e.index + 1) : NAN;
      bar(e.index - 1, e.total, eta, name + (e.products ? " " + std::to_string(e.products) + " products" : ""));
    }
  }

 private:
  void bar(std::int64_t done, std::int64_t total, double eta, const std::string& note) {
    const int width = 30, fill = total > 0 ? int(width * done / total) : 0;
    std::fprintf(stderr, "\rstudy [%s%s] %lld/%lld runs, ETA %s  %s\033[K", std::string(fill, '#').c_str(),
                 std::string(width - fill, '.').c_str(), (long long)done, (long long)total, duration(eta).c_str(),
                 note.c_str());
    std::fflush(stderr);
  }
  bool m_tty;
  double m_busy = 0;
  std::int64_t m_done = 0;
};

nlohmann::json run_json(const RunStatus& s) {
  nlohmann::json j = s.summary;
  j["name"] = s.run->name;
  j["kind"] = s.run->kind;
  j["state"] = s.state;
  j["hash"] = s.run->hash.substr(0, 16);
  if (s.state == "done") {
    j["seconds"] = s.seconds;
    j["hvps"] = s.products;
  }
  if (s.state == "pending" || s.estimate) j["estimated_hvps"] = s.estimate;
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

void print_table(const std::vector<RunStatus>& runs) {
  std::printf("%-48s %-11s %-8s %10s %12s  %s\n", "run", "kind", "state", "seconds", "hvps", "headline");
  for (const auto& s : runs) {
    std::string head;
    for (const char* k : {"lambda_max", "lambda_min", "trace", "loss", "accuracy", "barrier"})
      if (s.summary.contains(k) && s.summary[k].is_number()) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s %.5g  ", k, s.summary[k].get<double>());
        head += buf;
      }
    std::printf("%-48s %-11s %-8s %10.2f %12lld  %s\n", s.run->name.c_str(), s.run->kind.c_str(), s.state.c_str(),
                s.seconds, (long long)(s.state == "pending" ? s.estimate : s.products), head.c_str());
  }
}

}  // namespace

void register_study(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<StudyCli>();
  auto* app = root.add_subcommand("study", "Batch studies declared in a JSON file, resumable after any interruption");
  app->add_option("study", o->file, "The study file (docs/study.md)");
  app->add_option("--out", o->out, "Output HDF5 file (completed runs are kept in OUT.runs/)");
  app->add_flag("--resume", o->resume, "Keep the runs completed before (same settings) and run the rest");
  app->add_option("--only", o->only, "Run only the runs whose names match these shell patterns")->expected(1, -1);
  app->add_flag("--dry-run", o->dry_run, "List the runs, whether they are done, and their estimated products");
  app->add_flag("--keep-going", o->keep_going, "Go on after a failed run (exit status 2 at the end)");
  app->add_flag("--schema", o->schema, "Print the JSON Schema of study files and exit");
  app->add_option("--threads", o->threads, "Worker threads (0: all cores)")->check(in_range(0, 4096));
  app->add_flag("--json", o->json, "Print one JSON object with the table of runs on stdout");
  const std::string cmd = command_line(argc, argv);
  app->callback([o, cmd] {
    if (o->schema) {
      std::cout << study_schema().dump(2) << std::endl;
      return;
    }
    if (o->file.empty()) throw std::invalid_argument("study: the study file is required");
    if (o->out.empty()) throw std::invalid_argument("study: --out is required");
    auto tc = limit_threads(o->threads);
    Timer timer;
    const StudyPlan plan = plan_study(o->file);
    const double plan_seconds = timer.seconds();
    std::vector<std::string> inputs = study_inputs(plan);
    inputs.push_back(o->file);
    check_output_paths({o->out}, inputs);
    StudyOptions so;
    so.resume = o->resume;
    so.only = o->only;
    so.keep_going = o->keep_going;
    so.command = cmd;
    StudyRunner runner(plan, o->out, so);
    nlohmann::json j;
    j["study"] = plan.name;
    j["file"] = o->file;
    j["out"] = o->out;
    j["runs"] = nlohmann::json::array();
    if (o->dry_run) {
      const auto runs = runner.dry_run();
      std::int64_t total = 0;
      for (const auto& s : runs) {
        j["runs"].push_back(run_json(s));
        if (s.state == "pending") total += s.estimate;
      }
      j["estimated_hvps"] = total;
      if (o->json) return std::cout << j.dump() << std::endl, void();
      print_table(runs);
      std::printf("%zu runs, estimated %lld products for the pending ones\n", runs.size(), (long long)total);
      return;
    }
    runner.check();
    StudyProgress progress;
    const StudyReport rep = runner.run(std::ref(progress));
    for (const auto& s : rep.runs) j["runs"].push_back(run_json(s));
    const double total = timer.seconds();
    // The study's own cost: everything but executing runs and loading their models and data.
    const double overhead = std::max(0.0, total - rep.run_seconds - rep.load_seconds);
    j["seconds"] = total;
    j["plan_seconds"] = plan_seconds;
    j["run_seconds"] = rep.run_seconds;
    j["load_seconds"] = rep.load_seconds;
    j["store_seconds"] = rep.store_seconds;
    j["background_cpu_seconds"] = rep.background_cpu_seconds;
    j["overhead_seconds"] = overhead;
    j["overhead_fraction"] = rep.run_seconds > 0 ? overhead / rep.run_seconds : 0.0;
    j["failed"] = rep.failed;
    if (o->json) std::cout << j.dump() << std::endl;
    else print_table(rep.runs);
    std::fprintf(stderr, "study: %zu runs (%lld failed) in %.1f s, overhead %.3f s (%.2f%% of the runs' time) -> %s\n",
                 rep.runs.size(), (long long)rep.failed, total, overhead,
                 rep.run_seconds > 0 ? 100 * overhead / rep.run_seconds : 0.0, o->out.c_str());
    if (rep.failed > 0) {
      for (const auto& s : rep.runs)
        if (s.state == "failed") return std::cerr << "curv: " << s.error << "\n", std::exit(2);
    }
  });
}

}  // namespace curv::cli
