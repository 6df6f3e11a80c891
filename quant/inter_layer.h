#pragma once
/// \file inter_layer.h
/// Beyond the block-diagonal Hessian: measured second-order terms of a quantization plan.
///
/// With dW_i(b) = Q_b(W_i) - W_i, the loss change of a plan is, to second order,
///     1/2 dW^T H dW = sum_i 1/2 dW_i^T H_ii dW_i + sum_{i<j} dW_i^T H_ij dW_j.
/// HAWQ models only the first sum, and only through a scalar sensitivity per block. This file
/// measures
///   - the inter-layer terms of adjacent layers (model order), C_i(b, b') = dW_i(b)^T H_{i,i+1}
///     dW_{i+1}(b') for every pair of candidate widths: one Hessian product per layer and width,
///     H [dW_i(b); 0] restricted to the pair's blocks, |bits| directions in one pass per layer;
///     the allocator keeps them exactly (a chain of pairwise terms is still a dynamic program);
///   - from the same products, the measured diagonal terms D_i(b) = 1/2 dW_i(b)^T H_ii dW_i(b), the
///     quantity HAWQ approximates by 1/2 s_i ||dW_i(b)||^2 (`--measured-blocks`);
///   - the whole plan's 1/2 dW^T H dW by a single product (`measured_omega` in plan.json).
/// Both on the Hessian of the mean loss over `data` (BatchNorm in inference mode).
#include <cstdint>
#include <vector>

#include "quant/model_layers.h"
#include "quant/plan.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::quant {

struct InterLayerTerms {
  /// c[i][x][y] = dW_i(bits[i][x])^T H_{i,i+1} dW_{i+1}(bits[i+1][y]), i = 0 .. L-2.
  std::vector<std::vector<std::vector<double>>> c;
  /// diag[i][x] = 1/2 dW_i(bits[i][x])^T H_ii dW_i(bits[i][x]), i = 0 .. L-1.
  std::vector<std::vector<double>> diag;
  std::int64_t products = 0;
};

/// `bits[i]` are layer i's candidate widths (quantized by spec's scheme and granularity).
/// std::invalid_argument if bits and layers differ in length.
InterLayerTerms inter_layer_terms(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                  const QuantSpec& spec, const std::vector<std::vector<int>>& bits,
                                  const ObjectiveOptions& objective);

/// 1/2 dW^T H dW of the plan's weight perturbation (all plan layers at their widths), one product.
/// std::invalid_argument naming the layer if the plan does not fit the model.
double measured_omega(const Model& m, const Dataset& data, const Plan& plan, const ObjectiveOptions& objective);

}  // namespace curv::quant
