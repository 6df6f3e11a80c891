// Unary elementwise ops, generated from the rows of elementwise_table.h: each row becomes a struct
// of f, f', f'' and the kernels below are instantiated for it, so every op has its own loops with
// f inlined (a switch per element made ReLU's backward 11% of a ResNet-20 gradient).
//   y' = f'(x) x',  g_x = f'(x) g_y,  g_x' = f'(x) g_y' + f''(x) g_y x'.
#include <cmath>
#include <optional>
#include <stdexcept>
#include <vector>

#include "src/core/elementwise_table.h"
#include "src/core/ops.h"

namespace curv {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;

// Helpers of the table rows (each written once, as the rows use them).
template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <class T>
T dsigmoid(T x) {
  const T s = T(1) / (T(1) + std::exp(-x));
  return s * (T(1) - s);
}
template <class T>
T d2sigmoid(T x) {
  const T s = T(1) / (T(1) + std::exp(-x));
  return s * (T(1) - s) * (T(1) - T(2) * s);
}
template <class T>
T dtanh(T x) {
  const T t = std::tanh(x);
  return T(1) - t * t;
}
template <class T>
T d2tanh(T x) {
  const T t = std::tanh(x);
  return T(-2) * t * (T(1) - t * t);
}
template <class T>
T derf(T x) {
  return T(kTwoOverSqrtPi) * std::exp(-x * x);
}
template <class T>
T d2erf(T x) {
  return T(-2) * x * T(kTwoOverSqrtPi) * std::exp(-x * x);
}
template <class T>
T gelu(T x) {  // 0.5 x (1 + erf(x / sqrt 2)), the exact GELU
  return T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
}
template <class T>
T dgelu(T x) {
  return T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2))) + x * T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
}
template <class T>
T d2gelu(T x) {
  return T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x) * (T(2) - x * x);
}
template <class T>
T d2sqrt(T x) {
  return T(-0.25) / (x * std::sqrt(x));
}
template <class T>
T pow_f(T x, double p) {
  return p == 2.0 ? x * x : std::pow(x, T(p));
}
template <class T>
T pow_df(T x, double p) {
  return p == 2.0 ? T(2) * x : T(p) * std::pow(x, T(p - 1));
}
template <class T>
T pow_d2f(T x, double p) {
  return p == 2.0 ? T(2) : T(p * (p - 1)) * std::pow(x, T(p - 2));
}

// One struct per row: the type name, the parameter and f, f', f''.
#define CURV_UNARY_FN(Name, Param, Default, Curvature, F, DF, D2F) \
  struct Name##Fn {                                                \
    static constexpr const char* type = #Name;                     \
    static constexpr const char* param = Param;                    \
    static bool curvature(double p) { return Curvature; }          \
    template <class T>                                             \
    static T f(T x, double p) {                                    \
      return F;                                                    \
    }                                                              \
    template <class T>                                             \
    static T df(T x, double p) {                                   \
      return DF;                                                   \
    }                                                              \
    template <class T>                                             \
    static T d2f(T x, double p) {                                  \
      return D2F;                                                  \
    }                                                              \
  };
CURV_UNARY_OPS(CURV_UNARY_FN)
#undef CURV_UNARY_FN

template <class Fn>
class UnaryOp final : public OpImpl<UnaryOp<Fn>> {
 public:
  explicit UnaryOp(double param) : m_param(param) {
    if (*Fn::param && !std::isfinite(param))
      throw std::invalid_argument(std::string(Fn::type) + ": " + Fn::param + " must be finite, got " +
                                  format_attr(param));
  }
  std::string type() const override { return Fn::type; }
  OpSpec spec() const override {
    OpSpec s(Fn::type);
    if (*Fn::param) s.set_float(Fn::param, m_param);
    return s;
  }
  int arity() const override { return 1; }
  bool tangent_reads_output_grad() const override { return Fn::curvature(m_param); }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T* x = c.in[0].data;
    const std::int64_t n = out.size();
    const double p = m_param;
    for (std::int64_t i = 0; i < n; ++i) out.data[i] = Fn::f(x[i], p);
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const T* x = c.in[0].data;
    const T* g = c.gout.data;
    T* gx = c.gin[0].data;
    const std::int64_t n = c.in[0].size();
    const double p = m_param;
    for (std::int64_t i = 0; i < n; ++i) gx[i] = g[i] * Fn::df(x[i], p);
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
    const double p = m_param;
    std::vector<T> d(n), h;
    derivative(x, n, d.data());
    const bool so = c.second_order && c.tin[0].data && Fn::curvature(p);
    if (so) {
      h.resize(n);
      for (std::int64_t i = 0; i < n; ++i) h[i] = c.gout.data[i] * Fn::d2f(x[i], p);
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
  template <class T>
  void derivative(const T* x, std::int64_t n, T* d) const {
    const double p = m_param;
    for (std::int64_t i = 0; i < n; ++i) d[i] = Fn::df(x[i], p);
  }

  double m_param;
};

}  // namespace

OpPtr make_unary(UnaryKind kind, double param) {
  switch (kind) {
#define CURV_UNARY_CASE(Name, ...) \
  case UnaryKind::Name:            \
    return std::make_shared<UnaryOp<Name##Fn>>(param);
    CURV_UNARY_OPS(CURV_UNARY_CASE)
#undef CURV_UNARY_CASE
  }
  throw std::invalid_argument("make_unary: unknown kind");
}

}  // namespace curv
