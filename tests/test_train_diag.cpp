// Hessian-diagonal optimizers (AdaHessian, Sophia) and GAM: the first 3 steps on a BatchNorm-free
// CNN and an MLP against the float64 PyTorch reference of scripts/make_diag_optimizer_fixtures.py
// (data/fixtures/train_diag/steps.npz, same counter-based probes and sampled labels), the spatial
// averaging and estimators against direct computations, 1 vs 2 threads, resume == uninterrupted,
// the optimizer history in checkpoints, and bad options.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "src/core/builder.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "src/io/internal/npz.h"
#include "src/io/model_source.h"
#include "src/io/onnx_import.h"
#include "src/train/diagonal_optimizer.h"
#include "src/train/hessian_diagonal.h"
#include "src/train/trainer.h"
#include "tests/cli_run.h"
#include "tests/fixture_data.h"
#include "tests/test_util.h"

using namespace curv;
namespace fs = std::filesystem;
using curv_test::tmpdir;

namespace {

constexpr double kStepTol = 1e-9;  // float64 trainer vs float64 PyTorch after 3 steps

using curv_test::fixture;
using curv_test::npz_data;
using curv_test::rel_err;

struct Config {
  const char* name;
  DiagonalKind kind;
  double lr, b1, b2, eps, wd, power;
  std::int64_t every;
  bool average;
  double gamma, clip;
  DiagonalEstimator est;
  double gam_rho = 0, gam_alpha = 1, sam_rho = 0;
};

// The configurations of make_diag_optimizer_fixtures.py.
const Config kConfigs[] = {
    {"adahessian", DiagonalKind::AdaHessian, 0.1, 0.9, 0.999, 1e-4, 1e-3, 1.0, 1, true, 0, 1, DiagonalEstimator::Hutchinson},
    {"adahessian_k05", DiagonalKind::AdaHessian, 0.05, 0.8, 0.9, 1e-4, 0, 0.5, 2, true, 0, 1, DiagonalEstimator::Hutchinson},
    {"adahessian_noavg", DiagonalKind::AdaHessian, 0.1, 0.9, 0.999, 1e-4, 0, 1.0, 1, false, 0, 1,
     DiagonalEstimator::Hutchinson},
    {"sophia", DiagonalKind::Sophia, 0.05, 0.965, 0.99, 1e-12, 0.1, 1, 2, true, 0.01, 1.0, DiagonalEstimator::Hutchinson},
    {"sophia_gnb", DiagonalKind::Sophia, 0.05, 0.9, 0.95, 1e-12, 0, 1, 1, true, 0.05, 0.5,
     DiagonalEstimator::GaussNewtonBartlett},
    {"gam", DiagonalKind::None, 0.1, 0, 0, 0, 1e-2, 0, 1, true, 0, 1, DiagonalEstimator::Hutchinson, 0.05, 0.5, 0},
    {"gam_sam", DiagonalKind::None, 0.1, 0, 0, 0, 1e-2, 0, 1, true, 0, 1, DiagonalEstimator::Hutchinson, 0.05, 0.5,
     0.05},
};

TrainOptions options_for(const Config& c, std::int64_t n, std::uint64_t seed) {
  TrainOptions o;
  o.epochs = 3;  // one full-batch step per epoch
  o.batch_size = 0;
  o.shuffle = false;
  o.objective.precision = Precision::Float64;
  o.objective.micro_batch = n;
  o.schedule.lr = c.lr;
  if (c.kind == DiagonalKind::None) {
    o.optimizer.kind = OptimizerKind::Sgd;
    o.optimizer.momentum = 0.9;
    o.optimizer.weight_decay = c.wd;
    o.sharpness.kind = c.sam_rho > 0 ? SharpnessKind::Sam : SharpnessKind::None;
    o.sharpness.rho = c.sam_rho > 0 ? c.sam_rho : 0.05;
    o.sharpness.gam_rho = c.gam_rho;
    o.sharpness.gam_alpha = c.gam_alpha;
  } else {
    auto& d = o.diagonal;
    d.kind = c.kind;
    d.beta1 = c.b1;
    d.beta2 = c.b2;
    d.eps = c.eps;
    d.weight_decay = c.wd;
    d.hessian_power = c.power;
    d.hessian_every = c.every;
    d.spatial_average = c.average;
    d.gamma = c.gamma;
    d.clip = c.clip;
    d.estimator = c.est;
    d.seed = seed;
  }
  return o;
}

// conv -> ReLU -> conv -> flatten -> linear on [1, 6, 6] (no BatchNorm), or with BatchNorm.
Model small_cnn(std::uint64_t seed, bool bn = false) {
  ModelBuilder b({1, 6, 6}, seed);
  int x = b.conv(b.input(), 3, 3, 1, 1, "conv");
  if (bn) x = b.batch_norm(x, "bn", true, true);
  x = b.relu(x);
  x = b.linear(b.flatten(x), 4, "fc");
  return b.finish(x);
}

Dataset rand_data(std::int64_t n, std::uint64_t seed) {
  DataOptions o;
  o.seed = seed;
  return load_dataset("random:1x6x6:4:" + std::to_string(n), o);
}

}  // namespace

TEST_CASE("AdaHessian, Sophia and GAM steps equal the PyTorch reference on an MLP and a CNN") {
  const NpzFile ref(fixture("train_diag/steps.npz"));
  const std::uint64_t seed = std::uint64_t(ref.get("seed").ints.at(0));
  const std::pair<const char*, const char*> models[] = {{"mlp", "mlp"}, {"cnn", "cnn_bn_fused"}};
  for (const auto& [mname, stem] : models) {
    const std::string model = mname;
    CAPTURE(model);
    const NpzFile data(fixture(std::string(stem) + ".npz"));
    const Dataset d = npz_data(data);
    const Model base = import_onnx(fixture(std::string(stem) + ".onnx"), ImportOptions{});
    for (const Config& c : kConfigs) {
      const std::string config = c.name;
      CAPTURE(config);
      const std::string key = std::string(mname) + "/" + c.name + "/";
      // The probes and sampled labels of the reference are curv's.
      for (int draw = 0; draw < 3; ++draw)
        if (ref.has(key + "probe" + std::to_string(draw)))
          CHECK(rademacher_probe(base.num_params(), seed, draw) == ref.get(key + "probe" + std::to_string(draw)).data);
      Trainer t(base, d, nullptr, options_for(c, d.size(), seed));
      REQUIRE(t.run());
      const Model& m = t.eval_model();
      for (const auto& p : m.params()) {
        CAPTURE(p.name);
        CHECK(rel_err(m.param(m.values()[p.value].index).vec(), ref.get(key + onnx_initializer_name(m, p.name)).data) < kStepTol);
      }
      const auto& losses = ref.get(key + "loss").data;
      REQUIRE(t.history().epochs.size() == losses.size());
      for (size_t i = 0; i < losses.size(); ++i)
        CHECK(t.history().epochs[i].train_loss == doctest::Approx(losses[i]).epsilon(1e-12));
      if (c.kind != DiagonalKind::None) {
        std::int64_t refreshes = 0;
        for (const auto& e : t.history().epochs) refreshes += std::int64_t(e.optimizer.at("hessian_refreshes"));
        CHECK(refreshes == (3 + c.every - 1) / c.every);
        CHECK(t.history().epochs[0].optimizer.count("clip_fraction") == (c.kind == DiagonalKind::Sophia));
      }
    }
  }
}

TEST_CASE("Hessian-diagonal estimators: Hutchinson is z . Hz, kernels average |D|, GNB is B g^2") {
  const Model m = small_cnn(3);
  const Dataset d = rand_data(6, 4);
  ObjectiveOptions oo;
  oo.precision = Precision::Float64;
  auto obj = Objective::create(m, d, oo);
  const auto z = rademacher_probe(m.num_params(), 1, 2);
  std::int64_t plus = 0;
  for (double x : z) {
    REQUIRE((x == 1.0 || x == -1.0));
    plus += x > 0;
  }
  CHECK(plus > m.num_params() / 4);
  CHECK(plus < 3 * m.num_params() / 4);
  CHECK(rademacher_probe(m.num_params(), 1, 3) != z);
  // Against the dense Hessian: D_i = z_i sum_j H_ij z_j.
  const std::int64_t P = m.num_params();
  Objective::Matrix I = Objective::Matrix::Identity(P, P), H;
  obj->product(Curvature::Hessian, I, H);
  const auto D = hutchinson_diagonal(*obj, 1, 2);
  const Eigen::VectorXd zv = Eigen::Map<const Eigen::VectorXd>(z.data(), P);
  const Eigen::VectorXd Hz = H * zv;
  for (std::int64_t i = 0; i < P; ++i) CHECK(D[i] == doctest::Approx(z[i] * Hz[i]).epsilon(1e-10));
  // Spatial averaging: the conv kernel [3, 1, 3, 3] gets the mean of |D| over each 3x3 window.
  std::vector<double> avg = D;
  average_over_kernels(m.params(), avg);
  const ParamInfo& w = m.params()[0];
  REQUIRE(w.shape.size() == 4);
  for (std::int64_t o = 0; o < 3; ++o) {
    double s = 0;
    for (int j = 0; j < 9; ++j) s += std::abs(D[w.offset + o * 9 + j]);
    for (int j = 0; j < 9; ++j) CHECK(avg[w.offset + o * 9 + j] == doctest::Approx(s / 9).epsilon(1e-14));
  }
  for (std::int64_t i = w.size; i < P; ++i) CHECK(avg[i] == D[i]);
  // GNB: equals B g^2 of the gradient at the sampled labels, which differ from the data's somewhere
  // and are the same for the same draw.
  const auto gnb = gauss_newton_bartlett_diagonal(m, m.flat_params(), d, oo, 5, 0);
  CHECK(gnb == gauss_newton_bartlett_diagonal(m, m.flat_params(), d, oo, 5, 0));
  CHECK(gnb != gauss_newton_bartlett_diagonal(m, m.flat_params(), d, oo, 5, 1));
  for (double x : gnb) CHECK(x >= 0);
  Dataset reg = d;
  reg.labels.clear();
  reg.targets.assign(d.size() * 4, 0.f);
  CHECK_THROWS_WITH_AS(gauss_newton_bartlett_diagonal(m, m.flat_params(), reg, oo, 5, 0),
                       doctest::Contains("regression targets"), std::invalid_argument);
}

TEST_CASE("AdaHessian, Sophia (both estimators) and GAM give identical weights with 1 and 2 threads") {
  const Model m = small_cnn(5, true);
  const Dataset d = rand_data(64, 6);
  for (int which = 0; which < 4; ++which) {
    CAPTURE(which);
    TrainOptions o;
    o.epochs = 2;
    o.batch_size = 16;
    o.objective.micro_batch = 4;
    o.schedule.lr = 0.01;
    if (which == 3) {
      o.optimizer.momentum = 0.9;
      o.sharpness.gam_rho = 0.05;
    } else {
      o.diagonal.kind = which == 0 ? DiagonalKind::AdaHessian : DiagonalKind::Sophia;
      o.diagonal.hessian_every = which == 0 ? 1 : 3;
      o.diagonal.estimator = which == 2 ? DiagonalEstimator::GaussNewtonBartlett : DiagonalEstimator::Hutchinson;
      o.diagonal.seed = 9;
    }
    std::vector<double> w[2];
    for (int threads : {1, 2}) {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
      Trainer t(m, d, nullptr, o);
      REQUIRE(t.run());
      w[threads - 1] = t.eval_model().flat_params();
    }
    CHECK(w[0] == w[1]);
    CHECK(w[0] != m.flat_params());
  }
}

TEST_CASE("AdaHessian and Sophia resumed from an epoch checkpoint equal an uninterrupted run") {
  const Model m = small_cnn(7);
  const Dataset d = rand_data(40, 8), test = rand_data(12, 9);
  for (DiagonalKind kind : {DiagonalKind::AdaHessian, DiagonalKind::Sophia}) {
    const std::string name = diagonal_kind_name(kind);
    CAPTURE(name);
    TrainOptions o;
    o.epochs = 3;
    o.batch_size = 10;  // 4 steps per epoch; refreshes every 3 steps straddle the epochs
    o.objective.micro_batch = 5;
    o.schedule.lr = 0.01;
    o.diagonal.kind = kind;
    o.diagonal.hessian_every = 3;
    o.diagonal.weight_decay = 1e-3;
    o.diagonal.seed = 11;
    Trainer full(m, d, &test, o);
    REQUIRE(full.run());
    const std::string ckpt = (tmpdir() / "diag_resume.h5").string();
    {
      Trainer first(m, d, &test, o);
      first.on_epoch_end = [&](Trainer& t) {
        const TrainState s = t.state();
        save_checkpoint(t.eval_model(), ckpt, &s);
        t.request_stop();
      };
      CHECK_FALSE(first.run());
    }
    const auto state = load_train_state(ckpt);
    REQUIRE(state);
    CHECK(state->optimizer == diagonal_kind_name(kind));
    CHECK(state->optimizer_state.at("refreshes") == std::vector<double>{2.0});  // steps 1 and 4
    CHECK(state->history.epochs.at(0).optimizer.at("hessian_refreshes") == 2.0);
    Trainer resumed(load_checkpoint(ckpt), d, &test, o);
    resumed.restore(*state);
    REQUIRE(resumed.run());
    CHECK(resumed.eval_model().flat_params() == full.eval_model().flat_params());
    REQUIRE(resumed.history().epochs.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      CHECK(resumed.history().epochs[i].train_loss == full.history().epochs[i].train_loss);
      CHECK(resumed.history().epochs[i].optimizer == full.history().epochs[i].optimizer);
    }
    // The per-step log (/history/optimizer): one row per step, refreshes at steps 1, 4, 7, 10, the
    // diagonal's mean at those, and the epoch statistics are its per-epoch summary.
    const auto& steps = full.history().optimizer;
    REQUIRE(steps.size() == 12);
    REQUIRE(resumed.history().optimizer.size() == 12);
    for (std::size_t i = 0; i < steps.size(); ++i) {
      CAPTURE(i);
      CHECK(steps[i].step == std::int64_t(i) + 1);
      CHECK(steps[i].values.at("hessian_refresh") == (i % 3 == 0 ? 1.0 : 0.0));
      CHECK(steps[i].values.count("hessian_diag_mean") == (i % 3 == 0 ? 1u : 0u));
      CHECK(resumed.history().optimizer[i].values == steps[i].values);
    }
    for (std::size_t e = 0; e < 3; ++e) {
      double refreshes = 0, clip = 0;
      for (std::size_t i = 4 * e; i < 4 * e + 4; ++i) {
        refreshes += steps[i].values.at("hessian_refresh");
        CHECK(steps[i].values.count("clip_fraction") == (kind == DiagonalKind::Sophia ? 1u : 0u));
        if (kind == DiagonalKind::Sophia) clip += steps[i].values.at("clip_fraction");
      }
      CHECK(refreshes == full.history().epochs[e].optimizer.at("hessian_refreshes"));
      if (kind == DiagonalKind::Sophia)
        CHECK(clip / 4 == doctest::Approx(full.history().epochs[e].optimizer.at("clip_fraction")).epsilon(1e-12));
    }
    CHECK(steps[9].values.at("hessian_diag_mean") == full.history().epochs[2].optimizer.at("hessian_diag_mean"));
    // Another optimizer's state does not fit.
    TrainOptions other = o;
    other.diagonal.kind = kind == DiagonalKind::AdaHessian ? DiagonalKind::Sophia : DiagonalKind::AdaHessian;
    Trainer wrong(load_checkpoint(ckpt), d, &test, other);
    CHECK_THROWS_WITH_AS(wrong.restore(*state), doctest::Contains("optimizer state is"), std::invalid_argument);
  }
}

TEST_CASE("Hessian-diagonal optimizer options and state are checked") {
  const Model m = small_cnn(1);
  DiagonalOptimizerOptions o;
  o.kind = DiagonalKind::AdaHessian;
  auto bad = [&](auto edit, const char* what) {
    DiagonalOptimizerOptions b = o;
    edit(b);
    CHECK_THROWS_WITH_AS(DiagonalOptimizer(m, b), doctest::Contains(what), std::invalid_argument);
  };
  bad([](auto& b) { b.hessian_power = -0.5; }, "Hessian power");
  bad([](auto& b) { b.hessian_every = 0; }, "every >= 1");
  bad([](auto& b) { b.beta2 = 1; }, "beta2");
  bad([](auto& b) { b.eps = 0; }, "eps");
  bad([](auto& b) {
    b.kind = DiagonalKind::Sophia;
    b.gamma = -1;
  }, "gamma");
  bad([](auto& b) { b.estimator = DiagonalEstimator::GaussNewtonBartlett; }, "gnb is Sophia's");
  {
    Dataset reg = rand_data(8, 2);
    reg.labels.clear();
    reg.targets.assign(8 * 4, 0.f);
    reg.target_shape = {4};
    TrainOptions t;
    t.diagonal.kind = DiagonalKind::Sophia;
    t.diagonal.estimator = DiagonalEstimator::GaussNewtonBartlett;
    CHECK_THROWS_WITH_AS(Trainer(m, reg, nullptr, t), doctest::Contains("regression targets"), std::invalid_argument);
    t.diagonal.estimator = DiagonalEstimator::Hutchinson;
    CHECK_NOTHROW(Trainer(m, reg, nullptr, t));
  }
  DiagonalOptimizer opt(m, o);
  std::vector<double> w = m.flat_params(), g(w.size(), 0.1);
  CHECK_THROWS_AS(opt.step(w, g, 0.1), std::logic_error);  // no diagonal yet
  CHECK_THROWS_WITH_AS(opt.set_state({{"exp_avg", {1.0}}}, 1), doctest::Contains("entries"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(opt.set_state({{"hessian", w}}, 1), doctest::Contains("does not belong"), std::invalid_argument);
}

TEST_CASE("curv train --optimizer adahessian|sophia and --gam: history, JSON and bad options") {
  const std::string out = (tmpdir() / "diag.h5").string();
  const std::string data = " --data random:1x6x6:3:32 --epochs 2 --batch-size 8 --out " + out;
  auto r = curv_test::curv("train --arch mlp:5 --optimizer sophia --hessian-estimator gnb --lr 0.01 --json" + data);
  REQUIRE(r.status == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["optimizer"] == "sophia");
  CHECK(j["optimizer_stats"]["hessian_refreshes"] == 0.0);  // refreshed at step 1 of 8 (4 per epoch) only
  CHECK(j["optimizer_stats"]["clip_fraction"].get<double>() >= 0);
  auto st = load_train_state(out);
  REQUIRE(st);
  CHECK(nlohmann::json::parse(st->config)["beta1"] == 0.965);
  CHECK(nlohmann::json::parse(st->config)["hessian_every"] == 10);
  r = curv_test::curv("train --arch mlp:5 --optimizer adahessian --lr 0.05 --json" + data);
  REQUIRE(r.status == 0);
  CHECK(nlohmann::json::parse(r.out)["optimizer_stats"]["hessian_refreshes"] == 4.0);
  r = curv_test::curv("train --arch mlp:5 --gam 0.05 --gam-alpha 0.3 --momentum 0.9 --sam 0.05 --json" + data);
  REQUIRE(r.status == 0);
  fs::remove(out);
  const std::pair<std::string, std::string> cases[] = {
      {"train --arch mlp:4 --optimizer adahessian --hessian-every 0" + data, "--hessian-every"},
      {"train --arch mlp:4 --optimizer adahessian --hessian-power -1" + data, "--hessian-power"},
      {"train --arch mlp:4 --optimizer adahessian --hessian-power 1.5" + data, "--hessian-power"},
      {"train --arch mlp:4 --optimizer adahessian --hessian-estimator gnb" + data, "gnb is Sophia's"},
      {"train --arch mlp:4 --optimizer sophia --hessian-estimator fisher" + data, "--hessian-estimator"},
      {"train --arch mlp:4 --optimizer sophia --sophia-gamma 0" + data, "--sophia-gamma"},
      {"train --arch mlp:4 --optimizer sgd --hessian-every 3" + data, "applies to --optimizer adahessian or sophia"},
      {"train --arch mlp:4 --gam 0" + data, "--gam: rho must be > 0"},
      {"train --arch mlp:4 --gam 0.1 --gam-alpha 0" + data, "--gam-alpha"},
  };
  for (const auto& [args, what] : cases) {
    curv_test::check_bad(args, what);
    CHECK_FALSE(fs::exists(out));
  }
}
