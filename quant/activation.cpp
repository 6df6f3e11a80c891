#include "quant/activation.h"

#include <map>
#include <stdexcept>

#include "quant/act_quantizer.h"
#include "quant/internal/model_rewrite.h"
#include "src/core/fake_quantize.h"
#include "src/core/ops.h"

namespace curv::quant {

Model with_input_perturbations(const Model& m, const std::vector<ModelLayer>& layers, std::vector<int>& delta_params) {
  std::vector<internal::Splice> splices;
  std::vector<std::string> names;
  for (const ModelLayer& l : layers) {
    const Value& in = m.values().at(l.input);
    Shape shape = in.shape;  // Input: per-sample shape; Node: shape at batch 1
    if (in.kind == ValueKind::Node && (shape.empty() || shape[0] != 1 || in.shape2.empty() || in.shape2[0] != 2))
      throw std::invalid_argument("layer " + l.name + ": its input " + in.name + " " + shape_str(in.shape) +
                                  " has no leading batch dimension");
    if (in.kind != ValueKind::Node && in.kind != ValueKind::Input)
      throw std::invalid_argument("layer " + l.name + ": its input " + in.name + " is not an activation");
    const std::string name = l.name + ".input_delta";
    names.push_back(name);
    splices.push_back({l.node, l.input_slot, [shape, name](Model& r, int v) {
                         const int d = r.add_parameter(name, Tensor<double>(shape));
                         return r.add_node(name + "/Add", make_binary(BinaryKind::Add), {v, d});
                       }});
  }
  Model r = internal::splice_inputs(m, splices);
  delta_params.clear();
  for (const std::string& n : names) delta_params.push_back(r.find_param(n));
  return r;
}

std::vector<Sensitivity> activation_sensitivities(const Model& m, const Dataset& data,
                                                  const std::vector<ModelLayer>& layers, SensitivityOptions opts,
                                                  SensitivityReport* report) {
  std::vector<int> deltas;
  const Model pm = with_input_perturbations(m, layers, deltas);
  // The delta blocks as pseudo-layers: the trace machinery needs the parameter and its size.
  std::vector<ModelLayer> pseudo;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    ModelLayer l;
    l.name = layers[i].name + ".input_delta";
    l.param = deltas[i];
    l.numel = pm.params()[deltas[i]].size;
    l.channels = 1;
    pseudo.push_back(l);
  }
  opts.kind = SensitivityKind::Trace;
  return layer_sensitivities(pm, data, pseudo, opts, report);
}

Model with_activation_quantizers(const Model& m, const Plan& plan) {
  const std::vector<ModelLayer> layers = quantizable_layers(m);
  std::map<std::string, const ModelLayer*> by_name;
  for (const ModelLayer& l : layers) by_name[l.name] = &l;
  std::vector<internal::Splice> splices;
  for (const PlanLayer& pl : plan.layers) {
    if (pl.act_bits <= 0) continue;
    const auto it = by_name.find(pl.name);
    if (it == by_name.end())
      throw std::invalid_argument("plan layer '" + pl.name + "' is not a quantizable layer of the model");
    const FakeQuantizeAttrs a = act_quant_params(pl.act_lo, pl.act_hi, pl.act_bits, pl.act_scheme);
    const std::string name = pl.name + "/act_quant";
    splices.push_back({it->second->node, it->second->input_slot, [a, name](Model& r, int v) {
                         return r.add_node(name, make_fake_quantize(a), {v});
                       }});
  }
  if (splices.empty()) return m;
  return internal::splice_inputs(m, splices);
}

}  // namespace curv::quant
