#pragma once
// Helpers shared by the library tests: scratch folders and files, exception text, bitwise matrix
// comparison, matrix oracles with known spectra, and synthetic datasets. (tests/cli_run.h runs the `curv` binary.)
#include <unistd.h>

#include <Eigen/Core>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <numbers>
#include <random>
#include <string>

#include "src/core/dataset.h"
#include "tests/scratch_dir.h"

namespace curv_test {

namespace fs = std::filesystem;

/// n samples of standard normal inputs of shape `sample` (seeded) with integer labels in
/// [0, classes), or, for `regression`, standard normal targets of shape [classes].
inline curv::Dataset synthetic_data(const curv::Shape& sample, std::int64_t n, std::int64_t classes, std::uint64_t seed,
                                    bool regression = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  curv::Dataset d;
  d.source = "synthetic";
  d.sample_shape = sample;
  d.x.resize(n * curv::numel(sample));
  for (auto& v : d.x) v = nd(rng);
  if (regression) {
    d.target_shape = {classes};
    d.targets.resize(n * classes);
    for (auto& v : d.targets) v = nd(rng);
  } else {
    for (std::int64_t i = 0; i < n; ++i) d.labels.push_back(static_cast<std::int64_t>(rng() % classes));
  }
  return d;
}

// Temporary files that the atomic writer (src/io/atomic_file.h) left beside `target`:
// "<target>.curv-tmp.<pid>".
inline int temp_files_beside(const fs::path& target) {
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".curv-tmp.";
  int n = 0;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  return n;
}

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

/// The what() of the E that f() throws, or "<no exception>".
template <class E, class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

inline bool bitwise_equal(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && std::equal(a.data(), a.data() + a.size(), b.data());
}

// ---- matrix oracles -----------------------------------------------------------------------------

/// Entries uniform in [-0.5, 0.5) from std::mt19937_64(seed), column by column.
inline Eigen::MatrixXd random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 eng(seed);
  Eigen::MatrixXd M(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) M(i, j) = static_cast<double>(eng() >> 11) * 0x1.0p-53 - 0.5;
  return M;
}

/// tridiag(-1, 2, -1) of size n.
inline Eigen::MatrixXd toeplitz(Eigen::Index n) {
  Eigen::MatrixXd A = Eigen::MatrixXd::Zero(n, n);
  for (Eigen::Index i = 0; i < n; ++i) {
    A(i, i) = 2.0;
    if (i + 1 < n) A(i, i + 1) = A(i + 1, i) = -1.0;
  }
  return A;
}

/// Eigenvalues of tridiag(-1, 2, -1), 2 - 2 cos(k pi / (n + 1)), ascending.
inline Eigen::VectorXd toeplitz_eigenvalues(Eigen::Index n) {
  Eigen::VectorXd v(n);
  for (Eigen::Index k = 1; k <= n; ++k)
    v(k - 1) = 2.0 - 2.0 * std::cos(static_cast<double>(k) * std::numbers::pi / (n + 1));
  return v;
}

/// Q diag(values) Q^T with a random orthogonal Q (Householder QR of random_matrix(n, n, seed)).
inline Eigen::MatrixXd planted(const Eigen::VectorXd& values, std::uint64_t seed) {
  const Eigen::Index n = values.size();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(random_matrix(n, n, seed));
  const Eigen::MatrixXd Q = qr.householderQ();
  const Eigen::MatrixXd A = Q * values.asDiagonal() * Q.transpose();
  return 0.5 * (A + A.transpose());
}

inline Eigen::VectorXd sorted_desc(Eigen::VectorXd v) {
  std::sort(v.data(), v.data() + v.size(), std::greater<>());
  return v;
}

}  // namespace curv_test
