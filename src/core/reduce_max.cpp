// ReduceMax / ReduceMin over `axes` (empty: all), keepdims as ONNX. At ties the derivative is
// split evenly between the maximal elements, as torch.amax / amin (the op ONNX ReduceMax comes
// from) define it: with M(o) = {i -> o : x_i = y_o} and m_o = |M(o)|,
//   y_o = max_{i -> o} x_i,  y'_o = sum_{i in M(o)} x'_i / m_o,  g_x_i = [i in M(o)] g_o / m_o.
// For fixed x this is linear in x' and g, so the VJP tangent applies the same map to g' and
// there is no second-order term (piecewise linear, as PyTorch's double backward).
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "src/core/internal/axis.h"
#include "src/core/internal/broadcast.h"
#include "src/core/ops.h"

namespace curv {
namespace {

class ReduceMaxOp final : public OpImpl<ReduceMaxOp> {
 public:
  ReduceMaxOp(bool min, std::vector<std::int64_t> axes, bool keepdims)
      : m_min(min), m_axes(std::move(axes)), m_keep(keepdims) {
    auto a = m_axes;
    std::sort(a.begin(), a.end());
    if (std::adjacent_find(a.begin(), a.end()) != a.end())
      throw std::invalid_argument(type() + ": axes " + shape_str(m_axes) + " repeat an axis");
  }
  std::string type() const override { return m_min ? "ReduceMin" : "ReduceMax"; }
  bool derivatives_read_output() const override { return true; }
  OpSpec spec() const override { return OpSpec(type()).set_ints("axes", m_axes).set_bool("keepdims", m_keep); }
  int arity() const override { return 1; }
  bool tangent_reads_output_grad() const override { return false; }
  Shape kept(const Shape& x) const {
    Shape k = x;
    std::vector<bool> red(x.size(), m_axes.empty());
    for (auto a : m_axes) red[internal::norm_axis(a, x.size(), type())] = true;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (red[i]) k[i] = 1;
    return k;
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    const Shape k = kept(x);
    for (std::size_t i = 0; i < x.size(); ++i)
      if (k[i] != x[i] && x[i] == 0)
        throw std::invalid_argument(type() + ": cannot reduce an empty dim of " + shape_str(x));
    if (m_keep) return k;
    Shape out;
    std::vector<bool> red(x.size(), m_axes.empty());
    for (auto a : m_axes) red[internal::norm_axis(a, x.size(), type())] = true;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!red[i]) out.push_back(x[i]);
    return out;
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T* x = c.in[0].data;
    std::fill(out.data, out.data + out.size(),
              m_min ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity());
    internal::Broadcast b(c.in[0].shape, kept(c.in[0].shape));
    b.for_each([&](auto, auto ia, auto io) {
      if (m_min ? x[ia] < out.data[io] : x[ia] > out.data[io]) out.data[io] = x[ia];
    });
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (c.gin[0].data) back(c, c.gout.data, c.gin[0].data);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t no = c.out.size(), nx = c.in[0].size();
    const std::vector<T> inv = inv_counts(c);
    internal::Broadcast b(c.in[0].shape, kept(c.in[0].shape));
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* o = c.tout.data + j * no;
      std::fill(o, o + no, T(0));
      if (!c.tin[0].data) continue;
      const T* t = c.tin[0].data + j * nx;
      b.for_each([&](auto, auto ia, auto io) {
        if (c.in[0].data[ia] == c.out.data[io]) o[io] += t[ia] * inv[io];
      });
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const std::int64_t no = c.out.size(), nx = c.in[0].size();
    if (!c.tgin[0].data) return;
    for (std::int64_t j = 0; j < c.k; ++j) back(c, c.tgout.data + j * no, c.tgin[0].data + j * nx);
  }

 private:
  // 1 / m_o, the share of each maximal element.
  template <class T>
  std::vector<T> inv_counts(const OpCtx<T>& c) const {
    std::vector<T> cnt(c.out.size(), T(0));
    internal::Broadcast b(c.in[0].shape, kept(c.in[0].shape));
    b.for_each([&](auto, auto ia, auto io) {
      if (c.in[0].data[ia] == c.out.data[io]) cnt[io] += T(1);
    });
    for (auto& v : cnt) v = v > T(0) ? T(1) / v : T(0);
    return cnt;
  }
  template <class T>
  void back(const OpCtx<T>& c, const T* g, T* gx) const {
    const std::vector<T> inv = inv_counts(c);
    internal::Broadcast b(c.in[0].shape, kept(c.in[0].shape));
    b.for_each([&](auto, auto ia, auto io) { gx[ia] = c.in[0].data[ia] == c.out.data[io] ? g[io] * inv[io] : T(0); });
  }

  bool m_min;
  std::vector<std::int64_t> m_axes;
  bool m_keep;
};

}  // namespace

OpPtr make_reduce_max(bool min, std::vector<std::int64_t> axes, bool keepdims) {
  return std::make_shared<ReduceMaxOp>(min, std::move(axes), keepdims);
}

}  // namespace curv
