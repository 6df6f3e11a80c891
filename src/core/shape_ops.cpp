// Linear ops: reshapes, transposes, slices, concat, gather with constant indices, reductions.
// A linear op is its own JVP (y' = A x') and its VJP's tangent has no second-order part
// (g_x' = A^T g_y'), so each op only supplies apply (A) and adjoint (A^T).
#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "src/core/internal/axis.h"
#include "src/core/internal/broadcast.h"
#include "src/core/internal/linear_op.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::LinearOp;
using internal::norm_axis;

// ---------------------------------------------------------------- same data, new shape
class ReshapeOp final : public LinearOp<ReshapeOp> {
 public:
  enum class Kind { Reshape, Flatten, Squeeze, Unsqueeze, Identity };
  ReshapeOp(Kind kind, Shape target, std::vector<std::int64_t> axes, std::int64_t axis, bool allowzero,
            std::string type)
      : m_kind(kind), m_target(std::move(target)), m_axes(std::move(axes)), m_axis(axis), m_allowzero(allowzero),
        m_type(std::move(type)) {
    if (m_kind == Kind::Reshape) {
      internal::require_at_least(m_type, "shape", m_target, -1);
      if (std::count(m_target.begin(), m_target.end(), -1) > 1)
        internal::attr_fail(m_type, "shape " + shape_str(m_target) + " has more than one -1");
      if (m_allowzero && std::count(m_target.begin(), m_target.end(), -1) &&
          std::count(m_target.begin(), m_target.end(), 0))
        internal::attr_fail(m_type, "shape " + shape_str(m_target) + " has both -1 and 0 with allowzero=1");
    }
    if (m_kind == Kind::Squeeze || m_kind == Kind::Unsqueeze) {
      std::vector<std::int64_t> a = m_axes;
      std::sort(a.begin(), a.end());
      if (std::adjacent_find(a.begin(), a.end()) != a.end())
        internal::attr_fail(m_type, "axes " + shape_str(m_axes) + " repeat an axis");
    }
  }
  std::string type() const override { return m_type; }
  OpSpec spec() const override {
    OpSpec s(m_type);
    if (m_kind == Kind::Reshape) s.set_ints("shape", m_target).set_bool("allowzero", m_allowzero);
    if (m_kind == Kind::Flatten) s.set_int("axis", m_axis);
    if (m_kind == Kind::Squeeze || m_kind == Kind::Unsqueeze) s.set_ints("axes", m_axes);
    return s;
  }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 1) throw std::invalid_argument(m_type + ": expected one input");
    const Shape& x = in[0];
    const std::int64_t r = static_cast<std::int64_t>(x.size());
    switch (m_kind) {
      case Kind::Identity: return x;
      case Kind::Flatten: {
        const std::int64_t a = m_axis < 0 ? m_axis + r : m_axis;
        if (a < 0 || a > r) throw std::invalid_argument("Flatten: axis out of range for " + shape_str(x));
        return {numel(Shape(x.begin(), x.begin() + a)), numel(Shape(x.begin() + a, x.end()))};
      }
      case Kind::Squeeze: {
        Shape out;
        std::vector<bool> drop(r, false);
        if (m_axes.empty()) {
          for (std::int64_t i = 0; i < r; ++i) drop[i] = x[i] == 1;
        } else {
          for (auto a : m_axes) {
            const auto i = norm_axis(a, r, "Squeeze");
            if (x[i] != 1) throw std::invalid_argument("Squeeze: dim " + std::to_string(i) + " of " + shape_str(x) + " is not 1");
            drop[i] = true;
          }
        }
        for (std::int64_t i = 0; i < r; ++i)
          if (!drop[i]) out.push_back(x[i]);
        return out;
      }
      case Kind::Unsqueeze: {
        const std::int64_t ro = r + static_cast<std::int64_t>(m_axes.size());
        std::vector<bool> ins(ro, false);
        for (auto a : m_axes) {
          const auto i = norm_axis(a, ro, "Unsqueeze");
          if (ins[i]) throw std::invalid_argument("Unsqueeze: axes " + shape_str(m_axes) + " repeat an axis");
          ins[i] = true;
        }
        Shape out;
        std::int64_t s = 0;
        for (std::int64_t i = 0; i < ro; ++i) out.push_back(ins[i] ? 1 : x[s++]);
        return out;
      }
      case Kind::Reshape: {
        Shape out = m_target;
        std::int64_t infer = -1, known = 1;
        for (size_t i = 0; i < out.size(); ++i) {
          if (out[i] == 0 && !m_allowzero) {
            if (i >= x.size()) throw std::invalid_argument("Reshape: 0 at position beyond input rank " + shape_str(x));
            out[i] = x[i];
          }
          if (out[i] == -1) {
            if (infer >= 0) throw std::invalid_argument("Reshape: more than one -1 in " + shape_str(m_target));
            infer = static_cast<std::int64_t>(i);
          } else {
            known = checked_mul(known, out[i], "Reshape: target " + shape_str(m_target));
          }
        }
        const std::int64_t n = numel(x);
        if (infer >= 0) {
          if (known == 0 || n % known != 0)
            throw std::invalid_argument("Reshape: cannot reshape " + shape_str(x) + " to " + shape_str(m_target));
          out[infer] = n / known;
        }
        if (known != n && infer < 0)
          throw std::invalid_argument("Reshape: cannot reshape " + shape_str(x) + " to " + shape_str(m_target));
        return out;
      }
    }
    return x;
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (in[0].data)
      std::copy_n(in[0].data, out.size(), out.data);
    else
      out.set_zero();
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (gin[0].data) std::copy_n(g.data, g.size(), gin[0].data);
  }

 private:
  Kind m_kind;
  Shape m_target;
  std::vector<std::int64_t> m_axes;
  std::int64_t m_axis;
  bool m_allowzero;
  std::string m_type;
};

// ---------------------------------------------------------------- index maps: y[i] = x[src[i]]
template <class Derived>
class GatherLike : public LinearOp<Derived> {
 public:
  int arity() const override { return 1; }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    const auto src = static_cast<const Derived&>(*this).sources(in[0].shape);
    for (size_t i = 0; i < src.size(); ++i) out.data[i] = in[0].data[src[i]];
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (!gin[0].data) return;
    gin[0].set_zero();
    const auto src = static_cast<const Derived&>(*this).sources(gin[0].shape);
    for (size_t i = 0; i < src.size(); ++i) gin[0].data[src[i]] += g.data[i];
  }
};

// Row-major strides.
std::vector<std::int64_t> strides_of(const Shape& s) {
  std::vector<std::int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// A strided view of x read in the row-major order of `shape`: element i of the view is
// x[base + sum_d idx_d(i) st[d]] (Transpose: st = x's strides permuted; Slice: x's strides times the
// steps). Copying through it runs whole rows with one inner stride instead of an index table.
struct Strided {
  Shape shape;
  std::vector<std::int64_t> st;
  std::int64_t base = 0;

  // Drops size-1 dims and merges neighbours that are contiguous in x ([N, H, T, D] -> [N, T, H, D]
  // has rows of D; the order of visits does not change).
  void coalesce() {
    Shape s;
    std::vector<std::int64_t> t;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      if (!s.empty() && t.back() == st[d] * shape[d]) {
        s.back() *= shape[d];
        t.back() = st[d];
      } else {
        s.push_back(shape[d]);
        t.push_back(st[d]);
      }
    }
    if (s.empty()) s.push_back(1), t.push_back(1);
    shape = std::move(s);
    st = std::move(t);
  }
  // f(flat index of the row's first element, its offset in x, row length, stride in x) per row of
  // the innermost dim, in row-major order.
  template <class F>
  void for_rows(F&& f) const {
    const int r = static_cast<int>(shape.size());
    const std::int64_t n = numel(shape);
    if (n == 0) return;
    const std::int64_t len = shape[r - 1], inner = st[r - 1];
    std::vector<std::int64_t> idx(r, 0);
    std::int64_t off = base;
    for (std::int64_t i = 0; i < n; i += len) {
      f(i, off, len, inner);
      for (int d = r - 2; d >= 0; --d) {
        off += st[d];
        if (++idx[d] < shape[d]) break;
        off -= st[d] * shape[d];
        idx[d] = 0;
      }
    }
  }
  // out[i] = x[view(i)] for every i.
  template <class T>
  void gather(const T* x, T* out) const {
    for_rows([&](std::int64_t i, std::int64_t o, std::int64_t len, std::int64_t s) {
      T* y = out + i;
      const T* xs = x + o;
      if (s == 1)
        for (std::int64_t j = 0; j < len; ++j) y[j] = xs[j];
      else
        for (std::int64_t j = 0; j < len; ++j) y[j] = xs[j * s];
    });
  }
  // x[view(i)] = 0 + g[i] for every i (the view visits distinct elements): the scatter-add of the
  // adjoint into zeros, bit for bit (0 + -0 is +0), without the index table. Add: x[view(i)] +=
  // g[i] instead.
  template <bool Add = false, class T>
  void scatter(const T* g, T* x) const {
    for_rows([&](std::int64_t i, std::int64_t o, std::int64_t len, std::int64_t s) {
      const T* gs = g + i;
      T* xs = x + o;
      if (s == 1)
        for (std::int64_t j = 0; j < len; ++j) xs[j] = (Add ? xs[j] : T(0)) + gs[j];
      else
        for (std::int64_t j = 0; j < len; ++j) xs[j * s] = (Add ? xs[j * s] : T(0)) + gs[j];
    });
  }
};

class TransposeOp final : public LinearOp<TransposeOp> {
 public:
  int arity() const override { return 1; }
  explicit TransposeOp(std::vector<std::int64_t> perm) : m_perm(std::move(perm)) {
    std::vector<bool> seen(m_perm.size(), false);
    for (const auto a : m_perm) {
      if (a < 0 || a >= static_cast<std::int64_t>(m_perm.size()) || seen[a])
        internal::attr_fail("Transpose", "perm " + shape_str(m_perm) + " is not a permutation of 0.." +
                                             std::to_string(static_cast<std::int64_t>(m_perm.size()) - 1));
      seen[a] = true;
    }
  }
  std::string type() const override { return "Transpose"; }
  OpSpec spec() const override { return OpSpec(type()).set_ints("perm", m_perm); }
  std::vector<std::int64_t> perm(size_t r) const {
    if (!m_perm.empty()) return m_perm;
    std::vector<std::int64_t> p(r);
    for (size_t i = 0; i < r; ++i) p[i] = static_cast<std::int64_t>(r - 1 - i);
    return p;
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    auto p = perm(x.size());
    if (p.size() != x.size()) throw std::invalid_argument("Transpose: perm " + shape_str(p) + " does not fit " + shape_str(x));
    Shape out(x.size());
    std::vector<bool> seen(x.size(), false);
    for (size_t i = 0; i < p.size(); ++i) {
      const auto a = norm_axis(p[i], x.size(), "Transpose");
      if (seen[a]) throw std::invalid_argument("Transpose: perm " + shape_str(p) + " repeats an axis");
      seen[a] = true;
      out[i] = x[a];
    }
    return out;
  }
  // The output as a strided view of x.
  Strided view(const Shape& x) const {
    const auto p = perm(x.size());
    const auto st = strides_of(x);
    Strided v{output_shape({x}), std::vector<std::int64_t>(x.size()), 0};
    for (size_t d = 0; d < p.size(); ++d) v.st[d] = st[norm_axis(p[d], x.size(), "Transpose")];
    v.coalesce();
    return v;
  }
  // A permutation: y = x read through the view; its adjoint writes every element of g_x once.
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    view(in[0].shape).gather(in[0].data, out.data);
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (!gin[0].data) return;
    view(gin[0].shape).scatter(g.data, gin[0].data);
  }

 private:
  std::vector<std::int64_t> m_perm;
};

class SliceOp final : public LinearOp<SliceOp> {
 public:
  int arity() const override { return 1; }
  SliceOp(std::vector<std::int64_t> starts, std::vector<std::int64_t> ends, std::vector<std::int64_t> axes,
          std::vector<std::int64_t> steps)
      : m_starts(std::move(starts)), m_ends(std::move(ends)), m_axes(std::move(axes)), m_steps(std::move(steps)) {
    const std::size_t n = m_starts.size();
    if (m_ends.size() != n || (!m_axes.empty() && m_axes.size() != n) || (!m_steps.empty() && m_steps.size() != n))
      internal::attr_fail("Slice", "starts " + shape_str(m_starts) + ", ends " + shape_str(m_ends) + ", axes " +
                                       shape_str(m_axes) + " and steps " + shape_str(m_steps) +
                                       " must have the same length (axes and steps may be empty)");
    for (const auto st : m_steps)
      if (st == 0 || st == std::numeric_limits<std::int64_t>::min())
        internal::attr_fail("Slice", "steps " + shape_str(m_steps) + " must be nonzero");
  }
  std::string type() const override { return "Slice"; }
  OpSpec spec() const override {
    return OpSpec(type())
        .set_ints("starts", m_starts)
        .set_ints("ends", m_ends)
        .set_ints("axes", m_axes)
        .set_ints("steps", m_steps);
  }
  // Per dim: start and step, and output size (ONNX clamping rules).
  void resolve(const Shape& x, std::vector<std::int64_t>& start, std::vector<std::int64_t>& step, Shape& out) const {
    const std::int64_t r = x.size();
    start.assign(r, 0);
    step.assign(r, 1);
    out = x;
    std::vector<bool> seen(r, false);
    for (size_t i = 0; i < m_starts.size(); ++i) {
      const std::int64_t a = norm_axis(m_axes.empty() ? static_cast<std::int64_t>(i) : m_axes[i], r, "Slice");
      if (seen[a]) throw std::invalid_argument("Slice: axes " + shape_str(m_axes) + " repeat an axis");
      seen[a] = true;
      const std::int64_t st = m_steps.empty() ? 1 : m_steps[i];
      if (st == 0) throw std::invalid_argument("Slice: step 0");
      const std::int64_t d = x[a];
      std::int64_t s = m_starts[i], e = m_ends[i];
      if (s < 0) s += d;
      if (e < 0) e += d;
      // ceil((e - s) / st) written so that no step (up to +-2^63) overflows
      if (st > 0) {
        s = std::clamp<std::int64_t>(s, 0, d);
        e = std::clamp<std::int64_t>(e, 0, d);
        out[a] = e > s ? (e - s - 1) / st + 1 : 0;
      } else {
        s = std::clamp<std::int64_t>(s, 0, d - 1);
        e = std::clamp<std::int64_t>(e, -1, d - 1);
        out[a] = s > e ? (s - e - 1) / (-st) + 1 : 0;
      }
      start[a] = s;
      step[a] = st;
    }
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    std::vector<std::int64_t> s, st;
    Shape out;
    resolve(in.at(0), s, st, out);
    return out;
  }
  // The output as a strided view of x (distinct elements: steps are nonzero).
  Strided view(const Shape& x) const {
    std::vector<std::int64_t> s, stp;
    Strided v;
    resolve(x, s, stp, v.shape);
    const auto st = strides_of(x);
    v.st.resize(x.size());
    for (size_t d = 0; d < x.size(); ++d) {
      v.base += s[d] * st[d];
      // A dim of one output element never moves, and its step may be anything up to +-2^63, so
      // only steps that are taken are scaled (they stay inside x, so they cannot overflow).
      v.st[d] = v.shape[d] > 1 ? stp[d] * st[d] : 0;
    }
    v.coalesce();
    return v;
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    view(in[0].shape).gather(in[0].data, out.data);
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    adjoint_into(g.data, gin[0], false);
  }
  // The adjoints add into the input's gradient when the executor asks (OpCtx::accumulate): a split
  // (an attention's qkv into q, k and v) writes each part in place, where each part used to go
  // through a zeroed full-size temporary that the executor then added in. Same bits: every element
  // is 0 + (its part's gradient), and adding zeros changes nothing (no element is -0 there).
  bool accumulates() const override { return true; }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    adjoint_into(c.gout.data, c.gin[0], (c.accumulate & 1u) != 0);
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const std::int64_t no = numel(c.out.shape), ni = c.in[0].size();
    for (std::int64_t j = 0; j < c.k; ++j)
      adjoint_into(c.tgout.data + j * no, View<T>{c.tgin[0].data + j * ni, c.in[0].shape}, (c.accumulate & 1u) != 0);
  }

 private:
  template <class T>
  void adjoint_into(const T* g, const View<T>& gx, bool add) const {
    if (!gx.data) return;
    const Strided v = view(gx.shape);
    if (add) {
      v.scatter<true>(g, gx.data);
    } else {
      gx.set_zero();
      v.scatter(g, gx.data);
    }
  }

  std::vector<std::int64_t> m_starts, m_ends, m_axes, m_steps;
};

class GatherOp final : public GatherLike<GatherOp> {
 public:
  GatherOp(std::int64_t axis, std::vector<std::int64_t> idx, Shape ishape)
      : m_axis(axis), m_idx(std::move(idx)), m_ishape(std::move(ishape)) {
    if (checked_numel(m_ishape, "Gather: indices_shape") != static_cast<std::int64_t>(m_idx.size()))
      internal::attr_fail("Gather", "indices_shape " + shape_str(m_ishape) + " does not match the " +
                                        std::to_string(m_idx.size()) + " indices");
  }
  std::string type() const override { return "Gather"; }
  OpSpec spec() const override {
    return OpSpec(type()).set_int("axis", m_axis).set_ints("indices", m_idx).set_ints("indices_shape", m_ishape);
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    const auto a = norm_axis(m_axis, x.size(), "Gather");
    for (auto i : m_idx)
      if (i < -x[a] || i >= x[a])
        throw std::invalid_argument("Gather: index " + std::to_string(i) + " out of range for dim " +
                                    std::to_string(x[a]) + " of " + shape_str(x));
    Shape out(x.begin(), x.begin() + a);
    out.insert(out.end(), m_ishape.begin(), m_ishape.end());
    out.insert(out.end(), x.begin() + a + 1, x.end());
    return out;
  }
  std::vector<std::int64_t> sources(const Shape& x) const {
    const auto a = norm_axis(m_axis, x.size(), "Gather");
    const std::int64_t outer = numel(Shape(x.begin(), x.begin() + a)), inner = numel(Shape(x.begin() + a + 1, x.end()));
    const std::int64_t d = x[a], ni = m_idx.size();
    std::vector<std::int64_t> src;
    src.reserve(outer * ni * inner);
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t t = 0; t < ni; ++t) {
        const std::int64_t ix = m_idx[t] < 0 ? m_idx[t] + d : m_idx[t];
        for (std::int64_t i = 0; i < inner; ++i) src.push_back((o * d + ix) * inner + i);
      }
    return src;
  }

 private:
  std::int64_t m_axis;
  std::vector<std::int64_t> m_idx;
  Shape m_ishape;
};

// ---------------------------------------------------------------- concat
class ConcatOp final : public LinearOp<ConcatOp> {
 public:
  explicit ConcatOp(std::int64_t axis) : m_axis(axis) {}
  std::string type() const override { return "Concat"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("axis", m_axis); }
  int arity() const override { return -1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.empty()) throw std::invalid_argument("Concat: no inputs");
    Shape out = in[0];
    const auto a = norm_axis(m_axis, out.size(), "Concat");
    for (size_t i = 1; i < in.size(); ++i) {
      if (in[i].size() != out.size()) throw std::invalid_argument("Concat: inputs " + shape_str(in[0]) + " and " + shape_str(in[i]) + " differ in rank");
      for (size_t d = 0; d < out.size(); ++d)
        if (static_cast<std::int64_t>(d) != a && in[i][d] != out[d])
          throw std::invalid_argument("Concat: inputs " + shape_str(in[0]) + " and " + shape_str(in[i]) + " differ off axis " + std::to_string(a));
      out[a] += in[i][a];
    }
    return out;
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    const auto a = norm_axis(m_axis, out.rank(), "Concat");
    const std::int64_t outer = numel(Shape(out.shape.begin(), out.shape.begin() + a));
    const std::int64_t inner = numel(Shape(out.shape.begin() + a + 1, out.shape.end()));
    std::int64_t off = 0;
    for (const auto& x : in) {
      const std::int64_t len = x.shape[a] * inner;
      for (std::int64_t o = 0; o < outer; ++o) {
        T* dst = out.data + o * out.shape[a] * inner + off;
        if (x.data)
          std::copy_n(x.data + o * len, len, dst);
        else
          std::fill(dst, dst + len, T(0));
      }
      off += len;
    }
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    const auto a = norm_axis(m_axis, g.rank(), "Concat");
    const std::int64_t outer = numel(Shape(g.shape.begin(), g.shape.begin() + a));
    const std::int64_t inner = numel(Shape(g.shape.begin() + a + 1, g.shape.end()));
    std::int64_t off = 0;
    for (const auto& x : gin) {
      const std::int64_t len = x.shape[a] * inner;
      if (x.data)
        for (std::int64_t o = 0; o < outer; ++o) std::copy_n(g.data + o * g.shape[a] * inner + off, len, x.data + o * len);
      off += len;
    }
  }

 private:
  std::int64_t m_axis;
};

// ---------------------------------------------------------------- reductions
class ReduceOp final : public LinearOp<ReduceOp> {
 public:
  ReduceOp(bool mean, std::vector<std::int64_t> axes, bool keepdims)
      : m_mean(mean), m_axes(std::move(axes)), m_keep(keepdims) {}
  std::string type() const override { return m_mean ? "ReduceMean" : "ReduceSum"; }
  OpSpec spec() const override { return OpSpec(type()).set_ints("axes", m_axes).set_bool("keepdims", m_keep); }
  int arity() const override { return 1; }
  Shape kept(const Shape& x) const {
    Shape k = x;
    if (m_axes.empty()) {
      std::fill(k.begin(), k.end(), 1);
    } else {
      for (auto a : m_axes) k[norm_axis(a, x.size(), type())] = 1;
    }
    return k;
  }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    Shape k = kept(x);
    if (m_keep) return k;
    Shape out;
    std::vector<bool> red(x.size(), m_axes.empty());
    for (auto a : m_axes) red[norm_axis(a, x.size(), type())] = true;
    for (size_t i = 0; i < x.size(); ++i)
      if (!red[i]) out.push_back(x[i]);
    return out;
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    out.set_zero();
    if (!in[0].data) return;
    const Shape k = kept(in[0].shape);
    internal::Broadcast b(in[0].shape, k);
    const T s = m_mean ? T(numel(k)) / T(in[0].size()) : T(1);
    b.for_each([&](auto, auto ia, auto ib) { out.data[ib] += in[0].data[ia]; });
    if (m_mean)
      for (std::int64_t i = 0; i < out.size(); ++i) out.data[i] *= s;
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (!gin[0].data) return;
    const Shape k = kept(gin[0].shape);
    internal::Broadcast b(gin[0].shape, k);
    const T s = m_mean ? T(numel(k)) / T(gin[0].size()) : T(1);
    b.for_each([&](auto, auto ia, auto ib) { gin[0].data[ia] = g.data[ib] * s; });
  }

 private:
  bool m_mean;
  std::vector<std::int64_t> m_axes;
  bool m_keep;
};

}  // namespace

OpPtr make_reshape(Shape target, bool allowzero) {
  return std::make_shared<ReshapeOp>(ReshapeOp::Kind::Reshape, std::move(target), std::vector<std::int64_t>{}, 0,
                                     allowzero, "Reshape");
}
OpPtr make_flatten(std::int64_t axis) {
  return std::make_shared<ReshapeOp>(ReshapeOp::Kind::Flatten, Shape{}, std::vector<std::int64_t>{}, axis, false, "Flatten");
}
OpPtr make_squeeze(std::vector<std::int64_t> axes) {
  return std::make_shared<ReshapeOp>(ReshapeOp::Kind::Squeeze, Shape{}, std::move(axes), 0, false, "Squeeze");
}
OpPtr make_unsqueeze(std::vector<std::int64_t> axes) {
  return std::make_shared<ReshapeOp>(ReshapeOp::Kind::Unsqueeze, Shape{}, std::move(axes), 0, false, "Unsqueeze");
}
OpPtr make_identity(const char* type) {
  return std::make_shared<ReshapeOp>(ReshapeOp::Kind::Identity, Shape{}, std::vector<std::int64_t>{}, 0, false, type);
}
OpPtr make_transpose(std::vector<std::int64_t> perm) { return std::make_shared<TransposeOp>(std::move(perm)); }
OpPtr make_slice(std::vector<std::int64_t> starts, std::vector<std::int64_t> ends, std::vector<std::int64_t> axes,
                 std::vector<std::int64_t> steps) {
  return std::make_shared<SliceOp>(std::move(starts), std::move(ends), std::move(axes), std::move(steps));
}
OpPtr make_concat(std::int64_t axis) { return std::make_shared<ConcatOp>(axis); }
OpPtr make_gather(std::int64_t axis, std::vector<std::int64_t> indices, Shape indices_shape) {
  return std::make_shared<GatherOp>(axis, std::move(indices), std::move(indices_shape));
}
OpPtr make_reduce(bool mean, std::vector<std::int64_t> axes, bool keepdims) {
  return std::make_shared<ReduceOp>(mean, std::move(axes), keepdims);
}

}  // namespace curv
