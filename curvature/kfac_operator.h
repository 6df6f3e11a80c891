#pragma once
/// \file kfac_operator.h
/// K-FAC (kfac.h) as a LinearOperator on a set of parameter tensors: block-diagonal over the
/// K-FAC layers, each block K_l = A_l (x) B_l, applied as K v or as the damped inverse
/// (K + l I)^-1 v (exact damping through the factors' eigendecompositions) or its π-adjusted
/// factored approximation. Rows are the listed parameter tensors in the listed order (empty: all
/// parameters in Model order, as Objective::product), so it stands beside a CurvatureOperator on
/// the same rows: a preconditioner for CG, or an operator for eigensolvers.
///
/// Thread-safety: apply() only reads the Kfac; one operator may serve one caller at a time (the
/// product counter is mutable).
#include <vector>

#include "curvature/kfac.h"
#include "curvature/linear_operator.h"

namespace curv {

class KfacOperator final : public LinearOperator {
 public:
  enum class Mode { Multiply, Inverse };

  /// REQUIRES: `kfac` outlives the operator; every listed parameter belongs to a K-FAC layer whose
  /// parameters are all listed (else std::invalid_argument naming the parameter and why);
  /// damping > 0 for Mode::Inverse.
  KfacOperator(const Kfac& kfac, const Model& model, std::vector<int> params = {}, Mode mode = Mode::Multiply,
               double damping = 0, KfacDamping damping_mode = KfacDamping::Exact);

  Index rows() const override { return m_rows; }
  void apply(const Matrix& X, Matrix& Y) const override;

 private:
  struct Block {
    std::size_t layer;
    std::vector<std::pair<Index, Index>> rows;  // (row offset in X, size) per layer param, ascending
  };
  const Kfac* m_kfac;
  Mode m_mode;
  double m_damping;
  KfacDamping m_damping_mode;
  std::vector<Block> m_blocks;
  Index m_rows = 0;
};

}  // namespace curv
