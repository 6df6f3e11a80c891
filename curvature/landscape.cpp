#include "curvature/landscape.h"

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <span>
#include <sstream>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "src/core/timer.h"
#include "src/io/hdf5.h"

namespace curv {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::int64_t kMaxAxisPoints = 100000;

Eigen::VectorXd axis(double lo, double hi, std::int64_t n) {
  Eigen::VectorXd v(n);
  for (std::int64_t i = 0; i < n; ++i) v(i) = n == 1 ? lo : lo + static_cast<double>(i) * (hi - lo) / double(n - 1);
  return v;
}

void parse_axis(const std::string& text, const std::string& part, double& lo, double& hi, std::int64_t& n) {
  const auto bad = [&](const std::string& why) {
    throw std::invalid_argument("grid '" + text + "': " + why + " (expected MIN:MAX:N[,MIN:MAX:N], e.g. -1:1:51)");
  };
  std::stringstream ss(part);
  std::string a, b, c, extra;
  if (!std::getline(ss, a, ':') || !std::getline(ss, b, ':') || !std::getline(ss, c, ':') || std::getline(ss, extra))
    bad("'" + part + "' is not MIN:MAX:N");
  auto number = [&](const std::string& s) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (s.empty() || used != s.size() || !std::isfinite(v)) bad("'" + s + "' is not a finite number");
    return v;
  };
  lo = number(a);
  hi = number(b);
  const double count = number(c);
  if (count != std::floor(count) || count < 1 || count > kMaxAxisPoints)
    bad("the point count " + c + " is not an integer in [1, 100000]");
  n = static_cast<std::int64_t>(count);
  if (lo > hi) bad("MIN " + a + " is above MAX " + b);
  if (n == 1 && lo != hi) bad("one point needs MIN == MAX");
}

}  // namespace

Eigen::VectorXd LandscapeGrid::x() const { return axis(x_min, x_max, nx); }
Eigen::VectorXd LandscapeGrid::y() const { return two_d ? axis(y_min, y_max, ny) : Eigen::VectorXd::Zero(1); }

LandscapeGrid parse_grid(const std::string& text) {
  LandscapeGrid g;
  const auto comma = text.find(',');
  parse_axis(text, text.substr(0, comma), g.x_min, g.x_max, g.nx);
  if (comma != std::string::npos) {
    g.two_d = true;
    parse_axis(text, text.substr(comma + 1), g.y_min, g.y_max, g.ny);
  } else {
    g.ny = 1;
  }
  return g;
}

LandscapeResult compute_landscape(const Model& model, const Dataset& data, const ObjectiveOptions& objective,
                                  const std::vector<double>& w0, const Eigen::VectorXd& dx, const Eigen::VectorXd& dy,
                                  const LandscapeOptions& o, const std::function<void(std::int64_t)>& progress) {
  const std::int64_t P = model.num_params();
  if (static_cast<std::int64_t>(w0.size()) != P || dx.size() != P || (o.grid.two_d && dy.size() != P))
    throw std::invalid_argument("landscape: centre and directions must have the model's " + std::to_string(P) +
                                " parameters (got " + std::to_string(w0.size()) + ", " + std::to_string(dx.size()) +
                                ", " + std::to_string(dy.size()) + ")");
  if (o.eig_every < 0) throw std::invalid_argument("landscape: eig_every must be >= 0");
  Timer timer;
  LandscapeResult r;
  r.x = o.grid.x();
  r.y = o.grid.y();
  const std::int64_t nx = r.x.size(), ny = r.y.size(), n = nx * ny;
  r.points = n;
  r.loss.setConstant(nx, ny, kNaN);
  r.accuracy.setConstant(nx, ny, kNaN);
  const bool eig = o.eig_every > 0;
  if (eig) {
    r.lambda_max.setConstant(nx, ny, kNaN);
    if (o.eig_bottom) r.lambda_min.setConstant(nx, ny, kNaN);
  }
  // One Objective per worker thread; the activation cache (useful only for the eigenvalues) is
  // shared out between them.
  ObjectiveOptions oo = objective;
  oo.cache_bytes = eig ? objective.cache_bytes / std::max(1, tbb::this_task_arena::max_concurrency()) : 0;
  // A pool, not thread-local objectives: a thread waiting inside one point's parallel reduction
  // may pick up another point, which must not reuse the busy Objective.
  std::vector<std::unique_ptr<Objective>> pool;
  std::mutex pool_mutex, progress_mutex;
  std::vector<std::int64_t> products(n, 0);
  std::int64_t done = 0;
  tbb::parallel_for(std::int64_t(0), n, [&](std::int64_t p) {
    std::unique_ptr<Objective> obj;
    {
      std::lock_guard lock(pool_mutex);
      if (!pool.empty()) obj = std::move(pool.back()), pool.pop_back();
    }
    if (!obj) obj = Objective::create(model, data, oo);
    const std::int64_t i = p / ny, j = p % ny;
    std::vector<double> w(P);
    const double a = r.x(i), b = r.y(j);
    for (std::int64_t k = 0; k < P; ++k) w[k] = w0[k] + a * dx(k) + (o.grid.two_d ? b * dy(k) : 0.0);
    obj->set_params(w);
    const EvalResult e = obj->evaluate();
    r.loss(i, j) = e.loss;
    r.accuracy(i, j) = e.accuracy;
    if (eig && i % o.eig_every == 0 && j % o.eig_every == 0) {
      CurvatureOperator op(*obj, o.curvature);
      EigenSolverOptions eo;
      eo.top = 1;
      eo.bottom = o.eig_bottom ? 1 : 0;
      eo.tol = o.eig_tol;
      eo.max_restarts = o.eig_max_restarts;
      eo.seed = o.seed;
      EigenSolver es(op, eo);
      es.compute();
      r.lambda_max(i, j) = es.top_values()(0);
      if (o.eig_bottom) r.lambda_min(i, j) = es.bottom_values()(0);
      products[p] = op.num_products();
    }
    {
      std::lock_guard lock(pool_mutex);
      pool.push_back(std::move(obj));
    }
    if (progress) {
      std::lock_guard lock(progress_mutex);
      progress(++done);
    }
  });
  for (auto v : products) r.products += v;
  r.seconds = timer.seconds();
  return r;
}

Barrier loss_barrier(const Eigen::VectorXd& t, const Eigen::VectorXd& loss, double loss_start, double loss_end) {
  Barrier b;
  b.loss_start = loss_start;
  b.loss_end = loss_end;
  b.barrier = b.t = b.max_loss = kNaN;
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    if (t(i) < 0 || t(i) > 1) continue;
    const double excess = loss(i) - ((1 - t(i)) * loss_start + t(i) * loss_end);
    if (std::isnan(b.barrier) || excess > b.barrier) b.barrier = excess, b.t = t(i);
    if (std::isnan(b.max_loss) || loss(i) > b.max_loss) b.max_loss = loss(i);
  }
  return b;
}

void write_landscape(const h5::Object& g, const LandscapeResult& r, const Eigen::VectorXd& dx,
                     const Eigen::VectorXd& dy, bool two_d) {
  const auto vec = [&](const std::string& name, const Eigen::VectorXd& v) {
    g.write_dataset(name, std::span<const double>(v.data(), static_cast<std::size_t>(v.size())),
                    {static_cast<std::uint64_t>(v.size())});
  };
  // [nx, ny] row-major: element (i, j) at i * ny + j, as loss-landscape stores its surfaces.
  const auto grid = [&](const std::string& name, const Eigen::MatrixXd& m, double scale) {
    std::vector<double> flat(static_cast<std::size_t>(m.size()));
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      for (Eigen::Index j = 0; j < m.cols(); ++j) flat[i * m.cols() + j] = m(i, j) * scale;
    std::vector<std::uint64_t> shape{static_cast<std::uint64_t>(m.rows())};
    if (two_d) shape.push_back(static_cast<std::uint64_t>(m.cols()));
    g.write_dataset(name, std::span<const double>(flat), shape);
  };
  vec("xcoordinates", r.x);
  if (two_d) vec("ycoordinates", r.y);
  grid("train_loss", r.loss, 1.0);
  grid("train_acc", r.accuracy, 100.0);
  if (r.lambda_max.size()) grid("lambda_max", r.lambda_max, 1.0);
  if (r.lambda_min.size()) grid("lambda_min", r.lambda_min, 1.0);
  vec("xdirection", dx);
  if (two_d) vec("ydirection", dy);
}

}  // namespace curv
