// The float32 rate this machine gives curv's two matrix kernels at a thread count: what "how close
// to the FLOP floor" is measured against in bench/scale.sh.
//
//   gemm     curv's GEMM (internal::gemm: oneDNN's matmul when compiled in, else Eigen; large
//            products split over oneTBB), THREADS independent products [M, K] x [K, N] at once
//            (M = K = N = SIZE), as the engine's micro-batch runs do
//   conv     oneDNN's direct convolution as ConvOp calls it (one oneDNN thread per call,
//            channels-last copies in and out included): a 3x3, pad 1, C = O = 128 convolution on
//            8x8 planes of 64 samples (a ResNet-18 second-stage layer at micro-batch 64), forward,
//            backward-data and backward-weights, THREADS calls at once. Always the direct
//            kernels: this geometry would run Winograd's (onednn_conv.h), which multiply less
//            than the taps counted below and would overstate the machine's multiply-add rate.
//
// Each rate is the best of REPS timed rounds after one warm-up, in GFLOP/s (2 per multiply-add).
// The convolution's rate counts every kernel tap (onednn_conv_gflops), as if oneDNN multiplied the
// padding too, so it is the larger of the two readings (84% of the taps read the input here:
// onednn_conv_useful_gflops); a target judged against it is judged against a generous peak.
// Prints one JSON line.
//   bench_peak [THREADS=2] [SIZE=1024] [REPS=5]
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/bench_util.h"
#include "src/core/internal/gemm.h"
#include "src/core/internal/onednn_conv.h"

namespace {

std::vector<float> noise(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Multiply-adds of a 3x3 / pad 1 / stride 1 convolution on an H x H plane that read the input
// (border outputs read fewer taps).
double conv_macs(std::int64_t N, std::int64_t C, std::int64_t O, std::int64_t H) {
  std::int64_t taps_1d = 0;
  for (std::int64_t p = 0; p < H; ++p)
    taps_1d += std::min<std::int64_t>(p + 1, H - 1) - std::max<std::int64_t>(p - 1, 0) + 1;
  return double(N) * C * O * double(taps_1d) * double(taps_1d);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const std::int64_t S = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  if (threads < 1 || S < 16 || reps < 1) {
    std::fprintf(stderr, "usage: bench_peak [THREADS >= 1] [SIZE >= 16] [REPS >= 1]\n");
    return 2;
  }
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  tbb::task_arena arena(threads);

  // GEMM: one product per thread at once.
  std::vector<std::vector<float>> A, B, Z;
  for (int t = 0; t < threads; ++t) {
    A.push_back(noise(S * S, 1 + t));
    B.push_back(noise(S * S, 101 + t));
    Z.emplace_back(S * S);
  }
  auto gemm_round = [&] {
    arena.execute([&] {
      tbb::parallel_for(0, threads, [&](int t) {
        curv::internal::gemm<float>(false, false, A[t].data(), S, S, B[t].data(), S, S, Z[t].data(), 1.0f, false);
      });
    });
  };
  gemm_round();
  const double gemm_s = curv::bench::best_of(reps, gemm_round);
  const double gemm_gf = 2.0 * double(S) * S * S * threads / gemm_s / 1e9;

  double conv_gf = 0, conv_useful_gf = 0;
  if (curv::internal::onednn_conv_enabled()) {
    curv::internal::set_onednn_winograd(false);
    const std::int64_t N = 64, C = 128, O = 128, H = 8;
    const curv::internal::DnnlConvShape s{N, C, H, H, O, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, H, H};
    if (curv::internal::onednn_conv_supports(s, curv::internal::kOnednnPlain)) {
      std::vector<std::vector<float>> x, w, y, gx, gw;
      for (int t = 0; t < threads; ++t) {
        x.push_back(noise(N * C * H * H, 11 + t));
        w.push_back(noise(O * C * 9, 21 + t));
        y.emplace_back(N * O * H * H);
        gx.emplace_back(N * C * H * H);
        gw.emplace_back(O * C * 9);
      }
      auto conv_round = [&] {
        arena.execute([&] {
          tbb::parallel_for(0, threads, [&](int t) {
            curv::internal::onednn_conv_forward(s, x[t].data(), w[t].data(), y[t].data(), false);
            curv::internal::onednn_conv_backward(s, y[t].data(), x[t].data(), w[t].data(), gx[t].data(), gw[t].data(),
                                                 false, false);
          });
        });
      };
      conv_round();
      const double conv_s = curv::bench::best_of(reps, conv_round);
      conv_gf = 3 * 2.0 * double(N * C * O * 9 * H * H) * threads / conv_s / 1e9;
      conv_useful_gf = 3 * 2.0 * conv_macs(N, C, O, H) * threads / conv_s / 1e9;
    }
  }
  std::printf(
      "{\"threads\": %d, \"gemm_size\": %lld, \"gemm_gflops\": %.1f, \"onednn_conv_gflops\": %.1f, "
      "\"onednn_conv_useful_gflops\": %.1f, \"backend\": \"%s\"}\n",
      threads, static_cast<long long>(S), gemm_gf, conv_gf, conv_useful_gf, curv::internal::conv_backend_name());
  return 0;
}
