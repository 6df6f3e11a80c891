#include "src/core/internal/graph_executor.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace curv::internal {

namespace {

template <class T>
Tensor<T> cast(const Tensor<double>& t) {
  return Tensor<T>(t.shape(), std::vector<T>(t.vec().begin(), t.vec().end()));
}

// dst += src, where an empty dst takes src over.
template <class T>
void add_into(Tensor<T>& dst, Tensor<T>&& src) {
  if (dst.empty()) {
    dst = std::move(src);
    return;
  }
  T* d = dst.data();
  const T* s = src.data();
  for (std::int64_t i = 0; i < dst.size(); ++i) d[i] += s[i];
}

}  // namespace

template <class T>
GraphExecutor<T>::GraphExecutor(const Model& model) : m_model(model) {
  for (int i = 0; i < model.num_constants(); ++i) m_consts.push_back(cast<T>(model.constant(i)));
  const auto& vals = model.values();
  m_depends.assign(vals.size(), false);
  for (const auto& p : model.params()) m_depends[p.value] = true;
  for (const auto& n : model.nodes())
    for (int v : n.inputs) m_depends[n.output] = m_depends[n.output] || m_depends[v];
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
void GraphExecutor<T>::forward(Pass<T>& p, std::int64_t first, std::int64_t count, const float* x) const {
  const auto& vals = m_model.values();
  const auto& nodes = m_model.nodes();
  p.first = first;
  p.count = count;
  p.vals.assign(vals.size(), {});
  p.states.assign(nodes.size(), {});
  p.grads.assign(vals.size(), {});
  p.has_grad = false;
  const Shape& sample = m_model.input_shape();
  const std::int64_t sn = numel(sample);
  Tensor<T>& xin = p.vals[m_model.input()];
  xin.resize(with_lead(count, sample));
  for (std::int64_t i = 0; i < count * sn; ++i) xin.data()[i] = T(x[i]);
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
void GraphExecutor<T>::backward(Pass<T>& p) const {
  const auto& nodes = m_model.nodes();
  OpCtx<T> ctx;
  std::vector<Tensor<T>> gin;
  for (std::size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    const Tensor<T>& g = p.grads[n.output];
    if (g.empty()) continue;
    ctx.in.clear();
    for (int v : n.inputs) ctx.in.push_back(view(p, v));
    ctx.out = p.vals[n.output].view();
    ctx.gout = g.view();
    ctx.state = &p.states[i];
    gin.assign(n.inputs.size(), {});
    ctx.gin.assign(n.inputs.size(), View<T>{});
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      if (!m_depends[n.inputs[a]]) continue;
      gin[a].resize(ctx.in[a].shape);
      ctx.gin[a] = gin[a].view();
    }
    n.op->backward(ctx);
    for (std::size_t a = 0; a < n.inputs.size(); ++a)
      if (ctx.gin[a].data) add_into(p.grads[n.inputs[a]], std::move(gin[a]));
  }
  p.has_grad = true;
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
                                   const std::vector<bool>& tdep, const std::vector<Tensor<T>>& tv,
                                   std::vector<Tensor<T>>& tg, bool second_order) const {
  const auto& nodes = m_model.nodes();
  OpCtx<T> ctx;
  ctx.k = k;
  ctx.second_order = second_order;
  std::vector<Tensor<T>> tgin;
  for (std::size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    if (tg[n.output].empty()) continue;
    bind(ctx, p, i, k, ptan, tv);
    ctx.gout = p.grads[n.output].view();
    ctx.tgout = tg[n.output].view();
    tgin.assign(n.inputs.size(), {});
    ctx.tgin.assign(n.inputs.size(), View<T>{});
    for (std::size_t a = 0; a < n.inputs.size(); ++a) {
      if (!tdep[n.inputs[a]]) continue;
      tgin[a].resize(with_lead(k, ctx.in[a].shape));
      ctx.tgin[a] = tgin[a].view();
    }
    n.op->backward_tangent(ctx);
    for (std::size_t a = 0; a < n.inputs.size(); ++a)
      if (ctx.tgin[a].data) add_into(tg[n.inputs[a]], std::move(tgin[a]));
    // Free what no later (earlier-in-graph) node needs: the tangent of this node's output.
    tg[n.output].clear();
  }
}

template class GraphExecutor<float>;
template class GraphExecutor<double>;

}  // namespace curv::internal
