// Embedding: ONNX Gather whose indices are data (token ids), not constants.
//
//   y[o, t, i] = x[o, idx[t], i]      x viewed as [outer, d, inner] around `axis`, idx flattened
//
// y is linear in the table x, so:
//   VJP        g_x[o, r, i] = sum_{t: idx[t] = r} g_y[o, t, i]     (scatter-add; no gradient for idx)
//   JVP        y' = gather(x')                                       (indices are piecewise constant)
//   VJP tangent g_x' = scatter-add(g_y'), no second-order term (tangent_reads_output_grad() false)
// Indices are carried as values of the model precision (exact integers, dataset.h) and must be
// integers in [0, d): PyTorch's nn.Embedding refuses negative ids, and so does curv, rather than
// wrapping them as ONNX Gather would.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"
#include "src/core/size_limits.h"

namespace curv {

namespace {

class EmbeddingOp final : public OpImpl<EmbeddingOp> {
 public:
  explicit EmbeddingOp(std::int64_t axis) : m_axis(axis) {
    if (axis < -64 || axis > 63) internal::attr_fail("Embedding", "axis must be in [-64, 63], got " + std::to_string(axis));
  }
  std::string type() const override { return "Embedding"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("axis", m_axis); }
  int arity() const override { return 2; }
  bool accumulates() const override { return true; }
  bool tangent_reads_output_grad() const override { return false; }

  Shape output_shape(const std::vector<Shape>& in) const override {
    const Shape& x = in.at(0);
    const Shape& idx = in.at(1);
    const std::size_t a = axis(x);
    Shape out(x.begin(), x.begin() + a);
    out.insert(out.end(), idx.begin(), idx.end());
    out.insert(out.end(), x.begin() + a + 1, x.end());
    checked_numel(out, "Embedding: output");
    return out;
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Geo g = geo(c.in[0].shape, c.in[1]);
    for (std::int64_t t = 0; t < g.ni; ++t) {
      const std::int64_t r = row(c.in[1].data[t], g.d);
      for (std::int64_t o = 0; o < g.outer; ++o)
        std::copy_n(c.in[0].data + (o * g.d + r) * g.inner, g.inner, out.data + (o * g.ni + t) * g.inner);
    }
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (c.gin.size() > 1 && c.gin[1].data) c.gin[1].set_zero();
    if (c.gin[0].data) scatter(c.gout.data, c.gin[0].data, c.in[0].shape, c.in[1], (c.accumulate & 1u) != 0);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const Geo g = geo(c.in[0].shape, c.in[1]);
    const std::int64_t nx = c.in[0].size(), ny = g.outer * g.ni * g.inner;
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* y = c.tout.data + j * ny;
      if (!c.tin[0].data) {
        std::fill_n(y, ny, T(0));
        continue;
      }
      const T* x = c.tin[0].data + j * nx;
      for (std::int64_t t = 0; t < g.ni; ++t) {
        const std::int64_t r = row(c.in[1].data[t], g.d);
        for (std::int64_t o = 0; o < g.outer; ++o)
          std::copy_n(x + (o * g.d + r) * g.inner, g.inner, y + (o * g.ni + t) * g.inner);
      }
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (c.tgin.size() > 1 && c.tgin[1].data) c.tgin[1].set_zero();
    if (!c.tgin[0].data) return;
    const std::int64_t nx = c.in[0].size(), ny = c.out.size();
    for (std::int64_t j = 0; j < c.k; ++j)
      scatter(c.tgout.data + j * ny, c.tgin[0].data + j * nx, c.in[0].shape, c.in[1], (c.accumulate & 1u) != 0);
  }

 private:
  struct Geo {
    std::int64_t outer, d, inner, ni;
  };
  std::size_t axis(const Shape& x) const {
    const auto r = static_cast<std::int64_t>(x.size());
    const std::int64_t a = m_axis < 0 ? m_axis + r : m_axis;
    if (a < 0 || a >= r)
      throw std::invalid_argument("Embedding: axis " + std::to_string(m_axis) + " out of range for the table " +
                                  shape_str(x));
    return static_cast<std::size_t>(a);
  }
  template <class T>
  Geo geo(const Shape& x, ConstView<T> idx) const {
    const std::size_t a = axis(x);
    return {numel(Shape(x.begin(), x.begin() + a)), x[a], numel(Shape(x.begin() + a + 1, x.end())), idx.size()};
  }
  template <class T>
  static std::int64_t row(T v, std::int64_t d) {
    const double id = double(v);
    if (!(id >= 0 && id < double(d)) || id != std::floor(id)) {
      std::ostringstream text;
      text << "Embedding: index " << id << " is not an integer in [0, " << d << ")";
      throw std::invalid_argument(text.str());
    }
    return static_cast<std::int64_t>(id);
  }
  // gx (+)= scatter-add of gy [outer, ni, inner] into rows idx of [outer, d, inner].
  template <class T>
  void scatter(const T* gy, T* gx, const Shape& x, ConstView<T> idx, bool add) const {
    const Geo g = geo(x, idx);
    if (!add) std::fill_n(gx, g.outer * g.d * g.inner, T(0));
    for (std::int64_t t = 0; t < g.ni; ++t) {
      const std::int64_t r = row(idx.data[t], g.d);
      for (std::int64_t o = 0; o < g.outer; ++o) {
        const T* s = gy + (o * g.ni + t) * g.inner;
        T* dst = gx + (o * g.d + r) * g.inner;
        for (std::int64_t i = 0; i < g.inner; ++i) dst[i] += s[i];
      }
    }
  }

  std::int64_t m_axis;
};

}  // namespace

OpPtr make_embedding(std::int64_t axis) { return std::make_shared<EmbeddingOp>(axis); }

}  // namespace curv
