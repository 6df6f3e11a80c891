#pragma once
/// \file checked_apply.h
/// Y = A X with a shape check on what the operator returned (private to curvature/).
#include <stdexcept>
#include <string>

#include "curvature/linear_operator.h"

namespace curv::internal {

inline void checked_apply(const LinearOperator& op, const Eigen::MatrixXd& X, Eigen::MatrixXd& Y, const char* who) {
  op.apply(X, Y);
  if (Y.rows() != X.rows() || Y.cols() != X.cols())
    throw std::runtime_error(std::string(who) + ": operator returned a " + std::to_string(Y.rows()) + " x " +
                             std::to_string(Y.cols()) + " block for a " + std::to_string(X.rows()) + " x " +
                             std::to_string(X.cols()) + " input");
}

}  // namespace curv::internal
