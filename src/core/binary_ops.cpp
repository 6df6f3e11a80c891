// Binary elementwise ops with numpy broadcasting (the rows of CURV_BINARY_OPS in
// elementwise_table.h). With partials da = dy/da, db = dy/db:
//   y' = da a' + db b',  g_a = sum_broadcast(g da),  g_b = sum_broadcast(g db),
//   and for Mul, Div and PRelu the second-order terms of g_a', g_b' (Add and Sub are linear).
// PRelu y = a > 0 ? a : b a (PyTorch's side at a = 0: da = b, db = a) is Mul by b where a <= 0.
// Max, Min (torch.maximum / minimum): da = 1 where a wins, 0 where b wins, 1/2 at a tie, db = 1 - da;
// piecewise linear, so no second-order term. Equal, Less, Greater, And: booleans as 0 / 1 with
// da = db = 0 (their gradients and tangents are zero).
#include <algorithm>
#include <stdexcept>

#include "src/core/elementwise_table.h"
#include "src/core/internal/broadcast.h"
#include "src/core/ops.h"

namespace curv {

const char* binary_type(BinaryKind kind) {
  switch (kind) {
#define CURV_BINARY_CASE(Name) \
  case BinaryKind::Name:       \
    return #Name;
    CURV_BINARY_OPS(CURV_BINARY_CASE)
#undef CURV_BINARY_CASE
  }
  return "?";
}

namespace {

class BinaryOp final : public OpImpl<BinaryOp> {
 public:
  explicit BinaryOp(BinaryKind kind) : m_kind(kind) {}
  std::string type() const override { return binary_type(m_kind); }
  // Add and Sub (derivatives 1 and -1) and the comparisons (derivative 0) read no input values.
  bool derivatives_read_input(int) const override {
    return m_kind == BinaryKind::Mul || m_kind == BinaryKind::Div || m_kind == BinaryKind::PRelu ||
           m_kind == BinaryKind::Max || m_kind == BinaryKind::Min;
  }
  OpSpec spec() const override { return OpSpec(type()); }
  int arity() const override { return 2; }
  bool tangent_reads_output_grad() const override { return curved(); }
  bool tangent_reads_input_tangent(int) const override { return curved(); }
  Shape output_shape(const std::vector<Shape>& in) const override {
    Shape out;
    try {
      out = internal::Broadcast(in.at(0), in.at(1)).out;
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(type() + ": " + e.what());
    }
    if (m_kind == BinaryKind::PRelu && out != in.at(0))
      throw std::invalid_argument("PRelu: slope " + shape_str(in.at(1)) + " does not broadcast to X " +
                                  shape_str(in.at(0)));
    return out;
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    const T* x = c.in[0].data;
    const T* y = c.in[1].data;
    T* o = out.data;
    switch (m_kind) {
      case BinaryKind::Add:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] + y[ib]; });
        break;
      case BinaryKind::Sub:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] - y[ib]; });
        break;
      case BinaryKind::Mul:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] * y[ib]; });
        break;
      case BinaryKind::Div:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] / y[ib]; });
        break;
      case BinaryKind::PRelu:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] > T(0) ? x[ia] : y[ib] * x[ia]; });
        break;
      case BinaryKind::Max:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] < y[ib] ? y[ib] : x[ia]; });
        break;
      case BinaryKind::Min:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = y[ib] < x[ia] ? y[ib] : x[ia]; });
        break;
      case BinaryKind::Equal:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] == y[ib] ? T(1) : T(0); });
        break;
      case BinaryKind::Less:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] < y[ib] ? T(1) : T(0); });
        break;
      case BinaryKind::Greater:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] > y[ib] ? T(1) : T(0); });
        break;
      case BinaryKind::And:
        b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] != T(0) && y[ib] != T(0) ? T(1) : T(0); });
        break;
    }
  }

  // g_a = sum_broadcast(g * da), g_b = sum_broadcast(g * db) with
  //   Add: da = 1, db = 1;  Sub: 1, -1;  Mul: b, a;  Div: 1/b, -a/b^2;  PRelu: a > 0 ? (1, 0) : (b, a).
  template <class T>
  void bwd(OpCtx<T>& c) const {
    lin_vjp(c, c.gout.data, c.gin[0].data, c.gin[1].data);
  }

  template <class T>
  void tan(OpCtx<T>& c) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    const std::int64_t no = numel(b.out), na = c.in[0].size(), nb = c.in[1].size();
    const T* x = c.in[0].data;
    const T* y = c.in[1].data;
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tx = c.tin[0].data ? c.tin[0].data + j * na : nullptr;
      const T* ty = c.tin[1].data ? c.tin[1].data + j * nb : nullptr;
      T* o = c.tout.data + j * no;
      if (tx && ty && fused_tangent(b, x, y, tx, ty, o)) continue;
      if ((tx == nullptr) != (ty == nullptr) && single_tangent(b, x, y, tx, ty, o)) continue;
      std::fill(o, o + no, T(0));
      switch (m_kind) {
        case BinaryKind::Add:
        case BinaryKind::Sub: {
          const T s = m_kind == BinaryKind::Add ? T(1) : T(-1);
          if (tx) b.for_each([&](auto io, auto ia, auto) { o[io] += tx[ia]; });
          if (ty) b.for_each([&](auto io, auto, auto ib) { o[io] += s * ty[ib]; });
          break;
        }
        case BinaryKind::Mul:
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { o[io] += tx[ia] * y[ib]; });
          if (ty) b.for_each([&](auto io, auto ia, auto ib) { o[io] += x[ia] * ty[ib]; });
          break;
        case BinaryKind::Div:
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { o[io] += tx[ia] / y[ib]; });
          if (ty) b.for_each([&](auto io, auto ia, auto ib) { o[io] -= x[ia] * ty[ib] / (y[ib] * y[ib]); });
          break;
        case BinaryKind::PRelu:
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { o[io] += x[ia] > T(0) ? tx[ia] : y[ib] * tx[ia]; });
          if (ty) b.for_each([&](auto io, auto ia, auto ib) { o[io] += x[ia] > T(0) ? T(0) : x[ia] * ty[ib]; });
          break;
        case BinaryKind::Max:
        case BinaryKind::Min:
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { o[io] += share_a(x[ia], y[ib]) * tx[ia]; });
          if (ty) b.for_each([&](auto io, auto ia, auto ib) { o[io] += (T(1) - share_a(x[ia], y[ib])) * ty[ib]; });
          break;
        case BinaryKind::Equal:
        case BinaryKind::Less:
        case BinaryKind::Greater:
        case BinaryKind::And:
          break;  // zero derivative
      }
    }
  }

  template <class T>
  void bwdt(OpCtx<T>& c) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    const std::int64_t no = numel(b.out), na = c.in[0].size(), nb = c.in[1].size();
    const T* x = c.in[0].data;
    const T* y = c.in[1].data;
    const T* g = c.gout.data;
    const bool so = c.second_order && curved();
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* ra = c.tgin[0].data ? c.tgin[0].data + j * na : nullptr;
      T* rb = c.tgin[1].data ? c.tgin[1].data + j * nb : nullptr;
      lin_vjp_raw(b, x, y, c.tgout.data + j * no, ra, rb, na, nb);
      if (!so) continue;
      const T* tx = c.tin[0].data ? c.tin[0].data + j * na : nullptr;
      const T* ty = c.tin[1].data ? c.tin[1].data + j * nb : nullptr;
      if (m_kind == BinaryKind::Mul) {
        // g_a = g b  =>  g_a' += g b';  g_b = g a  =>  g_b' += g a'
        if (ra && ty) b.for_each([&](auto io, auto ia, auto ib) { ra[ia] += g[io] * ty[ib]; });
        if (rb && tx) b.for_each([&](auto io, auto ia, auto ib) { rb[ib] += g[io] * tx[ia]; });
      } else if (m_kind == BinaryKind::PRelu) {
        // As Mul where a <= 0 (the kink's second derivative is zero a.e., as in PyTorch).
        if (ra && ty) b.for_each([&](auto io, auto ia, auto ib) { ra[ia] += x[ia] > T(0) ? T(0) : g[io] * ty[ib]; });
        if (rb && tx) b.for_each([&](auto io, auto ia, auto ib) { rb[ib] += x[ia] > T(0) ? T(0) : g[io] * tx[ia]; });
      } else if (m_kind == BinaryKind::Div) {
        // g_a = g / b => g_a' += -g b' / b^2;  g_b = -g a / b^2 => g_b' += -g a'/b^2 + 2 g a b'/b^3
        if (ra && ty) b.for_each([&](auto io, auto ia, auto ib) { ra[ia] -= g[io] * ty[ib] / (y[ib] * y[ib]); });
        if (rb) {
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { rb[ib] -= g[io] * tx[ia] / (y[ib] * y[ib]); });
          if (ty)
            b.for_each(
                [&](auto io, auto ia, auto ib) { rb[ib] += T(2) * g[io] * x[ia] * ty[ib] / (y[ib] * y[ib] * y[ib]); });
        }
      }
    }
  }

 private:
  // Add, Sub and Mul with both tangents in one pass over the output instead of a fill and two
  // accumulating passes: the same operations in the same order per element, 0 + term_a + term_b.
  template <class T>
  bool fused_tangent(const internal::Broadcast& b, const T* x, const T* y, const T* tx, const T* ty, T* o) const {
    switch (m_kind) {
      case BinaryKind::Add:
      case BinaryKind::Sub: {
        const T s = m_kind == BinaryKind::Add ? T(1) : T(-1);
        b.for_each([&](auto io, auto ia, auto ib) {
          const T v = T(0) + tx[ia];
          o[io] = v + s * ty[ib];
        });
        return true;
      }
      case BinaryKind::Mul:
        b.for_each([&](auto io, auto ia, auto ib) {
          const T v = T(0) + tx[ia] * y[ib];
          o[io] = v + x[ia] * ty[ib];
        });
        return true;
      default:
        return false;
    }
  }
  // One input with a tangent (a bias or scale that is a constant, a mask): the output written in one
  // pass as 0 + term (0 - term where tan subtracts), the bits of the fill and the accumulating pass
  // it replaces. The element-wise forms of tan's switch; false for the kinds not handled here.
  template <class T>
  bool single_tangent(const internal::Broadcast& b, const T* x, const T* y, const T* tx, const T* ty, T* o) const {
    auto put = [&](auto term) { b.for_each([&](auto io, auto ia, auto ib) { o[io] = T(0) + term(ia, ib); }); };
    switch (m_kind) {
      case BinaryKind::Add:
        if (tx)
          put([&](auto ia, auto) { return tx[ia]; });
        else
          put([&](auto, auto ib) { return ty[ib]; });
        return true;
      case BinaryKind::Sub:
        if (tx)
          put([&](auto ia, auto) { return tx[ia]; });
        else
          put([&](auto, auto ib) { return T(-1) * ty[ib]; });
        return true;
      case BinaryKind::Mul:
        if (tx)
          put([&](auto ia, auto ib) { return tx[ia] * y[ib]; });
        else
          put([&](auto ia, auto ib) { return x[ia] * ty[ib]; });
        return true;
      case BinaryKind::Div:
        if (tx)
          put([&](auto ia, auto ib) { return tx[ia] / y[ib]; });
        else
          b.for_each([&](auto io, auto ia, auto ib) { o[io] = T(0) - x[ia] * ty[ib] / (y[ib] * y[ib]); });
        return true;
      default:
        return false;
    }
  }
  template <class T>
  void lin_vjp(OpCtx<T>& c, const T* g, T* ga, T* gb) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    lin_vjp_raw(b, c.in[0].data, c.in[1].data, g, ga, gb, c.in[0].size(), c.in[1].size());
  }
  // r[i_a] (A) or r[i_b] (!A) = sum of term(io, ia, ib) over the output elements that map to it. A
  // side with as many elements as the output (not broadcast) is written in one pass as 0 + term:
  // the bits of filling with zeros and accumulating, without the fill and the re-read.
  template <bool A, class T, class F>
  static void reduce_side(const internal::Broadcast& b, T* r, std::int64_t n, F&& term) {
    if (n == numel(b.out)) {
      b.for_each([&](auto io, auto ia, auto ib) { r[A ? ia : ib] = T(0) + term(io, ia, ib); });
      return;
    }
    std::fill(r, r + n, T(0));
    b.for_each([&](auto io, auto ia, auto ib) { r[A ? ia : ib] += term(io, ia, ib); });
  }
  template <class T>
  void lin_vjp_raw(const internal::Broadcast& b, const T* x, const T* y, const T* g, T* ga, T* gb, std::int64_t na,
                   std::int64_t nb) const {
    // The terms of ga and gb; where the op subtracts (gb of Sub and Div) the term is negated, which
    // gives the bits of subtracting from the accumulated sum (u - v == u + (-v) in IEEE arithmetic).
    auto both = [&](auto ta, auto tb) {
      if (ga) reduce_side<true>(b, ga, na, ta);
      if (gb) reduce_side<false>(b, gb, nb, tb);
    };
    switch (m_kind) {
      case BinaryKind::Add:
        both([g](auto io, auto, auto) { return g[io]; }, [g](auto io, auto, auto) { return g[io]; });
        break;
      case BinaryKind::Sub:
        both([g](auto io, auto, auto) { return g[io]; }, [g](auto io, auto, auto) { return -g[io]; });
        break;
      case BinaryKind::Mul:
        both([g, y](auto io, auto, auto ib) { return g[io] * y[ib]; },
             [g, x](auto io, auto ia, auto) { return g[io] * x[ia]; });
        break;
      case BinaryKind::Div:
        both([g, y](auto io, auto, auto ib) { return g[io] / y[ib]; },
             [g, x, y](auto io, auto ia, auto ib) { return -(g[io] * x[ia] / (y[ib] * y[ib])); });
        break;
      case BinaryKind::PRelu:
        both([g, x, y](auto io, auto ia, auto ib) { return x[ia] > T(0) ? g[io] : g[io] * y[ib]; },
             [g, x](auto io, auto ia, auto) { return x[ia] > T(0) ? T(0) : g[io] * x[ia]; });
        break;
      case BinaryKind::Max:
      case BinaryKind::Min:
        both([this, g, x, y](auto io, auto ia, auto ib) { return share_a(x[ia], y[ib]) * g[io]; },
             [this, g, x, y](auto io, auto ia, auto ib) { return (T(1) - share_a(x[ia], y[ib])) * g[io]; });
        break;
      case BinaryKind::Equal:
      case BinaryKind::Less:
      case BinaryKind::Greater:
      case BinaryKind::And:  // zero derivative
        if (ga) std::fill(ga, ga + na, T(0));
        if (gb) std::fill(gb, gb + nb, T(0));
        break;
    }
  }
  // Max / Min: the share of the gradient that goes to a (torch.maximum: 1/2 each at a tie).
  template <class T>
  T share_a(T a, T b) const {
    if (a == b) return T(0.5);
    return (m_kind == BinaryKind::Max) == (a > b) ? T(1) : T(0);
  }
  // Whether the op has a second-order term (not linear or piecewise linear).
  bool curved() const {
    return m_kind == BinaryKind::Mul || m_kind == BinaryKind::Div || m_kind == BinaryKind::PRelu;
  }

  BinaryKind m_kind;
};

}  // namespace

OpPtr make_binary(BinaryKind kind) { return std::make_shared<BinaryOp>(kind); }

}  // namespace curv
