#include "quant/act_quantizer.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

namespace curv::quant {

FakeQuantizeAttrs act_quant_params(double lo, double hi, int bits, Scheme scheme) {
  check_bits(bits);
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    throw std::invalid_argument("activation range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "] is not a finite interval");
  FakeQuantizeAttrs a;
  a.qmin = level_min(bits, scheme);
  a.qmax = level_max(bits, scheme);
  if (scheme == Scheme::Symmetric) {
    a.scale = std::max(std::abs(lo), std::abs(hi)) / static_cast<double>(a.qmax);
    if (a.scale == 0.0) a.scale = 1.0;
    a.zero_point = 0;
  } else {
    const double l = std::min(lo, 0.0), h = std::max(hi, 0.0);
    a.scale = (h - l) / static_cast<double>(a.qmax - a.qmin);
    if (a.scale == 0.0) a.scale = 1.0;
    a.zero_point = std::clamp<std::int64_t>(a.qmin - std::llrint(l / a.scale), a.qmin, a.qmax);
  }
  return a;
}

template <typename T>
void fake_quantize_ref(std::span<const T> x, const FakeQuantizeAttrs& q, std::span<T> y) {
  if (x.size() != y.size()) throw std::invalid_argument("fake_quantize: input and output sizes differ");
  const T s = static_cast<T>(q.scale), z = static_cast<T>(q.zero_point);
  const T lo = static_cast<T>(q.qmin), hi = static_cast<T>(q.qmax);
  for (std::size_t i = 0; i < x.size(); ++i) {
    T c = std::nearbyint(x[i] / s) + z;
    if (c < lo) c = lo;
    if (c > hi) c = hi;
    y[i] = (c - z) * s;
  }
}

template <typename T>
void fake_quantize(std::span<const T> x, const FakeQuantizeAttrs& q, std::span<T> y) {
  if (x.size() != y.size()) throw std::invalid_argument("fake_quantize: input and output sizes differ");
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T s = static_cast<T>(q.scale), z = static_cast<T>(q.zero_point);
  const Eigen::Index n = static_cast<Eigen::Index>(x.size());
  Eigen::Map<const Array> xa(x.data(), n);
  Eigen::Map<Array> ya(y.data(), n);
  ya = (((xa / s).rint() + z).max(static_cast<T>(q.qmin)).min(static_cast<T>(q.qmax)) - z) * s;
}

namespace {

// Calls f(layer index, values, count, samples) for every quantized layer's input of every
// micro-batch, in a fixed order.
template <class F>
void for_each_input(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers, ObjectiveOptions oo,
                    F f) {
  std::map<int, std::size_t> of_node;
  std::vector<int> nodes;
  for (std::size_t i = 0; i < layers.size(); ++i) of_node[layers[i].node] = i;
  for (const auto& [node, i] : of_node) nodes.push_back(node);  // model order, as before
  oo.cache_bytes = 0;
  auto obj = Objective::create(m, data, oo);
  obj->node_inputs(nodes, [&](const NodeInput& in) {
    f(of_node.at(in.node), in.input.data(), in.input.size(), in.input.dim(0));
  });
}

}  // namespace

std::vector<ActRange> calibrate_activations(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                            const CalibOptions& o, ObjectiveOptions objective) {
  if (o.method == CalibMethod::Percentile && !(o.percentile > 50.0 && o.percentile <= 100.0))
    throw std::invalid_argument("calibration percentile (= " + std::to_string(o.percentile) + ") must be in (50, 100]");
  if (o.max_values < 2) throw std::invalid_argument("calibration needs max_values >= 2");
  const std::size_t L = layers.size();
  std::vector<ActRange> r(L, {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), 0});
  std::vector<std::vector<double>> kept(L);
  std::vector<std::int64_t> seen(L, 0), stride(L, 1);
  for (std::size_t i = 0; i < L; ++i) {
    // Input values hold the per-sample shape, node values their shape at batch 1.
    const std::int64_t per_sample = numel(m.values()[layers[i].input].shape);
    r[i].numel = per_sample;
    const std::int64_t total = per_sample * data.size();
    stride[i] = std::max<std::int64_t>(1, (total + o.max_values - 1) / o.max_values);
  }
  for_each_input(m, data, layers, objective, [&](std::size_t i, const double* x, std::int64_t n, std::int64_t) {
    for (std::int64_t k = 0; k < n; ++k) {
      if (!std::isfinite(x[k])) throw std::runtime_error("calibration: a non-finite activation at " + layers[i].name);
      r[i].lo = std::min(r[i].lo, x[k]);
      r[i].hi = std::max(r[i].hi, x[k]);
      if (o.method == CalibMethod::Percentile && (seen[i] + k) % stride[i] == 0) kept[i].push_back(x[k]);
    }
    seen[i] += n;
  });
  for (std::size_t i = 0; i < L; ++i) {
    if (seen[i] == 0) throw std::runtime_error("calibration: no activations reached layer " + layers[i].name);
    if (o.method != CalibMethod::Percentile) continue;
    std::vector<double>& v = kept[i];
    const auto at = [&](double q) {  // value of rank floor(q (n - 1)), q in [0, 1]
      const std::size_t k = static_cast<std::size_t>(std::floor(q * static_cast<double>(v.size() - 1)));
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
      return v[k];
    };
    const double p = o.percentile / 100.0;
    r[i].hi = at(p);
    r[i].lo = at(1.0 - p);
  }
  return r;
}

std::vector<std::vector<double>> activation_errors(const Model& m, const Dataset& data,
                                                   const std::vector<ModelLayer>& layers,
                                                   const std::vector<ActRange>& ranges, std::span<const int> bits,
                                                   Scheme scheme, ObjectiveOptions objective) {
  if (ranges.size() != layers.size()) throw std::invalid_argument("activation_errors: one range per layer required");
  std::vector<std::vector<FakeQuantizeAttrs>> q(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (int b : bits) q[i].push_back(act_quant_params(ranges[i].lo, ranges[i].hi, b, scheme));
  std::vector<std::vector<double>> e(layers.size(), std::vector<double>(bits.size(), 0.0));
  std::vector<double> y;
  for_each_input(m, data, layers, objective, [&](std::size_t i, const double* x, std::int64_t n, std::int64_t) {
    y.resize(static_cast<std::size_t>(n));
    for (std::size_t b = 0; b < bits.size(); ++b) {
      fake_quantize<double>(std::span<const double>(x, n), q[i][b], y);
      double s = 0.0;
      for (std::int64_t k = 0; k < n; ++k) s += (y[k] - x[k]) * (y[k] - x[k]);
      e[i][b] += s;
    }
  });
  for (auto& row : e)
    for (double& v : row) v /= static_cast<double>(data.size());
  return e;
}

std::string to_string(CalibMethod m) { return m == CalibMethod::MinMax ? "minmax" : "percentile"; }

CalibMethod calib_method_from_string(const std::string& s) {
  if (s == "minmax") return CalibMethod::MinMax;
  if (s == "percentile") return CalibMethod::Percentile;
  throw std::invalid_argument("calibration \"" + s + "\" is not one of minmax, percentile");
}

#define CURV_ACTQ_INSTANTIATE(T)                                                                        \
  template void fake_quantize_ref<T>(std::span<const T>, const FakeQuantizeAttrs&, std::span<T>); \
  template void fake_quantize<T>(std::span<const T>, const FakeQuantizeAttrs&, std::span<T>);
CURV_ACTQ_INSTANTIATE(float)
CURV_ACTQ_INSTANTIATE(double)
#undef CURV_ACTQ_INSTANTIATE

}  // namespace curv::quant
