#include "curvature/eigen_solver.h"

#include <Spectra/LinAlg/TridiagEigen.h>
#include <Spectra/SymEigsSolver.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"
#include "curvature/internal/spectra_op.h"
#include "curvature/lanczos.h"
#include "curvature/shifted_operator.h"

namespace curv {

namespace {

using Index = EigenSolver::Index;
using Vector = EigenSolver::Vector;
using Matrix = EigenSolver::Matrix;

constexpr Index kMaxRestartsLimit = 100000;

std::string str(Index i) { return std::to_string(i); }

// Spectra's solver plus the Ritz pairs of its last Krylov space, converged or not (Spectra itself
// only hands out converged pairs).
class RestartedLanczos final : public Spectra::SymEigsSolver<internal::SpectraOpRef> {
 public:
  using Base = Spectra::SymEigsSolver<internal::SpectraOpRef>;
  // Spectra's own aliases are private in its base class.
  using Index = EigenSolver::Index;
  using Vector = EigenSolver::Vector;
  using Matrix = EigenSolver::Matrix;
  RestartedLanczos(internal::SpectraOpRef& op, Index nev, Index ncv) : Base(op, nev, ncv) {}

  /// All Ritz values of the last Krylov space (unordered).
  Vector ritz_values() const { return Spectra::TridiagEigen<double>(m_fac.matrix_H()).eigenvalues(); }

  /// The k best Ritz pairs: the largest (descending) when `top`, else the smallest (ascending).
  void best_pairs(Index k, bool top, Vector& values, Matrix& vectors) const {
    Spectra::TridiagEigen<double> decomp(m_fac.matrix_H());
    const Vector& evals = decomp.eigenvalues();  // in no particular order
    const Matrix& evecs = decomp.eigenvectors();
    const Index m = evals.size();
    std::vector<Index> order(m);
    for (Index i = 0; i < m; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return evals(a) < evals(b); });
    Matrix S(m, k);
    values.resize(k);
    for (Index i = 0; i < k; ++i) {
      const Index j = order[top ? m - 1 - i : i];
      values(i) = evals(j);
      S.col(i) = evecs.col(j);
    }
    vectors = m_fac.matrix_V() * S;
  }
};

// One Spectra run of k pairs on `op` from `start`.
struct RunResult {
  Index converged = 0;  // pairs that met the tolerance (Spectra's count)
  Index restarts = 0;
  Spectra::CompInfo info = Spectra::CompInfo::NotComputed;
  Vector values;     // [k] best pairs: descending (top) or ascending (bottom)
  Matrix vectors;    // [n x k]
  Vector ritz;       // all Ritz values of the last Krylov space
};

RunResult spectra_run(const LinearOperator& op, const Vector& start, Index k, Index ncv, bool top, Index max_restarts,
                      double tol) {
  const auto rule = top ? Spectra::SortRule::LargestAlge : Spectra::SortRule::SmallestAlge;
  internal::SpectraOpRef ref(op);
  RestartedLanczos solver(ref, k, ncv);
  solver.init(start.data());
  RunResult r;
  // Selection and sorting by the same rule: top comes out descending, bottom ascending.
  r.converged = solver.compute(rule, max_restarts, tol, rule);
  r.restarts = solver.num_iterations();
  r.info = solver.info();
  if (r.converged >= k) {
    r.values = solver.eigenvalues();
    r.vectors = solver.eigenvectors();
  } else {
    solver.best_pairs(k, top, r.values, r.vectors);  // the best available
  }
  r.ritz = solver.ritz_values();
  return r;
}

// Smallest and largest Ritz values of `steps` plain Lanczos steps from v0: a cheap estimate of the
// ends of the spectrum (extreme Ritz values converge first, from inside).
void estimate_ends(const LinearOperator& op, const Vector& v0, Index steps, double& lo, double& hi) {
  LanczosOptions lo_opts;
  lo_opts.steps = std::min(op.rows(), steps);
  Lanczos lanczos(op, lo_opts);
  lanczos.compute(v0);
  const Vector& theta = lanczos.ritz_values(0);
  lo = theta.size() ? theta(0) : 0.0;
  hi = theta.size() ? theta(theta.size() - 1) : 0.0;
}

}  // namespace

EigenSolver::EigenSolver(const LinearOperator& op, EigenSolverOptions options) : m_op(op), m_options(options) {
  const Index n = op.rows();
  const auto& o = m_options;
  if (o.top < 0 || o.bottom < 0 || o.top + o.bottom < 1)
    throw std::invalid_argument("EigenSolver: top (= " + str(o.top) + ") and bottom (= " + str(o.bottom) +
                                ") must be >= 0 with top + bottom >= 1");
  for (auto [name, k] : {std::pair<const char*, Index>{"top", o.top}, {"bottom", o.bottom}}) {
    if (k == 0) continue;
    if (k >= n)
      throw std::invalid_argument(std::string("EigenSolver: ") + name + " (= " + str(k) +
                                  ") must be < the operator size (= " + str(n) + "); use ExactSpectrum");
    if (o.ncv != 0 && (o.ncv <= k || o.ncv > n))
      throw std::invalid_argument(std::string("EigenSolver: ncv (= " + str(o.ncv) + ") must satisfy ") + name +
                                  " (= " + str(k) + ") < ncv <= operator size (= " + str(n) + ")");
  }
  if (!(o.tol > 0.0 && o.tol < 1.0))
    throw std::invalid_argument("EigenSolver: tol (= " + std::to_string(o.tol) + ") must be in (0, 1)");
  if (o.max_restarts < 1 || o.max_restarts > kMaxRestartsLimit)
    throw std::invalid_argument("EigenSolver: max_restarts (= " + str(o.max_restarts) + ") must be in 1.." +
                                str(kMaxRestartsLimit));
  if (o.scale_steps < 2)
    throw std::invalid_argument("EigenSolver: scale_steps (= " + str(o.scale_steps) + ") must be >= 2");
}

EigenSolver::Index EigenSolver::default_ncv(Index k, bool top) const {
  if (m_options.ncv != 0) return m_options.ncv;
  // Top eigenvalues of a network Hessian are well separated: a Krylov space of k + 7 converges in
  // the first build (top-1 on the shipped CNN: 10 products instead of 22 at tol 1e-6). The bottom
  // of the spectrum clusters near zero and needs the larger space (264 products at 8 vs 114 at 20).
  return std::min(m_op.rows(), top ? std::max<Index>(2 * k + 1, k + 7) : std::max<Index>(2 * k + 1, 20));
}

EigenSolver::Index EigenSolver::compute() {
  const Index n = m_op.rows();
  const std::int64_t products_before = m_op.num_products();
  const auto& o = m_options;
  m_num_iterations = 0;
  m_top_converged = m_bottom_converged = 0;
  m_scale = m_bottom_shift = 0.0;
  m_top_ncv = m_bottom_ncv = 0;
  m_top_values.resize(0);
  m_top_vectors.resize(n, 0);
  m_bottom_values.resize(0);
  m_bottom_vectors.resize(n, 0);
  m_info = CompInfo::Successful;
  auto note = [&](Spectra::CompInfo info) {
    if (info == Spectra::CompInfo::NumericalIssue)
      m_info = CompInfo::NumericalIssue;
    else if (info != Spectra::CompInfo::Successful && m_info == CompInfo::Successful)
      m_info = CompInfo::NotConverging;
  };

  Vector v0(n);
  internal::RandomStream(o.seed).uniform(v0);

  // Top run: Spectra on A, its relative test.
  Vector ritz;
  if (o.top > 0) {
    m_top_ncv = default_ncv(o.top, true);
    RunResult r = spectra_run(m_op, v0, o.top, m_top_ncv, true, o.max_restarts, o.tol);
    m_num_iterations += r.restarts;
    note(r.info);
    m_top_converged = std::min(r.converged, o.top);
    m_top_values = std::move(r.values);
    m_top_vectors = std::move(r.vectors);
    ritz = std::move(r.ritz);
  }

  if (o.bottom > 0) {
    // The operator's scale from the top run's Krylov space, or from a few Lanczos steps.
    double lo = 0.0, hi = 0.0;
    if (ritz.size() > 0) {
      lo = ritz.minCoeff();
      hi = ritz.maxCoeff();
    } else {
      estimate_ends(m_op, v0, o.scale_steps, lo, hi);
    }
    m_scale = std::max(std::abs(lo), std::abs(hi));
    if (!std::isfinite(m_scale)) {
      m_info = CompInfo::NumericalIssue;
      m_scale = hi = 0.0;
    }
    m_bottom_shift = hi + m_scale;  // B = A - c I: c - theta >= nu for every wanted pair
    const ShiftedOperator shifted(m_op, m_bottom_shift);

    m_bottom_ncv = default_ncv(o.bottom, false);
    RunResult r = spectra_run(shifted, v0, o.bottom, m_bottom_ncv, false, o.max_restarts, o.tol);
    m_num_iterations += r.restarts;
    note(r.info);
    m_bottom_converged = std::min(r.converged, o.bottom);
    m_bottom_vectors = std::move(r.vectors);
    m_bottom_values = Vector::Zero(m_bottom_vectors.cols());  // Rayleigh quotients below
  }

  // Residuals ||A v - lambda v|| for all reported pairs in one block apply; bottom eigenvalues
  // are the Rayleigh quotients v^T A v (the shifted run's theta + c loses digits to c).
  const Index nt = m_top_values.size(), nb = m_bottom_values.size();
  m_top_residuals.resize(nt);
  m_bottom_residuals.resize(nb);
  if (nt + nb > 0) {
    Matrix X(n, nt + nb), AX;
    X << m_top_vectors, m_bottom_vectors;
    internal::checked_apply(m_op, X, AX, "EigenSolver");
    for (Index j = 0; j < nb; ++j) m_bottom_values(j) = X.col(nt + j).dot(AX.col(nt + j));
    // Ascending again (quotients of nearly equal pairs may swap by rounding).
    std::vector<Index> order(nb);
    for (Index j = 0; j < nb; ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return m_bottom_values(a) < m_bottom_values(b); });
    const Vector bv = m_bottom_values;
    const Matrix bX = X.rightCols(nb), bAX = AX.rightCols(nb);
    for (Index j = 0; j < nb; ++j) {
      m_bottom_values(j) = bv(order[j]);
      X.col(nt + j) = bX.col(order[j]);
      AX.col(nt + j) = bAX.col(order[j]);
    }
    m_bottom_vectors = X.rightCols(nb);
    Vector values(nt + nb);
    values << m_top_values, m_bottom_values;
    const Vector r = (AX - X * values.asDiagonal()).colwise().norm().transpose();
    m_top_residuals = r.head(nt);
    m_bottom_residuals = r.tail(nb);
    if (!r.allFinite()) m_info = CompInfo::NumericalIssue;
  }
  m_num_operations = m_op.num_products() - products_before;
  return m_top_converged + m_bottom_converged;
}

}  // namespace curv
