#pragma once
/// \file loss.h
/// Losses on the model output, exactly as PyTorch defines them with reduction='mean':
///   cross-entropy on logits z [N, C] with integer labels: L = (1/N) sum_n (lse(z_n) - z_n[y_n])
///   mean squared error against targets t [N, ...]:        L = (1/(N D)) sum (z - t)^2
/// Here N is the size of the whole sample set, so micro-batch contributions simply add up.
#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

namespace curv {

enum class LossKind { CrossEntropy, MeanSquaredError };

template <class T>
struct LossTerms {
  double sum = 0;         // sum of the scaled per-sample losses of this micro-batch
  std::int64_t correct = 0;  // argmax hits (cross-entropy only)
};

/// Loss of a micro-batch with output z [n, ...]; writes g = dL/dz and, if `per_sample` is given,
/// the unscaled per-sample losses l_n and per-sample gradients dl_n/dz_n into `dl` (same shape as z).
/// `scale` is 1/N (N: whole sample set; D is applied inside for MSE).
/// labels: n entries (cross-entropy); targets: numel(z) entries (MSE).
template <class T>
LossTerms<T> loss_forward(LossKind kind, ConstView<T> z, const std::int64_t* labels, const float* targets, double scale,
                          View<T> g, std::vector<double>* per_sample = nullptr, View<T>* dl = nullptr);

/// out_j = H_z z'_j for k tangents tz [k, n, ...] (the Hessian of the scaled loss in z).
template <class T>
void loss_hessian_product(LossKind kind, ConstView<T> z, ConstView<T> tz, double scale, View<T> out);

/// Gradients of the unscaled per-sample loss l_n at labels drawn from the model's predictive
/// distribution, S draws per sample, so that E[d d^T] = Lambda_n = d^2 l_n / dz_n^2 (the true
/// Fisher's sampling; Martens 2014, curvlinops' MC Fisher):
///   cross-entropy: y ~ Categorical(softmax(z_n)),  d = softmax(z_n) - e_y
///   MSE (l = |z - t|^2 / D, a Gaussian of variance D/2 around z): d = sqrt(2/D) eps, eps ~ N(0, I)
/// Draw s of global sample first + i comes from a counter-based hash of (seed, first + i, s), so the
/// draws do not depend on how the samples are cut into micro-batches or on the thread count.
/// out: [n, S, C] (C = numel(z) / n), row-major.
template <class T>
void loss_sample_gradients(LossKind kind, ConstView<T> z, std::int64_t first, std::int64_t S, std::uint64_t seed,
                           double* out);

/// A uniform double in [0, 1) from a counter-based hash of (seed, a, b, c) (splitmix64 rounds):
/// the reproducible random source of sampled labels.
double hashed_uniform(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c);

}  // namespace curv
