// The Objective: micro-batches over the sample set, the loss at the output, and the curvature
// seeds; graph passes in internal/graph_executor, the reduction in internal/deterministic_reduce,
// kept primal passes in internal/primal_cache.
#include "src/core/objective.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "src/core/internal/deterministic_reduce.h"
#include "src/core/internal/graph_executor.h"
#include "src/core/internal/primal_cache.h"

namespace curv {

const char* curvature_name(Curvature c) {
  switch (c) {
    case Curvature::Hessian:
      return "hessian";
    case Curvature::GGN:
      return "ggn";
    case Curvature::EmpiricalFisher:
      return "ef";
  }
  return "?";
}

Curvature parse_curvature(const std::string& s) {
  if (s == "hessian") return Curvature::Hessian;
  if (s == "ggn") return Curvature::GGN;
  if (s == "ef" || s == "fisher" || s == "empirical-fisher") return Curvature::EmpiricalFisher;
  throw std::invalid_argument("unknown curvature '" + s + "' (expected hessian, ggn or ef)");
}

namespace {

// Default bound on k x (parameters in a product) x sizeof(T) per tangent pass (see product()).
constexpr std::size_t kGroupParamBytes = std::size_t(768) << 10;

using internal::add_run;
using internal::deterministic_reduce;
using internal::GraphExecutor;
using internal::Pass;

template <class T>
class ObjectiveImpl final : public Objective {
 public:
  ObjectiveImpl(const Model& model, const Dataset& data, const ObjectiveOptions& opts)
      : m_model(model), m_data(data), m_opts(opts), m_exec(model) {
    if (model.input() < 0 || model.output() < 0) throw std::invalid_argument("objective: model has no input or output");
    if (data.size() <= 0) throw std::invalid_argument("objective: empty sample set (" + data.source + ")");
    if (opts.micro_batch <= 0) throw std::invalid_argument("objective: micro_batch must be positive");
    if (data.sample_shape != model.input_shape())
      throw std::invalid_argument("objective: data samples " + shape_str(data.sample_shape) + " from " + data.source +
                                  " do not fit the model input '" + model.values()[model.input()].name + "' " +
                                  shape_str(model.input_shape()));
    const Shape out = model.output_shape();
    if (data.classification()) {
      m_loss = LossKind::CrossEntropy;
      if (out.size() != 1)
        throw std::invalid_argument("objective: integer labels need logits [N, classes], model output is " +
                                    shape_str(with_lead(1, out)));
      if (static_cast<std::int64_t>(data.labels.size()) != data.size())
        throw std::invalid_argument("objective: " + std::to_string(data.labels.size()) + " labels for " +
                                    std::to_string(data.size()) + " samples in " + data.source);
      for (auto y : data.labels)
        if (y < 0 || y >= out[0])
          throw std::invalid_argument("objective: label " + std::to_string(y) + " in " + data.source +
                                      " out of range for " + std::to_string(out[0]) + " model outputs");
    } else {
      m_loss = LossKind::MeanSquaredError;
      if (numel(data.target_shape) != numel(out))
        throw std::invalid_argument("objective: targets " + shape_str(data.target_shape) + " in " + data.source +
                                    " do not match model output " + shape_str(out));
    }
    for (std::int64_t f = 0; f < data.size(); f += opts.micro_batch)
      m_chunks.push_back({f, std::min(opts.micro_batch, data.size() - f)});
    m_exec.set_params(model.flat_params());
    // Cache estimate: node values and their gradients, plus saved state, at full sample count.
    std::size_t per_sample = 0;
    for (const auto& v : model.values())
      if (v.kind == ValueKind::Node) per_sample += numel(v.shape) * sizeof(T);
    m_act_per_sample = per_sample;
    m_cache.configure(m_chunks.size(), opts.cache_bytes > 0 && 3 * per_sample * data.size() <= opts.cache_bytes);
    for (size_t i = 0; i < model.nodes().size(); ++i)
      if (model.nodes()[i].op->mixes_batch()) m_bn_nodes.push_back(static_cast<int>(i));
    if (!m_bn_nodes.empty()) m_bn_stats.resize(m_chunks.size());
  }

  std::int64_t num_params() const override { return m_model.num_params(); }
  std::int64_t num_samples() const override { return m_data.size(); }
  LossKind loss_kind() const override { return m_loss; }
  const Model& model() const override { return m_model; }
  std::int64_t primal_passes() const override { return m_primal_passes.load(); }

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

  EvalResult evaluate() override {
    struct Acc {
      double loss = 0;
      std::int64_t correct = 0;
    };
    Acc a = deterministic_reduce<Acc>(
        static_cast<std::int64_t>(m_chunks.size()),
        [&](std::int64_t c, Acc& acc) {
          std::unique_ptr<Pass<T>> tmp;
          Pass<T>& p = primal(c, false, tmp);
          acc.loss += p.loss_sum;
          acc.correct += p.correct;
        },
        [](Acc& x, const Acc& y) {
          x.loss += y.loss;
          x.correct += y.correct;
        });
    EvalResult r;
    r.loss = a.loss;
    r.samples = m_data.size();
    r.accuracy = m_loss == LossKind::CrossEntropy ? double(a.correct) / double(m_data.size())
                                                  : std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  double value() override { return evaluate().loss; }

  double gradient(Vector& g) override {
    struct Acc {
      double loss = 0;
      Vector g;
    };
    const std::int64_t P = m_model.num_params();
    Acc a = deterministic_reduce<Acc>(
        static_cast<std::int64_t>(m_chunks.size()),
        [&](std::int64_t c, Acc& acc) {
          std::unique_ptr<Pass<T>> tmp;
          Pass<T>& p = primal(c, true, tmp);
          if (acc.g.size() == 0) acc.g = Vector::Zero(P);
          acc.loss += p.loss_sum;
          for (const auto& pi : m_model.params()) {
            const Tensor<T>& gt = p.grads[pi.value];
            if (gt.empty()) continue;
            for (std::int64_t j = 0; j < pi.size; ++j) acc.g[pi.offset + j] += double(gt.data()[j]);
          }
        },
        [](Acc& x, Acc& y) {
          x.loss += y.loss;
          add_run(x.g, y.g);
        });
    g = a.g.size() ? a.g : Vector::Zero(P);
    return a.loss;
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
    Y.setZero(rows, k);
    if (k == 0) return;
    // Direction groups bounded by tangent memory (a pass holds about 3 tangent copies) and by default
    // also by cache: every micro-batch of a pass streams the k parameter tangents (and their k
    // gradients) several times, so a group keeps them within kGroupParamBytes. Larger groups share
    // only the primal im2col and GEMM packing, which no longer pays for the lost locality: measured
    // on one thread, 16 directions in one pass took 2x (MLP) and 1.0-1.1x (ResNet-20) the time of
    // 16 single products. An explicit group_directions overrides the cache bound.
    const std::size_t per_dir = std::max<std::size_t>(1, 3 * m_act_per_sample * m_opts.micro_batch);
    std::int64_t kmax = std::max<std::int64_t>(1, m_opts.tangent_bytes / per_dir);
    const std::size_t param_bytes = std::max<std::size_t>(1, std::size_t(rows) * sizeof(T));
    kmax = std::min(kmax, m_opts.group_directions > 0 ? m_opts.group_directions
                                                      : std::max<std::int64_t>(1, kGroupParamBytes / param_bytes));
    for (std::int64_t j0 = 0; j0 < k; j0 += kmax) {
      const std::int64_t kk = std::min(kmax, k - j0);
      Matrix Yg;
      product_group(curv, V.middleCols(j0, kk), Yg, act, row, rows);
      Y.middleCols(j0, kk) = Yg;
    }
  }

  std::vector<BatchNormStats> batch_norm_stats() const override {
    std::vector<BatchNormStats> r;
    for (const auto& chunk : m_bn_stats) r.insert(r.end(), chunk.begin(), chunk.end());
    return r;
  }

  void layer_io(const std::function<void(const LayerIO&)>& f) override {
    const auto& nodes = m_model.nodes();
    for (std::int64_t c = 0; c < static_cast<std::int64_t>(m_chunks.size()); ++c) {
      std::unique_ptr<Pass<T>> tmp;
      Pass<T>& p = primal(c, true, tmp);
      for (size_t i = 0; i < nodes.size(); ++i) {
        const auto& n = nodes[i];
        const std::string t = n.op->type();
        if (t != "Gemm" && t != "MatMul" && t != "Conv") continue;
        bool has_param = false;
        for (size_t a = 1; a < n.inputs.size(); ++a)
          has_param = has_param || m_model.values()[n.inputs[a]].kind == ValueKind::Parameter;
        if (!has_param) continue;
        LayerIO io;
        io.node = static_cast<int>(i);
        io.first_sample = m_chunks[c].first;
        ConstView<T> x = m_exec.view(p, n.inputs[0]);
        io.input = Tensor<double>(x.shape, std::vector<double>(x.data, x.data + x.size()));
        const Tensor<T>& g = p.grads[n.output];
        io.output_grad = Tensor<double>(g.shape(), std::vector<double>(g.vec().begin(), g.vec().end()));
        f(io);
      }
    }
  }

 private:
  // Labels (cross-entropy) or targets (MSE) of the samples from `first` on, as loss_forward takes them.
  const std::int64_t* labels_at(std::int64_t first) const {
    return m_loss == LossKind::CrossEntropy ? &m_data.labels[first] : nullptr;
  }
  const float* targets_at(std::int64_t first) const {
    return m_loss == LossKind::MeanSquaredError ? &m_data.targets[first * numel(m_data.target_shape)] : nullptr;
  }

  // The primal pass of chunk c (forward, loss, and backward if `need_grad`), cached when enabled.
  Pass<T>& primal(std::int64_t c, bool need_grad, std::unique_ptr<Pass<T>>& tmp) {
    std::unique_ptr<Pass<T>>& slot = m_cache.slot(c, tmp);
    if (!slot) {
      slot = std::make_unique<Pass<T>>();
      forward(*slot, m_chunks[c].first, m_chunks[c].second);
      if (!m_bn_nodes.empty()) record_bn_stats(c, *slot);
    }
    if (need_grad && !slot->has_grad) m_exec.backward(*slot);
    return *slot;
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

  // The primal pass of samples [first, first + count) and the loss (and its gradient) at the output.
  void forward(Pass<T>& p, std::int64_t first, std::int64_t count) {
    m_exec.forward(p, first, count, m_data.x.data() + first * numel(m_data.sample_shape));
    // Loss and its gradient at the output.
    const Tensor<T>& z = p.vals[m_model.output()];
    Tensor<T>& gz = p.grads[m_model.output()];
    gz.resize(z.shape());
    const auto terms =
        loss_forward<T>(m_loss, z.view(), labels_at(first), targets_at(first), 1.0 / double(m_data.size()), gz.view());
    p.loss_sum = terms.sum;
    p.correct = terms.correct;
    if (!std::isfinite(p.loss_sum))
      throw std::runtime_error("objective: loss is not finite on samples " + std::to_string(first) + ".." +
                               std::to_string(first + count - 1) + " of " + m_data.source);
    ++m_primal_passes;
  }

  void product_group(Curvature curv, const Eigen::Ref<const Matrix>& V, Matrix& Y, const std::vector<int>& act,
                     const std::vector<std::int64_t>& row, std::int64_t rows) {
    const std::int64_t k = V.cols();
    const auto& mp = m_model.params();
    // Parameter tangents [k, shape] shared by every micro-batch.
    std::vector<Tensor<T>> ptan(mp.size());
    for (size_t a = 0; a < act.size(); ++a) {
      const auto& pi = mp[act[a]];
      Tensor<T> t(with_lead(k, pi.shape));
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t e = 0; e < pi.size; ++e) t.data()[j * pi.size + e] = T(V(row[a] + e, j));
      ptan[act[a]] = std::move(t);
    }
    const std::vector<bool> tdep = m_exec.tangent_dependence(ptan);  // depends on an active parameter

    Y = deterministic_reduce<Matrix>(
        static_cast<std::int64_t>(m_chunks.size()),
        [&](std::int64_t c, Matrix& acc) {
          std::unique_ptr<Pass<T>> tmp;
          Pass<T>& p = primal(c, true, tmp);
          if (acc.size() == 0) acc = Matrix::Zero(rows, k);
          tangent_pass(curv, p, k, ptan, tdep, act, row, acc);
        },
        add_run<Matrix>);
    if (Y.size() == 0) Y.setZero(rows, k);
  }

  void tangent_pass(Curvature curv, const Pass<T>& p, std::int64_t k, const std::vector<Tensor<T>>& ptan,
                    const std::vector<bool>& tdep, const std::vector<int>& act, const std::vector<std::int64_t>& row,
                    Matrix& out) {
    std::vector<Tensor<T>> tv;
    m_exec.jvp(p, k, ptan, tdep, tv);  // forward tangents y' = J x'
    // Seed at the output: the tangent of dL/dz.
    const int zo = m_model.output();
    if (tv[zo].empty()) return;  // output does not depend on the directions
    const Tensor<T>& z = p.vals[zo];
    const double scale = 1.0 / double(m_data.size());
    std::vector<Tensor<T>> tg(m_model.values().size());
    Tensor<T>& seed = tg[zo];
    seed.resize(tv[zo].shape());
    if (curv == Curvature::EmpiricalFisher) {
      // F v = (1/N) sum_n g_n <g_n, v> = J^T [ (1/N) <dl_n/dz_n, z'_n> dl_n/dz_n ].
      Tensor<T> g(z.shape()), dl(z.shape());
      View<T> dlv = dl.view();
      loss_forward<T>(m_loss, z.view(), labels_at(p.first), targets_at(p.first), scale, g.view(), nullptr, &dlv);
      const std::int64_t n = z.dim(0), C = z.size() / n, nz = z.size();
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t s = 0; s < n; ++s) {
          const T* d = dl.data() + s * C;
          const T* t = tv[zo].data() + j * nz + s * C;
          double c = 0;
          for (std::int64_t e = 0; e < C; ++e) c += double(d[e]) * double(t[e]);
          for (std::int64_t e = 0; e < C; ++e) seed.data()[j * nz + s * C + e] = T(scale * c * double(d[e]));
        }
    } else {
      loss_hessian_product<T>(m_loss, z.view(), tv[zo].view(), scale, seed.view());
    }
    // Reverse: (dL/dx)' = J^T (dL/dy)' [+ second-order terms for the Hessian].
    m_exec.vjp_tangent(p, k, ptan, tdep, tv, tg, curv == Curvature::Hessian);
    for (size_t a = 0; a < act.size(); ++a) {
      const auto& pi = m_model.params()[act[a]];
      const Tensor<T>& t = tg[pi.value];
      if (t.empty()) continue;
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t e = 0; e < pi.size; ++e) out(row[a] + e, j) += double(t.data()[j * pi.size + e]);
    }
  }

  const Model& m_model;
  const Dataset& m_data;
  ObjectiveOptions m_opts;
  LossKind m_loss;
  std::vector<std::pair<std::int64_t, std::int64_t>> m_chunks;  // first, count
  GraphExecutor<T> m_exec;
  std::size_t m_act_per_sample = 0;
  internal::PrimalCache<T> m_cache;
  std::vector<int> m_bn_nodes;                          // nodes whose op mixes the batch
  std::vector<std::vector<BatchNormStats>> m_bn_stats;  // per chunk, written by that chunk's pass only
  std::atomic<std::int64_t> m_primal_passes{0};
};

}  // namespace

std::unique_ptr<Objective> Objective::create(const Model& model, const Dataset& data, const ObjectiveOptions& opts) {
  if (opts.precision == Precision::Float64) return std::make_unique<ObjectiveImpl<double>>(model, data, opts);
  return std::make_unique<ObjectiveImpl<float>>(model, data, opts);
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

Dataset Dataset::subset(std::int64_t first, std::int64_t count) const {
  if (first < 0 || count < 0 || first + count > size())
    throw std::invalid_argument(source + ": samples " + std::to_string(first) + ".." + std::to_string(first + count) +
                                " out of range (" + std::to_string(size()) + " samples)");
  Dataset d;
  d.source = source;
  d.sample_shape = sample_shape;
  const std::int64_t sn = numel(sample_shape);
  d.x.assign(x.begin() + first * sn, x.begin() + (first + count) * sn);
  if (!labels.empty()) d.labels.assign(labels.begin() + first, labels.begin() + first + count);
  d.target_shape = target_shape;
  const std::int64_t tn = numel(target_shape);
  if (!targets.empty()) d.targets.assign(targets.begin() + first * tn, targets.begin() + (first + count) * tn);
  return d;
}

}  // namespace curv
