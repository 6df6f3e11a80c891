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

// Where the gradients (or gradient tangents) of one node's inputs go. An input gets either a
// tensor of the pass (overwritten when it is still empty, added into when an earlier consumer of a
// fan-out filled it) or a caller's buffer to add into (a parameter sink). An op that accumulates()
// adds in place; otherwise, and for a destination that two inputs of the node share, the op writes
// a temporary that finish() adds.
template <class T>
class GradRouter {
 public:
  void begin(std::size_t n) {
    m_dest.assign(n, Dest{});
    m_tmp.resize(std::max(m_tmp.size(), n));
  }
  void into_tensor(std::size_t a, Tensor<T>& t, const Shape& shape) {
    if (t.empty()) {
      t.resize(shape);
      m_dest[a] = {t.data(), false, shape};
    } else {
      m_dest[a] = {t.data(), true, shape};
    }
  }
  void add_into(std::size_t a, T* buf, const Shape& shape) { m_dest[a] = {buf, true, shape}; }
  bool any() const {
    for (const auto& d : m_dest)
      if (d.data) return true;
    return false;
  }
  void bind(const Op& op, std::vector<View<T>>& gin, std::uint32_t& mask) {
    gin.assign(m_dest.size(), View<T>{});
    mask = 0;
    for (std::size_t a = 0; a < m_dest.size(); ++a) {
      Dest& d = m_dest[a];
      if (!d.data) continue;
      bool shared = false;
      for (std::size_t b = 0; b < a; ++b) shared = shared || m_dest[b].data == d.data;
      if (!shared && (!d.add || (op.accumulates() && a < 32))) {
        gin[a] = View<T>{d.data, d.shape};
        if (d.add) mask |= std::uint32_t(1) << a;
        d.via_tmp = false;
      } else {
        m_tmp[a].resize(d.shape);
        gin[a] = m_tmp[a].view();
        d.via_tmp = true;
      }
    }
  }
  // Adds the temporaries into their destinations (overwrites those that were still empty).
  void finish() {
    for (std::size_t a = 0; a < m_dest.size(); ++a) {
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
  std::vector<Dest> m_dest;
  std::vector<Tensor<T>> m_tmp;
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
  for (std::size_t i = 0; i < model.nodes().size(); ++i)
    for (int v : model.nodes()[i].inputs)
      if (m_first_consumer[v] < 0) m_first_consumer[v] = static_cast<int>(i);
  for (const auto& n : model.nodes()) {
    bool keep = n.op->tangent_reads_output_grad();
    for (int v : n.inputs) keep = keep || vals[v].kind == ValueKind::Parameter;
    m_keep_grad.push_back(keep);
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
ConstView<T> GraphExecutor<T>::view(const Pass<T>& p, int v) const {
  const Value& val = m_model.values()[v];
  switch (val.kind) {
    case ValueKind::Parameter:
      return m_params[val.index].view();
    case ValueKind::Constant:
      return m_consts[val.index].view();
    default:
      return p.vals[v].view();
  }
}

template <class T>
void GraphExecutor<T>::forward(Pass<T>& p, std::int64_t first, std::int64_t count,
                               const std::vector<const float*>& x) const {
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
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    ctx.in.clear();
    shapes.clear();
    for (int v : n.inputs) {
      ctx.in.push_back(view(p, v));
      shapes.push_back(ctx.in.back().shape);
    }
    Tensor<T>& out = p.vals[n.output];
    out.resize(n.op->output_shape(shapes));
    ctx.state = &p.states[i];
    n.op->forward(ctx, out.view());
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
  GradRouter<T> router;
  for (std::size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    const Tensor<T>& g = p.grads[n.output];
    if (g.empty()) continue;
    ctx.in.clear();
    for (int v : n.inputs) ctx.in.push_back(view(p, v));
    router.begin(n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const int v = n.inputs[a];
      const Value& val = vals[v];
      if (val.kind == ValueKind::Parameter) {
        if (sink && (*sink)[val.index]) router.add_into(a, (*sink)[val.index], ctx.in[a].shape);
      } else if (node_grads && m_depends[v]) {
        router.into_tensor(a, p.grads[v], ctx.in[a].shape);
      }
    }
    if (router.any()) {
      ctx.out = p.vals[n.output].view();
      ctx.gout = g.view();
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
  ctx.in.clear();
  ctx.tin.clear();
  for (int v : n.inputs) {
    ctx.in.push_back(view(p, v));
    const Value& val = vals[v];
    ConstView<T> t;
    if (val.kind == ValueKind::Parameter) {
      const Tensor<T>& pt = ptan[val.index];
      t = pt.empty() ? ConstView<T>{nullptr, with_lead(k, val.shape)} : pt.view();
    } else if (!tv[v].empty()) {
      t = tv[v].view();
    }
    if (!t.data) t.shape = with_lead(k, ctx.in.back().shape);
    ctx.tin.push_back(t);
  }
  ctx.out = p.vals[n.output].view();
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
    ctx.tout = tv[n.output].view();
    n.op->jvp(ctx);
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
      ctx.gout = g.view();
    } else {
      assert((!second_order || !n.op->tangent_reads_output_grad()) &&
             "vjp_tangent: second-order terms need the primal gradients");
      if (zeros.size() < ctx.out.size()) zeros = Tensor<T>(Shape{ctx.out.size()});
      ctx.gout = ConstView<T>{zeros.data(), ctx.out.shape};
    }
    ctx.tgout = tg[n.output].view();
    router.begin(n.inputs.size());
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      const int v = n.inputs[a];
      if (!tdep[v]) continue;
      const Value& val = vals[v];
      if (val.kind == ValueKind::Parameter) {
        if (sink[val.index]) router.add_into(a, sink[val.index], with_lead(k, ctx.in[a].shape));
      } else {
        router.into_tensor(a, tg[v], with_lead(k, ctx.in[a].shape));
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
