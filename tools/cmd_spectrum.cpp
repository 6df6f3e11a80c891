// curv spectrum: eigenpairs, trace, diagonal and spectral density of a model's curvature, per
// block, stored in HDF5 (docs/hdf5-schema.md) with a JSON summary. The analysis itself is
// curvature/spectrum_analysis.h.
#include <iostream>
#include <map>

#include "curvature/kfac_spectrum.h"
#include "curvature/spectra_store.h"
#include "curvature/spectrum_analysis.h"
#include "curvature/summary_json.h"
#include "src/io/atomic_file.h"
#include "src/io/data_io.h"
#include "src/core/timer.h"
#include "src/io/sha256.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct SpectrumCli {
  RunOptions run;
  SpectrumOptions analysis;
  std::string curvature = "hessian";
  std::int64_t fisher_samples = 1;
  std::string kfac_type = "exact", compare;
  std::int64_t kfac_samples = 1, compare_probes = 20;
  std::string blocks = "all";
  bool skip_full = false;
  std::string eig_method = "lanczos", trace_method = "hutchinson";
  std::string out, run_name = "spectrum";
};

}  // namespace

void register_spectrum(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<SpectrumCli>();
  SpectrumOptions& a = o->analysis;
  auto* app = root.add_subcommand("spectrum", "Eigenpairs, trace, diagonal and spectral density of the curvature");
  add_run_options(*app, o->run, true);
  app->add_option("--curvature", o->curvature,
                  std::string(kCurvatureHelp) + "; kfac: K-FAC, its spectrum exact from the factors, per layer")
      ->check(CLI::IsMember({"hessian", "ggn", "fisher", "ef", "kfac"}))
      ->capture_default_str();
  app->add_option("--kfac-type", o->kfac_type, "K-FAC's loss curvature: exact, mc (sampled labels) or empirical")
      ->check(CLI::IsMember({"exact", "mc", "empirical"}))
      ->capture_default_str();
  app->add_option("--kfac-samples", o->kfac_samples, "--kfac-type mc: labels sampled per input")
      ->check(in_range(1, kMaxFisherSamples))
      ->capture_default_str();
  app->add_option("--compare", o->compare, "--curvature kfac: compare each layer with the exact GGN block (ggn)")
      ->check(CLI::IsMember({"ggn"}));
  app->add_option("--compare-probes", o->compare_probes, "--compare: Rademacher probes of the trace and Frobenius error")
      ->check(in_range(1, kMaxProbes))
      ->capture_default_str();
  app->add_option("--fisher-samples", o->fisher_samples,
                  std::string(kFisherSamplesHelp) +
                      ". The sampled Fisher's figures are estimates: the trace is Hutchinson with fresh labels per "
                      "probe (its stderr covers probes and labels; label_stderr the labels alone), eigenvalues are "
                      "of one draw with their label stderr and the eigenvectors' Rayleigh quotients on an "
                      "independent draw (heldout: for the top pair a lower, the draw's value an upper estimate of "
                      "the true Fisher's)")
      ->check(in_range(0, kMaxFisherSamples))
      ->capture_default_str();
  app->add_option("--blocks", o->blocks, "Per-block results: all (whole model only), layers, tensors, or NAME,... (layers or tensors)")
      ->capture_default_str();
  app->add_flag("--skip-full", o->skip_full, "Only the per-block results, not the whole model");
  app->add_option("--top-k", a.top, "Largest algebraic eigenpairs")->check(in_range(0, kMaxEigenpairs))->capture_default_str();
  app->add_option("--bottom-k", a.bottom, "Smallest algebraic eigenpairs")->check(in_range(0, kMaxEigenpairs))->capture_default_str();
  app->add_option("--eig-method", o->eig_method, "lanczos (Spectra) or power (PyHessian's power iteration)")
      ->check(CLI::IsMember({"lanczos", "power"}))->capture_default_str();
  app->add_option("--eig-tol", a.eig_tol, "Relative residual tolerance of the eigensolver (bottom pairs: relative to the largest |eigenvalue|)")
      ->check(in_range(kMinTol, kMaxTol))->capture_default_str();
  app->add_option("--eig-max-restarts", a.eig_max_restarts,
                  "Lanczos restarts per run before it stops and reports its best pairs as not converged")
      ->check(in_range(1, 100000))->capture_default_str();
  app->add_option("--ncv", a.ncv, "Lanczos subspace size (0: automatic)")->check(in_range(0, kMaxEigenpairs));
  app->add_flag("--save-vectors", a.save_vectors, "Store eigenvectors in the HDF5 file");
  app->add_option("--trace-probes", a.trace_probes, "Trace probes (0: no trace)")->check(in_range(0, kMaxProbes));
  app->add_option("--trace-tol", a.trace_tol, "Stop the trace when stderr/|estimate| falls below this")->check(in_range(0, 1));
  app->add_option("--trace-method", o->trace_method, "hutchinson or hutchpp")->check(CLI::IsMember({"hutchinson", "hutchpp"}))->capture_default_str();
  app->add_option("--probe-batch", a.probe_batch, "Probes per block product")->check(in_range(1, kMaxBlock))->capture_default_str();
  app->add_flag("--diag", a.diag, "Hutchinson estimate of the diagonal");
  app->add_option("--diag-probes", a.diag_probes, "Probes for --diag")->check(in_range(1, kMaxProbes))->capture_default_str();
  app->add_flag("--density", a.density, "Stochastic Lanczos quadrature spectral density");
  app->add_option("--slq-steps", a.slq_steps, "Lanczos steps per SLQ probe")->check(in_range(1, kMaxSteps))->capture_default_str();
  app->add_option("--slq-probes", a.slq_probes, "SLQ probes (advanced in lockstep)")->check(in_range(1, kMaxProbes))->capture_default_str();
  app->add_flag("--gradient", a.gradient,
                "Store the loss gradient's norm, its share in the top eigenvectors' span (and the gradient with --save-vectors)");
  app->add_flag("--exact", a.exact, "Dense matrix and full eigendecomposition (P <= 5000), to validate estimators");
  app->add_option("--out", o->out, "Output HDF5 file")->required();
  app->add_option("--run", o->run_name, "Run group name in the file")->capture_default_str();
  const std::string cmd = command_line(argc, argv);
  app->callback([o, cmd] {
    std::vector<std::string> inputs = dataset_files(o->run.data);
    inputs.push_back(o->run.model);
    check_output_paths({o->out}, inputs);
    auto tc = limit_threads(o->run.threads);
    Timer timer;
    SpectrumOptions& a = o->analysis;
    a.eig_method = o->eig_method == "power" ? EigenMethod::Power : EigenMethod::Lanczos;
    a.trace_method = o->trace_method == "hutchpp" ? TraceMethod::HutchPlusPlus : TraceMethod::Hutchinson;
    Dataset d = load_data(o->run);
    Model m = load_model(o->run, &d);
    ObjectiveOptions oo = objective_options(o->run);
    oo.fisher_samples = o->fisher_samples;
    oo.fisher_seed = o->run.seed;
    auto obj = Objective::create(m, d, oo);
    const bool kfac_kind = o->curvature == "kfac";
    if (!o->compare.empty() && !kfac_kind) throw std::invalid_argument("--compare needs --curvature kfac");
    if (kfac_kind && o->blocks != "all")
      throw std::invalid_argument("--blocks does not apply to --curvature kfac, which reports every K-FAC layer");
    const Curvature kind = kfac_kind ? Curvature::GGN : parse_curvature(o->curvature);
    std::vector<ParamBlock> blocks;
    try {
      blocks = select_blocks(m, o->blocks);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("--blocks: " + std::string(e.what()));
    }
    if (o->skip_full && blocks.empty() && !kfac_kind) throw std::invalid_argument("--skip-full needs --blocks layers|tensors|NAME,...");
    // Every request against every operator before the first product (and before the file).
    if (!kfac_kind) {
      if (!o->skip_full) check_spectrum_request(a, m.num_params(), "the model");
      for (const auto& b : blocks) check_spectrum_request(a, b.size, "block '" + b.name + "'");
    }
    std::unique_ptr<Kfac> kfac;
    if (kfac_kind) {
      KfacOptions ko;
      ko.type = parse_kfac_type(o->kfac_type);
      ko.mc_samples = o->kfac_samples;
      ko.seed = o->run.seed;
      kfac = std::make_unique<Kfac>(*obj, ko);
      if (!o->skip_full && !kfac->unsupported().empty()) {
        const auto& u = kfac->unsupported().front();
        throw std::invalid_argument("K-FAC does not cover parameter '" + m.params()[u.param].name + "': " + u.reason +
                                    " (--skip-full reports the K-FAC layers alone)");
      }
    }

    SpectraStore store(o->out, cmd, SpectraStore::Mode::Create, inputs);
    StoreRun& run = store.add_run(o->run_name);
    run.attributes["model"] = o->run.arch.empty() ? o->run.model : "arch:" + o->run.arch;
    if (o->run.arch.empty()) run.attributes["model_sha256"] = sha256_file(o->run.model);
    run.attributes["dataset"] = o->run.data;
    run.attributes["samples"] = std::int64_t(d.size());
    run.attributes["curvature"] = o->curvature;
    if (kind == Curvature::Fisher && !kfac_kind) run.attributes["fisher_samples"] = o->fisher_samples;
    if (kfac_kind) run.attributes["kfac_type"] = o->kfac_type;
    run.attributes["block"] = std::string(o->skip_full ? "none" : "all");
    run.attributes["blocks"] = o->blocks;
    run.attributes["seed"] = std::int64_t(o->run.seed);
    run.attributes["precision"] = o->run.precision;
    run.attributes["micro_batch"] = std::int64_t(obj->micro_batch());
    run.attributes["loss"] = obj->value();

    std::map<std::string, std::unique_ptr<Progress>> bars;
    auto progress = [&](const std::string& label, std::int64_t products, bool done) {
      auto& bar = bars[label];
      if (!bar) bar = std::make_unique<Progress>("spectrum " + label, 0);
      if (done)
        bar->finish(std::to_string(products) + " products");
      else
        bar->update(products, "products");
    };
    const std::int64_t products =
        kfac_kind ? analyze_kfac_spectrum(*obj, *kfac, a, !o->skip_full, !o->compare.empty(), o->compare_probes,
                                          o->run.seed, run)
                  : analyze_model_spectrum(*obj, kind, !o->skip_full, blocks, a, o->run.seed, run, progress);
    const double seconds = timer.seconds();
    run.attributes["hvps"] = products;
    run.attributes["seconds"] = seconds;
    store.commit();

    nlohmann::json j = summary_json(run);
    j["hvps"] = products;
    j["seconds"] = seconds;
    j["samples"] = d.size();
    j["params"] = m.num_params();
    j["curvature"] = o->curvature;
    if (kind == Curvature::Fisher && !kfac_kind) {
      j["fisher_samples"] = o->fisher_samples;
      if (o->fisher_samples > 0) j["estimate"] = "monte_carlo_fisher";  // every figure carries its label error
    }
    if (kfac_kind) {
      j["kfac_type"] = o->kfac_type;
      if (!o->skip_full) j["exact"] = true;
    }
    j["out"] = o->out;
    if (o->run.json) return emit_json(o->run, j);
    std::cerr << "spectrum: " << products << " products in " << seconds << " s -> " << o->out
              << (j.contains("estimate") ? " (sampled Fisher: estimates of the true Fisher, label sampling in their stderr)" : "")
              << "\n";
    std::cout << j.dump(2) << std::endl;
  });
}

}  // namespace curv::cli
