// Times K-FAC and the solvers against a gradient on a built-in architecture with synthetic data,
// and prints ratios measured in this one run (the machine is shared and noisy):
//   kfac_<type>_over_grad    factor computation (one layer_io sweep + eigendecompositions) / gradient
//   kfac_<type>_factors_over_grad  the layer_io sweep alone (decompose = false: what an optimizer
//                            pays per factor update; it decomposes every few steps)
//   kfac_<type>_cold_over_grad     the sweep alone with no kept forward passes (forward included)
//   kfac_<type>_gflop        the sweep's floor: sum over layers of the symmetric rank-k updates,
//                            T N in_ext^2 (A) + R T N out^2 (B, R = cotangents per sample: C
//                            classes for exact, 1 for mc and empirical), 2 flops per multiply-add
//   grad_gflop               the gradient's floor over the same layers: 6 T N in out (forward,
//                            input and weight gradients; 4 for the first layer, no input gradient)
//   layer_flops              per layer [name, A flops, B flops per cotangent]
//   kfac_inverse_over_grad   one damped K-FAC inverse product over every K-FAC layer / gradient
//   cg_iter_over_ggn         one CG iteration (apply + O(P) updates) / one GGN product
//   block_cg_iter_over_ggn   one block-CG iteration over the layers / one GGN product
// Usage: bench_kfac [arch=lenet] [samples=256] [threads=2]
//
// With a model file instead (bench_kfac data/fmnist_cnn.onnx [samples=128] [threads=2] [reps=3]):
// the solver costs alone on the first `samples` Fashion-MNIST training images, GGN + 1e-3 I, each
// timing the minimum of `reps` interleaved repetitions of 3 iterations (plus the residual product):
//   ggn_s                         one GGN product (primal passes kept)
//   cg_iter_over_ggn              one CG iteration / one GGN product
//   block_cg_iter_over_ggn        one block-CG iteration, all layers active, one pass with one
//                                 column per layer (the default) / one GGN product
//   block_cg_restricted_iter_over_ggn  the same with each layer's product on its own parameters
//                                 (`curv solve --restricted-blocks`) / one GGN product
//   restricted_products_over_ggn  the L restricted block products alone / one GGN product
//   gram_layers, gram_gb          layers covered by gram block products (gram_blocks.h), their store
//   gram_setup_over_ggn           the gram sweep (C reverse passes + per-sample factors), once / one GGN product
//   block_cg_gram_iter_over_ggn   one block-CG iteration with gram products (`curv solve --method
//                                 block-cg`'s default) / one GGN product
//   gram_products_over_ggn        the L gram block products alone / one GGN product
#include <tbb/global_control.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "curvature/block_cg_solver.h"
#include "curvature/cg_solver.h"
#include "curvature/gram_blocks.h"
#include "curvature/curvature_operator.h"
#include "curvature/kfac.h"
#include "src/core/allocator_tuning.h"
#include "src/core/builder.h"
#include "src/core/linear_layers.h"
#include "src/core/timer.h"
#include "src/io/data_io.h"
#include "src/io/model_source.h"
#include "bench/bench_util.h"

using namespace curv;

namespace {

using bench::best_of;

// Solver costs on a model file (see the header): interleaved repetitions, minimum of each.
int solve_costs(const std::string& path, std::int64_t samples, int threads, int reps) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  DataOptions dop;
  dop.samples = samples;
  const Dataset d = load_dataset("fashion-mnist:train", dop);
  ModelSource src;
  src.path = path;
  const Model m = load_model(src, &d);
  auto obj = Objective::create(m, d);
  Eigen::VectorXd g;
  obj->gradient(g);  // keeps the primal passes for the products
  CurvatureOperator G(*obj, Curvature::GGN);
  std::vector<std::pair<Eigen::Index, Eigen::Index>> blocks;
  std::vector<CurvatureOperator> own;
  std::vector<const LinearOperator*> ops;
  const auto layer_blocks = m.blocks("layers");
  own.reserve(layer_blocks.size());
  for (const auto& b : layer_blocks) {
    blocks.push_back({m.params()[b.params[0]].offset, b.size});
    own.emplace_back(*obj, Curvature::GGN, b.params);
  }
  for (const auto& op : own) ops.push_back(&op);
  // Gram blocks (the default of `curv solve --method block-cg` where they apply): the sweep once,
  // then no model pass per iteration; blocks gram leaves get their restricted operator.
  ObjectiveOptions oo;
  Timer setup;
  const GramBlockOperators gram(*obj, d, oo, Curvature::GGN, layer_blocks, 0);
  const double gram_setup = setup.seconds();
  std::vector<const LinearOperator*> gram_ops = gram.ops();
  for (std::size_t l = 0; l < gram_ops.size(); ++l)
    if (!gram_ops[l]) gram_ops[l] = ops[l];
  CgOptions co;
  co.damping = 1e-3;
  co.max_iters = 3;
  co.rtol = 1e-15;  // every block stays active for the 3 iterations
  Eigen::MatrixXd Y;
  std::vector<Eigen::VectorXd> parts;
  for (const auto& [off, size] : blocks) parts.push_back(g.segment(off, size));
  double ggn = 1e30, cg = 1e30, bcg = 1e30, rbcg = 1e30, rprod = 1e30, gbcg = 1e30, gprod = 1e30;
  std::int64_t bcg_ops = 0, rbcg_ops = 0;
  const bool gram_only = std::getenv("BENCH_GRAM_ONLY") != nullptr;  // skip the pass and restricted variants
  for (int r = 0; r < reps; ++r) {  // interleaved, so that load changes hit every variant alike
    ggn = std::min(ggn, best_of(1, [&] { G.apply(g, Y); }));
    cg = std::min(cg, best_of(1, [&] { CgSolver s(G, co); s.compute(g); }) / 4);
    if (gram_only) {
      bcg = rbcg = rprod = 0;
    } else {
      bcg = std::min(bcg, best_of(1, [&] { BlockCgSolver s(G, blocks, co); s.compute(g); bcg_ops = s.num_operations(); }) / 4);
      rbcg = std::min(rbcg, best_of(1, [&] { BlockCgSolver s(G, blocks, ops, co); s.compute(g); rbcg_ops = s.num_operations(); }) / 4);
      rprod = std::min(rprod, best_of(1, [&] { for (std::size_t l = 0; l < own.size(); ++l) own[l].apply(parts[l], Y); }));
    }
    gbcg = std::min(gbcg, best_of(1, [&] { BlockCgSolver s(G, blocks, gram_ops, co); s.compute(g); }) / 4);
    gprod = std::min(gprod, best_of(1, [&] { for (std::size_t l = 0; l < gram_ops.size(); ++l) gram_ops[l]->apply(parts[l], Y); }));
  }
  std::printf("{\"model\": \"%s\", \"params\": %lld, \"samples\": %lld, \"threads\": %d, \"layers\": %zu, "
              "\"reps\": %d, \"ggn_s\": %.4f, \"cg_iter_over_ggn\": %.3f, \"block_cg_iter_over_ggn\": %.3f, "
              "\"block_cg_restricted_iter_over_ggn\": %.3f, \"restricted_products_over_ggn\": %.3f, "
              "\"block_cg_columns\": %lld, \"block_cg_restricted_products\": %lld, \"gram_layers\": %zu, "
              "\"gram_gb\": %.3f, \"gram_setup_over_ggn\": %.3f, \"block_cg_gram_iter_over_ggn\": %.4f, "
              "\"gram_products_over_ggn\": %.4f}\n",
              path.c_str(), (long long)m.num_params(), (long long)d.size(), threads, blocks.size(), reps, ggn,
              cg / ggn, bcg / ggn, rbcg / ggn, rprod / ggn, (long long)bcg_ops, (long long)rbcg_ops, gram.covered(),
              double(gram.bytes()) / 1e9, gram_setup / ggn, gbcg / ggn, gprod / ggn);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tune_glibc_allocator();  // as the curv binary
  const std::string arch = argc > 1 ? argv[1] : "lenet";
  if (arch.size() > 5 && arch.substr(arch.size() - 5) == ".onnx")
    return solve_costs(arch, argc > 2 ? std::stoll(argv[2]) : 128, argc > 3 ? std::stoi(argv[3]) : 2,
                       argc > 4 ? std::stoi(argv[4]) : 3);
  const std::int64_t samples = argc > 2 ? std::stoll(argv[2]) : 256;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const Shape sample = arch == "lenet" ? Shape{1, 28, 28} : Shape{3, 32, 32};
  Model m = build_arch(arch, sample, 10, 1);
  const Dataset d = bench::synthetic_dataset(sample, samples);
  auto obj = Objective::create(m, d);
  Eigen::VectorXd g;
  const double grad_s = best_of(3, [&] { obj->clear_cache(); obj->gradient(g); });
  obj->gradient(g);  // cached passes for what follows
  std::printf("{\"arch\": \"%s\", \"params\": %lld, \"samples\": %lld, \"threads\": %d, \"grad_s\": %.4f",
              arch.c_str(), (long long)m.num_params(), (long long)samples, threads, grad_s);
  // FLOP floors (only the linear layers K-FAC covers: the rest of the gradient is not counted).
  const LinearLayers found = find_linear_layers(m);
  double a_flops = 0, b_flops = 0, g_flops = 0;
  std::string per_layer;
  for (std::size_t i = 0; i < found.layers.size(); ++i) {
    const LinearLayer& l = found.layers[i];
    const double rows = double(samples) * double(l.positions);
    const double fa = rows * double(l.in_ext()) * double(l.in_ext() + 1), fb = rows * double(l.out) * double(l.out + 1);
    a_flops += fa;
    b_flops += fb;
    g_flops += (i == 0 ? 4 : 6) * rows * double(l.in) * double(l.out);
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s[\"%s\", %.4g, %.4g]", per_layer.empty() ? "" : ", ", l.name.c_str(), fa, fb);
    per_layer += buf;
  }
  std::printf(", \"kept_bytes\": %zu, \"grad_gflop\": %.3f", obj->cache_bytes_used(), g_flops * 1e-9);
  std::unique_ptr<Kfac> kfac;
  for (KfacType t : {KfacType::Empirical, KfacType::MonteCarlo, KfacType::Exact}) {
    KfacOptions o;
    o.type = t;
    const char* n = kfac_type_name(t);
    const double R = t == KfacType::Exact ? 10 : 1;
    KfacOptions lazy = o;
    lazy.decompose = false;
    const double f = best_of(2, [&] { Kfac k(*obj, lazy); });
    const double s = best_of(2, [&] { kfac = std::make_unique<Kfac>(*obj, o); });
    std::printf(", \"kfac_%s_s\": %.4f, \"kfac_%s_over_grad\": %.3f, \"kfac_%s_factors_over_grad\": %.3f, "
                "\"kfac_%s_gflop\": %.3f",
                n, s, n, s / grad_s, n, f / grad_s, n, (a_flops + R * b_flops) * 1e-9);
  }
  {
    auto cold = Objective::create(m, d);
    KfacOptions o;
    o.type = KfacType::MonteCarlo;
    o.decompose = false;
    const double c = best_of(2, [&] { cold->clear_cache(); Kfac k(*cold, o); });
    std::printf(", \"kfac_mc_cold_over_grad\": %.3f", c / grad_s);
  }
  std::printf(", \"layer_flops\": [%s]", per_layer.c_str());
  std::vector<Eigen::MatrixXd> V;
  for (std::size_t l = 0; l < kfac->num_layers(); ++l) V.push_back(Eigen::MatrixXd::Random(kfac->layer(l).layer.size, 1));
  Eigen::MatrixXd Y;
  const double inv_s = best_of(5, [&] {
    for (std::size_t l = 0; l < kfac->num_layers(); ++l) kfac->inverse(l, 1e-3, KfacDamping::Exact, V[l], Y);
  });
  CurvatureOperator G(*obj, Curvature::GGN);
  const double ggn_s = best_of(3, [&] { G.apply(g, Y); });
  CgOptions co;
  co.damping = 1e-3;
  co.max_iters = 5;
  co.rtol = 1e-15;
  const double cg_s = best_of(2, [&] { CgSolver cg(G, co); cg.compute(g); }) / 6;  // 5 iterations + residual
  std::vector<std::pair<Eigen::Index, Eigen::Index>> blocks;
  for (const auto& b : m.blocks("layers")) blocks.push_back({m.params()[b.params[0]].offset, b.size});
  const double bcg_s = best_of(2, [&] { BlockCgSolver bcg(G, blocks, co); bcg.compute(g); }) / 6;
  std::printf(", \"kfac_inverse_s\": %.5f, \"kfac_inverse_over_grad\": %.4f, \"ggn_s\": %.4f, \"cg_iter_over_ggn\": %.3f, "
              "\"layers\": %zu, \"block_cg_iter_over_ggn\": %.3f}\n",
              inv_s, inv_s / grad_s, ggn_s, cg_s / ggn_s, blocks.size(), bcg_s / ggn_s);
  return 0;
}
