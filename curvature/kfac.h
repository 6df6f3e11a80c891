#pragma once
/// \file kfac.h
/// K-FAC (Martens & Grosse 2015; KFC for convolutions, Grosse & Martens 2016): per supported
/// linear layer (linear_layers.h: Gemm / Linear, MatMul with a weight, ungrouped Conv; weight and
/// bias together, the bias as an appended constant input), the curvature block is approximated by
///
///     K = A (x) B,   A = 1/(N T) sum_{n,t} a_nt a_nt^T,   B = 1/N sum_{n,t} sum_r g_ntr g_ntr^T
///
/// with a_nt the layer input at position t of sample n (for a Conv the im2col patch of C kh kw
/// inputs, plus the constant 1 with a bias; T = 1 for a Linear layer), and g_ntr = (J_n^T u_nr)_t
/// the back-propagated output cotangent at position t, J_n the Jacobian of the logits z_n w.r.t.
/// the layer output. The cotangents u_nr (Objective::layer_io) set the type:
///   exact      u_nr = columns of M_n, M_n M_n^T = Lambda_n (the loss Hessian in z): sum_r u u^T =
///              Lambda_n, so B = 1/N sum_n sum_t J_nt^T Lambda_n J_nt (the GGN's B)
///   mc         u_ns = d_ns / sqrt(S), d_ns = loss gradient at a label sampled from the model
///   empirical  u_n = the loss gradient at the data's label (the empirical Fisher's B)
/// Convolutions (and MatMul on [n, T, in]) use KFC's "expand" convention (curvlinops' name):
/// positions are extra samples, A averages over the N T patches and B sums over positions and
/// averages over samples, so A (x) B has the scale of the GGN. With N = 1 and T = 1 (or under MSE
/// for the last linear layer, where J and Lambda are constant), K equals the exact GGN block.
///
/// Vectors: a layer's block vector is its parameter tensors in Model order (as a "layers" block
/// of Objective::product). Viewed as W~ = [W | b], [out, in + has_bias] with W as [out, in] (the
/// storage [in, out] of Gemm transB = 0 and MatMul is transposed), and vec column-major,
///     K vec(W~) = vec(B W~ A),
/// that is K = A (x) B (Kronecker product, A acting on inputs, B on outputs).
///
/// Damping:
///   exact      (A (x) B + l I)^-1 = (Q_A (x) Q_B) diag(1 / (alpha_i beta_j + l)) (Q_A (x) Q_B)^T
///              from the eigendecompositions A = Q_A diag(alpha) Q_A^T, B = Q_B diag(beta) Q_B^T
///   factored   (A + pi sqrt(l) I)^-1 (x) (B + sqrt(l)/pi I)^-1, pi = sqrt((tr A / dim A) / (tr B /
///              dim B)) (Martens & Grosse 2015, section 6.3: pi-adjusted factored Tikhonov); pi = 1
///              when a trace is 0. Cheaper to refresh, not the inverse of K + l I.
///
/// Cost (the sweep): per layer the symmetric rank-k updates T N in_ext^2 (A) and R T N out^2 (B; R
/// cotangents per sample: C classes for exact, mc_samples for mc, 1 for empirical), plus one
/// reverse pass per cotangent without weight gradients. A float32 model's rows are accumulated by
/// float32 rank-k updates over 4096 rows at a time, each chunk summed into float64 (no float64
/// copy of the im2col; about 1e-7 relative per chunk); a float64 model accumulates in float64.
/// The 2 L eigendecompositions run in parallel over the layers.
///
/// Thread-safety: construction runs Objective::layer_io (TBB-parallel, deterministic for any
/// thread count); the products are const and may be called concurrently.
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/objective.h"

namespace curv {

enum class KfacType { Exact, MonteCarlo, Empirical };
/// "exact" | "mc" | "empirical".
const char* kfac_type_name(KfacType t);
KfacType parse_kfac_type(const std::string& s);

enum class KfacDamping { Exact, Factored };

struct KfacOptions {
  /// Which loss curvature B carries: exact (Lambda), mc (sampled labels), empirical (data labels).
  KfacType type = KfacType::Exact;
  /// mc: labels sampled per input (>= 1).
  std::int64_t mc_samples = 1;
  /// mc: seed of the sampled labels.
  std::uint64_t seed = 0;
  /// Eigendecompose the factors at construction (false: alpha, beta, QA, QB stay empty until
  /// set_factors(..., true); only multiply() and the factors are usable, as an optimizer that
  /// averages the factors of many mini-batches and decomposes them every few steps needs).
  bool decompose = true;
};

/// One layer's factors and their eigendecompositions (ascending eigenvalues).
struct KfacFactors {
  LinearLayer layer;
  Eigen::MatrixXd A, B;        // [in_ext, in_ext], [out, out]
  Eigen::VectorXd alpha, beta;  // eigenvalues of A and B
  Eigen::MatrixXd QA, QB;       // orthonormal eigenvectors (columns)
};

class Kfac {
 public:
  using Index = Eigen::Index;
  using Vector = Eigen::VectorXd;
  using Matrix = Eigen::MatrixXd;

  /// Collects the factors of every supported layer of the objective's model in one layer_io sweep.
  /// REQUIRES: the model has at least one supported layer and no op that mixes the batch
  /// (BatchNorm in training mode: per-sample Jacobians would not exist); options.mc_samples >= 1.
  Kfac(Objective& objective, const KfacOptions& options = {});

  std::size_t num_layers() const { return m_layers.size(); }
  const KfacFactors& layer(std::size_t l) const { return m_layers.at(l); }
  /// Parameters of no supported layer, with the reason (a whole-model K-FAC cannot cover them).
  const std::vector<UnsupportedParam>& unsupported() const { return m_unsupported; }
  /// The index of the layer named `name` (LinearLayer::name), or -1.
  int find_layer(const std::string& name) const;

  /// Replaces layer l's factors (e.g. by running averages over mini-batches) and, with
  /// `decompose`, their eigendecompositions (else the old ones stay, so inverse() keeps using the
  /// factors of the last decomposition). REQUIRES: the shapes of the current factors.
  void set_factors(std::size_t l, const Matrix& A, const Matrix& B, bool decompose);

  /// Y = K V on layer l's block vectors. REQUIRES: V.rows() == layer(l).layer.size.
  void multiply(std::size_t l, const Matrix& V, Matrix& Y) const;
  /// Y = (damped K)^-1 V (see the header comment). REQUIRES: damping > 0.
  void inverse(std::size_t l, double damping, KfacDamping mode, const Matrix& V, Matrix& Y) const;
  /// K of layer l as a dense matrix in its block vector order.
  Matrix dense(std::size_t l) const;
  /// The eigenvalues of K: alpha_i beta_j, descending; its trace tr(A) tr(B).
  Vector eigenvalues(std::size_t l) const;
  double trace(std::size_t l) const { return m_layers.at(l).A.trace() * m_layers.at(l).B.trace(); }

 private:
  void check(std::size_t l, const Matrix& V) const;

  const Model* m_model;
  std::vector<KfacFactors> m_layers;
  std::vector<UnsupportedParam> m_unsupported;
};

}  // namespace curv
