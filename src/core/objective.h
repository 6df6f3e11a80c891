#pragma once
/// \file objective.h
/// The mean loss of a model over a fixed sample set, with its gradient and exact curvature
/// products on blocks of directions.
///
///   L(w) = (1/N) sum_n l(f(x_n; w), y_n)
///   Hessian          H v = d/dt grad L(w + t v)           (forward-over-reverse, exact)
///   Gauss-Newton     G v = (1/N) sum_n J_n^T H_l J_n v
///   empirical Fisher F v = (1/N) sum_n g_n g_n^T v,  g_n = grad l_n (per-sample gradient)
///   true Fisher      F v = (1/N) sum_n J_n^T E_y[d d^T] J_n v,  d = grad_z l(z_n, y), y ~ p(y | x_n; w)
///                    Monte Carlo with S labels per sample (ObjectiveOptions::fisher_samples):
///                    F^ v = (1/N) sum_n J_n^T [(1/S) sum_s d_ns d_ns^T] J_n v (loss_sample_gradients).
///                    E_y[d d^T] = Lambda_n, the loss Hessian in z, for both losses here (softmax
///                    cross-entropy and MSE as a Gaussian likelihood), so the exact Fisher equals the
///                    GGN; fisher_samples = 0 selects it. The draws are keyed by (seed, sample, draw),
///                    so F^ is one fixed symmetric PSD matrix for a seed, whatever the micro-batches
///                    and threads: estimators may apply it many times. Sampling costs O(S C) per
///                    sample and direction at the output only; the passes through the model are
///                    those of a GGN product.
///
/// Parallel design (results are bit-identical for any thread count, for the same micro-batch):
///  - The N samples are cut into micro-batches of B samples (ObjectiveOptions::micro_batch, or
///    chosen from the layer shapes: resolve_micro_batch). A micro-batch is the unit of work of one
///    thread: its GEMMs have B x (output positions) columns, which is what makes B large for models
///    whose weights sit in layers with few positions (ResNet-18's last stage is 1 x 1 on 32 x 32
///    inputs), and small (16) for models whose layers have many.
///  - The micro-batches form R = min(chunks, 16) runs of consecutive micro-batches. Workers take
///    runs in order; a run adds the parameter gradients of its micro-batches (or the k tangents of
///    a product) in place into one accumulator of P x k values in the model's precision: Conv, Gemm
///    and MatMul accumulate their weight gradients straight into it (GEMM with beta = 1), other ops
///    through a temporary. Finished runs are committed in run order into the float64 result,
///    result = ((run_0 + run_1) + run_2) + ..., and their accumulators return to a pool. Run 0 of a
///    gradient or a one-direction product accumulates in the result's own storage (P values of T in
///    the first bytes of P doubles) and is widened in place when run 1 is committed, in the same
///    pass (double(run_0) + double(run_1)), or alone when it is the only run: one accumulator fewer.
///    These P-sized element-wise passes (and the directions' conversion to T) run in blocks on
///    oneTBB; each element's operations do not depend on the blocks.
///  - Kernels are sequential within a micro-batch, except large GEMMs, which split their output into
///    blocks of a size fixed by the matrix shapes and run them on oneTBB (isolated from other work).
///    Every floating-point operation is therefore fixed by (B, model, data), never by the schedule.
///    Float32 convolutions on oneDNN (conv.cpp) follow the same rule: one oneDNN thread per call.
///  - A product on k directions shares one primal pass. The primal passes (activations and op
///    states; after a Hessian product also the activation gradients its second-order terms read:
///    Op::tangent_reads_output_grad) are kept between calls within ObjectiveOptions::cache_bytes,
///    since estimators apply the operator hundreds of times on one sample set; passes that do not
///    fit are recomputed by every call. A gradient frees each activation gradient as soon as its
///    node has run, as PyTorch's backward does.
///  - Values and forward tangents that only the forward sweeps read are freed as soon as their last
///    consumer has run (Op::derivatives_read_input, derivatives_read_output,
///    tangent_reads_input_tangent): a convolution's output under a ReLU or a residual Add, that
///    Add's output, the inputs of shape ops, and their tangents. ReLU's kernels read its output
///    instead of its input (the same derivative, bit for bit). A kept ResNet-50 pass holds about 37%
///    of its node values.
///
/// Memory (T = sizeof(model precision), P parameters, k directions, per sample: A bytes of the node
/// values a pass keeps, G of the activation gradients a Hessian product keeps, S of op state; B
/// samples per micro-batch, W = micro-batches in flight = min(threads, R), c <= N samples with kept
/// passes):
///   gradient  T P (parameters) + (min(R, W+1) - 1) T P (runs) + W B (A + S) + c (A + S)
///             + 8 P result (holding run 0)
///   product   T P + T P k (directions) + (min(R, W+1) - [k = 1]) T P k (runs)
///             + W B (A + S + G + ~1.5 k A) (passes and tangents in flight, tangents freed as the
///             reverse sweep goes) + c (A + S + G)                                   + 8 P k result
/// plus, per thread that runs float32 convolutions on oneDNN, channels-last copies of the largest
/// convolution's input and output (doubled for the tangent kernels' stacked pairs) and its weights,
/// kept between calls (internal/onednn_conv.cpp; outside the engine's allocation count), and the
/// engine's block pool (memory.h): buffers of 256 KiB and more that a pass freed, kept for the next
/// pass to reuse without page faults, at most block_pool_limit() bytes (1 GiB by default; `curv
/// bench --memory-gb` lowers it to an eighth of the budget), resident but not counted as held.
/// ObjectiveOptions::memory_bytes caps the sum: the cache shrinks first (recomputation), then fewer
/// micro-batches run at once. The engine's allocations are counted (memory.h); a test checks the
/// cap with them.
///
/// Lifetime: the Objective keeps references to the Model (graph only: parameters are copied) and
/// the Dataset; both must outlive it. Not thread-safe: one call at a time.
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/linear_layers.h"
#include "src/core/loss.h"
#include "src/core/model.h"

namespace curv {

enum class Precision { Float32, Float64 };
/// The curvature kinds, named alike in the library, the CLI (--curvature), JSON and HDF5:
/// "hessian", "ggn", "fisher" (the true Fisher: labels sampled from the model) and "ef" (the
/// empirical Fisher: the data's labels).
enum class Curvature { Hessian, GGN, Fisher, EmpiricalFisher };

const char* curvature_name(Curvature c);
/// "hessian" | "ggn" | "fisher" | "ef"; anything else throws std::invalid_argument.
Curvature parse_curvature(const std::string& s);

struct ObjectiveOptions {
  /// Precision of the model's forward and derivative kernels; reductions are always float64.
  Precision precision = Precision::Float32;
  /// Samples per micro-batch; 0 = chosen from the layer shapes (resolve_micro_batch). Fixes the
  /// reduction order (and BatchNorm batch statistics in training mode), so results depend on it
  /// but never on the thread count.
  std::int64_t micro_batch = 0;
  /// Cap on the bytes of primal passes (activations, op states, activation gradients) kept between
  /// calls; passes beyond it are recomputed by every call. 0 disables the cache.
  std::size_t cache_bytes = std::size_t(8) << 30;
  /// Cap on all memory the Objective allocates (its parameter copy, direction block, kept passes,
  /// passes, tangents and accumulators in flight); 0 = none besides cache_bytes. Exceeding it
  /// degrades to recomputation (a smaller cache), then to fewer micro-batches at once; results do
  /// not change. One micro-batch always runs, so a cap below that is exceeded (use a smaller
  /// micro_batch then).
  std::size_t memory_bytes = 0;
  /// Upper bound on tangent memory per micro-batch; larger direction blocks are processed in
  /// column groups (results do not change).
  std::size_t tangent_bytes = std::size_t(1) << 30;
  /// Directions per tangent pass; 0 = automatic (see Objective::product). Results do not change.
  std::int64_t group_directions = 0;
  /// Curvature::Fisher: sampled labels per sample (S); 0 = the exact Fisher (which equals the GGN).
  std::int64_t fisher_samples = 1;
  /// Curvature::Fisher: seed of the sampled labels.
  std::uint64_t fisher_seed = 0;
  /// Cross-entropy: labels equal to this are skipped and the mean runs over the others
  /// (torch.nn.CrossEntropyLoss's ignore_index).
  std::int64_t ignore_index = kDefaultIgnoreIndex;
  /// gradient() keeps, with each pass it keeps, the activation gradients a Hessian product reads
  /// (as a Hessian product does), so a Hessian product that follows at the same parameters skips
  /// its own backward sweep (GAM, Hutchinson diagonals: gradient then H g on one batch). Costs
  /// the memory of those gradients (G per sample, see Memory above); results do not change.
  bool keep_activation_grads = false;
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;  // NaN for regression; per labelled position for language models
  std::int64_t samples = 0;
  std::int64_t labelled = 0;   // cross-entropy: rows the mean runs over (positions for language models)
  bool per_position = false;   // labels [N, T, ...]: a language model (perplexity = exp(loss))
};

/// Cotangents seeded at the model output z_n, per sample n, for Objective::layer_io. Each is
/// unscaled (no 1/N), so the layer sees J_n^T u with J_n the Jacobian of z_n w.r.t. its output:
///   LossHessianRoot  the C columns of a factor M_n with M_n M_n^T = Lambda_n (loss Hessian in z):
///                    cross-entropy M = diag(sqrt p) - p sqrt(p)^T (p = softmax z; any factor gives
///                    the same sum of outer products), MSE M = sqrt(2/D) I
///   Sampled          d_ns / sqrt(S), s < S: loss gradients at labels drawn from the model
///                    (loss_sample_gradients with the given seed), so sum_s u u^T estimates Lambda_n
///   Gradient         dl_n/dz_n at the data's labels (empirical Fisher)
enum class OutputSeeds { LossHessianRoot, Sampled, Gradient };

/// One micro-batch of one supported linear layer (linear_layers.h): its input at its positions or
/// back-propagated output cotangents, expanded to rows (spatial positions as extra rows). A sink
/// gets, per micro-batch, one LayerIO with the input per layer (output_grads empty), then per
/// cotangent u_r one LayerIO per layer with that one output gradient (input empty), so that one
/// layer's expanded matrix at a time is alive. A float32 model fills the `_f` members instead of
/// the float64 ones when the sink's wants_float() says so (no conversion, half the memory).
struct LayerIO {
  int layer = -1;                  // index into find_linear_layers(model).layers
  std::int64_t first_sample = 0, count = 0;
  Eigen::MatrixXd input;           // [count T, in_ext]: expand_layer_input (or empty)
  std::vector<Eigen::MatrixXd> output_grads;  // [count T, out]: J^T u_r, expand_layer_output (or none)
  Eigen::MatrixXf input_f;                      // the same in float32 (wants_float(), float32 models)
  std::vector<Eigen::MatrixXf> output_grads_f;  // the same in float32
};

/// The input of one node on one micro-batch, as the forward pass computed it (Objective::node_inputs).
struct NodeInput {
  int node = -1;
  std::int64_t first_sample = 0;
  Tensor<double> input;  // [n, ...]
};

/// Receives the LayerIO of the micro-batches of one run (see layer_io).
class LayerSink {
 public:
  virtual ~LayerSink() = default;
  /// Starts a new run: forget what the previous run added.
  virtual void reset() = 0;
  virtual void add(const LayerIO& io) = 0;
  /// True: a float32 model passes its rows as float32 (LayerIO::input_f, output_grads_f).
  virtual bool wants_float() const { return false; }
  /// Bytes the sink holds (its accumulators), counted against ObjectiveOptions::memory_bytes.
  virtual std::size_t bytes() const { return 0; }
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

  /// REQUIRES: model has an input and an output; data has an array for every model input (named
  /// after it; `x` serves a single-input model) of its shape, and matches the loss kind (integer
  /// labels [N]: logits [N, C]; labels [N, T...]: logits [N, T..., V], the language-model loss over
  /// positions; float targets: output shaped like the targets). Integer indices that feed an
  /// Embedding's table straight from the data are checked against the table's rows here.
  /// For language models the "samples" of the empirical Fisher and of the sampled Fisher's labels
  /// are the labelled positions: F = (1/M) sum_t g_t g_t^T over the M kept positions.
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
  /// The standard error of v_j^T Y_j, per column j of the last product(): for the Monte Carlo
  /// Fisher the spread of the sampled labels, sqrt(sum_n Var_y[(d^T J_n v)^2] / (N^2 S)), with
  /// Var_y estimated from the S draws around the known mean v^T J_n^T Lambda_n J_n v (so S = 1
  /// works); zeros for exact products.
  virtual const Vector& product_stderr() const = 0;
  /// Curvature::Fisher: labels sampled per sample (ObjectiveOptions::fisher_samples; 0 = exact).
  virtual std::int64_t fisher_samples() const = 0;
  /// Curvature::Fisher: replaces the seed of the sampled labels (ObjectiveOptions::fisher_seed)
  /// for the products that follow, i.e. switches to another independent draw F^' of the Monte
  /// Carlo Fisher (kept passes stay valid: the labels are drawn at the output of each product).
  /// Estimators that need one fixed matrix must not see a change between their products.
  virtual void set_fisher_seed(std::uint64_t seed) = 0;
  virtual std::uint64_t fisher_seed() const = 0;

  /// Replaces the parameters (flat vector, Model order); drops cached activations.
  virtual void set_params(const std::vector<double>& w) = 0;
  virtual std::vector<double> params() const = 0;
  virtual void clear_cache() = 0;
  /// Bytes held by cached micro-batch passes.
  virtual std::size_t cache_bytes_used() const = 0;
  /// Estimated bytes of the primal passes of all micro-batches with their activation gradients
  /// (what the cache holds when everything fits).
  virtual std::size_t cache_bytes_estimate() const = 0;
  /// Samples per micro-batch (resolved when ObjectiveOptions::micro_batch is 0).
  virtual std::int64_t micro_batch() const = 0;
  /// Number of primal (forward + backward) passes over micro-batches run so far.
  virtual std::int64_t primal_passes() const = 0;

  /// K-FAC's passes: for every micro-batch, the primal pass (kept or computed, as for products),
  /// then one reverse pass per output cotangent u_r (`seeds`, R of them; `samples` and `seed` for
  /// OutputSeeds::Sampled), each read at every supported linear layer's output. Micro-batches run
  /// in parallel in runs (as gradient()); a run feeds its micro-batches in order to a sink from
  /// `make` (after reset()), and finished runs go to `commit` in run order, never concurrently, so
  /// sums formed by commit are the same for any thread count. Kept passes stay untouched.
  /// Memory: per micro-batch in flight, a pass, its R output cotangents and one expanded LayerIO
  /// (the largest: T B in_ext elements), plus a sink (LayerSink::bytes()) per run in flight. When
  /// ObjectiveOptions::memory_bytes leaves no room for a whole micro-batch's expansion, the rows are
  /// expanded and passed to the sink in slices of fewer samples (the same rows, so the same sums up
  /// to rounding; the slicing depends on the cap and the model, never on the thread count).
  virtual void layer_io(OutputSeeds seeds, std::int64_t samples, std::uint64_t seed,
                        const std::function<std::unique_ptr<LayerSink>()>& make,
                        const std::function<void(LayerSink&)>& commit) = 0;

  /// Calls f with the first input of each node in `nodes` on every micro-batch, micro-batches in
  /// order and nodes in the given order within one (sequentially; kept passes are reused and stay
  /// untouched). Used to calibrate activation quantizers.
  virtual void node_inputs(const std::vector<int>& nodes, const std::function<void(const NodeInput&)>& f) = 0;

  /// Batch statistics of the BatchNorm nodes in training mode (ops that mix the batch), as the
  /// last primal pass of each micro-batch computed them: one entry per micro-batch (in sample
  /// order) and node (in model order). Empty when the model has no such node or before any pass.
  virtual std::vector<BatchNormStats> batch_norm_stats() const = 0;
};

/// The micro-batch an Objective uses for `samples` samples of `model`: opts.micro_batch when it is
/// positive. Otherwise 16 for models with ops that mix the batch (BatchNorm with batch statistics:
/// the ghost-batch size), and else the smallest power of two B in [16, 256] for which layers
/// holding at least 90% of the parameters have weight-gradient GEMMs with at least 64 columns
/// (B x the positions where a weight row is applied: H_out W_out for a Conv, 1 for a Linear),
/// bounded so that a micro-batch's activations stay under 256 MB; then evened out over the
/// micro-batches it needs (128 samples at B = 48 run as 3 x 43, not 48 + 48 + 32).
std::int64_t resolve_micro_batch(const Model& model, std::int64_t samples, const ObjectiveOptions& opts);

/// Running-statistics update of PyTorch's BatchNorm in training mode, applied once per entry in
/// order (so micro-batches act as ghost batches of the size of a micro-batch):
///   running_mean <- (1 - momentum) running_mean + momentum mean
///   running_var  <- (1 - momentum) running_var  + momentum var_unbiased
/// The running statistics are the node's constant inputs 3 and 4 in `model`.
void update_running_stats(Model& model, const std::vector<BatchNormStats>& stats, double momentum);

}  // namespace curv
