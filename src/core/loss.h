#pragma once
/// \file loss.h
/// Losses on the model output, exactly as PyTorch defines them with reduction='mean':
///   cross-entropy on logits z [R, C] with integer labels: L = (1/M) sum_{r: y_r != ignore} (lse(z_r) - z_r[y_r])
///   mean squared error against targets t [N, ...]:        L = (1/(N D)) sum (z - t)^2
/// Cross-entropy rows r are samples (logits [N, C], labels [N]) or positions (language models:
/// logits [N, T, V] viewed as [N T, V], labels [N, T]); rows whose label is `ignore_index` add
/// nothing (no loss, gradient, curvature or accuracy), and M counts the other rows, as
/// torch.nn.CrossEntropyLoss(ignore_index=...) does. Here M (or N) counts the whole sample set,
/// so micro-batch contributions simply add up; callers pass scale = 1/M (or 1/N).
#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

namespace curv {

enum class LossKind { CrossEntropy, MeanSquaredError };

/// PyTorch's default ignore_index of torch.nn.CrossEntropyLoss.
inline constexpr std::int64_t kDefaultIgnoreIndex = -100;

template <class T>
struct LossTerms {
  double sum = 0;         // sum of the scaled per-sample losses of this micro-batch
  std::int64_t correct = 0;  // argmax hits (cross-entropy only)
};

/// Loss of a micro-batch with output z [n, ...]; writes g = dL/dz and, if `per_sample` is given,
/// the unscaled per-row losses l_r and per-row gradients dl_r/dz_r into `dl` (same shape as z; zero
/// on ignored rows). `scale` is 1/M (M: kept rows of the whole sample set; D is applied inside for
/// MSE). labels: one per row (cross-entropy; z is [rows, C]); targets: numel(z) entries (MSE).
template <class T>
LossTerms<T> loss_forward(LossKind kind, ConstView<T> z, const std::int64_t* labels, const float* targets, double scale,
                          View<T> g, std::vector<double>* per_sample = nullptr, View<T>* dl = nullptr,
                          std::int64_t ignore_index = kDefaultIgnoreIndex);

/// out_j = H_z z'_j for k tangents tz [k, n, ...] (the Hessian of the scaled loss in z). For
/// cross-entropy with `labels`, ignored rows get zero.
template <class T>
void loss_hessian_product(LossKind kind, ConstView<T> z, ConstView<T> tz, double scale, View<T> out,
                          const std::int64_t* labels = nullptr, std::int64_t ignore_index = kDefaultIgnoreIndex);

/// Gradients of the unscaled per-sample loss l_n at labels drawn from the model's predictive
/// distribution, S draws per sample, so that E[d d^T] = Lambda_n = d^2 l_n / dz_n^2 (the true
/// Fisher's sampling; Martens 2014, curvlinops' MC Fisher):
///   cross-entropy: y ~ Categorical(softmax(z_n)),  d = softmax(z_n) - e_y
///   MSE (l = |z - t|^2 / D, a Gaussian of variance D/2 around z): d = sqrt(2/D) eps, eps ~ N(0, I)
/// Draw s of global sample first + i comes from a counter-based hash of (seed, first + i, s), so the
/// draws do not depend on how the samples are cut into micro-batches or on the thread count.
/// out: [n, S, C] (C = numel(z) / n), row-major. For cross-entropy with `labels`, ignored rows
/// get zero gradients (they are not part of the loss).
template <class T>
void loss_sample_gradients(LossKind kind, ConstView<T> z, std::int64_t first, std::int64_t S, std::uint64_t seed,
                           double* out, const std::int64_t* labels = nullptr,
                           std::int64_t ignore_index = kDefaultIgnoreIndex);

/// The softmax of one row of logits z[0..C) in float64 into p (C values); returns log(sum exp(z -
/// max)) + max, the row's log-sum-exp. The exponentials come from Eigen's vectorized double exp
/// (within an ulp or two of std::exp) in padded chunks of 8, so an element's bits do not depend on
/// C or its position; the sum runs in index order. Every cross-entropy path (loss, gradient,
/// Hessian product, sampled and exact Fisher factors) uses it, so they agree on p bit for bit.
template <class T>
double softmax_row(const T* z, std::int64_t C, double* p);

/// A uniform double in [0, 1) from a counter-based hash of (seed, a, b, c) (splitmix64 rounds):
/// the reproducible random source of sampled labels.
double hashed_uniform(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c);

}  // namespace curv
