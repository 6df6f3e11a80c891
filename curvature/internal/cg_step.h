#pragma once
// The per-column steps of conjugate gradients (cg_solver.h), shared by CgSolver (columns of a
// [n, k] block) and BlockCgSolver's block-operator mode (each block's own vectors), so both run
// the same recurrence with the same operations.
#include <Eigen/Core>
#include <cmath>

#include "curvature/comp_info.h"

namespace curv::internal {

enum class CgStep { Active, Converged, Indefinite, NotFinite };

/// With q = (C + lambda I) p: a = rz / p^T q, x += a p, r -= a q, hist = ||r|| / bnorm. Indefinite
/// (p^T q <= 0) and NotFinite leave x and r (NotFinite from a non-finite p^T q) or hist as they are.
inline CgStep cg_update(Eigen::Ref<Eigen::VectorXd> x, Eigen::Ref<Eigen::VectorXd> r,
                        const Eigen::Ref<const Eigen::VectorXd>& p, const Eigen::Ref<const Eigen::VectorXd>& q,
                        double rz, double bnorm, double rtol, double& hist) {
  const double pq = p.dot(q);
  if (!std::isfinite(pq)) return CgStep::NotFinite;
  if (pq <= 0) return CgStep::Indefinite;  // not positive definite along p
  const double alpha = rz / pq;
  x += alpha * p;
  r -= alpha * q;
  hist = r.norm() / bnorm;
  if (!std::isfinite(hist)) return CgStep::NotFinite;
  return hist > rtol ? CgStep::Active : CgStep::Converged;
}

/// The next direction from the preconditioned residual z: p = z + (r^T z / rz) p, rz = r^T z.
inline void cg_direction(Eigen::Ref<Eigen::VectorXd> p, const Eigen::Ref<const Eigen::VectorXd>& r,
                         const Eigen::Ref<const Eigen::VectorXd>& z, double& rz) {
  const double rz_new = r.dot(z);
  const double beta = rz_new / rz;
  rz = rz_new;
  p = z + beta * p;
}

/// The solver's status: a non-finite value or a non-positive curvature along p is a numerical
/// issue, columns still active at the cap are not converging.
inline CompInfo cg_info(bool not_finite, bool indefinite, bool active) {
  if (not_finite || indefinite) return CompInfo::NumericalIssue;
  return active ? CompInfo::NotConverging : CompInfo::Successful;
}

}  // namespace curv::internal
