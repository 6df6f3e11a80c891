#include "curvature/eigen_solver.h"

#include <Spectra/SymEigsSolver.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "curvature/internal/checked_apply.h"
#include "curvature/internal/random.h"
#include "curvature/internal/spectra_op.h"

namespace curv {

namespace {
std::string str(EigenSolver::Index i) { return std::to_string(i); }
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
  if (!(o.tol > 0.0)) throw std::invalid_argument("EigenSolver: tol (= " + std::to_string(o.tol) + ") must be > 0");
  if (o.max_restarts < 1)
    throw std::invalid_argument("EigenSolver: max_restarts (= " + str(o.max_restarts) + ") must be >= 1");
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
  m_num_iterations = 0;
  m_info = CompInfo::Successful;

  Vector v0(n);
  internal::RandomStream(m_options.seed).uniform(v0);

  internal::SpectraOpRef ref(m_op);
  auto run = [&](Index k, Spectra::SortRule rule, Index& ncv, Vector& values, Matrix& vectors) -> Index {
    const bool top = rule == Spectra::SortRule::LargestAlge;
    ncv = 0;
    values.resize(0);
    vectors.resize(n, 0);
    if (k == 0) return 0;
    ncv = default_ncv(k, top);
    Spectra::SymEigsSolver<internal::SpectraOpRef> solver(ref, k, ncv);
    solver.init(v0.data());
    // Selection and sorting by the same rule: top comes out descending, bottom ascending.
    const Index nconv = solver.compute(rule, m_options.max_restarts, m_options.tol, rule);
    m_num_iterations += solver.num_iterations();
    if (solver.info() == Spectra::CompInfo::NumericalIssue) {
      m_info = CompInfo::NumericalIssue;
    } else if (solver.info() != Spectra::CompInfo::Successful && m_info == CompInfo::Successful) {
      m_info = CompInfo::NotConverging;
    }
    if (nconv > 0) {
      values = solver.eigenvalues();
      vectors = solver.eigenvectors();
    }
    return values.size();
  };

  const Index nt = run(m_options.top, Spectra::SortRule::LargestAlge, m_top_ncv, m_top_values, m_top_vectors);
  const Index nb =
      run(m_options.bottom, Spectra::SortRule::SmallestAlge, m_bottom_ncv, m_bottom_values, m_bottom_vectors);

  // Residuals ||A v - lambda v|| for all reported pairs in one block apply.
  m_top_residuals.resize(nt);
  m_bottom_residuals.resize(nb);
  if (nt + nb > 0) {
    Matrix X(n, nt + nb), AX;
    X << m_top_vectors, m_bottom_vectors;
    internal::checked_apply(m_op, X, AX, "EigenSolver");
    Vector values(nt + nb);
    values << m_top_values, m_bottom_values;
    const Vector r = (AX - X * values.asDiagonal()).colwise().norm().transpose();
    m_top_residuals = r.head(nt);
    m_bottom_residuals = r.tail(nb);
    if (!r.allFinite()) m_info = CompInfo::NumericalIssue;
  }
  m_num_operations = m_op.num_products() - products_before;
  return nt + nb;
}

}  // namespace curv
