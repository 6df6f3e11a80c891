// Estimators on real curvature operators of tiny networks (float64) against the dense Hessian,
// per-block consistency, thread-count independence, and the `curv spectrum` file contract.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <Eigen/Eigenvalues>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/slq_density.h"
#include "curvature/spectra_reader.h"
#include "curvature/spectra_store.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "tests/test_util.h"

using namespace curv;
namespace fs = std::filesystem;

namespace {

constexpr double kEigTol = 1e-6;

Dataset data(const Shape& s, std::int64_t n, std::int64_t classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  Dataset d;
  d.source = "synthetic";
  d.sample_shape = s;
  d.x.resize(n * numel(s));
  for (auto& v : d.x) v = nd(rng);
  for (std::int64_t i = 0; i < n; ++i) d.labels.push_back(std::int64_t(rng() % classes));
  return d;
}

Model small_cnn() {
  ModelBuilder b({1, 6, 6}, 3);
  int x = b.max_pool(b.unary(b.conv(b.input(), 3, 3, 1, 1, "conv"), UnaryKind::Tanh), 2, 2);
  x = b.unary(b.linear(b.flatten(x), 6, "fc1"), UnaryKind::Gelu);
  return b.finish(b.linear(x, 3, "fc2"));
}

ObjectiveOptions f64() {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = 4;
  return o;
}

}  // namespace

TEST_CASE("top/bottom eigenvalues and trace of a CNN Hessian equal the dense Hessian's") {
  Model m = small_cnn();
  Dataset d = data({1, 6, 6}, 10, 3, 4);
  auto obj = Objective::create(m, d, f64());
  CurvatureOperator H(*obj, Curvature::Hessian);
  ExactSpectrum ex(H);
  ex.compute();
  const Eigen::VectorXd all = ex.eigenvalues();  // ascending
  EigenSolverOptions eo;
  eo.top = 3;
  eo.bottom = 2;
  eo.tol = 1e-12;
  EigenSolver es(H, eo);
  es.compute();
  INFO("P = ", H.rows(), ", top ", es.top_values().transpose(), ", bottom ", es.bottom_values().transpose());
  INFO("residuals ", es.top_residuals().transpose());
  for (int i = 0; i < 3; ++i) CHECK(std::abs(es.top_values()[i] - all[all.size() - 1 - i]) < kEigTol * std::abs(all[all.size() - 1]));
  for (int i = 0; i < 2; ++i) CHECK(std::abs(es.bottom_values()[i] - all[i]) < kEigTol * std::abs(all[all.size() - 1]));
  CHECK(all[0] < 0);  // a Hessian away from a minimum is indefinite: the bottom is a real test
  // Hutchinson within 4 standard errors of the exact trace.
  HutchinsonTraceOptions ho;
  ho.probes = 200;
  ho.seed = 5;
  HutchinsonTrace ht(H, ho);
  ht.compute();
  INFO("trace ", ht.estimate(), " +- ", ht.std_error(), " exact ", ex.trace());
  CHECK(std::abs(ht.estimate() - ex.trace()) < 4 * ht.std_error());
}

TEST_CASE("per-block traces sum to the full trace and block operators are diagonal blocks") {
  Model m = small_cnn();
  Dataset d = data({1, 6, 6}, 8, 3, 6);
  auto obj = Objective::create(m, d, f64());
  for (auto kind : {Curvature::Hessian, Curvature::GGN}) {
    CurvatureOperator full(*obj, kind);
    ExactSpectrum ex(full);
    ex.compute();
    double sum = 0;
    for (const auto& b : m.blocks("layers")) {
      CurvatureOperator op(*obj, kind, b.params);
      ExactSpectrum eb(op);
      eb.compute();
      sum += eb.trace();
    }
    CHECK(std::abs(sum - ex.trace()) < 1e-10 * std::abs(ex.trace()));
  }
}

TEST_CASE("same seed, same spectrum for 1 and 2 threads (float32 model)") {
  Model m = small_cnn();
  Dataset d = data({1, 6, 6}, 24, 3, 7);
  ObjectiveOptions o;
  o.micro_batch = 4;
  auto run = [&](int threads) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    auto obj = Objective::create(m, d, o);
    CurvatureOperator H(*obj, Curvature::Hessian);
    EigenSolverOptions eo;
    eo.top = 2;
    EigenSolver es(H, eo);
    es.compute();
    HutchinsonTraceOptions ho;
    ho.probes = 16;
    HutchinsonTrace ht(H, ho);
    ht.compute();
    SlqDensityOptions so;
    so.steps = 10;
    so.probes = 2;
    SlqDensity slq(H, so);
    slq.compute();
    return std::make_tuple(es.top_values(), ht.estimate(), slq.nodes());
  };
  auto [e1, t1, n1] = run(1);
  auto [e2, t2, n2] = run(2);
  CHECK(e1 == e2);
  CHECK(t1 == t2);
  CHECK(n1 == n2);
}

namespace {

int run_cli(const std::string& args) {
  const std::string cmd = std::string(CURV_BINARY) + " " + args + " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool any_file_with_prefix(const fs::path& dir, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("curv spectrum writes a readable file and bad or interrupted runs leave nothing at the target") {
  const fs::path dir = fs::temp_directory_path() / ("curv_test_spectrum_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string model = std::string(CURV_SOURCE_DIR) + "/data/fmnist_cnn.onnx";
  const fs::path out = dir / "s.h5";
  REQUIRE(run_cli("spectrum " + model + " --data fashion-mnist:test --samples 64 --top-k 2 --trace-probes 8 "
                  "--blocks layers --out " + out.string()) == 0);
  SpectraReader r(out);
  CHECK(r.string_attribute("/", "format") == "curv");
  CHECK(r.read("spectrum/eigen/values").data.size() == 2);
  CHECK(r.exists("spectrum/blocks/9/trace/estimate"));
  CHECK(curv_test::temp_files_beside(out) == 0);

  // Unwritable target directory: exit status 2, nothing written.
  CHECK(run_cli("spectrum " + model + " --data fashion-mnist:test --samples 8 --out /nonexistent/dir/x.h5") == 2);
  // Bad option value: exit 2, no file.
  const fs::path bad = dir / "bad.h5";
  CHECK(run_cli("spectrum " + model + " --data fashion-mnist:test --samples 8 --blocks nosuchlayer --out " + bad.string()) == 2);
  CHECK(!fs::exists(bad));

  // Interrupted mid-way: no file at the target, no temporary left.
  const fs::path killed = dir / "killed.h5";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string m = model, o = killed.string();
    execl(CURV_BINARY, CURV_BINARY, "spectrum", m.c_str(), "--data", "fashion-mnist:train", "--samples", "2000",
          "--top-k", "5", "--trace-probes", "400", "--density", "--out", o.c_str(), (char*)nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(!fs::exists(killed));
  CHECK(!any_file_with_prefix(dir, "killed.h5"));
  fs::remove_all(dir);
}

TEST_CASE("SpectraStore refuses to replace one of its inputs and leaves it intact") {
  const fs::path dir = fs::temp_directory_path() / ("curv_test_spectrum_inputs_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path model = dir / "model.onnx";
  fs::copy_file(std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.onnx", model);
  const auto before = fs::file_size(model);
  SpectraStore store(model, "curv spectrum", SpectraStore::Mode::Create, {"data.npz", model.string()});
  store.add_run().attributes["model"] = model.string();
  std::string msg;
  try {
    store.commit();
  } catch (const std::runtime_error& e) {
    msg = e.what();
  }
  CHECK(msg == model.string() + ": is the same file as the input '" + model.string() + "'; refusing to overwrite it");
  CHECK_FALSE(store.committed());
  CHECK(fs::file_size(model) == before);
  CHECK_FALSE(fs::exists(store.temp_path()));
  fs::remove_all(dir);
}
