#pragma once
// The passes of a Model's graph on one micro-batch (internal to the Objective):
//
//   forward          values v = op(inputs) in node order, op states saved
//   backward         dL/dx_i += J_i^T dL/dy in reverse node order (fan-out accumulates)
//   jvp              y' = sum_i J_i x_i' for k directions at once, on the nodes that depend on them
//   vjp_tangent      (dL/dx_i)' += J_i^T (dL/dy)' [+ second-order terms] in reverse node order
//
// Parameter gradients are not kept in the pass: they are added into a ParamSink, one buffer per
// parameter that the caller owns (the Objective's run accumulator), so the gradients of many
// micro-batches sum in place. Ops that accumulate() add into the sink (and into the gradient of a
// value with fan-out) directly; for the others the executor adds a temporary.
//
// The executor holds the parameters and constants cast to T; passes write only into the Pass and
// tangent buffers they are given, so one executor serves many micro-batches concurrently.
#include <cstdint>
#include <vector>

#include "src/core/internal/pass.h"
#include "src/core/model.h"

namespace curv::internal {

/// Where parameter gradients go: sink[i] points to a buffer shaped like parameter i (with a leading
/// k for tangent passes: [k, ...shape]) that the pass adds into; nullptr: not wanted.
template <class T>
using ParamSink = std::vector<T*>;

template <class T>
class GraphExecutor {
 public:
  /// Copies the model's constants (cast to T); parameters come from set_params. The model must
  /// outlive the executor.
  explicit GraphExecutor(const Model& model);

  const Model& model() const { return m_model; }
  /// Replaces the parameters (flat vector in Model order). Throws std::invalid_argument naming a
  /// parameter with a non-finite value.
  void set_params(const std::vector<double>& w);
  /// The parameters, one tensor per Model::params() entry.
  const std::vector<Tensor<T>>& params() const { return m_params; }
  /// Whether value v depends on any parameter (gets a gradient in backward).
  bool depends_on_params(int v) const { return m_depends[v]; }
  /// Whether backward with keep_grads keeps the gradient of node i's output: its op reads it in
  /// Hessian products, or the node has a parameter input (a later gradient on the kept pass needs it).
  bool keeps_grad(int node) const { return m_keep_grad[node]; }
  /// Whether forward frees value v once its last consumer has run: a node value, not the model's
  /// output, that no derivative kernel reads (Op::derivatives_read_input / _output). Its tensor in
  /// the pass then keeps the shape with no data.
  bool drops(int v) const { return m_drop[v]; }

  /// The primal value v of pass p (parameters and constants are shared, not in the pass).
  ConstView<T> view(const Pass<T>& p, int v) const;

  /// Resets p and runs every node on `count` samples; x[i] holds the data of Model::inputs()[i]
  /// (float32, [count, ...its shape]). Values that drops() are freed on the way unless keep_all.
  void forward(Pass<T>& p, std::int64_t first, std::int64_t count, const std::vector<const float*>& x,
               bool keep_all = false) const;
  /// From the output gradient seeded in p.grads: computes the gradients of the node values unless
  /// p.has_grad, and adds the parameter gradients into `sink` (nullptr: none). With `keep_grads`
  /// the pass keeps the node-value gradients that later calls read (keeps_grad; p.has_grad is
  /// set); every other one is freed as soon as its node
  /// has run, which bounds the gradient's memory by the reverse sweep's frontier, as in PyTorch
  /// (the output gradient too: reseed it to run again).
  /// `keep` (by value id, optional): activation gradients to keep as well, whatever keep_grads.
  void backward(Pass<T>& p, const ParamSink<T>* sink, bool keep_grads = true,
                const std::vector<bool>* keep = nullptr) const;

  /// Which values depend on the parameters that have tangents (ptan[i] not empty).
  std::vector<bool> tangent_dependence(const std::vector<Tensor<T>>& ptan) const;
  /// Forward tangents tv[v] ([k, ...]) of every value that depends on the directions; ptan holds the
  /// parameter tangents [k, ...shape] (empty: zero), tdep comes from tangent_dependence. Tangents
  /// that no backward_tangent reads (Op::tangent_reads_input_tangent) are freed as soon as their
  /// last consumer has run: only the model output's and those read later stay in tv.
  void jvp(const Pass<T>& p, std::int64_t k, const std::vector<Tensor<T>>& ptan, const std::vector<bool>& tdep,
           std::vector<Tensor<T>>& tv) const;
  /// Reverse tangent pass from the tangent of the output gradient seeded in tg (by value id); adds
  /// the tangents of the parameters' gradients into `sink` ([k, ...shape] buffers). Frees tangents
  /// (tv and tg) on the way as soon as no remaining node needs them. With `second_order` the primal
  /// gradients must be in p (p.has_grad); without it they are not read.
  void vjp_tangent(const Pass<T>& p, std::int64_t k, const std::vector<Tensor<T>>& ptan,
                   const std::vector<bool>& tdep, std::vector<Tensor<T>>& tv, std::vector<Tensor<T>>& tg,
                   const ParamSink<T>& sink, bool second_order) const;

 private:
  // Binds the primal inputs, input tangents (null data: zero, with its [k, ...] shape), output and
  // state of node i to ctx.
  void bind(OpCtx<T>& ctx, const Pass<T>& p, std::size_t i, std::int64_t k, const std::vector<Tensor<T>>& ptan,
            const std::vector<Tensor<T>>& tv) const;
  // The tensor holding value v in pass p (a parameter, constant or node value).
  const Tensor<T>& value(const Pass<T>& p, int v) const;

  const Model& m_model;
  std::vector<Tensor<T>> m_params, m_consts;
  std::vector<bool> m_depends;        // by value id: depends on some parameter
  std::vector<int> m_first_consumer;  // by value id: the first node that reads it (-1: none)
  std::vector<int> m_last_consumer;   // by value id: the last node that reads it (-1: none)
  std::vector<bool> m_keep_grad;      // by node: see keeps_grad
  std::vector<bool> m_drop;           // by value id: see drops
  std::vector<bool> m_drop_tangent;   // by value id: jvp frees its tangent after the last consumer
};

}  // namespace curv::internal
