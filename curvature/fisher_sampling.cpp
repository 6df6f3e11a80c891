#include "curvature/fisher_sampling.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "curvature/curvature_operator.h"
#include "curvature/internal/random.h"

namespace curv {

namespace {

constexpr std::uint64_t kHeldOut = 0x4845'4c44'4f55'54ull;  // the held-out draw's index ("HELDOUT")

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Restores the objective's label seed on every exit.
struct SeedGuard {
  Objective& obj;
  std::uint64_t seed;
  explicit SeedGuard(Objective& o) : obj(o), seed(o.fisher_seed()) {}
  ~SeedGuard() { obj.set_fisher_seed(seed); }
};

void require_sampled(const Objective& obj, const char* who) {
  if (obj.fisher_samples() < 1)
    throw std::invalid_argument(std::string(who) + ": needs the Monte Carlo Fisher (fisher_samples >= 1), got " +
                                std::to_string(obj.fisher_samples()));
}

}  // namespace

std::uint64_t fresh_fisher_seed(std::uint64_t seed, std::uint64_t j) {
  return splitmix64(splitmix64(seed ^ 0x6669736865725f73ull) + j);
}

FisherSampledTrace::FisherSampledTrace(Objective& objective, std::vector<int> params, FisherSampledTraceOptions options)
    : m_obj(objective), m_params(std::move(params)), m_options(options) {
  require_sampled(objective, "FisherSampledTrace");
  if (m_options.probes < 1)
    throw std::invalid_argument("FisherSampledTrace: probes (= " + std::to_string(m_options.probes) + ") must be >= 1");
}

std::int64_t FisherSampledTrace::compute() {
  SeedGuard guard(m_obj);
  const std::uint64_t base = guard.seed;
  m_label_seed = base;
  CurvatureOperator F(m_obj, Curvature::Fisher, m_params);
  const auto n = F.rows();
  internal::RandomStream rng(m_options.seed);
  m_samples.assign(std::size_t(m_options.probes), 0.0);
  m_sigma.assign(std::size_t(m_options.probes), 0.0);
  Eigen::MatrixXd z(n, 1), Fz;
  double var = 0;
  for (std::int64_t j = 0; j < m_options.probes; ++j) {
    rng.rademacher(z);  // probe j is column j of the stream, as in HutchinsonTrace
    m_obj.set_fisher_seed(fresh_fisher_seed(base, std::uint64_t(j)));
    F.apply(z, Fz);
    m_samples[std::size_t(j)] = internal::det_dot(z.data(), Fz.data(), n);
    const double s = m_obj.product_stderr().size() ? m_obj.product_stderr()[0] : 0.0;
    m_sigma[std::size_t(j)] = s;
    var += s * s;
  }
  internal::mean_and_stderr(m_samples.data(), m_options.probes, m_estimate, m_std_error);
  m_label_std_error = std::sqrt(var) / double(m_options.probes);
  m_info = std::isfinite(m_estimate) ? CompInfo::Successful : CompInfo::NumericalIssue;
  return m_options.probes;
}

TraceRecord trace_record(const FisherSampledTrace& t, std::int64_t fisher_samples) {
  TraceRecord r;
  r.estimate = t.estimate();
  r.std_error = t.std_error();
  r.probes = std::int64_t(t.samples().size());
  r.samples = t.samples();
  r.attributes = {{"method", std::string("hutchinson_fresh_labels")},
                  {"status", std::string(t.info() == CompInfo::Successful ? "successful" : "numerical_issue")},
                  {"products", t.num_operations()},
                  {"max_probes", std::int64_t(t.samples().size())},
                  {"batch", std::int64_t(1)},
                  {"tol", 0.0},
                  {"label_stderr", t.label_std_error()},
                  {"fisher_samples", fisher_samples},
                  {"seed", static_cast<std::int64_t>(t.options().seed)},
                  {"label_seed", static_cast<std::int64_t>(t.label_seed())},
                  {"estimate_of", std::string("true Fisher (Monte Carlo: fresh labels per probe)")}};
  return r;
}

std::int64_t fisher_eigen_errors(Objective& objective, const std::vector<int>& params, EigenRecord& e) {
  require_sampled(objective, "fisher_eigen_errors");
  const Eigen::Index k = e.values.size(), kb = e.bottom_values.size();
  if (k + kb == 0) return 0;
  if (e.vectors.cols() != k || e.bottom_vectors.cols() != kb)
    throw std::invalid_argument("fisher_eigen_errors: the record holds no eigenvectors");
  SeedGuard guard(objective);
  CurvatureOperator F(objective, Curvature::Fisher, params);
  Eigen::MatrixXd V(F.rows(), k + kb), FV;
  if (k) V.leftCols(k) = e.vectors;
  if (kb) V.rightCols(kb) = e.bottom_vectors;
  // The draw the eigenpairs come from: the label spread of v^T F^ v.
  F.apply(V, FV);
  const Eigen::VectorXd s0 = objective.product_stderr();
  // An independent draw: the held-out Rayleigh quotients.
  objective.set_fisher_seed(fresh_fisher_seed(guard.seed, kHeldOut));
  F.apply(V, FV);
  const Eigen::VectorXd s1 = objective.product_stderr();
  Eigen::VectorXd q(k + kb);
  for (Eigen::Index j = 0; j < k + kb; ++j) q[j] = internal::det_dot(V.col(j).data(), FV.col(j).data(), V.rows());
  e.values_stderr = s0.head(k);
  e.heldout_values = q.head(k);
  e.heldout_stderr = s1.head(k);
  if (kb) {
    e.bottom_values_stderr = s0.tail(kb);
    e.bottom_heldout_values = q.tail(kb);
    e.bottom_heldout_stderr = s1.tail(kb);
  }
  e.attributes["label_sampling"] = std::string(
      "values of one draw (seed); values_stderr: first-order label stderr; heldout_values: v^T F' v on an independent draw");
  return F.num_products();
}

}  // namespace curv
