// One exact Hessian-vector product with curv's engine, checked against finite differences.
//
// Builds a small MLP with the C++ builder, draws a random classification data set in memory,
// computes H v for a random direction v (forward-over-reverse, exact), and compares it with
// central differences of exact gradients, (g(w + eps v) - g(w - eps v)) / (2 eps), whose error is
// O(eps^2). Prints both and exits 1 when they disagree.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "src/core/builder.h"
#include "src/core/objective.h"

int main() {
  using curv::Objective;
  // x: [N, 8] -> Linear(8, 16) -> Tanh -> Linear(16, 3) -> logits [N, 3]
  curv::ModelBuilder builder({8}, /*seed=*/1);
  int h = builder.linear(builder.input(), 16, "fc1");
  h = builder.unary(h, curv::UnaryKind::Tanh);
  const curv::Model model = builder.finish(builder.linear(h, 3, "fc2"));

  constexpr int kSamples = 64;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  curv::Dataset data;
  data.source = "in-memory";
  data.sample_shape = {8};
  for (int i = 0; i < kSamples * 8; ++i) data.x.push_back(static_cast<float>(normal(rng)));
  for (int i = 0; i < kSamples; ++i) data.labels.push_back(i % 3);

  curv::ObjectiveOptions opts;
  opts.precision = curv::Precision::Float64;  // tight agreement with finite differences
  auto objective = Objective::create(model, data, opts);
  const auto P = objective->num_params();

  Objective::Matrix v(P, 1);
  for (Eigen::Index i = 0; i < P; ++i) v(i, 0) = normal(rng);
  v /= v.norm();
  Objective::Matrix hv;
  objective->product(curv::Curvature::Hessian, v, hv);

  // Central differences of gradients along v.
  constexpr double kEps = 1e-4;
  const std::vector<double> w = objective->params();
  auto gradient_at = [&](double t) {
    std::vector<double> wt(w);
    for (Eigen::Index i = 0; i < P; ++i) wt[i] += t * v(i, 0);
    objective->set_params(wt);
    Objective::Vector g;
    objective->gradient(g);
    return g;
  };
  const Objective::Vector fd = (gradient_at(kEps) - gradient_at(-kEps)) / (2 * kEps);
  objective->set_params(w);

  const double rel = (hv.col(0) - fd).norm() / hv.norm();
  std::printf("model: %lld parameters, %d samples, loss %.6f\n", static_cast<long long>(P), kSamples,
              objective->value());
  std::printf("v^T H v = %.10f\n", v.col(0).dot(hv.col(0)));
  std::printf("H v[0:4]          = % .8f % .8f % .8f % .8f\n", hv(0, 0), hv(1, 0), hv(2, 0), hv(3, 0));
  std::printf("finite diff[0:4]  = % .8f % .8f % .8f % .8f\n", fd(0), fd(1), fd(2), fd(3));
  std::printf("||H v - fd|| / ||H v|| = %.3e\n", rel);
  constexpr double kTolerance = 1e-6;  // O(eps^2) truncation plus rounding, in float64
  if (!(rel < kTolerance)) {
    std::printf("FAIL: exact HVP and finite differences disagree (tolerance %.0e)\n", kTolerance);
    return 1;
  }
  std::printf("OK: exact HVP agrees with finite differences\n");
  return 0;
}
