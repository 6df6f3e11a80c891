#pragma once
// Float32 matrix transposes in 8x8 AVX tiles (scalar without AVX), for layout changes: planar <->
// channels-last activations around oneDNN's convolutions, and transposed GEMM results (internal).
#include <cstdint>

namespace curv::internal {

/// d[j][i] (+)= s[i][j] for i < rows, j < cols (s rows of lds floats, d rows of ldd). `planar_src`
/// sweeps the tiles along s's rows (the faster order when s is the planar side), otherwise along
/// d's rows. Every element is one copy or one add, so the order of tiles does not change any bits.
void transpose(const float* s, std::int64_t lds, float* d, std::int64_t ldd, std::int64_t rows, std::int64_t cols,
               bool add, bool planar_src);

}  // namespace curv::internal
