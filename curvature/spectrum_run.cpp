// The `spectrum` and `eval` run kinds of curv study: what `curv spectrum` and `curv eval` do, with
// the same settings (named after their options) and the same stored results.
#include <stdexcept>

#include "curvature/run_kind.h"
#include "curvature/spectra_store.h"
#include "curvature/spectrum_analysis.h"
#include "curvature/summary_json.h"
#include "src/core/timer.h"
#include "src/io/hdf5.h"
#include "src/io/sha256.h"

namespace curv {

namespace {

using nlohmann::json;

constexpr double kMaxEigenpairs = 100000, kMaxProbes = 100000, kMaxSteps = 100000, kMaxBlock = 4096;

SpectrumOptions spectrum_options(const json& s) {
  SpectrumOptions a;
  a.top = s.at("top_k").get<std::int64_t>();
  a.bottom = s.at("bottom_k").get<std::int64_t>();
  a.eig_method = s.at("eig_method").get<std::string>() == "power" ? EigenMethod::Power : EigenMethod::Lanczos;
  a.eig_tol = s.at("eig_tol").get<double>();
  a.eig_max_restarts = s.at("eig_max_restarts").get<std::int64_t>();
  a.ncv = s.at("ncv").get<std::int64_t>();
  a.save_vectors = s.at("save_vectors").get<bool>();
  a.trace_probes = s.at("trace_probes").get<std::int64_t>();
  a.trace_tol = s.at("trace_tol").get<double>();
  a.trace_method = s.at("trace_method").get<std::string>() == "hutchpp" ? TraceMethod::HutchPlusPlus
                                                                         : TraceMethod::Hutchinson;
  a.probe_batch = s.at("probe_batch").get<std::int64_t>();
  a.diag = s.at("diag").get<bool>();
  a.diag_probes = s.at("diag_probes").get<std::int64_t>();
  a.density = s.at("density").get<bool>();
  a.slq_steps = s.at("slq_steps").get<std::int64_t>();
  a.slq_probes = s.at("slq_probes").get<std::int64_t>();
  a.exact = s.at("exact").get<bool>();
  a.gradient = s.at("gradient").get<bool>();
  return a;
}

// The analyzed operators: blocks from `blocks`, and whether the whole model is one of them.
std::vector<ParamBlock> run_blocks(const Model& m, const json& s) {
  std::vector<ParamBlock> blocks;
  try {
    blocks = select_blocks(m, s.at("blocks").get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("blocks: " + std::string(e.what()));
  }
  if (s.at("skip_full").get<bool>() && blocks.empty())
    throw std::invalid_argument("skip_full needs blocks layers|tensors|NAME,...");
  return blocks;
}

// The model's file (or arch) as `curv spectrum` records it.
void input_attributes(const PlannedRun& run, InputCache& inputs, const Dataset& d, AttributeMap& a) {
  const json& s = run.settings;
  const std::string arch = s.at("arch").get<std::string>();
  a["model"] = arch.empty() ? s.at("model").get<std::string>() : "arch:" + arch;
  if (arch.empty()) a["model_sha256"] = sha256_file(inputs.resolve(s.at("model").get<std::string>()));
  a["dataset"] = s.at("data").get<std::string>();
  a["samples"] = std::int64_t(d.size());
  a["offset"] = s.at("offset").get<std::int64_t>() + s.at("batch_index").get<std::int64_t>() * s.at("samples").get<std::int64_t>();
  a["seed"] = std::int64_t(s.at("seed").get<std::uint64_t>());
  a["precision"] = s.at("precision").get<std::string>();
  a["micro_batch"] = s.at("micro_batch").get<std::int64_t>();
}

class SpectrumKind final : public RunKind {
 public:
  std::string name() const override { return "spectrum"; }
  std::string description() const override {
    return "Eigenpairs, trace, diagonal and spectral density of the curvature (curv spectrum)";
  }
  const SettingTable& settings() const override {
    static const SettingTable t = {
        choice_setting("curvature", "hessian", {"hessian", "ggn", "ef"}, "Operator"),
        string_setting("blocks", "all", "Per-block results: all (whole model only), layers, tensors, or NAME,..."),
        bool_setting("skip_full", false, "Only the per-block results, not the whole model"),
        int_setting("top_k", 1, 0, kMaxEigenpairs, "Largest algebraic eigenpairs"),
        int_setting("bottom_k", 0, 0, kMaxEigenpairs, "Smallest algebraic eigenpairs"),
        choice_setting("eig_method", "lanczos", {"lanczos", "power"}, "lanczos (Spectra) or power (PyHessian's)"),
        number_setting("eig_tol", 1e-6, 1e-15, 0.5, "Relative residual tolerance of the eigensolver"),
        int_setting("eig_max_restarts", 300, 1, 100000, "Lanczos restarts per run before it stops"),
        int_setting("ncv", 0, 0, kMaxEigenpairs, "Lanczos subspace size (0: automatic)"),
        bool_setting("save_vectors", false, "Store eigenvectors (and the gradient, with gradient)"),
        int_setting("trace_probes", 0, 0, kMaxProbes, "Trace probes (0: no trace)"),
        number_setting("trace_tol", 0.0, 0, 1, "Stop the trace when stderr/|estimate| falls below this"),
        choice_setting("trace_method", "hutchinson", {"hutchinson", "hutchpp"}, "hutchinson or hutchpp"),
        int_setting("probe_batch", 8, 1, kMaxBlock, "Probes per block product"),
        bool_setting("diag", false, "Hutchinson estimate of the diagonal"),
        int_setting("diag_probes", 50, 1, kMaxProbes, "Probes of the diagonal"),
        bool_setting("density", false, "Stochastic Lanczos quadrature spectral density"),
        int_setting("slq_steps", 100, 1, kMaxSteps, "Lanczos steps per SLQ probe"),
        int_setting("slq_probes", 4, 1, kMaxProbes, "SLQ probes"),
        bool_setting("exact", false, "Dense matrix and full eigendecomposition (P <= 5000)"),
        bool_setting("gradient", false, "The loss gradient's norm and its share in the top eigenvectors' span"),
    };
    return t;
  }

  void check(const PlannedRun& run, InputCache& inputs) const override {
    const json& s = run.settings;
    const Dataset& d = inputs.data(s);
    const Model& m = inputs.model(s);
    Objective::create(m, d, InputCache::objective_options(s));  // model/data fit
    const SpectrumOptions a = spectrum_options(s);
    const std::vector<ParamBlock> blocks = run_blocks(m, s);
    if (!s.at("skip_full").get<bool>()) check_spectrum_request(a, m.num_params(), "the model");
    for (const auto& b : blocks) check_spectrum_request(a, b.size, "block '" + b.name + "'");
  }

  std::int64_t estimate_products(const PlannedRun& run, InputCache& inputs) const override {
    const json& s = run.settings;
    const SpectrumOptions a = spectrum_options(s);
    const Model& m = inputs.model(s);
    const std::int64_t ops = (s.at("skip_full").get<bool>() ? 0 : 1) + std::int64_t(run_blocks(m, s).size());
    // Lanczos: about 3 Krylov sizes per converged run (restarts), each of max(2k + 1, k + 7).
    auto eig = [](std::int64_t k, std::int64_t floor) { return k > 0 ? 3 * std::max(2 * k + 1, k + floor) + k : 0; };
    std::int64_t per = a.exact ? m.num_params() : eig(a.top, 7) + eig(a.bottom, 20) + a.trace_probes +
                                                     (a.diag ? a.diag_probes : 0);
    if (a.density) per += a.slq_steps * a.slq_probes;
    return ops * per;
  }

  RunResult execute(const PlannedRun& run, InputCache& inputs, const RunProgress& progress) const override {
    const json& s = run.settings;
    Timer timer;
    const Dataset& d = inputs.data(s);
    const Model& m = inputs.model(s);
    auto obj = Objective::create(m, d, InputCache::objective_options(s));
    const SpectrumOptions a = spectrum_options(s);
    const std::vector<ParamBlock> blocks = run_blocks(m, s);
    const bool whole = !s.at("skip_full").get<bool>();
    auto store = std::make_shared<StoreRun>();
    AttributeMap& at = store->attributes;
    input_attributes(run, inputs, d, at);
    at["curvature"] = s.at("curvature").get<std::string>();
    at["block"] = std::string(whole ? "all" : "none");
    at["blocks"] = s.at("blocks").get<std::string>();
    at["loss"] = obj->value();
    std::int64_t before = 0;
    SpectrumProgress observer;
    if (progress)
      observer = [&](const std::string&, std::int64_t products, bool done) {
        if (done) before += products;
        else progress(before + products);
      };
    const std::int64_t products = analyze_model_spectrum(*obj, parse_curvature(s.at("curvature").get<std::string>()),
                                                         whole, blocks, a, s.at("seed").get<std::uint64_t>(), *store,
                                                         observer);
    at["hvps"] = products;
    at["seconds"] = timer.seconds();
    RunResult r;
    r.products = products;
    const json full = summary_json(*store);
    r.summary["loss"] = std::get<double>(at["loss"]);
    if (full.contains("eigen")) {
      if (!full["eigen"]["top"].empty()) r.summary["lambda_max"] = full["eigen"]["top"][0];
      if (!full["eigen"]["bottom"].empty()) r.summary["lambda_min"] = full["eigen"]["bottom"][0];
      r.summary["converged"] = full["eigen"]["converged"];
    }
    if (full.contains("trace")) {
      r.summary["trace"] = full["trace"]["estimate"];
      r.summary["trace_stderr"] = full["trace"]["stderr"];
    }
    if (full.contains("gradient")) r.summary["grad_norm"] = full["gradient"]["norm"];
    r.write = [store](const h5::Object& group) { write_run(group, *store); };
    return r;
  }
};

class EvalKind final : public RunKind {
 public:
  std::string name() const override { return "eval"; }
  std::string description() const override { return "Loss and accuracy (curv eval)"; }
  const SettingTable& settings() const override {
    static const SettingTable t;
    return t;
  }
  void check(const PlannedRun& run, InputCache& inputs) const override {
    Objective::create(inputs.model(run.settings), inputs.data(run.settings),
                      InputCache::objective_options(run.settings));
  }
  std::int64_t estimate_products(const PlannedRun&, InputCache&) const override { return 0; }
  RunResult execute(const PlannedRun& run, InputCache& inputs, const RunProgress&) const override {
    Timer timer;
    const Dataset& d = inputs.data(run.settings);
    auto obj = Objective::create(inputs.model(run.settings), d, InputCache::objective_options(run.settings));
    const EvalResult e = obj->evaluate();
    RunResult r;
    input_attributes(run, inputs, d, r.attributes);
    r.attributes["loss"] = e.loss;
    r.attributes["accuracy"] = e.accuracy;
    r.attributes["seconds"] = timer.seconds();
    r.summary = {{"loss", e.loss}, {"accuracy", std::isnan(e.accuracy) ? json(nullptr) : json(e.accuracy)}};
    r.write = [e](const h5::Object& g) {
      g.write_dataset("loss", std::span<const double>(&e.loss, 1), {});
      g.write_dataset("accuracy", std::span<const double>(&e.accuracy, 1), {});
    };
    return r;
  }
};

}  // namespace

const RunKind& spectrum_run_kind() {
  static const SpectrumKind k;
  return k;
}

const RunKind& eval_run_kind() {
  static const EvalKind k;
  return k;
}

}  // namespace curv
