// Where: y = c ? a : b elementwise, the three inputs numpy-broadcast together. The condition c is
// a boolean tensor held as numbers (true where nonzero, as Equal/Less/Greater/Not/And produce
// 0 / 1); it may be a constant mask folded at import or data computed in the graph.
//   y' = c ? a' : b',  g_a = sum_broadcast(c ? g : 0),  g_b = sum_broadcast(c ? 0 : g),  g_c = 0.
// y is linear in (a, b) for fixed c, and c enters only through a comparison, so there is no
// second-order term; the selected branch alone gets a derivative (torch.where), which keeps a
// masked -inf out of every gradient and tangent.
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "src/core/internal/broadcast.h"
#include "src/core/ops.h"

namespace curv {
namespace {

// Element strides of an input of shape `s` over the output index space `out` (0 on broadcast dims).
std::vector<std::int64_t> strides_over(const Shape& s, const Shape& out) {
  const std::size_t r = out.size(), off = r - s.size();
  std::vector<std::int64_t> st(r, 0);
  std::int64_t acc = 1;
  for (std::size_t i = r; i-- > off;) {
    const std::int64_t d = s[i - off];
    st[i] = (d == 1 && out[i] != 1) ? 0 : acc;
    acc *= d;
  }
  return st;
}

class WhereOp final : public OpImpl<WhereOp> {
 public:
  std::string type() const override { return "Where"; }
  OpSpec spec() const override { return OpSpec(type()); }
  int arity() const override { return 3; }
  bool tangent_reads_output_grad() const override { return false; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() != 3)
      throw std::invalid_argument("Where: takes 3 inputs (condition, X, Y), got " + std::to_string(in.size()));
    try {
      return internal::Broadcast(internal::Broadcast(in[0], in[1]).out, in[2]).out;
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument("Where: condition " + shape_str(in[0]) + ", X " + shape_str(in[1]) + " and Y " +
                                  shape_str(in[2]) + " do not broadcast");
    }
  }

  // Calls f(io, ic, ia, ib) over the output in row-major order.
  template <class F>
  static void for_each(const Shape& c, const Shape& a, const Shape& b, F&& f) {
    const Shape out = internal::Broadcast(internal::Broadcast(c, a).out, b).out;
    const std::int64_t n = numel(out);
    if (n == 0) return;
    const auto sc = strides_over(c, out), sa = strides_over(a, out), sb = strides_over(b, out);
    const int r = static_cast<int>(out.size());
    if (r == 0) return f(std::int64_t(0), std::int64_t(0), std::int64_t(0), std::int64_t(0));
    // Rows of the innermost dim with their own strides, then an odometer over the outer dims.
    const std::int64_t len = out[r - 1], sci = sc[r - 1], sai = sa[r - 1], sbi = sb[r - 1];
    std::vector<std::int64_t> idx(r, 0);
    std::int64_t ic = 0, ia = 0, ib = 0;
    // Inner strides of 0 or 1 (a mask over scores, a scalar fill on either side, equal shapes) run
    // as compile-time constants, so that their loops vectorize; the same calls in the same order.
    auto row = [&](std::int64_t io, auto SC, auto SA, auto SB) {
      for (std::int64_t t = 0; t < len; ++t) f(io + t, ic + t * SC, ia + t * SA, ib + t * SB);
    };
    using Zero = std::integral_constant<std::int64_t, 0>;
    using One = std::integral_constant<std::int64_t, 1>;
    auto with_b = [&](std::int64_t io, auto SC, auto SA) {
      if (sbi == 0) return row(io, SC, SA, Zero{});
      if (sbi == 1) return row(io, SC, SA, One{});
      row(io, SC, SA, sbi);
    };
    auto with_a = [&](std::int64_t io, auto SC) {
      if (sai == 0) return with_b(io, SC, Zero{});
      if (sai == 1) return with_b(io, SC, One{});
      with_b(io, SC, sai);
    };
    for (std::int64_t io = 0; io < n; io += len) {
      if (sci == 0)
        with_a(io, Zero{});
      else if (sci == 1)
        with_a(io, One{});
      else
        with_a(io, sci);
      for (int d = r - 2; d >= 0; --d) {
        ++idx[d];
        ic += sc[d];
        ia += sa[d];
        ib += sb[d];
        if (idx[d] < out[d]) break;
        ic -= sc[d] * out[d];
        ia -= sa[d] * out[d];
        ib -= sb[d] * out[d];
        idx[d] = 0;
      }
    }
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T *cd = c.in[0].data, *a = c.in[1].data, *b = c.in[2].data;
    for_each(c.in[0].shape, c.in[1].shape, c.in[2].shape,
             [&](auto io, auto ic, auto ia, auto ib) { out.data[io] = cd[ic] != T(0) ? a[ia] : b[ib]; });
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    vjp(c, c.gout.data, c.gin[0].data, c.gin[1].data, c.gin[2].data);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t no = c.out.size(), na = c.in[1].size(), nb = c.in[2].size();
    const T* cd = c.in[0].data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* ta = c.tin[1].data ? c.tin[1].data + j * na : nullptr;
      const T* tb = c.tin[2].data ? c.tin[2].data + j * nb : nullptr;
      T* o = c.tout.data + j * no;
      // The selected side's tangent, 0 where that side has none (one loop per case, so that it
      // vectorizes).
      if (ta && tb)
        for_each(c.in[0].shape, c.in[1].shape, c.in[2].shape,
                 [&](auto io, auto ic, auto ia, auto ib) { o[io] = cd[ic] != T(0) ? ta[ia] : tb[ib]; });
      else if (ta)
        for_each(c.in[0].shape, c.in[1].shape, c.in[2].shape,
                 [&](auto io, auto ic, auto ia, auto) { o[io] = cd[ic] != T(0) ? ta[ia] : T(0); });
      else if (tb)
        for_each(c.in[0].shape, c.in[1].shape, c.in[2].shape,
                 [&](auto io, auto ic, auto, auto ib) { o[io] = cd[ic] != T(0) ? T(0) : tb[ib]; });
      else
        std::fill(o, o + no, T(0));
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const std::int64_t no = c.out.size(), nc = c.in[0].size(), na = c.in[1].size(), nb = c.in[2].size();
    for (std::int64_t j = 0; j < c.k; ++j)
      vjp(c, c.tgout.data + j * no, c.tgin[0].data ? c.tgin[0].data + j * nc : nullptr,
          c.tgin[1].data ? c.tgin[1].data + j * na : nullptr, c.tgin[2].data ? c.tgin[2].data + j * nb : nullptr);
  }

 private:
  template <class T>
  void vjp(OpCtx<T>& c, const T* g, T* gc, T* ga, T* gb) const {
    if (gc) std::fill(gc, gc + c.in[0].size(), T(0));
    const std::int64_t no = c.out.size(), na = c.in[1].size(), nb = c.in[2].size();
    const T* cd = c.in[0].data;
    const Shape &sc = c.in[0].shape, &sa = c.in[1].shape, &sb = c.in[2].shape;
    // A side with the output's size (not broadcast) is written in one pass, 0 + g where selected and
    // 0 elsewhere: the bits of filling with zeros and accumulating. A broadcast side accumulates.
    if (ga && na == no)
      for_each(sc, sa, sb, [&](auto io, auto ic, auto ia, auto) { ga[ia] = cd[ic] != T(0) ? T(0) + g[io] : T(0); });
    else if (ga) {
      std::fill(ga, ga + na, T(0));
      for_each(sc, sa, sb, [&](auto io, auto ic, auto ia, auto) {
        if (cd[ic] != T(0)) ga[ia] += g[io];
      });
    }
    if (gb && nb == no)
      for_each(sc, sa, sb, [&](auto io, auto ic, auto, auto ib) { gb[ib] = cd[ic] != T(0) ? T(0) : T(0) + g[io]; });
    else if (gb) {
      std::fill(gb, gb + nb, T(0));
      for_each(sc, sa, sb, [&](auto io, auto ic, auto, auto ib) {
        if (cd[ic] == T(0)) gb[ib] += g[io];
      });
    }
  }
};

}  // namespace

OpPtr make_where() { return std::make_shared<WhereOp>(); }

}  // namespace curv
