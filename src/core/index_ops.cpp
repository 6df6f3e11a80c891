// Linear index ops of attention and broadcasting code: Expand, Tile, Trilu. Each is y = A x with A a
// 0/1 matrix, so the JVP applies A, the VJP applies A^T (a sum over the copies) and there is no
// second-order term (LinearOp).
//   Expand: y = x broadcast with `shape` (ONNX: bidirectional numpy broadcasting, 1 keeps a dim);
//           g_x = sum of g over the broadcast dims. `batch_axes`: entries of `shape` that take the
//           batch size, read from a second input's dim 0.
//   Tile:   y[i] = x[i mod dims(x)] with dims(y) = dims(x) * repeats; g_x = sum over the tiles.
//   Trilu:  y = x on the lower (upper = false: j - i <= k) or upper (j - i >= k) triangle of the
//           last two dims, 0 elsewhere; g_x = the same mask applied to g.
#include <algorithm>
#include <stdexcept>

#include "src/core/internal/broadcast.h"
#include "src/core/internal/linear_op.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {
namespace {

using internal::LinearOp;

class ExpandOp final : public LinearOp<ExpandOp> {
 public:
  ExpandOp(Shape shape, std::vector<std::int64_t> batch_axes) : m_shape(std::move(shape)), m_batch(std::move(batch_axes)) {
    internal::require_at_least("Expand", "shape", m_shape, 0);
    checked_numel(m_shape, "Expand: shape " + shape_str(m_shape));
    for (auto a : m_batch)
      if (a < 0 || a >= static_cast<std::int64_t>(m_shape.size()) || m_shape[a] != 1)
        internal::attr_fail("Expand", "batch axis " + std::to_string(a) + " must index an entry 1 of shape " +
                                          shape_str(m_shape));
  }
  std::string type() const override { return "Expand"; }
  OpSpec spec() const override { return OpSpec(type()).set_ints("shape", m_shape).set_ints("batch_axes", m_batch); }
  // With batch axes, a second input (any value whose dim 0 is the batch, such as a data input)
  // gives the batch size N, and the target takes N at those axes: a parameter expanded to the
  // batch (cls_token.expand(B, -1, -1)). The second input only lends its size (no gradient).
  int arity() const override { return m_batch.empty() ? 1 : 2; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    Shape target = m_shape;
    if (!m_batch.empty()) {
      if (in.at(1).empty()) throw std::invalid_argument("Expand: the batch reference is a scalar");
      for (auto a : m_batch) target[a] = in[1][0];
    }
    Shape out;
    try {
      out = internal::Broadcast(in.at(0), target).out;
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument("Expand: input " + shape_str(in.at(0)) + " does not broadcast with shape " +
                                  shape_str(target));
    }
    checked_numel(out, "Expand: output " + shape_str(out));
    return out;
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    internal::Broadcast b(out.shape, in[0].shape);
    b.for_each([&](auto io, auto, auto ix) { out.data[io] = in[0].data[ix]; });
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (gin.size() > 1 && gin[1].data) gin[1].set_zero();
    if (!gin[0].data) return;
    gin[0].set_zero();
    internal::Broadcast b(g.shape, gin[0].shape);
    b.for_each([&](auto io, auto, auto ix) { gin[0].data[ix] += g.data[io]; });
  }

 private:
  Shape m_shape;
  std::vector<std::int64_t> m_batch;
};

class TileOp final : public LinearOp<TileOp> {
 public:
  explicit TileOp(std::vector<std::int64_t> repeats) : m_repeats(std::move(repeats)) {
    internal::require_at_least("Tile", "repeats", m_repeats, 0);
  }
  std::string type() const override { return "Tile"; }
  OpSpec spec() const override { return OpSpec(type()).set_ints("repeats", m_repeats); }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    if (x.size() != m_repeats.size())
      throw std::invalid_argument("Tile: repeats " + shape_str(m_repeats) + " must have one value per dim of input " +
                                  shape_str(x));
    Shape out = x;
    for (std::size_t d = 0; d < x.size(); ++d) out[d] = checked_mul(x[d], m_repeats[d], "Tile: output dims");
    checked_numel(out, "Tile: output " + shape_str(out));
    return out;
  }
  // Calls f(i_out, i_x) for every output element.
  template <class F>
  static void each(const Shape& x, const Shape& out, F&& f) {
    const std::int64_t n = numel(out);
    const int r = static_cast<int>(out.size());
    std::vector<std::int64_t> sx(r, 1);
    for (int d = r - 2; d >= 0; --d) sx[d] = sx[d + 1] * x[d + 1];
    std::vector<std::int64_t> idx(r, 0);
    for (std::int64_t io = 0; io < n; ++io) {
      std::int64_t ix = 0;
      for (int d = 0; d < r; ++d) ix += (idx[d] % x[d]) * sx[d];
      f(io, ix);
      for (int d = r - 1; d >= 0; --d) {
        if (++idx[d] < out[d]) break;
        idx[d] = 0;
      }
    }
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    each(in[0].shape, out.shape, [&](auto io, auto ix) { out.data[io] = in[0].data[ix]; });
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (!gin[0].data) return;
    gin[0].set_zero();
    each(gin[0].shape, g.shape, [&](auto io, auto ix) { gin[0].data[ix] += g.data[io]; });
  }

 private:
  std::vector<std::int64_t> m_repeats;
};

class TriluOp final : public LinearOp<TriluOp> {
 public:
  TriluOp(std::int64_t k, bool upper) : m_k(k), m_upper(upper) {}
  std::string type() const override { return "Trilu"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("k", m_k).set_bool("upper", m_upper); }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.at(0).size() < 2)
      throw std::invalid_argument("Trilu: input must have rank >= 2, got " + shape_str(in.at(0)));
    return in.at(0);
  }
  template <class T>
  void mask(const T* x, T* y, const Shape& s) const {
    const std::int64_t rows = s[s.size() - 2], cols = s.back(), n = numel(s);
    for (std::int64_t e = 0; e < n; ++e) {
      const std::int64_t i = (e / cols) % rows, j = e % cols;
      const bool keep = m_upper ? j - i >= m_k : j - i <= m_k;
      y[e] = keep ? x[e] : T(0);
    }
  }
  template <class T>
  void apply(const std::vector<ConstView<T>>& in, View<T> out) const {
    if (!in[0].data) return out.set_zero();
    mask(in[0].data, out.data, out.shape);
  }
  template <class T>
  void adjoint(ConstView<T> g, const std::vector<View<T>>& gin) const {
    if (gin[0].data) mask(g.data, gin[0].data, g.shape);
  }

 private:
  std::int64_t m_k;
  bool m_upper;
};

}  // namespace

OpPtr make_expand(Shape shape, std::vector<std::int64_t> batch_axes) {
  return std::make_shared<ExpandOp>(std::move(shape), std::move(batch_axes));
}
OpPtr make_tile(std::vector<std::int64_t> repeats) { return std::make_shared<TileOp>(std::move(repeats)); }
OpPtr make_trilu(std::int64_t k, bool upper) { return std::make_shared<TriluOp>(k, upper); }

}  // namespace curv
