// Second-order optimizer steps (curv train --optimizer kfac | hf | bhf) against an SGD step on the
// same mini-batches, through the Trainer, on a built-in architecture with synthetic data. Prints
// one JSON line with ratios measured in this one run (the machine is shared and noisy: run it
// twice and quote both). Every timing is the minimum over `reps` repetitions, interleaved
// (SGD, K-FAC, K-FAC, SGD, ...) so that a load change on the machine hits all of them alike.
//   gam_over_sgd          GAM step (--gam 0.05 on SGD: two gradients, two Hessian-gradient products
//                         that reuse their gradient's passes) / SGD step
//   kfac_over_sgd         K-FAC step, factors every step, inverses every 10 steps
//                         (kfac-pytorch's factor_update_steps = 1, inv_update_steps = 10; curv's
//                         --factor-every 1 --inv-every 10), amortized over the steps, / SGD step
//   kfac_f10_over_sgd     factors and inverses every 10 steps (factor_update_steps = 10,
//                         inv_update_steps = 10; --factor-every 10 --inv-every 10)
//   hf_iter_over_ggn      one HF CG iteration / one GGN product on the curvature batch
//                         (HF step with a fixed number of iterations; the step's extra passes --
//                         gradient, loss evaluations, the rho product -- subtracted by running
//                         the same step with 1 and with 1 + K iterations)
//   bhf_iter_over_ggn     the same for BHF over the layer blocks: one pass with L tangent columns
//                         (column l zero outside block l), i.e. ~ L GGN products' tangent work
//   bhf_restricted_iter_over_ggn  the same with HessianFreeOptions::restricted_blocks
//                         (--restricted-blocks: one product per block on its own parameters)
//   block_columns_over_ggn     that pass alone: one product on the [P, L] block / one GGN product
//   block_restricted_over_ggn  the L diagonal-block products C_ll v_l each on its own parameters
//                         (Objective::product with `params`): the forward tangent starts at block
//                         l and the reverse tangent stops there, so each skips its block's zero
//                         prefix; the floor of exact block-diagonal products on a chain
//   ggn_tangent_over_grad one GGN product (primal pass kept) / one fresh gradient (forward + backward)
//   hessian_tangent_over_grad  one Hessian product right after a gradient at the same point with
//                         ObjectiveOptions::keep_activation_grads (GAM's pattern: only the tangent
//                         sweeps run) / one fresh gradient
// Usage: bench_second_order [arch=lenet] [batch=256] [threads=2] [steps=20] [reps=3]
#include <tbb/global_control.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "curvature/curvature_operator.h"
#include "curvature/hessian_free_step_rule.h"
#include "curvature/kfac_step_rule.h"
#include "src/core/builder.h"
#include "src/core/timer.h"
#include "src/train/trainer.h"
#include "bench/bench_util.h"

using namespace curv;

int main(int argc, char** argv) {
  const std::string arch = argc > 1 ? argv[1] : "lenet";
  const std::int64_t batch = argc > 2 ? std::stoll(argv[2]) : 256;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  const std::int64_t steps = argc > 4 ? std::stoll(argv[4]) : 20;
  const int reps = argc > 5 ? std::stoi(argv[5]) : 3;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const Shape sample = arch == "lenet" ? Shape{1, 28, 28} : arch.rfind("mlp", 0) == 0 ? Shape{784} : Shape{3, 32, 32};
  const Model m = build_arch(arch, sample, 10, 1);
  const Dataset d = bench::synthetic_dataset(sample, batch * steps);

  auto train_seconds = [&](StepRule* rule, double lr, double gam_rho = 0) {
    TrainOptions o;
    o.sharpness.gam_rho = gam_rho;
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
  double sgd_s = 1e30, kfac_s = 1e30, kfac10_s = 1e30, gam_s = 1e30;
  for (int r = 0; r < reps; ++r) {
    sgd_s = std::min(sgd_s, train_seconds(nullptr, 0.01));
    gam_s = std::min(gam_s, train_seconds(nullptr, 0.01, 0.05));
    KfacStepOptions ko;
    ko.factor_every = 1;
    ko.inv_every = 10;
    KfacStepRule kfac(m, ko);
    kfac_s = std::min(kfac_s, train_seconds(&kfac, 0.01));
    ko.factor_every = 10;
    KfacStepRule kfac10(m, ko);
    kfac10_s = std::min(kfac10_s, train_seconds(&kfac10, 0.01));
  }

  // One gradient and one GGN product on the whole batch (the curvature batch below), passes kept.
  const Dataset one = d.subset(0, batch);
  auto obj = Objective::create(m, one);
  Eigen::VectorXd g;
  obj->gradient(g);
  double grad_s = 1e30;
  for (int r = 0; r < reps; ++r) {  // a fresh gradient: forward and backward
    auto fresh = Objective::create(m, one);
    Eigen::VectorXd fg;
    Timer t;
    fresh->gradient(fg);
    grad_s = std::min(grad_s, t.seconds());
  }
  // A Hessian product after a gradient at the same point, activation gradients kept (GAM's pattern).
  ObjectiveOptions keep;
  keep.keep_activation_grads = true;
  double hess_s = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto hobj = Objective::create(m, one, keep);
    Eigen::VectorXd hg;
    hobj->gradient(hg);
    CurvatureOperator H(*hobj, Curvature::Hessian);
    Eigen::MatrixXd HY;
    Timer t;
    H.apply(hg, HY);
    hess_s = std::min(hess_s, t.seconds());
  }
  CurvatureOperator G(*obj, Curvature::GGN);
  Eigen::MatrixXd Y;
  double ggn_s = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    G.apply(g, Y);
    ggn_s = std::min(ggn_s, t.seconds());
  }
  // BHF's products alone: the L block directions as L columns of one pass, and as L restricted products.
  const std::vector<ParamBlock> layers = m.blocks("layers");
  const auto L = static_cast<Eigen::Index>(layers.size());
  Eigen::MatrixXd B = Eigen::MatrixXd::Zero(g.size(), L);
  std::vector<CurvatureOperator> restricted;
  std::vector<Eigen::MatrixXd> parts;
  for (Eigen::Index l = 0; l < L; ++l) {
    const auto& ps = layers[l].params;
    const std::int64_t off = m.params()[*std::min_element(ps.begin(), ps.end())].offset;
    B.col(l).segment(off, layers[l].size) = g.segment(off, layers[l].size);
    restricted.emplace_back(*obj, Curvature::GGN, ps);
    parts.push_back(g.segment(off, layers[l].size));
  }
  double columns_s = 1e30, restricted_s = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    G.apply(B, Y);
    columns_s = std::min(columns_s, t.seconds());
    Timer t2;
    for (Eigen::Index l = 0; l < L; ++l) restricted[l].apply(parts[l], Y);
    restricted_s = std::min(restricted_s, t2.seconds());
  }
  // HF/BHF per CG iteration: steps with max_iters 1 and 1 + K on the same batches, the difference / K.
  const std::int64_t K = 8;
  auto hf_iter = [&](const char* blocks, bool restricted) {
    double s[2] = {1e30, 1e30};
    for (int r = 0; r < std::max(1, reps - 1); ++r)
      for (int i = 0; i < 2; ++i) {
        HessianFreeOptions h;
        h.blocks = blocks;
        h.restricted_blocks = restricted;
        h.max_iters = i ? 1 + K : 1;
        h.rtol = 1e-15;
        h.backtrack = false;
        h.cg_decay = 0;  // no warm start: the same work every step
        HessianFreeStepRule rule(m, h);
        s[i] = std::min(s[i], train_seconds(&rule, 1.0));
      }
    return (s[1] - s[0]) / double(K);
  };
  const double hf_s = hf_iter("", false), bhf_s = hf_iter("layers", false), bhfr_s = hf_iter("layers", true);
  std::printf("{\"arch\": \"%s\", \"params\": %lld, \"batch\": %lld, \"threads\": %d, \"steps\": %lld, \"reps\": %d, "
              "\"sgd_step_s\": %.4f, \"kfac_step_s\": %.4f, \"kfac_f10_step_s\": %.4f, "
              "\"gam_over_sgd\": %.3f, \"kfac_factor_every\": 1, \"kfac_inv_every\": 10, \"kfac_over_sgd\": %.3f, "
              "\"kfac_f10_factor_every\": 10, \"kfac_f10_inv_every\": 10, \"kfac_f10_over_sgd\": %.3f, "
              "\"grad_s\": %.4f, \"ggn_s\": %.4f, \"ggn_tangent_over_grad\": %.3f, \"hessian_tangent_over_grad\": %.3f, "
              "\"hf_iter_s\": %.4f, \"hf_iter_over_ggn\": %.3f, \"layers\": %lld, \"bhf_iter_s\": %.4f, "
              "\"bhf_iter_over_ggn\": %.3f, \"bhf_restricted_iter_over_ggn\": %.3f, \"block_columns_over_ggn\": %.3f, \"block_restricted_over_ggn\": %.3f}\n",
              arch.c_str(), (long long)m.num_params(), (long long)batch, threads, (long long)steps, reps, sgd_s, kfac_s,
              kfac10_s, gam_s / sgd_s, kfac_s / sgd_s, kfac10_s / sgd_s, grad_s, ggn_s, ggn_s / grad_s, hess_s / grad_s, hf_s, hf_s / ggn_s,
              (long long)L, bhf_s, bhf_s / ggn_s, bhfr_s / ggn_s, columns_s / ggn_s, restricted_s / ggn_s);
  return 0;
}
