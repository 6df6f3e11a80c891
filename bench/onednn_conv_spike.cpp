// Design spike for the oneDNN conv backend of issue #18 (not built by CMake; oneDNN is optional):
// oneDNN 2.6's convolution forward, backward-data and backward-weights on the ResNet-20 layer
// shapes, micro-batch 16, ONE thread (how curv's engine would call it: one call per micro-batch
// run, deterministic), in three layouts:
//   (default)   NCHW activations, OIHW weights          -> oneDNN's im2col+GEMM path
//   WANY=1      NCHW activations, weights in oneDNN's    -> same
//   any         every tensor in oneDNN's choice (nChw16c blocked)
//   NHWC=1 WANY=1  channels-last activations            -> brgconv / jit direct kernels
// and the sum over ResNet-20's 19 convolutions, scaled to a gradient of 128 samples on 2 threads.
// Build and run (Debian: apt-get install libdnnl-dev):
//   g++ -O2 -std=c++17 bench/onednn_conv_spike.cpp -o /tmp/onednn_conv -ldnnl
//   OMP_NUM_THREADS=1 /tmp/onednn_conv [any];  NHWC=1 WANY=1 OMP_NUM_THREADS=1 /tmp/onednn_conv
// Results on this machine are in docs/experiments.md ("oneDNN convolutions").
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <vector>
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  int N, C, H, O, k, s;
};

template <class F>
double best(F f, int reps) {
  double b = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t = now();
    f();
    b = std::min(b, now() - t);
  }
  return b;
}

int main(int argc, char** argv) {
  bool any = argc > 1 && std::strcmp(argv[1], "any") == 0;
  engine eng(engine::kind::cpu, 0);
  stream st(eng);
  int N = 16;
  std::vector<Shape> shapes = {{N, 16, 32, 16, 3, 1}, {N, 16, 32, 32, 3, 2}, {N, 32, 16, 32, 3, 1},
                               {N, 32, 16, 64, 3, 2}, {N, 64, 8, 64, 3, 1},  {N, 3, 32, 16, 3, 1}};
  // ResNet-20: conv1 3->16; stage1: 6 convs 16->16 @32; stage2: 1 stride-2 16->32, 5 convs 32->32 @16; stage3: same 64
  // @8
  int counts[] = {6, 1, 5, 1, 5, 1};
  double total_f = 0, total_bd = 0, total_bw = 0, flops_total = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    auto S = shapes[i];
    int Ho = (S.H + 2 - S.k) / S.s + 1;
    memory::dims src_d = {S.N, S.C, S.H, S.H}, w_d = {S.O, S.C, S.k, S.k}, b_d = {S.O}, dst_d = {S.N, S.O, Ho, Ho};
    memory::dims strides = {S.s, S.s}, pad = {1, 1};
    tag t = std::getenv("NHWC") ? tag::nhwc : (any ? tag::any : tag::nchw),
        tw = (any || std::getenv("WANY")) ? tag::any : tag::oihw;
    auto src_md = memory::desc(src_d, dt::f32, t), w_md = memory::desc(w_d, dt::f32, tw),
         b_md = memory::desc(b_d, dt::f32, tag::x), dst_md = memory::desc(dst_d, dt::f32, t);
    auto fwd_d = convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src_md, w_md,
                                           b_md, dst_md, strides, pad, pad);
    auto fwd_pd = convolution_forward::primitive_desc(fwd_d, eng);
    auto bd_d = convolution_backward_data::desc(algorithm::convolution_direct, src_md, w_md, dst_md, strides, pad, pad);
    auto bd_pd = convolution_backward_data::primitive_desc(bd_d, eng, fwd_pd);
    auto bw_d = convolution_backward_weights::desc(algorithm::convolution_direct, src_md, w_md, b_md, dst_md, strides,
                                                   pad, pad);
    auto bw_pd = convolution_backward_weights::primitive_desc(bw_d, eng, fwd_pd);
    memory src(fwd_pd.src_desc(), eng), w(fwd_pd.weights_desc(), eng), b(fwd_pd.bias_desc(), eng),
        dst(fwd_pd.dst_desc(), eng);
    memory dsrc(bd_pd.diff_src_desc(), eng), ddst(bw_pd.diff_dst_desc(), eng), dw(bw_pd.diff_weights_desc(), eng),
        db(bw_pd.diff_bias_desc(), eng);
    memory wbd(bd_pd.weights_desc(), eng), ddst_bd(bd_pd.diff_dst_desc(), eng), src_bw(bw_pd.src_desc(), eng);
    for (auto* m : {&src, &w, &b, &dst, &dsrc, &ddst, &dw, &db, &wbd, &ddst_bd, &src_bw}) {
      float* p = (float*)m->get_data_handle();
      size_t n = m->get_desc().get_size() / 4;
      for (size_t j = 0; j < n; ++j) p[j] = std::sin(0.1 * j);
    }
    convolution_forward fwd(fwd_pd);
    convolution_backward_data bd(bd_pd);
    convolution_backward_weights bw(bw_pd);
    int reps = 20;
    double tf = best(
        [&] {
          fwd.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}});
          st.wait();
        },
        reps);
    double tb = best(
        [&] {
          bd.execute(st, {{DNNL_ARG_DIFF_DST, ddst_bd}, {DNNL_ARG_WEIGHTS, wbd}, {DNNL_ARG_DIFF_SRC, dsrc}});
          st.wait();
        },
        reps);
    double tw2 = best(
        [&] {
          bw.execute(st, {{DNNL_ARG_SRC, src_bw},
                          {DNNL_ARG_DIFF_DST, ddst},
                          {DNNL_ARG_DIFF_WEIGHTS, dw},
                          {DNNL_ARG_DIFF_BIAS, db}});
          st.wait();
        },
        reps);
    double fl = 2.0 * S.N * S.O * Ho * Ho * S.C * S.k * S.k;
    std::printf(
        "N%d C%d H%d O%d s%d: fwd %.3f ms (%.0f GF/s) bwd_data %.3f (%.0f) bwd_w %.3f (%.0f)  impl %s / %s / %s\n", S.N,
        S.C, S.H, S.O, S.s, 1e3 * tf, fl / tf * 1e-9, 1e3 * tb, fl / tb * 1e-9, 1e3 * tw2, fl / tw2 * 1e-9,
        fwd_pd.impl_info_str(), bd_pd.impl_info_str(), bw_pd.impl_info_str());
    total_f += counts[i] * tf;
    total_bd += counts[i] * tb;
    total_bw += counts[i] * tw2;
    flops_total += counts[i] * fl;
  }
  std::printf(
      "ResNet-20 convs per micro-batch of %d (1 thread): fwd %.2f ms, bwd_data %.2f, bwd_w %.2f, total %.2f ms; x %d "
      "micro-batches / 2 threads = %.1f ms per gradient of 128 (%.0f GF/s)\n",
      N, 1e3 * total_f, 1e3 * total_bd, 1e3 * total_bw, 1e3 * (total_f + total_bd + total_bw), 128 / N,
      1e3 * (total_f + total_bd + total_bw) * (128 / N) / 2, 3 * flops_total / (total_f + total_bd + total_bw) * 1e-9);
}
