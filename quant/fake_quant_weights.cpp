#include "quant/fake_quant_weights.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace curv::quant {

WeightFakeQuantizer::WeightFakeQuantizer(const Model& m, const Plan& plan) : m_params(m.num_params()) {
  const std::vector<ModelLayer> layers = quantizable_layers(m);
  std::map<std::string, const ModelLayer*> by_name;
  for (const ModelLayer& l : layers) by_name[l.name] = &l;
  for (const PlanLayer& pl : plan.layers) {
    const auto it = by_name.find(pl.name);
    if (it == by_name.end() || it->second->numel != pl.numel)
      throw std::invalid_argument("plan layer '" + pl.name + "' is not a quantizable layer of the model with " +
                                  std::to_string(pl.numel) + " weights");
    Layer l;
    l.layer = *it->second;
    l.offset = m.params()[l.layer.param].offset;
    l.spec.bits = pl.bits;
    l.spec.scheme = pl.scheme;
    l.spec.granularity = pl.granularity;
    l.spec.groups = pl.granularity == Granularity::Group ? static_cast<int>(pl.groups) : 1;
    if (num_groups(l.spec, l.layer.channels) != pl.groups)
      throw std::invalid_argument("plan layer '" + pl.name + "' has " + std::to_string(pl.groups) +
                                  " groups, the model's tensor has " + std::to_string(l.layer.channels) +
                                  " output channels");
    m_layers.push_back(l);
  }
}

void WeightFakeQuantizer::apply(std::vector<double>& w) const {
  if (static_cast<std::int64_t>(w.size()) != m_params)
    throw std::invalid_argument("WeightFakeQuantizer: " + std::to_string(w.size()) + " parameters, the model has " +
                                std::to_string(m_params));
  std::vector<double> cm;
  for (const Layer& l : m_layers) {
    if (!l.active) continue;
    const ModelLayer& ml = l.layer;
    double* x = w.data() + l.offset;
    cm.assign(x, x + ml.numel);
    if (ml.transposed) {  // [in, out] -> [out, in]
      const std::int64_t in = ml.shape[0], out = ml.shape[1];
      for (std::int64_t i = 0; i < in; ++i)
        for (std::int64_t o = 0; o < out; ++o) cm[o * in + i] = x[i * out + o];
    }
    const std::vector<std::int64_t> shape = ml.channel_shape();
    const QuantizedTensor<double> q = quantize<double>(cm, shape, l.spec);
    const std::vector<double> back = model_layout(ml, q.dequantized);
    std::copy(back.begin(), back.end(), x);
  }
}

}  // namespace curv::quant

namespace curv::quant {

void WeightFakeQuantizer::set_active(const std::vector<std::string>& names) {
  for (const std::string& n : names)
    if (std::none_of(m_layers.begin(), m_layers.end(), [&](const Layer& l) { return l.layer.name == n; }))
      throw std::invalid_argument("'" + n + "' is not a layer of the plan");
  for (Layer& l : m_layers) l.active = std::find(names.begin(), names.end(), l.layer.name) != names.end();
}

std::vector<std::string> WeightFakeQuantizer::stage_layers(const std::vector<std::string>& order, int stage,
                                                           int stages) {
  if (stages < 1 || stage < 0 || stage >= stages)
    throw std::invalid_argument("stage " + std::to_string(stage) + " of " + std::to_string(stages) + " does not exist");
  const std::size_t L = order.size();
  const std::size_t k = (static_cast<std::size_t>(stage + 1) * L + static_cast<std::size_t>(stages) - 1) / stages;
  return std::vector<std::string>(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(std::min(k, L)));
}

}  // namespace curv::quant
