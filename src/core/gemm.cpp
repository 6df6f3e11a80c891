#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <utility>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "src/core/internal/gemm.h"
#include "src/core/internal/onednn_conv.h"
#include "src/core/internal/transpose.h"
#include "src/core/tensor.h"
#include "src/core/ops.h"

namespace curv::internal {

template <class T>
using RMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

template <class T>
using StridedMap = Eigen::Map<const RMat<T>, 0, Eigen::OuterStride<>>;

// Z (+)= alpha op(X) op(Y) on row-major operands with leading dimensions ldx, ldy, ldz.
// float32 products of at least kDnnlFlops with every dimension at least kDnnlMinDim run on oneDNN's
// matmul (onednn_conv.h) when it is compiled in and enabled: on this machine's shapes (ResNet 1x1
// convolutions, weight gradients, transformer projections; one thread) it ran 1.2-1.56x Eigen's rate,
// and about even at 64^3, where the call's overhead starts to count. Which kernel runs depends only
// on the geometry, so a product's bits do not depend on the thread count.
constexpr double kDnnlFlops = double(1 << 21);
constexpr std::int64_t kDnnlMinDim = 16;
// Products below kDnnlFlops but of at least kDnnlBatchedFlops (64 x 64 x 16) run on oneDNN when a
// batched_gemm has many of them (below).
constexpr double kDnnlBatchedFlops = double(1 << 17);

// ---- Narrow float32 products: op(Y) of few columns and rows (narrow() below) ----
// Transformers of small width (the LM fixtures: d = 16, heads of 8) run thousands of products like
// [128 x 16] x [16 x 48] and [8 x 8] x [8 x 8] per pass, where Eigen's GEMM spends more time in its
// blocking heuristic and in packing both operands than in arithmetic (about 28% of a fixture's
// cached HVP, session 16). Here op(Y) is copied once into rows of whole packets (zero-padded), the
// n outputs of a row of Z live in NP packet registers, and each row is
//   acc = 0;  acc = fma(op(X)(i, l), op(Y)(l, :), acc) for l = 0, 1, ..., k - 1;  Z(i, :) (+)= alpha acc
// R rows at a time share the loads of op(Y). Every element of Z gets that same sequence of
// operations whatever m, R or the row it sits in, and the kernel is chosen by (n, k) alone, never
// by m: a block of directions stacked into the rows of one product gives the bits of each
// direction's product alone, and so does a product split into row blocks across threads.
// GCC warns that a packet type's alignment attribute is dropped where it is a template argument;
// Eigen's own packet code does the same.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
using FPacket = Eigen::internal::packet_traits<float>::type;
using HPacket = Eigen::internal::unpacket_traits<FPacket>::half;
template <class P>
constexpr int kLanesOf = Eigen::internal::unpacket_traits<P>::size;
constexpr int kLanes = kLanesOf<FPacket>;
// Columns up to half a packet (8 with AVX-512: attention's heads of 8) run on half packets.
constexpr int kHalfLanes = kLanesOf<HPacket> < kLanes && kLanesOf<HPacket> >= 4 ? kLanesOf<HPacket> : 0;
constexpr std::int64_t kNarrowN = 64, kNarrowK = 256, kNarrowWideK = 32;
constexpr int kMaxPackets = kNarrowN / kLanes;

template <class P, bool TX, int NP, int R>
void narrow_rows(const float* X, std::int64_t ldx, std::int64_t i0, std::int64_t k, const float* Yp,
                 std::int64_t ldp, float* Z, std::int64_t ldz, std::int64_t n, float alpha, bool accumulate) {
  using namespace Eigen::internal;
  constexpr int L = kLanesOf<P>;
  P acc[R][NP];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = pset1<P>(0.0f);
  for (std::int64_t l = 0; l < k; ++l) {
    P y[NP];
    for (int p = 0; p < NP; ++p) y[p] = ploadu<P>(Yp + l * ldp + p * L);
    for (int r = 0; r < R; ++r) {
      const P a = pset1<P>(TX ? X[l * ldx + i0 + r] : X[(i0 + r) * ldx + l]);
      for (int p = 0; p < NP; ++p) acc[r][p] = pmadd(a, y[p], acc[r][p]);
    }
  }
  const P al = pset1<P>(alpha), zero = pset1<P>(0.0f);
  for (int r = 0; r < R; ++r) {
    float* z = Z + (i0 + r) * ldz;
    for (int p = 0; p < NP; ++p) {
      const P v = alpha == 1.0f ? acc[r][p] : pmul(al, acc[r][p]);
      // An overwrite stores 0 + v: the bits of adding to zeros.
      if ((p + 1) * L <= n) {
        pstoreu(z + p * L, padd(accumulate ? ploadu<P>(z + p * L) : zero, v));
      } else {
        alignas(64) float part[L];
        pstoreu(part, v);
        for (std::int64_t j = p * L; j < n; ++j) z[j] = (accumulate ? z[j] : 0.0f) + part[j - p * L];
      }
    }
  }
}

template <class P, bool TX, int NP>
void narrow_gemm_np(std::int64_t m, std::int64_t k, const float* X, std::int64_t ldx, const float* Yp,
                    std::int64_t ldp, float* Z, std::int64_t ldz, std::int64_t n, float alpha, bool accumulate) {
  // Rows per step: as many as the vector registers hold next to op(Y)'s packets (32 with AVX-512,
  // 16 below), at most 8.
  constexpr int kRegs = kLanes >= 16 ? 32 : 16;
  constexpr int R = std::clamp((kRegs - NP - 2) / NP, 1, 8);
  std::int64_t i = 0;
  for (; i + R <= m; i += R) narrow_rows<P, TX, NP, R>(X, ldx, i, k, Yp, ldp, Z, ldz, n, alpha, accumulate);
  for (; i < m; ++i) narrow_rows<P, TX, NP, 1>(X, ldx, i, k, Yp, ldp, Z, ldz, n, alpha, accumulate);
}

using NarrowFn = void (*)(std::int64_t, std::int64_t, const float*, std::int64_t, const float*, std::int64_t, float*,
                          std::int64_t, std::int64_t, float, bool);
template <bool TX, std::size_t... I>
constexpr std::array<NarrowFn, sizeof...(I)> narrow_table(std::index_sequence<I...>) {
  return {&narrow_gemm_np<FPacket, TX, int(I) + 1>...};
}

// One packet of columns (n <= 16 with AVX-512) up to 256 rows of op(Y), wider ones (up to 64) up to 32
// rows: on char_gpt's [1024 x 64] x [64 x 64] and [1024 x 256] x [256 x 64] oneDNN's matmul was
// 3-8% faster (session 16).
bool narrow(std::int64_t n, std::int64_t k) {
  return kLanes >= 4 && (n <= kLanes ? k <= kNarrowK : n <= kNarrowN && k <= kNarrowWideK);
}

// REQUIRES: narrow(n, k).
void narrow_gemm(bool tx, bool ty, std::int64_t m, std::int64_t n, std::int64_t k, const float* X, std::int64_t ldx,
                 const float* Y, std::int64_t ldy, float* Z, std::int64_t ldz, float alpha, bool accumulate) {
  static constexpr auto table = narrow_table<false>(std::make_index_sequence<kMaxPackets>{});
  static constexpr auto table_tx = narrow_table<true>(std::make_index_sequence<kMaxPackets>{});
  if (m == 0 || n == 0) return;
  const bool half = n <= kHalfLanes;
  const int L = half ? kHalfLanes : kLanes;
  const int np = static_cast<int>((n + L - 1) / L);
  const std::int64_t w = std::int64_t(np) * L;
  NarrowFn f = half ? (tx ? &narrow_gemm_np<HPacket, true, 1> : &narrow_gemm_np<HPacket, false, 1>)
                    : (tx ? table_tx : table)[np - 1];
  // op(Y) rows of whole packets are read in place (same values, so the same bits as a copy).
  if (!ty && n == w) return f(m, k, X, ldx, Y, ldy, Z, ldz, n, alpha, accumulate);
  thread_local std::vector<float> yp;
  if (yp.size() < std::size_t(k * w)) yp.resize(k * w);
  for (std::int64_t l = 0; l < k; ++l) {
    float* row = yp.data() + l * w;
    for (std::int64_t j = 0; j < n; ++j) row[j] = ty ? Y[j * ldy + l] : Y[l * ldy + j];
    for (std::int64_t j = n; j < w; ++j) row[j] = 0.0f;
  }
  f(m, k, X, ldx, yp.data(), w, Z, ldz, n, alpha, accumulate);
}
#pragma GCC diagnostic pop

template <class T>
void gemm_seq(bool tx, bool ty, const T* X, std::int64_t xr, std::int64_t xc, std::int64_t ldx, const T* Y,
              std::int64_t yr, std::int64_t yc, std::int64_t ldy, T* Z, std::int64_t ldz, T alpha, bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    const std::int64_t m = tx ? xc : xr, n = ty ? yr : yc, k = tx ? xr : xc;
    if (narrow(n, k)) return narrow_gemm(tx, ty, m, n, k, X, ldx, Y, ldy, Z, ldz, alpha, accumulate);
    if (std::min({m, n, k}) >= kDnnlMinDim && 2.0 * double(m) * double(n) * double(k) >= kDnnlFlops &&
        onednn_gemm_enabled() && onednn_gemm(tx, ty, m, n, k, X, ldx, Y, ldy, Z, ldz, alpha, accumulate))
      return;
  }
  StridedMap<T> A(X, xr, xc, Eigen::OuterStride<>(ldx));
  StridedMap<T> B(Y, yr, yc, Eigen::OuterStride<>(ldy));
  const std::int64_t zr = tx ? xc : xr, zc = ty ? yr : yc;
  Eigen::Map<RMat<T>, 0, Eigen::OuterStride<>> C(Z, zr, zc, Eigen::OuterStride<>(ldz));
  if (!accumulate) C.setZero();
  if (!tx && !ty)
    C.noalias() += alpha * A * B;
  else if (!tx && ty)
    C.noalias() += alpha * A * B.transpose();
  else if (tx && !ty)
    C.noalias() += alpha * A.transpose() * B;
  else
    C.noalias() += alpha * A.transpose() * B.transpose();
}

// Intra-op parallelism: products of at least kParallelFlops split their output into blocks of rows
// (or of columns, whichever dimension is longer) of at least kMinRowBlock rows or kMinColBlock
// columns, with about kBlockFlops each. Columns come in wider blocks: oneDNN's matmul ran 64-column
// blocks of ResNet-18's products at 55-85% of its rate on 256-wide ones (one thread; 64 x 1024 x
// 1024: 1.03 against 0.75 ms), while 64-row blocks were as fast as 256-row ones there (1024 x 1024
// x 128: 1.49 against 1.33 ms) and faster on the text models' weight gradients (256 x 1536 x 64,
// op(X) = X^T: four 64-row blocks 0.30 ms, one 0.41 ms).
// The blocks depend only on the shape, so every element is computed by the same sequence of
// operations whatever the thread count; they run on oneTBB inside an isolated region, so a waiting
// thread never picks up unrelated work (which could reuse its thread-local scratch buffers).
constexpr double kParallelFlops = double(1 << 24), kBlockFlops = double(1 << 23);
constexpr std::int64_t kMinRowBlock = 64, kMinColBlock = 256;

}  // namespace

template <class T>
void gemm(bool tx, bool ty, const T* X, std::int64_t xr, std::int64_t xc, const T* Y, std::int64_t yr,
          std::int64_t yc, T* Z, T alpha, bool accumulate) {
  const std::int64_t m = tx ? xc : xr, n = ty ? yr : yc, kk = tx ? xr : xc;
  const double flops = 2.0 * double(m) * double(n) * double(kk);
  const bool by_rows = m >= n;
  const std::int64_t len = by_rows ? m : n;
  std::int64_t blocks = std::min<std::int64_t>(len / (by_rows ? kMinRowBlock : kMinColBlock),
                                               static_cast<std::int64_t>(flops / kBlockFlops));
  if (flops < kParallelFlops || blocks < 2) return gemm_seq(tx, ty, X, xr, xc, xc, Y, yr, yc, yc, Z, n, alpha, accumulate);
  if constexpr (std::is_same_v<T, float>) {
    if (!by_rows && ty && onednn_gemm_enabled()) {
      // Blocks of columns of Z read blocks of rows of Y (op(Y) = Y^T), and oneDNN's matmul ran such
      // products at 35-75% of its rate on the whole (64 x 1024 x 1024, one thread: 0.99 ms in blocks
      // of 256 columns, 2.0 in blocks of 64, 0.71 whole). Their transpose Z^T = Y op(X)^T splits
      // into blocks of rows of a plain Y instead (0.64 ms): computed into S [n, m], then
      // Z (+)= S^T. The split still depends only on the shape.
      Buffer<T> S(static_cast<std::size_t>(n * m));
      gemm(false, !tx, Y, yr, yc, X, xr, xc, S.data(), alpha, false);
      transpose(S.data(), m, Z, n, n, m, accumulate, false);
      return;
    }
  }
  const std::int64_t step = ((len + blocks - 1) / blocks + 15) / 16 * 16;
  blocks = (len + step - 1) / step;
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(
        std::int64_t(0), blocks,
        [&](std::int64_t b) {
          const std::int64_t i0 = b * step, w = std::min(step, len - i0);
          if (by_rows) {
            // Rows [i0, i0 + w) of Z = op(X) rows: rows of X, or columns of X when transposed.
            const T* Xb = tx ? X + i0 : X + i0 * xc;
            gemm_seq(tx, ty, Xb, tx ? xr : w, tx ? w : xc, xc, Y, yr, yc, yc, Z + i0 * n, n, alpha, accumulate);
          } else {
            const T* Yb = ty ? Y + i0 * yc : Y + i0;
            gemm_seq(tx, ty, X, xr, xc, xc, Yb, ty ? w : yr, ty ? yc : w, yc, Z + i0, n, alpha, accumulate);
          }
        },
        tbb::simple_partitioner());
  });
}

std::vector<std::int64_t> broadcast_strides(const Shape& s, const Shape& full, std::int64_t inner) {
  // s is right-aligned against full.
  std::vector<std::int64_t> st(full.size(), 0);
  std::int64_t acc = inner;
  const size_t off = full.size() - s.size();
  for (size_t i = full.size(); i-- > 0;) {
    const std::int64_t d = i < off ? 1 : s[i - off];
    st[i] = (d == 1 && full[i] != 1) ? 0 : acc;
    acc *= d;
  }
  return st;
}

// The batch as one dimension of uniform strides: operand b at b * bx (X), b * by, b * bz, where
// 0 means shared by every b. False when the batch dims do not nest that way.
static bool one_batch_dim(const Shape& batch, const std::vector<std::int64_t>& sx, const std::vector<std::int64_t>& sy,
                   const std::vector<std::int64_t>& sz, std::int64_t& bx, std::int64_t& by, std::int64_t& bz) {
  std::int64_t inner = 0;  // entries of the dims inside the current one (0: none seen yet)
  for (int i = static_cast<int>(batch.size()) - 1; i >= 0; --i) {
    if (batch[i] == 1) continue;
    if (inner == 0) {
      bx = sx[i], by = sy[i], bz = sz[i];
      inner = batch[i];
      continue;
    }
    if (sx[i] != bx * inner || sy[i] != by * inner || sz[i] != bz * inner) return false;
    inner *= batch[i];
  }
  return true;
}

// Z[b] = 0 for every b of `batch` (blocks of `mn` elements at strides sz). A dim along which Z is
// broadcast (sz 0) repeats the same blocks, so it is walked once.
template <class T>
void batched_gemm_zero(const Shape& batch, const std::vector<std::int64_t>& sz, T* Z, std::int64_t mn) {
  const int r = static_cast<int>(batch.size());
  Shape zb(batch);
  for (int d = 0; d < r; ++d)
    if (sz[d] == 0) zb[d] = 1;
  std::vector<std::int64_t> idx(r, 0);
  std::int64_t iz = 0;
  for (std::int64_t b = 0, nb = numel(zb); b < nb; ++b) {
    std::fill_n(Z + iz, mn, T(0));
    for (int d = r - 1; d >= 0; --d) {
      ++idx[d];
      iz += sz[d];
      if (idx[d] < zb[d]) break;
      iz -= sz[d] * zb[d];
      idx[d] = 0;
    }
  }
}

template <class T>
std::vector<T>& shared_operand_scratch() {
  thread_local std::vector<T> buf;
  return buf;
}

template <class T>
void batched_gemm(const Shape& batch, const std::vector<std::int64_t>& sx, const std::vector<std::int64_t>& sy,
                  const std::vector<std::int64_t>& sz, bool tx, bool ty, const T* X, std::int64_t xr, std::int64_t xc,
                  const T* Y, std::int64_t yr, std::int64_t yc, T* Z, T alpha, bool accumulate) {
  const std::int64_t nb = numel(batch);
  if (nb == 0) return;
  const std::int64_t m = tx ? xc : xr, kk = tx ? xr : xc, n = ty ? yr : yc;
  const int r = static_cast<int>(batch.size());
  auto contiguous = [&](const std::vector<std::int64_t>& s, std::int64_t inner) {
    std::int64_t acc = inner;
    for (int i = r - 1; i >= 0; --i) {
      if (batch[i] != 1 && s[i] != acc) return false;
      acc *= batch[i];
    }
    return true;
  };
  auto all_zero = [&](const std::vector<std::int64_t>& s) {
    for (int i = 0; i < r; ++i)
      if (batch[i] != 1 && s[i] != 0) return false;
    return true;
  };
  // Fold the batch into the rows when Y is shared: [nb*m, k] x [k, n].
  if (!tx && all_zero(sy) && contiguous(sx, xr * xc) && contiguous(sz, m * n)) {
    gemm(false, ty, X, nb * xr, xc, Y, yr, yc, Z, alpha, accumulate);
    return;
  }
  // Fold a reduction over the batch into the inner dimension: sum_b X_b^T Y_b = [nb*k, m]^T [nb*k, n].
  if (tx && !ty && all_zero(sz) && contiguous(sx, xr * xc) && contiguous(sy, yr * yc)) {
    gemm(true, false, X, nb * xr, xc, Y, nb * yr, yc, Z, alpha, accumulate);
    return;
  }
  // One operand shared by every b (a primal against k tangent directions): gather the other operands
  // into one wide matrix so the shared one is packed once, not nb times (per-b GEMMs repacked the
  // shared input of a 16-direction MLP block 16 times). The gather and scatter copies are O(1/kk) of
  // the GEMM's work.
  if (nb > 1 && kk >= 16 && contiguous(sz, m * n)) {
    auto& buf = shared_operand_scratch<T>();
    if (tx && all_zero(sy) && contiguous(sx, xr * xc)) {
      // Z_b = X_b^T op(Y): with Xcat = [X_0 | X_1 | ...] ([kk, nb*m]), Xcat^T op(Y) is Z itself.
      buf.resize(kk * nb * m);
      for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t i = 0; i < kk; ++i) std::copy_n(X + b * xr * xc + i * xc, m, buf.data() + i * nb * m + b * m);
      gemm(true, ty, buf.data(), kk, nb * m, Y, yr, yc, Z, alpha, accumulate);
      return;
    }
    // (Not where op(Y_b) is narrow: the [m, nb*n] product would not be, and a block of directions
    // would lose the bits of its single products; each b runs the narrow kernel instead.)
    if (all_zero(sx) && contiguous(sy, yr * yc) && !(std::is_same_v<T, float> && narrow(n, kk))) {
      // Z_b = op(X) op(Y_b): op(X) [op(Y_0) | op(Y_1) | ...] is [m, nb*n]; scatter its column blocks.
      // With ty the concatenation is Y itself read as [nb*n, kk]; otherwise rows are gathered.
      const std::int64_t w = nb * n;
      buf.resize((ty ? 0 : kk * w) + m * w);
      T* ztmp = buf.data();
      if (ty) {
        gemm(tx, true, X, xr, xc, Y, nb * yr, yc, ztmp, alpha, false);
      } else {
        T* ycat = buf.data() + m * w;
        for (std::int64_t b = 0; b < nb; ++b)
          for (std::int64_t i = 0; i < kk; ++i) std::copy_n(Y + b * yr * yc + i * yc, n, ycat + i * w + b * n);
        gemm(tx, false, X, xr, xc, ycat, kk, w, ztmp, alpha, false);
      }
      for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t i = 0; i < m; ++i) {
          T* zr = Z + b * m * n + i * n;
          const T* tr = ztmp + i * w + b * n;
          if (accumulate)
            for (std::int64_t j = 0; j < n; ++j) zr[j] += tr[j];
          else
            std::copy_n(tr, n, zr);
        }
      return;
    }
  }
  // Each b its own GEMM. Where several b meet one Z (a reduction over broadcast dims) they add up,
  // so an overwrite clears Z first.
  bool z_reduced = false;
  for (int i = 0; i < r; ++i) z_reduced |= batch[i] != 1 && sz[i] == 0;
  if (!accumulate && z_reduced) batched_gemm_zero(batch, sz, Z, m * n);
  const bool add = accumulate || z_reduced;
  // Many small float32 products (attention's scores and context per sequence and head) as one
  // batched oneDNN matmul when the batch is one dimension of uniform strides: 1.5-1.8x Eigen's
  // per-b rate on [64 x 16] x [16 x 64] and the like. Whether it is used depends on the product's
  // geometry, not on nb, and each b gets the bits of the same product run alone.
  if constexpr (std::is_same_v<T, float>) {
    const double flops = 2.0 * double(m) * double(n) * double(kk);
    std::int64_t bx = 0, by = 0, bz = 0;
    if (!z_reduced && std::min({m, n, kk}) >= kDnnlMinDim && flops >= kDnnlBatchedFlops && flops < kDnnlFlops &&
        onednn_gemm_enabled() && one_batch_dim(batch, sx, sy, sz, bx, by, bz) &&
        onednn_batched_gemm(nb, bx, by, bz, tx, ty, m, n, kk, X, xc, Y, yc, Z, n, alpha, add))
      return;
  }
  // Narrow products (attention's per-head [8 x 8] x [8 x 8] in the LM fixtures) go straight to their
  // kernel: the per-call checks of gemm() cost as much as such a product.
  bool narrow_b = false;
  if constexpr (std::is_same_v<T, float>) narrow_b = narrow(n, kk) && m * n * kk <= kParallelFlops / 2;
  std::vector<std::int64_t> idx(r, 0);
  std::int64_t ix = 0, iy = 0, iz = 0;
  for (std::int64_t b = 0; b < nb; ++b) {
    if constexpr (std::is_same_v<T, float>) {
      if (narrow_b)
        narrow_gemm(tx, ty, m, n, kk, X + ix, xc, Y + iy, yc, Z + iz, n, alpha, add);
      else
        gemm(tx, ty, X + ix, xr, xc, Y + iy, yr, yc, Z + iz, alpha, add);
    } else {
      gemm(tx, ty, X + ix, xr, xc, Y + iy, yr, yc, Z + iz, alpha, add);
    }
    for (int d = r - 1; d >= 0; --d) {
      ++idx[d];
      ix += sx[d];
      iy += sy[d];
      iz += sz[d];
      if (idx[d] < batch[d]) break;
      ix -= sx[d] * batch[d];
      iy -= sy[d] * batch[d];
      iz -= sz[d] * batch[d];
      idx[d] = 0;
    }
  }
}

#define CURV_INST(T)                                                                                                 \
  template void gemm<T>(bool, bool, const T*, std::int64_t, std::int64_t, const T*, std::int64_t, std::int64_t, T*, \
                        T, bool);                                                                                    \
  template void batched_gemm<T>(const Shape&, const std::vector<std::int64_t>&, const std::vector<std::int64_t>&,   \
                                const std::vector<std::int64_t>&, bool, bool, const T*, std::int64_t, std::int64_t, \
                                const T*, std::int64_t, std::int64_t, T*, T, bool);
CURV_INST(float)
CURV_INST(double)
#undef CURV_INST

}  // namespace curv::internal

namespace curv {

std::string gemm_backend() {
  return internal::onednn_gemm_enabled() ? internal::onednn_name() : std::string("eigen");
}
bool set_onednn_gemms(bool on) { return internal::set_onednn_gemm(on); }

}  // namespace curv
