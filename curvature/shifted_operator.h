#pragma once
/// \file shifted_operator.h
/// B = A - sigma I over another operator.
///
/// Use it to move part of the spectrum: the smallest eigenvalues of A are the largest of
/// (sigma I - A), i.e. of `ScaledOperator(ShiftedOperator(A, sigma), -1)`, and a shift by an upper
/// bound of the spectrum makes A negative semi-definite. Eigenvectors are unchanged.
///
/// Non-owning: the wrapped operator must outlive this one. Thread-safety as the wrapped operator.
#include "curvature/linear_operator.h"

namespace curv {

class ShiftedOperator final : public LinearOperator {
 public:
  ShiftedOperator(const LinearOperator& A, double sigma) : m_A(A), m_sigma(sigma) {}

  Index rows() const override { return m_A.rows(); }
  /// Y = A X - sigma X: one block apply of A with X.cols() columns.
  void apply(const Matrix& X, Matrix& Y) const override;

  double sigma() const { return m_sigma; }
  const LinearOperator& inner() const { return m_A; }

 private:
  const LinearOperator& m_A;
  double m_sigma;
};

}  // namespace curv
