#pragma once
/// \file landscape_directions.h
/// Directions in parameter space for loss landscapes (Li et al. 2018, "Visualizing the Loss
/// Landscape of Neural Nets"), in the model's flat parameter order (model.h).
///
/// Filter normalization, as loss-landscape's `net_plotter.normalize_directions_for_weights` with
/// norm = "filter" does it. For each parameter tensor W of rank >= 2 (a convolution kernel
/// [out, in, kh, kw] or a linear weight [out, in], as stored) and each filter i, the slice along
/// dimension 0:
///     d_i <- d_i * ||W_i|| / (||d_i|| + 1e-10)
/// For each tensor of rank <= 1 (biases, normalization scales and shifts):
///     d <- 0  if the tensor is ignored (below),  else  d <- W  (loss-landscape's d.copy_(w)).
/// Ignored classes (`--ignore bias,bn`; both together are loss-landscape's "biasbn"):
///     bias  rank <= 1 tensors that are not inputs of a BatchNormalization or LayerNormalization
///     bn    the scale and shift of BatchNormalization and LayerNormalization nodes
/// Without filter normalization a random direction keeps its N(0, 1) entries, except that ignored
/// tensors are still zeroed.
///
/// Random directions: standard normal entries from the seeded stream of curvature/internal/random.h
/// (Box-Muller over mt19937_64), so the same seed gives the same direction with any compiler.
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "src/core/model.h"

namespace curv {

struct DirectionOptions {
  /// Rescale every filter to the norm of the weights' filter (see the file comment).
  bool filter_norm = true;
  /// Zero the direction on biases and/or on normalization parameters.
  bool ignore_bias = false;
  bool ignore_bn = false;
};

/// Parses "bias", "bn", "bias,bn" (or "biasbn", or "" for none) into `o`; std::invalid_argument
/// naming an unknown item.
void parse_ignore(const std::string& spec, DirectionOptions& o);

/// Whether parameter tensor `param` (index into model.params()) is ignored by `o`.
bool ignored_param(const Model& model, int param, const DirectionOptions& o);

/// Applies the ignore rule and, with o.filter_norm, filter normalization to `d` in place.
/// `w` is the flat parameter vector. REQUIRES: d.size() == w.size() == model.num_params().
void normalize_direction(const Model& model, const std::vector<double>& w, const DirectionOptions& o,
                         Eigen::VectorXd& d);

/// A standard-normal direction from stream `seed`, then normalize_direction.
Eigen::VectorXd random_direction(const Model& model, const std::vector<double>& w, const DirectionOptions& o,
                                 std::uint64_t seed);

/// The two directions of a landscape and where they came from.
struct LandscapeDirections {
  Eigen::VectorXd x, y;  // y empty for a 1-D landscape
  std::string source;    // "random", "top-eig", or "<file>:<dataset>"
  std::int64_t products = 0;  // curvature products spent (top-eig)
};

/// Reads directions from `file`: datasets `xdirection` (and `ydirection` when `two_d`) of a curv
/// landscape file, or the first columns of `eigen/vectors` of a curv spectrum file, in `group`
/// (empty: the root, else the first run group that has them). std::runtime_error naming the
/// file when there are none or their length is not `params`.
LandscapeDirections read_directions(const std::string& file, const std::string& group, bool two_d,
                                    std::int64_t params);

}  // namespace curv
