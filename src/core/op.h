#pragma once
/// \file op.h
/// The op concept: every op of the graph implements four kernels, each for float and double.
///
///   forward           y = f(x_1..x_n)
///   backward (VJP)    g_i = (df/dx_i)^T g_y
///   jvp               y' = sum_i (df/dx_i) x_i'              for k tangents at once
///   backward_tangent  g_i' = (df/dx_i)^T g_y'  [+ d/dt (df/dx_i(x + t x'))^T g_y]
///
/// backward_tangent is the tangent of the VJP (forward-over-reverse, Pearlmutter's R-op): run on
/// every node in reverse order it turns tangents of the output gradient into tangents of the
/// parameter gradient, i.e. exact Hessian-vector products. With `second_order = false` the bracket
/// is dropped and the same pass computes J^T u (Gauss-Newton and Fisher products).
///
/// Layouts: primal tensors are [N, ...]; tangents carry k directions in a leading dimension,
/// [k, N, ...], direction j contiguous. A tangent input with `data == nullptr` is zero (data,
/// constants); a gradient output with `data == nullptr` is not wanted. Kernels overwrite their
/// outputs (the executor accumulates fan-out), except where an op that accumulates() is asked to
/// add into gin[i] / tgin[i] by bit i of OpCtx::accumulate: the executor then sums the parameter
/// gradients of many micro-batches in place, without a temporary per call.
///
/// Thread-safety: ops are immutable after construction; all per-call memory is in Ctx/OpState, so
/// one op may run on many micro-batches concurrently.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/core/op_spec.h"
#include "src/core/tensor.h"

namespace curv {

/// What forward saves for the derivative kernels (argmax indices, batch statistics, ...).
template <class T>
struct OpState {
  std::vector<Tensor<T>> saved;
  std::vector<std::int64_t> index;
};

template <class T>
struct OpCtx {
  std::vector<ConstView<T>> in;  // primal inputs
  ConstView<T> out;              // primal output (set after forward)
  OpState<T>* state = nullptr;
  // backward
  ConstView<T> gout;           // dL/dy
  std::vector<View<T>> gin;    // dL/dx_i, [in_i]; data == nullptr: not wanted
  // tangents (k directions)
  std::int64_t k = 0;
  std::vector<ConstView<T>> tin;  // x_i', [k, in_i]; data == nullptr: zero
  View<T> tout;                   // y', [k, out]
  ConstView<T> tgout;             // (dL/dy)', [k, out]
  std::vector<View<T>> tgin;      // (dL/dx_i)', [k, in_i]; data == nullptr: not wanted
  bool second_order = true;
  // backward / backward_tangent: bit i set -> add into gin[i] / tgin[i] instead of overwriting.
  std::uint32_t accumulate = 0;
};

class Op {
 public:
  virtual ~Op() = default;
  /// ONNX-style op type, e.g. "Conv".
  virtual std::string type() const = 0;
  /// The op as data: its type and every attribute, exactly enough to rebuild it with make_op
  /// (op_registry.h) into an op with the same spec and bit-identical kernels.
  virtual OpSpec spec() const = 0;
  /// The attributes in a short human-readable form, e.g. "group=1 kernel=[3, 3] pads=[1, 1, 1, 1]".
  std::string attributes() const { return spec().format(); }
  /// Output shape for the given input shapes; throws std::invalid_argument naming the shapes.
  virtual Shape output_shape(const std::vector<Shape>& in) const = 0;
  /// Number of inputs (-1: variadic).
  virtual int arity() const = 0;
  /// Whether the op mixes samples of the batch (BatchNorm with batch statistics).
  virtual bool mixes_batch() const { return false; }
  /// Whether backward and backward_tangent honor OpCtx::accumulate.
  virtual bool accumulates() const { return false; }
  /// Whether backward_tangent with second_order reads gout. Ops that are linear or piecewise linear
  /// in their inputs (ReLU, Add, pooling, shape ops) have no second-order term and return false;
  /// the Objective then keeps no primal gradient of their outputs for Hessian products.
  virtual bool tangent_reads_output_grad() const { return true; }
  /// Whether the derivative kernels (backward, jvp, backward_tangent) read the data of primal input
  /// i, or of the primal output (their shapes are always bound). The executor frees, after a
  /// node's last consumer has run forward, every node value that no derivative kernel reads (a
  /// convolution's output under a ReLU or a residual Add); the kernels then see its view with the
  /// shape and null data. Inputs: read unless an op says otherwise. Output: read only by the ops
  /// that say so (Relu, Softmax, LogSoftmax, ReduceMax/Min): an op whose derivative kernels read
  /// c.out.data must return true here.
  virtual bool derivatives_read_input(int i) const {
    (void)i;
    return true;
  }
  virtual bool derivatives_read_output() const { return false; }
  /// Whether backward_tangent reads the forward tangent of input i (c.tin[i], in second-order
  /// terms). The executor frees a forward tangent that no backward_tangent reads once its last
  /// consumer's jvp has run; backward_tangent then sees it as absent (null data: zero).
  virtual bool tangent_reads_input_tangent(int i) const {
    (void)i;
    return true;
  }

  virtual void forward(OpCtx<float>& c, View<float> out) const = 0;
  virtual void forward(OpCtx<double>& c, View<double> out) const = 0;
  virtual void backward(OpCtx<float>& c) const = 0;
  virtual void backward(OpCtx<double>& c) const = 0;
  virtual void jvp(OpCtx<float>& c) const = 0;
  virtual void jvp(OpCtx<double>& c) const = 0;
  virtual void backward_tangent(OpCtx<float>& c) const = 0;
  virtual void backward_tangent(OpCtx<double>& c) const = 0;
};

/// CRTP glue: Derived defines template<class T> fwd/bwd/jvp_/bwdt taking OpCtx<T>&.
template <class Derived>
class OpImpl : public Op {
 public:
  void forward(OpCtx<float>& c, View<float> out) const override { self().fwd(c, out); }
  void forward(OpCtx<double>& c, View<double> out) const override { self().fwd(c, out); }
  void backward(OpCtx<float>& c) const override { self().bwd(c); }
  void backward(OpCtx<double>& c) const override { self().bwd(c); }
  void jvp(OpCtx<float>& c) const override { self().tan(c); }
  void jvp(OpCtx<double>& c) const override { self().tan(c); }
  void backward_tangent(OpCtx<float>& c) const override { self().bwdt(c); }
  void backward_tangent(OpCtx<double>& c) const override { self().bwdt(c); }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

using OpPtr = std::shared_ptr<const Op>;

}  // namespace curv
