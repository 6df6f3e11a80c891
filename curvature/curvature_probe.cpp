#include "curvature/curvature_probe.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/hutchinson_trace.h"
#include "src/core/timer.h"

namespace curv {

void check_probe_options(const CurvatureProbeOptions& o) {
  auto bad = [](const char* what, const std::string& value, const char* rule) {
    throw std::invalid_argument(std::string("curvature probe: ") + what + " (= " + value + ") must be " + rule);
  };
  if (o.top < 0) bad("top", std::to_string(o.top), ">= 0");
  if (o.trace_probes < 0) bad("trace probes", std::to_string(o.trace_probes), ">= 0");
  if (o.probe_batch < 1) bad("probe batch", std::to_string(o.probe_batch), ">= 1");
  if (o.ncv < 0) bad("ncv", std::to_string(o.ncv), ">= 0");
  if (o.max_restarts < 1) bad("max restarts", std::to_string(o.max_restarts), ">= 1");
  if (!(o.eig_tol > 0 && o.eig_tol < 1)) bad("eigenvalue tolerance", std::to_string(o.eig_tol), "in (0, 1)");
}

CurvatureRecord probe_curvature(Objective& objective, const CurvatureProbeOptions& o) {
  check_probe_options(o);
  Timer timer;
  CurvatureRecord r;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Eigen::VectorXd g;
  r.loss = objective.gradient(g);
  r.grad_norm = g.norm();
  CurvatureOperator op(objective, o.kind);

  EigenSolverOptions eo;
  eo.top = std::max<std::int64_t>(1, std::min<std::int64_t>(o.top, op.rows() - 1));
  eo.tol = o.eig_tol;
  eo.ncv = o.ncv;
  eo.max_restarts = o.max_restarts;
  eo.seed = o.seed;
  EigenSolver eig(op, eo);
  eig.compute();
  r.hvps += eig.num_operations();
  const auto& vals = eig.top_values();
  r.top_values.assign(vals.data(), vals.data() + vals.size());
  r.lambda_max = vals.size() ? vals[0] : nan;
  r.lambda_max_residual = vals.size() ? eig.top_residuals()[0] : nan;
  r.grad_overlap = nan;
  if (vals.size() && r.grad_norm > 0) {
    const Eigen::VectorXd c = eig.top_vectors().transpose() * g;
    r.grad_overlap = c.squaredNorm() / g.squaredNorm();
  }

  r.trace = r.trace_stderr = nan;
  if (o.trace_probes > 0) {
    HutchinsonTraceOptions to;
    to.probes = o.trace_probes;
    to.batch = std::max<std::int64_t>(1, o.probe_batch);
    to.seed = o.seed + 1;
    HutchinsonTrace tr(op, to);
    tr.compute();
    r.trace = tr.estimate();
    r.trace_stderr = tr.std_error();
    r.hvps += tr.num_operations();
  }
  r.seconds = timer.seconds();
  return r;
}

}  // namespace curv
