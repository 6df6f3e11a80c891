#pragma once
/// \file activation.h
/// Activation quantization of a model (HAWQ-V2's activation part):
///
/// Sensitivity. The Hessian of the mean loss with respect to a quantized layer's input activations
/// is measured by a zero "perturbation" parameter delta of the per-sample activation shape added to
/// the input, a' = a + delta (broadcast over the batch). With the samples independent (BatchNorm in
/// inference mode), L(delta) = (1/N) sum_n l_n(a_n + delta), so
///     H_delta = (1/N) sum_n d^2 l_n / d a_n^2,    Tr(H_delta) = (1/N) sum_n tr(d^2 l_n / d a_n^2),
/// which is the trace of the Hessian of the mean loss with respect to all N activations a_1..a_N
/// (its block diagonal is (1/N) d^2 l_n / d a_n^2). tests/test_quant_activation.cpp checks this
/// against dense Hessians of a tiny network. The sensitivity is s_a = Tr(H_delta) / n_a (n_a
/// values per sample) and Omega_a(b) = 1/2 s_a (1/N) sum_n ||Q_b(a_n) - a_n||^2.
///
/// Application. A plan layer with act_bits > 0 gets a FakeQuantize node (per tensor, its
/// calibrated range; act_quantizer.h) in front of its data input; everything else is unchanged and
/// the parameters keep their order.
#include <string>
#include <vector>

#include "quant/hessian_sensitivity.h"
#include "quant/model_layers.h"
#include "quant/plan.h"
#include "src/core/dataset.h"
#include "src/core/model.h"

namespace curv::quant {

/// The model with a zero parameter "<layer name>.input_delta" added to the data input of each of
/// `layers`; the new parameters come after the model's own, their indices in `delta_params`.
/// std::invalid_argument if a layer's input has no leading batch dimension.
Model with_input_perturbations(const Model& m, const std::vector<ModelLayer>& layers, std::vector<int>& delta_params);

/// Tr(H_a) / n_a of each layer's input (the trace options of `opts`: method, probes, tolerance,
/// sketch, seed), kind Trace, in `layers` order. `report` as for layer_sensitivities.
std::vector<Sensitivity> activation_sensitivities(const Model& m, const Dataset& data,
                                                  const std::vector<ModelLayer>& layers, SensitivityOptions opts,
                                                  SensitivityReport* report = nullptr);

/// The model with a FakeQuantize node before the data input of every plan layer with act_bits > 0
/// (named "<layer name>/act_quant"). std::invalid_argument naming the layer if a plan layer is not
/// a quantizable layer of the model.
Model with_activation_quantizers(const Model& m, const Plan& plan);

}  // namespace curv::quant
