#include "src/core/loss.h"

#include <Eigen/Core>
#include <algorithm>
// GCC 12 reports its own AVX-512 intrinsics (inlined from Eigen's double exp) as reading an
// uninitialized value: a false positive of those headers, silenced for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cmath>
#include <stdexcept>
#include <string>

namespace curv {

template <class T>
double softmax_row(const T* z, std::int64_t C, double* p) {
  double m = double(z[0]);
  for (std::int64_t c = 1; c < C; ++c) m = std::max(m, double(z[c]));
  using Chunk = Eigen::Array<double, 8, 1>;
  alignas(64) double d[8], e[8];
  for (std::int64_t c0 = 0; c0 < C; c0 += 8) {
    const int w = static_cast<int>(std::min<std::int64_t>(8, C - c0));
    for (int l = 0; l < w; ++l) d[l] = double(z[c0 + l]) - m;
    std::fill(d + w, d + 8, 0.0);
    const Eigen::Map<const Chunk, Eigen::Aligned64> D(d);
    Eigen::Map<Chunk, Eigen::Aligned64> E(e);
    E = D.exp();
    for (int l = 0; l < w; ++l) p[c0 + l] = std::isnan(d[l]) ? d[l] : e[l];  // NaN logits stay NaN
  }
  double s = 0;
  for (std::int64_t c = 0; c < C; ++c) s += p[c];
  for (std::int64_t c = 0; c < C; ++c) p[c] /= s;
  return m + std::log(s);
}

template <class T>
LossTerms<T> loss_forward(LossKind kind, ConstView<T> z, const std::int64_t* labels, const float* targets, double scale,
                          View<T> g, std::vector<double>* per_sample, View<T>* dl, std::int64_t ignore_index) {
  LossTerms<T> r;
  const std::int64_t n = z.dim(0), C = z.size() / std::max<std::int64_t>(n, 1);
  if (per_sample) per_sample->assign(n, 0.0);
  if (kind == LossKind::CrossEntropy) {
    if (z.rank() != 2) throw std::invalid_argument("cross-entropy: logits " + shape_str(z.shape) + " must be [N, classes]");
    std::vector<double> p(C);
    for (std::int64_t i = 0; i < n; ++i) {
      const T* zi = z.data + i * C;
      const std::int64_t y = labels[i];
      if (y == ignore_index) {
        for (std::int64_t c = 0; c < C; ++c) {
          g.data[i * C + c] = T(0);
          if (dl) dl->data[i * C + c] = T(0);
        }
        continue;
      }
      if (y < 0 || y >= C)
        throw std::invalid_argument("cross-entropy: label " + std::to_string(y) + " out of range for " +
                                    std::to_string(C) + " classes");
      std::int64_t am = 0;
      for (std::int64_t c = 1; c < C; ++c)
        if (zi[c] > zi[am]) am = c;
      const double lse = softmax_row(zi, C, p.data());
      const double li = lse - double(zi[y]);
      r.sum += scale * li;
      r.correct += (am == y);
      if (per_sample) (*per_sample)[i] = li;
      for (std::int64_t c = 0; c < C; ++c) {
        const double d = p[c] - (c == y ? 1.0 : 0.0);
        g.data[i * C + c] = T(scale * d);
        if (dl) dl->data[i * C + c] = T(d);
      }
    }
  } else {
    const double s2 = scale / double(C);
    for (std::int64_t i = 0; i < n; ++i) {
      double li = 0;
      for (std::int64_t c = 0; c < C; ++c) {
        const double d = double(z.data[i * C + c]) - double(targets[i * C + c]);
        li += d * d / double(C);
        g.data[i * C + c] = T(2 * s2 * d);
        if (dl) dl->data[i * C + c] = T(2 * d / double(C));
      }
      r.sum += scale * li;
      if (per_sample) (*per_sample)[i] = li;
    }
  }
  return r;
}

template <class T>
void loss_hessian_product(LossKind kind, ConstView<T> z, ConstView<T> tz, double scale, View<T> out,
                          const std::int64_t* labels, std::int64_t ignore_index) {
  const std::int64_t n = z.dim(0), C = z.size() / std::max<std::int64_t>(n, 1), k = tz.dim(0), nz = z.size();
  if (kind == LossKind::MeanSquaredError) {
    const T f = T(2 * scale / double(C));
    for (std::int64_t i = 0; i < k * nz; ++i) out.data[i] = f * tz.data[i];
    return;
  }
  // H = scale (diag(p) - p p^T) per sample.
  std::vector<double> p(C);
  for (std::int64_t i = 0; i < n; ++i) {
    if (labels && labels[i] == ignore_index) {
      for (std::int64_t j = 0; j < k; ++j) std::fill_n(out.data + j * nz + i * C, C, T(0));
      continue;
    }
    softmax_row(z.data + i * C, C, p.data());
    for (std::int64_t j = 0; j < k; ++j) {
      const T* t = tz.data + j * nz + i * C;
      T* o = out.data + j * nz + i * C;
      double pt = 0;
      for (std::int64_t c = 0; c < C; ++c) pt += p[c] * double(t[c]);
      for (std::int64_t c = 0; c < C; ++c) o[c] = T(scale * p[c] * (double(t[c]) - pt));
    }
  }
}

namespace {
std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

double hashed_uniform(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  const std::uint64_t h = splitmix(splitmix(splitmix(splitmix(seed) ^ a) ^ b) ^ c);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

template <class T>
void loss_sample_gradients(LossKind kind, ConstView<T> z, std::int64_t first, std::int64_t S, std::uint64_t seed,
                           double* out, const std::int64_t* labels, std::int64_t ignore_index) {
  const std::int64_t n = z.dim(0), C = z.size() / std::max<std::int64_t>(n, 1);
  std::vector<double> p(C);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t id = static_cast<std::uint64_t>(first + i);
    const T* zi = z.data + i * C;
    if (kind == LossKind::CrossEntropy && labels && labels[i] == ignore_index) {
      std::fill_n(out + i * S * C, S * C, 0.0);
    } else if (kind == LossKind::CrossEntropy) {
      softmax_row(zi, C, p.data());
      for (std::int64_t d = 0; d < S; ++d) {
        // Inverse CDF; rounding that leaves u above the last partial sum picks the last class.
        const double u = hashed_uniform(seed, id, static_cast<std::uint64_t>(d), 0);
        std::int64_t y = C - 1;
        double cum = 0;
        for (std::int64_t c = 0; c < C; ++c)
          if (u < (cum += p[c])) {
            y = c;
            break;
          }
        double* o = out + (i * S + d) * C;
        for (std::int64_t c = 0; c < C; ++c) o[c] = p[c] - (c == y ? 1.0 : 0.0);
      }
    } else {
      const double f = std::sqrt(2.0 / double(C));
      for (std::int64_t d = 0; d < S; ++d) {
        double* o = out + (i * S + d) * C;
        for (std::int64_t c = 0; c < C; ++c) {
          // Box-Muller on two hashed uniforms per component.
          const double u1 = hashed_uniform(seed, id, static_cast<std::uint64_t>(d), 2 * std::uint64_t(c) + 1);
          const double u2 = hashed_uniform(seed, id, static_cast<std::uint64_t>(d), 2 * std::uint64_t(c) + 2);
          o[c] = f * std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
        }
      }
    }
  }
}

#define CURV_INST(T)                                                                                              \
  template double softmax_row<T>(const T*, std::int64_t, double*);                                               \
  template LossTerms<T> loss_forward<T>(LossKind, ConstView<T>, const std::int64_t*, const float*, double, View<T>, \
                                        std::vector<double>*, View<T>*, std::int64_t);                            \
  template void loss_hessian_product<T>(LossKind, ConstView<T>, ConstView<T>, double, View<T>, const std::int64_t*, \
                                        std::int64_t);                                                            \
  template void loss_sample_gradients<T>(LossKind, ConstView<T>, std::int64_t, std::int64_t, std::uint64_t, double*, \
                                         const std::int64_t*, std::int64_t);
CURV_INST(float)
CURV_INST(double)
#undef CURV_INST

}  // namespace curv
