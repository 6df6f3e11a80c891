#include "curvature/gram_blocks.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "src/core/dataset.h"
#include "src/core/linear_layers.h"
#include "src/core/memory.h"
#include "src/core/timer.h"

namespace curv {

namespace {

template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

// Fixed chunks (never sized by the thread count), each computed by one thread and the partial
// sums added in chunk order: the same results for any number of threads.
constexpr Eigen::Index kUCols = 8;      // columns of U per step (reused from cache for both products)
constexpr Eigen::Index kUGroup = 128;   // columns of U per task (one partial result each)
constexpr std::int64_t kSamples = 8;    // samples per task of a factored layer

}  // namespace

// One covered layer's store, whichever is smaller (per sample: R out in_ext against T (in_ext + R out)):
//   U         [out in_ext, N R]: column n R + r = vec(g_nr), W~ column-major
//   factored  A [N T, in_ext] (the expanded input) and D [N T, R out] (column block r: d_ntr)
template <class S>
struct LayerStore {
  const LinearLayer* layer = nullptr;
  bool factored = false;
  Mat<S> U, A, D;
};

struct GramBlockOperators::Store {
  bool f32 = false;
  std::int64_t R = 0, N = 0;
  std::vector<LinearLayer> layers;  // find_linear_layers order
  std::vector<int> slot;            // layer -> index into the stores (or -1)
  std::vector<LayerStore<float>> sf;
  std::vector<LayerStore<double>> sd;
};

namespace {

// C_ll v = scale * sum_{n,r} g_nr (g_nr^T v) on one layer's block vectors (layer_matrix's W~ view).
template <class S>
class GramOperator final : public LinearOperator {
 public:
  GramOperator(const Model& model, const LayerStore<S>& st, std::int64_t N, std::int64_t R, double scale)
      : m_model(model), m_st(st), m_layer(*st.layer), m_N(N), m_R(R), m_scale(scale) {}
  Index rows() const override { return m_layer.size; }
  void apply(const Matrix& X, Matrix& Y) const override {
    if (X.rows() != rows())
      throw std::invalid_argument("gram block '" + m_layer.name + "': vectors have " + std::to_string(X.rows()) +
                                  " rows, expected " + std::to_string(rows()));
    Y.resize(X.rows(), X.cols());
    for (Index j = 0; j < X.cols(); ++j) {
      const Mat<S> W = layer_matrix(m_model, m_layer, X.col(j).data()).cast<S>();  // [out, in_ext]
      const Eigen::MatrixXd CW = (m_st.factored ? factored(W) : gram(W)) * m_scale;
      layer_vector(m_model, m_layer, CW, Y.col(j).data());
    }
  }

 private:
  // U (U^T w), one pass over U: each step's kUCols columns serve both products from cache.
  Eigen::MatrixXd gram(const Mat<S>& W) const {
    const Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>> w(W.data(), W.size());
    const Index M = m_st.U.cols(), groups = (M + kUGroup - 1) / kUGroup;
    std::vector<Eigen::Matrix<S, Eigen::Dynamic, 1>> part(static_cast<std::size_t>(groups));
    tbb::parallel_for(Index(0), groups, [&](Index g) {
      auto& y = part[static_cast<std::size_t>(g)];
      y = Eigen::Matrix<S, Eigen::Dynamic, 1>::Zero(W.size());
      const Index end = std::min(M, (g + 1) * kUGroup);
      for (Index c0 = g * kUGroup; c0 < end; c0 += kUCols) {
        const auto Uc = m_st.U.middleCols(c0, std::min(kUCols, end - c0));
        const Eigen::Matrix<S, Eigen::Dynamic, 1> s = Uc.transpose() * w;
        y.noalias() += Uc * s;
      }
    });
    Eigen::VectorXd y = Eigen::VectorXd::Zero(W.size());
    for (const auto& p : part) y += p.template cast<double>();
    return Eigen::Map<const Eigen::MatrixXd>(y.data(), W.rows(), W.cols());
  }
  // sum_n sum_r s_nr D_nr^T A_n with s_nr = <D_nr, A_n W^T>: a forward and a weight-gradient GEMM.
  Eigen::MatrixXd factored(const Mat<S>& W) const {
    const Index T = m_layer.positions, out = m_layer.out;
    const std::int64_t tasks = (m_N + kSamples - 1) / kSamples;
    std::vector<Mat<S>> part(static_cast<std::size_t>(tasks));
    tbb::parallel_for(std::int64_t(0), tasks, [&](std::int64_t c) {
      const std::int64_t n0 = c * kSamples, n = std::min(kSamples, m_N - n0);
      const auto A = m_st.A.middleRows(n0 * T, n * T);
      const auto D = m_st.D.middleRows(n0 * T, n * T);
      const Mat<S> Z = A * W.transpose();  // [n T, out]
      Mat<S> H = Mat<S>::Zero(n * T, out);
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t r = 0; r < m_R; ++r) {
          const auto Dr = D.block(i * T, r * out, T, out);
          const S sr = Z.middleRows(i * T, T).cwiseProduct(Dr).sum();
          H.middleRows(i * T, T) += sr * Dr;
        }
      part[std::size_t(c)].noalias() = H.transpose() * A;  // [out, in_ext]
    });
    Eigen::MatrixXd Y = Eigen::MatrixXd::Zero(W.rows(), W.cols());
    for (const auto& p : part) Y += p.template cast<double>();
    return Y;
  }

  const Model& m_model;
  const LayerStore<S>& m_st;
  const LinearLayer& m_layer;
  std::int64_t m_N, m_R;
  double m_scale;
};

// The parameters used by more than one node (a tied weight: the layer's own formula would miss
// its other uses).
std::vector<int> param_uses(const Model& m) {
  std::vector<int> uses(m.params().size(), 0);
  const auto& vals = m.values();
  for (const auto& n : m.nodes())
    for (int v : n.inputs)
      if (vals[v].kind == ValueKind::Parameter) ++uses[vals[v].index];
  return uses;
}

// Fills the stores as the micro-batches of one run arrive (disjoint rows and columns per sample:
// runs write concurrently without a commit order). The inputs of a micro-batch come first for
// every layer (in slices of samples), then per cotangent r the output gradients of every layer in
// the same slices (Objective::layer_io). A factored layer copies them into A and D; a U layer
// keeps the slice's input and its R gradients side by side, then forms g_nr for all r of a sample
// by one [R out, T] x [T, in_ext] GEMM.
template <class S>
class GramSink final : public LayerSink {
 public:
  GramSink(GramBlockOperators::Store& st, std::vector<LayerStore<S>>& stores, std::size_t bytes)
      : m_st(st), m_stores(stores), m_bytes(bytes), m_slices(stores.size()), m_used(stores.size(), 0) {}
  void reset() override {
    for (auto& u : m_used) u = 0;
    m_have_grads = false;
  }
  bool wants_float() const override { return true; }
  std::size_t bytes() const override { return m_bytes; }
  void add(const LayerIO& io) override {
    const int slot = m_st.slot[io.layer];
    if (slot < 0) return;
    LayerStore<S>& ls = m_stores[std::size_t(slot)];
    const LinearLayer& l = *ls.layer;
    const Eigen::Index T = l.positions, out = l.out, R = m_st.R;
    const Mat<S>* in = nullptr;
    const std::vector<Mat<S>>* grads = nullptr;
    if constexpr (std::is_same_v<S, float>) {
      in = &io.input_f;
      grads = &io.output_grads_f;
    } else {
      in = &io.input;
      grads = &io.output_grads;
    }
    if (in->size()) {
      if (m_have_grads) {  // the next micro-batch of the run: reuse the slices' buffers
        for (auto& u : m_used) u = 0;
        m_have_grads = false;
      }
      if (ls.factored) ls.A.middleRows(io.first_sample * T, io.count * T) = *in;
      auto& list = m_slices[std::size_t(slot)];
      if (m_used[std::size_t(slot)] == list.size()) list.emplace_back();
      Slice& sl = list[m_used[std::size_t(slot)]++];
      sl.first = io.first_sample;
      sl.r = 0;
      if (!ls.factored) {
        sl.A = *in;
        sl.D.resize(io.count * T, R * out);
      }
    }
    if (grads->empty()) return;
    m_have_grads = true;
    Slice* found = nullptr;
    for (std::size_t i = 0; i < m_used[std::size_t(slot)]; ++i)
      if (m_slices[std::size_t(slot)][i].first == io.first_sample) found = &m_slices[std::size_t(slot)][i];
    if (!found) throw std::logic_error("gram blocks: output gradients before the layer's input");
    Slice& sl = *found;
    for (const auto& g : *grads) {
      const std::int64_t r = sl.r++;
      if (r >= R) throw std::logic_error("gram blocks: more cotangents than expected");
      if (ls.factored) {
        ls.D.block(io.first_sample * T, r * out, io.count * T, out) = g;
      } else {
        sl.D.middleCols(r * out, out) = g;
      }
    }
    if (sl.r < R || ls.factored) return;
    Mat<S>& G = m_gemm;
    G.resize(R * out, l.in_ext());
    for (std::int64_t i = 0; i < io.count; ++i) {
      G.noalias() = sl.D.middleRows(i * T, T).transpose() * sl.A.middleRows(i * T, T);
      for (std::int64_t r = 0; r < R; ++r)
        Eigen::Map<Mat<S>>(ls.U.col((io.first_sample + i) * R + r).data(), out, l.in_ext()) = G.middleRows(r * out, out);
    }
  }

 private:
  struct Slice {
    std::int64_t first = 0, r = 0;  // first sample, cotangents received
    Mat<S> A, D;                    // U layers: the slice's input rows and its gradients [count T, R out]
  };
  GramBlockOperators::Store& m_st;
  std::vector<LayerStore<S>>& m_stores;
  std::size_t m_bytes;
  std::vector<std::vector<Slice>> m_slices;  // per slot, in arrival order (kept across micro-batches)
  std::vector<std::size_t> m_used;           // per slot: slices of the current micro-batch
  Mat<S> m_gemm;
  bool m_have_grads = false;
};

}  // namespace

namespace {

// Why no block can be covered (empty: blocks may be).
std::string model_reason(const Model& model, const Dataset& data, const ObjectiveOptions& oo, Curvature kind) {
  if (kind == Curvature::Hessian) return "the Hessian has no per-sample factorization";
  for (const auto& n : model.nodes())
    if (n.op->mixes_batch()) return "node '" + n.name + "' mixes the batch (BatchNorm with batch statistics)";
  if (!data.label_shape.empty()) return "labels per position (language-model loss)";
  if (data.classification() &&
      std::any_of(data.labels.begin(), data.labels.end(), [&](std::int64_t y) { return y == oo.ignore_index; }))
    return "labels equal to the ignore index";
  return {};
}

template <class S>
void make_stores(GramBlockOperators::Store& st, std::vector<LayerStore<S>>& stores,
                 const std::vector<std::pair<std::size_t, int>>& covered, const std::vector<bool>& factored) {
  const std::int64_t N = st.N, R = st.R;
  for (std::size_t i = 0; i < covered.size(); ++i) {
    LayerStore<S>& ls = stores.emplace_back();
    ls.layer = &st.layers[std::size_t(covered[i].second)];
    ls.factored = factored[i];
    const LinearLayer& L = *ls.layer;
    if (ls.factored) {
      ls.A = Mat<S>::Zero(N * L.positions, L.in_ext());
      ls.D = Mat<S>::Zero(N * L.positions, R * L.out);
    } else {
      ls.U = Mat<S>::Zero(L.out * L.in_ext(), N * R);
    }
  }
}

}  // namespace

GramBlockOperators::GramBlockOperators(Objective& objective, const Dataset& data, const ObjectiveOptions& oo,
                                       Curvature kind, const std::vector<ParamBlock>& blocks, std::size_t max_bytes)
    : m_store(std::make_unique<Store>()) {
  m_ptrs.assign(blocks.size(), nullptr);
  const Model& model = objective.model();
  m_reason = model_reason(model, data, oo, kind);
  if (!m_reason.empty()) return;
  OutputSeeds seeds = OutputSeeds::LossHessianRoot;
  std::int64_t samples = 1;
  if (kind == Curvature::EmpiricalFisher) {
    seeds = OutputSeeds::Gradient;
    m_R = 1;
  } else if (kind == Curvature::Fisher && objective.fisher_samples() > 0) {
    seeds = OutputSeeds::Sampled;
    samples = m_R = objective.fisher_samples();
  } else {
    m_R = numel(model.output_shape());  // the columns of Lambda_n's factor
  }
  Store& st = *m_store;
  st.R = m_R;
  st.N = objective.num_samples();
  st.f32 = oo.precision == Precision::Float32;
  st.layers = find_linear_layers(model).layers;
  st.slot.assign(st.layers.size(), -1);
  const std::vector<int> uses = param_uses(model);
  std::vector<std::pair<std::size_t, int>> covered;  // (block, layer)
  std::vector<bool> factored;
  std::size_t elems = 0, sink_elems = 0;
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    std::vector<int> ps = blocks[b].params;
    std::sort(ps.begin(), ps.end());
    for (std::size_t l = 0; l < st.layers.size(); ++l) {
      const LinearLayer& L = st.layers[l];
      if (ps != L.params || std::any_of(ps.begin(), ps.end(), [&](int p) { return uses[p] != 1; })) continue;
      const std::size_t u = std::size_t(m_R * L.out * L.in_ext()), f = std::size_t(L.positions * (L.in_ext() + m_R * L.out));
      covered.push_back({b, int(l)});
      factored.push_back(f < u);
      elems += std::min(u, f) * std::size_t(st.N);
      if (f >= u) sink_elems += std::size_t(objective.micro_batch() * L.positions * (L.in_ext() + m_R * L.out));
      break;
    }
  }
  if (covered.empty()) {
    m_reason = "no block is exactly one supported linear layer (Linear/Gemm, MatMul, Conv)";
    return;
  }
  const std::size_t esize = st.f32 ? sizeof(float) : sizeof(double);
  if (max_bytes > 0 && elems * esize > max_bytes) {
    m_reason = "the per-sample factors need " + std::to_string(elems * esize / 1000000) + " MB, over the " +
               std::to_string(max_bytes / 1000000) + " MB cap";
    return;
  }
  if (covered.size() < blocks.size())
    m_reason = std::to_string(blocks.size() - covered.size()) + " of " + std::to_string(blocks.size()) +
               " blocks are not one linear layer";
  for (std::size_t i = 0; i < covered.size(); ++i) st.slot[std::size_t(covered[i].second)] = int(i);
  if (st.f32) make_stores(st, st.sf, covered, factored);
  else make_stores(st, st.sd, covered, factored);
  m_bytes = elems * esize;
  internal::track_alloc(m_bytes);
  const std::size_t sink_bytes = sink_elems * esize;
  Timer timer;
  if (st.f32)
    objective.layer_io(seeds, samples, objective.fisher_seed(),
                       [&] { return std::make_unique<GramSink<float>>(st, st.sf, sink_bytes); }, [](LayerSink&) {});
  else
    objective.layer_io(seeds, samples, objective.fisher_seed(),
                       [&] { return std::make_unique<GramSink<double>>(st, st.sd, sink_bytes); }, [](LayerSink&) {});
  m_seconds = timer.seconds();
  const double scale = 1.0 / double(st.N);
  for (std::size_t i = 0; i < covered.size(); ++i) {
    if (st.f32) m_ops.push_back(std::make_unique<GramOperator<float>>(model, st.sf[i], st.N, m_R, scale));
    else m_ops.push_back(std::make_unique<GramOperator<double>>(model, st.sd[i], st.N, m_R, scale));
    m_ptrs[covered[i].first] = m_ops.back().get();
  }
}

GramBlockOperators::~GramBlockOperators() { internal::track_free(m_bytes); }

std::size_t GramBlockOperators::covered() const {
  return std::size_t(std::count_if(m_ptrs.begin(), m_ptrs.end(), [](const LinearOperator* p) { return p != nullptr; }));
}

}  // namespace curv
