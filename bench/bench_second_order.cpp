// Second-order optimizer steps (curv train --optimizer kfac | hf | bhf) against an SGD step on the
// same mini-batches, through the Trainer, on a built-in architecture with synthetic data. Prints
// one JSON line with ratios measured in this one run (the machine is shared and noisy: run it
// twice and quote both):
//   kfac_over_sgd         K-FAC step (inverses every 10 steps, mc factors every step), amortized
//                         over the steps, / SGD step
//   kfac_f10_over_sgd     the same with factors every 10 steps (--factor-every 10)
//   hf_iter_over_ggn      one HF CG iteration / one GGN product on the curvature batch
//                         (HF step with a fixed number of iterations; the step's extra passes --
//                         gradient, loss evaluations, the rho product -- subtracted by running
//                         the same step with 1 and with 1 + K iterations)
//   bhf_iter_over_ggn     the same for BHF over the layer blocks (L tangent columns per pass)
// Usage: bench_second_order [arch=lenet] [batch=256] [threads=2] [steps=20]
#include <tbb/global_control.h>

#include <cstdio>
#include <random>
#include <string>

#include "curvature/curvature_operator.h"
#include "curvature/hessian_free_step_rule.h"
#include "curvature/kfac_step_rule.h"
#include "src/core/builder.h"
#include "src/core/timer.h"
#include "src/train/trainer.h"

using namespace curv;

int main(int argc, char** argv) {
  const std::string arch = argc > 1 ? argv[1] : "lenet";
  const std::int64_t batch = argc > 2 ? std::stoll(argv[2]) : 256;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  const std::int64_t steps = argc > 4 ? std::stoll(argv[4]) : 20;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const Shape sample = arch == "lenet" ? Shape{1, 28, 28} : arch.rfind("mlp", 0) == 0 ? Shape{784} : Shape{3, 32, 32};
  const Model m = build_arch(arch, sample, 10, 1);
  Dataset d;
  d.source = "synthetic";
  d.sample_shape = sample;
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd;
  d.x.resize(batch * steps * numel(sample));
  for (auto& v : d.x) v = nd(rng);
  for (std::int64_t i = 0; i < batch * steps; ++i) d.labels.push_back(static_cast<std::int64_t>(rng() % 10));

  auto train_seconds = [&](StepRule* rule, double lr) {
    TrainOptions o;
    o.epochs = 1;
    o.batch_size = batch;
    o.shuffle = false;
    o.schedule.lr = lr;
    Trainer t(m, d, nullptr, o);
    if (rule) t.set_step_rule(rule);
    Timer timer;
    t.run();
    return timer.seconds() / double(steps);
  };
  const double sgd_s = train_seconds(nullptr, 0.01);
  KfacStepOptions ko;
  ko.inv_every = 10;
  KfacStepRule kfac(m, ko);
  const double kfac_s = train_seconds(&kfac, 0.01);
  ko.factor_every = 10;
  KfacStepRule kfac10(m, ko);
  const double kfac10_s = train_seconds(&kfac10, 0.01);

  // One GGN product on the whole batch (the curvature batch below).
  const Dataset one = d.subset(0, batch);
  auto obj = Objective::create(m, one);
  Eigen::VectorXd g;
  obj->gradient(g);
  CurvatureOperator G(*obj, Curvature::GGN);
  Eigen::MatrixXd Y;
  double ggn_s = 1e30;
  for (int r = 0; r < 3; ++r) {
    Timer t;
    G.apply(g, Y);
    ggn_s = std::min(ggn_s, t.seconds());
  }
  // HF/BHF per CG iteration: steps with max_iters 1 and 1 + K on the same batches, the difference / K.
  const std::int64_t K = 8;
  auto hf_iter = [&](const char* blocks) {
    double s[2];
    for (int i = 0; i < 2; ++i) {
      HessianFreeOptions h;
      h.blocks = blocks;
      h.max_iters = i ? 1 + K : 1;
      h.rtol = 1e-15;
      h.backtrack = false;
      h.cg_decay = 0;  // no warm start: the same work every step
      HessianFreeStepRule rule(m, h);
      s[i] = train_seconds(&rule, 1.0);
    }
    return (s[1] - s[0]) / double(K);
  };
  const double hf_s = hf_iter(""), bhf_s = hf_iter("layers");
  std::printf("{\"arch\": \"%s\", \"params\": %lld, \"batch\": %lld, \"threads\": %d, \"steps\": %lld, "
              "\"sgd_step_s\": %.4f, \"kfac_step_s\": %.4f, \"kfac_over_sgd\": %.3f, \"kfac_f10_over_sgd\": %.3f, \"ggn_s\": %.4f, "
              "\"hf_iter_s\": %.4f, \"hf_iter_over_ggn\": %.3f, \"layers\": %zu, \"bhf_iter_s\": %.4f, "
              "\"bhf_iter_over_ggn\": %.3f}\n",
              arch.c_str(), (long long)m.num_params(), (long long)batch, threads, (long long)steps, sgd_s, kfac_s,
              kfac_s / sgd_s, kfac10_s / sgd_s, ggn_s, hf_s, hf_s / ggn_s, m.blocks("layers").size(), bhf_s, bhf_s / ggn_s);
  return 0;
}
