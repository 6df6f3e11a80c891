#pragma once
/// \file quantized_eval.h
/// Loss and accuracy of a model quantized by a plan (`curv quant eval`): the plan's layers are
/// replaced by their dequantized weights (apply_plan), activation quantizers are inserted where
/// the plan quantizes a layer's input (with_activation_quantizers), then the model is evaluated
/// on the data with no activation cache (one pass).
#include "quant/plan.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

/// The model as the plan quantizes it: dequantized weights and activation FakeQuantize nodes.
/// std::invalid_argument naming the layer if the plan does not fit the model.
Model quantized_model(const Model& model, const Plan& plan);

/// Evaluates quantized_model(model, plan). Data errors as Objective::create.
EvalResult evaluate_quantized(const Model& model, const Dataset& data, const Plan& plan, ObjectiveOptions options);

}  // namespace curv::quant
