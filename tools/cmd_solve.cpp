// curv solve: (C + lambda I) x = b for a model's curvature, with CG, PCG, block-diagonal CG, the
// K-FAC inverse or the Woodbury (M-FAC) inverse; the solution and residual history to HDF5
// (curvature/solve_store.h), a JSON summary, optional influence scores. The solve itself is
// curvature/damped_solve.h.
#include <algorithm>
#include <cmath>
#include <iostream>

#include "curvature/damped_solve.h"
#include "curvature/solve_store.h"
#include "src/core/timer.h"
#include "src/io/atomic_file.h"
#include "src/io/data_io.h"
#include "src/io/sha256.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct SolveCli {
  RunOptions run;
  DampedSolveOptions solve;
  std::string method = "cg", rhs = "gradient", kfac_type = "exact";
  std::int64_t fisher_samples = 1;
  std::string out, preconditioner, block_products = "auto";
  double gram_gb = 4;
};

}  // namespace

void register_solve(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<SolveCli>();
  DampedSolveOptions& s = o->solve;
  auto* app = root.add_subcommand("solve", "Damped curvature solve (C + lambda I) x = b (Newton step, influence)");
  add_run_options(*app, o->run, true);
  app->add_option("--curvature", s.curvature, std::string(kCurvatureHelp) + "; kfac: K-FAC (--kfac-type)")
      ->check(CLI::IsMember({"hessian", "ggn", "fisher", "ef", "kfac"}))
      ->capture_default_str();
  app->add_option("--fisher-samples", o->fisher_samples, kFisherSamplesHelp)->check(in_range(0, kMaxFisherSamples))->capture_default_str();
  app->add_option("--damping", s.damping, "lambda (> 0 for the Hessian and the kfac and woodbury methods)")
      ->check(in_range(0, 1e300))
      ->required();
  app->add_option("--method", o->method, "cg | pcg (preconditioned) | block-cg (one CG per layer) | kfac (K-FAC inverse) | woodbury (M-FAC window)")
      ->check(CLI::IsMember({"cg", "pcg", "block-cg", "kfac", "woodbury"}))
      ->capture_default_str();
  app->add_option("--preconditioner", o->preconditioner, "pcg: kfac (default) or jacobi; block-cg: none (default), kfac or jacobi")
      ->check(CLI::IsMember({"kfac", "jacobi", "none"}));
  app->add_option("--rhs", o->rhs, "b: gradient (the loss gradient: x is minus the damped Newton step), FILE.h5 (dataset /rhs), or data:DATA2 (the loss gradient on DATA2, as influence functions use)")
      ->capture_default_str();
  app->add_option("--rtol", s.rtol, "CG stops at ||r|| <= rtol ||b||")->check(in_range(kMinTol, kMaxTol))->capture_default_str();
  app->add_option("--max-iters", s.max_iters, "CG iterations before it reports not converged")->check(in_range(1, 1e7))->capture_default_str();
  app->add_option("--kfac-type", o->kfac_type, "K-FAC's loss curvature: exact, mc (sampled labels) or empirical")
      ->check(CLI::IsMember({"exact", "mc", "empirical"}))
      ->capture_default_str();
  app->add_option("--kfac-samples", s.kfac.mc_samples, "--kfac-type mc: labels sampled per input")->check(in_range(1, kMaxFisherSamples))->capture_default_str();
  app->add_option("--diag-probes", s.diag_probes, "Jacobi: Hutchinson probes of the diagonal")->check(in_range(1, kMaxProbes))->capture_default_str();
  app->add_option("--window", s.window, "woodbury: per-sample gradients of the first m samples")->check(in_range(1, 1e6))->capture_default_str();
  app->add_flag("--restricted-blocks", s.restricted_blocks,
                "block-cg on hessian|ggn|fisher|ef: each layer's products on its own parameters (forward tangent from "
                "the layer on, reverse tangent back to it) instead of one pass with one column per active layer; same "
                "blocks, different rounding, cheaper on deep models");
  app->add_option("--block-products", o->block_products,
                  "block-cg: how each layer's product is formed: gram (exact, from per-sample factors stored by one "
                  "sweep of C reverse passes; ggn, fisher, ef on linear/conv layers; no model pass per iteration), "
                  "restricted (as --restricted-blocks), pass (one pass with one column per layer), auto (gram where it "
                  "applies and fits --gram-gb, restricted for the rest)")
      ->check(CLI::IsMember({"auto", "gram", "restricted", "pass"}))
      ->capture_default_str();
  app->add_option("--gram-gb", o->gram_gb, "block-cg: cap on the gram products' store (GB; 0: none)")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app->add_flag("--influence", s.influence, "Per-sample influence scores -g_n^T x (one gradient per sample)");
  app->add_option("--out", o->out, "Output HDF5 file")->required();
  const std::string cmd = command_line(argc, argv);
  app->callback([o, cmd] {
    DampedSolveOptions& s = o->solve;
    s.method = parse_solve_method(o->method);
    s.preconditioner = !o->preconditioner.empty() ? o->preconditioner : s.method == SolveMethod::Pcg ? "kfac" : "none";
    s.kfac.type = parse_kfac_type(o->kfac_type);
    s.block_products = parse_block_products(o->block_products);
    s.gram_max_bytes = static_cast<std::size_t>(o->gram_gb * 1e9);
    s.kfac.seed = o->run.seed;
    s.seed = o->run.seed;
    const std::string warning = validate_damped_solve(s);
    std::vector<std::string> inputs = dataset_files(o->run.data);
    inputs.push_back(o->run.model);
    const bool rhs_data = o->rhs.rfind("data:", 0) == 0;
    const bool rhs_file = o->rhs != "gradient" && !rhs_data;
    if (rhs_file) inputs.push_back(o->rhs);
    check_output_paths({o->out}, inputs);
    if (!warning.empty()) std::cerr << "curv solve: warning: " << warning << "\n";
    auto tc = limit_threads(o->run.threads);
    Timer timer;
    Dataset d = load_data(o->run);
    Model m = load_model(o->run, &d);
    ObjectiveOptions oo = objective_options(o->run);
    oo.fisher_samples = o->fisher_samples;
    oo.fisher_seed = o->run.seed;
    auto obj = Objective::create(m, d, oo);
    const std::string sha = o->run.arch.empty() ? sha256_file(o->run.model) : std::string();
    Eigen::VectorXd b;
    if (o->rhs == "gradient") {
      obj->gradient(b);
    } else if (rhs_data) {
      RunOptions r2 = o->run;
      r2.data = o->rhs.substr(5);
      r2.offset = 0;
      r2.samples = 0;
      Dataset d2 = load_data(r2);
      auto obj2 = Objective::create(m, d2, oo);
      obj2->gradient(b);
    } else {
      ErrorContext context(o->rhs);
      b = read_rhs_file(o->rhs, m.num_params(), sha);
    }
    const DampedSolveResult r = damped_solve(*obj, d, b, s, oo);
    const double seconds = timer.seconds();
    const bool converged = r.info == CompInfo::Successful;
    const std::string status = r.info == CompInfo::Successful      ? "successful"
                               : r.info == CompInfo::NotConverging ? "not_converging"
                                                                   : "numerical_issue";
    AttributeMap a;
    a["model"] = o->run.arch.empty() ? o->run.model : "arch:" + o->run.arch;
    if (!sha.empty()) a["model_sha256"] = sha;
    a["dataset"] = o->run.data;
    a["samples"] = std::int64_t(d.size());
    a["curvature"] = s.curvature;
    a["method"] = o->method;
    a["preconditioner"] = s.preconditioner;
    if (s.restricted_blocks) a["restricted_blocks"] = std::int64_t(1);
    if (!r.block_products.empty()) {
      a["block_products"] = r.block_products;
      a["gram_blocks"] = r.gram_blocks;
      a["gram_bytes"] = std::int64_t(r.gram_bytes);
      a["gram_seconds"] = r.gram_seconds;
    }
    a["damping"] = s.damping;
    a["rtol"] = s.rtol;
    a["max_iters"] = std::int64_t(s.max_iters);
    a["rhs"] = o->rhs;
    a["seed"] = std::int64_t(o->run.seed);
    a["precision"] = o->run.precision;
    if (s.curvature == "fisher") a["fisher_samples"] = o->fisher_samples;
    if (s.curvature == "kfac" || s.preconditioner == "kfac" || s.method == SolveMethod::Kfac) a["kfac_type"] = o->kfac_type;
    a["status"] = status;
    a["converged"] = std::int64_t(converged);
    a["iterations"] = std::int64_t(r.iterations);
    a["products"] = std::int64_t(r.products);
    a["residual"] = r.residual;
    a["rhs_norm"] = r.rhs_norm;
    a["x_norm"] = r.x_norm;
    a["b_dot_x"] = r.b_dot_x;
    a["seconds"] = seconds;
    if (std::isfinite(r.fisher_quad)) {
      a["fisher_quad"] = r.fisher_quad;
      a["fisher_quad_stderr"] = r.fisher_quad_stderr;
    }
    write_solve_file(o->out, cmd, inputs, a, r, b);

    nlohmann::json j;
    j["residual"] = r.residual;
    j["iterations"] = r.iterations;
    j["products"] = r.products;
    j["rhs_norm"] = r.rhs_norm;
    j["x_norm"] = r.x_norm;
    j["b_dot_x"] = r.b_dot_x;
    j["seconds"] = seconds;
    j["converged"] = converged;
    j["status"] = status;
    j["curvature"] = s.curvature;
    j["method"] = o->method;
    if (s.restricted_blocks) j["restricted_blocks"] = true;
    if (!r.block_products.empty()) {
      j["block_products"] = r.block_products;
      if (r.gram_blocks > 0 || !r.gram_note.empty()) {  // gram was tried (auto, gram)
        j["gram"] = {{"blocks", r.gram_blocks}, {"bytes", r.gram_bytes}, {"seconds", r.gram_seconds}};
        if (!r.gram_note.empty()) j["gram"]["note"] = r.gram_note;
      }
    }
    j["damping"] = s.damping;
    j["samples"] = d.size();
    j["params"] = m.num_params();
    j["out"] = o->out;
    if (std::isfinite(r.fisher_quad))  // how noisy the sampled Fisher is along b
      j["fisher"] = {{"samples", o->fisher_samples}, {"quad", r.fisher_quad}, {"quad_stderr", r.fisher_quad_stderr}};
    for (const auto& blk : r.blocks) {
      j["blocks"][blk.name]["residual"] = blk.residual;
      j["blocks"][blk.name]["iterations"] = blk.iterations;
    }
    if (r.influence.size() > 0) {
      const Eigen::Index top = std::min<Eigen::Index>(r.influence.size(), 10);
      std::vector<std::pair<double, std::int64_t>> v;
      for (Eigen::Index i = 0; i < r.influence.size(); ++i) v.push_back({-std::abs(r.influence[i]), i});
      std::partial_sort(v.begin(), v.begin() + top, v.end());
      for (Eigen::Index i = 0; i < top; ++i) j["influence"]["top_samples"].push_back(v[i].second);
    }
    if (o->run.json) return emit_json(o->run, j);
    std::cerr << "solve: " << status << ", residual " << r.residual << " after " << r.iterations << " iterations, "
              << r.products << " products in " << seconds << " s -> " << o->out << "\n";
    std::cout << j.dump(2) << std::endl;
  });
}

}  // namespace curv::cli
