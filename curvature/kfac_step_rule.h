#pragma once
/// \file kfac_step_rule.h
/// K-FAC as an optimizer (`curv train --optimizer kfac`; Martens & Grosse 2015, in the form of
/// kfac-pytorch's eigen method and kfac-jax), a StepRule (src/train/step_rule.h) on the Kfac
/// factors of curvature/kfac.h. Step t (0-based) on a mini-batch with gradient g at w:
///
///   factors   every factor_every steps (t % factor_every == 0; kfac-pytorch's
///             factor_update_steps) A_b, B_b of the mini-batch (Kfac, KfacOptions::type exact | mc |
///             empirical; mc labels seeded by (seed, t)), and running averages
///                 A <- A_b (t = 0),   A <- d A + (1 - d) A_b (t > 0),  likewise B,  d = stat_decay
///   inverses  every inv_every steps (t % inv_every == 0) the eigendecompositions of the running
///             A, B are refreshed (Kfac::set_factors); between refreshes the last ones are used
///   direction per K-FAC layer l, v_l = (A_l (x) B_l + lambda I)^-1 g_l (exact damping through the
///             eigendecompositions: Q (Q^T g / (beta alpha^T + lambda)) Q^T, KfacOperator in
///             Inverse mode); parameters of no K-FAC layer keep v = g (SGD fallback)
///   KL clip   nu = min(1, sqrt(kl_clip / |lr^2 sum_l v_l^T g_l|)); v_l <- nu v_l on the K-FAC
///             layers (kfac-pytorch; kl_clip = 0: off)
///   update    PyTorch SGD on v: v <- v + wd w,  b <- mu b + v (b = v at t = 0),  w <- w - lr b
///             (wd and mu as torch.optim.SGD, which kfac-pytorch wraps)
///   damping   with adapt_damping (Levenberg-Marquardt, Martens & Grosse 2015 section 6.5):
///             rho = (L(w_new) - L(w)) / (g^T s + 1/2 s^T (K + lambda I) s), s = w_new - w and K
///             the K-FAC curvature of the last refresh; lambda <- omega lambda if rho > 3/4,
///             lambda <- lambda / omega if rho < 1/4, omega = 19/20. One more forward pass.
///
/// Logged per step: damping, inverse_refresh (1 when refreshed), kl_nu, and rho with adaptation.
/// State (checkpoints): the running factors, the factors of the last refresh (whose
/// eigendecompositions are recomputed bit for bit on restore), lambda and SGD's momentum buffer.
///
/// Threads: the factors come from Objective::layer_io, deterministic for any thread count.
#include <memory>
#include <optional>

#include "curvature/kfac.h"
#include "src/train/optimizer.h"
#include "src/train/step_rule.h"

namespace curv {

struct KfacStepOptions {
  KfacType type = KfacType::MonteCarlo;
  double stat_decay = 0.95;
  std::int64_t inv_every = 10;
  std::int64_t factor_every = 1;
  double damping = 1e-3;
  bool adapt_damping = false;
  double kl_clip = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
  std::uint64_t seed = 0;
};

/// std::invalid_argument naming the option unless stat_decay in [0, 1), inv_every and
/// factor_every >= 1, inv_every a multiple of factor_every, damping
/// > 0 and finite, kl_clip >= 0, momentum in [0, 1), weight_decay >= 0.
void validate_kfac_step(const KfacStepOptions& o);

class KfacStepRule final : public StepRule {
 public:
  /// Throws std::invalid_argument on bad options or when `model` has no layer K-FAC supports;
  /// `notes` receives one line naming the parameters that fall back to SGD (empty when none).
  KfacStepRule(const Model& model, KfacStepOptions options, std::string* notes = nullptr);
  ~KfacStepRule() override;

  std::string name() const override { return "kfac"; }
  void step(const StepContext& at, std::vector<double>& w, const std::vector<double>& g,
            OptimizerRecord& log) override;
  std::map<std::string, std::vector<double>> state() const override;
  void set_state(const std::map<std::string, std::vector<double>>& state) override;

  double damping() const { return m_damping; }
  std::int64_t steps() const { return m_steps; }

 private:
  KfacStepOptions m_options;
  std::vector<LinearLayer> m_layers;
  std::vector<int> m_kfac_params;           // parameters of the K-FAC layers, Model order
  std::vector<std::pair<std::int64_t, std::int64_t>> m_rows;  // their (offset, size) in w
  std::int64_t m_n = 0;
  double m_damping;
  std::int64_t m_steps = 0;
  std::vector<Eigen::MatrixXd> m_A, m_B;          // running averages
  std::vector<Eigen::MatrixXd> m_A_inv, m_B_inv;  // factors of the last refresh
  std::unique_ptr<Kfac> m_kfac;                   // holds the last refresh and its eigendecompositions
  Optimizer m_sgd;
};

}  // namespace curv
