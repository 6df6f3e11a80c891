#include "src/core/internal/graph_executor.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <stdexcept>
#include <string>

namespace curv::internal {

namespace {

template <class T>
Tensor<T> cast(const Tensor<double>& t) {
  return Tensor<T>(t.shape(), std::vector<T>(t.vec().begin(), t.vec().end()));
}

// The executor binds every node's views once per pass. A View owns its Shape, so binding by value
// (a fresh copy per view) cost ~10% of a small transformer's HVP in malloc and free; these helpers
// write into views that keep their shape storage from node to node.
// dst = [k, shape...], or `shape` when k < 0, in dst's own storage.
void set_shape(Shape& dst, std::int64_t k, const Shape& shape) {
  if (k < 0) {
    dst.assign(shape.begin(), shape.end());
    return;
  }
  dst.resize(shape.size() + 1);
  dst[0] = k;
  std::copy(shape.begin(), shape.end(), dst.begin() + 1);
}
template <class V, class P>
void set_view(V& v, P* data, const Shape& shape) {
  v.data = data;
  set_shape(v.shape, -1, shape);
}
// The view of k directions of a value of shape `shape`: [k, shape...].
template <class V, class P>
void set_view_lead(V& v, P* data, std::int64_t k, const Shape& shape) {
  v.data = data;
  set_shape(v.shape, k, shape);
}
// Resizes vs to n elements; elements removed are parked in `spare` with their shape storage, and
// elements added come from there first.
template <class V>
void fit(std::vector<V>& vs, std::vector<V>& spare, std::size_t n) {
  while (vs.size() > n) {
    spare.push_back(std::move(vs.back()));
    vs.pop_back();
  }
  while (vs.size() < n) {
    if (spare.empty()) {
      vs.emplace_back();
    } else {
      vs.push_back(std::move(spare.back()));
      spare.pop_back();
    }
  }
}

// Where the gradients (or gradient tangents) of one node's inputs go. An input gets either a
// tensor of the pass (overwritten when it is still empty, added into when an earlier consumer of a
// fan-out filled it) or a caller's buffer to add into (a parameter sink). An op that accumulates()
// adds in place; otherwise, and for a destination that two inputs of the node share, the op writes
// a temporary that finish() adds.
template <class T>
class GradRouter {
 public:
  // Destinations of the n inputs of the next node, none set yet.
  void begin(std::size_t n) {
    if (m_dest.size() < n) m_dest.resize(n);
    m_n = n;
    for (std::size_t a = 0; a < n; ++a) {
      m_dest[a].data = nullptr;
      m_dest[a].add = m_dest[a].via_tmp = false;
    }
    m_tmp.resize(std::max(m_tmp.size(), n));
  }
  // Input a's destination is t, of shape [k, shape...] (k < 0: `shape`).
  void into_tensor(std::size_t a, Tensor<T>& t, std::int64_t k, const Shape& shape) {
    Dest& d = m_dest[a];
    set_shape(d.shape, k, shape);
    d.add = !t.empty();
    if (!d.add) t.resize(d.shape);
    d.data = t.data();
  }
  void add_into(std::size_t a, T* buf, std::int64_t k, const Shape& shape) {
    Dest& d = m_dest[a];
    set_shape(d.shape, k, shape);
    d.data = buf;
    d.add = true;
  }
  bool any() const {
    for (std::size_t a = 0; a < m_n; ++a)
      if (m_dest[a].data) return true;
    return false;
  }
  void bind(const Op& op, std::vector<View<T>>& gin, std::uint32_t& mask) {
    fit(gin, m_spare, m_n);
    mask = 0;
    for (std::size_t a = 0; a < m_n; ++a) {
      Dest& d = m_dest[a];
      if (!d.data) {
        gin[a].data = nullptr;
        gin[a].shape.clear();
        continue;
      }
      bool shared = false;
      for (std::size_t b = 0; b < a; ++b) shared = shared || m_dest[b].data == d.data;
      if (!shared && (!d.add || (op.accumulates() && a < 32))) {
        set_view(gin[a], d.data, d.shape);
        if (d.add) mask |= std::uint32_t(1) << a;
        d.via_tmp = false;
      } else {
        m_tmp[a].resize(d.shape);
        set_view(gin[a], m_tmp[a].data(), d.shape);
        d.via_tmp = true;
      }
    }
  }
  // Adds the temporaries into their destinations (overwrites those that were still empty).
  void finish() {
    for (std::size_t a = 0; a < m_n; ++a) {
      const Dest& d = m_dest[a];
      if (!d.data || !d.via_tmp) continue;
      const T* s = m_tmp[a].data();
      const std::int64_t n = numel(d.shape);
      for (std::int64_t i = 0; i < n; ++i) d.data[i] += s[i];
    }
  }

 private:
  struct Dest {
    T* data = nullptr;
    bool add = false;
    Shape shape;
    bool via_tmp = false;
  };
  std::vector<Dest> m_dest;  // the first m_n are the current node's
  std::size_t m_n = 0;
  std::vector<Tensor<T>> m_tmp;
  std::vector<View<T>> m_spare;
};

}  // namespace

template <class T>
GraphExecutor<T>::GraphExecutor(const Model& model) : m_model(model) {
  for (int i = 0; i < model.num_constants(); ++i) m_consts.push_back(cast<T>(model.constant(i)));
  const auto& vals = model.values();
  m_depends.assign(vals.size(), false);
  for (const auto& p : model.params()) m_depends[p.value] = true;
  for (const auto& n : model.nodes())
    for (int v : n.inputs) m_depends[n.output] = m_depends[n.output] || m_depends[v];
  m_first_consumer.assign(vals.size(), -1);
  m_last_consumer.assign(vals.size(), -1);
  for (std::size_t i = 0; i < model.nodes().size(); ++i)
    for (int v : model.nodes()[i].inputs) {
      if (m_first_consumer[v] < 0) m_first_consumer[v] = static_cast<int>(i);
      m_last_consumer[v] = static_cast<int>(i);
    }
  for (const auto& n : model.nodes()) {
    bool keep = n.op->tangent_reads_output_grad();
    for (int v : n.inputs) keep = keep || vals[v].kind == ValueKind::Parameter;
    m_keep_grad.push_back(keep);
  }
  // Node values (but the model output) that only the forward pass reads, and forward tangents that
  // only the jvp pass reads: freed after their last consumer (the values were 63% of a ResNet-50
  // pass: convolution outputs under ReLUs and residual Adds, and those Adds).
  m_drop.assign(vals.size(), false);
  m_drop_tangent.assign(vals.size(), false);
  for (std::size_t i = 0; i < vals.size(); ++i) {
    const Value& v = vals[i];
    if (v.kind != ValueKind::Node || static_cast<int>(i) == model.output()) continue;
    m_drop[i] = !model.nodes()[v.producer].op->derivatives_read_output();
    m_drop_tangent[i] = true;
  }
  for (const auto& n : model.nodes())
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const int v = n.inputs[a];
      if (n.op->derivatives_read_input(static_cast<int>(a))) m_drop[v] = false;
      if (n.op->tangent_reads_input_tangent(static_cast<int>(a))) m_drop_tangent[v] = false;
    }
}

template <class T>
void GraphExecutor<T>::set_params(const std::vector<double>& w) {
  m_params.clear();
  for (const auto& p : m_model.params()) {
    Tensor<T> t(p.shape);
    for (std::int64_t j = 0; j < p.size; ++j) {
      const double v = w[p.offset + j];
      if (!std::isfinite(v))
        throw std::invalid_argument("objective: parameter '" + p.name + "' has a non-finite value");
      t.data()[j] = T(v);
    }
    m_params.push_back(std::move(t));
  }
}

template <class T>
const Tensor<T>& GraphExecutor<T>::value(const Pass<T>& p, int v) const {
  const Value& val = m_model.values()[v];
  switch (val.kind) {
    case ValueKind::Parameter:
      return m_params[val.index];
    case ValueKind::Constant:
      return m_consts[val.index];
    default:
      return p.vals[v];
  }
}

template <class T>
ConstView<T> GraphExecutor<T>::view(const Pass<T>& p, int v) const {
  return value(p, v).view();
}

template <class T>
void GraphExecutor<T>::forward(Pass<T>& p, std::int64_t first, std::int64_t count,
                               const std::vector<const float*>& x, bool keep_all) const {
  const auto& vals = m_model.values();
  const auto& nodes = m_model.nodes();
  p.first = first;
  p.count = count;
  p.vals.assign(vals.size(), {});
  p.states.assign(nodes.size(), {});
  p.grads.assign(vals.size(), {});
  p.has_grad = false;
  const auto& inputs = m_model.inputs();
  assert(x.size() == inputs.size() && "forward: one data pointer per model input");
  for (std::size_t a = 0; a < inputs.size(); ++a) {
    const Shape& sample = vals[inputs[a]].shape;
    const std::int64_t sn = numel(sample);
    Tensor<T>& xin = p.vals[inputs[a]];
    xin.resize(with_lead(count, sample));
    for (std::int64_t i = 0; i < count * sn; ++i) xin.data()[i] = T(x[a][i]);
  }
  OpCtx<T> ctx;
  std::vector<ConstView<T>> spare;
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    fit(ctx.in, spare, n.inputs.size());
    shapes.resize(n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const Tensor<T>& t = value(p, n.inputs[a]);
      set_view(ctx.in[a], t.data(), t.shape());
      shapes[a].assign(t.shape().begin(), t.shape().end());
    }
    Tensor<T>& out = p.vals[n.output];
    out.resize(n.op->output_shape(shapes));
    ctx.state = &p.states[i];
    n.op->forward(ctx, out.view());
    if (keep_all) continue;
    for (int v : n.inputs)
      if (m_drop[v] && m_last_consumer[v] == static_cast<int>(i)) p.vals[v].release_data();
  }
}

template <class T>
void GraphExecutor<T>::backward(Pass<T>& p, const ParamSink<T>* sink, bool keep_grads,
                                const std::vector<bool>* keep) const {
  const bool node_grads = !p.has_grad;
  if (!node_grads && !sink) return;
  const auto& vals = m_model.values();
  const auto& nodes = m_model.nodes();
  OpCtx<T> ctx;
  std::vector<ConstView<T>> spare;
  GradRouter<T> router;
  for (std::size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    const Tensor<T>& g = p.grads[n.output];
    if (g.empty()) continue;
    fit(ctx.in, spare, n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const Tensor<T>& t = value(p, n.inputs[a]);
      set_view(ctx.in[a], t.data(), t.shape());
    }
    router.begin(n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const int v = n.inputs[a];
      const Value& val = vals[v];
      if (val.kind == ValueKind::Parameter) {
        if (sink && (*sink)[val.index]) router.add_into(a, (*sink)[val.index], -1, ctx.in[a].shape);
      } else if (node_grads && m_depends[v]) {
        router.into_tensor(a, p.grads[v], -1, ctx.in[a].shape);
      }
    }
    if (router.any()) {
      set_view(ctx.out, p.vals[n.output].data(), p.vals[n.output].shape());
      set_view(ctx.gout, g.data(), g.shape());
      ctx.state = &p.states[i];
      router.bind(*n.op, ctx.gin, ctx.accumulate);
      n.op->backward(ctx);
      router.finish();
    }
    // The gradient of this node's output is complete and consumed: keep it only for a Hessian
    // product that reads it.
    if (node_grads && !(keep_grads && m_keep_grad[i]) && !(keep && (*keep)[n.output])) p.grads[n.output].clear();
  }
  if (node_grads && keep_grads) p.has_grad = true;
}

template <class T>
std::vector<bool> GraphExecutor<T>::tangent_dependence(const std::vector<Tensor<T>>& ptan) const {
  std::vector<bool> tdep(m_model.values().size(), false);
  for (std::size_t i = 0; i < ptan.size(); ++i)
    if (!ptan[i].empty()) tdep[m_model.params()[i].value] = true;
  for (const auto& n : m_model.nodes())
    for (int v : n.inputs) tdep[n.output] = tdep[n.output] || tdep[v];
  return tdep;
}

template <class T>
void GraphExecutor<T>::bind(OpCtx<T>& ctx, const Pass<T>& p, std::size_t i, std::int64_t k,
                            const std::vector<Tensor<T>>& ptan, const std::vector<Tensor<T>>& tv) const {
  const auto& vals = m_model.values();
  const Node& n = m_model.nodes()[i];
  thread_local std::vector<ConstView<T>> spare_in, spare_tin;
  fit(ctx.in, spare_in, n.inputs.size());
  fit(ctx.tin, spare_tin, n.inputs.size());
  for (std::size_t a = 0; a < n.inputs.size(); ++a) {
    const int v = n.inputs[a];
    const Tensor<T>& x = value(p, v);
    set_view(ctx.in[a], x.data(), x.shape());
    const Value& val = vals[v];
    const Tensor<T>* t = nullptr;
    if (val.kind == ValueKind::Parameter) {
      if (!ptan[val.index].empty()) t = &ptan[val.index];
    } else if (!tv[v].empty()) {
      t = &tv[v];
    }
    // An absent tangent (zero) is null data with the shape [k, ...] of the input.
    if (t)
      set_view(ctx.tin[a], t->data(), t->shape());
    else
      set_view_lead(ctx.tin[a], static_cast<const T*>(nullptr), k, x.shape());
  }
  set_view(ctx.out, p.vals[n.output].data(), p.vals[n.output].shape());
  ctx.state = const_cast<OpState<T>*>(&p.states[i]);
}

template <class T>
void GraphExecutor<T>::jvp(const Pass<T>& p, std::int64_t k, const std::vector<Tensor<T>>& ptan,
                           const std::vector<bool>& tdep, std::vector<Tensor<T>>& tv) const {
  const auto& nodes = m_model.nodes();
  tv.assign(m_model.values().size(), {});
  OpCtx<T> ctx;
  ctx.k = k;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    if (!tdep[n.output]) continue;
    bind(ctx, p, i, k, ptan, tv);
    tv[n.output].resize(with_lead(k, ctx.out.shape));
    set_view(ctx.tout, tv[n.output].data(), tv[n.output].shape());
    n.op->jvp(ctx);
    for (int v : n.inputs)
      if (m_drop_tangent[v] && m_last_consumer[v] == static_cast<int>(i)) tv[v].clear();
  }
}

template <class T>
void GraphExecutor<T>::vjp_tangent(const Pass<T>& p, std::int64_t k, const std::vector<Tensor<T>>& ptan,
                                   const std::vector<bool>& tdep, std::vector<Tensor<T>>& tv,
                                   std::vector<Tensor<T>>& tg, const ParamSink<T>& sink, bool second_order) const {
  const auto& vals = m_model.values();
  const auto& nodes = m_model.nodes();
  OpCtx<T> ctx;
  ctx.k = k;
  ctx.second_order = second_order;
  GradRouter<T> router;
  Tensor<T> zeros;  // the primal gradient where the pass has none (Gauss-Newton: read, never used)
  for (std::size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    if (tg[n.output].empty()) continue;
    bind(ctx, p, i, k, ptan, tv);
    const Tensor<T>& g = p.grads[n.output];
    if (!g.empty()) {
      set_view(ctx.gout, g.data(), g.shape());
    } else {
      assert((!second_order || !n.op->tangent_reads_output_grad()) &&
             "vjp_tangent: second-order terms need the primal gradients");
      if (zeros.size() < ctx.out.size()) zeros = Tensor<T>(Shape{ctx.out.size()});
      set_view(ctx.gout, zeros.data(), ctx.out.shape);
    }
    set_view(ctx.tgout, tg[n.output].data(), tg[n.output].shape());
    router.begin(n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const int v = n.inputs[a];
      if (!tdep[v]) continue;
      const Value& val = vals[v];
      if (val.kind == ValueKind::Parameter) {
        if (sink[val.index]) router.add_into(a, sink[val.index], k, ctx.in[a].shape);
      } else {
        router.into_tensor(a, tg[v], k, ctx.in[a].shape);
      }
    }
    if (router.any()) {
      router.bind(*n.op, ctx.tgin, ctx.accumulate);
      n.op->backward_tangent(ctx);
      router.finish();
    }
    // Free what no remaining (earlier-in-graph) node needs: this node's output gradient tangent and
    // the forward tangents that only this and later nodes read.
    tg[n.output].clear();
    for (int v : n.inputs)
      if (m_first_consumer[v] == static_cast<int>(i)) tv[v].clear();
  }
}

template class GraphExecutor<float>;
template class GraphExecutor<double>;

}  // namespace curv::internal
