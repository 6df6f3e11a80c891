#pragma once
/// \file optimizer.h
/// First-order optimizers on a flat parameter vector, with PyTorch's exact update rules
/// (torch.optim, foreach=False), so one step equals PyTorch's step to rounding:
///
///   SGD    g <- g + wd w;  b <- mu b + (1 - dampening) g  (b = g on the first step);
///          d = g + mu b (nesterov) or b (momentum) or g;   w <- w - lr d
///   Adam   g <- g + wd w;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
///          w <- w - lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
///   AdamW  w <- w (1 - lr wd); then Adam without the wd term
///
/// The state (momentum buffer, first and second moments, step count) is exposed as named flat
/// vectors so a checkpoint can store it and a resumed run continues bit for bit.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace curv {

enum class OptimizerKind { Sgd, Adam, AdamW };

OptimizerKind parse_optimizer(const std::string& s);  // "sgd" | "adam" | "adamw"
const char* optimizer_name(OptimizerKind k);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::Sgd;
  /// SGD momentum mu (0: plain SGD).
  double momentum = 0.0;
  /// SGD dampening of the momentum buffer update.
  double dampening = 0.0;
  /// Nesterov momentum (SGD; REQUIRES momentum > 0 and dampening == 0).
  bool nesterov = false;
  /// L2 penalty added to the gradient (SGD, Adam) or decoupled decay (AdamW).
  double weight_decay = 0.0;
  /// Adam / AdamW moment decay rates and denominator epsilon.
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class Optimizer {
 public:
  /// Throws std::invalid_argument naming the option on bad values (negative rates, betas outside [0, 1), ...).
  Optimizer(std::int64_t num_params, OptimizerOptions options);

  /// One update of w in place with gradient g (of the loss only: weight decay is applied here).
  /// REQUIRES: w and g have num_params() entries, lr finite and >= 0.
  void step(std::vector<double>& w, const std::vector<double>& g, double lr);

  std::int64_t num_params() const { return m_n; }
  std::int64_t steps() const { return m_steps; }
  const OptimizerOptions& options() const { return m_options; }

  /// Named state vectors ("momentum_buffer" | "exp_avg", "exp_avg_sq"), empty before the first step.
  std::map<std::string, std::vector<double>> state() const;
  /// Restores state saved by state(); throws std::invalid_argument on unknown names or lengths.
  void set_state(const std::map<std::string, std::vector<double>>& state, std::int64_t steps);

 private:
  std::int64_t m_n;
  OptimizerOptions m_options;
  std::int64_t m_steps = 0;
  std::vector<double> m_buf, m_m, m_v;
};

}  // namespace curv
