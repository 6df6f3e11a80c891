#pragma once
/// \file gram_blocks.h
/// Exact diagonal blocks of the Gauss-Newton matrix (and of the true and empirical Fisher) for
/// linear layers, from stored per-sample factors: block-CG's "gram" products.
///
/// For a curvature C = (1/N) sum_n J_n^T Lambda_n J_n with Lambda_n = sum_r u_nr u_nr^T (R
/// cotangents per sample at the model output z_n, Objective::layer_io's OutputSeeds), the block of
/// one linear layer l (linear_layers.h: weight and bias, W~ = [W | b]) is
///
///     C_ll = (1/N) sum_{n,r} g_nr g_nr^T,   g_nr = vec(sum_t d_ntr a_nt^T) = J_{n,l}^T u_nr,
///
/// a_nt the layer input at position t (the im2col patch for a Conv), d_ntr the cotangent u_nr
/// back-propagated to the layer output at t. g_nr is the gradient of z_n . u_nr w.r.t. the layer's
/// parameters, so the formula is exact (no Kronecker or independence assumption, unlike K-FAC
/// whose factors come from the same pass). One layer_io sweep (R reverse passes per micro-batch)
/// stores, per covered layer, whichever is smaller (per sample: R out in_ext numbers against
/// T (in_ext + R out)):
///   U         the g_nr themselves, [out in_ext, N R]:  C_ll v = (1/N) U (U^T v), one pass over U
///             in column chunks that serve both products from cache
///   factored  the expanded input A [N T, in_ext] and the cotangents D [N T, R out]: C_ll v =
///             (1/N) sum_n sum_r s_nr D_nr^T A_n with s_nr = <D_nr, A_n V^T>, a forward and a
///             weight-gradient GEMM (nearly always the smaller for linear layers, T = 1)
/// and no product passes through the model.
///
/// Seeds per curvature (R): ggn and the exact Fisher: the columns of Lambda_n's factor (C classes,
/// D outputs under MSE); fisher with S sampled labels: the same draws as Objective::product (keyed
/// by seed, sample and draw), R = S; ef: the loss gradient at the data's label, R = 1.
///
/// Covered blocks: a Model::blocks("layers") block whose parameters are exactly one supported
/// linear layer's (weight, bias), each used by that layer's nodes only. Not covered (the caller
/// uses another operator for them): other parameters (BatchNorm, LayerNorm, embeddings), the
/// Hessian (no such factorization), models with ops that mix the batch, language-model losses
/// (labels per position) and data with labels equal to the ignore index.
///
/// Memory: N sum_l min(R out_l in_l, T_l (in_l + R out_l)) elements in the model's precision
/// (in_l with the bias column; float32 models keep float32 stores, and their products carry float32
/// rounding like the engine's own float32 products). ResNet-20 on 128 images, 10 classes: 0.52 GB.
/// Cost: the sweep once (R reverse passes, plus one [R out, T] x [T, in_ext] GEMM per sample for U
/// layers: about R times a gradient's weight GEMMs), 12-17 GGN products on the shipped CNN and
/// ResNet-20; then about 0.2 GGN products per product of every layer (bench/bench_kfac).
/// Deterministic for any thread count: fixed chunks, each computed by one thread, partial sums
/// added in chunk order.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "curvature/linear_operator.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv {

class GramBlockOperators {
 public:
  /// Decides which of `blocks` are covered (see the header) and, if any are and the stored U fit
  /// in `max_bytes` (0: no limit), runs the sweep. The others get no operator (nullptr).
  /// REQUIRES: `objective` outlives this; it was created on `data` with `options`.
  GramBlockOperators(Objective& objective, const Dataset& data, const ObjectiveOptions& options, Curvature kind,
                     const std::vector<ParamBlock>& blocks, std::size_t max_bytes = 0);
  ~GramBlockOperators();
  GramBlockOperators(const GramBlockOperators&) = delete;
  GramBlockOperators& operator=(const GramBlockOperators&) = delete;

  /// One entry per block: C_ll as an operator on the block's vector, or nullptr when not covered.
  const std::vector<const LinearOperator*>& ops() const { return m_ptrs; }
  std::size_t covered() const;
  /// Why nothing or only part is covered (empty when every block is).
  const std::string& reason() const { return m_reason; }
  /// Bytes of the stored U (0 when nothing is covered) and the seconds the sweep took.
  std::size_t bytes() const { return m_bytes; }
  double setup_seconds() const { return m_seconds; }
  /// Cotangents per sample (R).
  std::int64_t cotangents() const { return m_R; }

  struct Store;  // the stored U per covered layer (gram_blocks.cpp)

 private:
  std::unique_ptr<Store> m_store;
  std::vector<std::unique_ptr<LinearOperator>> m_ops;
  std::vector<const LinearOperator*> m_ptrs;
  std::string m_reason;
  std::size_t m_bytes = 0;
  double m_seconds = 0;
  std::int64_t m_R = 0;
};

}  // namespace curv
