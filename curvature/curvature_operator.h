#pragma once
/// \file curvature_operator.h
/// A model's curvature as a LinearOperator: the Hessian, Gauss-Newton or empirical Fisher of an
/// Objective's mean loss, over all parameters or one block (the diagonal block of the listed
/// parameter tensors). Products on k directions share one pass of the model (Objective::product).
///
/// Thread-safety: not thread-safe (the Objective caches activations); apply() parallelizes
/// internally over micro-batches.
#include <vector>

#include "curvature/linear_operator.h"
#include "src/core/objective.h"

namespace curv {

class CurvatureOperator final : public LinearOperator {
 public:
  /// REQUIRES: `objective` outlives the operator; `params` are indices into Model::params()
  /// (empty: all parameters).
  CurvatureOperator(Objective& objective, Curvature kind, std::vector<int> params = {});

  Index rows() const override { return m_rows; }
  void apply(const Matrix& X, Matrix& Y) const override;

  Curvature kind() const { return m_kind; }
  const std::vector<int>& params() const { return m_params; }

 private:
  Objective* m_obj;
  Curvature m_kind;
  std::vector<int> m_params;
  Index m_rows = 0;
};

}  // namespace curv
