#pragma once
/// \file spectra_op.h
/// A copyable, non-owning view of a `LinearOperator` for Spectra's solvers, which take their
/// operator by non-const reference (private to curvature/).
#include "curvature/linear_operator.h"

namespace curv::internal {

class SpectraOpRef {
 public:
  using Scalar = double;
  explicit SpectraOpRef(const LinearOperator& op) : m_op(&op) {}
  Eigen::Index rows() const { return m_op->rows(); }
  Eigen::Index cols() const { return m_op->rows(); }
  void perform_op(const Scalar* x_in, Scalar* y_out) const { m_op->perform_op(x_in, y_out); }

 private:
  const LinearOperator* m_op;
};

}  // namespace curv::internal
