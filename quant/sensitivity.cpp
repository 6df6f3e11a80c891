#include "quant/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

namespace curv::quant {

namespace {

void check_finite(double x, const char* what) {
  if (!std::isfinite(x))
    throw std::invalid_argument(std::string(what) + " (= " + std::to_string(x) + ") must be finite");
}

}  // namespace

Sensitivity eig_sensitivity(double lambda_max, std::int64_t numel) {
  check_finite(lambda_max, "lambda_max");
  if (numel < 1) throw std::invalid_argument("numel (= " + std::to_string(numel) + ") must be >= 1");
  Sensitivity s;
  s.kind = SensitivityKind::Eig;
  s.value = lambda_max / static_cast<double>(numel);
  s.lambda_max = lambda_max;
  s.negative_top_eigenvalue = lambda_max < 0.0;
  return s;
}

Sensitivity eig_bound_sensitivity(double lambda_max) {
  check_finite(lambda_max, "lambda_max");
  Sensitivity s;
  s.kind = SensitivityKind::EigBound;
  s.value = lambda_max;
  s.lambda_max = lambda_max;
  s.negative_top_eigenvalue = lambda_max < 0.0;
  return s;
}

Sensitivity trace_sensitivity(double trace, std::int64_t numel, std::optional<double> lambda_max) {
  check_finite(trace, "trace");
  if (numel < 1) throw std::invalid_argument("numel (= " + std::to_string(numel) + ") must be >= 1");
  Sensitivity s;
  s.kind = SensitivityKind::Trace;
  s.value = trace / static_cast<double>(numel);
  s.trace = trace;
  if (lambda_max) {
    check_finite(*lambda_max, "lambda_max");
    s.lambda_max = *lambda_max;
    s.negative_top_eigenvalue = *lambda_max < 0.0;
  }
  return s;
}

Sensitivity eig_stats_sensitivity(std::span<const double> lambda_max_per_subset) {
  if (lambda_max_per_subset.empty()) throw std::invalid_argument("eig-stats needs at least one subset (got 0)");
  Sensitivity s;
  s.kind = SensitivityKind::EigStats;
  s.subsets = static_cast<int>(lambda_max_per_subset.size());
  double sum = 0.0;
  for (double l : lambda_max_per_subset) {
    check_finite(l, "lambda_max");
    sum += l;
    if (l < 0.0) s.negative_top_eigenvalue = true;
  }
  s.mean = sum / s.subsets;
  double ss = 0.0;
  for (double l : lambda_max_per_subset) ss += (l - s.mean) * (l - s.mean);
  s.stddev = std::sqrt(ss / s.subsets);
  s.value = std::abs(s.mean) + s.stddev;
  s.lambda_max = s.mean;
  return s;
}

template <typename T>
std::vector<double> loss_increase(double s, std::span<const T> w, std::span<const std::int64_t> shape,
                                  const QuantSpec& spec, std::span<const int> bits) {
  check_finite(s, "sensitivity");
  std::vector<double> omega;
  omega.reserve(bits.size());
  for (int b : bits) {
    QuantSpec q = spec;
    q.bits = b;
    omega.push_back(0.5 * s * quantization_error_sq(w, shape, q));
  }
  return omega;
}

std::string to_string(SensitivityKind kind) {
  switch (kind) {
    case SensitivityKind::Eig:
      return "eig";
    case SensitivityKind::EigBound:
      return "eig-bound";
    case SensitivityKind::Trace:
      return "trace";
    case SensitivityKind::EigStats:
      return "eig-stats";
  }
  return "?";
}

SensitivityKind sensitivity_kind_from_string(std::string_view s) {
  if (s == "eig") return SensitivityKind::Eig;
  if (s == "eig-bound") return SensitivityKind::EigBound;
  if (s == "trace") return SensitivityKind::Trace;
  if (s == "eig-stats") return SensitivityKind::EigStats;
  throw std::invalid_argument("sensitivity \"" + std::string(s) + "\" is not one of eig, eig-bound, trace, eig-stats");
}

std::vector<double> reorder_sensitivities(std::span<const double> s, SensitivityOrder order, std::uint64_t seed) {
  for (double x : s) check_finite(x, "sensitivity");
  std::vector<double> out(s.begin(), s.end());
  const std::size_t n = s.size();
  if (order == SensitivityOrder::Reverse) {
    // rank[k] = index of the k-th smallest value (ties by index); the k-th smallest layer takes the
    // k-th largest value and vice versa.
    std::vector<std::size_t> rank(n);
    std::iota(rank.begin(), rank.end(), std::size_t{0});
    std::stable_sort(rank.begin(), rank.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
    for (std::size_t k = 0; k < n; ++k) out[rank[k]] = s[rank[n - 1 - k]];
  } else if (order == SensitivityOrder::Random) {
    std::mt19937_64 rng(seed);
    for (std::size_t i = n; i > 1; --i) std::swap(out[i - 1], out[rng() % i]);
  } else if (order == SensitivityOrder::Equal && n > 0) {
    double mean = 0.0, mean_abs = 0.0;
    for (double x : s) mean += x / static_cast<double>(n), mean_abs += std::abs(x) / static_cast<double>(n);
    const double v = mean > 0.0 ? mean : mean_abs > 0.0 ? mean_abs : 1.0;
    std::fill(out.begin(), out.end(), v);
  }
  return out;
}

std::string to_string(SensitivityOrder order) {
  switch (order) {
    case SensitivityOrder::Hessian:
      return "hessian";
    case SensitivityOrder::Reverse:
      return "reverse";
    case SensitivityOrder::Random:
      return "random";
    case SensitivityOrder::Equal:
      return "equal";
  }
  return "?";
}

SensitivityOrder sensitivity_order_from_string(std::string_view s) {
  if (s == "hessian") return SensitivityOrder::Hessian;
  if (s == "reverse") return SensitivityOrder::Reverse;
  if (s == "random") return SensitivityOrder::Random;
  if (s == "equal") return SensitivityOrder::Equal;
  throw std::invalid_argument("order \"" + std::string(s) + "\" is not one of hessian, reverse, random, equal");
}

template std::vector<double> loss_increase<float>(double, std::span<const float>, std::span<const std::int64_t>,
                                                  const QuantSpec&, std::span<const int>);
template std::vector<double> loss_increase<double>(double, std::span<const double>, std::span<const std::int64_t>,
                                                   const QuantSpec&, std::span<const int>);

}  // namespace curv::quant
