#include "curvature/spectrum_analysis.h"

#include <sstream>
#include <stdexcept>
#include <utility>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/fisher_sampling.h"
#include "curvature/hutch_plus_plus.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/power_iteration.h"
#include "curvature/slq_density.h"

namespace curv {

namespace {

// Reports the products of one section as they accumulate (estimators do not know their totals).
class ObservedOperator final : public LinearOperator {
 public:
  ObservedOperator(const LinearOperator& op, const SpectrumProgress& progress, std::string label)
      : m_op(op), m_progress(progress), m_label(std::move(label)) {}
  Index rows() const override { return m_op.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    m_op.apply(X, Y);
    if (m_progress) m_progress(m_label, num_products(), false);
  }

 private:
  const LinearOperator& m_op;
  const SpectrumProgress& m_progress;
  std::string m_label;
};

std::string str(std::int64_t v) { return std::to_string(v); }

}  // namespace

void check_spectrum_request(const SpectrumOptions& o, std::int64_t size, const std::string& label) {
  if (o.top < 0 || o.bottom < 0)
    throw std::invalid_argument("eigenpair counts must be >= 0 (top " + str(o.top) + ", bottom " + str(o.bottom) + ")");
  if (o.exact && size > o.exact_max_size)
    throw std::invalid_argument("the exact spectrum needs at most " + str(o.exact_max_size) + " parameters, " + label +
                                " has " + str(size) + " (analyze smaller blocks)");
  if (!o.exact && o.eig_method == EigenMethod::Power && o.bottom > 0)
    throw std::invalid_argument("power iteration finds top eigenpairs only; bottom eigenpairs need Lanczos");
  // Lanczos (Spectra) needs k < P; power iteration and the exact spectrum can give all P.
  const bool lanczos = !o.exact && o.eig_method == EigenMethod::Lanczos;
  const std::int64_t limit = lanczos ? size - 1 : size;
  for (auto [what, k] : {std::pair<const char*, std::int64_t>{"top", o.top}, {"bottom", o.bottom}})
    if (k > limit)
      throw std::invalid_argument(str(k) + " " + what + " eigenpairs requested, but " + label + " has " + str(size) +
                                  " parameters" +
                                  (lanczos ? " (Lanczos finds at most " + str(limit) + "; the exact spectrum finds all)"
                                           : ""));
}

void analyze_spectrum(const LinearOperator& A, const SpectrumOptions& o, std::uint64_t seed, StoreSection& sec) {
  check_spectrum_request(o, A.rows(), "the operator");
  if (o.exact) {
    ExactSpectrumOptions eo;
    eo.max_size = o.exact_max_size;
    eo.compute_vectors = o.save_vectors || o.top > 0 || o.bottom > 0;
    ExactSpectrum ex(A, eo);
    ex.compute();
    sec.eigen = eigen_record(ex, o.top, o.bottom, o.save_vectors);
    sec.trace = trace_record(ex);
    if (o.diag) sec.diag = diag_record(ex);
  } else {
    if (o.top > 0 || o.bottom > 0) {
      if (o.eig_method == EigenMethod::Power) {
        PowerIterationOptions po;
        po.top = o.top;
        po.tol = o.eig_tol;
        po.seed = seed;
        PowerIteration pi(A, po);
        pi.compute();
        sec.eigen = eigen_record(pi, o.save_vectors);
      } else {
        EigenSolverOptions eo;
        eo.top = o.top;
        eo.bottom = o.bottom;
        eo.ncv = o.ncv;
        eo.tol = o.eig_tol;
        eo.max_restarts = o.eig_max_restarts;
        eo.seed = seed;
        EigenSolver es(A, eo);
        es.compute();
        sec.eigen = eigen_record(es, o.save_vectors);
      }
    }
    if (o.trace_probes > 0) {
      if (o.trace_method == TraceMethod::HutchPlusPlus) {
        HutchPlusPlusOptions ho;
        ho.probes = o.trace_probes;
        ho.batch = o.probe_batch;
        ho.seed = seed + 1;
        HutchPlusPlus h(A, ho);
        h.compute();
        sec.trace = trace_record(h);
      } else {
        HutchinsonTraceOptions ho;
        ho.probes = o.trace_probes;
        ho.batch = o.probe_batch;
        ho.tol = o.trace_tol;
        ho.seed = seed + 1;
        HutchinsonTrace h(A, ho);
        h.compute();
        sec.trace = trace_record(h);
      }
    }
    if (o.diag) {
      HutchinsonDiagonalOptions d;
      d.probes = o.diag_probes;
      d.batch = o.probe_batch;
      d.seed = seed + 2;
      HutchinsonDiagonal h(A, d);
      h.compute();
      sec.diag = diag_record(h);
    }
  }
  if (o.density) {
    SlqDensityOptions so;
    so.steps = o.slq_steps;
    so.probes = o.slq_probes;
    so.seed = seed + 3;
    SlqDensity slq(A, so);
    slq.compute();
    sec.density = density_record(slq);
  }
}

std::vector<ParamBlock> select_blocks(const Model& m, const std::string& spec) {
  if (spec == "all") return {};
  if (spec == "layers" || spec == "tensors") return m.blocks(spec);
  std::vector<ParamBlock> blocks;
  const auto layers = m.blocks("layers"), tensors = m.blocks("tensors");
  std::stringstream ss(spec);
  std::string name;
  while (std::getline(ss, name, ',')) {
    bool found = false;
    for (const auto* set : {&layers, &tensors})
      for (const auto& b : *set)
        if (!found && b.name == name) blocks.push_back(b), found = true;
    if (!found) throw std::invalid_argument("no layer or parameter named '" + name + "' in the model");
  }
  if (blocks.empty()) throw std::invalid_argument("no block names in '" + spec + "'");
  return blocks;
}

std::int64_t analyze_model_spectrum(Objective& objective, Curvature kind, bool whole_model,
                                    const std::vector<ParamBlock>& blocks, const SpectrumOptions& o,
                                    std::uint64_t seed, StoreRun& run, const SpectrumProgress& progress) {
  if (!whole_model && blocks.empty())
    throw std::invalid_argument("nothing to analyze: neither the whole model nor any block");
  if (whole_model) check_spectrum_request(o, objective.num_params(), "the model");
  for (const auto& b : blocks) check_spectrum_request(o, b.size, "block '" + b.name + "'");

  // The Monte Carlo Fisher: label-sampling errors (fisher_sampling.h). Its trace is Hutchinson with
  // fresh labels per probe instead of the trace of one draw; eigenvalues come from one draw (seed)
  // with their label standard errors and held-out Rayleigh quotients.
  const bool mc_fisher = kind == Curvature::Fisher && objective.fisher_samples() > 0;
  if (mc_fisher && !o.exact && o.trace_probes > 0 && (o.trace_method != TraceMethod::Hutchinson || o.trace_tol > 0))
    throw std::invalid_argument(
        "the Monte Carlo Fisher's trace is Hutchinson with fresh labels per probe and a fixed probe count "
        "(no Hutch++, no trace tolerance); --fisher-samples 0 gives the exact Fisher");
  std::int64_t products = 0;
  auto one = [&](const std::vector<int>& params, const std::string& label, StoreSection& sec, bool keep_vectors) {
    SpectrumOptions so = o;
    so.save_vectors = o.save_vectors || keep_vectors || (mc_fisher && (o.top > 0 || o.bottom > 0));
    if (mc_fisher && !o.exact) so.trace_probes = 0;  // replaced below
    CurvatureOperator op(objective, kind, params);
    ObservedOperator observed(op, progress, label);
    analyze_spectrum(observed, so, seed, sec);
    products += op.num_products();
    if (mc_fisher) {
      std::int64_t extra = 0;
      if (sec.eigen) extra += fisher_eigen_errors(objective, params, *sec.eigen);
      if (o.trace_probes > 0 && !o.exact) {
        FisherSampledTraceOptions fo;
        fo.probes = o.trace_probes;
        fo.seed = seed + 1;
        FisherSampledTrace t(objective, params, fo);
        t.compute();
        sec.trace = trace_record(t, objective.fisher_samples());
        extra += t.num_operations();
      } else if (sec.trace) {
        sec.trace->attributes["label_sampling"] = std::string("the exact trace of one draw (seed): no label error");
      }
      const std::string one_draw = "one label draw (seed): the label sampling is not in stderr";
      if (sec.diag) sec.diag->attributes["label_sampling"] = one_draw;
      if (sec.density) sec.density->attributes["label_sampling"] = one_draw;
      sec.attributes["estimate"] = std::string("monte_carlo_fisher");
      products += extra;
    }
    if (progress) progress(label, observed.num_products(), true);
  };
  auto drop_vectors = [&](StoreSection& sec) {
    if (sec.eigen && !o.save_vectors) {
      sec.eigen->vectors.resize(0, 0);
      sec.eigen->bottom_vectors.resize(0, 0);
    }
  };
  if (whole_model && o.gradient) {
    // The gradient's share of the top eigenspace needs the eigenvectors, stored or not.
    Eigen::VectorXd g;
    objective.gradient(g);
    one({}, "all", run.model, o.top > 0);
    run.model.gradient = gradient_record(g, run.model.eigen ? &*run.model.eigen : nullptr, o.save_vectors);
    drop_vectors(run.model);
  } else if (whole_model) {
    one({}, "all", run.model, false);
    drop_vectors(run.model);
  }
  for (const auto& b : blocks) {
    StoreSection& sec = run.add_block(b.name);
    sec.attributes["params"] = std::int64_t(b.size);
    one(b.params, b.name, sec, false);
    drop_vectors(sec);
  }
  return products;
}

}  // namespace curv
