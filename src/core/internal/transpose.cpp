// Float32 transposes in 8x8 tiles (see transpose.h).
#include "src/core/internal/transpose.h"

#ifdef __AVX__
#include <immintrin.h>
#endif

namespace curv::internal {

#ifdef __AVX__
static inline void transpose8(const float* s, std::int64_t lds, float* d, std::int64_t ldd, bool add) {
  __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds), r2 = _mm256_loadu_ps(s + 2 * lds),
         r3 = _mm256_loadu_ps(s + 3 * lds), r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds),
         r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
  r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
  r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
  r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
  r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
  r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
  r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
  r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
  const __m256 rows[8] = {r0, r1, r2, r3, r4, r5, r6, r7};
  for (int i = 0; i < 8; ++i) {
    float* di = d + i * ldd;
    _mm256_storeu_ps(di, add ? _mm256_add_ps(_mm256_loadu_ps(di), rows[i]) : rows[i]);
  }
}
#endif

// d[j][i] (+)= s[i][j] for i < rows, j < cols (s rows of lds, d rows of ldd). The 8x8 tiles are
// visited along the planar side's rows: `planar_src` sweeps 8 rows of s, otherwise 8 rows of d
// (visiting the tiles the other way round touches up to C rows a plane apart at once, which map to
// the same cache sets: 3.5x slower from channels-last to planar at 32x32).
void transpose(const float* s, std::int64_t lds, float* d, std::int64_t ldd, std::int64_t rows, std::int64_t cols,
               bool add, bool planar_src) {
  constexpr std::int64_t B = 8;
  auto scalar = [&](std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) {
    for (std::int64_t i = i0; i < i1; ++i)
      for (std::int64_t j = j0; j < j1; ++j) {
        float& o = d[j * ldd + i];
        o = add ? o + s[i * lds + j] : s[i * lds + j];
      }
  };
  const std::int64_t R = rows - rows % B, Cc = cols - cols % B;
#ifdef __AVX__
  if (planar_src) {
    for (std::int64_t i0 = 0; i0 < R; i0 += B)
      for (std::int64_t j0 = 0; j0 < Cc; j0 += B) transpose8(s + i0 * lds + j0, lds, d + j0 * ldd + i0, ldd, add);
  } else {
    for (std::int64_t j0 = 0; j0 < Cc; j0 += B)
      for (std::int64_t i0 = 0; i0 < R; i0 += B) transpose8(s + i0 * lds + j0, lds, d + j0 * ldd + i0, ldd, add);
  }
#else
  scalar(0, R, 0, Cc);
#endif
  scalar(0, R, Cc, cols);
  scalar(R, rows, 0, cols);
}

}  // namespace curv::internal
