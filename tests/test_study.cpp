// curv study (curvature/study_*.h, run_kind.h): planning (grids, globs, disjoint batches, names),
// validation before any run, runs equal to `curv spectrum` bit for bit, resume by settings hash,
// kill -9 at random moments, the run-kind registry, and the worked example of docs/study.md.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include "cli_run.h"
#include "curvature/spectra_reader.h"
#include "curvature/study_runner.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"
#include "test_util.h"

using namespace curv;
using nlohmann::json;

namespace {

const std::string kSrc = CURV_SOURCE_DIR;
const std::string kMlp = kSrc + "/data/fixtures/mlp.onnx", kMlpData = kSrc + "/data/fixtures/mlp.npz";
const std::string kCnn = kSrc + "/data/fmnist_cnn.onnx";

curv_test::fs::path fresh(const std::string& tag) {
  const auto d = curv_test::tmpdir() / tag;
  curv_test::fs::remove_all(d);
  curv_test::fs::create_directories(d);
  return d;
}

std::string write_study(const curv_test::fs::path& dir, const std::string& name, const json& study) {
  const auto p = dir / name;
  curv_test::write_text(p, study.dump(1));
  return p.string();
}

// `j` with the keys of `patch` set.
json with(json j, const json& patch) {
  j.update(patch);
  return j;
}

std::set<std::string> run_files(const curv_test::fs::path& dir) {
  std::set<std::string> s;
  if (!curv_test::fs::exists(dir)) return s;
  for (const auto& e : curv_test::fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

}  // namespace

TEST_CASE("plan: grids are cartesian products in axis order, globs expand in name order, batches are disjoint") {
  const auto d = fresh("plan");
  for (const char* f : {"m.epoch002.onnx", "m.epoch001.onnx", "m.epoch010.onnx"})
    curv_test::fs::copy_file(kMlp, d / f);
  // Written as text: the axes' order is the order of the file.
  curv_test::write_text(d / "p.json", R"({"name": "p",
    "defaults": {"data": ")" + kMlpData + R"(", "top_k": 2},
    "runs": [{"kind": "eval", "model": "m.epoch*.onnx"}],
    "grids": [{"kind": "spectrum", "model": ")" + kMlp + R"(", "axes": {"samples": [2, 1], "batch_index": [0, 1]}},
              {"kind": "spectrum", "name": "c{curvature}-s{seed}", "model": ")" + kMlp + R"(",
               "axes": {"curvature": ["ggn", "hessian"], "seed": [3]}}]})");
  const StudyPlan plan = plan_study(d / "p.json");
  std::vector<std::string> names;
  for (const auto& r : plan.runs) names.push_back(r.name);
  CHECK(names == std::vector<std::string>{"eval.model=m.epoch001", "eval.model=m.epoch002", "eval.model=m.epoch010",
                                          "spectrum.samples=2,batch_index=0", "spectrum.samples=2,batch_index=1",
                                          "spectrum.samples=1,batch_index=0", "spectrum.samples=1,batch_index=1",
                                          "cggn-s3", "chessian-s3"});
  CHECK(plan.runs[0].settings["model"] == "m.epoch001.onnx");
  CHECK(plan.runs[3].settings["top_k"] == 2);    // defaults reach the kinds that take them
  CHECK_FALSE(plan.runs[0].settings.contains("top_k"));
  CHECK(plan.runs[0].hash != plan.runs[1].hash);  // the same content at another path
  CHECK(plan.runs[0].hash.size() == 64);
  // Disjoint batches: samples [offset + i * samples, ...).
  InputCache inputs(plan.root);
  const Dataset& b0 = inputs.data(plan.runs[3].settings);
  const Dataset& b1 = inputs.data(plan.runs[4].settings);
  REQUIRE(b0.size() == 2);
  REQUIRE(b1.size() == 2);
  const std::size_t per = b0.x.size() / 2;
  const Dataset& all = inputs.data(with(plan.runs[3].settings, {{"samples", 0}}));
  CHECK(std::equal(b1.x.begin(), b1.x.end(), all.x.begin() + 2 * per));
  CHECK(select_runs(plan, {"c*"}).size() == 2);
  const std::string expect = (d / "p.json").string() + ": no run is named like 'nothing*'";
  CHECK_THROWS_WITH_AS(select_runs(plan, {"nothing*"}), expect.c_str(), std::invalid_argument);
}

TEST_CASE("plan: the same settings give the same hash, any change (or a changed model file) another") {
  const auto d = fresh("hash");
  curv_test::fs::copy_file(kMlp, d / "m.onnx");
  auto plan = [&](int top) {
    return plan_study(write_study(d, "h.json", {{"runs", {{{"kind", "spectrum"}, {"model", "m.onnx"},
                                                           {"data", kMlpData}, {"top_k", top}}}}}));
  };
  const std::string h1 = plan(1).runs[0].hash;
  CHECK(plan(1).runs[0].hash == h1);
  CHECK(plan(2).runs[0].hash != h1);
  curv_test::fs::copy_file(kCnn, d / "m.onnx", curv_test::fs::copy_options::overwrite_existing);
  CHECK(plan(1).runs[0].hash != h1);
}

TEST_CASE("a bad study file is refused before any run, in one line naming the entry") {
  const auto d = fresh("bad");
  const auto f = (d / "s.json").string();
  auto refused = [&](const json& study, const std::string& what) {
    curv_test::write_text(f, study.dump());
    const std::string msg = curv_test::thrown_message<std::invalid_argument>([&] { plan_study(f); });
    INFO(msg);
    CHECK(msg.rfind(f + ": ", 0) == 0);
    CHECK(msg.find(what) != std::string::npos);
  };
  const json run = {{"kind", "spectrum"}, {"model", kMlp}, {"data", kMlpData}};
  refused({{"runz", json::array()}}, "unknown key 'runz'");
  refused({{"runs", {with(run, {{"top_kk", 3}})}}}, "runs[0]: unknown key 'top_kk' for kind 'spectrum'");
  refused({{"runs", {with(run, {{"kind", "spectra"}})}}}, "runs[0]: unknown kind 'spectra'");
  refused({{"runs", {with(run, {{"top_k", -1}})}}}, "runs[0]: top_k: -1 is outside [0, 100000]");
  refused({{"runs", {with(run, {{"curvature", "fisher2"}})}}}, "curvature: 'fisher2' is not one of hessian, ggn, ef");
  refused({{"grids", {with(run, {{"axes", {{"seed", json::array()}}}})}}},
          "grids[0]: axes.seed: expected a non-empty array of values");
  refused({{"grids", {with(run, {{"axes", {{"sed", {1}}}}})}}}, "grids[0]: axes: unknown setting 'sed'");
  refused({{"grids", {with(run, {{"axes", {{"seed", {1, 2.5}}}}})}}}, "grids[0]: axes.seed[1]: seed: 2.5 is not an integer");
  refused({{"runs", {with(run, {{"model", "nowhere/*.h5"}})}}}, "runs[0]: model 'nowhere/*.h5' matches no file");
  refused({{"runs", {with(run, {{"model", "missing.onnx"}})}}}, "runs[0]: model 'missing.onnx': no such file");
  refused({{"runs", {run, run}}}, "runs[1]: run name 'spectrum' is also the name of a run of runs[0]");
  refused({{"defaults", {{"top_kay", 1}}}, {"runs", {run}}}, "defaults: unknown setting 'top_kay'");
  refused({{"runs", {with(run, {{"name", "a/b"}})}}}, "run name 'a/b' must be non-empty, without '/'");
  refused(json::object(), "declares no runs");
  curv_test::write_text(f, "{\"runs\": [");
  CHECK(curv_test::thrown_message<std::invalid_argument>([&] { plan_study(f); }).find(f + ": not valid JSON") == 0);

  // A model/data mismatch in one run of a grid: found by check(), before anything is written.
  const json grid = {{"grids", {{{"kind", "spectrum"}, {"data", kMlpData}, {"axes", {{"model", {kMlp, kCnn}}}}}}}};
  const StudyPlan plan = plan_study(write_study(d, "g.json", grid));
  StudyRunner runner(plan, d / "out.h5", {});
  const std::string msg = curv_test::thrown_message<std::invalid_argument>([&] { runner.check(); });
  CHECK(msg.find("g.json: grids[0]: run 'spectrum.model=fmnist_cnn': ") != std::string::npos);
  CHECK(msg.find("do not fit the model input") != std::string::npos);
  CHECK_FALSE(curv_test::fs::exists(d / "out.h5"));

  // Through the command line: one line, exit status 2, no output file.
  using curv_test::check_bad;
  check_bad("study " + (d / "g.json").string() + " --out " + (d / "o.h5").string(), "grids[0]: run 'spectrum.model=fmnist_cnn'");
  check_bad("study " + f + " --out " + (d / "o.h5").string(), "not valid JSON");
  check_bad("study " + (d / "nope.json").string() + " --out " + (d / "o.h5").string(), "nope.json: no such file");
  CHECK_FALSE(curv_test::fs::exists(d / "o.h5"));
  CHECK_FALSE(curv_test::fs::exists(d / "o.h5.runs"));
}

TEST_CASE("a study's spectrum runs equal `curv spectrum` with the same settings, bit for bit") {
  using curv_test::curv;
  const auto d = fresh("bitwise");
  const json study = {
      {"defaults", {{"model", kMlp}, {"data", kMlpData}, {"top_k", 2}, {"bottom_k", 1}, {"trace_probes", 6},
                    {"density", true}, {"slq_steps", 6}, {"slq_probes", 2}, {"blocks", "layers"}, {"diag", true},
                    {"diag_probes", 3}, {"save_vectors", true}, {"gradient", true}}},
      {"grids", {{{"kind", "spectrum"}, {"name", "{curvature}.{seed}"},
                  {"axes", {{"curvature", {"hessian", "ggn"}}, {"seed", {1, 5}}}}}}}};
  const auto file = write_study(d, "s.json", study);
  curv_test::Run r = curv("study " + file + " --out " + (d / "study.h5").string() + " --json");
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  REQUIRE(j["runs"].size() == 4);
  const h5::Object f = h5::Object::open((d / "study.h5").string());
  int datasets = 0;
  for (const char* curvature : {"hessian", "ggn"})
    for (int seed : {1, 5}) {
      const std::string out = (d / (std::string(curvature) + std::to_string(seed) + ".h5")).string();
      r = curv("spectrum " + kMlp + " --data " + kMlpData + " --curvature " + curvature + " --seed " +
               std::to_string(seed) + " --top-k 2 --bottom-k 1 --trace-probes 6 --density --slq-steps 6 " +
               "--slq-probes 2 --blocks layers --diag --diag-probes 3 --save-vectors --gradient --out " + out);
      INFO(r.err);
      REQUIRE(r.status == 0);
      const h5::Object s = h5::Object::open(out);
      const std::string group = "/" + std::string(curvature) + "." + std::to_string(seed);
      // The study's group holds the same tree as curv spectrum's "spectrum" group.
      const h5::Object a = s.open_object("/spectrum"), b = f.open_object(group);
      CHECK(a.children() == b.children());
      int n = 0;
      // Walk both trees in parallel by relative paths.
      std::function<void(const std::string&)> walk = [&](const std::string& rel) {
        const h5::Object ga = s.open_object("/spectrum" + rel), gb = f.open_object(group + rel);
        CHECK(ga.children() == gb.children());
        for (const auto& c : ga.children()) {
          if (s.open_object("/spectrum" + rel + "/" + c).is_group()) {
            walk(rel + "/" + c);
            continue;
          }
          INFO(group, rel, "/", c);
          const auto va = ga.read_f64(c), vb = gb.read_f64(c);
          CHECK(va.shape == vb.shape);
          CHECK(std::equal(va.data.begin(), va.data.end(), vb.data.begin(), vb.data.end(),
                           [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); }));
          ++n;
        }
      };
      walk("");
      CHECK(n >= 20);  // eigen, trace, diag, density, gradient, per block
      datasets += n;
      for (const char* attr : {"loss", "hvps", "samples"})
        CHECK(s.open_object("/spectrum").read_number_attribute(attr) == f.open_object(group).read_number_attribute(attr));
      CHECK(f.open_object(group).read_string_attribute("kind") == "spectrum");
    }
  MESSAGE(datasets << " datasets compared");
}

TEST_CASE("--resume skips runs whose settings are unchanged and reruns edited ones, and without it a runs folder is refused") {
  using curv_test::curv;
  const auto d = fresh("resume");
  json study = {{"defaults", {{"model", kMlp}, {"data", kMlpData}, {"trace_probes", 4}}},
                {"grids", {{{"kind", "spectrum"}, {"axes", {{"seed", {1, 2, 3}}}}}}},
                {"runs", {{{"kind", "eval"}}}}};
  const std::string file = write_study(d, "s.json", study), out = (d / "o.h5").string();
  curv_test::Run r = curv("study " + file + " --out " + out + " --json");
  REQUIRE(r.status == 0);
  auto states = [](const std::string& text) {
    std::map<std::string, std::string> m;
    const json j = json::parse(text);  // named: a range over a temporary's member would dangle
    for (const auto& run : j["runs"]) m[run["name"].get<std::string>()] = run["state"].get<std::string>();
    return m;
  };
  CHECK(states(r.out) == std::map<std::string, std::string>{{"eval", "done"}, {"spectrum.seed=1", "done"},
                                                           {"spectrum.seed=2", "done"}, {"spectrum.seed=3", "done"}});
  curv_test::check_bad("study " + file + " --out " + out, "holds 4 completed runs of an earlier study: pass --resume");
  r = curv("study " + file + " --out " + out + " --resume --json");
  REQUIRE(r.status == 0);
  for (const auto& [name, state] : states(r.out)) CHECK(state == "skipped");
  // Edit: seed 3 -> 4 and more probes for every spectrum run; eval unchanged.
  study["grids"][0]["axes"]["seed"] = {1, 2, 4};
  study["defaults"]["trace_probes"] = 5;
  write_study(d, "s.json", study);
  r = curv("study " + file + " --out " + out + " --resume --json --dry-run");
  REQUIRE(r.status == 0);
  CHECK(states(r.out) == std::map<std::string, std::string>{{"eval", "skipped"}, {"spectrum.seed=1", "pending"},
                                                           {"spectrum.seed=2", "pending"}, {"spectrum.seed=4", "pending"}});
  r = curv("study " + file + " --out " + out + " --resume --only 'spectrum.seed=[12]' --json");
  REQUIRE(r.status == 0);
  CHECK(states(r.out).size() == 2u);
  SpectraReader f(out);
  std::vector<std::string> groups = f.children("/");
  std::sort(groups.begin(), groups.end());
  CHECK(groups == std::vector<std::string>{"eval", "spectrum.seed=1", "spectrum.seed=2"});  // seed=4 not run yet
  CHECK(f.read("/spectrum.seed=1/trace/samples").data.size() == 5u);
  r = curv("study " + file + " --out " + out + " --resume --json");
  REQUIRE(r.status == 0);
  CHECK(states(r.out)["spectrum.seed=4"] == "done");
  CHECK(SpectraReader(out).children("/").size() == 4u);
}

TEST_CASE("--resume keeps F.h5 when it already holds the completed runs, and rebuilds it when anything differs") {
  using curv_test::curv;
  const auto d = fresh("resume_keep");
  json study = {{"name", "first"},
                {"defaults", {{"model", kMlp}, {"data", kMlpData}, {"trace_probes", 4}}},
                {"grids", {{{"kind", "spectrum"}, {"axes", {{"seed", {1, 2}}}}}}}};
  const std::string file = write_study(d, "s.json", study), out = (d / "o.h5").string();
  REQUIRE(curv("study " + file + " --out " + out).status == 0);
  struct stat before {};
  REQUIRE(::stat(out.c_str(), &before) == 0);
  auto same_file = [&](const struct stat& a) {
    struct stat now {};
    REQUIRE(::stat(out.c_str(), &now) == 0);
    return now.st_ino == a.st_ino && now.st_mtim.tv_sec == a.st_mtim.tv_sec && now.st_mtim.tv_nsec == a.st_mtim.tv_nsec;
  };
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK(same_file(before));  // nothing to do: F.h5 untouched
  // One more run: F.h5 is extended (a new file), not rebuilt from scratch, and holds all three.
  study["grids"][0]["axes"]["seed"] = {1, 2, 3};
  write_study(d, "s.json", study);
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK_FALSE(same_file(before));
  CHECK(SpectraReader(out).children("/").size() == 3u);
  REQUIRE(::stat(out.c_str(), &before) == 0);
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK(same_file(before));
  // A renamed study: rebuilt, with the new name.
  study["name"] = "second";
  write_study(d, "s.json", study);
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK_FALSE(same_file(before));
  CHECK(h5::Object::open(out).read_string_attribute("study_name") == "second");
  // F.h5 changed by someone else (here: emptied of its runs by h5py-like rewriting): rebuilt.
  REQUIRE(::stat(out.c_str(), &before) == 0);
  {
    h5::Object f = h5::Object::create(out);
    f.write_attribute("format", "curv");
    f.close();
  }
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK(SpectraReader(out).children("/").size() == 3u);
  // A manifest that is not JSON (or truncated): F.h5 is rebuilt, nothing fails.
  REQUIRE(::stat(out.c_str(), &before) == 0);
  curv_test::write_text(d / "o.h5.runs" / "assembled.json", "{\"version\": 1, \"runs\": [\x01");
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK_FALSE(same_file(before));
  CHECK(SpectraReader(out).children("/").size() == 3u);
  // A run file removed: that run is computed again and F.h5 rebuilt without a stale copy.
  REQUIRE(::stat(out.c_str(), &before) == 0);
  for (const auto& name : run_files(d / "o.h5.runs"))
    if (name.rfind("spectrum.seed=2.", 0) == 0) curv_test::fs::remove(d / "o.h5.runs" / name);
  const curv_test::Run r = curv("study " + file + " --out " + out + " --resume --json");
  REQUIRE(r.status == 0);
  CHECK_FALSE(same_file(before));
  CHECK(json::parse(r.out)["runs"][1]["state"] == "done");
  CHECK(SpectraReader(out).children("/").size() == 3u);
  // A damaged run file (cut short) when F.h5 must be rebuilt: exit 2 naming that file, and F.h5
  // stays the last complete version.
  std::string victim;
  for (const auto& name : run_files(d / "o.h5.runs"))
    if (name.rfind("spectrum.seed=1.", 0) == 0) victim = (d / "o.h5.runs" / name).string();
  REQUIRE_FALSE(victim.empty());
  curv_test::fs::resize_file(victim, curv_test::fs::file_size(victim) / 2);
  curv_test::fs::remove(d / "o.h5.runs" / "assembled.json");  // forces the rebuild
  REQUIRE(::stat(out.c_str(), &before) == 0);
  const curv_test::Run bad = curv("study " + file + " --out " + out + " --resume");
  CHECK(bad.status == 2);
  CHECK(bad.err.find(victim + ": bad recording: truncated") != std::string::npos);
  CHECK(same_file(before));
  CHECK(SpectraReader(out).children("/").size() == 3u);
  // Removing it reruns that run.
  curv_test::fs::remove(victim);
  REQUIRE(curv("study " + file + " --out " + out + " --resume").status == 0);
  CHECK(SpectraReader(out).children("/").size() == 3u);
}

TEST_CASE("kill -9 at 10 random moments: --resume completes the study with no completed run recomputed or lost") {
  using curv_test::curv;
  const auto d = fresh("kill");
  // A fast model and enough runs that kills land in planning, in runs, and in commits.
  const json study = {{"defaults", {{"model", kMlp}, {"data", kMlpData}, {"top_k", 3}, {"trace_probes", 5000},
                                    {"probe_batch", 1}, {"density", true}, {"slq_steps", 8}}},
                      {"grids", {{{"kind", "spectrum"}, {"axes", {{"seed", {1, 2, 3, 4, 5, 6, 7, 8}}}}}}}};
  const std::string file = write_study(d, "s.json", study);
  // The reference: one uninterrupted study, timed.
  const auto t0 = std::chrono::steady_clock::now();
  curv_test::Run ref = curv("study " + file + " --out " + (d / "ref.h5").string() + " --json");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(ref.status == 0);
  const h5::Object reference = h5::Object::open((d / "ref.h5").string());
  auto same_as_reference = [&](const std::string& out, const std::string& group) {
    const h5::Object f = h5::Object::open(out);
    for (const char* ds : {"/eigen/values", "/trace/estimate", "/density/nodes"}) {
      const auto a = f.read_f64(group + ds), b = reference.read_f64(group + ds);
      CHECK(a.data == b.data);
    }
  };
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 10; ++trial) {
    const auto out = d / ("k" + std::to_string(trial) + ".h5");
    const double at = std::uniform_real_distribution<double>(0.0, 1.1 * seconds)(rng);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl(CURV_BINARY, CURV_BINARY, "study", file.c_str(), "--out", out.c_str(), "--resume", (char*)nullptr);
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(at));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    INFO("trial ", trial, ", kill after ", at, " s (", std::string(WIFSIGNALED(status) ? "killed" : "had finished"), ")");
    // What was committed at the kill: run files (temporaries do not count).
    std::set<std::string> committed;
    for (const auto& name : run_files(out.string() + ".runs"))
      if (name.find(".curv-tmp.") == std::string::npos) committed.insert(name.substr(0, name.find(".", 9)));
    // F.h5, if it exists, is readable and holds only complete runs.
    if (curv_test::fs::exists(out)) {
      SpectraReader f(out);
      for (const auto& g : f.children("/")) same_as_reference(out.string(), "/" + g);
    }
    curv_test::Run r = curv("study " + file + " --out " + out.string() + " --resume --json");
    REQUIRE(r.status == 0);
    int skipped = 0;
    const json resumed = json::parse(r.out);
    REQUIRE(resumed["runs"].size() == 8u);
    for (const auto& run : resumed["runs"]) {
      const std::string name = run["name"];
      const bool was_done = committed.count(name) > 0;
      CHECK(run["state"] == (was_done ? "skipped" : "done"));
      skipped += was_done;
      same_as_reference(out.string(), "/" + name);
    }
    MESSAGE("trial " << trial << ": killed at " << at << " s, " << skipped << " of 8 runs were committed");
    CHECK(SpectraReader(out).children("/").size() == 8u);
    for (const auto& name : run_files(out.string() + ".runs")) CHECK(name.find(".curv-tmp.") == std::string::npos);
  }
}

namespace {

// A kind from outside the built-in ones, registered at run time: stores 2 * value.
class DoubleKind final : public RunKind {
 public:
  std::string name() const override { return "double"; }
  std::string description() const override { return "test kind"; }
  const SettingTable& settings() const override {
    static const SettingTable t = {number_setting("value", 1.0, -10, 10, "a number")};
    return t;
  }
  void check(const PlannedRun& run, InputCache&) const override {
    if (run.settings["value"].get<double>() == 0) throw std::invalid_argument("value: must not be 0");
  }
  std::int64_t estimate_products(const PlannedRun&, InputCache&) const override { return 0; }
  RunResult execute(const PlannedRun& run, InputCache&, const RunProgress&) const override {
    RunResult r;
    const double v = 2 * run.settings["value"].get<double>();
    r.attributes["doubled"] = v;
    r.summary["doubled"] = v;
    r.write = [v](const h5::Object& g) { g.write_dataset("doubled", std::span<const double>(&v, 1), {}); };
    return r;
  }
};

}  // namespace

TEST_CASE("StudyStore: run files are written in the background, and a failed write is reported by the next call, naming the file") {
  const auto dir = fresh("store_background");
  StudyStore store(dir / "out.h5", {});
  CHECK(store.scan() == 0);
  auto planned = [](const std::string& name) {
    PlannedRun r;
    r.name = name;
    r.kind = "eval";
    r.entry = "runs[0]";
    r.settings = json{{"seed", 1}};
    r.hash = std::string(64, 'a');
    return r;
  };
  const PlannedRun a = planned("a"), b = planned("b"), c = planned("c");
  const std::vector<double> v{1, 2, 3};
  auto write = [&](const h5::Object& g) { g.write_dataset("values", std::span<const double>(v), {3}); };
  store.commit_run(a, {{"kind", std::string("eval")}}, write);
  CHECK(store.complete(a));
  store.finish_commits();
  {
    // The run file is the recording of the run group's writes.
    std::ifstream in(store.run_path(a), std::ios::binary);
    const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    h5::Object f = h5::Object::create_in_memory("check.h5");
    h5::Object::replay(bytes, f.create_group("a"), store.run_path(a).string());
    CHECK(f.open_object("a").read_string_attribute("kind") == "eval");
    CHECK(f.open_object("a").read_f64("values").data == v);
  }
  // A folder where b's temporary goes: the background write fails, and the next call says so.
  const auto blocker = AtomicFile::temp_name(store.run_path(b).string(), static_cast<long>(getpid()));
  curv_test::fs::create_directories(blocker);
  store.commit_run(b, {}, write);
  try {
    store.finish_commits();
    FAIL("the failed write was not reported");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find(store.run_path(b).string()) != std::string::npos);
  }
  CHECK_FALSE(curv_test::fs::exists(store.run_path(b)));
  store.finish_commits();  // reported once
  curv_test::fs::remove(blocker);
  store.commit_run(c, {}, write);  // the thread goes on after a failure
  store.finish_commits();
  CHECK(curv_test::fs::exists(store.run_path(c)));
  CHECK(run_files(store.runs_dir()) == std::set<std::string>{store.run_path(a).filename().string(),
                                                               store.run_path(c).filename().string()});
}

TEST_CASE("the run-kind registry: a registered kind plans, checks, runs and stores like the built-in ones") {
  static const DoubleKind kind;
  if (!find_run_kind("double")) register_run_kind(&kind);
  CHECK_THROWS_AS(register_run_kind(&kind), std::invalid_argument);
  CHECK(run_kinds().size() >= 5u);
  const auto d = fresh("registry");
  const json study = {{"grids", {{{"kind", "double"}, {"model", kMlp}, {"data", kMlpData},
                                  {"axes", {{"value", {1.5, -2}}}}}}}};
  const StudyPlan plan = plan_study(write_study(d, "s.json", study));
  StudyRunner runner(plan, d / "o.h5", {});
  const StudyReport rep = runner.run();
  REQUIRE(rep.runs.size() == 2u);
  CHECK(rep.runs[1].summary["doubled"] == -4.0);
  SpectraReader f(d / "o.h5");
  CHECK(f.read_scalar("/double.value=1.5/doubled") == 3.0);
  CHECK(f.string_attribute("/double.value=-2", "kind") == "double");
  CHECK(json::parse(f.string_attribute("/double.value=-2", "settings"))["value"] == -2.0);
  CHECK(study_schema()["properties"]["runs"]["items"]["oneOf"].size() == run_kinds().size());
}

TEST_CASE("docs/study.md: the worked example runs, its h5py snippet reads the result, and the schema is current") {
  using curv_test::curv;
  const std::string doc = curv_test::read_bytes(kSrc + "/docs/study.md");
  auto block = [&](const std::string& after, const std::string& lang) {
    const auto start = doc.find(after);
    REQUIRE(start != std::string::npos);
    const auto open = doc.find("```" + lang + "\n", start);
    REQUIRE(open != std::string::npos);
    const auto body = open + 4 + lang.size();
    return doc.substr(body, doc.find("```", body) - body);
  };
  // The example in the page is the file docs/studies/example.json.
  const std::string example = block("## Worked example", "json");
  CHECK(example == curv_test::read_bytes(kSrc + "/docs/studies/example.json"));
  const auto d = fresh("docs");
  curv_test::Run r = curv("study " + kSrc + "/docs/studies/example.json --out " + (d / "example.h5").string() + " --json");
  INFO(r.err);
  REQUIRE(r.status == 0);
  curv_test::write_text(d / "read.py", block("## Reading the results", "python"));
  const std::string cmd = "cd " + d.string() + " && /usr/bin/python3 read.py > read.log 2>&1";
  const int rc = std::system(cmd.c_str());
  INFO(curv_test::read_bytes(d / "read.log"));
  CHECK(rc == 0);
  // The schema file the page points to is the one curv prints.
  CHECK(doc.find("(study.schema.json)") != std::string::npos);
  r = curv("study --schema");
  REQUIRE(r.status == 0);
  CHECK(json::parse(curv_test::read_bytes(kSrc + "/docs/study.schema.json")) == json::parse(r.out));
}

TEST_CASE("relabel folds integer labels into C classes (y mod C) and refuses float targets") {
  const auto d = fresh("relabel");
  InputCache inputs(d);
  json s = resolve_settings(eval_run_kind(), {{"model", kMlp}, {"data", kMlpData}});
  const Dataset all = inputs.data(s);
  s["relabel"] = 2;
  const Dataset& folded = inputs.data(s);
  REQUIRE(folded.labels.size() == all.labels.size());
  for (std::size_t i = 0; i < all.labels.size(); ++i) CHECK(folded.labels[i] == all.labels[i] % 2);
  s["data"] = kSrc + "/data/fixtures/mlp_mse.npz";
  CHECK(curv_test::thrown_message<std::invalid_argument>([&] { inputs.data(s); }).find("needs integer labels") !=
        std::string::npos);
}
