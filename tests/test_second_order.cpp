// Second-order optimizers (curvature/kfac_step_rule.h, curvature/hessian_free_step_rule.h) in the
// Trainer: HF and BHF steps against dense solves of the damped (block) systems, K-FAC steps
// against a dense re-computation of the rule (running factors, refreshes, exact damped inverse,
// KL clip, SGD momentum and weight decay), warm-started CG, resume == uninterrupted (bitwise),
// 1 vs 2 threads, the history in checkpoints, and `curv train` option checks.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Cholesky>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "curvature/block_cg_solver.h"
#include "curvature/cg_solver.h"
#include "curvature/curvature_operator.h"
#include "curvature/hessian_free_step_rule.h"
#include "curvature/kfac.h"
#include "curvature/kfac_step_rule.h"
#include "src/core/builder.h"
#include "src/io/checkpoint.h"
#include "src/io/internal/npz.h"
#include "src/io/onnx_import.h"
#include "src/train/trainer.h"
#include "tests/cli_run.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
namespace fs = std::filesystem;

namespace {

using curv_test::synthetic_data;

ObjectiveOptions f64(std::int64_t micro_batch = 3) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = micro_batch;
  return o;
}

Model mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

Model cnn(std::uint64_t seed) {
  ModelBuilder b({2, 5, 5}, seed);
  int x = b.unary(b.conv(b.input(), 3, 3, 2, 1, "conv1"), UnaryKind::Tanh);
  return b.finish(b.linear(b.flatten(x), 3, "fc"));
}

double rel(const Vector& a, const Vector& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

Vector vec(const std::vector<double>& v) { return Eigen::Map<const Vector>(v.data(), Eigen::Index(v.size())); }

// Dense curvature and gradient of `data` at the model's weights.
Matrix dense_curvature(const Model& m, const Dataset& data, Curvature c) {
  auto obj = Objective::create(m, data, f64());
  CurvatureOperator op(*obj, c);
  Matrix Y;
  op.apply(Matrix::Identity(op.rows(), op.rows()), Y);
  return 0.5 * (Y + Y.transpose());
}

Vector gradient(const Model& m, const Dataset& data) {
  auto obj = Objective::create(m, data, f64());
  Vector g;
  obj->gradient(g);
  return g;
}

TrainOptions full_batch(std::int64_t epochs) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 0;
  o.shuffle = false;
  o.objective = f64();
  o.schedule.lr = 1.0;
  return o;
}

HessianFreeOptions exact_hf() {
  HessianFreeOptions h;
  h.damping = 0.3;
  h.adapt_damping = false;
  h.max_iters = 1000;
  h.rtol = 1e-13;
  h.backtrack = false;
  return h;
}

}  // namespace

// Weights before the first and after every full-batch step (one step per epoch).
std::vector<std::vector<double>> run_steps(const Model& m0, const Dataset& d, TrainOptions o, StepRule* rule,
                                           TrainHistory* history = nullptr) {
  std::vector<std::vector<double>> ws{m0.flat_params()};
  Trainer t(m0, d, nullptr, o);
  if (rule) t.set_step_rule(rule);
  t.on_epoch_end = [&](Trainer& tr) { ws.push_back(tr.eval_model().flat_params()); };
  REQUIRE(t.run());
  if (history) *history = t.history();
  return ws;
}

Model with_weights(Model m, const std::vector<double>& w) {
  m.set_flat_params(w);
  return m;
}

TEST_CASE("HF and BHF steps equal dense solves of the damped GGN (block) systems, also on a curvature sub-batch") {
  const Model m0 = mlp(3);
  const Dataset d = synthetic_data({5}, 12, 3, 4);
  for (const char* blocks : {"", "layers", "fc1+fc2", "layers+restricted", "fc1+fc2+restricted"}) {
    for (std::int64_t cb : {0, 5}) {
      for (double wd : {0.0, 0.01}) {
        std::string block_spec = blocks;
        CAPTURE(block_spec);
        CAPTURE(cb);
        CAPTURE(wd);
        HessianFreeOptions h = exact_hf();
        // "+restricted": each block's products on its own parameters (HessianFreeOptions::restricted_blocks)
        const auto cut = block_spec.find("+restricted");
        h.restricted_blocks = cut != std::string::npos;
        if (h.restricted_blocks) block_spec.erase(cut);
        h.blocks = block_spec;
        h.curvature_batch = cb;
        h.weight_decay = wd;
        h.cg_decay = 0.5;
        HessianFreeStepRule rule(m0, h);
        TrainOptions o = full_batch(3);
        o.schedule.lr = 0.7;
        TrainHistory hist;
        const auto ws = run_steps(m0, d, o, &rule, &hist);
        REQUIRE(ws.size() == 4);
        REQUIRE(hist.optimizer.size() == 3);
        for (int s = 0; s < 3; ++s) {
          CAPTURE(s);
          const Model at = with_weights(m0, ws[s]);
          const Vector w0 = vec(ws[s]);
          Matrix C = dense_curvature(at, cb ? d.subset(0, cb) : d, Curvature::GGN);
          if (!rule.blocks().empty()) {  // the block-diagonal restriction
            Matrix D = Matrix::Zero(C.rows(), C.cols());
            for (const auto& [off, size] : rule.blocks()) D.block(off, off, size, size) = C.block(off, off, size, size);
            C = D;
          }
          const Vector b = -(gradient(at, d) + wd * w0);
          const Vector want = (C + (h.damping + wd) * Matrix::Identity(C.rows(), C.rows())).ldlt().solve(b);
          CHECK(rel((vec(ws[s + 1]) - w0) / 0.7, want) < 1e-9);
          CHECK(hist.optimizer[s].values.at("cg_residual") < 1e-10);
          CHECK(hist.optimizer[s].step == s + 1);
        }
        // Warm start: later steps start from 0.5 d_prev and need fewer iterations than a cold start
        // would at most (never more than the dimension).
        CHECK(hist.optimizer[1].values.at("cg_iterations") <= double(m0.num_params()) + 1);
      }
    }
  }
}

TEST_CASE("HF on the Hessian, Levenberg-Marquardt damping from the reduction ratio, and CG backtracking") {
  const Model m0 = mlp(5);
  const Dataset d = synthetic_data({5}, 10, 3, 6);
  HessianFreeOptions h = exact_hf();
  h.curvature = Curvature::Hessian;
  h.damping = 2.0;
  h.adapt_damping = true;
  h.max_iters = 4;
  h.backtrack = true;
  HessianFreeStepRule rule(m0, h);
  TrainHistory hist;
  const auto ws = run_steps(m0, d, full_batch(3), &rule, &hist);
  REQUIRE(hist.optimizer.size() == 3);
  double lambda = 2.0;
  for (int s = 0; s < 3; ++s) {
    CAPTURE(s);
    const auto& v = hist.optimizer[s].values;
    CHECK(v.at("damping") == doctest::Approx(lambda).epsilon(1e-15));
    // rho from the logged losses and a dense quadratic model at w_s.
    const Model at = with_weights(m0, ws[s]);
    const Vector sdir = vec(ws[s + 1]) - vec(ws[s]);
    const Matrix H = dense_curvature(at, d, Curvature::Hessian);
    const double q = gradient(at, d).dot(sdir) + 0.5 * sdir.dot(H * sdir);
    const double f0 = Objective::create(at, d, f64())->evaluate().loss;
    const double f1 = Objective::create(with_weights(m0, ws[s + 1]), d, f64())->evaluate().loss;
    CHECK(v.at("loss_after") == doctest::Approx(f1).epsilon(1e-12));
    CHECK(v.at("rho") == doctest::Approx((f1 - f0) / q).epsilon(1e-9));
    CHECK(v.at("cg_iterations") <= 4);
    CHECK(v.at("cg_chosen") <= v.at("cg_iterations"));
    const double rho = v.at("rho");
    if (rho > 0.75) lambda *= 2.0 / 3.0;
    else if (rho < 0.25) lambda *= 1.5;
  }
  CHECK(rule.damping() == doctest::Approx(lambda).epsilon(1e-15));
}

TEST_CASE("HF/BHF line search: Armijo on the rate, the loss never rises, and the rate is a power of 0.8 or 0") {
  const Model m0 = mlp(5);
  const Dataset d = synthetic_data({5}, 10, 3, 6);
  for (const char* blocks : {"", "layers"}) {
    const std::string block_spec = blocks;
    CAPTURE(block_spec);
    HessianFreeOptions h = exact_hf();
    h.blocks = blocks;
    h.damping = 1e-3;  // a nearly undamped Newton step, often too long
    h.line_search = true;
    HessianFreeStepRule rule(m0, h);
    TrainOptions o = full_batch(6);
    o.schedule.lr = 3.0;  // overshoot on purpose
    TrainHistory hist;
    const auto ws = run_steps(m0, d, o, &rule, &hist);
    bool shortened = false;
    for (int s = 0; s < 6; ++s) {
      CAPTURE(s);
      const double f0 = Objective::create(with_weights(m0, ws[s]), d, f64())->evaluate().loss;
      const double f1 = Objective::create(with_weights(m0, ws[s + 1]), d, f64())->evaluate().loss;
      CHECK(f1 <= f0);
      const double a = hist.optimizer[s].values.at("line_search_rate");
      CHECK(hist.optimizer[s].values.at("loss_after") == doctest::Approx(f1).epsilon(1e-12));
      if (a > 0) {
        const double k = std::log(a) / std::log(0.8);
        CHECK(std::abs(k - std::round(k)) < 1e-9);
        shortened = shortened || a < 1;
      }
    }
    CHECK(shortened);
  }
}

TEST_CASE("CG warm start: the solution is the same, the residual history starts at the start's residual") {
  const Model m = mlp(7);
  const Dataset d = synthetic_data({5}, 9, 3, 8);
  auto obj = Objective::create(m, d, f64());
  CurvatureOperator C(*obj, Curvature::GGN);
  const Vector b = curv_test::random_matrix(C.rows(), 1, 3).col(0);
  CgOptions co;
  co.damping = 0.1;
  co.rtol = 1e-13;
  CgSolver cold(C, co);
  cold.compute(b);
  const Matrix x0 = 0.9 * cold.solution();
  std::vector<LinearOperator::Index> seen;
  co.on_iteration = [&](LinearOperator::Index it, const Matrix&) { seen.push_back(it); };
  CgSolver warm2(C, co);
  warm2.compute(b, x0);
  CHECK(rel(warm2.solution().col(0), cold.solution().col(0)) < 1e-10);
  CHECK(warm2.residual_history()(0, 0) == doctest::Approx(0.1 * 1.0).epsilon(0.2));
  REQUIRE(!seen.empty());
  CHECK(seen.front() == 1);
  CHECK(seen.back() == warm2.num_iterations());
  // Block CG warm start.
  const std::vector<std::pair<Eigen::Index, Eigen::Index>> blocks{{0, 10}, {10, C.rows() - 10}};
  CgOptions bo;
  bo.damping = 0.1;
  bo.rtol = 1e-13;
  BlockCgSolver bc(C, blocks, bo), bw(C, blocks, bo);
  bc.compute(b);
  bw.compute(b, 0.5 * bc.solution());
  CHECK(rel(bw.solution(), bc.solution()) < 1e-10);
}

namespace {

// The K-FAC rule recomputed densely: per step the mini-batch factors (Kfac, the tested analysis
// object of curvature/kfac.h), running averages, refreshed dense inverses (K_l + lambda I)^-1 as
// explicit matrices, KL clip, SGD momentum and weight decay.
std::vector<double> kfac_reference(const Model& m0, const Dataset& d, const KfacStepOptions& k, double lr, int steps) {
  Model m = m0;
  std::vector<double> w = m.flat_params();
  std::vector<Matrix> A, B, Kinv;
  const LinearLayers found = find_linear_layers(m);
  Vector buf;
  for (int t = 0; t < steps; ++t) {
    m.set_flat_params(w);
    auto obj = Objective::create(m, d, f64());
    Vector g;
    obj->gradient(g);
    KfacOptions ko;
    ko.type = k.type;
    ko.seed = k.seed * 0x9e3779b97f4a7c15ull + std::uint64_t(t);
    Kfac batch(*obj, ko);
    for (std::size_t l = 0; l < batch.num_layers() && t % k.factor_every == 0; ++l) {
      if (t == 0) {
        A.push_back(batch.layer(l).A);
        B.push_back(batch.layer(l).B);
      } else {
        A[l] = k.stat_decay * A[l] + (1 - k.stat_decay) * batch.layer(l).A;
        B[l] = k.stat_decay * B[l] + (1 - k.stat_decay) * batch.layer(l).B;
      }
    }
    if (t % k.inv_every == 0) {
      Kinv.clear();
      Kfac snap = batch;
      for (std::size_t l = 0; l < batch.num_layers(); ++l) {
        snap.set_factors(l, A[l], B[l], false);
        const Matrix K = snap.dense(l);
        Kinv.push_back((K + k.damping * Matrix::Identity(K.rows(), K.cols())).ldlt().solve(Matrix::Identity(K.rows(), K.cols())));
      }
    }
    Vector v = g;
    double vg = 0;
    std::vector<std::pair<std::int64_t, Vector>> parts;
    for (std::size_t l = 0; l < found.layers.size(); ++l) {
      const auto& L = found.layers[l];
      Vector gl(L.size);
      Eigen::Index o = 0;
      for (int p : L.params) {
        gl.segment(o, m.params()[p].size) = g.segment(m.params()[p].offset, m.params()[p].size);
        o += m.params()[p].size;
      }
      const Vector vl = Kinv[l] * gl;
      vg += vl.dot(gl);
      o = 0;
      for (int p : L.params) {
        v.segment(m.params()[p].offset, m.params()[p].size) = vl.segment(o, m.params()[p].size);
        o += m.params()[p].size;
      }
    }
    const double nu = k.kl_clip > 0 ? std::min(1.0, std::sqrt(k.kl_clip / std::abs(vg * lr * lr))) : 1.0;
    for (const auto& L : found.layers)
      for (int p : L.params) v.segment(m.params()[p].offset, m.params()[p].size) *= nu;
    const Vector wv = vec(w);
    v += k.weight_decay * wv;
    buf = t == 0 ? v : Vector(k.momentum * buf + v);
    const Vector wn = wv - lr * buf;
    w.assign(wn.data(), wn.data() + wn.size());
  }
  return w;
}

}  // namespace

TEST_CASE("K-FAC steps equal the dense re-computation of the rule: MLP and CNN, exact, mc and empirical") {
  const Dataset dm = synthetic_data({5}, 12, 3, 4), dc = synthetic_data({2, 5, 5}, 8, 3, 5);
  for (const char* type : {"exact", "mc", "empirical", "mc-factor-every-2"}) {
    for (int net = 0; net < 2; ++net) {
      const std::string type_name = type;
      CAPTURE(type_name);
      CAPTURE(net);
      const Model m0 = net ? cnn(2) : mlp(2);
      const Dataset& d = net ? dc : dm;
      KfacStepOptions k;
      const bool every2 = type_name == "mc-factor-every-2";
      k.type = parse_kfac_type(every2 ? "mc" : type);
      k.stat_decay = 0.8;
      k.inv_every = every2 ? 4 : 2;
      k.factor_every = every2 ? 2 : 1;
      k.damping = 0.05;
      k.kl_clip = net ? 1e-3 : 0.0;  // clipping active on the CNN, off on the MLP
      k.momentum = 0.9;
      k.weight_decay = 0.01;
      k.seed = 11;
      std::string notes;
      KfacStepRule rule(m0, k, &notes);
      CHECK(notes.empty());
      TrainOptions o = full_batch(3);
      o.schedule.lr = 0.1;
      TrainHistory hist;
      const auto ws = run_steps(m0, d, o, &rule, &hist);
      const auto want = kfac_reference(m0, d, k, 0.1, 3);
      CHECK(rel(vec(ws.back()), vec(want)) < 1e-9);
      REQUIRE(hist.optimizer.size() == 3);
      CHECK(hist.optimizer[0].values.at("inverse_refresh") == 1);
      CHECK(hist.optimizer[1].values.at("inverse_refresh") == 0);
      CHECK(hist.optimizer[2].values.at("inverse_refresh") == (every2 ? 0 : 1));
      CHECK(hist.optimizer[1].values.at("factor_update") == (every2 ? 0 : 1));
      if (net) CHECK(hist.optimizer[0].values.at("kl_nu") < 1);
    }
  }
}

TEST_CASE("K-FAC: Levenberg-Marquardt damping, SGD fallback named, and a model without supported layers refused") {
  const Model m0 = mlp(4);
  const Dataset d = synthetic_data({5}, 12, 3, 4);
  KfacStepOptions k;
  k.type = KfacType::Exact;
  k.adapt_damping = true;
  k.damping = 0.1;
  KfacStepRule rule(m0, k);
  TrainHistory hist;
  run_steps(m0, d, full_batch(4), &rule, &hist);
  double lambda = 0.1;
  for (const auto& r : hist.optimizer) {
    CHECK(r.values.at("damping") == doctest::Approx(lambda).epsilon(1e-15));
    const double rho = r.values.at("rho");
    if (rho > 0.75) lambda *= 0.95;
    else if (rho < 0.25) lambda /= 0.95;
  }
  CHECK(rule.damping() == doctest::Approx(lambda).epsilon(1e-15));

  ModelBuilder nb({5}, 1);
  const Model none = nb.finish(nb.unary(nb.input(), UnaryKind::Tanh));
  CHECK_THROWS_WITH_AS(KfacStepRule(none, KfacStepOptions{}), doctest::Contains("no layer K-FAC supports"),
                       std::invalid_argument);
  KfacStepOptions bad;
  bad.inv_every = 0;
  CHECK_THROWS_WITH_AS(validate_kfac_step(bad), doctest::Contains("--inv-every"), std::invalid_argument);
  bad = {};
  bad.factor_every = 3;  // inv_every 10 is no multiple of 3
  CHECK_THROWS_WITH_AS(validate_kfac_step(bad), doctest::Contains("multiple of --factor-every"), std::invalid_argument);
  bad = {};
  bad.damping = -1;
  CHECK_THROWS_WITH_AS(validate_kfac_step(bad), doctest::Contains("--damping"), std::invalid_argument);
  HessianFreeOptions hb;
  hb.max_iters = 0;
  CHECK_THROWS_WITH_AS(validate_hessian_free(hb), doctest::Contains("--cg-max-iters"), std::invalid_argument);
  hb = {};
  hb.damping = -0.5;
  CHECK_THROWS_WITH_AS(validate_hessian_free(hb), doctest::Contains("--damping"), std::invalid_argument);
  hb = {};
  hb.blocks = "fc1+nope";
  CHECK_THROWS_WITH_AS(HessianFreeStepRule(m0, hb), doctest::Contains("'nope'"), std::invalid_argument);
}

TEST_CASE("kfac, hf and bhf: a run resumed from an epoch checkpoint equals an uninterrupted one, bit for bit") {
  const Model m0 = cnn(9);
  const Dataset d = synthetic_data({2, 5, 5}, 24, 3, 10);
  for (const char* name : {"kfac", "hf", "bhf"}) {
    const std::string optimizer = name;
    CAPTURE(optimizer);
    auto make = [&]() -> std::unique_ptr<StepRule> {
      if (std::string(name) == "kfac") {
        KfacStepOptions k;
        k.inv_every = 3;  // refreshes fall inside epochs: the restored inverses matter
        k.adapt_damping = true;
        k.momentum = 0.9;
        k.seed = 3;
        return std::make_unique<KfacStepRule>(m0, k);
      }
      HessianFreeOptions h;
      h.blocks = std::string(name) == "bhf" ? "layers" : "";
      h.max_iters = 5;
      h.curvature_batch = 4;
      return std::make_unique<HessianFreeStepRule>(m0, h);
    };
    TrainOptions o;
    o.epochs = 3;
    o.batch_size = 8;
    o.objective = f64(4);
    o.schedule.lr = std::string(name) == "kfac" ? 0.05 : 1.0;
    auto r_full = make();
    Trainer full(m0, d, nullptr, o);
    full.set_step_rule(r_full.get());
    REQUIRE(full.run());

    const std::string ckpt = (curv_test::tmpdir() / (std::string(name) + "_resume.h5")).string();
    {
      auto r = make();
      Trainer first(m0, d, nullptr, o);
      first.set_step_rule(r.get());
      first.on_epoch_end = [&](Trainer& t) {
        const TrainState s = t.state();
        save_checkpoint(t.eval_model(), ckpt, &s);
        t.request_stop();
      };
      CHECK_FALSE(first.run());
    }
    const auto state = load_train_state(ckpt);
    REQUIRE(state);
    CHECK(state->optimizer == name);
    CHECK(state->history.optimizer.size() == 3);
    auto r = make();
    Trainer resumed(load_checkpoint(ckpt), d, nullptr, o);
    resumed.set_step_rule(r.get());
    resumed.restore(*state);
    REQUIRE(resumed.run());
    CHECK(resumed.eval_model().flat_params() == full.eval_model().flat_params());
    REQUIRE(resumed.history().optimizer.size() == full.history().optimizer.size());
    for (std::size_t i = 0; i < full.history().optimizer.size(); ++i)
      CHECK(resumed.history().optimizer[i].values == full.history().optimizer[i].values);
    // Another optimizer's state is refused.
    auto other = std::make_unique<HessianFreeStepRule>(m0, HessianFreeOptions{});
    Trainer wrong(load_checkpoint(ckpt), d, nullptr, o);
    if (std::string(name) != "hf") {
      wrong.set_step_rule(other.get());
      CHECK_THROWS_WITH_AS(wrong.restore(*state), doctest::Contains("optimizer state is"), std::invalid_argument);
    }
  }
}

TEST_CASE("kfac, hf and bhf give identical weights with 1 and 2 threads") {
  const Model m0 = cnn(12);
  const Dataset d = synthetic_data({2, 5, 5}, 16, 3, 13);
  for (const char* name : {"kfac", "hf", "bhf"}) {
    const std::string optimizer = name;
    CAPTURE(optimizer);
    std::vector<double> w[2];
    for (int threads : {1, 2}) {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
      std::unique_ptr<StepRule> rule;
      if (std::string(name) == "kfac") {
        KfacStepOptions k;
        k.inv_every = 2;
        rule = std::make_unique<KfacStepRule>(m0, k);
      } else {
        HessianFreeOptions h;
        h.blocks = std::string(name) == "bhf" ? "layers" : "";
        h.max_iters = 6;
        rule = std::make_unique<HessianFreeStepRule>(m0, h);
      }
      TrainOptions o;
      o.epochs = 2;
      o.batch_size = 8;
      o.objective = f64(2);
      o.schedule.lr = std::string(name) == "kfac" ? 0.05 : 1.0;
      Trainer t(m0, d, nullptr, o);
      t.set_step_rule(rule.get());
      REQUIRE(t.run());
      w[threads - 1] = t.eval_model().flat_params();
    }
    CHECK(w[0] == w[1]);
    CHECK(w[0] != m0.flat_params());
  }
}

TEST_CASE("curv train --optimizer kfac|hf|bhf: checkpoint history, and bad options give one line and exit 2") {
  const std::string out = (curv_test::tmpdir() / "so.h5").string();
  const std::string data = " --data random:1x6x6:3:32 --batch-size 16 --epochs 1 --threads 2 --out " + out;
  for (const char* args : {"--optimizer kfac --lr 0.05 --inv-every 1",
                           "--optimizer hf --lr 1 --cg-max-iters 3 --curvature-batch 8",
                           "--optimizer bhf --lr 1 --cg-max-iters 3 --blocks layers"}) {
    CAPTURE(args);
    fs::remove(out);
    auto r = curv_test::curv(std::string("train --arch mlp:6 ") + args + data + " --json");
    INFO(r.err);
    REQUIRE(r.status == 0);
    const auto st = load_train_state(out);
    REQUIRE(st);
    CHECK(st->history.optimizer.size() == 2);
    CHECK(st->history.optimizer[0].values.count("damping") == 1);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["optimizer_last_step"]["damping"].get<double>() == st->history.optimizer.back().values.at("damping"));
  }
  fs::remove(out);
  const std::pair<std::string, std::string> cases[] = {
      {"train --arch mlp:4 --optimizer kfac --damping -1" + data, "--damping"},
      {"train --arch mlp:4 --optimizer hf --damping -1" + data, "--damping"},
      {"train --arch mlp:4 --optimizer hf --cg-max-iters 0" + data, "--cg-max-iters"},
      {"train --arch mlp:4 --optimizer kfac --inv-every 0" + data, "--inv-every"},
      {"train --arch mlp:4 --optimizer bhf --blocks nope" + data, "'nope'"},
      {"train --arch resnet20 --optimizer kfac --data random:3x8x8:3:32 --epochs 1 --out " + out, "BatchNorm node"},
  };
  for (const auto& [args, what] : cases) {
    curv_test::check_bad(args, what);
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("first 3 steps of kfac, hf and bhf equal the PyTorch reference (scripts/make_second_order_fixtures.py)") {
  const std::string dir = std::string(CURV_SOURCE_DIR) + "/data/fixtures/second_order/";
  for (const char* net : {"mlp", "cnn"}) {
    const NpzFile z(dir + net + ".npz");
    Dataset d;
    d.source = z.path();
    const auto& x = z.get("x");
    d.sample_shape = Shape(x.shape.begin() + 1, x.shape.end());
    d.x.assign(x.data.begin(), x.data.end());
    d.labels = z.get("y").ints;
    ImportOptions io;
    const Model m0 = import_onnx(dir + net + ".onnx", io);
    for (const char* config : {"kfac_exact", "kfac_empirical", "hf", "bhf"}) {
      const std::string c = config, net_name = net;
      CAPTURE(net_name);
      CAPTURE(c);
      std::unique_ptr<StepRule> rule;
      double lr = 1.0;
      if (c.rfind("kfac", 0) == 0) {
        KfacStepOptions k;
        k.type = c == "kfac_exact" ? KfacType::Exact : KfacType::Empirical;
        k.stat_decay = 0.8;
        k.inv_every = 2;
        k.damping = 0.05;
        k.kl_clip = c == "kfac_exact" ? 1e-3 : 0.0;
        k.momentum = 0.9;
        k.weight_decay = 0.01;
        rule = std::make_unique<KfacStepRule>(m0, k);
        lr = 0.1;
      } else {
        HessianFreeOptions h;
        h.blocks = c == "bhf" ? "layers" : "";
        h.damping = 0.5;
        h.adapt_damping = true;
        h.max_iters = 5;
        h.rtol = 1e-10;
        h.cg_decay = 0.95;
        h.curvature_batch = 4;
        h.backtrack = true;
        h.weight_decay = 0.01;
        rule = std::make_unique<HessianFreeStepRule>(m0, h);
      }
      TrainOptions o = full_batch(3);
      o.objective = f64(4);
      o.schedule.lr = lr;
      TrainHistory hist;
      const auto ws = run_steps(m0, d, o, rule.get(), &hist);
      const Model after = with_weights(m0, ws.back());
      for (const auto& p : after.params()) {
        CAPTURE(p.name);
        const auto& want = z.get(c + "/" + p.name).data;
        const auto& got = after.param(after.values()[p.value].index).vec();
        REQUIRE(got.size() == want.size());
        CHECK(rel(Eigen::Map<const Vector>(got.data(), Eigen::Index(got.size())),
                  Eigen::Map<const Vector>(want.data(), Eigen::Index(want.size()))) < 1e-9);
      }
      if (c == "hf" || c == "bhf") {
        const auto& loss_after = z.get(c + "/loss_after").data;
        const auto& damping = z.get(c + "/damping").data;
        REQUIRE(hist.optimizer.size() == 3);
        for (int s = 0; s < 3; ++s) {
          CHECK(hist.optimizer[s].values.at("loss_after") == doctest::Approx(loss_after[s]).epsilon(1e-10));
          CHECK(hist.optimizer[s].values.at("damping") == doctest::Approx(damping[s]).epsilon(1e-12));
        }
      }
    }
  }
}
