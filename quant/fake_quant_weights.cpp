#include "quant/fake_quant_weights.h"

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
