// Tests of quant/ quantizers: the fast path against the plain scalar reference on random tensors,
// hand-computed cases, and bad input naming the constraint.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "quant/quantizer.h"

using namespace curv::quant;

namespace {

// |dequantized - w| <= scale * (1/2 + kBoundSlackUlps * eps): rint is exact, w / s and (q - z) s
// each round once, on values up to 2^7 in level units.
constexpr double kBoundSlackUlps = 512.0;
// Hand-computed dequantized values.
constexpr double kHandTol = 1e-6;

template <typename T>
QuantizedTensor<T> q_of(const std::vector<T>& w, std::vector<std::int64_t> shape, int bits, Scheme scheme,
                        Granularity gran = Granularity::PerTensor, int groups = 1) {
  return quantize<T>(w, shape, QuantSpec{bits, scheme, gran, groups});
}

}  // namespace

TEST_CASE_TEMPLATE("quantize: fast path equals the scalar reference on random tensors", T, float, double) {
  std::mt19937 rng(42);
  const std::vector<std::vector<std::int64_t>> shapes = {{7, 5}, {16, 3, 3, 3}, {10}, {1, 33}, {}, {4, 1}, {9, 40}};
  for (const auto& shape : shapes) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    const std::int64_t out = shape.empty() ? 1 : shape[0];
    for (int flavor = 0; flavor < 5; ++flavor) {
      std::vector<T> w(static_cast<std::size_t>(n));
      std::normal_distribution<double> normal(0.0, 1.0);
      std::uniform_real_distribution<double> uni(0.1, 2.0);
      for (std::size_t i = 0; i < w.size(); ++i) {
        switch (flavor) {
          case 0:
            w[i] = static_cast<T>(normal(rng));
            break;
          case 1:
            w[i] = static_cast<T>(uni(rng));
            break;  // all positive
          case 2:
            w[i] = static_cast<T>(-uni(rng));
            break;  // all negative
          case 3:
            w[i] = i < w.size() / 2 ? T(0) : static_cast<T>(normal(rng));
            break;  // zero channels
          default:
            w[i] = static_cast<T>(std::round(4.0 * normal(rng)) / 2.0);
            break;  // many ties
        }
      }
      for (int bits = kMinBits; bits <= kMaxBits; ++bits)
        for (Scheme scheme : {Scheme::Symmetric, Scheme::Asymmetric})
          for (int g : {0, 1, 2, 3, static_cast<int>(out)}) {  // 0: per-tensor, out: also per-channel
            QuantSpec spec{bits, scheme, g == 0 ? Granularity::PerTensor : Granularity::Group, std::max(g, 1)};
            if (g > out) continue;
            for (int pc = 0; pc < (g == out ? 2 : 1); ++pc) {
              if (pc) spec.granularity = Granularity::PerChannel;
              CAPTURE(bits);
              CAPTURE(flavor);
              CAPTURE(g);
              CAPTURE(shape.size());
              const auto fast = quantize<T>(w, shape, spec);
              const auto ref = quantize_ref<T>(w, shape, spec);
              REQUIRE(fast.codes == ref.codes);
              REQUIRE(fast.scales == ref.scales);
              REQUIRE(fast.zero_points == ref.zero_points);
              REQUIRE(fast.group_begin == ref.group_begin);
              REQUIRE(fast.dequantized == ref.dequantized);
              // Properties: levels in range, symmetric zero point 0, error within half a step.
              const int qmin = level_min(bits, scheme), qmax = level_max(bits, scheme);
              const std::int64_t inner = n / out;
              for (std::int64_t gi = 0; gi < fast.num_groups(); ++gi) {
                const double s = static_cast<double>(fast.scales[gi]);
                const int z = fast.zero_points[gi];
                if (scheme == Scheme::Symmetric) CHECK(z == 0);
                CHECK(s > 0.0);
                for (std::int64_t i = fast.group_begin[gi] * inner; i < fast.group_begin[gi + 1] * inner; ++i) {
                  const int q = fast.codes[i];
                  CHECK(q >= qmin);
                  CHECK(q <= qmax);
                  CHECK(fast.dequantized[i] == static_cast<T>(static_cast<T>(q - z) * fast.scales[gi]));
                  const double err = std::abs(static_cast<double>(fast.dequantized[i]) - static_cast<double>(w[i]));
                  CHECK(err <= s * (0.5 + kBoundSlackUlps * std::numeric_limits<T>::epsilon()));
                }
              }
            }
          }
    }
  }
}

TEST_CASE_TEMPLATE("quantize: hand-computed cases", T, float, double) {
  SUBCASE("symmetric 4-bit per-tensor: s = max|w| / 7") {
    const auto q = q_of<T>({-1.0, -0.3, 0.05, 0.7}, {4}, 4, Scheme::Symmetric);
    CHECK(q.scales == std::vector<T>{T(1) / T(7)});
    CHECK(q.codes == std::vector<std::int8_t>{-7, -2, 0, 5});
    const double expect[] = {-1.0, -2.0 / 7, 0.0, 5.0 / 7};
    for (int i = 0; i < 4; ++i)
      CHECK(static_cast<double>(q.dequantized[i]) == doctest::Approx(expect[i]).epsilon(kHandTol));
    const double err = std::pow(-0.3 + 2.0 / 7, 2) + std::pow(0.05, 2) + std::pow(0.7 - 5.0 / 7, 2);
    const std::vector<T> w{-1.0, -0.3, 0.05, 0.7};
    const std::vector<std::int64_t> shape{4};
    CHECK(quantization_error_sq<T>(w, shape, {4, Scheme::Symmetric, Granularity::PerTensor, 1}) ==
          doctest::Approx(err).epsilon(kHandTol));
  }
  SUBCASE("ties round to even; 3-bit symmetric levels are -3..3") {
    const auto q = q_of<T>({3, 0.5, 1.5, 2.5, -0.5, -2.5, -3}, {7}, 3, Scheme::Symmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.codes == std::vector<std::int8_t>{3, 0, 2, 2, 0, -2, -3});
  }
  SUBCASE("2-bit symmetric has the three levels -1, 0, 1") {
    const auto q = q_of<T>({-2, -0.9, 1.1, 2}, {4}, 2, Scheme::Symmetric);
    CHECK(q.scales[0] == T(2));
    CHECK(q.codes == std::vector<std::int8_t>{-1, 0, 1, 1});
  }
  SUBCASE("asymmetric 2-bit: levels -2..1, zero point maps 0 exactly") {
    auto q = q_of<T>({0, 1, 2, 3}, {4}, 2, Scheme::Asymmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.zero_points[0] == -2);
    CHECK(q.codes == std::vector<std::int8_t>{-2, -1, 0, 1});
    CHECK(q.dequantized == std::vector<T>{0, 1, 2, 3});
    q = q_of<T>({-1, 0, 2}, {3}, 2, Scheme::Asymmetric);
    CHECK(q.zero_points[0] == -1);
    CHECK(q.codes == std::vector<std::int8_t>{-2, -1, 1});
    CHECK(q.dequantized == std::vector<T>{-1, 0, 2});
  }
  SUBCASE("asymmetric, all positive: the range is extended to include 0") {
    const auto q = q_of<T>({1, 2, 3, 4}, {4}, 2, Scheme::Asymmetric);  // s = 4/3, w/s = .75 1.5 2.25 3
    CHECK(q.scales[0] == T(4) / T(3));
    CHECK(q.zero_points[0] == -2);
    CHECK(q.codes == std::vector<std::int8_t>{-1, 0, 0, 1});
    const double expect[] = {4.0 / 3, 8.0 / 3, 8.0 / 3, 4.0};
    for (int i = 0; i < 4; ++i)
      CHECK(static_cast<double>(q.dequantized[i]) == doctest::Approx(expect[i]).epsilon(kHandTol));
  }
  SUBCASE("per-channel: one scale per output channel (first dim)") {
    const auto q = q_of<T>({7, -3, 14, 4}, {2, 2}, 4, Scheme::Symmetric, Granularity::PerChannel);
    CHECK(q.scales == std::vector<T>{1, 2});
    CHECK(q.codes == std::vector<std::int8_t>{7, -3, 7, 2});
  }
  SUBCASE("group-wise: G groups of consecutive channels, floor(g out / G) boundaries") {
    // shape [5, 2], G = 2: channels {0, 1} and {2, 3, 4}.
    const auto q = q_of<T>({1, -1, 0.5, 0, 4, 1, -2, 0, 3, 0}, {5, 2}, 8, Scheme::Symmetric, Granularity::Group, 2);
    CHECK(q.group_begin == std::vector<std::int64_t>{0, 2, 5});
    CHECK(q.scales == std::vector<T>{T(1) / T(127), T(4) / T(127)});
    CHECK(q.codes[0] == 127);
    CHECK(q.codes[4] == 127);
    CHECK(q.codes[6] == -64);  // -2 / (4/127) = -63.5 -> ties to even
    CHECK(num_groups({8, Scheme::Symmetric, Granularity::Group, 3}, 10) == 3);
    CHECK(group_boundaries({8, Scheme::Symmetric, Granularity::Group, 3}, 10) ==
          std::vector<std::int64_t>{0, 3, 6, 10});
  }
  SUBCASE("an all-zero tensor gets scale 1 and dequantizes to 0") {
    auto q = q_of<T>({0, 0, 0}, {3}, 4, Scheme::Symmetric);
    CHECK(q.scales[0] == T(1));
    CHECK(q.codes == std::vector<std::int8_t>{0, 0, 0});
    q = q_of<T>({0, 0, 0}, {3}, 4, Scheme::Asymmetric);
    CHECK(q.zero_points[0] == -8);
    CHECK(q.dequantized == std::vector<T>{0, 0, 0});
  }
}

TEST_CASE("quantize: bad input names the constraint and the value") {
  const std::vector<double> w{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<std::int64_t> shape{5, 2};
  for (int bits : {1, 9}) {
    CHECK_THROWS_WITH_AS(quantize<double>(w, shape, {bits}),
                         ("bits (= " + std::to_string(bits) + ") must be in 2..8").c_str(), std::invalid_argument);
    CHECK_THROWS_WITH_AS(quantize_ref<double>(w, shape, {bits}),
                         ("bits (= " + std::to_string(bits) + ") must be in 2..8").c_str(), std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(quantize<double>(w, shape, {4, Scheme::Symmetric, Granularity::Group, 6}),
                       "groups (= 6) must be in 1..out (= 5) for group-wise quantization", std::invalid_argument);
  const std::vector<std::int64_t> bad{3, 4};
  CHECK_THROWS_WITH_AS(quantize<double>(w, bad, {4}), "shape [3, 4] has 12 elements but the tensor has 10",
                       std::invalid_argument);
  std::vector<float> nan{1, 2, 3, std::numeric_limits<float>::quiet_NaN()};
  const std::vector<std::int64_t> s4{4};
  CHECK_THROWS_WITH_AS(quantize<float>(nan, s4, {4}), "weight 3 is not finite (nan)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(quantize_ref<float>(nan, s4, {4}), "weight 3 is not finite (nan)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(scheme_from_string("sym"), "scheme \"sym\" is not one of symmetric, asymmetric",
                       std::invalid_argument);
  CHECK(granularity_from_string(to_string(Granularity::Group)) == Granularity::Group);
  CHECK(scale_overhead_bits(Scheme::Asymmetric, 3) == 3 * (32 + 8));
}
