#pragma once
#include <limits>

/// \file elementwise_table.h
/// The elementwise ops, one row each. A row is all a new op needs: it generates the enum entry
/// (UnaryKind / BinaryKind in ops.h), the kernels, the type name, the spec, the registry entry
/// (op_registry.h) and the ONNX import and export of the op.
///
/// Unary ops y = f(x), with the four kernels (unary_ops.cpp)
///   y = f(x),  y' = f'(x) x',  g_x = f'(x) g_y,  g_x' = f'(x) g_y' + f''(x) g_y x'.
/// Columns: X(Type, "p", p default, "q", q default, curvature, f, f', f'') where
///   - Type is the ONNX op type;
///   - "p" and "q" name the op's scalar parameters p and q in specs and ONNX attributes ("": none),
///     each with its default (std::nullopt: required);
///   - curvature is false where f'' = 0 everywhere (the VJP tangent then skips its second-order term);
///   - f, f', f'' are expressions in x (of type T, float or double), p and q (double); helpers such
///     as sigmoid() are defined above the kernels in unary_ops.cpp.
/// At kinks f' takes the value PyTorch's autograd gives (Relu, Clip: the side named in the helper;
/// Abs: sgn(0) = 0, as torch.abs).
///
/// Booleans (masks) are tensors of 0 and 1 in the model's precision; an operand counts as true
/// where it is nonzero. Not, Equal, Less, Greater and And produce them and have zero derivative;
/// Where (where.cpp) reads them.
// ONNX's defaults: Selu's alpha and gamma (float32 values), Clip's absent bounds (no bound).
inline constexpr double kSeluAlpha = 1.67326319217681884765625;
inline constexpr double kSeluGamma = 1.05070102214813232421875;
inline constexpr double kClipNone = std::numeric_limits<double>::max();

// clang-format off
#define CURV_UNARY_OPS(X)                                                                                              \
X(Relu,        "",         0.0,          "",      0.0,        false,    x > T(0) ? x : T(0),     x > T(0) ? T(1) : T(0), T(0))               \
X(LeakyRelu,   "alpha",    0.01,         "",      0.0,        false,    x > T(0) ? x : T(p) * x, x > T(0) ? T(1) : T(p), T(0))               \
X(Sigmoid,     "",         0.0,          "",      0.0,        true,     sigmoid(x),              dsigmoid(x),            d2sigmoid(x))       \
X(Tanh,        "",         0.0,          "",      0.0,        true,     std::tanh(x),            dtanh(x),               d2tanh(x))          \
X(Erf,         "",         0.0,          "",      0.0,        true,     std::erf(x),             derf(x),                d2erf(x))           \
X(Gelu,        "",         0.0,          "",      0.0,        true,     gelu(x),                 dgelu(x),               d2gelu(x))          \
X(GeluTanh,    "",         0.0,          "",      0.0,        true,     gelu_tanh(x),            dgelu_tanh(x),          d2gelu_tanh(x))     \
X(Sqrt,        "",         0.0,          "",      0.0,        true,     std::sqrt(x),            T(0.5) / std::sqrt(x),  d2sqrt(x))          \
X(Pow,         "exponent", std::nullopt, "",      0.0,        p != 1.0, pow_f(x, p),             pow_df(x, p),           pow_d2f(x, p))      \
X(Exp,         "",         0.0,          "",      0.0,        true,     std::exp(x),             std::exp(x),            std::exp(x))        \
X(Log,         "",         0.0,          "",      0.0,        true,     std::log(x),             T(1) / x,               T(-1) / (x * x))    \
X(Neg,         "",         0.0,          "",      0.0,        false,    -x,                      T(-1),                  T(0))               \
X(Reciprocal,  "",         0.0,          "",      0.0,        true,     T(1) / x,                T(-1) / (x * x),        T(2) / (x * x * x)) \
X(Identity,    "",         0.0,          "",      0.0,        false,    x,                       T(1),                   T(0))               \
X(Softplus,    "",         0.0,          "",      0.0,        true,     softplus(x),             sigmoid(x),             dsigmoid(x))        \
X(HardSigmoid, "alpha",    0.2,          "beta",  0.5,        false,    hsig(x, p, q),           dhsig(x, p, q),         T(0))               \
X(HardSwish,   "",         0.0,          "",      0.0,        true,     hswish(x),               dhswish(x),             d2hswish(x))        \
X(Elu,         "alpha",    1.0,          "",      0.0,        p != 0.0, elu(x, p),               delu(x, p),             d2elu(x, p))        \
X(Selu,        "alpha",    kSeluAlpha,   "gamma", kSeluGamma, p != 0.0, T(q) * elu(x, p),        T(q) * delu(x, p),      T(q) * d2elu(x, p)) \
X(Clip,        "min",      -kClipNone,   "max",   kClipNone,  false,    clip(x, p, q),           dclip(x, p, q),         T(0))               \
X(Abs,         "",         0.0,          "",      0.0,        false,    std::abs(x),             sgn(x),                 T(0))               \
X(Not,         "",         0.0,          "",      0.0,        false,    x == T(0) ? T(1) : T(0), T(0),                   T(0))
// clang-format on

/// Binary ops y = a (op) b with numpy broadcasting (binary_ops.cpp holds their kernels).
/// PRelu: y = a > 0 ? a : b a, with the slope b broadcast to a's shape (ONNX: unidirectional).
/// Max, Min: elementwise, ties split the gradient evenly (0.5 each), as torch.maximum/minimum.
/// Equal, Less, Greater: 1 where a == b, a < b, a > b, else 0; And: 1 where a != 0 and b != 0.
/// The four give booleans as 0 / 1 and have zero derivative everywhere.
#define CURV_BINARY_OPS(X) X(Add) X(Sub) X(Mul) X(Div) X(PRelu) X(Max) X(Min) X(Equal) X(Less) X(Greater) X(And)
