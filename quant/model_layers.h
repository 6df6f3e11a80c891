#pragma once
/// \file model_layers.h
/// Which tensors of a model are quantized, and their weights in the quantizer's layout.
///
/// Quantizable layers are the weight tensors (rank >= 2 parameters) of Conv, Gemm and MatMul
/// nodes; biases, norms and other parameters stay float32 and are counted as unquantized storage.
/// The quantizer groups output channels, so it sees every weight channel-major, [out, inner]:
///   Conv W [O, C/g, kh, kw]             as stored (out = O)
///   Gemm B [out, in] (transB = 1)       as stored
///   Gemm B [in, out] (transB = 0), MatMul B [in, out] (PyTorch's exported Linear on 3-D input)
///                                        transposed to [out, in] ("transposed" layers)
/// so per-channel scales are always per output feature. A MatMul or Gemm weight used as the left
/// operand is taken as stored.
///
/// Each layer also names the activation it reads (the node's data input), for activation
/// quantization and activation sensitivities.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "quant/quantizer.h"
#include "src/core/model.h"

namespace curv::quant {

struct ModelLayer {
  std::string name;        // the weight parameter's name, e.g. "layer1.0.conv1.weight"
  int param = -1;          // index into Model::params()
  int node = -1;           // the Conv / Gemm / MatMul node that reads it
  int input = -1;          // value id of the node's data (activation) input
  int input_slot = 0;      // its position among the node's inputs
  Shape shape;             // weight shape as stored
  std::int64_t numel = 0;
  std::int64_t macs = 0;      // multiply-accumulates per sample
  bool transposed = false;    // stored [in, out]: quantized as its transpose
  std::int64_t channels = 0;  // output channels (the quantizer's first dimension)
  /// The quantizer's shape: [channels, numel / channels].
  std::vector<std::int64_t> channel_shape() const;
};

/// The quantizable layers in node order (a weight read by two nodes is listed once).
std::vector<ModelLayer> quantizable_layers(const Model& m);

/// Bytes of float32 storage outside the quantized layers.
std::int64_t unquantized_bytes(const Model& m, const std::vector<ModelLayer>& layers);

/// The layer's weights in channel-major layout (a copy, transposed for "transposed" layers).
std::vector<double> channel_major(const Model& m, const ModelLayer& layer);
/// Channel-major values `cm` of `layer` in the model's layout (transposed back if needed).
std::vector<double> model_layout(const ModelLayer& layer, std::span<const double> cm);
/// Writes channel-major values `cm` back into the model's tensor of `layer`.
void set_channel_major(Model& m, const ModelLayer& layer, std::span<const double> cm);

/// Quantizes the layer's weights (channel-major) by `spec`.
QuantizedTensor<double> quantize_layer(const Model& m, const ModelLayer& layer, const QuantSpec& spec);

/// dW = Q(W) - W of the layer by `spec`, in the model's layout.
std::vector<double> quantization_delta(const Model& m, const ModelLayer& layer, const QuantSpec& spec);

/// e(b) = ||Q_b(W) - W||^2 of the layer for each width in `bits` (spec's scheme and granularity).
std::vector<double> layer_quantization_errors(const Model& m, const ModelLayer& layer, const QuantSpec& spec,
                                              std::span<const int> bits);

}  // namespace curv::quant
