#include "quant/hessian_sensitivity.h"

#include <cmath>
#include <random>
#include <stdexcept>

#include "curvature/block_trace.h"
#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_trace.h"
#include "src/core/timer.h"

namespace curv::quant {

namespace {

double lambda_max(const LinearOperator& op, const SensitivityOptions& o) {
  if (op.rows() <= 16) {  // Spectra needs k < n and a few Lanczos vectors: tiny blocks go dense
    ExactSpectrum ex(op);
    ex.compute();
    return ex.top(1)[0];
  }
  EigenSolverOptions eo;
  eo.top = 1;
  eo.tol = o.eig_tol;
  eo.seed = o.seed;
  EigenSolver es(op, eo);
  es.compute();
  if (es.info() != CompInfo::Successful)
    throw std::runtime_error("sensitivity: Lanczos did not converge for a block of " + std::to_string(op.rows()) +
                             " parameters within " + std::to_string(eo.max_restarts) + " restarts (residual " +
                             std::to_string(es.top_residuals()[0]) + " of lambda_max " +
                             std::to_string(es.top_values()[0]) + "; the eigenvalue tolerance " +
                             std::to_string(o.eig_tol) + " is too tight)");
  return es.top_values()[0];
}

// Per-layer Hutchinson on the block operator of one layer (HAWQ-V2's procedure).
Sensitivity per_layer_trace(Objective& obj, const ModelLayer& l, const SensitivityOptions& o,
                            SensitivityReport& rep) {
  CurvatureOperator op(obj, Curvature::Hessian, {l.param});
  HutchinsonTraceOptions ho;
  ho.probes = o.trace_probes;
  ho.tol = o.trace_tol;
  ho.seed = o.seed + 1;
  HutchinsonTrace ht(op, ho);
  ht.compute();
  rep.products += ht.num_operations();
  Sensitivity s = trace_sensitivity(ht.estimate(), l.numel);
  s.trace_stderr = ht.std_error();
  s.trace_probes = ht.probes();
  rep.trace_samples.push_back(ht.samples());
  rep.trace_known.push_back(0.0);
  return s;
}

void check_options(const SensitivityOptions& o) {
  if (o.trace_probes < 2 && o.kind == SensitivityKind::Trace && o.trace_method == TraceMethod::Shared)
    throw std::invalid_argument("shared trace probes (= " + std::to_string(o.trace_probes) + ") must be >= 2");
  if (o.trace_probes < 1) throw std::invalid_argument("trace probes (= " + std::to_string(o.trace_probes) + ") must be >= 1");
  if (!(o.trace_tol >= 0.0)) throw std::invalid_argument("trace tolerance must be >= 0");
  if (o.trace_sketch < 0) throw std::invalid_argument("trace sketch rank must be >= 0");
}

}  // namespace

std::vector<std::vector<std::int64_t>> random_subsets(std::int64_t samples, int subsets, double frac,
                                                      std::uint64_t seed) {
  if (!(frac > 0.0 && frac <= 1.0))
    throw std::invalid_argument("the subset fraction (= " + std::to_string(frac) + ") must be in (0, 1]");
  const std::int64_t per = std::max<std::int64_t>(1, std::llround(frac * static_cast<double>(samples)));
  if (subsets < 2 || static_cast<std::int64_t>(subsets) * per > samples)
    throw std::invalid_argument("eig-stats: " + std::to_string(subsets) + " disjoint subsets of " +
                                std::to_string(per) + " samples (fraction " + std::to_string(frac) + ") need " +
                                std::to_string(static_cast<std::int64_t>(subsets) * per) + " samples and at least 2 subsets; the data has " +
                                std::to_string(samples));
  std::vector<std::int64_t> perm(static_cast<std::size_t>(samples));
  for (std::int64_t i = 0; i < samples; ++i) perm[i] = i;
  std::mt19937_64 rng(seed);
  for (std::int64_t i = samples - 1; i > 0; --i) std::swap(perm[i], perm[rng() % std::uint64_t(i + 1)]);
  std::vector<std::vector<std::int64_t>> out;
  for (int s = 0; s < subsets; ++s) out.emplace_back(perm.begin() + s * per, perm.begin() + (s + 1) * per);
  return out;
}

Dataset gather_samples(const Dataset& d, const std::vector<std::int64_t>& idx) {
  return d.gather(idx.data(), static_cast<std::int64_t>(idx.size()));
}

std::vector<Sensitivity> layer_sensitivities(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                             const SensitivityOptions& o, SensitivityReport* report) {
  check_options(o);
  SensitivityReport local;
  SensitivityReport& rep = report ? *report : local;
  rep = SensitivityReport{};
  Timer timer;
  std::vector<Sensitivity> out;
  if (o.kind == SensitivityKind::EigStats) {
    const auto subsets = random_subsets(data.size(), o.subsets, o.subset_frac, o.seed);
    std::vector<std::vector<double>> lam(layers.size());
    for (const auto& idx : subsets) {
      const Dataset sub = gather_samples(data, idx);
      auto obj = Objective::create(m, sub, o.objective);
      for (size_t i = 0; i < layers.size(); ++i) {
        CurvatureOperator op(*obj, Curvature::Hessian, {layers[i].param});
        lam[i].push_back(lambda_max(op, o));
        rep.products += op.num_products();
      }
    }
    for (auto& l : lam) out.push_back(eig_stats_sensitivity(l));
    rep.seconds = timer.seconds();
    return out;
  }
  auto obj = Objective::create(m, data, o.objective);
  if (o.kind == SensitivityKind::Trace && o.trace_method == TraceMethod::Shared) {
    std::vector<int> params;
    std::vector<LinearOperator::Index> sizes;
    for (const auto& l : layers) params.push_back(l.param), sizes.push_back(l.numel);
    CurvatureOperator op(*obj, Curvature::Hessian, params);
    BlockTraceOptions bo;
    bo.max_probes = o.trace_probes;
    bo.min_probes = std::min<std::int64_t>(8, o.trace_probes);
    bo.tol = o.trace_tol;
    bo.sketch = std::min<std::int64_t>(o.trace_sketch, op.rows() - 1);
    bo.seed = o.seed + 1;
    BlockTrace bt(op, sizes, bo);
    bt.compute();
    rep.shared_probes = bt.probes();
    rep.shared_products = bt.num_operations();
    rep.products += bt.num_operations();
    for (std::size_t i = 0; i < layers.size(); ++i) {
      if (!bt.converged(static_cast<LinearOperator::Index>(i))) {
        ++rep.fallback_layers;
        out.push_back(per_layer_trace(*obj, layers[i], o, rep));
        continue;
      }
      Sensitivity s = trace_sensitivity(bt.estimates()[i], layers[i].numel);
      s.trace_stderr = bt.std_errors()[i];
      s.trace_probes = bt.probes();
      rep.trace_samples.push_back(bt.samples()[i]);
      rep.trace_known.push_back(bt.known()[i]);
      out.push_back(s);
    }
    rep.seconds = timer.seconds();
    return out;
  }
  for (const auto& l : layers) {
    if (o.kind == SensitivityKind::Trace) {
      out.push_back(per_layer_trace(*obj, l, o, rep));
      continue;
    }
    CurvatureOperator op(*obj, Curvature::Hessian, {l.param});
    const double lam = lambda_max(op, o);
    rep.products += op.num_products();
    out.push_back(o.kind == SensitivityKind::Eig ? eig_sensitivity(lam, l.numel) : eig_bound_sensitivity(lam));
  }
  rep.seconds = timer.seconds();
  return out;
}

std::string to_string(TraceMethod m) { return m == TraceMethod::PerLayer ? "per-layer" : "shared"; }

TraceMethod trace_method_from_string(const std::string& s) {
  if (s == "per-layer") return TraceMethod::PerLayer;
  if (s == "shared") return TraceMethod::Shared;
  throw std::invalid_argument("trace method \"" + s + "\" is not one of per-layer, shared");
}

}  // namespace curv::quant
