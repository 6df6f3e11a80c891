#pragma once
/// \file random.h
/// Reproducible random probe vectors (private to curvature/).
///
/// One `std::mt19937_64` stream seeded with the user's seed. Every column consumes a fixed number
/// of draws in a fixed order, so column j of the stream depends only on (seed, j) and never on how
/// callers group columns into blocks. No `std::*_distribution` is used: their output is
/// implementation-defined, ours is the same with every standard library.
#include <Eigen/Core>
#include <cstdint>
#include <random>

namespace curv::internal {

class RandomStream {
 public:
  explicit RandomStream(std::uint64_t seed) : m_engine(seed) {}

  /// Rademacher +-1 entries. A column of n entries takes ceil(n / 64) draws; bit b of draw d is
  /// entry 64 d + b (bit set -> +1).
  void rademacher(Eigen::Ref<Eigen::MatrixXd> X);
  /// Uniform entries in [-0.5, 0.5), one draw (53 bits) each.
  void uniform(Eigen::Ref<Eigen::MatrixXd> X);
  /// Standard normal entries, Box-Muller: two draws per pair of entries of a column (an odd
  /// column length discards the last pair's second value).
  void gaussian(Eigen::Ref<Eigen::MatrixXd> X);

 private:
  double next_unit();  // [0, 1)
  std::mt19937_64 m_engine;
};

/// Dot product with a summation order fixed by n alone (8 strided partial sums, fixed tree), so
/// the result is bitwise independent of the operands' memory alignment and position in a block.
double det_dot(const double* a, const double* b, Eigen::Index n);

/// Sample mean and standard error (sample std, n - 1 denominator, over sqrt(n)) of x, summed in
/// index order. The standard error is NaN when x has fewer than two entries.
void mean_and_stderr(const double* x, Eigen::Index n, double& mean, double& std_error);

}  // namespace curv::internal
