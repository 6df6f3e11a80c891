#include "quant/model_layers.h"

#include <algorithm>
#include <stdexcept>

namespace curv::quant {

std::vector<std::int64_t> ModelLayer::channel_shape() const { return {channels, numel / std::max<std::int64_t>(channels, 1)}; }

std::vector<ModelLayer> quantizable_layers(const Model& m) {
  std::vector<ModelLayer> out;
  std::vector<bool> seen(m.params().size(), false);
  for (std::size_t ni = 0; ni < m.nodes().size(); ++ni) {
    const Node& n = m.nodes()[ni];
    const std::string t = n.op->type();
    if (t != "Conv" && t != "Gemm" && t != "MatMul") continue;
    for (size_t a = 0; a < n.inputs.size() && a < 2; ++a) {
      const Value& v = m.values()[n.inputs[a]];
      if (v.kind != ValueKind::Parameter || v.shape.size() < 2 || seen[v.index]) continue;
      seen[v.index] = true;
      const ParamInfo& p = m.params()[v.index];
      // MACs per sample: output elements (batch 1) times the weights each one reads.
      const Shape& o = m.values()[n.output].shape;  // batch 1
      const std::int64_t out_features = t == "Conv" ? o.at(1) : o.back();
      ModelLayer l;
      l.name = p.name;
      l.param = v.index;
      l.node = static_cast<int>(ni);
      l.input_slot = a == 0 ? 1 : 0;
      l.input = n.inputs[l.input_slot];
      l.shape = p.shape;
      l.numel = p.size;
      l.macs = numel(o) * (p.size / std::max<std::int64_t>(out_features, 1));
      // A right-hand [in, out] weight: MatMul, or Gemm without transB.
      const bool right = a == 1 && p.shape.size() == 2;
      l.transposed = right && (t == "MatMul" || n.op->attributes().find("transB=0") != std::string::npos);
      l.channels = l.transposed ? p.shape[1] : p.shape[0];
      out.push_back(std::move(l));
    }
  }
  return out;
}

std::int64_t unquantized_bytes(const Model& m, const std::vector<ModelLayer>& layers) {
  std::int64_t q = 0;
  for (const auto& l : layers) q += l.numel;
  return 4 * (m.num_params() - q);
}

std::vector<double> channel_major(const Model& m, const ModelLayer& l) {
  const Tensor<double>& w = m.param(l.param);
  if (!l.transposed) return std::vector<double>(w.data(), w.data() + w.size());
  const std::int64_t in = l.shape[0], out = l.shape[1];
  std::vector<double> cm(static_cast<std::size_t>(w.size()));
  for (std::int64_t i = 0; i < in; ++i)
    for (std::int64_t o = 0; o < out; ++o) cm[o * in + i] = w.data()[i * out + o];
  return cm;
}

std::vector<double> model_layout(const ModelLayer& l, std::span<const double> cm) {
  if (!l.transposed) return std::vector<double>(cm.begin(), cm.end());
  const std::int64_t in = l.shape[0], out = l.shape[1];
  std::vector<double> w(cm.size());
  for (std::int64_t i = 0; i < in; ++i)
    for (std::int64_t o = 0; o < out; ++o) w[i * out + o] = cm[o * in + i];
  return w;
}

std::vector<double> quantization_delta(const Model& m, const ModelLayer& l, const QuantSpec& spec) {
  const QuantizedTensor<double> q = quantize_layer(m, l, spec);
  std::vector<double> d = model_layout(l, q.dequantized);
  const Tensor<double>& w = m.param(l.param);
  for (std::size_t k = 0; k < d.size(); ++k) d[k] -= w.data()[k];
  return d;
}

void set_channel_major(Model& m, const ModelLayer& l, std::span<const double> cm) {
  Tensor<double>& w = m.param(l.param);
  if (static_cast<std::int64_t>(cm.size()) != w.size())
    throw std::invalid_argument("layer " + l.name + ": " + std::to_string(cm.size()) + " values for a tensor of " +
                                std::to_string(w.size()));
  if (!l.transposed) {
    std::copy(cm.begin(), cm.end(), w.data());
    return;
  }
  const std::int64_t in = l.shape[0], out = l.shape[1];
  for (std::int64_t i = 0; i < in; ++i)
    for (std::int64_t o = 0; o < out; ++o) w.data()[i * out + o] = cm[o * in + i];
}

QuantizedTensor<double> quantize_layer(const Model& m, const ModelLayer& l, const QuantSpec& spec) {
  const std::vector<double> cm = channel_major(m, l);
  const std::vector<std::int64_t> shape = l.channel_shape();
  return quantize<double>(cm, shape, spec);
}

std::vector<double> layer_quantization_errors(const Model& m, const ModelLayer& l, const QuantSpec& spec,
                                              std::span<const int> bits) {
  const std::vector<double> cm = channel_major(m, l);
  const std::vector<std::int64_t> shape = l.channel_shape();
  std::vector<double> e;
  for (int b : bits) {
    QuantSpec q = spec;
    q.bits = b;
    e.push_back(quantization_error_sq<double>(cm, shape, q));
  }
  return e;
}

}  // namespace curv::quant
