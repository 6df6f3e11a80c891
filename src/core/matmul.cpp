// MatMul (numpy, batched with broadcasting) and Gemm (2-D, transposes, alpha/beta, bias C).
// Both are bilinear in (A, B), so with P = op(A) op(B):
//   P' = op(A') op(B) + op(A) op(B')
//   g_A from (g, B),  g_B from (A, g)               [prod_a / prod_b below]
//   g_A' = prod_a(g', B) + prod_a(g, B'),  g_B' = prod_b(A, g') + prod_b(A', g)
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/broadcast.h"
#include "src/core/internal/gemm.h"
#include "src/core/internal/op_checks.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::batched_gemm;

// An operand of a batched product: data, full batch dims (padded to the common rank, with a
// leading k or 1 for tangent products) and the stored matrix dims.
template <class T>
struct Operand {
  T* data;  // const-cast only for Z
  Shape batch;
  std::int64_t r, c;
};

Shape pad_batch(const Shape& b, size_t rank) {
  Shape r(rank - b.size(), 1);
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

// Z (+)= alpha op(X) op(Y) over the broadcast of all three batches (`add` false: Z = ..., what Z
// held is not read, same bits as adding to zeros).
template <class T>
void bmm(const Operand<T>& X, bool tx, const Operand<T>& Y, bool ty, const Operand<T>& Z, T alpha, bool add) {
  const size_t r = X.batch.size();
  Shape full(r, 1);
  for (size_t i = 0; i < r; ++i) full[i] = std::max({X.batch[i], Y.batch[i], Z.batch[i]});
  auto sx = internal::broadcast_strides(X.batch, full, X.r * X.c);
  auto sy = internal::broadcast_strides(Y.batch, full, Y.r * Y.c);
  auto sz = internal::broadcast_strides(Z.batch, full, Z.r * Z.c);
  batched_gemm<T>(full, sx, sy, sz, tx, ty, X.data, X.r, X.c, Y.data, Y.r, Y.c, Z.data, alpha, add);
}

class MatMulOp final : public OpImpl<MatMulOp> {
 public:
  // gemm: 2-D operands with optional transposes, scale and bias input C; else numpy matmul.
  MatMulOp(bool gemm, bool ta, bool tb, double alpha, double beta)
      : m_gemm(gemm), m_ta(ta), m_tb(tb), m_alpha(alpha), m_beta(beta) {
    if (!std::isfinite(alpha) || !std::isfinite(beta))
      internal::attr_fail(type(), "alpha and beta must be finite, got " + format_attr(alpha) + " and " +
                                      format_attr(beta));
  }
  std::string type() const override { return m_gemm ? "Gemm" : "MatMul"; }
  OpSpec spec() const override {
    OpSpec s(type());
    if (!m_gemm) return s;
    return s.set_bool("transA", m_ta).set_bool("transB", m_tb).set_float("alpha", m_alpha).set_float("beta", m_beta);
  }
  int arity() const override { return m_gemm ? -1 : 2; }
  bool accumulates() const override { return true; }
  template <class T>
  static bool adds(const OpCtx<T>& c, int i) {
    return (c.accumulate >> i) & 1u;
  }

  struct Dims {
    Shape a, b;      // operands promoted to rank >= 2
    Shape batch;     // broadcast batch
    std::int64_t m, kk, n;
    bool drop_m = false, drop_n = false;
    Shape out;
  };
  Dims dims(const Shape& sa, const Shape& sb) const {
    Dims d;
    d.a = sa;
    d.b = sb;
    if (m_gemm) {
      if (sa.size() != 2 || sb.size() != 2)
        throw std::invalid_argument("Gemm: A " + shape_str(sa) + " and B " + shape_str(sb) + " must be 2-D");
    } else {
      if (sa.empty() || sb.empty()) throw std::invalid_argument("MatMul: scalar operand");
      if (d.a.size() == 1) d.a.insert(d.a.begin(), 1), d.drop_m = true;
      if (d.b.size() == 1) d.b.push_back(1), d.drop_n = true;
    }
    const std::int64_t ar = d.a[d.a.size() - 2], ac = d.a.back(), br = d.b[d.b.size() - 2], bc = d.b.back();
    d.m = m_ta ? ac : ar;
    d.kk = m_ta ? ar : ac;
    const std::int64_t kb = m_tb ? bc : br;
    d.n = m_tb ? br : bc;
    if (d.kk != kb)
      throw std::invalid_argument(type() + ": inner dimensions differ, A " + shape_str(sa) + " x B " + shape_str(sb));
    Shape ba(d.a.begin(), d.a.end() - 2), bb(d.b.begin(), d.b.end() - 2);
    try {
      d.batch = internal::Broadcast(ba, bb).out;
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(type() + ": batch dims of A " + shape_str(sa) + " and B " + shape_str(sb) +
                                  " do not broadcast");
    }
    d.out = d.batch;
    if (!d.drop_m) d.out.push_back(d.m);
    if (!d.drop_n) d.out.push_back(d.n);
    return d;
  }

  Shape output_shape(const std::vector<Shape>& in) const override {
    if (in.size() < 2 || in.size() > (m_gemm ? 3u : 2u))
      throw std::invalid_argument(type() + ": expected " + (m_gemm ? "2 or 3" : "2") + " inputs");
    Dims d = dims(in[0], in[1]);
    if (m_gemm && in.size() == 3) {
      try {
        if (internal::Broadcast(in[2], d.out).out != d.out) throw std::invalid_argument("");
      } catch (const std::invalid_argument&) {
        throw std::invalid_argument("Gemm: C " + shape_str(in[2]) + " does not broadcast to " + shape_str(d.out));
      }
    }
    return d.out;
  }

  // Operands with a leading dim `lead` (k for tangents, 1 for primals in tangent products).
  template <class T>
  Operand<T> opa(const Dims& d, const T* p, std::int64_t lead) const {
    Shape b = pad_batch(Shape(d.a.begin(), d.a.end() - 2), d.batch.size());
    b.insert(b.begin(), lead);
    return {const_cast<T*>(p), b, d.a[d.a.size() - 2], d.a.back()};
  }
  template <class T>
  Operand<T> opb(const Dims& d, const T* p, std::int64_t lead) const {
    Shape b = pad_batch(Shape(d.b.begin(), d.b.end() - 2), d.batch.size());
    b.insert(b.begin(), lead);
    return {const_cast<T*>(p), b, d.b[d.b.size() - 2], d.b.back()};
  }
  template <class T>
  Operand<T> opz(const Dims& d, T* p, std::int64_t lead) const {
    Shape b = d.batch;
    b.insert(b.begin(), lead);
    return {p, b, d.m, d.n};
  }

  // Z += op(A) op(B)
  template <class T>
  void prod(const Operand<T>& A, const Operand<T>& B, const Operand<T>& Z, bool add) const {
    bmm(A, m_ta, B, m_tb, Z, T(m_alpha), add);
  }
  // Z (shaped like A) += contribution of G (shaped like the product) and B to dL/dA.
  template <class T>
  void prod_a(const Operand<T>& G, const Operand<T>& B, const Operand<T>& Z, bool add) const {
    if (!m_ta)
      bmm(G, false, B, !m_tb, Z, T(m_alpha), add);  // [m,k] = G [m,n] op(B)^T
    else
      bmm(B, m_tb, G, true, Z, T(m_alpha), add);  // [k,m] = op(B) [k,n] G^T
  }
  template <class T>
  void prod_b(const Operand<T>& A, const Operand<T>& G, const Operand<T>& Z, bool add) const {
    if (!m_tb)
      bmm(A, !m_ta, G, false, Z, T(m_alpha), add);  // [k,n] = op(A)^T G
    else
      bmm(G, true, A, m_ta, Z, T(m_alpha), add);  // [n,k] = G^T op(A)
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    Dims d = dims(c.in[0].shape, c.in[1].shape);
    prod(opa(d, c.in[0].data, 1), opb(d, c.in[1].data, 1), opz(d, out.data, 1), false);
    if (c.in.size() == 3) add_bias(c.in[2], out);
  }
  template <class T>
  void add_bias(ConstView<T> cv, View<T> out) const {
    internal::Broadcast b(out.shape, cv.shape);
    const T beta = T(m_beta);
    b.for_each([&](auto io, auto, auto ic) { out.data[io] += beta * cv.data[ic]; });
  }
  // gc (+)= beta * g summed over the broadcast dims.
  template <class T>
  void bias_grad(const T* g, const Shape& gshape, View<T> gc, bool accumulate) const {
    internal::Broadcast b(gshape, gc.shape);
    if (!accumulate) gc.set_zero();
    const T beta = T(m_beta);
    b.for_each([&](auto io, auto, auto ic) { gc.data[ic] += beta * g[io]; });
  }

  template <class T>
  void bwd(OpCtx<T>& c) const {
    Dims d = dims(c.in[0].shape, c.in[1].shape);
    if (c.gin[0].data)
      prod_a(opz(d, const_cast<T*>(c.gout.data), 1), opb(d, c.in[1].data, 1), opa(d, c.gin[0].data, 1), adds(c, 0));
    if (c.gin[1].data)
      prod_b(opa(d, c.in[0].data, 1), opz(d, const_cast<T*>(c.gout.data), 1), opb(d, c.gin[1].data, 1), adds(c, 1));
    if (c.in.size() == 3 && c.gin[2].data) bias_grad(c.gout.data, c.gout.shape, c.gin[2], adds(c, 2));
  }

  template <class T>
  void tan(OpCtx<T>& c) const {
    Dims d = dims(c.in[0].shape, c.in[1].shape);
    const auto k = c.k;
    // The first term overwrites the tangent, the second adds (zeros when neither input has one).
    if (c.tin[0].data) prod(opa(d, c.tin[0].data, k), opb(d, c.in[1].data, 1), opz(d, c.tout.data, k), false);
    if (c.tin[1].data)
      prod(opa(d, c.in[0].data, 1), opb(d, c.tin[1].data, k), opz(d, c.tout.data, k), c.tin[0].data != nullptr);
    if (!c.tin[0].data && !c.tin[1].data) c.tout.set_zero();
    if (c.in.size() == 3 && c.tin[2].data) {
      const std::int64_t no = numel(d.out), nc = c.in[2].size();
      for (std::int64_t j = 0; j < k; ++j)
        add_bias(ConstView<T>{c.tin[2].data + j * nc, c.in[2].shape}, View<T>{c.tout.data + j * no, d.out});
    }
  }

  template <class T>
  void bwdt(OpCtx<T>& c) const {
    Dims d = dims(c.in[0].shape, c.in[1].shape);
    const auto k = c.k;
    auto tg = opz(d, const_cast<T*>(c.tgout.data), k);
    auto g = opz(d, const_cast<T*>(c.gout.data), 1);
    if (c.tgin[0].data) {
      auto z = opa(d, c.tgin[0].data, k);
      prod_a(tg, opb(d, c.in[1].data, 1), z, adds(c, 0));
      if (c.second_order && c.tin[1].data) prod_a(g, opb(d, c.tin[1].data, k), z, true);
    }
    if (c.tgin[1].data) {
      auto z = opb(d, c.tgin[1].data, k);
      prod_b(opa(d, c.in[0].data, 1), tg, z, adds(c, 1));
      if (c.second_order && c.tin[0].data) prod_b(opa(d, c.tin[0].data, k), g, z, true);
    }
    if (c.in.size() == 3 && c.tgin[2].data) {
      const std::int64_t no = numel(d.out), nc = c.in[2].size();
      for (std::int64_t j = 0; j < k; ++j)
        bias_grad(c.tgout.data + j * no, d.out, View<T>{c.tgin[2].data + j * nc, c.in[2].shape}, adds(c, 2));
    }
  }

 private:
  bool m_gemm, m_ta, m_tb;
  double m_alpha, m_beta;
};

}  // namespace

OpPtr make_gemm(bool trans_a, bool trans_b, double alpha, double beta) {
  return std::make_shared<MatMulOp>(true, trans_a, trans_b, alpha, beta);
}
OpPtr make_matmul() { return std::make_shared<MatMulOp>(false, false, false, 1.0, 1.0); }

}  // namespace curv
