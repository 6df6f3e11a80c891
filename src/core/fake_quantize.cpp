#include "src/core/fake_quantize.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace curv {
namespace {

class FakeQuantizeOp final : public OpImpl<FakeQuantizeOp> {
 public:
  explicit FakeQuantizeOp(const FakeQuantizeAttrs& a) : m_a(a) {}
  std::string type() const override { return "FakeQuantize"; }
  OpSpec spec() const override {
    return OpSpec("FakeQuantize")
        .set_float("scale", m_a.scale)
        .set_int("zero_point", m_a.zero_point)
        .set_int("qmin", m_a.qmin)
        .set_int("qmax", m_a.qmax);
  }
  int arity() const override { return 1; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 1) throw std::invalid_argument("FakeQuantize: expected one input");
    return in[0];
  }
  const FakeQuantizeAttrs& attrs() const { return m_a; }

  // y = (clamp(rint(x / s) + z) - z) s
  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T s = static_cast<T>(m_a.scale), z = static_cast<T>(m_a.zero_point);
    const T lo = static_cast<T>(m_a.qmin), hi = static_cast<T>(m_a.qmax);
    const T* x = c.in[0].data;
    const std::int64_t n = out.size();
    for (std::int64_t i = 0; i < n; ++i) {
      T q = std::nearbyint(x[i] / s) + z;
      q = q < lo ? lo : (q > hi ? hi : q);
      out.data[i] = (q - z) * s;
    }
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const std::int64_t n = c.in[0].size();
    for (std::int64_t i = 0; i < n; ++i) c.gin[0].data[i] = inside(c.in[0].data[i]) ? c.gout.data[i] : T(0);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t n = c.in[0].size();
    if (!c.tin[0].data) {
      c.tout.set_zero();
      return;
    }
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t i = 0; i < n; ++i)
        c.tout.data[j * n + i] = inside(c.in[0].data[i]) ? c.tin[0].data[j * n + i] : T(0);
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const std::int64_t n = c.in[0].size();
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t i = 0; i < n; ++i)
        c.tgin[0].data[j * n + i] = inside(c.in[0].data[i]) ? c.tgout.data[j * n + i] : T(0);
  }

 private:
  // The straight-through mask: the unclipped code lies within qmin..qmax.
  template <class T>
  bool inside(T x) const {
    const T q = std::nearbyint(x / static_cast<T>(m_a.scale)) + static_cast<T>(m_a.zero_point);
    return q >= static_cast<T>(m_a.qmin) && q <= static_cast<T>(m_a.qmax);
  }
  FakeQuantizeAttrs m_a;
};

}  // namespace

OpPtr make_fake_quantize(const FakeQuantizeAttrs& a) {
  if (!(std::isfinite(a.scale) && a.scale > 0))
    throw std::invalid_argument("FakeQuantize: scale (= " + std::to_string(a.scale) + ") must be positive and finite");
  constexpr std::int64_t kInt32 = 2147483647;
  if (!(a.qmin < a.qmax) || a.qmin < -kInt32 || a.qmax > kInt32)
    throw std::invalid_argument("FakeQuantize: levels qmin (= " + std::to_string(a.qmin) + ") < qmax (= " +
                                std::to_string(a.qmax) + ") within int32 required");
  if (a.zero_point < a.qmin || a.zero_point > a.qmax)
    throw std::invalid_argument("FakeQuantize: zero_point (= " + std::to_string(a.zero_point) + ") must be in " +
                                std::to_string(a.qmin) + ".." + std::to_string(a.qmax));
  return std::make_shared<FakeQuantizeOp>(a);
}

std::optional<FakeQuantizeAttrs> fake_quantize_attrs(const Op& op) {
  if (const auto* f = dynamic_cast<const FakeQuantizeOp*>(&op)) return f->attrs();
  return std::nullopt;
}

}  // namespace curv
