#include "curvature/lanczos.h"

#include <tbb/parallel_for.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"

namespace curv {

namespace {

using Index = Lanczos::Index;
using Vector = Lanczos::Vector;
using Matrix = Lanczos::Matrix;

// Per-start working state during compute().
struct Process {
  Matrix V;                    // [n x mmax] basis (columns 0..m-1 valid)
  std::vector<double> alpha;   // diagonal of T
  std::vector<double> beta;    // beta[j] = ||f_j||
  Vector w;                    // [n] work vector
  double scale = 0.0;          // max_i ||A v_i||
  bool active = true, broke_down = false, converged = false, bad = false;
};

// Eigen-mode test on T_m: the nev largest Ritz values have |beta_m s_{m,i}| <= tol max(|theta|, eps^(2/3)).
bool ritz_converged(const Process& p, Index nev, double tol) {
  const Index m = static_cast<Index>(p.alpha.size());
  if (m < nev) return false;
  const Vector a = Eigen::Map<const Vector>(p.alpha.data(), m);
  const Vector b = Eigen::Map<const Vector>(p.beta.data(), m - 1);
  Eigen::SelfAdjointEigenSolver<Matrix> es;
  es.computeFromTridiagonal(a, b, Eigen::ComputeEigenvectors);
  if (es.info() != Eigen::Success) return false;
  const double floor = std::pow(std::numeric_limits<double>::epsilon(), 2.0 / 3.0);
  const double beta_m = p.beta.back();
  for (Index i = m - nev; i < m; ++i) {
    const double theta = es.eigenvalues()(i);
    if (std::abs(beta_m * es.eigenvectors()(m - 1, i)) > tol * std::max(std::abs(theta), floor)) return false;
  }
  return true;
}

// One Lanczos step j for one process, given y = A v_j.
void step(Process& p, Index j, const double* y, Index n, Index mmax, const LanczosOptions& o) {
  p.w = Eigen::Map<const Vector>(y, n);
  const double ynorm = p.w.norm();
  if (!std::isfinite(ynorm)) {
    p.bad = true;
    p.active = false;
    return;
  }
  p.scale = std::max(p.scale, ynorm);
  // Three-term recurrence: f_j = A v_j - alpha_j v_j - beta_{j-1} v_{j-1}
  const double a = p.V.col(j).dot(p.w);
  p.w -= a * p.V.col(j);
  if (j > 0) p.w -= p.beta[j - 1] * p.V.col(j - 1);
  // Full reorthogonalization: classical Gram-Schmidt, twice.
  for (int pass = 0; pass < 2; ++pass) {
    const Vector h = p.V.leftCols(j + 1).transpose() * p.w;
    p.w.noalias() -= p.V.leftCols(j + 1) * h;
  }
  const double b = p.w.norm();
  p.alpha.push_back(a);
  p.beta.push_back(b);
  if (b <= o.breakdown_tol * p.scale) {
    p.broke_down = true;
    p.active = false;
    return;
  }
  if (o.nev > 0 && ritz_converged(p, o.nev, o.tol)) {
    p.converged = true;
    p.active = false;
    return;
  }
  if (j + 1 == mmax) {
    p.active = false;
    return;
  }
  p.V.col(j + 1) = p.w / b;
}

}  // namespace

Lanczos::Lanczos(const LinearOperator& op, LanczosOptions options) : m_op(op), m_options(options) {
  const auto& o = m_options;
  if (o.steps < 1) throw std::invalid_argument("Lanczos: steps (= " + std::to_string(o.steps) + ") must be >= 1");
  if (o.nev < 0) throw std::invalid_argument("Lanczos: nev (= " + std::to_string(o.nev) + ") must be >= 0");
  if (o.nev > 0 && !(o.tol > 0.0))
    throw std::invalid_argument("Lanczos: tol (= " + std::to_string(o.tol) + ") must be > 0");
  if (!(o.breakdown_tol >= 0.0))
    throw std::invalid_argument("Lanczos: breakdown_tol (= " + std::to_string(o.breakdown_tol) + ") must be >= 0");
}

Index Lanczos::compute(const Matrix& starts) {
  const Index n = m_op.rows();
  const Index P = starts.cols();
  if (starts.rows() != n || P < 1)
    throw std::invalid_argument("Lanczos: starts is " + std::to_string(starts.rows()) + " x " + std::to_string(P) +
                                ", expected " + std::to_string(n) + " x P with P >= 1");
  const Index mmax = std::min(m_options.steps, n);
  const std::int64_t products_before = m_op.num_products();
  m_num_block_applies = 0;

  std::vector<Process> procs(P);
  for (Index p = 0; p < P; ++p) {
    const double nrm = starts.col(p).norm();
    if (!(nrm > 0.0) || !std::isfinite(nrm))
      throw std::invalid_argument("Lanczos: start vector " + std::to_string(p) + " has norm " + std::to_string(nrm));
    procs[p].V.resize(n, mmax);
    procs[p].V.col(0) = starts.col(p) / nrm;
    procs[p].alpha.reserve(mmax);
    procs[p].beta.reserve(mmax);
  }

  // Lockstep: step j applies A once to the v_j of every active process.
  std::vector<Index> active(P);
  for (Index p = 0; p < P; ++p) active[p] = p;
  Matrix X, Y;
  for (Index j = 0; !active.empty(); ++j) {
    const Index na = static_cast<Index>(active.size());
    X.resize(n, na);
    for (Index a = 0; a < na; ++a) X.col(a) = procs[active[a]].V.col(j);
    internal::checked_apply(m_op, X, Y, "Lanczos");
    ++m_num_block_applies;
    tbb::parallel_for(Index(0), na, [&](Index a) { step(procs[active[a]], j, Y.col(a).data(), n, mmax, m_options); });
    std::erase_if(active, [&](Index p) { return !procs[p].active; });
  }

  // Ritz values and Gauss weights from T_m.
  m_basis.assign(P, Matrix());
  m_alpha.assign(P, Vector());
  m_beta.assign(P, Vector());
  m_ritz_values.assign(P, Vector());
  m_ritz_weights.assign(P, Vector());
  m_ritz_S.assign(P, Matrix());
  m_broke_down.assign(P, false);
  m_converged.assign(P, false);
  std::vector<char> eig_ok(P, 1);
  tbb::parallel_for(Index(0), P, [&](Index p) {
    Process& pr = procs[p];
    const Index m = static_cast<Index>(pr.alpha.size());
    m_alpha[p] = Eigen::Map<const Vector>(pr.alpha.data(), m);
    m_beta[p] = Eigen::Map<const Vector>(pr.beta.data(), m);
    pr.V.conservativeResize(n, m);
    m_basis[p] = std::move(pr.V);
    m_broke_down[p] = pr.broke_down;
    m_converged[p] = pr.converged;
    if (pr.bad || m == 0) {
      eig_ok[p] = 0;
      return;
    }
    Eigen::SelfAdjointEigenSolver<Matrix> es;
    es.computeFromTridiagonal(m_alpha[p], m_beta[p].head(m - 1), Eigen::ComputeEigenvectors);
    if (es.info() != Eigen::Success) {
      eig_ok[p] = 0;
      return;
    }
    m_ritz_values[p] = es.eigenvalues();
    m_ritz_S[p] = es.eigenvectors();
    m_ritz_weights[p] = m_ritz_S[p].row(0).transpose().array().square();
  });

  Index finished = 0;
  bool numerical_issue = false, unconverged = false;
  for (Index p = 0; p < P; ++p) {
    if (!eig_ok[p] || !m_alpha[p].allFinite() || !m_beta[p].allFinite()) {
      numerical_issue = true;
      continue;
    }
    if (m_options.nev > 0 && !m_converged[p] && !m_broke_down[p]) {
      unconverged = true;
      continue;
    }
    ++finished;
  }
  m_info = numerical_issue ? CompInfo::NumericalIssue : unconverged ? CompInfo::NotConverging : CompInfo::Successful;
  m_num_operations = m_op.num_products() - products_before;
  return finished;
}

Vector Lanczos::ritz_residuals(Index p) const {
  const Index m = steps(p);
  if (m == 0 || m_ritz_S[p].size() == 0) return Vector();
  return (m_beta[p](m - 1) * m_ritz_S[p].row(m - 1).transpose()).cwiseAbs();
}

Matrix Lanczos::ritz_vectors(Index p) const {
  if (m_ritz_S[p].size() == 0) return Matrix(m_op.rows(), 0);
  return m_basis[p] * m_ritz_S[p];
}

}  // namespace curv
