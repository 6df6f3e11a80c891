#pragma once
/// \file objective.h
/// The mean loss of a model over a fixed sample set, with its gradient and exact curvature
/// products on blocks of directions.
///
///   L(w) = (1/N) sum_n l(f(x_n; w), y_n)
///   Hessian          H v = d/dt grad L(w + t v)           (forward-over-reverse, exact)
///   Gauss-Newton     G v = (1/N) sum_n J_n^T H_l J_n v
///   empirical Fisher F v = (1/N) sum_n g_n g_n^T v,  g_n = grad l_n (per-sample gradient)
///
/// The sample set is cut into micro-batches of a fixed size that run in parallel on oneTBB; the
/// per-micro-batch results are combined by a deterministic reduction tree, so every result is
/// identical for any thread count. A product on k directions shares one primal pass; the primal
/// activations and gradients of every micro-batch are kept between calls while they fit
/// `cache_bytes`, since estimators apply the operator hundreds of times on one sample set.
///
/// Lifetime: the Objective keeps references to the Model (graph only: parameters are copied) and
/// the Dataset; both must outlive it. Not thread-safe: one call at a time.
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/loss.h"
#include "src/core/model.h"

namespace curv {

enum class Precision { Float32, Float64 };
enum class Curvature { Hessian, GGN, EmpiricalFisher };

const char* curvature_name(Curvature c);
Curvature parse_curvature(const std::string& s);  // "hessian" | "ggn" | "ef"

struct ObjectiveOptions {
  /// Precision of the model's forward and derivative kernels; reductions are always float64.
  Precision precision = Precision::Float32;
  /// Samples per micro-batch. Fixes the reduction order (and BatchNorm batch statistics in
  /// training mode), so results depend on it but never on the thread count.
  std::int64_t micro_batch = 16;
  /// Memory budget for keeping primal activations and gradients of all micro-batches between
  /// calls; 0 disables the cache (each product then redoes the primal pass).
  std::size_t cache_bytes = std::size_t(8) << 30;
  /// Upper bound on tangent memory per micro-batch; larger direction blocks are processed in
  /// column groups (results do not change).
  std::size_t tangent_bytes = std::size_t(1) << 30;
  /// Directions per tangent pass; 0 = automatic (see Objective::product). Results do not change.
  std::int64_t group_directions = 0;
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;  // NaN for regression
  std::int64_t samples = 0;
};

/// Per-layer quantities for K-FAC and per-sample statistics: the input of a parameterized node
/// (Gemm, MatMul, Conv) and the gradient of the loss with respect to its output, for one
/// micro-batch, as float64 copies.
struct LayerIO {
  int node = -1;
  std::int64_t first_sample = 0;
  Tensor<double> input;        // [n, ...]
  Tensor<double> output_grad;  // [n, ...], gradient of the mean loss (scaled by 1/N)
};

/// The batch mean and unbiased batch variance per channel of one BatchNorm node on one micro-batch.
struct BatchNormStats {
  int node = -1;
  std::int64_t first_sample = 0;
  std::vector<double> mean, var;
};

class Objective {
 public:
  using Vector = Eigen::VectorXd;
  using Matrix = Eigen::MatrixXd;

  /// REQUIRES: model has an input and an output; data matches the model's input shape and its
  /// loss kind (integer labels: logits [N, C]; float targets: output shaped like the targets).
  static std::unique_ptr<Objective> create(const Model& model, const Dataset& data, const ObjectiveOptions& opts = {});
  virtual ~Objective() = default;

  virtual std::int64_t num_params() const = 0;
  virtual std::int64_t num_samples() const = 0;
  virtual LossKind loss_kind() const = 0;
  virtual const Model& model() const = 0;

  virtual EvalResult evaluate() = 0;
  virtual double value() = 0;
  /// Returns L(w) and writes grad L(w) (length num_params()).
  virtual double gradient(Vector& g) = 0;
  /// Y = C V for a block of k directions. With `params` empty, V is P x k over all parameters;
  /// otherwise V has the summed size of the listed parameter tensors (in that order) and Y is
  /// the matching diagonal block of C.
  virtual void product(Curvature c, const Matrix& V, Matrix& Y, const std::vector<int>& params = {}) = 0;

  /// Replaces the parameters (flat vector, Model order); drops cached activations.
  virtual void set_params(const std::vector<double>& w) = 0;
  virtual std::vector<double> params() const = 0;
  virtual void clear_cache() = 0;
  /// Bytes held by cached micro-batch passes.
  virtual std::size_t cache_bytes_used() const = 0;
  /// Number of primal (forward + backward) passes over micro-batches run so far.
  virtual std::int64_t primal_passes() const = 0;

  /// Calls f for every parameterized node and micro-batch, in a fixed order (sequentially).
  virtual void layer_io(const std::function<void(const LayerIO&)>& f) = 0;

  /// Batch statistics of the BatchNorm nodes in training mode (ops that mix the batch), as the
  /// last primal pass of each micro-batch computed them: one entry per micro-batch (in sample
  /// order) and node (in model order). Empty when the model has no such node or before any pass.
  virtual std::vector<BatchNormStats> batch_norm_stats() const = 0;
};

/// Running-statistics update of PyTorch's BatchNorm in training mode, applied once per entry in
/// order (so micro-batches act as ghost batches of the size of a micro-batch):
///   running_mean <- (1 - momentum) running_mean + momentum mean
///   running_var  <- (1 - momentum) running_var  + momentum var_unbiased
/// The running statistics are the node's constant inputs 3 and 4 in `model`.
void update_running_stats(Model& model, const std::vector<BatchNormStats>& stats, double momentum);

}  // namespace curv
