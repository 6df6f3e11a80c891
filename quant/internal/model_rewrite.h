#pragma once
/// \file model_rewrite.h
/// Copies of a model with extra nodes spliced in front of chosen node inputs (private to quant/):
/// activation perturbations (a' = a + delta) and activation fake-quantizers.
///
/// The copy adds the input, then every parameter in index order (so the flat parameter vector of
/// the original is a prefix of the copy's), then every constant, then the nodes in order; before
/// node k it calls `make(model, value)` for each splice on k, which may add parameters and nodes
/// and returns the value that replaces the node's input. Metadata is copied.
#include <functional>
#include <vector>

#include "src/core/model.h"

namespace curv::quant::internal {

struct Splice {
  int node = -1;  // node index in the original model
  int slot = 0;   // which input of the node
  std::function<int(Model&, int)> make;
};

/// REQUIRES: splice nodes and slots exist (std::invalid_argument otherwise).
Model splice_inputs(const Model& m, const std::vector<Splice>& splices);

}  // namespace curv::quant::internal
