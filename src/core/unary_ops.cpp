// Unary elementwise ops, generated from the rows of elementwise_table.h: each row becomes a struct
// of f, f', f'' and the kernels below are instantiated for it, so every op has its own loops with
// f inlined (a switch per element made ReLU's backward 11% of a ResNet-20 gradient).
//   y' = f'(x) x',  g_x = f'(x) g_y,  g_x' = f'(x) g_y' + f''(x) g_y x'.
// GCC 12 reports its own AVX-512 intrinsics (inlined from Eigen's vectorized float exp) as reading
// an uninitialized value, in builds without -O3 (the sanitizer build): a false positive of those
// headers, silenced for this file as in loss.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

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
// GELU's tanh approximation (PyTorch's approximate="tanh", ONNX Gelu approximate="tanh"):
// f = x (1 + tanh u) / 2 with u = c (x + a x^3), c = sqrt(2 / pi), a = 0.044715; t = tanh u,
// f' = (1 + t) / 2 + x (1 - t^2) u' / 2,  f'' = (1 - t^2) (u' + x (u'' - 2 t u'^2) / 2).
constexpr double kGeluC = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluA = 0.044715;
template <class T>
T gelu_tanh(T x) {
  return T(0.5) * x * (T(1) + std::tanh(T(kGeluC) * (x + T(kGeluA) * x * x * x)));
}
template <class T>
T dgelu_tanh(T x) {
  const T t = std::tanh(T(kGeluC) * (x + T(kGeluA) * x * x * x)), du = T(kGeluC) * (T(1) + T(3 * kGeluA) * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}
template <class T>
T d2gelu_tanh(T x) {
  const T t = std::tanh(T(kGeluC) * (x + T(kGeluA) * x * x * x)), du = T(kGeluC) * (T(1) + T(3 * kGeluA) * x * x);
  const T d2u = T(6 * kGeluA * kGeluC) * x;
  return (T(1) - t * t) * (du + T(0.5) * x * (d2u - T(2) * t * du * du));
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

template <class T>
T softplus(T x) {  // log(1 + e^x) without overflow
  return x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}
template <class T>
T hsig(T x, double alpha, double beta) {  // max(0, min(1, alpha x + beta))
  const T z = T(alpha) * x + T(beta);
  return z <= T(0) ? T(0) : z >= T(1) ? T(1) : z;
}
template <class T>
T dhsig(T x, double alpha, double beta) {  // PyTorch: alpha inside the open interval only
  const T z = T(alpha) * x + T(beta);
  return z > T(0) && z < T(1) ? T(alpha) : T(0);
}
template <class T>
T hswish(T x) {  // x relu6(x + 3) / 6
  return x <= T(-3) ? T(0) : x >= T(3) ? x : x * (x + T(3)) / T(6);
}
template <class T>
T dhswish(T x) {  // PyTorch's hardswish_backward: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above
  return x < T(-3) ? T(0) : x <= T(3) ? x / T(3) + T(0.5) : T(1);
}
template <class T>
T d2hswish(T x) {  // PyTorch's double backward: 1/3 on the open interval
  return x > T(-3) && x < T(3) ? T(1) / T(3) : T(0);
}
template <class T>
T elu(T x, double alpha) {
  return x > T(0) ? x : T(alpha) * std::expm1(x);
}
template <class T>
T delu(T x, double alpha) {  // PyTorch: the exponential side at x = 0
  return x > T(0) ? T(1) : T(alpha) * std::exp(x);
}
template <class T>
T d2elu(T x, double alpha) {
  return x > T(0) ? T(0) : T(alpha) * std::exp(x);
}
// Clip compares in double: an absent bound (+-DBL_MAX) has no float value; a bound is converted
// (saturating to +-inf) only when x lies beyond it.
template <class T>
T saturate(double v) {
  constexpr double m = std::numeric_limits<T>::max();
  return v > m ? std::numeric_limits<T>::infinity() : v < -m ? -std::numeric_limits<T>::infinity() : static_cast<T>(v);
}
template <class T>
T clip(T x, double lo, double hi) {  // ONNX: min(max(x, lo), hi) (hi wins when lo > hi; NaN stays NaN)
  const double v = static_cast<double>(x);
  double r = v < lo ? lo : v;
  r = r > hi ? hi : r;
  return r == v ? x : saturate<T>(r);
}
template <class T>
T dclip(T x, double lo, double hi) {  // PyTorch's clamp: 1 on the closed interval [lo, hi]
  return static_cast<double>(x) >= lo && static_cast<double>(x) <= hi ? T(1) : T(0);
}

template <class T>
T sgn(T x) {  // torch.abs's derivative: sgn(0) = 0
  return x > T(0) ? T(1) : x < T(0) ? T(-1) : T(0);
}

// One struct per row: the type name, the parameter and f, f', f''.
#define CURV_UNARY_FN(Name, P, PDefault, Q, QDefault, Curvature, F, DF, D2F) \
  struct Name##Fn {                                                           \
    static constexpr const char* type = #Name;                                \
    static constexpr const char* param = P;                                   \
    static constexpr const char* param2 = Q;                                  \
    static bool curvature(double p, double q) {                               \
      (void)p, (void)q;                                                       \
      return Curvature;                                                       \
    }                                                                         \
    template <class T>                                                        \
    static T f(T x, double p, double q) {                                     \
      (void)p, (void)q;                                                       \
      return F;                                                               \
    }                                                                         \
    template <class T>                                                        \
    static T df(T x, double p, double q) {                                    \
      (void)p, (void)q;                                                       \
      return DF;                                                              \
    }                                                                         \
    template <class T>                                                        \
    static T d2f(T x, double p, double q) {                                   \
      (void)x, (void)p, (void)q;                                              \
      return D2F;                                                             \
    }                                                                         \
  };
CURV_UNARY_OPS(CURV_UNARY_FN)
#undef CURV_UNARY_FN

// f'(x) and f''(x) of one element together, for the VJP tangent; a row whose two derivatives share
// work specializes it with the same expressions (Erf: one exp instead of two, same values).
template <class Fn>
struct Derivatives {
  template <class T>
  static void eval(T x, double p, double q, T& d, T& d2) {
    d = Fn::df(x, p, q);
    d2 = Fn::d2f(x, p, q);
  }
};
template <>
struct Derivatives<ErfFn> {
  template <class T>
  static void eval(T x, double, double, T& d, T& d2) {
    const T e = std::exp(-x * x);
    d = T(kTwoOverSqrtPi) * e;
    d2 = T(-2) * x * T(kTwoOverSqrtPi) * e;
  }
};

// A row may save values per element in forward (kCount of them) from which f' and f'' follow
// cheaply, with the same expressions as f, df and d2f, so that repeated products on a kept pass
// skip its transcendentals and give the same values (Erf: e = exp(-x^2), f' = c e, f'' = -2 x c e;
// Gelu: f' and f'' themselves, from one erf and one exp shared with f).
template <class Fn>
struct Saved {
  static constexpr bool kSaves = false;
  static constexpr int kCount = 1;
};
template <>
struct Saved<ErfFn> {
  static constexpr bool kSaves = true;
  static constexpr int kCount = 1;
  template <class T>
  static T fwd(T x, T* e) {
    e[0] = std::exp(-x * x);
    return std::erf(x);
  }
  template <class T>
  static T df(T, const T* e) {
    return T(kTwoOverSqrtPi) * e[0];
  }
  template <class T>
  static T d2f(T x, const T* e) {
    return T(-2) * x * T(kTwoOverSqrtPi) * e[0];
  }
};
template <>
struct Saved<GeluFn> {
  static constexpr bool kSaves = true;
  static constexpr int kCount = 2;
  template <class T>
  static T fwd(T x, T* e) {  // gelu, dgelu and d2gelu, operation for operation
    const T r = T(1) + std::erf(x * T(kInvSqrt2));
    const T ex = std::exp(T(-0.5) * x * x);
    e[0] = T(0.5) * r + x * T(kInvSqrt2Pi) * ex;
    e[1] = T(kInvSqrt2Pi) * ex * (T(2) - x * x);
    return T(0.5) * x * r;
  }
  template <class T>
  static T df(T, const T* e) {
    return e[0];
  }
  template <class T>
  static T d2f(T, const T* e) {
    return e[1];
  }
};

// GELU in float, in bulk: f, f' and f'' (any pointer may be null) from Eigen's vectorized erf and
// exp, with Saved<GeluFn>'s expressions. The elements go through fixed chunks padded to whole
// packets, so an element's bits do not depend on where it sits in its array, and every path
// (forward with or without saving, a product on a kept pass or without one) computes its values
// here: they agree bit for bit. Per element about 5x cheaper than the scalar erff and expf, which
// were ~10% of a transformer's Hessian product. Eigen's float erf is a rational approximation
// within a couple of ulp of erf on [-4, 4] (and +-1 beyond, as fl(erf) is), its exp within 1 ulp.
void gelu_bulk(const float* x, std::int64_t n, float* f, float* d, float* d2) {
  constexpr int kChunk = 256;
  using Chunk = Eigen::Array<float, kChunk, 1>;
  alignas(64) float xb[kChunk], r[kChunk], ex[kChunk];
  for (std::int64_t s = 0; s < n; s += kChunk) {
    const int m = static_cast<int>(std::min<std::int64_t>(kChunk, n - s));
    std::copy(x + s, x + s + m, xb);
    std::fill(xb + m, xb + kChunk, 0.0f);
    const Eigen::Map<const Chunk, Eigen::Aligned64> X(xb);
    Eigen::Map<Chunk, Eigen::Aligned64> R(r), E(ex);
    R = (X * float(kInvSqrt2)).erf() + 1.0f;
    E = (X * X * -0.5f).exp();
    for (int i = 0; i < m; ++i) {
      const float xi = xb[i];
      if (f) f[s + i] = 0.5f * xi * r[i];
      if (d) d[s + i] = 0.5f * r[i] + xi * float(kInvSqrt2Pi) * ex[i];
      if (d2) d2[s + i] = float(kInvSqrt2Pi) * ex[i] * (2.0f - xi * xi);
    }
  }
}

// The rows computed by gelu_bulk (float GELU) rather than element by element.
template <class Fn, class T>
constexpr bool kBulk = std::is_same_v<Fn, GeluFn> && std::is_same_v<T, float>;

// The arrays of the values forward saved; at(i, e) gathers element i's kCount values.
template <class Fn, class T>
struct SavedArrays {
  const T* a[Saved<Fn>::kCount] = {};
  void at(std::int64_t i, T* e) const {
    for (int k = 0; k < Saved<Fn>::kCount; ++k) e[k] = a[k][i];
  }
};

template <class Fn>
class UnaryOp final : public OpImpl<UnaryOp<Fn>> {
 public:
  UnaryOp(double param, double param2) : m_param(param), m_param2(param2) {
    if (*Fn::param && !std::isfinite(param))
      throw std::invalid_argument(std::string(Fn::type) + ": " + Fn::param + " must be finite, got " +
                                  format_attr(param));
    if (*Fn::param2 && !std::isfinite(param2))
      throw std::invalid_argument(std::string(Fn::type) + ": " + Fn::param2 + " must be finite, got " +
                                  format_attr(param2));
  }
  std::string type() const override { return Fn::type; }
  OpSpec spec() const override {
    OpSpec s(Fn::type);
    if (*Fn::param) s.set_float(Fn::param, m_param);
    if (*Fn::param2) s.set_float(Fn::param2, m_param2);
    return s;
  }
  int arity() const override { return 1; }
  bool tangent_reads_output_grad() const override { return Fn::curvature(m_param, m_param2); }
  bool derivatives_read_input(int) const override { return !kFromOutput; }
  bool tangent_reads_input_tangent(int) const override { return Fn::curvature(m_param, m_param2); }
  bool derivatives_read_output() const override { return kFromOutput; }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const T* x = c.in[0].data;
    const std::int64_t n = out.size();
    const double p = m_param, q = m_param2;
    if constexpr (Saved<Fn>::kSaves) {
      if (c.state) {
        constexpr int K = Saved<Fn>::kCount;
        auto& st = c.state->saved;
        st.resize(K);
        T* e[K];
        for (int k = 0; k < K; ++k) {
          st[k].resize(c.in[0].shape);
          e[k] = st[k].data();
        }
        if constexpr (kBulk<Fn, T>) {
          gelu_bulk(x, n, out.data, e[0], e[1]);
          return;
        }
        for (std::int64_t i = 0; i < n; ++i) {
          T v[K];
          out.data[i] = Saved<Fn>::fwd(x[i], v);
          for (int k = 0; k < K; ++k) e[k][i] = v[k];
        }
        return;
      }
    }
    if constexpr (kBulk<Fn, T>) {
      gelu_bulk(x, n, out.data, nullptr, nullptr);
      return;
    }
    for (std::int64_t i = 0; i < n; ++i) out.data[i] = Fn::f(x[i], p, q);
  }
  // The values forward saved for x (none, e.g. a state from elsewhere: false).
  template <class T>
  static bool saved(const OpCtx<T>& c, std::int64_t n, SavedArrays<Fn, T>& s) {
    (void)c, (void)n, (void)s;
    if constexpr (Saved<Fn>::kSaves) {
      constexpr int K = Saved<Fn>::kCount;
      if (!c.state || c.state->saved.size() != K) return false;
      for (int k = 0; k < K; ++k) {
        if (c.state->saved[k].size() != n) return false;
        s.a[k] = c.state->saved[k].data();
      }
      return true;
    }
    return false;
  }
  // saved(), or for a row computed in bulk (kBulk) without saved values, the values forward would
  // have saved, computed now into `tmp`: every path then reads f' and f'' the same way.
  template <class T>
  static bool values(const OpCtx<T>& c, std::int64_t n, SavedArrays<Fn, T>& s,
                     Buffer<T> (&tmp)[Saved<Fn>::kCount]) {
    if (saved(c, n, s)) return true;
    if constexpr (kBulk<Fn, T>) {
      tmp[0].resize(n);
      tmp[1].resize(n);
      gelu_bulk(c.in[0].data, n, nullptr, tmp[0].data(), tmp[1].data());
      s.a[0] = tmp[0].data();
      s.a[1] = tmp[1].data();
      return true;
    }
    (void)tmp;
    return false;
  }
  template <class T>
  void bwd(OpCtx<T>& c) const {
    if (!c.gin[0].data) return;
    const T* x = arg(c);
    const T* g = c.gout.data;
    T* gx = c.gin[0].data;
    const std::int64_t n = c.in[0].size();
    const double p = m_param, q = m_param2;
    if constexpr (Saved<Fn>::kSaves) {
      Buffer<T> tmp[Saved<Fn>::kCount];
      if (SavedArrays<Fn, T> s; values(c, n, s, tmp)) {
        for (std::int64_t i = 0; i < n; ++i) {
          T e[Saved<Fn>::kCount];
          s.at(i, e);
          gx[i] = g[i] * Saved<Fn>::df(x[i], e);
        }
        return;
      }
    }
    for (std::int64_t i = 0; i < n; ++i) gx[i] = g[i] * Fn::df(x[i], p, q);
  }
  template <class T>
  void tan(OpCtx<T>& c) const {
    const std::int64_t n = c.in[0].size();
    if (!c.tin[0].data) {
      c.tout.set_zero();
      return;
    }
    if constexpr (!Saved<Fn>::kSaves) {
      if (c.k == 1) {  // one pass, no f' array: the same products d[i] * tx[i] as below
        fused_derivative_product(arg(c), n, c.tin[0].data, c.tout.data);
        return;
      }
    }
    SavedArrays<Fn, T> s;
    Buffer<T> tmp[Saved<Fn>::kCount];
    [[maybe_unused]] const bool has = values(c, n, s, tmp);
    if constexpr (Saved<Fn>::kSaves) {
      if (has) {  // f' read from the saved values per element: no f' array written and read back
        const T* x = c.in[0].data;
        for (std::int64_t j = 0; j < c.k; ++j) {
          const T* tx = c.tin[0].data + j * n;
          T* ty = c.tout.data + j * n;
          for (std::int64_t i = 0; i < n; ++i) {
            T e[Saved<Fn>::kCount];
            s.at(i, e);
            ty[i] = Saved<Fn>::df(x[i], e) * tx[i];
          }
        }
        return;
      }
    }
    Buffer<T> d(n);  // uninitialized: a zeroed vector cost a memset per activation and call
    derivative(arg(c), n, d.data());
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
    const T* x = arg(c);
    const double p = m_param, q = m_param2;
    const bool so = c.second_order && c.tin[0].data && Fn::curvature(p, q);
    if constexpr (!Saved<Fn>::kSaves) {
      if (c.k == 1 && !so) {  // as in tan: r[i] = f'(x[i]) * tg[i] in one pass
        fused_derivative_product(x, n, c.tgout.data, c.tgin[0].data);
        return;
      }
    }
    SavedArrays<Fn, T> s;
    Buffer<T> tmp[Saved<Fn>::kCount];
    [[maybe_unused]] const bool has = values(c, n, s, tmp);
    if constexpr (Saved<Fn>::kSaves) {
      if (has) {  // f' and g f'' from the saved values per element, in the order of the arrays below
        const T* g = c.gout.data;
        for (std::int64_t j = 0; j < c.k; ++j) {
          const T* tg = c.tgout.data + j * n;
          const T* tx = so ? c.tin[0].data + j * n : nullptr;
          T* r = c.tgin[0].data + j * n;
          if (so)
            for (std::int64_t i = 0; i < n; ++i) {
              T e[Saved<Fn>::kCount];
              s.at(i, e);
              const T hi = g[i] * Saved<Fn>::d2f(x[i], e);
              r[i] = Saved<Fn>::df(x[i], e) * tg[i] + hi * tx[i];
            }
          else
            for (std::int64_t i = 0; i < n; ++i) {
              T e[Saved<Fn>::kCount];
              s.at(i, e);
              r[i] = Saved<Fn>::df(x[i], e) * tg[i];
            }
        }
        return;
      }
    }
    // f' (and g f'') from x alone: no saved values.
    Buffer<T> d(n), h;  // uninitialized (both are written before they are read)
    if (so) {
      h.resize(n);
      for (std::int64_t i = 0; i < n; ++i) {
        T d2;
        Derivatives<Fn>::eval(x[i], p, q, d[i], d2);
        h[i] = c.gout.data[i] * d2;
      }
    } else {
      derivative(x, n, d.data());
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
  // Relu's derivative kernels read its output y instead of x: y > 0 exactly where x > 0 (x = NaN or
  // -0 give y = 0), so f'(y) = f'(x) and f'' = 0, bit for bit. The executor can then free x, a
  // convolution's or residual Add's output, after the forward pass (Op::derivatives_read_input).
  // Every other row reads x.
  static constexpr bool kFromOutput = std::is_same_v<Fn, ReluFn>;
  template <class T>
  static const T* arg(const OpCtx<T>& c) {
    return kFromOutput ? c.out.data : c.in[0].data;
  }

  // d[i] = f'(x[i]) from x alone (the paths with saved values read them where they use them).
  template <class T>
  void derivative(const T* x, std::int64_t n, T* d) const {
    const double p = m_param, q = m_param2;
    for (std::int64_t i = 0; i < n; ++i) d[i] = Fn::df(x[i], p, q);
  }

  // r[i] = f'(x[i]) * t[i] for ops that save nothing (f' from x alone): the k = 1 tangent kernels
  // without the f' array the general path writes and reads back (ReLU's tangents on ResNets).
  template <class T>
  void fused_derivative_product(const T* x, std::int64_t n, const T* t, T* r) const {
    const double p = m_param, q = m_param2;
    for (std::int64_t i = 0; i < n; ++i) r[i] = Fn::df(x[i], p, q) * t[i];
  }

  double m_param, m_param2;
};

}  // namespace

OpPtr make_unary(UnaryKind kind, double param, double param2) {
  switch (kind) {
#define CURV_UNARY_CASE(Name, ...) \
  case UnaryKind::Name:            \
    return std::make_shared<UnaryOp<Name##Fn>>(param, param2);
    CURV_UNARY_OPS(CURV_UNARY_CASE)
#undef CURV_UNARY_CASE
  }
  throw std::invalid_argument("make_unary: unknown kind");
}

}  // namespace curv
