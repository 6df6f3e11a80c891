#include "quant/quantized_eval.h"

#include "quant/activation.h"
#include "quant/model_quant.h"

namespace curv::quant {

Model quantized_model(const Model& model, const Plan& plan) {
  Model m = model;
  apply_plan(m, plan);
  return with_activation_quantizers(m, plan);
}

EvalResult evaluate_quantized(const Model& model, const Dataset& data, const Plan& plan, ObjectiveOptions options) {
  const Model m = quantized_model(model, plan);
  options.cache_bytes = 0;
  auto objective = Objective::create(m, data, options);
  return objective->evaluate();
}

}  // namespace curv::quant
