// curv landscape: 1-D / 2-D loss surfaces along random (filter-normalized), top-eigenvector or
// stored directions, and linear paths between two checkpoints. It runs the `landscape` or
// `interpolate` kind of curv study (curvature/landscape_run.cpp) on the command line's settings.
#include <iostream>

#include "curvature/landscape.h"
#include "curvature/run_kind.h"
#include "curvature/study_plan.h"
#include "curvature/study_store.h"
#include "src/io/atomic_file.h"
#include "src/io/data_io.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct LandscapeCli {
  RunOptions run;
  std::string dirs = "random", dirs_group, ignore, grid, interpolate, curvature = "hessian";
  bool filter_norm = false, eig_bottom = false;
  std::int64_t eig_every = 0, eig_max_restarts = 300;
  double eig_tol = 1e-3;
  std::string out, run_name;
};

}  // namespace

void register_landscape(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<LandscapeCli>();
  auto* app = root.add_subcommand("landscape", "Loss and accuracy on 1-D / 2-D grids in parameter space, and linear "
                                               "paths between checkpoints (loss barrier)");
  add_run_options(*app, o->run, true);
  app->add_option("--dirs", o->dirs, "random, top-eig, or FILE.h5 with xdirection/ydirection or eigen/vectors")
      ->capture_default_str();
  app->add_option("--dirs-group", o->dirs_group, "Group of the directions in FILE.h5 (default: the first that has them)");
  app->add_flag("--filter-norm", o->filter_norm, "Filter-normalize the directions (Li et al. 2018)");
  app->add_option("--ignore", o->ignore, "Zero the directions on bias, bn or bias,bn parameters");
  app->add_option("--grid", o->grid, "MIN:MAX:N[,MIN:MAX:N] (default -1:1:51; with --interpolate -0.25:1.25:31)");
  app->add_option("--interpolate", o->interpolate, "The straight line from MODEL (t = 0) to MODEL2 (t = 1)");
  app->add_option("--eig-every", o->eig_every, "lambda_max at grid points whose indices are multiples of K (0: none)")
      ->check(in_range(0, 100000));
  app->add_flag("--eig-bottom", o->eig_bottom, "Also lambda_min at those points");
  app->add_option("--curvature", o->curvature, "Operator of the eigenvalues and of top-eig directions")
      ->check(CLI::IsMember({"hessian", "ggn", "ef"}))
      ->capture_default_str();
  app->add_option("--eig-tol", o->eig_tol, "Relative residual tolerance of the eigenvalues")
      ->check(in_range(kMinTol, kMaxTol))
      ->capture_default_str();
  app->add_option("--eig-max-restarts", o->eig_max_restarts, "Lanczos restarts per eigenvalue run")
      ->check(in_range(1, 100000))
      ->capture_default_str();
  app->add_option("--out", o->out, "Output HDF5 file")->required();
  app->add_option("--run", o->run_name, "Run group name (default: landscape, or interpolate)");
  const std::string cmd = command_line(argc, argv);
  app->callback([o, cmd] {
    const RunOptions& r = o->run;
    const bool path = !o->interpolate.empty();
    const RunKind& kind = path ? interpolate_run_kind() : landscape_run_kind();
    nlohmann::json v = {{"model", r.model},         {"arch", r.arch},
                        {"seed", r.seed},           {"data", r.data},
                        {"samples", r.samples},     {"offset", r.offset},
                        {"normalize", r.normalize}, {"relabel", r.relabel},
                        {"params", r.params_regex}, {"freeze", r.freeze_regex},
                        {"bn_train", r.bn_train},   {"precision", r.precision},
                        {"micro_batch", r.micro_batch}, {"cache_gb", r.cache_gb},
                        {"group_directions", r.group_directions},
                        {"eig_every", o->eig_every}, {"eig_bottom", o->eig_bottom},
                        {"curvature", o->curvature}, {"eig_tol", o->eig_tol},
                        {"eig_max_restarts", o->eig_max_restarts}};
    if (!o->grid.empty()) v["grid"] = o->grid;
    if (path) {
      v["model2"] = o->interpolate;
    } else {
      v["dirs"] = o->dirs;
      v["dirs_group"] = o->dirs_group;
      v["filter_norm"] = o->filter_norm;
      v["ignore"] = o->ignore;
    }
    PlannedRun run;
    run.kind = kind.name();
    run.name = o->run_name.empty() ? kind.name() : o->run_name;
    run.entry = "command line";
    run.settings = resolve_settings(kind, v);
    InputCache inputs(".");
    std::vector<std::string> files = inputs.input_files(run.settings);
    check_output_paths({o->out}, files);
    auto tc = limit_threads(r.threads);
    kind.check(run, inputs);
    const LandscapeGrid g = parse_grid(run.settings["grid"].get<std::string>());
    Progress bar(std::string(kind.name()), g.nx * g.ny);
    RunResult res = kind.execute(run, inputs, [&](std::int64_t done) { bar.update(done, "points"); });
    bar.finish(std::to_string(g.nx * g.ny) + " points");
    AttributeMap attrs = res.attributes;
    attrs["kind"] = run.kind;
    attrs["settings"] = run.settings.dump();
    write_run_file(o->out, files, cmd, run.name, attrs, res.write);
    nlohmann::json j = res.summary;
    j["out"] = o->out;
    j["run"] = run.name;
    j["seconds"] = std::get<double>(res.attributes.at("seconds"));
    j["hvps"] = res.products;
    if (r.json) return emit_json(r, j);
    std::cout << j.dump(2) << std::endl;
  });
}

}  // namespace curv::cli
