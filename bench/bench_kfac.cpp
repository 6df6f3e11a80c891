// Times K-FAC and the solvers against a gradient on a built-in architecture with synthetic data,
// and prints ratios measured in this one run (the machine is shared and noisy):
//   kfac_<type>_over_grad    factor computation (one layer_io sweep + eigendecompositions) / gradient
//   kfac_inverse_over_grad   one damped K-FAC inverse product over every K-FAC layer / gradient
//   cg_iter_over_ggn         one CG iteration (apply + O(P) updates) / one GGN product
//   block_cg_iter_over_ggn   one block-CG iteration over the layers / one GGN product
// Usage: bench_kfac [arch=lenet] [samples=256] [threads=2]
#include <tbb/global_control.h>

#include <cstdio>
#include <random>
#include <string>

#include "curvature/block_cg_solver.h"
#include "curvature/cg_solver.h"
#include "curvature/curvature_operator.h"
#include "curvature/kfac.h"
#include "src/core/builder.h"
#include "src/core/timer.h"

using namespace curv;

int main(int argc, char** argv) {
  const std::string arch = argc > 1 ? argv[1] : "lenet";
  const std::int64_t samples = argc > 2 ? std::stoll(argv[2]) : 256;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const Shape sample = arch == "lenet" ? Shape{1, 28, 28} : Shape{3, 32, 32};
  Model m = build_arch(arch, sample, 10, 1);
  Dataset d;
  d.source = "synthetic";
  d.sample_shape = sample;
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd;
  d.x.resize(samples * numel(sample));
  for (auto& v : d.x) v = nd(rng);
  for (std::int64_t i = 0; i < samples; ++i) d.labels.push_back(static_cast<std::int64_t>(rng() % 10));
  auto obj = Objective::create(m, d);
  auto best = [](int reps, auto&& f) {
    double b = 1e30;
    for (int r = 0; r < reps; ++r) {
      Timer t;
      f();
      b = std::min(b, t.seconds());
    }
    return b;
  };
  Eigen::VectorXd g;
  const double grad_s = best(3, [&] { obj->clear_cache(); obj->gradient(g); });
  obj->gradient(g);  // cached passes for what follows
  std::printf("{\"arch\": \"%s\", \"params\": %lld, \"samples\": %lld, \"threads\": %d, \"grad_s\": %.4f",
              arch.c_str(), (long long)m.num_params(), (long long)samples, threads, grad_s);
  std::unique_ptr<Kfac> kfac;
  for (KfacType t : {KfacType::Empirical, KfacType::MonteCarlo, KfacType::Exact}) {
    KfacOptions o;
    o.type = t;
    const double s = best(2, [&] { kfac = std::make_unique<Kfac>(*obj, o); });
    std::printf(", \"kfac_%s_s\": %.4f, \"kfac_%s_over_grad\": %.3f", kfac_type_name(t), s, kfac_type_name(t), s / grad_s);
  }
  std::vector<Eigen::MatrixXd> V;
  for (std::size_t l = 0; l < kfac->num_layers(); ++l) V.push_back(Eigen::MatrixXd::Random(kfac->layer(l).layer.size, 1));
  Eigen::MatrixXd Y;
  const double inv_s = best(5, [&] {
    for (std::size_t l = 0; l < kfac->num_layers(); ++l) kfac->inverse(l, 1e-3, KfacDamping::Exact, V[l], Y);
  });
  CurvatureOperator G(*obj, Curvature::GGN);
  const double ggn_s = best(3, [&] { G.apply(g, Y); });
  CgOptions co;
  co.damping = 1e-3;
  co.max_iters = 5;
  co.rtol = 1e-15;
  const double cg_s = best(2, [&] { CgSolver cg(G, co); cg.compute(g); }) / 6;  // 5 iterations + residual
  std::vector<std::pair<Eigen::Index, Eigen::Index>> blocks;
  for (const auto& b : m.blocks("layers")) blocks.push_back({m.params()[b.params[0]].offset, b.size});
  const double bcg_s = best(2, [&] { BlockCgSolver bcg(G, blocks, co); bcg.compute(g); }) / 6;
  std::printf(", \"kfac_inverse_s\": %.5f, \"kfac_inverse_over_grad\": %.4f, \"ggn_s\": %.4f, \"cg_iter_over_ggn\": %.3f, "
              "\"layers\": %zu, \"block_cg_iter_over_ggn\": %.3f}\n",
              inv_s, inv_s / grad_s, ggn_s, cg_s / ggn_s, blocks.size(), bcg_s / ggn_s);
  return 0;
}
