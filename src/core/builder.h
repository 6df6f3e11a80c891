#pragma once
/// \file builder.h
/// A small Sequential-style C++ builder for models (tests, benchmarks, `--arch`), with
/// PyTorch-style parameter names and PyTorch's default initialization
/// (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases of Linear and Conv).
#include <cstdint>
#include <random>
#include <string>

#include "src/core/model.h"
#include "src/core/ops.h"

namespace curv {

class ModelBuilder {
 public:
  /// `integer_input`: the input holds integers (token ids).
  ModelBuilder(Shape sample_shape, std::uint64_t seed, const std::string& input_name = "input",
               bool integer_input = false);

  /// Per-sample shape of a value.
  Shape shape(int v) const;
  int input() const { return m_input; }

  int param(const std::string& name, Shape shape, double bound);  // U(-bound, bound)
  int param_const(const std::string& name, Shape shape, double value);
  int constant(const std::string& name, Tensor<double> value);
  int node(const std::string& name, OpPtr op, const std::vector<int>& inputs);

  /// x: [N, in] -> [N, out] via Gemm(x, W^T) + b, W: [out, in] named "<name>.weight".
  int linear(int x, std::int64_t out, const std::string& name, bool bias = true);
  /// x: [N, ..., in] -> [N, ..., out] via MatMul(x, W^T) + b (as torch.onnx exports Linear on 3-D input).
  int linear_nd(int x, std::int64_t out, const std::string& name, bool bias = true);
  int conv(int x, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t pad, const std::string& name,
           bool bias = true, std::int64_t groups = 1, std::int64_t dilation = 1);
  /// weight/bias parameters, running_mean/running_var constants (randomized when `random_stats`).
  int batch_norm(int x, const std::string& name, bool training = false, bool random_stats = false);
  int layer_norm(int x, const std::string& name);
  int unary(int x, UnaryKind kind, double param = 0.0);
  int relu(int x) { return unary(x, UnaryKind::Relu); }
  int max_pool(int x, std::int64_t k, std::int64_t s, std::int64_t pad = 0);
  int avg_pool(int x, std::int64_t k, std::int64_t s, std::int64_t pad = 0);
  int global_avg_pool(int x);
  int flatten(int x);
  int add(int a, int b);
  int binary(int a, int b, BinaryKind kind);

  /// Sets the output and returns the model.
  Model finish(int output);

 private:
  std::string auto_name(const std::string& type);
  Model m_model;
  int m_input;
  std::mt19937_64 m_rng;
  int m_counter = 0;
};

/// Built-in architectures for `--arch`:
///   mlp[:H1-H2-...]  flatten, Linear+ReLU hidden layers (default 128-64), Linear head
///   lenet            LeNet-5 style CNN (conv5-pool-conv5-pool-fc120-fc84-fc)
///   resnet20         CIFAR ResNet-20 (He et al. 2016), BatchNorm folded into conv biases,
///                    1x1 projection shortcuts; 271,690 parameters on 3x32x32 inputs
///   resnet20-bn      the same with BatchNorm layers (training mode when `bn_training`)
///   resnet20-noskip[-bn]  the same without the shortcut connections (Li et al. 2018's
///                    "noshort" networks: every block is relu(bn2(conv2(relu(bn1(conv1 x))))))
///   vit[:P-D-L-H]    small ViT: PxP patches embedded to width D by a strided conv, learned
///                    position embedding, L pre-norm blocks with H heads and a 2D GELU MLP,
///                    mean-pooled tokens, LayerNorm, linear head (default vit:7-32-2-4)
///   gpt[:D-L-H]      small GPT language model on token ids [T]: token embedding (Embedding,
///                    `num_classes` rows = the vocabulary) plus a learned position embedding, L
///                    pre-norm blocks with H heads, causal attention (a constant mask of -1e9 above
///                    the diagonal added to the scores) and a 4D GELU MLP, a final LayerNorm and an
///                    untied linear head to logits [T, V] (default gpt:32-2-4); train it on labels
///                    [N, T] (the next tokens)
/// `input_name` names the model's input (a single-input model reads the data's first array).
Model build_arch(const std::string& spec, const Shape& sample_shape, std::int64_t num_classes, std::uint64_t seed,
                 bool bn_training = false, const std::string& input_name = "input");

}  // namespace curv
