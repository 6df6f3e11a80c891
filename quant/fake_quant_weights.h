#pragma once
/// \file fake_quant_weights.h
/// The weight side of quantization-aware training (`curv train --quant-plan`): the forward and
/// gradient passes see Q(W) for every plan layer, with scales recomputed from the current latent
/// weights W at every step (exactly what `quant apply` does at the end), and the gradient taken at
/// Q(W) updates W: the straight-through estimator, dQ/dW := I. Activations are fake-quantized in
/// the graph (activation.h), whose FakeQuantize op carries the same estimator.
#include <cstdint>
#include <vector>

#include "quant/model_layers.h"
#include "quant/plan.h"
#include "quant/quantizer.h"
#include "src/core/model.h"

namespace curv::quant {

class WeightFakeQuantizer {
 public:
  /// std::invalid_argument naming the layer if the plan does not fit the model (as apply_plan).
  WeightFakeQuantizer(const Model& m, const Plan& plan);

  /// Replaces the active plan layers' weights in `w` (the flat parameter vector, Model order) by
  /// Q(W). REQUIRES: w.size() == the model's parameter count.
  void apply(std::vector<double>& w) const;

  /// Quantize only these layers (HAWQ-V1's staged fine-tuning); every plan layer by default.
  /// std::invalid_argument for a name that is not a plan layer.
  void set_active(const std::vector<std::string>& names);

  /// The layers of `order` (e.g. Plan::fine_tune_order) active in stage `stage` of `stages`:
  /// the first ceil((stage + 1) L / stages) of them. REQUIRES: 0 <= stage < stages.
  static std::vector<std::string> stage_layers(const std::vector<std::string>& order, int stage, int stages);

 private:
  struct Layer {
    ModelLayer layer;
    std::int64_t offset = 0;  // into the flat parameter vector
    QuantSpec spec;
    bool active = true;
  };
  std::vector<Layer> m_layers;
  std::int64_t m_params = 0;
};

}  // namespace curv::quant
