// The `landscape` and `interpolate` run kinds of curv study, which `curv landscape` also runs:
// loss surfaces along two directions, and the linear path between two checkpoints.
#include <cmath>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/landscape.h"
#include "curvature/landscape_directions.h"
#include "curvature/run_kind.h"
#include "src/core/timer.h"
#include "src/io/hdf5.h"
#include "src/io/sha256.h"

namespace curv {

namespace {

using nlohmann::json;

SettingTable eig_settings() {
  return {
      int_setting("eig_every", 0, 0, 100000, "lambda_max at grid points whose indices are multiples of K (0: none)"),
      bool_setting("eig_bottom", false, "Also lambda_min at those points"),
      choice_setting("curvature", "hessian", {"hessian", "ggn", "ef"},
                     "Operator of the eigenvalues (and of top-eig directions)"),
      number_setting("eig_tol", 1e-3, 1e-15, 0.5, "Relative residual tolerance of the eigenvalues"),
      int_setting("eig_max_restarts", 300, 1, 100000, "Lanczos restarts per eigenvalue run"),
  };
}

LandscapeOptions landscape_options(const json& s) {
  LandscapeOptions o;
  o.grid = parse_grid(s.at("grid").get<std::string>());
  o.eig_every = s.at("eig_every").get<std::int64_t>();
  o.eig_bottom = s.at("eig_bottom").get<bool>();
  o.curvature = parse_curvature(s.at("curvature").get<std::string>());
  o.eig_tol = s.at("eig_tol").get<double>();
  o.eig_max_restarts = s.at("eig_max_restarts").get<std::int64_t>();
  o.seed = s.at("seed").get<std::uint64_t>();
  return o;
}

void common_attributes(const PlannedRun& run, InputCache& inputs, const Dataset& d, AttributeMap& a) {
  const json& s = run.settings;
  const std::string arch = s.at("arch").get<std::string>();
  a["model"] = arch.empty() ? s.at("model").get<std::string>() : "arch:" + arch;
  if (arch.empty()) a["model_sha256"] = sha256_file(inputs.resolve(s.at("model").get<std::string>()));
  a["dataset"] = s.at("data").get<std::string>();
  a["samples"] = std::int64_t(d.size());
  a["seed"] = std::int64_t(s.at("seed").get<std::uint64_t>());
  a["precision"] = s.at("precision").get<std::string>();
  a["micro_batch"] = s.at("micro_batch").get<std::int64_t>();
  a["grid"] = s.at("grid").get<std::string>();
  a["eig_every"] = s.at("eig_every").get<std::int64_t>();
  a["curvature"] = s.at("curvature").get<std::string>();
}

std::int64_t eig_points(const LandscapeOptions& o) {
  if (o.eig_every <= 0) return 0;
  const std::int64_t nx = (o.grid.nx - 1) / o.eig_every + 1;
  const std::int64_t ny = o.grid.two_d ? (o.grid.ny - 1) / o.eig_every + 1 : 1;
  return nx * ny;
}

void summarize(const LandscapeResult& res, RunResult& r) {
  r.summary["loss_min"] = res.loss.minCoeff();
  r.summary["loss_max"] = res.loss.maxCoeff();
  r.summary["points"] = res.points;
  r.summary["points_per_second"] = res.seconds > 0 ? double(res.points) / res.seconds : 0.0;
  if (res.lambda_max.size()) {
    double top = -INFINITY;
    for (Eigen::Index i = 0; i < res.lambda_max.size(); ++i)
      if (!std::isnan(res.lambda_max.data()[i])) top = std::max(top, res.lambda_max.data()[i]);
    r.summary["lambda_max_max"] = top;
  }
}

class LandscapeKind final : public RunKind {
 public:
  std::string name() const override { return "landscape"; }
  std::string description() const override {
    return "Loss and accuracy on a 1-D or 2-D grid along random (filter-normalized), top-eigenvector or stored "
           "directions (Li et al. 2018)";
  }
  const SettingTable& settings() const override {
    static const SettingTable t = [] {
      SettingTable t = {
          string_setting("dirs", "random", "random, top-eig, or an .h5 file holding xdirection/ydirection or "
                         "eigen/vectors", true),
          string_setting("dirs_group", "", "Group of the directions in the dirs file (empty: the first that has them)"),
          bool_setting("filter_norm", false, "Filter normalization of the directions (Li et al.)"),
          string_setting("ignore", "", "Zero the directions on bias, bn, or bias,bn parameters"),
          string_setting("grid", "-1:1:51", "MIN:MAX:N for a 1-D grid, MIN:MAX:N,MIN:MAX:N for a 2-D grid"),
      };
      for (auto& s : eig_settings()) t.push_back(s);
      return t;
    }();
    return t;
  }

  void check(const PlannedRun& run, InputCache& inputs) const override {
    const json& s = run.settings;
    const Model& m = inputs.model(s);
    Objective::create(m, inputs.data(s), InputCache::objective_options(s));
    const LandscapeOptions o = landscape_options(s);
    DirectionOptions d;
    parse_ignore(s.at("ignore").get<std::string>(), d);
    const std::string dirs = s.at("dirs").get<std::string>();
    if (dirs != "random" && dirs != "top-eig")
      read_directions(inputs.resolve(dirs), s.at("dirs_group").get<std::string>(), o.grid.two_d, m.num_params());
    else if (dirs == "top-eig" && m.num_params() < 3)
      throw std::invalid_argument("top-eig directions need a model of at least 3 parameters");
  }

  std::int64_t estimate_products(const PlannedRun& run, InputCache&) const override {
    const LandscapeOptions o = landscape_options(run.settings);
    const bool top = run.settings.at("dirs").get<std::string>() == "top-eig";
    return eig_points(o) * (o.eig_bottom ? 60 : 30) + (top ? 60 : 0);
  }

  RunResult execute(const PlannedRun& run, InputCache& inputs, const RunProgress& progress) const override {
    const json& s = run.settings;
    Timer timer;
    const Dataset& d = inputs.data(s);
    const Model& m = inputs.model(s);
    const ObjectiveOptions oo = InputCache::objective_options(s);
    const LandscapeOptions o = landscape_options(s);
    DirectionOptions dopt;
    dopt.filter_norm = s.at("filter_norm").get<bool>();
    parse_ignore(s.at("ignore").get<std::string>(), dopt);
    const std::vector<double> w0 = m.flat_params();
    const std::string dirs = s.at("dirs").get<std::string>();
    LandscapeDirections dir;
    auto obj = Objective::create(m, d, oo);
    const double centre = obj->value();
    if (dirs == "random") {
      // x from stream seed, y from stream seed + 1.
      dir.x = random_direction(m, w0, dopt, o.seed);
      if (o.grid.two_d) dir.y = random_direction(m, w0, dopt, o.seed + 1);
      dir.source = "random";
    } else {
      if (dirs == "top-eig") {
        CurvatureOperator op(*obj, o.curvature);
        EigenSolverOptions eo;
        eo.top = o.grid.two_d ? 2 : 1;
        eo.tol = o.eig_tol;
        eo.max_restarts = o.eig_max_restarts;
        eo.seed = o.seed;
        EigenSolver es(op, eo);
        es.compute();
        dir.x = es.top_vectors().col(0);
        if (o.grid.two_d) dir.y = es.top_vectors().col(1);
        dir.source = "top-eig";
        dir.products = op.num_products();
      } else {
        dir = read_directions(inputs.resolve(dirs), s.at("dirs_group").get<std::string>(), o.grid.two_d,
                              m.num_params());
      }
      normalize_direction(m, w0, dopt, dir.x);
      if (o.grid.two_d) normalize_direction(m, w0, dopt, dir.y);
    }
    if (!o.grid.two_d) dir.y = Eigen::VectorXd();
    auto res = std::make_shared<LandscapeResult>(compute_landscape(
        m, d, oo, w0, dir.x, dir.y, o, progress ? [&](std::int64_t done) { progress(done); }
                                                : std::function<void(std::int64_t)>()));
    RunResult r;
    AttributeMap& a = r.attributes;
    common_attributes(run, inputs, d, a);
    a["dirs"] = dir.source;
    a["filter_norm"] = std::int64_t(dopt.filter_norm);
    a["ignore"] = s.at("ignore").get<std::string>();
    a["loss"] = centre;
    a["points"] = res->points;
    a["hvps"] = res->products + dir.products;
    a["seconds"] = timer.seconds();
    a["grid_seconds"] = res->seconds;
    r.products = res->products + dir.products;
    summarize(*res, r);
    r.summary["loss"] = centre;
    const bool two_d = o.grid.two_d;
    auto dx = std::make_shared<Eigen::VectorXd>(std::move(dir.x));
    auto dy = std::make_shared<Eigen::VectorXd>(std::move(dir.y));
    r.write = [res, dx, dy, two_d](const h5::Object& g) { write_landscape(g, *res, *dx, *dy, two_d); };
    return r;
  }
};

class InterpolateKind final : public RunKind {
 public:
  std::string name() const override { return "interpolate"; }
  std::string description() const override {
    return "Loss along the straight line from model (t = 0) to model2 (t = 1), with the loss barrier";
  }
  const SettingTable& settings() const override {
    static const SettingTable t = [] {
      SettingTable t = {
          string_setting("model2", "", "The checkpoint at t = 1 (same architecture as model; required)", true),
          string_setting("grid", "-0.25:1.25:31", "MIN:MAX:N values of t"),
      };
      for (auto& s : eig_settings()) t.push_back(s);
      return t;
    }();
    return t;
  }

  static std::vector<double> end_params(const Model& a, const Model& b) {
    if (a.params().size() != b.params().size())
      throw std::invalid_argument("model2 has " + std::to_string(b.params().size()) + " parameter tensors, model has " +
                                  std::to_string(a.params().size()));
    for (std::size_t i = 0; i < a.params().size(); ++i)
      if (a.params()[i].shape != b.params()[i].shape)
        throw std::invalid_argument("model2: parameter '" + b.params()[i].name + "' " + shape_str(b.params()[i].shape) +
                                    " does not match '" + a.params()[i].name + "' " + shape_str(a.params()[i].shape));
    return b.flat_params();
  }

  void check(const PlannedRun& run, InputCache& inputs) const override {
    const json& s = run.settings;
    if (s.at("model2").get<std::string>().empty()) throw std::invalid_argument("model2: required");
    const Model& a = inputs.model(s);
    Objective::create(a, inputs.data(s), InputCache::objective_options(s));
    end_params(a, inputs.model(s, "model2"));
    if (parse_grid(s.at("grid").get<std::string>()).two_d) throw std::invalid_argument("grid: t takes one axis");
  }

  std::int64_t estimate_products(const PlannedRun& run, InputCache&) const override {
    const LandscapeOptions o = landscape_options(run.settings);
    return eig_points(o) * (o.eig_bottom ? 60 : 30);
  }

  RunResult execute(const PlannedRun& run, InputCache& inputs, const RunProgress& progress) const override {
    const json& s = run.settings;
    Timer timer;
    const Dataset& d = inputs.data(s);
    const Model& m = inputs.model(s);
    const std::vector<double> wa = m.flat_params(), wb = end_params(m, inputs.model(s, "model2"));
    const ObjectiveOptions oo = InputCache::objective_options(s);
    const LandscapeOptions o = landscape_options(s);
    Eigen::VectorXd dx(m.num_params());
    for (Eigen::Index k = 0; k < dx.size(); ++k) dx(k) = wb[k] - wa[k];
    // The endpoints on the same Objective as the path (model's constants, e.g. BatchNorm statistics).
    auto obj = Objective::create(m, d, oo);
    const double la = obj->value();
    obj->set_params(wb);
    const double lb = obj->value();
    auto res = std::make_shared<LandscapeResult>(compute_landscape(
        m, d, oo, wa, dx, Eigen::VectorXd(), o, progress ? [&](std::int64_t done) { progress(done); }
                                                        : std::function<void(std::int64_t)>()));
    const Barrier b = loss_barrier(res->x, res->loss.col(0), la, lb);
    RunResult r;
    AttributeMap& a = r.attributes;
    common_attributes(run, inputs, d, a);
    a["model2"] = s.at("model2").get<std::string>();
    a["model2_sha256"] = sha256_file(inputs.resolve(s.at("model2").get<std::string>()));
    a["loss_start"] = la;
    a["loss_end"] = lb;
    a["barrier"] = b.barrier;
    a["barrier_t"] = b.t;
    a["max_loss"] = b.max_loss;
    a["points"] = res->points;
    a["hvps"] = res->products;
    a["seconds"] = timer.seconds();
    r.products = res->products;
    summarize(*res, r);
    r.summary["barrier"] = std::isnan(b.barrier) ? json(nullptr) : json(b.barrier);
    r.summary["loss_start"] = la;
    r.summary["loss_end"] = lb;
    auto dir = std::make_shared<Eigen::VectorXd>(std::move(dx));
    r.write = [res, dir](const h5::Object& g) { write_landscape(g, *res, *dir, Eigen::VectorXd(), false); };
    return r;
  }
};

}  // namespace

const RunKind& landscape_run_kind() {
  static const LandscapeKind k;
  return k;
}

const RunKind& interpolate_run_kind() {
  static const InterpolateKind k;
  return k;
}

}  // namespace curv
