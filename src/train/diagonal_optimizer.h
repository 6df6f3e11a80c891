#pragma once
/// \file diagonal_optimizer.h
/// Optimizers preconditioned by a stochastic Hessian diagonal (hessian_diagonal.h), refreshed
/// every `hessian_every` steps: at steps t = 1, k + 1, 2k + 1, ... (t counts from 1) the trainer
/// hands a fresh estimate D^ of the current mini-batch to refresh(); the other steps reuse the
/// last one. Flat parameter vector; g is the loss gradient (no weight decay in it).
///
///   AdaHessian (Yao et al. 2021, as the authors' reference optim_adahessian.py does it)
///     D    = |D^|, spatially averaged over convolution kernels (average_over_kernels)
///     m   <- b1 m + (1 - b1) g;          v <- b2 v + (1 - b2) D^2        (every step)
///     w   <- w - lr (m / (1 - b1^t) / ((sqrt v)^k / (sqrt(1 - b2^t))^k + eps) + wd w)
///     (k = hessian_power in [0, 1]; wd is decoupled as in the reference code; defaults there:
///      b = (0.9, 0.999), eps = 1e-4, k = 1)
///
///   Sophia (Liu et al. 2023, SophiaG, Algorithm 3 of the paper)
///     m   <- b1 m + (1 - b1) g                                          (every step)
///     h   <- b2 h + (1 - b2) D^                       (only at refresh steps; h_0 = 0)
///     w   <- w (1 - lr wd)                                              (decoupled decay)
///     w   <- w - lr clip(m / max(gamma h, eps), rho),   clip(x, r) = max(min(x, r), -r)
///     (defaults b = (0.965, 0.99), gamma = 0.01, rho = 1, eps = 1e-12, wd = 0.1 in the paper;
///      the authors' code calls gamma "rho" and uses gamma h + 1e-15 for the denominator)
///     clip_fraction() is the share of coordinates whose update was clipped in the last step.
///
/// The state (m, v or h, the last diagonal, step and refresh counts) is exposed as named flat
/// vectors, so a checkpoint stores it and a resumed run continues bit for bit; the probes need no
/// generator state (they are keyed by the refresh count).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/train/hessian_diagonal.h"

namespace curv {

enum class DiagonalKind { None, AdaHessian, Sophia };
/// "adahessian" | "sophia" -> the kind; anything else -> None.
DiagonalKind diagonal_kind(const std::string& optimizer);
const char* diagonal_kind_name(DiagonalKind k);

struct DiagonalOptimizerOptions {
  DiagonalKind kind = DiagonalKind::None;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-4;
  double weight_decay = 0.0;
  /// Steps between Hessian-diagonal refreshes (>= 1).
  std::int64_t hessian_every = 1;
  /// AdaHessian's Hessian power k in [0, 1].
  double hessian_power = 1.0;
  /// AdaHessian's averaging over convolution kernels.
  bool spatial_average = true;
  /// Sophia's gamma and clip threshold rho (both > 0).
  double gamma = 0.01, clip = 1.0;
  DiagonalEstimator estimator = DiagonalEstimator::Hutchinson;
  /// Seed of the probes and sampled labels.
  std::uint64_t seed = 0;
};

/// Throws std::invalid_argument naming the option when a value is out of range.
void validate(const DiagonalOptimizerOptions& o);

class DiagonalOptimizer {
 public:
  /// `model` gives the parameter shapes (for spatial averaging); it need not outlive the optimizer.
  DiagonalOptimizer(const Model& model, DiagonalOptimizerOptions options);

  /// Whether the next step() needs refresh() first.
  bool refresh_due() const { return m_steps % m_options.hessian_every == 0; }
  /// The draw number of the next refresh (probe and label seed counter).
  std::uint64_t next_draw() const { return std::uint64_t(m_refreshes); }
  /// Takes the raw estimate D^ of the current mini-batch (before |.| and averaging).
  void refresh(std::vector<double> d);
  /// One update of w in place. REQUIRES: a refresh on the first step.
  void step(std::vector<double>& w, const std::vector<double>& g, double lr);

  std::int64_t num_params() const { return m_n; }
  std::int64_t steps() const { return m_steps; }
  std::int64_t refreshes() const { return m_refreshes; }
  double clip_fraction() const { return m_clip_fraction; }
  const DiagonalOptimizerOptions& options() const { return m_options; }

  /// "exp_avg", "exp_hessian_diag_sq" (AdaHessian) or "hessian" (Sophia), "hessian_diag" (the last
  /// diagonal as used), "refreshes" (one entry).
  std::map<std::string, std::vector<double>> state() const;
  void set_state(const std::map<std::string, std::vector<double>>& state, std::int64_t steps);

 private:
  std::int64_t m_n;
  DiagonalOptimizerOptions m_options;
  std::vector<ParamInfo> m_params;  // shapes for the spatial averaging
  std::int64_t m_steps = 0, m_refreshes = 0;
  double m_clip_fraction = 0;
  std::vector<double> m_m, m_v, m_d;  // m, v (AdaHessian) or h (Sophia), last diagonal
};

}  // namespace curv
