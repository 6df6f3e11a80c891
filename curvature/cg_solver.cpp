#include "curvature/cg_solver.h"

#include "curvature/internal/cg_step.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace curv {

CgSolver::CgSolver(const LinearOperator& C, CgOptions options, const LinearOperator* preconditioner)
    : m_C(C), m_M(preconditioner), m_options(options) {
  if (!(options.damping >= 0) || !std::isfinite(options.damping))
    throw std::invalid_argument("CG: damping (= " + std::to_string(options.damping) + ") must be >= 0 and finite");
  if (!(options.rtol > 0 && options.rtol < 1))
    throw std::invalid_argument("CG: rtol (= " + std::to_string(options.rtol) + ") must be in (0, 1)");
  if (options.max_iters < 1)
    throw std::invalid_argument("CG: max_iters (= " + std::to_string(options.max_iters) + ") must be >= 1");
  if (m_M && m_M->rows() != C.rows())
    throw std::invalid_argument("CG: preconditioner has " + std::to_string(m_M->rows()) + " rows, the operator " +
                                std::to_string(C.rows()));
}

void CgSolver::apply_damped(const Matrix& X, Matrix& Y) {
  m_C.apply(X, Y);
  m_operations += X.cols();
  if (m_options.damping != 0) Y.noalias() += m_options.damping * X;
}

CgSolver::Index CgSolver::compute(const Matrix& B) { return compute(B, Matrix()); }

CgSolver::Index CgSolver::compute(const Matrix& B, const Matrix& X0) {
  if (B.rows() != m_C.rows())
    throw std::invalid_argument("CG: right-hand side has " + std::to_string(B.rows()) + " rows, expected " +
                                std::to_string(m_C.rows()));
  if (X0.size() && (X0.rows() != B.rows() || X0.cols() != B.cols()))
    throw std::invalid_argument("CG: the starting point has another shape than the right-hand side");
  const Index n = B.rows(), k = B.cols();
  m_operations = m_prec_operations = 0;
  m_iterations = 0;
  m_info = CompInfo::Successful;
  Vector bnorm(k);
  for (Index j = 0; j < k; ++j) bnorm[j] = B.col(j).norm();
  Matrix R = B, Z, P, Q;
  if (X0.size() && !X0.isZero(0)) {
    m_x = X0;
    Matrix AX0;
    apply_damped(m_x, AX0);
    R -= AX0;
  } else {
    m_x = Matrix::Zero(n, k);
  }
  auto precondition = [&](const Matrix& In, Matrix& Out) {
    if (!m_M) {
      Out = In;
      return;
    }
    m_M->apply(In, Out);
    m_prec_operations += In.cols();
  };
  precondition(R, Z);
  P = Z;
  Vector rz(k);
  for (Index j = 0; j < k; ++j) rz[j] = R.col(j).dot(Z.col(j));
  std::vector<Index> active;
  std::vector<double> hist(k, 1.0);
  std::vector<std::vector<double>> rows{hist};
  for (Index j = 0; j < k; ++j) {
    hist[j] = bnorm[j] > 0 ? R.col(j).norm() / bnorm[j] : 0.0;  // 1 without a warm start
    if (bnorm[j] > 0 && hist[j] > m_options.rtol) active.push_back(j);
  }
  rows[0] = hist;
  bool broke = false, nan = false;
  while (!active.empty() && m_iterations < m_options.max_iters) {
    // One block apply over the active columns.
    Matrix Pa(n, Index(active.size()));
    for (size_t a = 0; a < active.size(); ++a) Pa.col(a) = P.col(active[a]);
    apply_damped(Pa, Q);
    ++m_iterations;
    std::vector<Index> still;
    Matrix Ra(n, Index(active.size())), Za;
    for (size_t a = 0; a < active.size(); ++a) {
      const Index j = active[a];
      const auto step = internal::cg_update(m_x.col(j), R.col(j), P.col(j), Q.col(a), rz[j], bnorm[j], m_options.rtol, hist[j]);
      nan |= step == internal::CgStep::NotFinite;
      broke |= step == internal::CgStep::Indefinite;
      if (step == internal::CgStep::Active) still.push_back(j);
    }
    rows.push_back(hist);
    if (m_options.on_iteration) m_options.on_iteration(m_iterations, m_x);
    if (!still.empty()) {
      Ra.resize(n, Index(still.size()));
      for (size_t a = 0; a < still.size(); ++a) Ra.col(a) = R.col(still[a]);
      precondition(Ra, Za);
      for (size_t a = 0; a < still.size(); ++a) internal::cg_direction(P.col(still[a]), Ra.col(a), Za.col(a), rz[still[a]]);
    }
    active = std::move(still);
  }
  m_history.resize(Index(rows.size()), k);
  for (size_t i = 0; i < rows.size(); ++i)
    for (Index j = 0; j < k; ++j) m_history(Index(i), j) = rows[i][j];
  // True residuals with one more apply.
  Matrix AX;
  apply_damped(m_x, AX);
  m_residuals.resize(k);
  for (Index j = 0; j < k; ++j) m_residuals[j] = bnorm[j] > 0 ? (AX.col(j) - B.col(j)).norm() / bnorm[j] : 0.0;
  m_info = internal::cg_info(nan || !m_residuals.allFinite(), broke, !active.empty());
  return m_iterations;
}

}  // namespace curv
