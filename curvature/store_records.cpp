#include "curvature/store_records.h"

#include <algorithm>

#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutch_plus_plus.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/power_iteration.h"
#include "curvature/slq_density.h"

namespace curv {

namespace {
std::int64_t i64(std::int64_t v) { return v; }
std::int64_t seed_attr(std::uint64_t seed) { return static_cast<std::int64_t>(seed); }
const char* info_name(CompInfo info) {
  switch (info) {
    case CompInfo::Successful: return "successful";
    case CompInfo::NotComputed: return "not_computed";
    case CompInfo::NotConverging: return "not_converging";
    case CompInfo::NumericalIssue: return "numerical_issue";
  }
  return "unknown";
}
}  // namespace

StoreSection& StoreRun::add_block(std::string name) {
  blocks.emplace_back(std::move(name), StoreSection{});
  return blocks.back().second;
}

EigenRecord eigen_record(const EigenSolver& s, bool with_vectors) {
  EigenRecord r;
  r.values = s.top_values();
  r.residuals = s.top_residuals();
  r.bottom_values = s.bottom_values();
  r.bottom_residuals = s.bottom_residuals();
  if (with_vectors) {
    r.vectors = s.top_vectors();
    r.bottom_vectors = s.bottom_vectors();
  }
  const auto& o = s.options();
  r.attributes = {{"method", std::string("lanczos")},  {"status", std::string(info_name(s.info()))},
                  {"products", i64(s.num_operations())}, {"top", i64(o.top)},
                  {"bottom", i64(o.bottom)},           {"top_ncv", i64(s.top_ncv())},
                  {"bottom_ncv", i64(s.bottom_ncv())}, {"tol", o.tol},
                  {"restarts", i64(s.num_iterations())}, {"max_restarts", i64(o.max_restarts)},
                  {"converged_top", i64(s.top_converged())}, {"converged_bottom", i64(s.bottom_converged())},
                  {"scale", s.scale()},                {"bottom_shift", s.bottom_shift()},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

EigenRecord eigen_record(const PowerIteration& s, bool with_vectors) {
  EigenRecord r;
  r.values = s.values();
  r.residuals = s.residuals();
  if (with_vectors) r.vectors = s.vectors();
  const auto& o = s.options();
  r.attributes = {{"method", std::string("power")},     {"status", std::string(info_name(s.info()))},
                  {"products", i64(s.num_operations())}, {"top", i64(o.top)},
                  {"max_iterations", i64(o.max_iterations)}, {"tol", o.tol},
                  {"converged_top", i64(std::count(s.converged().begin(), s.converged().end(), true))},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

EigenRecord eigen_record(const ExactSpectrum& e, Eigen::Index k, Eigen::Index kb, bool with_vectors) {
  EigenRecord r;
  r.values = e.top(k);
  r.bottom_values = e.bottom(kb);
  if (e.eigenvectors().size() > 0) {
    const Eigen::MatrixXd V = e.top_vectors(k), W = e.bottom_vectors(kb);
    r.residuals = (e.matrix() * V - V * r.values.asDiagonal()).colwise().norm().transpose();
    r.bottom_residuals = (e.matrix() * W - W * r.bottom_values.asDiagonal()).colwise().norm().transpose();
    if (with_vectors) {
      r.vectors = V;
      r.bottom_vectors = W;
    }
  }
  r.attributes = {{"method", std::string("exact")},
                  {"status", std::string(info_name(e.info()))},
                  {"products", i64(e.num_operations())},
                  {"asymmetry", e.asymmetry()}};
  return r;
}

TraceRecord trace_record(const HutchinsonTrace& t) {
  TraceRecord r;
  r.estimate = t.estimate();
  r.std_error = t.std_error();
  r.probes = t.probes();
  r.samples = t.samples();
  const auto& o = t.options();
  r.attributes = {{"method", std::string("hutchinson")}, {"status", std::string(info_name(t.info()))},
                  {"products", i64(t.num_operations())}, {"max_probes", i64(o.probes)},
                  {"batch", i64(o.batch)},               {"tol", o.tol},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

TraceRecord trace_record(const HutchPlusPlus& t) {
  TraceRecord r;
  r.estimate = t.estimate();
  r.std_error = t.std_error();
  r.probes = t.probes();
  r.samples = t.samples();
  const auto& o = t.options();
  r.attributes = {{"method", std::string("hutch++")},    {"status", std::string(info_name(t.info()))},
                  {"products", i64(t.num_operations())}, {"rank", i64(t.rank())},
                  {"low_rank_trace", t.low_rank_trace()}, {"batch", i64(o.batch)},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

TraceRecord trace_record(const ExactSpectrum& e) {
  TraceRecord r;
  r.estimate = e.trace();
  r.std_error = 0.0;
  r.probes = e.num_operations();
  r.attributes = {{"method", std::string("exact")}, {"products", i64(e.num_operations())}};
  return r;
}

DiagRecord diag_record(const HutchinsonDiagonal& d) {
  DiagRecord r;
  r.estimate = d.estimate();
  r.std_error = d.std_error();
  r.probes = d.probes();
  const auto& o = d.options();
  r.attributes = {{"method", std::string("hutchinson")}, {"status", std::string(info_name(d.info()))},
                  {"products", i64(d.num_operations())}, {"batch", i64(o.batch)},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

DiagRecord diag_record(const ExactSpectrum& e) {
  DiagRecord r;
  r.estimate = e.diagonal();
  r.probes = e.num_operations();
  r.attributes = {{"method", std::string("exact")}, {"products", i64(e.num_operations())}};
  return r;
}

DensityRecord density_record(const SlqDensity& s) {
  DensityRecord r;
  r.nodes = s.nodes();
  r.weights = s.weights();
  r.steps.assign(s.steps().begin(), s.steps().end());
  r.grid = s.grid();
  r.values = s.values();
  const auto& o = s.options();
  r.attributes = {{"method", std::string("slq")},       {"status", std::string(info_name(s.info()))},
                  {"products", i64(s.num_operations())}, {"dimension", i64(s.dimension())},
                  {"lanczos_steps", i64(o.steps)},
                  {"probes", i64(o.probes)},            {"lockstep", i64(o.lockstep)},
                  {"sigma", s.sigma()},
                  {"sigma_squared", o.sigma_squared},   {"overhead", o.overhead},
                  {"seed", seed_attr(o.seed)}};
  return r;
}

GradientRecord gradient_record(const Eigen::VectorXd& g, const EigenRecord* eigen, bool with_values) {
  GradientRecord r;
  r.norm = g.norm();
  if (with_values) r.values = g;
  if (eigen && eigen->vectors.cols() > 0 && eigen->vectors.rows() == g.size()) {
    const Eigen::Index k = eigen->vectors.cols();
    r.top_overlap.resize(k);
    const double g2 = g.squaredNorm();
    double acc = 0.0;
    for (Eigen::Index j = 0; j < k; ++j) {
      const double c = eigen->vectors.col(j).dot(g);
      acc += c * c;
      r.top_overlap(j) = g2 > 0 ? acc / g2 : 0.0;
    }
  }
  return r;
}

}  // namespace curv
