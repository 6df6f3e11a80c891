#include "quant/quantized_eval.h"

#include "quant/model_quant.h"

namespace curv::quant {

EvalResult evaluate_quantized(const Model& model, const Dataset& data, const Plan& plan, ObjectiveOptions options) {
  Model m = model;
  apply_plan(m, plan);
  options.cache_bytes = 0;
  auto objective = Objective::create(m, data, options);
  return objective->evaluate();
}

}  // namespace curv::quant
