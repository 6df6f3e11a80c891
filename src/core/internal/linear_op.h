#pragma once
// The four kernels of a linear op y = A x from A and A^T (internal). A linear op is its own JVP
// (y' = A x') and its VJP's tangent has no second-order part (g_x' = A^T g_y'), so an op derived
// from LinearOp<Op> supplies only apply (A) and adjoint (A^T).
#include <vector>

#include "src/core/op.h"

namespace curv::internal {

template <class Derived>
class LinearOp : public OpImpl<Derived> {
 public:
  bool tangent_reads_output_grad() const override { return false; }
  // The kernels see only tangents and gradients: no primal input is read (the executor frees a
  // value that only shape ops and other such consumers read).
  bool derivatives_read_input(int) const override { return false; }
  bool tangent_reads_input_tangent(int) const override { return false; }  // no second-order term
  // Derived: Shape output_shape(...); template<class T> void apply(const std::vector<ConstView<T>>& in (null = 0),
  // View<T> out) const; template<class T> void adjoint(ConstView<T> gout, const std::vector<View<T>>& gin) const
  // (gin entries with null data skipped; others overwritten).
  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    self().apply(c.in, out);
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    self().adjoint(c.gout, c.gin);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t no = numel(c.out.shape);
    std::vector<ConstView<T>> tj(c.in.size());
    for (std::int64_t j = 0; j < c.k; ++j) {
      for (size_t i = 0; i < c.in.size(); ++i)
        tj[i] = {c.tin[i].data ? c.tin[i].data + j * c.in[i].size() : nullptr, c.in[i].shape};
      self().apply(tj, View<T>{c.tout.data + j * no, c.out.shape});
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const std::int64_t no = numel(c.out.shape);
    std::vector<View<T>> gj(c.in.size());
    for (std::int64_t j = 0; j < c.k; ++j) {
      for (size_t i = 0; i < c.in.size(); ++i)
        gj[i] = {c.tgin[i].data ? c.tgin[i].data + j * c.in[i].size() : nullptr, c.in[i].shape};
      self().adjoint(ConstView<T>{c.tgout.data + j * no, c.out.shape}, gj);
    }
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace curv::internal
