#include "curvature/internal/random.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace curv::internal {

using Index = Eigen::Index;

void RandomStream::rademacher(Eigen::Ref<Eigen::MatrixXd> X) {
  for (Index j = 0; j < X.cols(); ++j) {
    for (Index i0 = 0; i0 < X.rows(); i0 += 64) {
      std::uint64_t bits = m_engine();
      const Index end = std::min<Index>(X.rows(), i0 + 64);
      for (Index i = i0; i < end; ++i, bits >>= 1) X(i, j) = (bits & 1u) ? 1.0 : -1.0;
    }
  }
}

double RandomStream::next_unit() { return static_cast<double>(m_engine() >> 11) * 0x1.0p-53; }

void RandomStream::uniform(Eigen::Ref<Eigen::MatrixXd> X) {
  for (Index j = 0; j < X.cols(); ++j)
    for (Index i = 0; i < X.rows(); ++i) X(i, j) = next_unit() - 0.5;
}

void RandomStream::gaussian(Eigen::Ref<Eigen::MatrixXd> X) {
  for (Index j = 0; j < X.cols(); ++j) {
    for (Index i = 0; i < X.rows(); i += 2) {
      // Box-Muller: r = sqrt(-2 ln u1), angle 2 pi u2; 1 - u keeps the log argument in (0, 1].
      const double u1 = 1.0 - next_unit();
      const double u2 = next_unit();
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double t = 2.0 * std::numbers::pi * u2;
      X(i, j) = r * std::cos(t);
      if (i + 1 < X.rows()) X(i + 1, j) = r * std::sin(t);
    }
  }
}

double det_dot(const double* a, const double* b, Index n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) s[l] += a[i + l] * b[i + l];
  double tail = 0.0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) + tail;
}

void mean_and_stderr(const double* x, Index n, double& mean, double& std_error) {
  mean = std::numeric_limits<double>::quiet_NaN();
  std_error = std::numeric_limits<double>::quiet_NaN();
  if (n < 1) return;
  double sum = 0.0;
  for (Index i = 0; i < n; ++i) sum += x[i];
  mean = sum / static_cast<double>(n);
  if (n < 2) return;
  double ss = 0.0;
  for (Index i = 0; i < n; ++i) ss += (x[i] - mean) * (x[i] - mean);
  std_error = std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n));
}

}  // namespace curv::internal
