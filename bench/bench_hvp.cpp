// Times loss, gradient and Hessian-vector products of a built-in architecture on synthetic data,
// and prints ratios measured in this one run (the machine is shared and noisy):
//   hvp / grad           one HVP on cached activations vs one gradient
//   block / singles      one pass on K directions vs K single-direction passes
//   primal reuse         first HVP (with the primal pass) vs later ones
// Usage: bench_hvp [arch=resnet20] [samples=200] [block=16] [threads=2] [float32|float64]
// An arch ending in .onnx or .h5 is a model file; its data then come from CURV_DATA (an .npz,
// the first `samples` samples), e.g. bench/scale_torch.py's exports in ~/.cache/curv-bench.
// CURV_TANGENT_MB=M sets ObjectiveOptions::tangent_bytes (direction groups of a block pass).
// CURV_PROFILE=grad|hvp|hvp1|block:N runs only N of those (for perf record) and prints nothing else;
// hvp1: first HVPs, each after clearing the cache.
#include <tbb/global_control.h>

#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/core/allocator_tuning.h"
#include "src/core/builder.h"
#include "src/core/objective.h"
#include "src/core/timer.h"
#include "src/io/data_io.h"
#include "src/io/model_source.h"
#include "bench/bench_util.h"

using namespace curv;

int main(int argc, char** argv) {
  tune_glibc_allocator();  // as the curv binary
  const std::string arch = argc > 1 ? argv[1] : "resnet20";
  const std::int64_t samples = argc > 2 ? std::stoll(argv[2]) : 200;
  const std::int64_t block = argc > 3 ? std::stoll(argv[3]) : 16;
  const int threads = argc > 4 ? std::stoi(argv[4]) : 2;
  const bool f64 = argc > 5 && std::string(argv[5]) == "float64";
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);

  const auto ends_with = [&](const std::string& e) {
    return arch.size() > e.size() && arch.compare(arch.size() - e.size(), e.size(), e) == 0;
  };
  const bool file = ends_with(".onnx") || ends_with(".h5");
  const Shape sample = arch.rfind("mlp", 0) == 0 ? Shape{784} : (arch == "lenet" ? Shape{1, 28, 28} : Shape{3, 32, 32});
  Dataset d;
  if (file) {
    const char* data = std::getenv("CURV_DATA");
    if (!data) {
      std::fprintf(stderr, "bench_hvp: a model file needs its data in CURV_DATA\n");
      return 2;
    }
    DataOptions dopts;
    dopts.samples = samples;
    d = load_dataset(data, dopts);
  } else {
    d = bench::synthetic_dataset(sample, samples);
  }
  ModelSource src;
  src.path = file ? arch : "";
  src.arch = file ? "" : arch;
  src.seed = 1;
  Model m = file ? load_model(src, &d) : build_arch(arch, sample, 10, 1);

  ObjectiveOptions o;
  o.precision = f64 ? Precision::Float64 : Precision::Float32;
  if (const char* t = std::getenv("CURV_TANGENT_MB")) o.tangent_bytes = std::size_t(std::atoll(t)) << 20;
  if (const char* mb = std::getenv("CURV_MICRO_BATCH")) o.micro_batch = std::atoll(mb);
  if (const char* gd = std::getenv("CURV_GROUP")) o.group_directions = std::atoll(gd);
  auto obj = Objective::create(m, d, o);
  const std::int64_t P = obj->num_params();
  Eigen::MatrixXd V = Eigen::MatrixXd::Random(P, block), Y;
  // One direction held as its own P x 1 matrix: V.col(0) passed as is would be copied into a fresh
  // P-sized matrix in every call, which the products would then be timed (and profiled) with.
  const Eigen::MatrixXd v = V.col(0);
  Eigen::VectorXd g;

  const bool cpu_mode = std::getenv("CURV_BENCH_CPU") != nullptr;
  auto best = [&](int reps, auto&& f) {
    double b = 1e30;
    for (int r = 0; r < reps; ++r) {
      Timer t;
      const std::clock_t c0 = std::clock();
      f();
      // Wall time, unless the machine is oversubscribed: then CPU time / threads is the fairer figure.
      const double wall = t.seconds(), cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
      b = std::min(b, cpu_mode ? cpu / threads : wall);
    }
    return b;
  };
  if (const char* prof = std::getenv("CURV_PROFILE")) {
    const std::string what = prof;
    const auto colon = what.find(':');
    const int n = colon == std::string::npos ? 10 : std::stoi(what.substr(colon + 1));
    const std::string kind = what.substr(0, colon);
    obj->gradient(g);
    Timer t;
    for (int i = 0; i < n; ++i) {
      if (kind == "grad") {
        obj->clear_cache();
        obj->gradient(g);
      } else if (kind == "hvp") {
        obj->product(Curvature::Hessian, v, Y);
      } else if (kind == "hvp1") {
        obj->clear_cache();
        obj->product(Curvature::Hessian, v, Y);
      } else {
        obj->product(Curvature::Hessian, V, Y);
      }
    }
    std::printf("%s x%d: %.4f s each\n", kind.c_str(), n, t.seconds() / n);
    return 0;
  }
  obj->clear_cache();
  const double loss_s = best(3, [&] { obj->clear_cache(); obj->value(); });
  const double grad_s = best(3, [&] { obj->clear_cache(); obj->gradient(g); });
  const double hvp_first_s = best(2, [&] { obj->clear_cache(); obj->product(Curvature::Hessian, v, Y); });
  obj->gradient(g);  // fill the cache
  const double hvp_s = best(3, [&] { obj->product(Curvature::Hessian, v, Y); });
  const double ggn_s = best(3, [&] { obj->product(Curvature::GGN, v, Y); });
  const double block_s = best(2, [&] { obj->product(Curvature::Hessian, V, Y); });
  // The singles as one run of `block` products: equally long as the block measurement.
  const double singles_s = best(2, [&] {
    for (std::int64_t j = 0; j < block; ++j) obj->product(Curvature::Hessian, V.col(j), Y);
  });
  std::printf(
      "{\"arch\": \"%s\", \"params\": %lld, \"samples\": %lld, \"threads\": %d, \"precision\": \"%s\", "
      "\"loss_s\": %.4f, \"grad_s\": %.4f, \"hvp_first_s\": %.4f, \"hvp_s\": %.4f, \"ggn_s\": %.4f, "
      "\"block\": %lld, \"hvp_block_s\": %.4f, \"hvp_over_grad\": %.3f, \"block_over_singles\": %.3f, "
      "\"cache_mb\": %.1f}\n",
      arch.c_str(), (long long)P, (long long)samples, threads, f64 ? "float64" : "float32", loss_s, grad_s,
      hvp_first_s, hvp_s, ggn_s, (long long)block, block_s, hvp_s / grad_s, block_s / singles_s,
      obj->cache_bytes_used() / 1e6);
  return 0;
}
