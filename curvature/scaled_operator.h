#pragma once
/// \file scaled_operator.h
/// B = c A over another operator.
///
/// c = -1 turns "smallest algebraic" into "largest algebraic" (e.g. for power iteration, which
/// only finds the eigenvalue of largest magnitude); c = 1 / n turns a sum into a mean.
///
/// Non-owning: the wrapped operator must outlive this one. Thread-safety as the wrapped operator.
#include "curvature/linear_operator.h"

namespace curv {

class ScaledOperator final : public LinearOperator {
 public:
  ScaledOperator(const LinearOperator& A, double scale) : m_A(A), m_scale(scale) {}

  Index rows() const override { return m_A.rows(); }
  /// Y = c A X: one block apply of A with X.cols() columns.
  void apply(const Matrix& X, Matrix& Y) const override;

  double scale() const { return m_scale; }
  const LinearOperator& inner() const { return m_A; }

 private:
  const LinearOperator& m_A;
  double m_scale;
};

}  // namespace curv
