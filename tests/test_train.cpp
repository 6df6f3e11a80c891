// Training: optimizer and SAM-family steps against PyTorch (data/fixtures/train_steps.npz, made by
// scripts/make_train_fixtures.py) and hand-computed steps, BatchNorm running statistics, thread
// independence, resume == uninterrupted, curvature probes against dense Hessians, and `curv train`.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <limits>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "curvature/curvature_operator.h"
#include "curvature/curvature_probe.h"
#include "curvature/curvature_probe_monitor.h"
#include "src/core/builder.h"
#include "src/io/checkpoint.h"
#include "src/io/model_source.h"
#include "src/io/data_io.h"
#include "src/io/internal/npz.h"
#include "src/train/lr_schedule.h"
#include "src/io/onnx_import.h"
#include "src/train/optimizer.h"
#include "src/train/trainer.h"
#include "tests/cli_run.h"
#include "tests/fixture_data.h"
#include "tests/test_util.h"

using namespace curv;
namespace fs = std::filesystem;
using curv_test::tmpdir;

namespace {

constexpr double kStepTol = 1e-9;  // float64 trainer vs float64 PyTorch after 3 steps

// A monitor whose records carry the step they were taken at.
class StepMonitor final : public CurvatureMonitor {
 public:
  CurvatureRecord measure(const Model&, const CurvatureStep& at) override {
    CurvatureRecord r;
    r.lambda_max = double(at.step);
    r.top_values = {double(at.step), 1.0};
    return r;
  }
};
constexpr double kDenseTol = 1e-6;

using curv_test::fixture;
using curv_test::npz_data;
using curv_test::rel_err;

DataOptions seeded(std::uint64_t seed) {
  DataOptions o;
  o.seed = seed;
  return o;
}

ObjectiveOptions f64(std::int64_t micro_batch) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  return o;
}

// conv -> BatchNorm (training) -> ReLU -> flatten -> linear, on [C, 6, 6] images.
Model small_bn_cnn(std::uint64_t seed, std::int64_t classes = 4) {
  ModelBuilder b({1, 6, 6}, seed);
  int x = b.relu(b.batch_norm(b.conv(b.input(), 3, 3, 1, 1, "conv"), "bn", true, true));
  x = b.linear(b.flatten(x), classes, "fc");
  return b.finish(x);
}

Dataset rand_data(std::int64_t n, std::uint64_t seed, std::int64_t classes = 4) {
  return load_dataset("random:1x6x6:" + std::to_string(classes) + ":" + std::to_string(n), seeded(seed));
}

std::vector<double> constants_of(const Model& m) {
  std::vector<double> r;
  for (int i = 0; i < m.num_constants(); ++i) r.insert(r.end(), m.constant(i).vec().begin(), m.constant(i).vec().end());
  return r;
}

}  // namespace

TEST_CASE("optimizer and SAM-family steps equal PyTorch's on a BatchNorm CNN") {
  const NpzFile ref(fixture("train_steps.npz"));
  const NpzFile data(fixture("cnn_bn.npz"));
  const Dataset d = npz_data(data);
  ImportOptions io;
  const Model base = import_onnx(fixture("cnn_bn.onnx"), io);
  struct Case {
    const char* name;
    OptimizerKind opt;
    double lr, momentum, wd;
    bool nesterov;
    SharpnessKind sam;
    double rho, eta, alpha;
  };
  const Case cases[] = {
      {"sgd", OptimizerKind::Sgd, 0.1, 0.9, 1e-2, false, SharpnessKind::None, 0, 0.01, 0.5},
      {"sgd_nesterov", OptimizerKind::Sgd, 0.1, 0.9, 1e-2, true, SharpnessKind::None, 0, 0.01, 0.5},
      {"adam", OptimizerKind::Adam, 0.01, 0, 1e-2, false, SharpnessKind::None, 0, 0.01, 0.5},
      {"adamw", OptimizerKind::AdamW, 0.01, 0, 0.1, false, SharpnessKind::None, 0, 0.01, 0.5},
      {"sam", OptimizerKind::Sgd, 0.1, 0.9, 1e-2, false, SharpnessKind::Sam, 0.05, 0.01, 0.5},
      {"asam", OptimizerKind::Sgd, 0.1, 0.9, 1e-2, false, SharpnessKind::Asam, 0.5, 0.01, 0.5},
      {"gnr", OptimizerKind::Sgd, 0.1, 0.9, 1e-2, false, SharpnessKind::Gnr, 0.05, 0.01, 0.5},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    TrainOptions o;
    o.epochs = ref.get("steps").ints.at(0);  // one full-batch step per epoch
    o.batch_size = 0;
    o.shuffle = false;
    o.objective = f64(d.size());  // one BatchNorm batch = the whole batch, as PyTorch
    o.optimizer.kind = c.opt;
    o.optimizer.momentum = c.momentum;
    o.optimizer.nesterov = c.nesterov;
    o.optimizer.weight_decay = c.wd;
    o.schedule.lr = c.lr;
    o.sharpness = {c.sam, c.rho, c.eta, c.alpha};
    Trainer t(base, d, nullptr, o);
    REQUIRE(t.run());
    const Model& m = t.eval_model();
    for (const auto& p : m.params()) {
      CAPTURE(p.name);
      const auto& want = ref.get(std::string(c.name) + "/" + p.name).data;
      CHECK(rel_err(m.param(m.values()[p.value].index).vec(), want) < kStepTol);
    }
    for (const char* s : {"bn1.running_mean", "bn1.running_var"}) {
      CAPTURE(s);
      const int v = m.find_value(s);
      REQUIRE(v >= 0);
      CHECK(rel_err(m.constant(m.values()[v].index).vec(), ref.get(std::string(c.name) + "/" + s).data) < kStepTol);
    }
    const auto& losses = ref.get(std::string(c.name) + "/loss").data;
    REQUIRE(t.history().epochs.size() == losses.size());
    for (size_t i = 0; i < losses.size(); ++i) CHECK(t.history().epochs[i].train_loss == doctest::Approx(losses[i]).epsilon(1e-12));
  }
}

TEST_CASE("first SGD and Adam steps equal the hand-computed updates") {
  Model m = build_arch("mlp:5", {3}, 2, 3);
  const Dataset d = load_dataset("random:3:2:8", seeded(4));
  auto obj = Objective::create(m, d, f64(8));
  Eigen::VectorXd g;
  obj->gradient(g);
  const auto w0 = m.flat_params();
  const double lr = 0.05, wd = 0.01;
  {
    Optimizer opt(m.num_params(), {OptimizerKind::Sgd, 0.9, 0, false, wd});
    auto w = w0;
    opt.step(w, std::vector<double>(g.data(), g.data() + g.size()), lr);
    for (size_t i = 0; i < w.size(); ++i) CHECK(w[i] == doctest::Approx(w0[i] - lr * (g[i] + wd * w0[i])).epsilon(1e-14));
  }
  {
    OptimizerOptions oo;
    oo.kind = OptimizerKind::Adam;
    Optimizer opt(m.num_params(), oo);
    auto w = w0;
    opt.step(w, std::vector<double>(g.data(), g.data() + g.size()), lr);
    // First Adam step: m_hat = g, v_hat = g^2, so w - lr g / (|g| + eps).
    for (size_t i = 0; i < w.size(); ++i)
      CHECK(w[i] == doctest::Approx(w0[i] - lr * g[i] / (std::abs(g[i]) + 1e-8)).epsilon(1e-12));
  }
}

TEST_CASE("optimizer state round-trips and bad options are rejected") {
  OptimizerOptions oo;
  oo.kind = OptimizerKind::Adam;
  Optimizer a(3, oo), b(3, oo);
  std::vector<double> w{1, 2, 3}, g{0.1, -0.2, 0.3};
  a.step(w, g, 0.1);
  b.set_state(a.state(), a.steps());
  auto w1 = w, w2 = w;
  a.step(w1, g, 0.1);
  b.step(w2, g, 0.1);
  CHECK(w1 == w2);
  CHECK_THROWS_WITH_AS(Optimizer(3, {OptimizerKind::Sgd, 1.5}), doctest::Contains("momentum must be in [0, 1)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Optimizer(3, {OptimizerKind::Sgd, 0.0, 0.0, true}), doctest::Contains("nesterov"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(a.step(w1, g, std::nan("")), doctest::Contains("learning rate"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_optimizer("lion"), doctest::Contains("unknown optimizer 'lion'"), std::invalid_argument);
  // A resumed state is checked value by value (a corrupt checkpoint must not poison the weights).
  auto st = a.state();
  st["exp_avg_sq"][1] = -1e-3;
  CHECK_THROWS_WITH_AS(b.set_state(st, 1), "optimizer state 'exp_avg_sq' holds a negative value at index 1",
                       std::invalid_argument);
  st = a.state();
  st["exp_avg"][2] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(b.set_state(st, 1), "optimizer state 'exp_avg' holds a non-finite value at index 2",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(b.set_state({{"momentum_buffer", {1, 2, 3}}}, 1), doctest::Contains("does not belong to adam"),
                       std::invalid_argument);
}

TEST_CASE("learning-rate schedules: warm-up, step and cosine") {
  LrScheduleOptions o;
  o.lr = 0.1;
  o.warmup_steps = 4;
  o.kind = ScheduleKind::Cosine;
  LrSchedule cos(o, 10, 104);
  CHECK(cos.at(0) == doctest::Approx(0.025));
  CHECK(cos.at(3) == doctest::Approx(0.1));
  CHECK(cos.at(4) == doctest::Approx(0.1));
  CHECK(cos.at(54) == doctest::Approx(0.05));
  CHECK(cos.at(104) == doctest::Approx(0.0).epsilon(1e-12));
  o.warmup_steps = 0;
  o.warmup_epochs = 0.4;  // 4 steps of 10 per epoch: the same schedule
  LrSchedule cos2(o, 10, 104);
  for (int t : {0, 3, 4, 54, 104}) CHECK(cos2.at(t) == cos.at(t));
  o.kind = ScheduleKind::Step;
  o.warmup_epochs = 0;
  o.step_epochs = 2;
  o.gamma = 0.5;
  LrSchedule st(o, 10, 100);
  CHECK(st.at(19) == doctest::Approx(0.1));
  CHECK(st.at(20) == doctest::Approx(0.05));
  CHECK(st.at(45) == doctest::Approx(0.025));
  o.lr = std::nan("");
  CHECK_THROWS_WITH_AS(LrSchedule(o, 1, 1), doctest::Contains("learning rate must be finite"), std::invalid_argument);
}

TEST_CASE("BatchNorm running statistics update as PyTorch's after one forward") {
  const NpzFile z(fixture("cnn_bn_train.npz"));
  const Dataset d = npz_data(NpzFile(fixture("cnn_bn.npz")));
  ImportOptions io;
  io.batch_norm_training = true;
  Model m = import_onnx(fixture("cnn_bn.onnx"), io);
  auto obj = Objective::create(m, d, f64(d.size()));
  obj->evaluate();
  const auto stats = obj->batch_norm_stats();
  REQUIRE(stats.size() == 1);
  update_running_stats(m, stats, z.get("momentum").data.at(0));
  const int mean = m.find_value("bn1.running_mean"), var = m.find_value("bn1.running_var");
  CHECK(rel_err(m.constant(m.values()[mean].index).vec(), z.get("running_mean_after/bn1").data) < 1e-12);
  CHECK(rel_err(m.constant(m.values()[var].index).vec(), z.get("running_var_after/bn1").data) < 1e-12);
}

TEST_CASE("training gives identical weights with 1 and 2 threads") {
  const Model m = small_bn_cnn(5);
  const Dataset d = rand_data(64, 6);
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 16;
  o.objective.micro_batch = 4;
  o.optimizer.momentum = 0.9;
  o.sharpness.kind = SharpnessKind::Sam;
  o.schedule.lr = 0.05;
  std::vector<double> w[2], c[2];
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    Trainer t(m, d, nullptr, o);
    REQUIRE(t.run());
    w[threads - 1] = t.eval_model().flat_params();
    c[threads - 1] = constants_of(t.eval_model());
  }
  CHECK(w[0] == w[1]);
  CHECK(c[0] == c[1]);
  CHECK(w[0] != m.flat_params());
}

TEST_CASE("a run resumed from a checkpoint equals an uninterrupted one") {
  const Model m = small_bn_cnn(7);
  const Dataset d = rand_data(48, 8), test = rand_data(16, 9);
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 12;
  o.objective.micro_batch = 6;
  o.optimizer.kind = OptimizerKind::Adam;
  o.optimizer.weight_decay = 1e-3;
  o.schedule.kind = ScheduleKind::Cosine;
  o.schedule.lr = 0.01;
  o.schedule.warmup_steps = 3;
  o.config = R"({"note": "test"})";
  StepMonitor measure;
  Trainer full(m, d, &test, o);
  full.set_curvature_monitor(&measure, 1);
  REQUIRE(full.run());

  const std::string ckpt = (tmpdir() / "resume.h5").string();
  {
    Trainer first(m, d, &test, o);
    first.set_curvature_monitor(&measure, 1);
    first.on_epoch_end = [&](Trainer& t) {
      const TrainState s = t.state();
      save_checkpoint(t.eval_model(), ckpt, &s);
      t.request_stop();
    };
    CHECK_FALSE(first.run());
  }
  const Model saved = load_checkpoint(ckpt);
  const auto state = load_train_state(ckpt);
  REQUIRE(state);
  CHECK(state->epoch == 1);
  CHECK(state->config == o.config);
  CHECK(state->history.curvature.size() == 2);  // before the first step and after epoch 1
  Trainer resumed(saved, d, &test, o);
  resumed.set_curvature_monitor(&measure, 1);
  resumed.restore(*state);
  REQUIRE(resumed.run());
  CHECK(resumed.eval_model().flat_params() == full.eval_model().flat_params());
  CHECK(constants_of(resumed.eval_model()) == constants_of(full.eval_model()));
  REQUIRE(resumed.history().epochs.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(resumed.history().epochs[i].train_loss == full.history().epochs[i].train_loss);
    CHECK(resumed.history().epochs[i].test_accuracy == full.history().epochs[i].test_accuracy);
  }
  REQUIRE(resumed.history().curvature.size() == full.history().curvature.size());
  CHECK(resumed.history().curvature.back().top_values == full.history().curvature.back().top_values);

  TrainOptions more = o;
  more.epochs = 1;
  Trainer done(saved, d, &test, more);
  CHECK_THROWS_WITH_AS(done.restore(*state), doctest::Contains("already trained 1 epochs"), std::invalid_argument);
  more = o;
  more.optimizer.kind = OptimizerKind::Sgd;
  Trainer other(saved, d, &test, more);
  CHECK_THROWS_WITH_AS(other.restore(*state), doctest::Contains("optimizer state is adam"), std::invalid_argument);
}

TEST_CASE("trainer rejects bad options and data that does not fit the model") {
  const Model m = small_bn_cnn(3, 4);
  const Dataset d = rand_data(32, 1);
  TrainOptions o;
  o.sharpness.kind = SharpnessKind::Sam;
  o.sharpness.rho = 0;
  CHECK_THROWS_WITH_AS(Trainer(m, d, nullptr, o), doctest::Contains("rho must be > 0"), std::invalid_argument);
  o = {};
  o.schedule.lr = std::nan("");
  CHECK_THROWS_WITH_AS(Trainer(m, d, nullptr, o), doctest::Contains("learning rate"), std::invalid_argument);
  o = {};
  const Dataset wide = rand_data(32, 1, 9);
  CHECK_THROWS_WITH_AS(Trainer(m, wide, nullptr, o), doctest::Contains("out of range for 4 model outputs"),
                       std::invalid_argument);
  o.batch_size = 17;
  o.objective.micro_batch = 16;
  CHECK_THROWS_WITH_AS(Trainer(m, d, nullptr, o), doctest::Contains("BatchNorm micro-batch of one sample"),
                       std::invalid_argument);
}

TEST_CASE("curvature probe matches the dense Hessian of a tiny network") {
  const Model m = build_arch("mlp:4", {3}, 3, 11);
  const Dataset d = load_dataset("random:3:3:12", seeded(12));
  auto obj = Objective::create(m, d, f64(4));
  const std::int64_t P = m.num_params();
  Eigen::MatrixXd H(P, P), I = Eigen::MatrixXd::Identity(P, P);
  obj->product(Curvature::Hessian, I, H);
  H = 0.5 * (H + H.transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(H);
  Eigen::VectorXd g;
  obj->gradient(g);
  CurvatureProbeOptions po;
  po.top = 3;
  po.eig_tol = 1e-12;
  po.trace_probes = 400;
  po.probe_batch = 50;
  const CurvatureRecord r = probe_curvature(*obj, po);
  const Eigen::VectorXd lam = es.eigenvalues();
  const Eigen::MatrixXd V = es.eigenvectors().rightCols(3);
  INFO("lambda_max ", r.lambda_max, " dense ", lam[P - 1]);
  CHECK(r.lambda_max == doctest::Approx(lam[P - 1]).epsilon(kDenseTol));
  CHECK(r.lambda_max_residual < 1e-8 * std::abs(r.lambda_max) + 1e-12);
  REQUIRE(r.top_values.size() == 3);
  CHECK(r.top_values[2] == doctest::Approx(lam[P - 3]).epsilon(kDenseTol));
  CHECK(r.grad_overlap == doctest::Approx((V.transpose() * g).squaredNorm() / g.squaredNorm()).epsilon(kDenseTol));
  CHECK(std::abs(r.trace - H.trace()) < 4 * r.trace_stderr);
  CHECK(r.grad_norm == doctest::Approx(g.norm()));
}

TEST_CASE("small ViT: exact gradient and a few Adam steps lower the loss") {
  const Model m = build_arch("vit:2-8-1-2", {1, 4, 4}, 3, 21);
  const Dataset d = load_dataset("random:1x4x4:3:24", seeded(22));
  auto obj = Objective::create(m, d, f64(8));
  Eigen::VectorXd g;
  const double f0 = obj->gradient(g);
  auto w = m.flat_params();
  for (std::int64_t i : {std::int64_t(0), m.num_params() / 2, m.num_params() - 1}) {
    const double h = 1e-6;
    auto wp = w, wm = w;
    wp[i] += h;
    wm[i] -= h;
    obj->set_params(wp);
    const double fp = obj->value();
    obj->set_params(wm);
    const double fm = obj->value();
    CHECK(g[i] == doctest::Approx((fp - fm) / (2 * h)).epsilon(1e-6));
  }
  TrainOptions o;
  o.epochs = 10;
  o.batch_size = 0;
  o.objective = f64(8);
  o.optimizer.kind = OptimizerKind::Adam;
  o.schedule.lr = 0.01;
  Trainer t(m, d, nullptr, o);
  REQUIRE(t.run());
  CHECK(t.history().epochs.back().train_loss < 0.9 * f0);
}

// ------------------------------------------------------------------------------- command line
using curv_test::Run;

TEST_CASE("curv train writes the checkpoint, its history and the documented JSON, and resuming loses nothing") {
  const std::string out = (tmpdir() / "cli.h5").string(), out2 = (tmpdir() / "cli2.h5").string();
  const std::string common =
      " --data random:1x6x6:3:48 --test-data random:1x6x6:3:16 --batch-size 12 --optimizer sgd --momentum 0.9"
      " --lr 0.05 --sam 0.05 --log-curvature 1 --curvature-samples 24 --curvature-probes 4 --threads 2 --json";
  Run r = curv_test::curv("train --arch mlp:8 --epochs 2 --save-every 1 --out " + out + common);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"epochs", "steps", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                        "samples_per_second", "curvature", "out"})
    CHECK(j.contains(k));
  CHECK(j["steps"] == 8);
  CHECK(j["curvature"]["top_values"].size() == 3);
  const auto st = load_train_state(out);
  REQUIRE(st);
  CHECK(st->history.epochs.size() == 2);
  CHECK(st->history.curvature.size() == 3);
  const std::string mid = (tmpdir() / "cli.epoch001.h5").string();
  REQUIRE(fs::exists(mid));
  // Resume from the epoch-1 checkpoint with the settings stored in it.
  Run r2 = curv_test::curv("train " + mid + " --data random:1x6x6:3:48 --test-data random:1x6x6:3:16 --threads 1 --json --out " +
                    out2);
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  CHECK(load_checkpoint(out2).flat_params() == load_checkpoint(out).flat_params());
  CHECK(load_train_state(out2)->history.curvature.size() == 3);
}

TEST_CASE("curv train: bad input gives one line, exit status 2 and no checkpoint") {
  const std::string out = (tmpdir() / "bad.h5").string();
  const std::string data = " --data random:1x6x6:3:16 --epochs 1 --out " + out;
  const std::string model = std::string(CURV_SOURCE_DIR) + "/data/fmnist_cnn.onnx";
  const std::pair<std::string, std::string> cases[] = {
      {"train --arch mlp:4 --optimizer lion" + data, "--optimizer"},
      {"train --arch transformer9" + data, "unknown arch 'transformer9'"},
      {"train --arch mlp:4 --sam 0" + data, "rho must be > 0"},
      {"train --arch mlp:4 --sam -1" + data, "--sam: -1 is outside [0, 1e+06]"},
      {"train --arch mlp:4 --lr nan" + data, "--lr: nan is not a finite number"},
      {"train --arch mlp:4 --lr 0" + data, "--lr must be finite and > 0"},
      {"train --arch mlp:4 --log-curvature 0:steps" + data, "--log-curvature"},
      {"train --arch mlp:4 --batch-size half" + data, "--batch-size"},
      {"train " + model + " --data random:1x28x28:20:64 --epochs 1 --out " + out, "out of range for 10 model outputs"},
      {"train --arch mlp:4 --data random:1x6x6:3:16 --out /nonexistent-dir/x.h5", "/nonexistent-dir/x.h5"},
      {"train /nonexistent-dir/ckpt.h5" + data, "/nonexistent-dir/ckpt.h5: no such file"},
  };
  for (const auto& [args, what] : cases) {
    curv_test::check_bad(args, what);
    CHECK_FALSE(fs::exists(out));
    CHECK(curv_test::temp_files_beside(out) == 0);
  }
}

TEST_CASE("a trainer with the curvature monitor logs what probe_curvature measures directly") {
  const Model m = build_arch("mlp:5", {3}, 3, 13);
  const Dataset d = load_dataset("random:3:3:24", seeded(14));
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.schedule.lr = 0.05;
  o.objective = f64(4);
  CurvatureProbeOptions po;
  po.top = 0;  // the number of outputs: 3
  po.eig_tol = 1e-10;
  po.trace_probes = 6;
  po.probe_batch = 3;
  po.seed = 17;
  const Dataset subset = d.subset(0, 10);
  CurvatureProbeMonitor monitor(subset, f64(4), po);
  Trainer trainer(m, d, nullptr, o);
  trainer.set_curvature_monitor(&monitor, 2, false);  // before the first step, then every 2 steps
  std::vector<Model> models;                          // the weights at every measurement
  std::vector<std::int64_t> seen;
  trainer.on_curvature = [&](const CurvatureRecord& r) {
    models.push_back(trainer.eval_model());
    seen.push_back(r.step);
  };
  REQUIRE(trainer.run());
  const auto& log = trainer.history().curvature;
  REQUIRE(log.size() == 4);  // steps 0, 2, 4, 6 (3 batches per epoch)
  CHECK(seen == std::vector<std::int64_t>{0, 2, 4, 6});
  for (std::size_t i = 0; i < log.size(); ++i) {
    const CurvatureRecord& r = log[i];
    CurvatureProbeOptions direct = po;
    direct.top = 3;
    direct.seed = po.seed + 7919 * static_cast<std::uint64_t>(r.step);
    auto obj = Objective::create(models[i], subset, f64(4));
    const CurvatureRecord want = probe_curvature(*obj, direct);
    INFO("step ", r.step);
    CHECK(r.epoch == doctest::Approx(double(r.step) / 3.0));
    CHECK(r.lr == doctest::Approx(0.05));
    CHECK(r.loss == want.loss);
    CHECK(r.lambda_max == want.lambda_max);
    CHECK(r.lambda_max_residual == want.lambda_max_residual);
    CHECK(r.top_values == want.top_values);
    CHECK(r.top_values.size() == 3);
    CHECK(r.trace == want.trace);
    CHECK(r.trace_stderr == want.trace_stderr);
    CHECK(r.grad_overlap == want.grad_overlap);
    CHECK(r.grad_norm == want.grad_norm);
    CHECK(r.hvps == want.hvps);
  }
  // Different steps draw different probes (the seed moves with the step).
  CHECK(log[0].trace != log[1].trace);
  CHECK_THROWS_WITH_AS(trainer.set_curvature_monitor(&monitor, 0),
                       "curvature measurements every 0 epochs: the interval must be >= 1", std::invalid_argument);
}

TEST_CASE("curvature monitor and probe refuse bad settings with the value") {
  const Dataset d = load_dataset("random:3:3:8", seeded(2));
  CurvatureProbeOptions po;
  po.trace_probes = -1;
  CHECK_THROWS_WITH_AS(CurvatureProbeMonitor(d, f64(4), po), "curvature probe: trace probes (= -1) must be >= 0",
                       std::invalid_argument);
  po = {};
  po.eig_tol = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(CurvatureProbeMonitor(d, f64(4), po),
                       "curvature probe: eigenvalue tolerance (= inf) must be in (0, 1)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(CurvatureProbeMonitor(d.subset(0, 0), f64(4), CurvatureProbeOptions{}),
                       "curvature monitor: the data subset is empty", std::invalid_argument);
}

TEST_CASE("an --arch model is not sized by an absurd label") {
  curv::Dataset d;
  d.source = "huge_labels.npz";
  d.sample_shape = {4};
  d.x.assign(8, 0.5f);
  d.labels = {0, 5000000000LL};
  curv::ModelSource src;
  src.arch = "mlp:4";
  CHECK_THROWS_WITH_AS((void)curv::load_model(src, &d),
                       "huge_labels.npz: labels go up to 5000000000, more classes than an architecture is built for (100000)",
                       std::invalid_argument);
  d.labels = {0, 6};
  CHECK(curv::load_model(src, &d).output_shape() == curv::Shape{7});
}
