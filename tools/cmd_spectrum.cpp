// curv spectrum: eigenpairs, trace, diagonal and spectral density of a model's curvature, per
// block, stored in HDF5 (docs/hdf5-schema.md) with a JSON summary.
#include <csignal>
#include <cstring>
#include <iostream>
#include <set>
#include <sstream>
#include <unistd.h>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutch_plus_plus.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/power_iteration.h"
#include "curvature/slq_density.h"
#include "curvature/spectra_store.h"
#include "curvature/summary_json.h"
#include "src/io/sha256.h"
#include "src/core/timer.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct SpectrumOptions {
  RunOptions run;
  std::string curvature = "hessian";
  std::string blocks = "all";
  bool skip_full = false;
  std::int64_t top_k = 1, bottom_k = 0, ncv = 0;
  std::string eig_method = "lanczos";
  double eig_tol = 1e-6;
  bool save_vectors = false;
  std::int64_t trace_probes = 0;
  double trace_tol = 0.0;
  std::string trace_method = "hutchinson";
  std::int64_t batch = 8;
  bool diag = false;
  std::int64_t diag_probes = 50;
  bool density = false;
  std::int64_t slq_steps = 100, slq_probes = 4;
  bool exact = false;
  std::string out, run_name = "spectrum";
};

// Reports progress as products accumulate (estimators do not know their totals up front).
class ProgressOperator final : public LinearOperator {
 public:
  ProgressOperator(const LinearOperator& op, Progress& p) : m_op(op), m_p(p) {}
  Index rows() const override { return m_op.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    m_op.apply(X, Y);
    m_p.update(num_products(), "products");
  }

 private:
  const LinearOperator& m_op;
  Progress& m_p;
};

// The temporary HDF5 file of the running command, removed if the process is interrupted.
char g_temp_path[4096] = {0};
extern "C" void on_signal(int sig) {
  if (g_temp_path[0]) unlink(g_temp_path);
  _exit(128 + sig);
}

// Runs every requested estimator on one operator into `sec`.
void analyze(const SpectrumOptions& o, const LinearOperator& op, StoreSection& sec, std::uint64_t seed,
             const std::string& label) {
  Progress prog("spectrum " + label, 0);
  ProgressOperator A(op, prog);
  const auto P = op.rows();
  if (o.exact) {
    ExactSpectrumOptions eo;
    eo.compute_vectors = o.save_vectors || o.top_k > 0 || o.bottom_k > 0;
    ExactSpectrum ex(A, eo);
    ex.compute();
    sec.eigen = eigen_record(ex, std::min<Eigen::Index>(o.top_k, P), std::min<Eigen::Index>(o.bottom_k, P), o.save_vectors);
    sec.trace = trace_record(ex);
    if (o.diag) sec.diag = diag_record(ex);
  } else {
    if (o.top_k > 0 || o.bottom_k > 0) {
      if (o.eig_method == "power") {
        if (o.bottom_k > 0) throw std::invalid_argument("--eig-method power finds top eigenvalues only (no --bottom-k)");
        PowerIterationOptions po;
        po.top = o.top_k;
        po.tol = o.eig_tol;
        po.seed = seed;
        PowerIteration pi(A, po);
        pi.compute();
        sec.eigen = eigen_record(pi, o.save_vectors);
      } else {
        EigenSolverOptions eo;
        eo.top = std::min<Eigen::Index>(o.top_k, std::max<Eigen::Index>(P - 1, 0));
        eo.bottom = std::min<Eigen::Index>(o.bottom_k, std::max<Eigen::Index>(P - 1, 0));
        eo.ncv = o.ncv;
        eo.tol = o.eig_tol;
        eo.seed = seed;
        EigenSolver es(A, eo);
        es.compute();
        sec.eigen = eigen_record(es, o.save_vectors);
      }
    }
    if (o.trace_probes > 0) {
      if (o.trace_method == "hutchpp") {
        HutchPlusPlusOptions ho;
        ho.probes = o.trace_probes;
        ho.batch = o.batch;
        ho.seed = seed + 1;
        HutchPlusPlus h(A, ho);
        h.compute();
        sec.trace = trace_record(h);
      } else {
        HutchinsonTraceOptions ho;
        ho.probes = o.trace_probes;
        ho.batch = o.batch;
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
      d.batch = o.batch;
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
  prog.finish(std::to_string(A.num_products()) + " products");
}

}  // namespace

void register_spectrum(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<SpectrumOptions>();
  auto* app = root.add_subcommand("spectrum", "Eigenpairs, trace, diagonal and spectral density of the curvature");
  add_run_options(*app, o->run, true);
  app->add_option("--curvature", o->curvature, "Operator")->check(CLI::IsMember({"hessian", "ggn", "ef"}))->capture_default_str();
  app->add_option("--blocks", o->blocks, "Per-block results: all (whole model only), layers, tensors, or NAME,... (layers or tensors)")
      ->capture_default_str();
  app->add_flag("--skip-full", o->skip_full, "Only the per-block results, not the whole model");
  app->add_option("--top-k", o->top_k, "Largest algebraic eigenpairs")->check(CLI::NonNegativeNumber)->capture_default_str();
  app->add_option("--bottom-k", o->bottom_k, "Smallest algebraic eigenpairs")->check(CLI::NonNegativeNumber)->capture_default_str();
  app->add_option("--eig-method", o->eig_method, "lanczos (Spectra) or power (PyHessian's power iteration)")
      ->check(CLI::IsMember({"lanczos", "power"}))->capture_default_str();
  app->add_option("--eig-tol", o->eig_tol, "Relative tolerance of the eigensolver")->capture_default_str();
  app->add_option("--ncv", o->ncv, "Lanczos subspace size (0: automatic)");
  app->add_flag("--save-vectors", o->save_vectors, "Store eigenvectors in the HDF5 file");
  app->add_option("--trace-probes", o->trace_probes, "Trace probes (0: no trace)")->check(CLI::NonNegativeNumber);
  app->add_option("--trace-tol", o->trace_tol, "Stop the trace when stderr/|estimate| falls below this");
  app->add_option("--trace-method", o->trace_method, "hutchinson or hutchpp")->check(CLI::IsMember({"hutchinson", "hutchpp"}))->capture_default_str();
  app->add_option("--probe-batch", o->batch, "Probes per block product")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_flag("--diag", o->diag, "Hutchinson estimate of the diagonal");
  app->add_option("--diag-probes", o->diag_probes, "Probes for --diag")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_flag("--density", o->density, "Stochastic Lanczos quadrature spectral density");
  app->add_option("--slq-steps", o->slq_steps, "Lanczos steps per SLQ probe")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--slq-probes", o->slq_probes, "SLQ probes (advanced in lockstep)")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_flag("--exact", o->exact, "Dense matrix and full eigendecomposition (P <= 5000), to validate estimators");
  app->add_option("--out", o->out, "Output HDF5 file")->required();
  app->add_option("--run", o->run_name, "Run group name in the file")->capture_default_str();
  const std::string cmd = command_line(argc, argv);
  app->callback([o, cmd] {
    auto tc = limit_threads(o->run.threads);
    Timer timer;
    Dataset d = load_data(o->run);
    Model m = load_model(o->run, &d);
    auto obj = Objective::create(m, d, objective_options(o->run));
    const Curvature kind = parse_curvature(o->curvature);

    // Which blocks.
    std::vector<ParamBlock> blocks;
    if (o->blocks == "layers" || o->blocks == "tensors") {
      blocks = m.blocks(o->blocks);
    } else if (o->blocks != "all") {
      std::stringstream ss(o->blocks);
      std::string name;
      auto layers = m.blocks("layers"), tensors = m.blocks("tensors");
      while (std::getline(ss, name, ',')) {
        bool found = false;
        for (const auto* set : {&layers, &tensors})
          for (const auto& b : *set)
            if (!found && b.name == name) blocks.push_back(b), found = true;
        if (!found) throw std::invalid_argument("--blocks: no layer or parameter named '" + name + "' in the model");
      }
    }
    if (o->skip_full && blocks.empty()) throw std::invalid_argument("--skip-full needs --blocks layers|tensors|NAME,...");
    if (o->exact && !o->skip_full && m.num_params() > 5000)
      throw std::invalid_argument("--exact needs at most 5000 parameters, the model has " + std::to_string(m.num_params()) +
                                  " (use --blocks with --skip-full)");

    SpectraStore store(o->out, cmd);
    std::snprintf(g_temp_path, sizeof g_temp_path, "%s", store.temp_path().c_str());
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    StoreRun& run = store.add_run(o->run_name);
    run.attributes["model"] = o->run.arch.empty() ? o->run.model : "arch:" + o->run.arch;
    if (o->run.arch.empty()) run.attributes["model_sha256"] = sha256_file(o->run.model);
    run.attributes["dataset"] = o->run.data;
    run.attributes["samples"] = std::int64_t(d.size());
    run.attributes["curvature"] = o->curvature;
    run.attributes["block"] = std::string(o->skip_full ? "none" : "all");
    run.attributes["blocks"] = o->blocks;
    run.attributes["seed"] = std::int64_t(o->run.seed);
    run.attributes["precision"] = o->run.precision;
    run.attributes["micro_batch"] = std::int64_t(obj->micro_batch());
    run.attributes["loss"] = obj->value();

    std::int64_t products = 0;
    if (!o->skip_full) {
      CurvatureOperator op(*obj, kind);
      analyze(*o, op, run.model, o->run.seed, "all");
      products += op.num_products();
    }
    for (const auto& b : blocks) {
      CurvatureOperator op(*obj, kind, b.params);
      StoreSection& sec = run.add_block(b.name);
      sec.attributes["params"] = std::int64_t(b.size);
      if (o->exact && b.size > 5000)
        throw std::invalid_argument("--exact: block '" + b.name + "' has " + std::to_string(b.size) + " parameters (max 5000)");
      analyze(*o, op, sec, o->run.seed, b.name);
      products += op.num_products();
    }
    const double seconds = timer.seconds();
    run.attributes["hvps"] = products;
    run.attributes["seconds"] = seconds;
    store.commit();
    g_temp_path[0] = 0;

    nlohmann::json j = summary_json(run);
    j["hvps"] = products;
    j["seconds"] = seconds;
    j["samples"] = d.size();
    j["params"] = m.num_params();
    j["curvature"] = o->curvature;
    j["out"] = o->out;
    if (o->run.json) return emit_json(o->run, j);
    std::cerr << "spectrum: " << products << " products in " << seconds << " s -> " << o->out << "\n";
    std::cout << j.dump(2) << std::endl;
  });
}

}  // namespace curv::cli
