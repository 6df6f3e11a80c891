#include "curvature/kfac_spectrum.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/internal/random.h"

namespace curv {

namespace {

using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

EigenRecord eigen_from_values(const Vector& desc, std::int64_t top, std::int64_t bottom) {
  EigenRecord e;
  const Eigen::Index n = desc.size();
  const Eigen::Index kt = std::min<Eigen::Index>(top, n), kb = std::min<Eigen::Index>(bottom, n);
  e.values = desc.head(kt);
  e.residuals = Vector::Zero(kt);
  if (kb > 0) {
    e.bottom_values = desc.tail(kb).reverse();
    e.bottom_residuals = Vector::Zero(kb);
  }
  e.attributes["method"] = std::string("kfac-factors");
  e.attributes["status"] = std::string("successful");
  e.attributes["products"] = std::int64_t(0);
  return e;
}

TraceRecord exact_trace(double t) {
  TraceRecord r;
  r.estimate = t;
  r.std_error = 0;
  r.probes = 0;
  r.attributes["method"] = std::string("kfac-factors");
  return r;
}

// Eigenvectors of K for its k largest (or smallest) eigenvalues, in the layer's block order.
Matrix layer_eigenvectors(const Model& m, const KfacFactors& f, std::int64_t k, bool largest) {
  std::vector<std::tuple<double, Eigen::Index, Eigen::Index>> ev;
  for (Eigen::Index i = 0; i < f.alpha.size(); ++i)
    for (Eigen::Index j = 0; j < f.beta.size(); ++j) ev.push_back({f.alpha[i] * f.beta[j], i, j});
  std::sort(ev.begin(), ev.end(), [&](const auto& a, const auto& b) {
    return largest ? std::get<0>(a) > std::get<0>(b) : std::get<0>(a) < std::get<0>(b);
  });
  k = std::min<std::int64_t>(k, std::int64_t(ev.size()));
  Matrix V(f.layer.size, k);
  for (std::int64_t c = 0; c < k; ++c) {
    const Matrix W = f.QB.col(std::get<2>(ev[c])) * f.QA.col(std::get<1>(ev[c])).transpose();
    layer_vector(m, f.layer, W, V.col(c).data());
  }
  return V;
}

}  // namespace

std::int64_t analyze_kfac_spectrum(Objective& objective, const Kfac& kfac, const SpectrumOptions& o, bool whole_model,
                                   bool compare_ggn, std::int64_t compare_probes, std::uint64_t seed, StoreRun& run) {
  const Model& m = objective.model();
  if (whole_model && !kfac.unsupported().empty()) {
    const auto& u = kfac.unsupported().front();
    throw std::invalid_argument("K-FAC does not cover parameter '" + m.params()[u.param].name + "': " + u.reason +
                                " (use --skip-full for the K-FAC layers alone)");
  }
  if (compare_ggn && compare_probes < 1)
    throw std::invalid_argument("K-FAC comparison needs at least 1 probe, got " + std::to_string(compare_probes));
  std::int64_t products = 0;
  std::vector<double> all;
  double total_trace = 0;
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const KfacFactors& f = kfac.layer(l);
    StoreSection& s = run.add_block(f.layer.name);
    s.attributes["params"] = std::int64_t(f.layer.size);
    s.attributes["exact"] = std::int64_t(1);
    const Vector ev = kfac.eigenvalues(l);
    if (whole_model) all.insert(all.end(), ev.data(), ev.data() + ev.size());
    total_trace += kfac.trace(l);
    if (o.top + o.bottom > 0) {
      EigenRecord e = eigen_from_values(ev, o.top, o.bottom);
      if (o.save_vectors) {
        e.vectors = layer_eigenvectors(m, f, e.values.size(), true);
        if (e.bottom_values.size() > 0) e.bottom_vectors = layer_eigenvectors(m, f, e.bottom_values.size(), false);
      }
      s.eigen = std::move(e);
    }
    s.trace = exact_trace(kfac.trace(l));
    if (o.diag) {
      DiagRecord d;
      d.estimate.resize(f.layer.size);
      layer_vector(m, f.layer, f.B.diagonal() * f.A.diagonal().transpose(), d.estimate.data());
      d.attributes["method"] = std::string("kfac-factors");
      s.diag = std::move(d);
    }
    KfacRecord r{f.A, f.B, f.alpha, f.beta, f.QA, f.QB, {}};
    r.attributes["layer"] = f.layer.name;
    r.attributes["in"] = std::int64_t(f.layer.in_ext());
    r.attributes["out"] = std::int64_t(f.layer.out);
    r.attributes["positions"] = std::int64_t(f.layer.positions);
    if (compare_ggn) {
      CurvatureOperator G(objective, Curvature::GGN, f.layer.params);
      EigenSolverOptions eo;
      eo.top = 1;
      eo.tol = o.eig_tol;
      eo.max_restarts = o.eig_max_restarts;
      eo.seed = seed;
      if (G.rows() > 1) {
        EigenSolver es(G, eo);
        es.compute();
        r.attributes["ggn_top"] = es.top_values()[0];
        r.attributes["ggn_top_residual"] = es.top_residuals()[0];
      }
      // Hutchinson trace of G and the Frobenius error on the same Rademacher probes.
      Matrix Z(G.rows(), compare_probes), GZ, KZ;
      internal::RandomStream(seed + 1).rademacher(Z);
      G.apply(Z, GZ);
      kfac.multiply(l, Z, KZ);
      Vector t(compare_probes), a(compare_probes), b(compare_probes);
      for (std::int64_t i = 0; i < compare_probes; ++i) {
        t[i] = Z.col(i).dot(GZ.col(i));
        a[i] = (KZ.col(i) - GZ.col(i)).squaredNorm();
        b[i] = GZ.col(i).squaredNorm();
      }
      double tm, tse;
      internal::mean_and_stderr(t.data(), t.size(), tm, tse);
      const double R = a.mean() / b.mean();
      const Vector dev = a - R * b;
      const double seR = compare_probes > 1
                             ? std::sqrt(dev.squaredNorm() / double(compare_probes - 1) / double(compare_probes)) / b.mean()
                             : std::nan("");
      const double rf = std::sqrt(R);
      r.attributes["ggn_trace"] = tm;
      r.attributes["ggn_trace_stderr"] = tse;
      r.attributes["frobenius_rel"] = rf;
      r.attributes["frobenius_rel_stderr"] = rf > 0 ? seR / (2 * rf) : seR;
      r.attributes["compare_probes"] = compare_probes;
      r.attributes["kfac_top"] = ev.size() ? ev[0] : 0.0;
      r.attributes["kfac_trace"] = kfac.trace(l);
      products += G.num_products();
    }
    s.kfac = std::move(r);
  }
  if (whole_model) {
    std::sort(all.begin(), all.end(), std::greater<double>());
    const Vector desc = Eigen::Map<const Vector>(all.data(), Eigen::Index(all.size()));
    run.model.attributes["exact"] = std::int64_t(1);
    if (o.top + o.bottom > 0) run.model.eigen = eigen_from_values(desc, o.top, o.bottom);
    run.model.trace = exact_trace(total_trace);
  }
  return products;
}

}  // namespace curv
