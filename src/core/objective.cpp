// The Objective: micro-batches over the sample set, the loss at the output, and the curvature
// seeds; graph passes in internal/graph_executor, the reduction in internal/deterministic_reduce,
// kept primal passes in internal/primal_cache.
#include "src/core/objective.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "src/core/internal/deterministic_reduce.h"
#include "src/core/internal/graph_executor.h"
#include "src/core/internal/primal_cache.h"
#include "src/core/memory.h"

namespace curv {

const char* curvature_name(Curvature c) {
  switch (c) {
    case Curvature::Hessian: return "hessian";
    case Curvature::GGN: return "ggn";
    case Curvature::Fisher: return "fisher";
    case Curvature::EmpiricalFisher: return "ef";
  }
  return "?";
}

Curvature parse_curvature(const std::string& s) {
  if (s == "hessian") return Curvature::Hessian;
  if (s == "ggn") return Curvature::GGN;
  if (s == "fisher") return Curvature::Fisher;
  if (s == "ef") return Curvature::EmpiricalFisher;
  throw std::invalid_argument("unknown curvature '" + s + "' (expected hessian, ggn, fisher or ef)");
}

namespace {

// Default bound on k x (parameters in a product) x sizeof(T) per tangent pass (see product()).
constexpr std::size_t kGroupParamBytes = std::size_t(768) << 10;
// Runs of micro-batches (see objective.h): the most micro-batches that run at once, and the number
// of P x k commits into the result.
constexpr std::int64_t kMaxRuns = 16;

// f(i0, i1) on consecutive blocks of [begin, end) in parallel: for elementwise work on P-sized
// buffers (each element's operations do not depend on the split, so neither do the bits). Isolated:
// called from a commit of ordered_runs, a waiting thread must not pick up one of its runs, which
// could then wait for this very commit.
template <class F>
void parallel_blocks(std::int64_t begin, std::int64_t end, const F& f) {
  constexpr std::int64_t kGrain = 1 << 16;
  if (end - begin <= kGrain) {
    if (end > begin) f(begin, end);
    return;
  }
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(begin, end, kGrain),
                      [&](const tbb::blocked_range<std::int64_t>& r) { f(r.begin(), r.end()); });
  });
}

using internal::GraphExecutor;
using internal::ordered_runs;
using internal::ParamSink;
using internal::Pass;

// Elements of value v for a batch of n samples (Value::shape is at batch 1, shape2 at batch 2).
std::int64_t value_elems(const Value& v, std::int64_t n) {
  const std::int64_t a = numel(v.shape), b = v.shape2.empty() ? a : numel(v.shape2);
  return a + (n - 1) * (b - a);
}

template <class T>
class ObjectiveImpl final : public Objective {
 public:
  ObjectiveImpl(const Model& model, const Dataset& data, const ObjectiveOptions& opts)
      : m_model(model), m_data(data), m_opts(opts), m_exec(model) {
    if (model.input() < 0 || model.output() < 0) throw std::invalid_argument("objective: model has no input or output");
    if (data.size() <= 0) throw std::invalid_argument("objective: empty sample set (" + data.source + ")");
    if (opts.micro_batch < 0) throw std::invalid_argument("objective: micro_batch must be positive (or 0: automatic)");
    if (opts.fisher_samples < 0)
      throw std::invalid_argument("objective: fisher_samples must be >= 0 (0: exact Fisher), got " +
                                  std::to_string(opts.fisher_samples));
    bind_inputs();
    // Losses read one row of the output per sample: the output must keep the batch axis first
    // (a ReduceMean over axis 0 or a Squeeze without axes removes it, and a loss with one label
    // per sample would then read past the labels).
    const Value& ov = model.values().at(model.output());
    if (ov.shape.empty() || ov.shape.size() != ov.shape2.size() || ov.shape[0] != 1 || ov.shape2[0] != 2 ||
        !std::equal(ov.shape.begin() + 1, ov.shape.end(), ov.shape2.begin() + 1))
      throw std::invalid_argument("objective: model output '" + ov.name + "' does not keep the batch axis first (shape " +
                                  shape_str(ov.shape) + " for 1 sample, " + shape_str(ov.shape2) + " for 2)");
    const Shape out = model.output_shape();
    if (data.classification()) {
      m_loss = LossKind::CrossEntropy;
      const Shape& ls = data.label_shape;
      m_rows = numel(ls);
      if (ls.empty() && out.size() != 1)
        throw std::invalid_argument("objective: integer labels need logits [N, classes], model output is " +
                                    shape_str(with_lead(1, out)));
      if (!ls.empty() && (out.size() != ls.size() + 1 || !std::equal(ls.begin(), ls.end(), out.begin())))
        throw std::invalid_argument("objective: targets " + shape_str(with_lead(data.size(), ls)) + " in " +
                                    data.source + " do not fit the logits " + shape_str(with_lead(data.size(), out)) +
                                    " (per-position targets [N, T] need logits [N, T, V])");
      if (static_cast<std::int64_t>(data.labels.size()) != data.size() * m_rows)
        throw std::invalid_argument("objective: " + std::to_string(data.labels.size()) + " labels for " +
                                    std::to_string(data.size()) + " samples in " + data.source);
      const std::int64_t classes = out.back();
      m_labelled = 0;
      for (auto y : data.labels) {
        if (y == opts.ignore_index) continue;
        if (y < 0 || y >= classes)
          throw std::invalid_argument("objective: label " + std::to_string(y) + " in " + data.source +
                                      " out of range for " + std::to_string(classes) + " model outputs");
        ++m_labelled;
      }
      if (m_labelled == 0)
        throw std::invalid_argument("objective: every label in " + data.source + " is the ignore index " +
                                    std::to_string(opts.ignore_index) + " (nothing to average)");
    } else {
      m_loss = LossKind::MeanSquaredError;
      m_labelled = data.size();
      if (numel(data.target_shape) != numel(out))
        throw std::invalid_argument("objective: targets " + shape_str(data.target_shape) + " in " + data.source +
                                    " do not match model output " + shape_str(out));
    }
    check_indices();
    m_micro_batch = resolve_micro_batch(model, data.size(), opts);
    for (std::int64_t f = 0; f < data.size(); f += m_micro_batch)
      m_chunks.push_back({f, std::min(m_micro_batch, data.size() - f)});
    m_exec.set_params(model.flat_params());
    for (const auto& v : model.values())
      if (v.kind == ValueKind::Node) m_act_per_sample += numel(v.shape) * sizeof(T);
    m_cache.configure(m_chunks.size(), opts.cache_bytes);
    for (size_t i = 0; i < model.nodes().size(); ++i)
      if (model.nodes()[i].op->mixes_batch()) m_bn_nodes.push_back(static_cast<int>(i));
    if (!m_bn_nodes.empty()) m_bn_stats.resize(m_chunks.size());
  }

  std::int64_t num_params() const override { return m_model.num_params(); }
  std::int64_t num_samples() const override { return m_data.size(); }
  LossKind loss_kind() const override { return m_loss; }
  const Model& model() const override { return m_model; }
  std::int64_t primal_passes() const override { return m_primal_passes.load(); }
  std::int64_t micro_batch() const override { return m_micro_batch; }

  void set_params(const std::vector<double>& w) override {
    if (static_cast<std::int64_t>(w.size()) != m_model.num_params())
      throw std::invalid_argument("objective: parameter vector of length " + std::to_string(w.size()) + ", expected " +
                                  std::to_string(m_model.num_params()));
    m_exec.set_params(w);
    clear_cache();
  }
  std::vector<double> params() const override {
    std::vector<double> w(m_model.num_params());
    const auto& params = m_exec.params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& p = m_model.params()[i];
      for (std::int64_t j = 0; j < p.size; ++j) w[p.offset + j] = params[i].data()[j];
    }
    return w;
  }
  void clear_cache() override { m_cache.clear(); }
  std::size_t cache_bytes_used() const override { return m_cache.bytes(); }
  std::size_t cache_bytes_estimate() const override {
    std::size_t b = 0;
    for (const auto& [first, count] : m_chunks) b += pass_bytes(count);
    return b;
  }

  EvalResult evaluate() override {
    struct Acc {
      double loss = 0;
      std::int64_t correct = 0;
    };
    EvalResult r;
    const std::int64_t workers = plan_workers(0);
    std::int64_t correct = 0;
    ordered_runs<Acc>(
        num_chunks(), kMaxRuns, workers, [] { return std::make_unique<Acc>(); },
        [&](std::int64_t, std::int64_t c0, std::int64_t c1, Acc& acc) {
          acc = Acc{};
          for (std::int64_t c = c0; c < c1; ++c) {
            std::unique_ptr<Pass<T>> tmp;
            Pass<T>& p = primal(c, tmp);
            acc.loss += p.loss_sum;
            acc.correct += p.correct;
            keep(c, tmp);
          }
        },
        [&](std::int64_t, Acc& acc) {
          r.loss += acc.loss;
          correct += acc.correct;
        });
    r.samples = m_data.size();
    r.labelled = m_labelled;
    r.per_position = !m_data.label_shape.empty() && m_loss == LossKind::CrossEntropy;
    r.accuracy = m_loss == LossKind::CrossEntropy ? double(correct) / double(m_labelled)
                                                   : std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  double value() override { return evaluate().loss; }

  double gradient(Vector& g) override {
    struct Acc {
      double loss = 0;
      Buffer<T> g;
    };
    const std::int64_t P = m_model.num_params();
    const auto& mp = m_model.params();
    const std::size_t acc_bytes = std::size_t(P) * sizeof(T);
    const std::int64_t workers = plan_workers(acc_bytes);
    g.resize(P);
    // Run 0 accumulates in the first P T-sized slots of g's own storage (sizeof(T) <= sizeof(double))
    // and is widened in place when it is committed (commit_in_place), so a gradient needs one P-sized
    // accumulator fewer than runs in flight (the same operations, in the same order, as with a
    // separate buffer).
    T* const run0 = reinterpret_cast<T*>(g.data());
    double loss = 0;
    ordered_runs<Acc>(
        num_chunks(), kMaxRuns, workers, [] { return std::make_unique<Acc>(); },
        [&](std::int64_t r, std::int64_t c0, std::int64_t c1, Acc& acc) {
          acc.loss = 0;
          T* dst = run0;
          if (r > 0) {
            acc.g.resize(P);
            dst = acc.g.data();
          }
          std::fill(dst, dst + P, T(0));
          ParamSink<T> sink(mp.size());
          for (size_t i = 0; i < mp.size(); ++i) sink[i] = dst + mp[i].offset;
          for (std::int64_t c = c0; c < c1; ++c) {
            std::unique_ptr<Pass<T>> tmp;
            Pass<T>& p = primal(c, tmp);
            // Parameter gradients into the run; activation gradients only transiently (a Hessian
            // product computes and keeps them), so a gradient holds what PyTorch's does, unless
            // keep_activation_grads keeps them for the Hessian product that follows.
            if (!p.has_grad) ensure_seed(p);
            m_exec.backward(p, &sink, m_opts.keep_activation_grads);
            acc.loss += p.loss_sum;
            keep(c, tmp);
          }
        },
        [&](std::int64_t r, Acc& acc) {
          loss += acc.loss;
          commit_in_place(g.data(), run0, P, r, acc.g.data());
        });
    return loss;
  }

  // y = double(s), or y += double(s) when `add`, for n elements.
  static void add_widened(double* y, const T* s, std::int64_t n, bool add) {
    parallel_blocks(0, n, [&](std::int64_t i0, std::int64_t i1) {
      if (add)
        for (std::int64_t i = i0; i < i1; ++i) y[i] += double(s[i]);
      else
        for (std::int64_t i = i0; i < i1; ++i) y[i] = double(s[i]);
    });
  }

  // Commit r into a result of n doubles y whose run 0 accumulated in y's own storage (run0): run 0
  // is widened together with run 1 (one pass over y instead of two, the same sums: double(run 0) +
  // double(run 1)), or alone when it is the only run; later runs (acc) are added.
  void commit_in_place(double* y, T* run0, std::int64_t n, std::int64_t r, const T* acc) const {
    if (r == 0) {
      if (num_runs() == 1) widen_in_place(run0, n);
    } else if (r == 1) {
      widen_in_place(run0, n, acc);
    } else {
      add_widened(y, acc, n, true);
    }
  }

  // Converts the n values of T at the start of `data` (the storage of n doubles) into those doubles,
  // x_i -> double(x_i), or double(x_i) + double(add_i) when `add` (n more values of T, elsewhere) is
  // given, in place: from the top down in blocks copied through a local buffer, so that
  // each block's doubles overwrite only values already converted or copied (the doubles of [i0, i1)
  // cover the bytes of the T values [i0 s, i1 s), s = sizeof(double) / sizeof(T) >= 1). memcpy keeps
  // the accesses byte-wise, free of type-aliasing assumptions.
  static void widen_in_place(T* data, std::int64_t n, const T* add = nullptr) {
    if constexpr (std::is_same_v<T, double>) {
      if (add) add_widened(data, add, n, true);
    } else {
      static_assert(sizeof(T) <= sizeof(double));
      constexpr std::int64_t kBlock = 1024;
      auto* bytes = reinterpret_cast<unsigned char*>(data);
      // Values [i0, i1) through a local buffer: their doubles [i0, i1) cover the bytes of the T
      // values [i0 s, i1 s), which must already be converted or be these values themselves.
      auto convert = [bytes, add](std::int64_t i0, std::int64_t i1) {
        T in[kBlock];
        double out[kBlock];
        for (std::int64_t b1 = i1; b1 > i0;) {
          const std::int64_t b0 = std::max(i0, b1 - kBlock), m = b1 - b0;
          std::memcpy(in, bytes + b0 * sizeof(T), m * sizeof(T));
          if (add)
            for (std::int64_t i = 0; i < m; ++i) out[i] = double(in[i]) + double(add[b0 + i]);
          else
            for (std::int64_t i = 0; i < m; ++i) out[i] = double(in[i]);
          std::memcpy(bytes + b0 * sizeof(double), out, m * sizeof(double));
          b1 = b0;
        }
      };
      // Values [i0, i1) of one band (below), whose doubles overlap none of its T values: straight
      // through, 16 at a time in fixed-size copies that compile to vector loads and stores (the
      // variable-length copies of `convert` called memmove twice per block: 3% of a ResNet-18 HVP).
      auto convert_band = [bytes, add](std::int64_t i0, std::int64_t i1) {
        constexpr std::int64_t kVec = 16;
        auto one = [&](std::int64_t i, auto width) {
          constexpr std::int64_t w = decltype(width)::value;
          T in[w];
          double out[w];
          std::memcpy(in, bytes + i * sizeof(T), sizeof in);
          for (std::int64_t e = 0; e < w; ++e) out[e] = add ? double(in[e]) + double(add[i + e]) : double(in[e]);
          std::memcpy(bytes + i * sizeof(double), out, sizeof out);
        };
        std::int64_t i = i0;
        for (; i + kVec <= i1; i += kVec) one(i, std::integral_constant<std::int64_t, kVec>{});
        for (; i < i1; ++i) one(i, std::integral_constant<std::int64_t, 1>{});
      };
      // From the top down in bands [lo, hi), lo = ceil(hi sizeof(T) / sizeof(double)): a band's
      // doubles lie at or above byte hi sizeof(T), past every T value not yet converted (its own
      // included), so the elements of one band are independent and run in parallel, in any order
      // (each element is converted once, so the result does not depend on the split). The last
      // small band, where a block's doubles overlap its own values, runs top down through `convert`.
      constexpr std::int64_t kSerial = 1 << 15;
      std::int64_t hi = n;
      while (hi > kSerial) {
        const std::int64_t lo = (hi * std::int64_t(sizeof(T)) + std::int64_t(sizeof(double)) - 1) / std::int64_t(sizeof(double));
        parallel_blocks(lo, hi, convert_band);
        hi = lo;
      }
      convert(0, hi);
    }
  }

  void product(Curvature curv, const Matrix& V, Matrix& Y, const std::vector<int>& params) override {
    // The parameters the directions live on, and their row offsets in V.
    std::vector<int> act = params;
    if (act.empty())
      for (size_t i = 0; i < m_model.params().size(); ++i) act.push_back(static_cast<int>(i));
    std::vector<std::int64_t> row(act.size());
    std::int64_t rows = 0;
    for (size_t a = 0; a < act.size(); ++a) {
      if (act[a] < 0 || act[a] >= static_cast<int>(m_model.params().size()))
        throw std::invalid_argument("objective: parameter index " + std::to_string(act[a]) + " out of range");
      row[a] = rows;
      rows += m_model.params()[act[a]].size;
    }
    if (V.rows() != rows)
      throw std::invalid_argument("objective: direction block has " + std::to_string(V.rows()) + " rows, expected " +
                                  std::to_string(rows) + " (the parameters it acts on)");
    const std::int64_t k = V.cols();
    Y.resize(rows, k);
    m_stderr = Vector::Zero(k);
    if (k == 0) return;
    // Direction groups bounded by tangent memory (a pass holds about 3 tangent copies) and by default
    // also by cache: every micro-batch of a pass streams the k parameter tangents (and their k
    // gradients) several times, so a group keeps them within kGroupParamBytes. Larger groups share
    // only the primal im2col and GEMM packing, which no longer pays for the lost locality: measured
    // on one thread, 16 directions in one pass took 2x (MLP) and 1.0-1.1x (ResNet-20) the time of
    // 16 single products. An explicit group_directions overrides the cache bound.
    const std::size_t per_dir = std::max<std::size_t>(1, 3 * m_act_per_sample * m_micro_batch);
    std::int64_t kmax = std::max<std::int64_t>(1, m_opts.tangent_bytes / per_dir);
    const std::size_t param_bytes = std::max<std::size_t>(1, std::size_t(rows) * sizeof(T));
    kmax = std::min(kmax, m_opts.group_directions > 0 ? m_opts.group_directions
                                                       : std::max<std::int64_t>(1, kGroupParamBytes / param_bytes));
    for (std::int64_t j0 = 0; j0 < k; j0 += kmax) {
      const std::int64_t kk = std::min(kmax, k - j0);
      auto Yg = Y.middleCols(j0, kk);
      product_group(curv, V.middleCols(j0, kk), Yg, act, row, rows);
      if (sampled_fisher(curv))  // per-chunk variances, added in chunk order
        for (std::int64_t j = 0; j < kk; ++j) {
          double v = 0;
          for (std::int64_t c = 0; c < num_chunks(); ++c) v += m_fisher_var[c * kk + j];
          m_stderr[j0 + j] = std::sqrt(v);
        }
    }
  }

  const Vector& product_stderr() const override { return m_stderr; }
  std::int64_t fisher_samples() const override { return m_opts.fisher_samples; }
  void set_fisher_seed(std::uint64_t seed) override { m_opts.fisher_seed = seed; }
  std::uint64_t fisher_seed() const override { return m_opts.fisher_seed; }

  std::vector<BatchNormStats> batch_norm_stats() const override {
    std::vector<BatchNormStats> r;
    for (const auto& chunk : m_bn_stats) r.insert(r.end(), chunk.begin(), chunk.end());
    return r;
  }

  void node_inputs(const std::vector<int>& nodes, const std::function<void(const NodeInput&)>& f) override {
    const auto& all = m_model.nodes();
    for (int i : nodes)
      if (i < 0 || i >= static_cast<int>(all.size()) || all[i].inputs.empty())
        throw std::invalid_argument("objective: node_inputs: no node " + std::to_string(i) + " with an input");
    // A kept pass has freed the values only the forward pass reads (GraphExecutor::drops): when one
    // of those is asked for, every chunk is run again with all its values.
    bool dropped = false;
    for (int i : nodes) dropped = dropped || m_exec.drops(all[i].inputs[0]);
    for (std::int64_t c = 0; c < num_chunks(); ++c) {
      std::unique_ptr<Pass<T>> tmp;
      Pass<T>& p = primal(c, tmp, dropped);
      for (int i : nodes) {
        NodeInput in;
        in.node = i;
        in.first_sample = m_chunks[c].first;
        ConstView<T> x = m_exec.view(p, all[i].inputs[0]);
        in.input = Tensor<double>(x.shape, std::vector<double>(x.data, x.data + x.size()));
        f(in);
      }
      if (!dropped) keep(c, tmp);
    }
  }

  void layer_io(OutputSeeds kind, std::int64_t samples, std::uint64_t seed,
                const std::function<std::unique_ptr<LayerSink>()>& make,
                const std::function<void(LayerSink&)>& commit) override {
    if (kind == OutputSeeds::Sampled && samples < 1)
      throw std::invalid_argument("objective: sampled output seeds need samples >= 1, got " + std::to_string(samples));
    if (m_layers.layers.empty()) m_layers = find_linear_layers(m_model);
    const auto& layers = m_layers.layers;
    const auto& nodes = m_model.nodes();
    std::vector<bool> read_at(m_model.values().size(), false);  // the layers' outputs
    for (const auto& l : layers) read_at[nodes[l.node].output] = true;
    std::size_t sink_bytes = 0;
    bool low = false;
    if (m_opts.memory_bytes > 0) {
      const auto probe = make();
      sink_bytes = probe->bytes();
      low = std::is_same_v<T, float> && probe->wants_float();
    }
    // Per sample: the largest expanded LayerIO (with the im2col of T when it is converted) and the
    // output cotangents (R tensors like the output).
    const std::size_t elem = low ? sizeof(float) : sizeof(double);
    std::size_t per_sample = 0;
    for (const auto& l : layers) {
      const std::size_t conv = low || std::is_same_v<T, double> ? 0 : std::size_t(l.in) * sizeof(T);
      per_sample = std::max(per_sample, std::size_t(l.positions) * (std::size_t(l.in_ext()) * elem + conv));
      per_sample = std::max(per_sample, std::size_t(l.positions) * std::size_t(l.out) * elem);
    }
    const std::int64_t out_elems = value_elems(m_model.values()[m_model.output()], 1);
    const std::int64_t R = kind == OutputSeeds::Gradient ? 1
                           : kind == OutputSeeds::Sampled ? samples
                                                          : out_elems / std::max<std::int64_t>(1, m_rows);
    const std::size_t seed_bytes = std::size_t(R * out_elems) * (sizeof(T) + (kind == OutputSeeds::Sampled ? 8 : 0));
    // Samples per expanded slice: the whole micro-batch unless the cap leaves room for fewer (one
    // micro-batch in flight; fixed by the cap and the model, not by the thread count).
    std::int64_t slice = m_micro_batch;
    if (m_opts.memory_bytes > 0) {
      const std::size_t fixed = std::size_t(m_model.num_params()) * sizeof(T) + 2 * sink_bytes +
                                pass_bytes(m_micro_batch) + std::size_t(m_micro_batch) * seed_bytes;
      const std::size_t room = m_opts.memory_bytes > fixed ? m_opts.memory_bytes - fixed : 0;
      slice = std::clamp<std::int64_t>(std::int64_t(room / std::max<std::size_t>(1, per_sample)), 1, m_micro_batch);
    }
    const std::int64_t workers =
        plan_workers(sink_bytes, std::size_t(m_micro_batch) * seed_bytes + std::size_t(slice) * per_sample);
    ordered_runs<LayerSink>(
        num_chunks(), kMaxRuns, workers, make,
        [&](std::int64_t, std::int64_t c0, std::int64_t c1, LayerSink& sink) {
          sink.reset();
          for (std::int64_t c = c0; c < c1; ++c) {
            std::unique_ptr<Pass<T>> tmp;
            Pass<T>& p = primal(c, tmp);
            layer_pass(p, kind, samples, seed, read_at, slice, sink);
            keep(c, tmp);
          }
        },
        [&](std::int64_t, LayerSink& sink) { commit(sink); });
  }

 private:
  std::int64_t num_chunks() const { return static_cast<std::int64_t>(m_chunks.size()); }
  std::int64_t num_runs() const { return internal::run_count(num_chunks(), kMaxRuns); }

  // Labels (cross-entropy) or targets (MSE) of the samples from `first` on, as loss_forward takes them.
  const std::int64_t* labels_at(std::int64_t first) const {
    return m_loss == LossKind::CrossEntropy ? &m_data.labels[first * m_rows] : nullptr;
  }
  // The output z [n, ...] as the loss reads it: [n R, C], R loss rows per sample (positions).
  ConstView<T> loss_view(const Tensor<T>& z) const {
    const std::int64_t rows = z.dim(0) * m_rows;
    return {z.data(), {rows, z.size() / std::max<std::int64_t>(rows, 1)}};
  }
  View<T> loss_view(Tensor<T>& z) const {
    const std::int64_t rows = z.dim(0) * m_rows;
    return {z.data(), {rows, z.size() / std::max<std::int64_t>(rows, 1)}};
  }
  double loss_scale() const { return 1.0 / double(m_labelled); }

  // Each model input reads the data array of its name (`x` for a single-input model).
  void bind_inputs() {
    const auto& vals = m_model.values();
    const auto& inputs = m_model.inputs();
    for (int v : inputs) {
      const Value& in = vals[v];
      const float* data = nullptr;
      const Shape* shape = nullptr;
      if (m_data.x_name == in.name || (inputs.size() == 1 && m_data.x_name == "x")) {
        data = m_data.x.data();
        shape = &m_data.sample_shape;
      }
      for (const auto& a : m_data.more)
        if (!data && a.name == in.name) data = a.values.data(), shape = &a.sample_shape;
      if (!data && inputs.size() == 1) data = m_data.x.data(), shape = &m_data.sample_shape;
      if (!data) {
        std::string have = "'" + m_data.x_name + "'";
        for (const auto& a : m_data.more) have += ", '" + a.name + "'";
        throw std::invalid_argument("objective: " + m_data.source + " has no array for the model input '" + in.name +
                                    "' (it has " + have + "; name the arrays after the model's inputs)");
      }
      if (*shape != in.shape)
        throw std::invalid_argument("objective: data samples " + shape_str(*shape) + " from " + m_data.source +
                                    " do not fit the model input '" + in.name + "' " + shape_str(in.shape));
      m_input_data.push_back({data, numel(*shape)});
    }
  }

  // Indices that go from the data straight into an Embedding: integers within the table's rows.
  void check_indices() const {
    const auto& vals = m_model.values();
    const auto& inputs = m_model.inputs();
    for (const Node& n : m_model.nodes()) {
      if (n.op->type() != "Embedding" || n.inputs.size() != 2) continue;
      const auto it = std::find(inputs.begin(), inputs.end(), n.inputs[1]);
      if (it == inputs.end()) continue;
      const auto a = static_cast<std::size_t>(it - inputs.begin());
      const Value& table = vals[n.inputs[0]];
      const std::int64_t axis = n.op->spec().get_int("axis");
      const std::int64_t rows = table.shape.at(static_cast<std::size_t>(axis < 0 ? axis + table.shape.size() : axis));
      const auto [x, per] = m_input_data[a];
      for (std::int64_t i = 0; i < m_data.size() * per; ++i) {
        const double id = x[i];
        if (id >= 0 && id < double(rows) && id == std::floor(id)) continue;
        std::ostringstream text;
        text << id;
        throw std::invalid_argument("objective: token id " + text.str() + " in '" +
                                    vals[n.inputs[1]].name + "' of " + m_data.source + " (sample " +
                                    std::to_string(i / per) + ") is not an integer in [0, " + std::to_string(rows) +
                                    "), the rows of '" + table.name + "' (node '" + n.name + "')");
      }
    }
  }
  const float* targets_at(std::int64_t first) const {
    return m_loss == LossKind::MeanSquaredError ? &m_data.targets[first * numel(m_data.target_shape)] : nullptr;
  }

  // Bytes of the values a pass keeps (not those its forward frees) or of its gradients, on n
  // samples, and of a whole kept pass: values, activation gradients and op state (measured on the
  // first pass; until then guessed as large as the values).
  std::size_t value_bytes(std::int64_t n, bool grads_only) const {
    std::size_t b = 0;
    const auto& vals = m_model.values();
    for (std::size_t i = 0; i < vals.size(); ++i) {
      const Value& v = vals[i];
      if (v.kind != ValueKind::Node) continue;
      if (!grads_only && m_exec.drops(static_cast<int>(i))) continue;  // freed by the forward pass
      if (grads_only && !(m_exec.depends_on_params(static_cast<int>(i)) && m_exec.keeps_grad(v.producer))) continue;
      b += value_elems(v, n) * sizeof(T);
    }
    return b;
  }
  std::size_t pass_bytes(std::int64_t n) const {
    const double s = m_state_per_sample.load();
    const std::size_t vals = value_bytes(n, false);
    return vals + value_bytes(n, true) + (s >= 0 ? std::size_t(s * double(n)) : vals);
  }

  // The primal pass of chunk c: kept, or computed (forward and loss) into tmp.
  // With all_values, always computed, with every value (none freed: GraphExecutor::drops).
  Pass<T>& primal(std::int64_t c, std::unique_ptr<Pass<T>>& tmp, bool all_values = false) {
    if (!all_values)
      if (Pass<T>* kept = m_cache.get(c)) return *kept;
    tmp = std::make_unique<Pass<T>>();
    forward(*tmp, m_chunks[c].first, m_chunks[c].second, all_values);
    if (!m_bn_nodes.empty()) record_bn_stats(c, *tmp);
    return *tmp;
  }
  // The output cotangents of layer_io for pass p: R tensors shaped like the output.
  std::vector<Tensor<T>> output_seeds(const Pass<T>& p, OutputSeeds kind, std::int64_t S, std::uint64_t seed) const {
    const Tensor<T>& z = p.vals[m_model.output()];
    const ConstView<T> zl = loss_view(z);  // [rows, C]
    const std::int64_t n = zl.dim(0), C = zl.dim(1);
    std::vector<Tensor<T>> u;
    if (kind == OutputSeeds::Gradient) {
      Tensor<T> g(z.shape()), dl(z.shape());
      View<T> dlv = loss_view(dl);
      loss_forward<T>(m_loss, zl, labels_at(p.first), targets_at(p.first), 1.0, loss_view(g), nullptr, &dlv,
                      m_opts.ignore_index);
      u.push_back(std::move(dl));
    } else if (kind == OutputSeeds::Sampled) {
      std::vector<double> d(std::size_t(n * S * C));
      loss_sample_gradients<T>(m_loss, zl, p.first * m_rows, S, seed, d.data(), labels_at(p.first),
                               m_opts.ignore_index);
      const double w = 1.0 / std::sqrt(double(S));
      for (std::int64_t s = 0; s < S; ++s) {
        Tensor<T> t(z.shape());
        for (std::int64_t i = 0; i < n; ++i)
          for (std::int64_t e = 0; e < C; ++e) t.data()[i * C + e] = T(w * d[(i * S + s) * C + e]);
        u.push_back(std::move(t));
      }
    } else {  // columns r of M_n, M_n M_n^T = Lambda_n
      if (m_rows > 1)  // one column set for all positions at once would add cross-position terms
        throw std::invalid_argument("objective: K-FAC's exact loss factors need one label per sample; " +
                                    m_data.source + " has labels per position (use sampled seeds)");
      std::vector<double> pr(C);
      for (std::int64_t r = 0; r < C; ++r) u.emplace_back(z.shape());
      for (std::int64_t i = 0; i < n; ++i) {
        const T* zi = z.data() + i * C;
        if (m_loss == LossKind::CrossEntropy) {
          softmax_row(zi, C, pr.data());
          // M = diag(q) - p q^T, q = sqrt(p): M M^T = diag(p) - 2 p p^T + p (q^T q) p^T = diag(p) - p p^T.
          for (std::int64_t r = 0; r < C; ++r)
            for (std::int64_t e = 0; e < C; ++e)
              u[r].data()[i * C + e] = T((e == r ? std::sqrt(pr[r]) : 0.0) - pr[e] * std::sqrt(pr[r]));
        } else {
          const double f = std::sqrt(2.0 / double(C));
          for (std::int64_t r = 0; r < C; ++r)
            for (std::int64_t e = 0; e < C; ++e) u[r].data()[i * C + e] = T(e == r ? f : 0.0);
        }
      }
    }
    return u;
  }

  // One micro-batch of layer_io: a reverse pass per output seed, read at the layers' outputs. The
  // pass's own gradients are set aside and restored, so a kept pass stays as it was.
  // One micro-batch of layer_io: a reverse pass per output seed, read at the layers' outputs, the
  // rows expanded `slice` samples at a time (counted in the engine's memory accounting). The pass's
  // own gradients are set aside and restored, so a kept pass stays as it was.
  void layer_pass(Pass<T>& p, OutputSeeds kind, std::int64_t S, std::uint64_t seed, const std::vector<bool>& read_at,
                  std::int64_t slice, LayerSink& sink) {
    const auto& layers = m_layers.layers;
    const auto& nodes = m_model.nodes();
    const bool low = std::is_same_v<T, float> && sink.wants_float();
    // Hands one slice to the sink, its matrices counted while they exist.
    auto hand = [&](LayerIO& io) {
      std::size_t b = std::size_t(io.input.size()) * 8 + std::size_t(io.input_f.size()) * 4;
      for (const auto& g : io.output_grads) b += std::size_t(g.size()) * 8;
      for (const auto& g : io.output_grads_f) b += std::size_t(g.size()) * 4;
      internal::track_alloc(b);
      sink.add(io);
      io = LayerIO();
      internal::track_free(b);
    };
    auto fresh = [&](std::size_t l, std::int64_t s0, std::int64_t n) {
      LayerIO io;
      io.layer = static_cast<int>(l);
      io.first_sample = p.first + s0;
      io.count = n;
      return io;
    };
    // Inputs first, one layer (and slice) at a time.
    for (std::size_t l = 0; l < layers.size(); ++l) {
      ConstView<T> x = m_exec.view(p, nodes[layers[l].node].inputs[0]);
      const std::int64_t xs = x.size() / std::max<std::int64_t>(1, p.count);
      for (std::int64_t s0 = 0; s0 < p.count; s0 += slice) {
        const std::int64_t n = std::min(slice, p.count - s0);
        LayerIO io = fresh(l, s0, n);
        const T* xp = x.data + s0 * xs;
        if constexpr (std::is_same_v<T, float>) {
          if (low) expand_layer_input_to<float>(m_model, layers[l], xp, n, io.input_f);
          else io.input = expand_layer_input<T>(m_model, layers[l], xp, n);
        } else {
          expand_layer_input_to<double>(m_model, layers[l], xp, n, io.input);
        }
        hand(io);
      }
    }
    std::vector<Tensor<T>> u = output_seeds(p, kind, S, seed);
    std::vector<Tensor<T>> saved = std::move(p.grads);
    const bool had = p.has_grad;
    for (auto& ur : u) {
      p.grads.assign(m_model.values().size(), Tensor<T>());
      p.has_grad = false;
      p.grads[m_model.output()] = std::move(ur);
      m_exec.backward(p, nullptr, false, &read_at);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        Tensor<T>& g = p.grads[nodes[layers[l].node].output];
        if (g.empty()) continue;  // the output does not depend on this layer: adds nothing
        const std::int64_t gs = g.size() / std::max<std::int64_t>(1, p.count);
        for (std::int64_t s0 = 0; s0 < p.count; s0 += slice) {
          const std::int64_t n = std::min(slice, p.count - s0);
          LayerIO io = fresh(l, s0, n);
          const T* gp = g.data() + s0 * gs;
          if constexpr (std::is_same_v<T, float>) {
            if (low) expand_layer_output_to<float>(layers[l], gp, n, io.output_grads_f.emplace_back());
            else io.output_grads.push_back(expand_layer_output<T>(layers[l], gp, n));
          } else {
            expand_layer_output_to<double>(layers[l], gp, n, io.output_grads.emplace_back());
          }
          hand(io);
        }
        g.clear();  // read: free it before the next layer's
      }
    }
    p.grads = std::move(saved);
    p.has_grad = had;
  }

  // Offers a computed pass to the cache, reserving room for the activation gradients it may grow.
  void keep(std::int64_t c, std::unique_ptr<Pass<T>>& tmp) {
    if (!tmp) return;
    const std::size_t b = tmp->bytes() + (tmp->has_grad ? 0 : value_bytes(tmp->count, true));
    m_cache.offer(c, tmp, b);
  }

  // Micro-batches in flight for a call whose run accumulator takes acc_bytes and whose tangent
  // buffers take tangent_bytes per micro-batch; sets the cache cap within ObjectiveOptions::memory_bytes.
  std::int64_t plan_workers(std::size_t acc_bytes, std::size_t tangent_bytes = 0, std::size_t fixed_bytes = 0) {
    std::int64_t workers = std::min<std::int64_t>(tbb::this_task_arena::max_concurrency(), num_runs());
    workers = std::max<std::int64_t>(1, workers);
    if (m_opts.memory_bytes == 0) return workers;
    const std::size_t params = std::size_t(m_model.num_params()) * sizeof(T);
    const std::size_t per_worker = pass_bytes(m_micro_batch) + tangent_bytes + acc_bytes;
    const std::size_t avail = m_opts.memory_bytes > params + fixed_bytes + acc_bytes
                                  ? m_opts.memory_bytes - params - fixed_bytes - acc_bytes  // + 1 pooled accumulator
                                  : 0;
    workers = std::clamp<std::int64_t>(static_cast<std::int64_t>(avail / std::max<std::size_t>(1, per_worker)), 1, workers);
    const std::size_t used = workers * per_worker;
    m_cache.set_cap(std::min(m_opts.cache_bytes, avail > used ? avail - used : 0));
    return workers;
  }

  // BatchNorm (training) saves the batch mean and unbiased variance as state saved[0] and saved[1].
  void record_bn_stats(std::int64_t c, const Pass<T>& p) {
    auto& out = m_bn_stats[c];
    out.clear();
    for (int i : m_bn_nodes) {
      const auto& st = p.states[i].saved;
      if (st.size() < 2) continue;
      BatchNormStats s;
      s.node = i;
      s.first_sample = p.first;
      s.mean.assign(st[0].data(), st[0].data() + st[0].size());
      s.var.assign(st[1].data(), st[1].data() + st[1].size());
      out.push_back(std::move(s));
    }
  }

  // The loss of pass p and its gradient at the output (the seed of the backward pass).
  void seed(Pass<T>& p) const {
    const Tensor<T>& z = p.vals[m_model.output()];
    Tensor<T>& gz = p.grads[m_model.output()];
    gz.resize(z.shape());
    const auto terms = loss_forward<T>(m_loss, loss_view(z), labels_at(p.first), targets_at(p.first), loss_scale(),
                                       loss_view(gz), nullptr, nullptr, m_opts.ignore_index);
    p.loss_sum = terms.sum;
    p.correct = terms.correct;
  }

  void ensure_seed(Pass<T>& p) const {
    if (p.grads[m_model.output()].empty()) seed(p);
  }

  // The primal pass of samples [first, first + count) and the loss (and its gradient) at the output.
  void forward(Pass<T>& p, std::int64_t first, std::int64_t count, bool keep_all = false) {
    std::vector<const float*> x;
    for (const auto& [data, per] : m_input_data) x.push_back(data + first * per);
    m_exec.forward(p, first, count, x, keep_all);
    seed(p);
    if (!std::isfinite(p.loss_sum))
      throw std::runtime_error("objective: loss is not finite on samples " + std::to_string(first) + ".." +
                               std::to_string(first + count - 1) + " of " + m_data.source);
    // Op states are known now: remember their size per sample for the memory estimates.
    double seen = m_state_per_sample.load();
    const double per = double(p.state_bytes()) / double(count);
    while (per > seen && !m_state_per_sample.compare_exchange_weak(seen, per)) {
    }
    ++m_primal_passes;
  }

  void product_group(Curvature curv, const Eigen::Ref<const Matrix>& V, Eigen::Ref<Matrix> Y,
                     const std::vector<int>& act, const std::vector<std::int64_t>& row, std::int64_t rows) {
    const std::int64_t k = V.cols();
    const auto& mp = m_model.params();
    // Parameter tangents [k, shape] shared by every micro-batch.
    std::vector<Tensor<T>> ptan(mp.size());
    for (size_t a = 0; a < act.size(); ++a) {
      const auto& pi = mp[act[a]];
      Tensor<T> t;
      t.resize(with_lead(k, pi.shape));  // not zero-filled: every element is written below
      for (std::int64_t j = 0; j < k; ++j)
        parallel_blocks(0, pi.size, [&](std::int64_t e0, std::int64_t e1) {
          for (std::int64_t e = e0; e < e1; ++e) t.data()[j * pi.size + e] = T(V(row[a] + e, j));
        });
      ptan[act[a]] = std::move(t);
    }
    const std::vector<bool> tdep = m_exec.tangent_dependence(ptan);  // depends on an active parameter
    std::size_t tangent_bytes = 0;
    for (const auto& v : m_model.values())
      if (v.kind == ValueKind::Node && tdep[&v - m_model.values().data()])
        tangent_bytes += value_elems(v, m_micro_batch) * sizeof(T);
    tangent_bytes = k * tangent_bytes * 3 / 2;  // forward tangents, plus the reverse frontier
    const std::size_t acc_bytes = std::size_t(rows) * k * sizeof(T);
    const std::int64_t workers = plan_workers(acc_bytes, tangent_bytes, acc_bytes /* ptan */);
    const bool hessian = curv == Curvature::Hessian;
    if (sampled_fisher(curv)) m_fisher_var.assign(num_chunks() * k, 0.0);

    // A run accumulates the tangents of the active parameters' gradients as [k, size] per parameter,
    // parameter a at offset row[a] * k. For one direction that is Y's own layout, so run 0 then
    // accumulates in Y's storage and is widened in place when committed (as in gradient()).
    T* const run0 = k == 1 ? reinterpret_cast<T*>(Y.data()) : nullptr;
    ordered_runs<Buffer<T>>(
        num_chunks(), kMaxRuns, workers, [] { return std::make_unique<Buffer<T>>(); },
        [&](std::int64_t r, std::int64_t c0, std::int64_t c1, Buffer<T>& acc) {
          T* dst = run0;
          if (r > 0 || !run0) {
            acc.resize(std::size_t(rows) * k);
            dst = acc.data();
          }
          std::fill(dst, dst + std::size_t(rows) * k, T(0));
          ParamSink<T> sink(mp.size(), nullptr);
          for (size_t a = 0; a < act.size(); ++a) sink[act[a]] = dst + row[a] * k;
          for (std::int64_t c = c0; c < c1; ++c) {
            std::unique_ptr<Pass<T>> tmp;
            Pass<T>& p = primal(c, tmp);
            if (hessian && !p.has_grad) {  // activation gradients (second-order terms), kept with the pass
              ensure_seed(p);
              m_exec.backward(p, nullptr);
            }
            tangent_pass(curv, p, c, k, ptan, tdep, sink);
            keep(c, tmp);
          }
        },
        [&](std::int64_t r, Buffer<T>& acc) {
          if (run0) return commit_in_place(Y.data(), run0, rows, r, acc.data());
          for (size_t a = 0; a < act.size(); ++a) {
            const std::int64_t size = mp[act[a]].size;
            for (std::int64_t j = 0; j < k; ++j)
              add_widened(Y.col(j).data() + row[a], acc.data() + row[a] * k + j * size, size, r > 0);
          }
        });
  }

  bool sampled_fisher(Curvature curv) const { return curv == Curvature::Fisher && m_opts.fisher_samples > 0; }

  // The seed of a sampled-Fisher product at the output, for chunk c:
  //   seed_nj = (1/N) (1/S) sum_s d_ns (d_ns^T z'_nj),  d_ns = loss_sample_gradients
  // and m_fisher_var[c k + j] += (1/N^2) (1/S^2) sum_{n in c} sum_s ((d_ns^T z'_nj)^2 - mu_nj)^2,
  // mu_nj = z'_nj^T Lambda_n z'_nj = E[(d^T z')^2]: the variance of v^T F^ v from this chunk.
  void sampled_fisher_seed(const Pass<T>& p, std::int64_t chunk, const Tensor<T>& zt, Tensor<T>& seed) {
    const Tensor<T>& z = p.vals[m_model.output()];
    const ConstView<T> zl = loss_view(z);  // [rows, C]: draws per row (position)
    const std::int64_t k = zt.dim(0), n = zl.dim(0), C = zl.dim(1), nz = z.size(), S = m_opts.fisher_samples;
    const double scale = loss_scale();
    std::vector<double> d(std::size_t(n * S * C));
    loss_sample_gradients<T>(m_loss, zl, p.first * m_rows, S, m_opts.fisher_seed, d.data(), labels_at(p.first),
                             m_opts.ignore_index);
    Tensor<T> lz(zt.shape());
    loss_hessian_product<T>(m_loss, zl, zt.view(), 1.0, lz.view(), labels_at(p.first), m_opts.ignore_index);
    std::vector<double> acc(C);
    for (std::int64_t j = 0; j < k; ++j) {
      double var = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        const T* t = zt.data() + j * nz + i * C;
        const T* l = lz.data() + j * nz + i * C;
        double mu = 0;
        for (std::int64_t e = 0; e < C; ++e) mu += double(l[e]) * double(t[e]);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t s = 0; s < S; ++s) {
          const double* ds = d.data() + (i * S + s) * C;
          double c = 0;
          for (std::int64_t e = 0; e < C; ++e) c += ds[e] * double(t[e]);
          for (std::int64_t e = 0; e < C; ++e) acc[e] += c * ds[e];
          var += (c * c - mu) * (c * c - mu);
        }
        for (std::int64_t e = 0; e < C; ++e) seed.data()[j * nz + i * C + e] = T(scale / double(S) * acc[e]);
      }
      m_fisher_var[chunk * k + j] = var * scale * scale / (double(S) * double(S));
    }
  }

  void tangent_pass(Curvature curv, const Pass<T>& p, std::int64_t chunk, std::int64_t k, const std::vector<Tensor<T>>& ptan,
                    const std::vector<bool>& tdep, const ParamSink<T>& sink) {
    std::vector<Tensor<T>> tv;
    m_exec.jvp(p, k, ptan, tdep, tv);  // forward tangents y' = J x'
    // Seed at the output: the tangent of dL/dz.
    const int zo = m_model.output();
    if (tv[zo].empty()) return;  // output does not depend on the directions
    const Tensor<T>& z = p.vals[zo];
    const double scale = loss_scale();
    std::vector<Tensor<T>> tg(m_model.values().size());
    Tensor<T>& seed = tg[zo];
    seed.resize(tv[zo].shape());
    if (curv == Curvature::EmpiricalFisher) {
      // F v = (1/N) sum_n g_n <g_n, v> = J^T [ (1/N) <dl_n/dz_n, z'_n> dl_n/dz_n ].
      Tensor<T> g(z.shape()), dl(z.shape());
      View<T> dlv = loss_view(dl);
      loss_forward<T>(m_loss, loss_view(z), labels_at(p.first), targets_at(p.first), scale, loss_view(g), nullptr, &dlv,
                      m_opts.ignore_index);
      const std::int64_t n = z.dim(0) * m_rows, C = z.size() / n, nz = z.size();
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t s = 0; s < n; ++s) {
          const T* d = dl.data() + s * C;
          const T* t = tv[zo].data() + j * nz + s * C;
          double c = 0;
          for (std::int64_t e = 0; e < C; ++e) c += double(d[e]) * double(t[e]);
          for (std::int64_t e = 0; e < C; ++e) seed.data()[j * nz + s * C + e] = T(scale * c * double(d[e]));
        }
    } else if (sampled_fisher(curv)) {
      sampled_fisher_seed(p, chunk, tv[zo], seed);
    } else {  // Hessian, GGN, exact Fisher (= GGN): H_l z'
      loss_hessian_product<T>(m_loss, loss_view(z), tv[zo].view(), scale, seed.view(), labels_at(p.first),
                              m_opts.ignore_index);
    }
    // Reverse: (dL/dx)' = J^T (dL/dy)' [+ second-order terms for the Hessian], into the run's sink.
    m_exec.vjp_tangent(p, k, ptan, tdep, tv, tg, sink, curv == Curvature::Hessian);
  }

  const Model& m_model;
  const Dataset& m_data;
  ObjectiveOptions m_opts;
  LossKind m_loss;
  std::int64_t m_rows = 1;      // loss rows per sample (positions of a language model)
  std::int64_t m_labelled = 0;  // kept rows of the whole sample set (the mean's denominator)
  std::vector<std::pair<const float*, std::int64_t>> m_input_data;  // per model input: data, values per sample
  std::int64_t m_micro_batch = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> m_chunks;  // first, count
  GraphExecutor<T> m_exec;
  std::size_t m_act_per_sample = 0;
  std::atomic<double> m_state_per_sample{-1};  // op state bytes per sample (-1: no pass seen yet)
  internal::PrimalCache<T> m_cache;
  std::vector<int> m_bn_nodes;                          // nodes whose op mixes the batch
  std::vector<std::vector<BatchNormStats>> m_bn_stats;  // per chunk, written by that chunk's pass only
  std::atomic<std::int64_t> m_primal_passes{0};
  Vector m_stderr;                    // product_stderr()
  LinearLayers m_layers;              // found on the first layer_io
  std::vector<double> m_fisher_var;   // [chunk, k] of the column group in progress
};

}  // namespace

std::unique_ptr<Objective> Objective::create(const Model& model, const Dataset& data, const ObjectiveOptions& opts) {
  if (opts.precision == Precision::Float64) return std::make_unique<ObjectiveImpl<double>>(model, data, opts);
  return std::make_unique<ObjectiveImpl<float>>(model, data, opts);
}

std::int64_t resolve_micro_batch(const Model& model, std::int64_t samples, const ObjectiveOptions& opts) {
  if (opts.micro_batch > 0) return opts.micro_batch;
  constexpr std::int64_t kBatchNorm = 16, kMin = 16, kMax = 256, kColumns = 64;
  constexpr double kSkinnyShare = 0.1;
  constexpr std::size_t kActivationBytes = std::size_t(256) << 20;
  const auto& vals = model.values();
  for (const auto& n : model.nodes())
    if (n.op->mixes_batch()) return kBatchNorm;  // ghost batches of a fixed size, as before
  std::int64_t B = kMin;
  {
    // Per layer: its largest parameter and the positions per sample where one of its rows applies.
    std::vector<std::pair<std::int64_t, std::int64_t>> layers;  // (elements, positions)
    for (const auto& n : model.nodes()) {
      const std::string t = n.op->type();
      if (t != "Conv" && t != "Gemm" && t != "MatMul") continue;
      std::int64_t w = 0;
      for (int v : n.inputs)
        if (vals[v].kind == ValueKind::Parameter) w = std::max(w, numel(vals[v].shape));
      const Shape& out = vals[n.output].shape;  // at batch 1
      if (w == 0 || out.size() < 2) continue;
      const std::int64_t rows = t == "Conv" ? out[1] : out.back();
      layers.push_back({w, std::max<std::int64_t>(1, numel(out) / std::max<std::int64_t>(1, rows))});
    }
    std::size_t act = 0;
    for (const auto& v : vals)
      if (v.kind == ValueKind::Node) act += numel(v.shape) * sizeof(float);
    const std::int64_t mem_max = std::max<std::int64_t>(kMin, kActivationBytes / std::max<std::size_t>(1, act));
    for (B = kMin; B < kMax && 2 * B <= mem_max; B *= 2) {
      std::int64_t skinny = 0;
      for (const auto& [w, pos] : layers)
        if (B * pos < kColumns) skinny += w;
      if (double(skinny) <= kSkinnyShare * double(model.num_params())) break;
    }
  }
  B = std::max<std::int64_t>(1, std::min(B, samples));
  const std::int64_t chunks = (samples + B - 1) / B;
  return (samples + chunks - 1) / chunks;
}

void update_running_stats(Model& model, const std::vector<BatchNormStats>& stats, double momentum) {
  if (!(momentum >= 0 && momentum <= 1))
    throw std::invalid_argument("BatchNorm momentum must be in [0, 1] (got " + std::to_string(momentum) + ")");
  for (const auto& s : stats) {
    const Node& n = model.nodes().at(s.node);
    if (n.inputs.size() < 5) throw std::invalid_argument("node '" + n.name + "' has no running statistics");
    for (int a = 3; a <= 4; ++a) {
      const Value& v = model.values()[n.inputs[a]];
      if (v.kind != ValueKind::Constant)
        throw std::invalid_argument("node '" + n.name + "': running statistic '" + v.name + "' is not a constant");
      Tensor<double>& r = model.constant(v.index);
      const auto& b = a == 3 ? s.mean : s.var;
      if (static_cast<std::size_t>(r.size()) != b.size())
        throw std::invalid_argument("node '" + n.name + "': " + std::to_string(b.size()) + " batch statistics for '" +
                                    v.name + "' of shape " + shape_str(r.shape()));
      for (std::int64_t j = 0; j < r.size(); ++j) r.data()[j] = (1 - momentum) * r.data()[j] + momentum * b[j];
    }
  }
}

}  // namespace curv
