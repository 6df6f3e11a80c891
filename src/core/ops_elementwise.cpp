// Elementwise unary ops and broadcasting binary ops.
#include <cmath>
#include <stdexcept>

#include "src/core/internal/broadcast.h"
#include "src/core/ops.h"

namespace curv {
namespace {

// ---------------------------------------------------------------- unary: y = f(x)
// Each kind supplies f, f' and f''; the four kernels follow from them:
//   y' = f'(x) x',  g_x = f'(x) g_y,  g_x' = f'(x) g_y' + f''(x) g_y x'.
class UnaryOp final : public OpImpl<UnaryOp> {
 public:
  UnaryOp(UnaryKind kind, double param) : m_kind(kind), m_param(param) {}
  std::string type() const override {
    switch (m_kind) {
      case UnaryKind::Relu: return "Relu";
      case UnaryKind::LeakyRelu: return "LeakyRelu";
      case UnaryKind::Sigmoid: return "Sigmoid";
      case UnaryKind::Tanh: return "Tanh";
      case UnaryKind::Erf: return "Erf";
      case UnaryKind::Gelu: return "Gelu";
      case UnaryKind::Sqrt: return "Sqrt";
      case UnaryKind::Pow: return "Pow";
      case UnaryKind::Exp: return "Exp";
      case UnaryKind::Log: return "Log";
      case UnaryKind::Neg: return "Neg";
      case UnaryKind::Reciprocal: return "Reciprocal";
      case UnaryKind::Identity: return "Identity";
    }
    return "?";
  }
  std::string attributes() const override {
    if (m_kind == UnaryKind::Pow) return "exponent=" + std::to_string(m_param);
    if (m_kind == UnaryKind::LeakyRelu) return "alpha=" + std::to_string(m_param);
    return {};
  }
  int arity() const override { return 1; }
  bool tangent_reads_output_grad() const override { return has_curvature(); }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T* x = c.in[0].data;
    const std::int64_t n = out.size();
    dispatch<T>([&](auto fn, auto) {
      for (std::int64_t i = 0; i < n; ++i) out.data[i] = fn(x[i]);
    });
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const T* x = c.in[0].data;
    const T* g = c.gout.data;
    T* gx = c.gin[0].data;
    const std::int64_t n = c.in[0].size();
    dispatch<T>([&](auto, auto dfn) {
      for (std::int64_t i = 0; i < n; ++i) gx[i] = g[i] * dfn(x[i]);
    });
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t n = c.in[0].size();
    if (!c.tin[0].data) {
      c.tout.set_zero();
      return;
    }
    std::vector<T> d(n);
    derivative(c.in[0].data, n, d.data());
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tx = c.tin[0].data + j * n;
      T* ty = c.tout.data + j * n;
      for (std::int64_t i = 0; i < n; ++i) ty[i] = d[i] * tx[i];
    }
  }
  template <class T>
  void bwdt(OpCtx<T>& c) const {
    if (!c.tgin[0].data) return;
    const std::int64_t n = c.in[0].size();
    const T* x = c.in[0].data;
    std::vector<T> d(n), h;
    derivative(x, n, d.data());
    const bool so = c.second_order && c.tin[0].data && has_curvature();
    if (so) {
      h.resize(n);
      for (std::int64_t i = 0; i < n; ++i) h[i] = c.gout.data[i] * d2f(x[i]);
    }
    for (std::int64_t j = 0; j < c.k; ++j) {
      const T* tg = c.tgout.data + j * n;
      T* r = c.tgin[0].data + j * n;
      if (so) {
        const T* tx = c.tin[0].data + j * n;
        for (std::int64_t i = 0; i < n; ++i) r[i] = d[i] * tg[i] + h[i] * tx[i];
      } else {
        for (std::int64_t i = 0; i < n; ++i) r[i] = d[i] * tg[i];
      }
    }
  }

 private:
  // Calls body(f, f') once with the kind resolved outside the element loop, so that the loops
  // vectorize (a switch per element made ReLU's backward 11% of a ResNet-20 gradient).
  template <class T, class Body>
  void dispatch(Body&& body) const {
    if (m_kind == UnaryKind::Relu)
      body([](T x) { return x > T(0) ? x : T(0); }, [](T x) { return x > T(0) ? T(1) : T(0); });
    else
      body([this](T x) { return f(x); }, [this](T x) { return df(x); });
  }
  template <class T>
  void derivative(const T* x, std::int64_t n, T* d) const {
    dispatch<T>([&](auto, auto dfn) {
      for (std::int64_t i = 0; i < n; ++i) d[i] = dfn(x[i]);
    });
  }
  bool has_curvature() const {
    return !(m_kind == UnaryKind::Relu || m_kind == UnaryKind::LeakyRelu || m_kind == UnaryKind::Neg ||
             m_kind == UnaryKind::Identity || (m_kind == UnaryKind::Pow && m_param == 1.0));
  }
  static constexpr double kInvSqrt2 = 0.70710678118654752440;
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;
  static constexpr double kTwoOverSqrtPi = 1.12837916709551257390;

  template <class T>
  T f(T x) const {
    switch (m_kind) {
      case UnaryKind::Relu: return x > T(0) ? x : T(0);
      case UnaryKind::LeakyRelu: return x > T(0) ? x : T(m_param) * x;
      case UnaryKind::Sigmoid: return T(1) / (T(1) + std::exp(-x));
      case UnaryKind::Tanh: return std::tanh(x);
      case UnaryKind::Erf: return std::erf(x);
      case UnaryKind::Gelu: return T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
      case UnaryKind::Sqrt: return std::sqrt(x);
      case UnaryKind::Pow: return m_param == 2.0 ? x * x : std::pow(x, T(m_param));
      case UnaryKind::Exp: return std::exp(x);
      case UnaryKind::Log: return std::log(x);
      case UnaryKind::Neg: return -x;
      case UnaryKind::Reciprocal: return T(1) / x;
      case UnaryKind::Identity: return x;
    }
    return x;
  }
  template <class T>
  T df(T x) const {
    switch (m_kind) {
      case UnaryKind::Relu: return x > T(0) ? T(1) : T(0);
      case UnaryKind::LeakyRelu: return x > T(0) ? T(1) : T(m_param);
      case UnaryKind::Sigmoid: {
        const T s = T(1) / (T(1) + std::exp(-x));
        return s * (T(1) - s);
      }
      case UnaryKind::Tanh: {
        const T t = std::tanh(x);
        return T(1) - t * t;
      }
      case UnaryKind::Erf: return T(kTwoOverSqrtPi) * std::exp(-x * x);
      case UnaryKind::Gelu:
        return T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2))) + x * T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
      case UnaryKind::Sqrt: return T(0.5) / std::sqrt(x);
      case UnaryKind::Pow: return m_param == 2.0 ? T(2) * x : T(m_param) * std::pow(x, T(m_param - 1));
      case UnaryKind::Exp: return std::exp(x);
      case UnaryKind::Log: return T(1) / x;
      case UnaryKind::Neg: return T(-1);
      case UnaryKind::Reciprocal: return T(-1) / (x * x);
      case UnaryKind::Identity: return T(1);
    }
    return T(1);
  }
  template <class T>
  T d2f(T x) const {
    switch (m_kind) {
      case UnaryKind::Relu:
      case UnaryKind::LeakyRelu:
      case UnaryKind::Neg:
      case UnaryKind::Identity: return T(0);
      case UnaryKind::Sigmoid: {
        const T s = T(1) / (T(1) + std::exp(-x));
        return s * (T(1) - s) * (T(1) - T(2) * s);
      }
      case UnaryKind::Tanh: {
        const T t = std::tanh(x);
        return T(-2) * t * (T(1) - t * t);
      }
      case UnaryKind::Erf: return T(-2) * x * T(kTwoOverSqrtPi) * std::exp(-x * x);
      case UnaryKind::Gelu: return T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x) * (T(2) - x * x);
      case UnaryKind::Sqrt: return T(-0.25) / (x * std::sqrt(x));
      case UnaryKind::Pow:
        return m_param == 2.0 ? T(2) : T(m_param * (m_param - 1)) * std::pow(x, T(m_param - 2));
      case UnaryKind::Exp: return std::exp(x);
      case UnaryKind::Log: return T(-1) / (x * x);
      case UnaryKind::Reciprocal: return T(2) / (x * x * x);
    }
    return T(0);
  }

  UnaryKind m_kind;
  double m_param;
};

// ---------------------------------------------------------------- binary with broadcasting
class BinaryOp final : public OpImpl<BinaryOp> {
 public:
  explicit BinaryOp(BinaryKind kind) : m_kind(kind) {}
  std::string type() const override {
    switch (m_kind) {
      case BinaryKind::Add: return "Add";
      case BinaryKind::Sub: return "Sub";
      case BinaryKind::Mul: return "Mul";
      case BinaryKind::Div: return "Div";
    }
    return "?";
  }
  int arity() const override { return 2; }
  bool tangent_reads_output_grad() const override { return m_kind == BinaryKind::Mul || m_kind == BinaryKind::Div; }
  Shape output_shape(const std::vector<Shape>& in) const override {
    try {
      return internal::Broadcast(in.at(0), in.at(1)).out;
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(type() + ": " + e.what());
    }
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    const T* x = c.in[0].data;
    const T* y = c.in[1].data;
    T* o = out.data;
    switch (m_kind) {
      case BinaryKind::Add: b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] + y[ib]; }); break;
      case BinaryKind::Sub: b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] - y[ib]; }); break;
      case BinaryKind::Mul: b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] * y[ib]; }); break;
      case BinaryKind::Div: b.for_each([&](auto io, auto ia, auto ib) { o[io] = x[ia] / y[ib]; }); break;
    }
  }

  // g_a = sum_broadcast(g * da), g_b = sum_broadcast(g * db) with
  //   Add: da = 1, db = 1;  Sub: 1, -1;  Mul: b, a;  Div: 1/b, -a/b^2.
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
    const bool so = c.second_order && (m_kind == BinaryKind::Mul || m_kind == BinaryKind::Div);
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
      } else {
        // g_a = g / b => g_a' += -g b' / b^2;  g_b = -g a / b^2 => g_b' += -g a'/b^2 + 2 g a b'/b^3
        if (ra && ty) b.for_each([&](auto io, auto ia, auto ib) { ra[ia] -= g[io] * ty[ib] / (y[ib] * y[ib]); });
        if (rb) {
          if (tx) b.for_each([&](auto io, auto ia, auto ib) { rb[ib] -= g[io] * tx[ia] / (y[ib] * y[ib]); });
          if (ty)
            b.for_each([&](auto io, auto ia, auto ib) {
              rb[ib] += T(2) * g[io] * x[ia] * ty[ib] / (y[ib] * y[ib] * y[ib]);
            });
        }
      }
    }
  }

 private:
  template <class T>
  void lin_vjp(OpCtx<T>& c, const T* g, T* ga, T* gb) const {
    internal::Broadcast b(c.in[0].shape, c.in[1].shape);
    lin_vjp_raw(b, c.in[0].data, c.in[1].data, g, ga, gb, c.in[0].size(), c.in[1].size());
  }
  template <class T>
  void lin_vjp_raw(const internal::Broadcast& b, const T* x, const T* y, const T* g, T* ga, T* gb, std::int64_t na,
                   std::int64_t nb) const {
    if (ga) std::fill(ga, ga + na, T(0));
    if (gb) std::fill(gb, gb + nb, T(0));
    switch (m_kind) {
      case BinaryKind::Add:
        if (ga) b.for_each([&](auto io, auto ia, auto) { ga[ia] += g[io]; });
        if (gb) b.for_each([&](auto io, auto, auto ib) { gb[ib] += g[io]; });
        break;
      case BinaryKind::Sub:
        if (ga) b.for_each([&](auto io, auto ia, auto) { ga[ia] += g[io]; });
        if (gb) b.for_each([&](auto io, auto, auto ib) { gb[ib] -= g[io]; });
        break;
      case BinaryKind::Mul:
        if (ga) b.for_each([&](auto io, auto ia, auto ib) { ga[ia] += g[io] * y[ib]; });
        if (gb) b.for_each([&](auto io, auto ia, auto ib) { gb[ib] += g[io] * x[ia]; });
        break;
      case BinaryKind::Div:
        if (ga) b.for_each([&](auto io, auto ia, auto ib) { ga[ia] += g[io] / y[ib]; });
        if (gb) b.for_each([&](auto io, auto ia, auto ib) { gb[ib] -= g[io] * x[ia] / (y[ib] * y[ib]); });
        break;
    }
  }

  BinaryKind m_kind;
};

}  // namespace

OpPtr make_unary(UnaryKind kind, double param) { return std::make_shared<UnaryOp>(kind, param); }
OpPtr make_binary(BinaryKind kind) { return std::make_shared<BinaryOp>(kind); }

}  // namespace curv
