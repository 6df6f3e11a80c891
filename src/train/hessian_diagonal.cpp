#include "src/train/hessian_diagonal.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/graph_executor.h"
#include "src/core/loss.h"

namespace curv {

DiagonalEstimator parse_diagonal_estimator(const std::string& s) {
  if (s == "hutchinson") return DiagonalEstimator::Hutchinson;
  if (s == "gnb") return DiagonalEstimator::GaussNewtonBartlett;
  throw std::invalid_argument("unknown Hessian-diagonal estimator '" + s + "' (expected hutchinson or gnb)");
}

const char* diagonal_estimator_name(DiagonalEstimator e) {
  return e == DiagonalEstimator::Hutchinson ? "hutchinson" : "gnb";
}

namespace {
constexpr std::uint64_t kProbeTag = 0x52, kLabelTag = 0x47;
}  // namespace

std::vector<double> rademacher_probe(std::int64_t n, std::uint64_t seed, std::uint64_t draw) {
  std::vector<double> z(n);
  for (std::int64_t i = 0; i < n; ++i) z[i] = hashed_uniform(seed, draw, std::uint64_t(i), kProbeTag) < 0.5 ? -1.0 : 1.0;
  return z;
}

std::vector<double> hutchinson_diagonal(Objective& objective, std::uint64_t seed, std::uint64_t draw) {
  const std::vector<double> z = rademacher_probe(objective.num_params(), seed, draw);
  const Objective::Matrix V = Eigen::Map<const Eigen::VectorXd>(z.data(), std::int64_t(z.size()));
  Objective::Matrix Y;
  objective.product(Curvature::Hessian, V, Y);
  std::vector<double> d(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) d[i] = z[i] * Y(std::int64_t(i), 0);
  return d;
}

std::vector<double> gauss_newton_bartlett_diagonal(const Model& model, const std::vector<double>& w,
                                                   const Dataset& batch, const ObjectiveOptions& options,
                                                   std::uint64_t seed, std::uint64_t draw) {
  if (!batch.classification())
    throw std::invalid_argument("the Gauss-Newton-Bartlett estimator samples class labels: " + batch.source +
                                " has regression targets (use the hutchinson estimator)");
  if (!batch.label_shape.empty())
    throw std::invalid_argument("the Gauss-Newton-Bartlett estimator samples one class label per sample: " +
                                batch.source + " has a label per position (use the hutchinson estimator)");
  const std::int64_t N = batch.size();
  // Logits in float64, micro-batch by micro-batch as the gradient passes cut the batch (BatchNorm
  // in training mode sees the same ghost batches).
  internal::GraphExecutor<double> exec(model);
  exec.set_params(w);
  const std::int64_t mb = resolve_micro_batch(model, N, options);
  // Each model input reads the array of its name (`x` for a single-input model), as the Objective binds them.
  std::vector<std::pair<const float*, std::int64_t>> inputs;
  for (int v : model.inputs()) {
    const Value& in = model.values()[v];
    const DataArray* match = nullptr;
    for (const auto& a : batch.more)
      if (a.name == in.name) match = &a;
    if (batch.x_name == in.name || model.inputs().size() == 1 || !match)
      inputs.push_back({batch.x.data(), numel(batch.sample_shape)});
    else
      inputs.push_back({match->values.data(), numel(match->sample_shape)});
  }
  Dataset sampled = batch;
  std::vector<double> p;
  for (std::int64_t first = 0; first < N; first += mb) {
    const std::int64_t count = std::min(mb, N - first);
    internal::Pass<double> pass;
    std::vector<const float*> x;
    for (const auto& [data, per] : inputs) x.push_back(data + first * per);
    exec.forward(pass, first, count, x);
    const ConstView<double> z = exec.view(pass, model.output());
    const std::int64_t C = z.size() / count;
    p.resize(C);
    for (std::int64_t i = 0; i < count; ++i) {
      const double* zi = z.data + i * C;
      const double mx = *std::max_element(zi, zi + C);
      double s = 0;
      for (std::int64_t c = 0; c < C; ++c) s += (p[c] = std::exp(zi[c] - mx));
      const double u = hashed_uniform(seed, draw, std::uint64_t(first + i), kLabelTag);
      std::int64_t y = C - 1;
      double cum = 0;
      for (std::int64_t c = 0; c < C; ++c)
        if (u < (cum += p[c] / s)) {
          y = c;
          break;
        }
      sampled.labels[first + i] = y;
    }
  }
  ObjectiveOptions oo = options;
  oo.cache_bytes = 0;
  Model m = model;
  m.set_flat_params(w);
  auto obj = Objective::create(m, sampled, oo);
  Eigen::VectorXd g;
  obj->gradient(g);
  std::vector<double> d(g.size());
  for (std::int64_t i = 0; i < g.size(); ++i) d[i] = double(N) * g[i] * g[i];
  return d;
}

void average_over_kernels(const std::vector<ParamInfo>& params, std::vector<double>& d) {
  for (const auto& p : params) {
    if (p.shape.size() < 3) continue;
    const std::int64_t window = p.size / (p.shape[0] * p.shape[1]);
    for (std::int64_t r = 0; r < p.shape[0] * p.shape[1]; ++r) {
      double* x = d.data() + p.offset + r * window;
      double s = 0;
      for (std::int64_t j = 0; j < window; ++j) s += std::abs(x[j]);
      const double mean = s / double(window);
      std::fill(x, x + window, mean);
    }
  }
}

}  // namespace curv
