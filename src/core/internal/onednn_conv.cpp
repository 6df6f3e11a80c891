// oneDNN convolutions behind ConvOp (see onednn_conv.h).
//
// Per thread, a cache keyed by the geometry holds the convolution primitives (forward,
// backward-data, backward-weights, all on channels-last activations, or nChw16c for the Winograd
// kernels (winograd_pays), and weights in the layout oneDNN picks) and the reorders between curv's
// OIHW weights and oneDNN's; activations are transposed by curv (to_cl / from_cl, to_blocked /
// from_blocked) into per-thread buffers that keep their capacity, and each primitive's scratchpad
// is a per-thread buffer too. Before any primitive is built or run, the calling thread's OpenMP
// thread count is set to 1 (oneDNN on Debian runs on OpenMP; the engine's own oneTBB threads are
// the parallelism), so every primitive is planned and run for one thread.
#include "src/core/internal/onednn_conv.h"
#include "src/core/internal/transpose.h"

#ifdef CURV_ONEDNN

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace curv::internal {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("CURV_CONV_BACKEND");
    return !(e && std::strcmp(e, "builtin") == 0);
  }()};
  return on;
}

// oneDNN's Winograd F(4x4, 3x3) kernels where they beat the direct ones (winograd_pays); off with
// CURV_CONV_WINOGRAD=0 or set_onednn_winograd(false).
std::atomic<bool>& winograd_flag() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("CURV_CONV_WINOGRAD");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return on;
}

const dnnl::engine& cpu_engine() {
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// omp_set_num_threads of the OpenMP runtime oneDNN was linked with, if any (looked up rather
// than linked, so curv needs no OpenMP flags of its own).
void one_openmp_thread() {
  using Fn = void (*)(int);
  static const Fn set = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  thread_local bool done = false;
  if (set && !done) {
    set(1);
    done = true;
  }
}

// Buffers of this thread that keep their capacity between calls, 64-byte aligned: the Winograd
// kernels load their activations with aligned instructions (they crashed on a buffer that
// malloc had aligned to 16 bytes only).
float* scratch(int slot, std::size_t bytes) {
  thread_local std::vector<float> bufs[7];
  auto& b = bufs[slot];
  const std::size_t n = (bytes + sizeof(float) - 1) / sizeof(float) + 16;
  if (b.size() < n) b.resize(n);
  return reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(b.data()) + 63) & ~std::uintptr_t(63));
}

// Planar <-> channels-last conversion of activations. oneDNN's own reorders were measured at
// 2-4 GB/s for channels-last -> NCHW here (0.56 ms for a 1 MB tensor of 16 channels, against 0.05
// ms for the other direction), so both directions are 8x8 tile transposes.
//   to_cl:   dst[n][p][c0 + c]  = src[n][c][p]   (dst rows of ldc channels)
//   from_cl: dst[n][c][p] (+)= src[n][p][c]      (src rows of C channels)
// src [N, C, HW] planar -> channels [c0, c0 + C) of dst [N, HW, ldc].
// The tiles sweep the planar rows (channels) of a position block while the channels-last rows are
// short (ldc < 128 floats); with longer ones, sweeping the positions of a channel block wrote
// every channels-last row a tile at a time, rows 512 B or more apart, and their cache lines were
// evicted before their other halves came: 2.8x slower at 256 channels x 64 positions, 9x at 1024
// x 64 (session 17; equal or within 10% on narrower rows).
void to_cl(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, std::int64_t ldc,
           std::int64_t c0) {
  const bool by_positions = ldc >= 256 || (ldc >= 128 && HW >= 256);
  for (std::int64_t n = 0; n < N; ++n)
    transpose(src + n * C * HW, HW, dst + n * HW * ldc + c0, ldc, C, HW, false, !by_positions);
}
// src [N, HW, C] channels-last -> dst [N, C, HW] planar, overwriting or adding.
void from_cl(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, bool add) {
  for (std::int64_t n = 0; n < N; ++n) transpose(src + n * HW * C, C, dst + n * C * HW, HW, HW, C, add, false);
}
// The same for nChw16c, the blocked layout of the Winograd kernels: per sample, channel blocks of
// 16, each [HW, 16] (C, c0 and ldc multiples of 16). Channel c of position p sits at
// (c - c % 16) HW + 16 p + c % 16, so block b of the channels [c0, c0 + C) starts at (c0 + 16 b) HW.
constexpr std::int64_t kBlock = 16;
void to_blocked(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, std::int64_t ldc,
                std::int64_t c0) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t b = 0; b < C; b += kBlock)
      transpose(src + (n * C + b) * HW, HW, dst + n * HW * ldc + (c0 + b) * HW, kBlock, kBlock, HW, false, true);
}
void from_blocked(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, bool add) {
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t b = 0; b < C; b += kBlock)
      transpose(src + (n * C + b) * HW, kBlock, dst + (n * C + b) * HW, HW, HW, kBlock, add, false);
}

// Which call a primitive set serves: a plain convolution, or one of the fused pairs of the
// tangent kernels, whose two terms become one convolution over stacked operands:
//   PairC: conv(x', w) + conv(x, w')    = conv([x' | x] (2C channels), [w | w'] along C)
//   PairO: adj(w) gy' + adj(w') gy      = adj([w ; w'] (2O outputs)) [gy' | gy] (2O channels)
//   PairN: gy' x^T + gy x'^T            = one weight gradient over 2N samples [x ; x'], [gy' ; gy]
enum class Kind { Plain, PairC, PairO, PairN };

using Key = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, std::int64_t, std::int64_t>;

struct Prims {
  dnnl::memory::desc w_user;                // OIHW (goihw when grouped), of the (stacked) convolution
  dnnl::memory::desc x_cl, y_cl;            // channels-last, or nChw16c when `winograd`
  dnnl::memory::desc w_fwd, w_bwd, w_diff;  // weights as each primitive wants them
  dnnl::primitive fwd, bwd_data, bwd_w;
  dnnl::reorder w_in_fwd, w_in_bwd;  // OIHW -> primitive's layout (unset when equal)
  dnnl::reorder w_out, w_out_add;    // diff weights -> OIHW
  bool w_fwd_plain = false, w_bwd_plain = false;
  bool winograd = false;  // Winograd kernels, activations in nChw16c
  // Scratchpads of each primitive above (user mode, see attr()).
  dnnl::memory::desc sp_fwd, sp_bwd_data, sp_bwd_w, sp_in_fwd, sp_in_bwd, sp_out, sp_out_add;
};

// Every primitive gets its scratchpad from the calling thread (scratchpad_mode::user). In oneDNN's
// default mode the library's scratchpad is shared by all primitives (Debian's build does not
// enable DNNL_ENABLE_CONCURRENT_EXEC), which its documentation calls safe only when a primitive
// runs on the thread that created it; oneDNN's own primitive cache may hand a primitive created on
// one thread to another that asks for the same descriptor. User mode is the documented
// thread-safe one.
dnnl::primitive_attr attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

dnnl::reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to, bool add,
                           dnnl::memory::desc& scratchpad) {
  dnnl::primitive_attr a = attr();
  if (add) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    a.set_post_ops(po);
  }
  const auto pd = dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to, a);
  scratchpad = pd.scratchpad_desc();
  return dnnl::reorder(pd);
}

// The convolution a call of `kind` runs for the user geometry s.
DnnlConvShape stacked(DnnlConvShape s, Kind kind) {
  if (kind == Kind::PairC) s.C *= 2;
  if (kind == Kind::PairO) s.O *= 2;
  if (kind == Kind::PairN) s.N *= 2;
  return s;
}

// Whether the convolution s (as run: stacked for the pairs) of a call of `kind` goes to oneDNN's
// Winograd F(4x4, 3x3) kernels: 3x3, stride 1, no dilation, input and output channels multiples of
// 16 and at least 32 (16 for the stacked convolutions of the tangent pairs), planes of at least
// onednn_winograd_min_positions() (8x8; 4x4 on AMD CPUs). The rounding differs from the direct
// kernels (the transforms add and scale), by ~1e-6 of the result in float32. Measured one thread
// per call against the direct kernels on channels-last (session 20, Intel): forward and
// backward-data 20-45% faster and backward-weights 5-40% on 32-128 channels and 8x8-32x32 planes;
// 30-60% slower on 4x4 planes (one tile). At 16 channels a plain convolution was no faster there
// (-10% to +25% per call), and on AMD Zen 4 it made ResNet-20's gradient 8% slower (session 21),
// while the pairs at 16 channels (32 on one side, or 2N samples) made its cached HVP 11% faster and
// its first HVP 7%. On Zen 4 (512-bit instructions in two 256-bit halves: about 124 GFLOP/s per
// core against 175-194 on the Intel machine) 4x4 planes on Winograd made ResNet-18's gradient 8%
// faster, its HVPs 7-10% and ResNet-50's 3-7% (session 21, two runs each).
bool winograd_pays(const DnnlConvShape& s, Kind kind) {
  const std::int64_t min_channels = kind == Kind::Plain ? 32 : 16;
  const std::int64_t min_positions = onednn_winograd_min_positions();
  return winograd_flag().load(std::memory_order_relaxed) && s.G == 1 && s.kh == 3 && s.kw == 3 && s.sh == 1 &&
         s.sw == 1 && s.dh == 1 && s.dw == 1 && s.C % kBlock == 0 && s.O % kBlock == 0 &&
         std::min(s.C, s.O) >= min_channels && s.Ho * s.Wo >= min_positions &&
         s.H * s.W >= min_positions;
}

std::unique_ptr<Prims> build_with(const DnnlConvShape& s, Kind kind, bool winograd) {
  auto p = std::make_unique<Prims>();
  p->winograd = winograd;
  // Grouped weights [O, C / G, kh, kw] are oneDNN's goihw [G, O / G, C / G, kh, kw], same memory.
  const dnnl::memory::dims xd{s.N, s.C, s.H, s.W}, yd{s.N, s.O, s.Ho, s.Wo};
  const dnnl::memory::dims wd = s.G == 1 ? dnnl::memory::dims{s.O, s.C, s.kh, s.kw}
                                         : dnnl::memory::dims{s.G, s.O / s.G, s.C / s.G, s.kh, s.kw};
  const dnnl::memory::dims strides{s.sh, s.sw}, dil{s.dh - 1, s.dw - 1}, pl{s.pt, s.pl}, pr{s.pb, s.pr};
  const tag act = winograd ? tag::nChw16c : tag::nhwc;
  const auto alg = winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  p->w_user = {wd, dt::f32, s.G == 1 ? tag::oihw : tag::goihw};
  p->x_cl = {xd, dt::f32, act};
  p->y_cl = {yd, dt::f32, act};
  const dnnl::memory::desc w_any(wd, dt::f32, tag::any);
  const auto& eng = cpu_engine();
  auto fd = dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p->x_cl, w_any, p->y_cl, strides,
                                            dil, pl, pr);
  auto fpd = dnnl::convolution_forward::primitive_desc(fd, attr(), eng);
  auto bd = dnnl::convolution_backward_data::desc(alg, p->x_cl, w_any, p->y_cl, strides, dil, pl, pr);
  auto bpd = dnnl::convolution_backward_data::primitive_desc(bd, attr(), eng, fpd);
  auto wdsc = dnnl::convolution_backward_weights::desc(alg, p->x_cl, w_any, p->y_cl, strides, dil, pl, pr);
  auto wpd = dnnl::convolution_backward_weights::primitive_desc(wdsc, attr(), eng, fpd);
  // The primitives must read and write exactly the activation descriptors given.
  if (fpd.src_desc() != p->x_cl || fpd.dst_desc() != p->y_cl || bpd.diff_src_desc() != p->x_cl ||
      bpd.diff_dst_desc() != p->y_cl || wpd.src_desc() != p->x_cl || wpd.diff_dst_desc() != p->y_cl)
    throw std::logic_error("oneDNN convolution: unexpected activation layout");
  if (kind == Kind::Plain || kind == Kind::PairC) p->fwd = dnnl::convolution_forward(fpd);
  if (kind == Kind::Plain || kind == Kind::PairO) p->bwd_data = dnnl::convolution_backward_data(bpd);
  if (kind == Kind::Plain || kind == Kind::PairN) p->bwd_w = dnnl::convolution_backward_weights(wpd);
  p->sp_fwd = fpd.scratchpad_desc();
  p->sp_bwd_data = bpd.scratchpad_desc();
  p->sp_bwd_w = wpd.scratchpad_desc();
  p->w_fwd = fpd.weights_desc();
  p->w_bwd = bpd.weights_desc();
  p->w_diff = wpd.diff_weights_desc();
  // The caller's weights are used in place only by the direct kernels: Winograd's need buffers
  // aligned to 64 bytes, which the scratch buffers are and the caller's need not be.
  p->w_fwd_plain = p->w_fwd == p->w_user && !winograd;
  p->w_bwd_plain = p->w_bwd == p->w_user && !winograd;
  if (!p->w_fwd_plain) p->w_in_fwd = make_reorder(p->w_user, p->w_fwd, false, p->sp_in_fwd);
  if (!p->w_bwd_plain) p->w_in_bwd = make_reorder(p->w_user, p->w_bwd, false, p->sp_in_bwd);
  p->w_out = make_reorder(p->w_diff, p->w_user, false, p->sp_out);
  p->w_out_add = make_reorder(p->w_diff, p->w_user, true, p->sp_out_add);
  return p;
}

std::unique_ptr<Prims> build(const DnnlConvShape& u, Kind kind) {
  if (u.G < 1 || u.C % u.G != 0 || u.O % u.G != 0 || (u.G > 1 && kind != Kind::Plain))
    throw std::invalid_argument("oneDNN convolution: groups must divide the channels; grouped ones have no pairs");
  const DnnlConvShape s = stacked(u, kind);
  // The user's channels too: a pair's halves are converted block by block.
  if (winograd_pays(s, kind) && u.C % kBlock == 0 && u.O % kBlock == 0) {
    try {
      return build_with(s, kind, true);
    } catch (const dnnl::error&) {
      // this oneDNN or CPU has no Winograd kernels for s: the direct ones below
    } catch (const std::logic_error&) {
    }
  }
  return build_with(s, kind, false);
}

Key key_of(const DnnlConvShape& s, Kind kind) {
  // The Winograd switch is part of the key: turning it off must not reuse Winograd primitives.
  const int wino = winograd_flag().load(std::memory_order_relaxed) ? 16 : 0;
  return Key{static_cast<int>(kind) | wino, s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw, s.dh, s.dw, s.pt, s.pl,
             s.pb, s.pr, s.G};
}

Prims& prims(const DnnlConvShape& s, Kind kind) {
  // Before anything is built: oneDNN plans a primitive's work split (and so its summation order)
  // for the OpenMP thread count at creation. onednn_conv_supports() builds primitives too, and
  // without this a thread's first primitives were planned for the default count (the cores) and
  // later ones for one thread, depending on which micro-batch a thread met a shape in first: about
  // 2% of the runs of the 1-vs-2-thread identity test differed (session 13).
  one_openmp_thread();
  thread_local std::map<Key, std::unique_ptr<Prims>> cache;
  const Key k = key_of(s, kind);
  auto it = cache.find(k);
  if (it == cache.end()) {
    // A model has a few dozen shapes; a process that sees endless new ones (the ONNX fuzzer) must
    // not keep every JIT-compiled primitive.
    if (cache.size() >= 512) cache.clear();
    it = cache.emplace(k, build(s, kind)).first;
  }
  return *it->second;
}

struct Call {
  Prims& p;
  dnnl::stream& st;
  Call(const DnnlConvShape& s, Kind kind) : p((one_openmp_thread(), prims(s, kind))), st(stream()) {}
  ~Call() { st.wait(); }
  static dnnl::stream& stream() {
    thread_local dnnl::stream s(cpu_engine());
    return s;
  }
  static dnnl::memory mem(const dnnl::memory::desc& d, const void* ptr) {
    return dnnl::memory(d, cpu_engine(), const_cast<void*>(ptr));
  }
  // This thread's scratchpad for a primitive whose scratchpad is `d` (a scratch slot, 5 for the
  // convolutions).
  static dnnl::memory scratchpad(const dnnl::memory::desc& d, int slot = 5) {
    return mem(d, scratch(slot, d.get_size()));
  }
  void run(dnnl::reorder& r, const dnnl::memory::desc& sp, const dnnl::memory& from, const dnnl::memory& to) {
    r.execute(st, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, scratchpad(sp)}});
  }
  // Planar <-> this call's activation layout (channels-last, or nChw16c for Winograd).
  void to_act(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, std::int64_t ldc,
              std::int64_t c0) const {
    if (p.winograd)
      to_blocked(src, N, C, HW, dst, ldc, c0);
    else
      to_cl(src, N, C, HW, dst, ldc, c0);
  }
  void from_act(const float* src, std::int64_t N, std::int64_t C, std::int64_t HW, float* dst, bool add) const {
    if (p.winograd)
      from_blocked(src, N, C, HW, dst, add);
    else
      from_cl(src, N, C, HW, dst, add);
  }
  // Activation buffers of this call (scratch slots 0 and 1).
  float* xb() { return scratch(0, p.x_cl.get_size()); }
  float* yb() { return scratch(1, p.y_cl.get_size()); }
  dnnl::memory x_cl() { return mem(p.x_cl, xb()); }
  dnnl::memory y_cl() { return mem(p.y_cl, yb()); }
  // OIHW weights w (of the stacked convolution) in the layout `want` (copied into scratch slot 3
  // unless it is OIHW).
  dnnl::memory weights(const float* w, const dnnl::memory::desc& want, bool plain, dnnl::reorder& r,
                       const dnnl::memory::desc& sp) {
    if (plain) return mem(p.w_user, w);
    dnnl::memory out = mem(want, scratch(3, want.get_size()));
    run(r, sp, mem(p.w_user, w), out);
    return out;
  }
  void forward(const dnnl::memory& xc, const dnnl::memory& wm, const dnnl::memory& yc) {
    p.fwd.execute(
        st,
        {{DNNL_ARG_SRC, xc}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, yc}, {DNNL_ARG_SCRATCHPAD, scratchpad(p.sp_fwd)}});
  }
  void backward_data(const dnnl::memory& yc, const dnnl::memory& wm, const dnnl::memory& xc) {
    p.bwd_data.execute(st, {{DNNL_ARG_DIFF_DST, yc},
                            {DNNL_ARG_WEIGHTS, wm},
                            {DNNL_ARG_DIFF_SRC, xc},
                            {DNNL_ARG_SCRATCHPAD, scratchpad(p.sp_bwd_data)}});
  }
  void backward_weights(const dnnl::memory& xc, const dnnl::memory& yc, float* gw, bool accumulate) {
    dnnl::memory dw = mem(p.w_diff, scratch(2, p.w_diff.get_size()));
    p.bwd_w.execute(st, {{DNNL_ARG_SRC, xc},
                         {DNNL_ARG_DIFF_DST, yc},
                         {DNNL_ARG_DIFF_WEIGHTS, dw},
                         {DNNL_ARG_SCRATCHPAD, scratchpad(p.sp_bwd_w)}});
    if (accumulate)
      run(p.w_out_add, p.sp_out_add, dw, mem(p.w_user, gw));
    else
      run(p.w_out, p.sp_out, dw, mem(p.w_user, gw));
  }
};

// Stacked weights in OIHW (scratch slot 4): along input channels (PairC: [w | w'] per output
// channel) or along output channels (PairO: [w ; w']).
const float* stack_weights(const DnnlConvShape& s, const float* a, const float* b, bool along_c) {
  const std::int64_t K = s.kh * s.kw, part = s.O * s.C * K;
  float* out = scratch(4, 2 * part * sizeof(float));
  if (!along_c) {
    std::memcpy(out, a, part * sizeof(float));
    std::memcpy(out + part, b, part * sizeof(float));
    return out;
  }
  const std::int64_t row = s.C * K;
  for (std::int64_t o = 0; o < s.O; ++o) {
    std::memcpy(out + 2 * o * row, a + o * row, row * sizeof(float));
    std::memcpy(out + (2 * o + 1) * row, b + o * row, row * sizeof(float));
  }
  return out;
}


// ---- float32 GEMM on oneDNN's matmul primitive (internal::gemm, gemm.cpp) ----

std::atomic<bool>& gemm_enabled_flag() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("CURV_GEMM_BACKEND");
    return !(e && std::strcmp(e, "eigen") == 0);
  }()};
  return on;
}

// One product's geometry: op(X) [m, k] times op(Y) [k, n] into Z [m, n], leading dimensions, the
// scale's bits and whether Z is added to; then the batch: its count and each operand's stride
// between batch entries (0: the operand is shared by all; nb = 1 for a plain product).
using GemmKey = std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                           std::int64_t, std::uint32_t, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

struct GemmPrim {
  dnnl::memory::desc a, b, c, sp;
  dnnl::matmul mm;
};

std::unique_ptr<GemmPrim> build_gemm(const GemmKey& k) {
  const auto [tx, ty, m, n, kk, ldx, ldy, ldz, alpha_bits, accumulate, nb, bx, by, bz] = k;
  auto g = std::make_unique<GemmPrim>();
  // Row-major operands read through strides: op(X)(i, l) is X[i * ldx + l], or X[l * ldx + i]
  // when transposed; likewise op(Y)(l, j).
  const dnnl::memory::dims sa = tx ? dnnl::memory::dims{1, ldx} : dnnl::memory::dims{ldx, 1};
  const dnnl::memory::dims sb = ty ? dnnl::memory::dims{1, ldy} : dnnl::memory::dims{ldy, 1};
  if (nb == 1) {
    g->a = dnnl::memory::desc({m, kk}, dt::f32, sa);
    g->b = dnnl::memory::desc({kk, n}, dt::f32, sb);
    g->c = dnnl::memory::desc({m, n}, dt::f32, dnnl::memory::dims{ldz, 1});
  } else {
    // A shared operand has batch dimension 1 (oneDNN broadcasts it); its stride is then unused.
    g->a = dnnl::memory::desc({bx ? nb : 1, m, kk}, dt::f32, {bx ? bx : m * kk, sa[0], sa[1]});
    g->b = dnnl::memory::desc({by ? nb : 1, kk, n}, dt::f32, {by ? by : kk * n, sb[0], sb[1]});
    g->c = dnnl::memory::desc({nb, m, n}, dt::f32, {bz, ldz, 1});
  }
  dnnl::primitive_attr a = attr();
  float alpha;
  std::memcpy(&alpha, &alpha_bits, sizeof alpha);
  if (alpha != 1.0f) a.set_output_scales(0, {alpha});
  if (accumulate) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    a.set_post_ops(po);
  }
  const auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(g->a, g->b, g->c), a, cpu_engine());
  g->sp = pd.scratchpad_desc();
  g->mm = dnnl::matmul(pd);
  return g;
}

// This thread's matmul primitive for k, or null when oneDNN refused the geometry (remembered).
GemmPrim* gemm_prim(const GemmKey& k) {
  one_openmp_thread();  // before building: the plan (and so the summation order) is for one thread
  thread_local std::map<GemmKey, std::unique_ptr<GemmPrim>> cache;
  auto it = cache.find(k);
  if (it == cache.end()) {
    if (cache.size() >= 1024) cache.clear();
    std::unique_ptr<GemmPrim> g;
    try {
      g = build_gemm(k);
    } catch (const dnnl::error&) {
    }
    it = cache.emplace(k, std::move(g)).first;
  }
  return it->second.get();
}

}  // namespace

bool onednn_gemm_enabled() { return gemm_enabled_flag().load(std::memory_order_relaxed); }
bool set_onednn_gemm(bool on) { return gemm_enabled_flag().exchange(on); }

bool onednn_gemm(bool tx, bool ty, std::int64_t m, std::int64_t n, std::int64_t k, const float* X, std::int64_t ldx,
                 const float* Y, std::int64_t ldy, float* Z, std::int64_t ldz, float alpha, bool accumulate) {
  return onednn_batched_gemm(1, 0, 0, 0, tx, ty, m, n, k, X, ldx, Y, ldy, Z, ldz, alpha, accumulate);
}

bool onednn_batched_gemm(std::int64_t nb, std::int64_t bx, std::int64_t by, std::int64_t bz, bool tx, bool ty,
                         std::int64_t m, std::int64_t n, std::int64_t k, const float* X, std::int64_t ldx,
                         const float* Y, std::int64_t ldy, float* Z, std::int64_t ldz, float alpha, bool accumulate) {
  if (nb < 1 || (nb > 1 && bz == 0)) return false;  // a reduction over the batch is not one matmul
  if (nb == 1) bx = by = bz = 0;
  std::uint32_t alpha_bits;
  std::memcpy(&alpha_bits, &alpha, sizeof alpha);
  GemmPrim* g = gemm_prim(GemmKey{tx, ty, m, n, k, ldx, ldy, ldz, alpha_bits, accumulate, nb, bx, by, bz});
  if (!g) return false;
  dnnl::stream& st = Call::stream();
  g->mm.execute(st, {{DNNL_ARG_SRC, Call::mem(g->a, X)},
                     {DNNL_ARG_WEIGHTS, Call::mem(g->b, Y)},
                     {DNNL_ARG_DST, Call::mem(g->c, Z)},
                     {DNNL_ARG_SCRATCHPAD, Call::scratchpad(g->sp, 6)}});
  st.wait();
  return true;
}

namespace {
}  // namespace

bool onednn_conv_enabled() { return enabled_flag().load(std::memory_order_relaxed); }

bool onednn_conv_supports(const DnnlConvShape& s, unsigned kinds) noexcept {
  // Shapes whose primitives oneDNN refused, per thread (bounded like the primitive cache).
  thread_local std::set<Key> rejected;
  for (Kind kind : {Kind::Plain, Kind::PairC, Kind::PairO, Kind::PairN}) {
    if (!(kinds & (1u << static_cast<int>(kind)))) continue;
    try {
      const Key k = key_of(s, kind);
      if (rejected.count(k)) return false;
      try {
        prims(s, kind);  // built once and cached; later calls only look it up
      } catch (...) {
        if (rejected.size() >= 512) rejected.clear();
        rejected.insert(k);
        return false;
      }
    } catch (...) {
      return false;
    }
  }
  return true;
}
bool set_onednn_conv(bool on) { return enabled_flag().exchange(on); }
bool set_onednn_winograd(bool on) { return winograd_flag().exchange(on); }
std::int64_t onednn_winograd_min_positions() {
  static const bool amd = __builtin_cpu_is("amd");
  return amd ? 16 : 64;
}
bool onednn_conv_winograd(const DnnlConvShape& s, unsigned kind) noexcept {
  // One kind's bit, 1 << Kind, as onednn_conv_supports reads them.
  if (!std::has_single_bit(kind) || kind > kOnednnBackwardWeightsPair) return false;
  try {
    return onednn_conv_supports(s, kind) && prims(s, static_cast<Kind>(std::countr_zero(kind))).winograd;
  } catch (...) {
    return false;
  }
}

const char* onednn_name() {
  static const std::string name = [] {
    const dnnl_version_t* v = dnnl_version();
    return "onednn " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }();
  return name.c_str();
}

const char* conv_backend_name() {
  static const std::string wino = std::string(onednn_name()) + " winograd";
  if (!onednn_conv_enabled()) return "builtin";
  return winograd_flag().load(std::memory_order_relaxed) ? wino.c_str() : onednn_name();
}

void onednn_conv_forward(const DnnlConvShape& s, const float* x, const float* w, float* y, bool accumulate) {
  Call c(s, Kind::Plain);
  auto& p = c.p;
  const std::int64_t HW = s.H * s.W, HWo = s.Ho * s.Wo;
  c.to_act(x, s.N, s.C, HW, c.xb(), s.C, 0);
  c.forward(c.x_cl(), c.weights(w, p.w_fwd, p.w_fwd_plain, p.w_in_fwd, p.sp_in_fwd), c.y_cl());
  c.st.wait();
  c.from_act(c.yb(), s.N, s.O, HWo, y, accumulate);
}

void onednn_conv_backward(const DnnlConvShape& s, const float* gy, const float* x, const float* w, float* gx, float* gw,
                          bool accumulate_x, bool accumulate_w) {
  Call c(s, Kind::Plain);
  auto& p = c.p;
  const std::int64_t HW = s.H * s.W, HWo = s.Ho * s.Wo;
  c.to_act(gy, s.N, s.O, HWo, c.yb(), s.O, 0);
  if (gw) {
    c.to_act(x, s.N, s.C, HW, c.xb(), s.C, 0);
    c.backward_weights(c.x_cl(), c.y_cl(), gw, accumulate_w);
  }
  if (gx) {
    c.backward_data(c.y_cl(), c.weights(w, p.w_bwd, p.w_bwd_plain, p.w_in_bwd, p.sp_in_bwd), c.x_cl());
    c.st.wait();
    c.from_act(c.xb(), s.N, s.C, HW, gx, accumulate_x);
  }
}

void onednn_conv_forward_pair(const DnnlConvShape& s, const float* xt, const float* w, const float* x, const float* wt,
                              float* yt, bool accumulate) {
  Call c(s, Kind::PairC);
  auto& p = c.p;
  const std::int64_t HW = s.H * s.W, HWo = s.Ho * s.Wo;
  c.to_act(xt, s.N, s.C, HW, c.xb(), 2 * s.C, 0);
  c.to_act(x, s.N, s.C, HW, c.xb(), 2 * s.C, s.C);
  c.forward(c.x_cl(), c.weights(stack_weights(s, w, wt, true), p.w_fwd, p.w_fwd_plain, p.w_in_fwd, p.sp_in_fwd),
            c.y_cl());
  c.st.wait();
  c.from_act(c.yb(), s.N, s.O, HWo, yt, accumulate);
}

void onednn_conv_backward_data_pair(const DnnlConvShape& s, const float* gyt, const float* w, const float* gy,
                                    const float* wt, float* gxt, bool accumulate) {
  Call c(s, Kind::PairO);
  auto& p = c.p;
  const std::int64_t HW = s.H * s.W, HWo = s.Ho * s.Wo;
  c.to_act(gyt, s.N, s.O, HWo, c.yb(), 2 * s.O, 0);
  c.to_act(gy, s.N, s.O, HWo, c.yb(), 2 * s.O, s.O);
  c.backward_data(c.y_cl(), c.weights(stack_weights(s, w, wt, false), p.w_bwd, p.w_bwd_plain, p.w_in_bwd, p.sp_in_bwd),
                  c.x_cl());
  c.st.wait();
  c.from_act(c.xb(), s.N, s.C, HW, gxt, accumulate);
}

void onednn_conv_backward_weights_pair(const DnnlConvShape& s, const float* gyt, const float* x, const float* gy,
                                       const float* xt, float* gwt, bool accumulate) {
  Call c(s, Kind::PairN);
  const std::int64_t HW = s.H * s.W, HWo = s.Ho * s.Wo;
  float *xb = c.xb(), *yb = c.yb();
  c.to_act(x, s.N, s.C, HW, xb, s.C, 0);
  c.to_act(xt, s.N, s.C, HW, xb + s.N * HW * s.C, s.C, 0);
  c.to_act(gyt, s.N, s.O, HWo, yb, s.O, 0);
  c.to_act(gy, s.N, s.O, HWo, yb + s.N * HWo * s.O, s.O, 0);
  c.backward_weights(c.x_cl(), c.y_cl(), gwt, accumulate);
}

}  // namespace curv::internal

#else  // !CURV_ONEDNN

#include <stdexcept>

namespace curv::internal {
bool onednn_conv_enabled() { return false; }
bool onednn_conv_supports(const DnnlConvShape&, unsigned) noexcept { return false; }
bool set_onednn_conv(bool) { return false; }
bool set_onednn_winograd(bool) { return false; }
bool onednn_conv_winograd(const DnnlConvShape&, unsigned) noexcept { return false; }
std::int64_t onednn_winograd_min_positions() { return 64; }
const char* conv_backend_name() { return "builtin"; }
const char* onednn_name() { return ""; }
bool onednn_gemm_enabled() { return false; }
bool set_onednn_gemm(bool) { return false; }
bool onednn_gemm(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t, const float*,
                 std::int64_t, float*, std::int64_t, float, bool) {
  return false;
}
bool onednn_batched_gemm(std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, bool, std::int64_t, std::int64_t,
                         std::int64_t, const float*, std::int64_t, const float*, std::int64_t, float*, std::int64_t,
                         float, bool) {
  return false;
}
[[noreturn]] static void missing() { throw std::logic_error("oneDNN is not compiled in"); }
void onednn_conv_forward(const DnnlConvShape&, const float*, const float*, float*, bool) { missing(); }
void onednn_conv_backward(const DnnlConvShape&, const float*, const float*, const float*, float*, float*, bool, bool) {
  missing();
}
void onednn_conv_forward_pair(const DnnlConvShape&, const float*, const float*, const float*, const float*, float*,
                              bool) {
  missing();
}
void onednn_conv_backward_data_pair(const DnnlConvShape&, const float*, const float*, const float*, const float*,
                                    float*, bool) {
  missing();
}
void onednn_conv_backward_weights_pair(const DnnlConvShape&, const float*, const float*, const float*, const float*,
                                       float*, bool) {
  missing();
}
}  // namespace curv::internal

#endif
