#pragma once
/// \file deflated_operator.h
/// A with known eigenpairs removed, over another operator. Two flavours, chosen by factory:
///
///  - `hotelling(A, V, lambda)`:  B = A - V diag(lambda) V^T            (Hotelling deflation)
///    If (lambda_i, v_i) are exact eigenpairs, B has the same eigenpairs as A except that the
///    deflated ones move to eigenvalue 0. Cheap (no extra work on the input side); inexact v_i
///    leave a perturbation of size |lambda_i| * error.
///  - `projection(A, V)`:         B = (I - V V^T) A (I - V V^T)        (projection deflation)
///    B is A restricted to the orthogonal complement of span(V) (and 0 on span(V)). Robust to
///    inexact v_i: Krylov solvers on B never see the deflated directions again. This is what
///    PyHessian's power iteration does implicitly (`orthnormal` against found vectors).
///
/// For exact eigenvectors both give the same operator.
///
/// REQUIRES: V is [rows x k] with orthonormal columns (checked: |V^T V - I|_max <= 1e-8).
/// Non-owning: A must outlive this operator. Thread-safety as A.
#include "curvature/linear_operator.h"

namespace curv {

enum class DeflationMode { Hotelling, Projection };

class DeflatedOperator final : public LinearOperator {
 public:
  /// B = A - V diag(values) V^T. REQUIRES: values.size() == V.cols().
  static DeflatedOperator hotelling(const LinearOperator& A, Matrix V, Vector values);
  /// B = (I - V V^T) A (I - V V^T).
  static DeflatedOperator projection(const LinearOperator& A, Matrix V);

  Index rows() const override { return m_A.rows(); }
  /// One block apply of A with X.cols() columns, plus O(rows * k * cols) dense work.
  void apply(const Matrix& X, Matrix& Y) const override;

  DeflationMode mode() const { return m_mode; }
  const Matrix& vectors() const { return m_V; }
  const Vector& values() const { return m_values; }  // empty for projection
  const LinearOperator& inner() const { return m_A; }

 private:
  DeflatedOperator(const LinearOperator& A, Matrix V, Vector values, DeflationMode mode);

  const LinearOperator& m_A;
  Matrix m_V;       // [rows x k], orthonormal columns
  Vector m_values;  // [k] (Hotelling only)
  DeflationMode m_mode;
};

}  // namespace curv
