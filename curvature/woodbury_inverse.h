#pragma once
/// \file woodbury_inverse.h
/// The inverse of a damped empirical Fisher over a window of m gradients (M-FAC, Frantar et al.
/// 2021), through the Woodbury identity:
///
///     F = lambda I + (1/m) G G^T,   G = [g_1 ... g_m]  (P x m)
///     F^-1 v = (1/lambda) (v - G (m lambda I_m + G^T G)^-1 G^T v)
///
/// Set-up forms the m x m Gram matrix G^T G and its Cholesky factor: O(P m^2 + m^3); a product
/// is O(P m) per column (two thin GEMMs and a triangular solve). M-FAC's recursive form computes
/// the same operator; this is the direct one, exact up to rounding. per_sample_gradients() builds
/// G from single-sample gradients of an objective.
///
/// Thread-safety: apply() is const and reads only the factor.
/// REQUIRES: lambda > 0 finite; G has no NaN.
#include <Eigen/Cholesky>

#include "curvature/linear_operator.h"
#include "src/core/objective.h"

namespace curv {

class WoodburyInverse final : public LinearOperator {
 public:
  /// Copies G. Throws std::invalid_argument for lambda <= 0 or a non-finite G.
  WoodburyInverse(Matrix G, double lambda);

  Index rows() const override { return m_G.rows(); }
  /// Y = F^-1 X.
  void apply(const Matrix& X, Matrix& Y) const override;

  Index window() const { return m_G.cols(); }
  double damping() const { return m_lambda; }

 private:
  Matrix m_G;
  double m_lambda;
  Eigen::LLT<Matrix> m_llt;  // of m lambda I + G^T G
};

/// The per-sample loss gradients g_n = grad l_n (not divided by N) of samples [first, first + m)
/// of `data`, as the columns of a P x m matrix: one single-sample objective each.
/// REQUIRES: 0 <= first, m >= 1, first + m <= data.size().
Eigen::MatrixXd per_sample_gradients(const Model& model, const Dataset& data, std::int64_t first, std::int64_t m,
                                     const ObjectiveOptions& options);

}  // namespace curv
