#include "quant/quantizer.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace curv::quant {

namespace {

std::string shape_string(std::span<const std::int64_t> shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

// [out, inner] view of a row-major tensor; a scalar (empty shape) is one channel of one value.
struct Layout {
  std::int64_t out = 1;
  std::int64_t inner = 1;
};

Layout check_input(std::size_t size, std::span<const std::int64_t> shape, const QuantSpec& spec) {
  check_bits(spec.bits);
  std::int64_t numel = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("shape " + shape_string(shape) + " has a negative dimension");
    numel *= d;
  }
  if (numel != static_cast<std::int64_t>(size))
    throw std::invalid_argument("shape " + shape_string(shape) + " has " + std::to_string(numel) +
                                " elements but the tensor has " + std::to_string(size));
  if (numel == 0) throw std::invalid_argument("cannot quantize an empty tensor (shape " + shape_string(shape) + ")");
  Layout l;
  l.out = shape.empty() ? 1 : shape[0];
  l.inner = numel / l.out;
  return l;
}

[[noreturn]] void throw_not_finite(std::int64_t index, double value) {
  std::ostringstream os;
  os << "weight " << index << " is not finite (" << value << ")";
  throw std::invalid_argument(os.str());
}

template <typename T>
QuantizedTensor<T> make_result(std::span<const std::int64_t> shape, const QuantSpec& spec, const Layout& l) {
  QuantizedTensor<T> r;
  r.spec = spec;
  r.shape.assign(shape.begin(), shape.end());
  r.group_begin = group_boundaries(spec, l.out);
  const std::size_t groups = r.group_begin.size() - 1;
  const std::size_t numel = static_cast<std::size_t>(l.out * l.inner);
  r.codes.resize(numel);
  r.dequantized.resize(numel);
  r.scales.resize(groups);
  r.zero_points.resize(groups);
  return r;
}

}  // namespace

void check_bits(int bits) {
  if (bits < kMinBits || bits > kMaxBits)
    throw std::invalid_argument("bits (= " + std::to_string(bits) + ") must be in " + std::to_string(kMinBits) + ".." +
                                std::to_string(kMaxBits));
}

int level_min(int bits, Scheme scheme) {
  check_bits(bits);
  return scheme == Scheme::Symmetric ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1));
}

int level_max(int bits, Scheme scheme) {
  check_bits(bits);
  return (1 << (bits - 1)) - 1;
}

std::int64_t num_groups(const QuantSpec& spec, std::int64_t out) {
  if (out < 1) throw std::invalid_argument("out (= " + std::to_string(out) + ") must be >= 1");
  switch (spec.granularity) {
    case Granularity::PerTensor:
      return 1;
    case Granularity::PerChannel:
      return out;
    case Granularity::Group:
      if (spec.groups < 1 || spec.groups > out)
        throw std::invalid_argument("groups (= " + std::to_string(spec.groups) +
                                    ") must be in 1..out (= " + std::to_string(out) + ") for group-wise quantization");
      return spec.groups;
  }
  throw std::invalid_argument("unknown granularity");
}

std::vector<std::int64_t> group_boundaries(const QuantSpec& spec, std::int64_t out) {
  const std::int64_t g = num_groups(spec, out);
  std::vector<std::int64_t> b(static_cast<std::size_t>(g + 1));
  for (std::int64_t i = 0; i <= g; ++i) b[static_cast<std::size_t>(i)] = i * out / g;  // floor(i out / G)
  return b;
}

std::int64_t scale_overhead_bits(Scheme scheme, std::int64_t groups) {
  return groups * (kScaleBits + (scheme == Scheme::Asymmetric ? kZeroPointBits : 0));
}

// ---------------------------------------------------------------------------------------------
// Scalar reference: one loop for the range, one for the codes.
template <typename T>
QuantizedTensor<T> quantize_ref(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec) {
  const Layout l = check_input(w.size(), shape, spec);
  QuantizedTensor<T> r = make_result<T>(shape, spec, l);
  const int qmin = level_min(spec.bits, spec.scheme);
  const int qmax = level_max(spec.bits, spec.scheme);
  for (std::size_t g = 0; g + 1 < r.group_begin.size(); ++g) {
    const std::int64_t begin = r.group_begin[g] * l.inner;
    const std::int64_t end = r.group_begin[g + 1] * l.inner;
    T lo = w[static_cast<std::size_t>(begin)];
    T hi = lo;
    for (std::int64_t i = begin; i < end; ++i) {
      const T x = w[static_cast<std::size_t>(i)];
      if (!std::isfinite(x)) throw_not_finite(i, static_cast<double>(x));
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    T scale;
    std::int32_t zp = 0;
    if (spec.scheme == Scheme::Symmetric) {
      const T absmax = std::max(-lo, hi);
      scale = absmax / static_cast<T>(qmax);
      if (scale == T(0)) scale = T(1);
    } else {
      lo = std::min(lo, T(0));
      hi = std::max(hi, T(0));
      scale = (hi - lo) / static_cast<T>(qmax - qmin);
      if (scale == T(0)) scale = T(1);
      const long z = static_cast<long>(qmin) - std::lrint(lo / scale);
      zp = static_cast<std::int32_t>(std::clamp<long>(z, qmin, qmax));
    }
    r.scales[g] = scale;
    r.zero_points[g] = zp;
    for (std::int64_t i = begin; i < end; ++i) {
      const std::size_t k = static_cast<std::size_t>(i);
      T q = std::nearbyint(w[k] / scale) + static_cast<T>(zp);
      q = std::clamp(q, static_cast<T>(qmin), static_cast<T>(qmax));
      r.codes[k] = static_cast<std::int8_t>(q);
      r.dequantized[k] = (q - static_cast<T>(zp)) * scale;
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Fast path: each group is one contiguous slice; Eigen vectorizes the min/max reductions and the
// elementwise rint / clamp / dequantize. Same operations in the same precision as the reference.
template <typename T>
QuantizedTensor<T> quantize(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using CodeArray = Eigen::Array<std::int8_t, Eigen::Dynamic, 1>;
  const Layout l = check_input(w.size(), shape, spec);
  QuantizedTensor<T> r = make_result<T>(shape, spec, l);
  const int qmin = level_min(spec.bits, spec.scheme);
  const int qmax = level_max(spec.bits, spec.scheme);
  const T tqmin = static_cast<T>(qmin);
  const T tqmax = static_cast<T>(qmax);
  for (std::size_t g = 0; g + 1 < r.group_begin.size(); ++g) {
    const std::int64_t begin = r.group_begin[g] * l.inner;
    const std::int64_t len = (r.group_begin[g + 1] - r.group_begin[g]) * l.inner;
    Eigen::Map<const Array> x(w.data() + begin, len);
    if (!x.allFinite()) {
      for (std::int64_t i = 0; i < len; ++i)
        if (!std::isfinite(x[i])) throw_not_finite(begin + i, static_cast<double>(x[i]));
    }
    T lo = x.minCoeff();
    T hi = x.maxCoeff();
    T scale;
    std::int32_t zp = 0;
    if (spec.scheme == Scheme::Symmetric) {
      scale = std::max(-lo, hi) / tqmax;
      if (scale == T(0)) scale = T(1);
    } else {
      lo = std::min(lo, T(0));
      hi = std::max(hi, T(0));
      scale = (hi - lo) / static_cast<T>(qmax - qmin);
      if (scale == T(0)) scale = T(1);
      const long z = static_cast<long>(qmin) - std::lrint(lo / scale);
      zp = static_cast<std::int32_t>(std::clamp<long>(z, qmin, qmax));
    }
    r.scales[g] = scale;
    r.zero_points[g] = zp;
    const T tzp = static_cast<T>(zp);
    // q is built in the dequantized buffer, converted to codes, then mapped back in place.
    Eigen::Map<Array> deq(r.dequantized.data() + begin, len);
    deq = ((x / scale).rint() + tzp).max(tqmin).min(tqmax);
    Eigen::Map<CodeArray>(r.codes.data() + begin, len) = deq.template cast<std::int8_t>();
    deq = (deq - tzp) * scale;
  }
  return r;
}

template <typename T>
double quantization_error_sq(std::span<const T> w, std::span<const std::int64_t> shape, const QuantSpec& spec) {
  const QuantizedTensor<T> q = quantize(w, shape, spec);
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const Eigen::Index n = static_cast<Eigen::Index>(w.size());
  Eigen::Map<const Array> x(w.data(), n);
  Eigen::Map<const Array> y(q.dequantized.data(), n);
  return (y.template cast<double>() - x.template cast<double>()).square().sum();
}

std::string to_string(Scheme scheme) { return scheme == Scheme::Symmetric ? "symmetric" : "asymmetric"; }

std::string to_string(Granularity granularity) {
  switch (granularity) {
    case Granularity::PerTensor:
      return "per-tensor";
    case Granularity::PerChannel:
      return "per-channel";
    case Granularity::Group:
      return "group";
  }
  return "?";
}

Scheme scheme_from_string(std::string_view s) {
  if (s == "symmetric") return Scheme::Symmetric;
  if (s == "asymmetric") return Scheme::Asymmetric;
  throw std::invalid_argument("scheme \"" + std::string(s) + "\" is not one of symmetric, asymmetric");
}

Granularity granularity_from_string(std::string_view s) {
  if (s == "per-tensor") return Granularity::PerTensor;
  if (s == "per-channel") return Granularity::PerChannel;
  if (s == "group") return Granularity::Group;
  throw std::invalid_argument("granularity \"" + std::string(s) + "\" is not one of per-tensor, per-channel, group");
}

#define CURV_QUANT_INSTANTIATE(T)                                                                                   \
  template QuantizedTensor<T> quantize<T>(std::span<const T>, std::span<const std::int64_t>, const QuantSpec&);     \
  template QuantizedTensor<T> quantize_ref<T>(std::span<const T>, std::span<const std::int64_t>, const QuantSpec&); \
  template double quantization_error_sq<T>(std::span<const T>, std::span<const std::int64_t>, const QuantSpec&);
CURV_QUANT_INSTANTIATE(float)
CURV_QUANT_INSTANTIATE(double)
#undef CURV_QUANT_INSTANTIATE

}  // namespace curv::quant
