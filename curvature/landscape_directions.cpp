#include "curvature/landscape_directions.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "curvature/internal/random.h"
#include "curvature/spectra_reader.h"

namespace curv {

namespace {

bool normalization_param(const Model& m, int param) {
  const int value = m.params().at(param).value;
  for (const auto& n : m.nodes()) {
    const std::string t = n.op->type();
    if (t != "BatchNormalization" && t != "LayerNormalization") continue;
    for (int in : n.inputs)
      if (in == value) return true;
  }
  return false;
}

}  // namespace

void parse_ignore(const std::string& spec, DirectionOptions& o) {
  o.ignore_bias = o.ignore_bn = false;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "bias") {
      o.ignore_bias = true;
    } else if (item == "bn") {
      o.ignore_bn = true;
    } else if (item == "biasbn") {
      o.ignore_bias = o.ignore_bn = true;
    } else if (!item.empty()) {
      throw std::invalid_argument("ignore: unknown class '" + item + "' in '" + spec + "' (expected bias, bn or bias,bn)");
    }
  }
}

bool ignored_param(const Model& m, int param, const DirectionOptions& o) {
  if (m.params().at(param).shape.size() >= 2) return false;
  return normalization_param(m, param) ? o.ignore_bn : o.ignore_bias;
}

void normalize_direction(const Model& m, const std::vector<double>& w, const DirectionOptions& o, Eigen::VectorXd& d) {
  if (d.size() != m.num_params() || static_cast<std::int64_t>(w.size()) != m.num_params())
    throw std::invalid_argument("direction of length " + std::to_string(d.size()) + " for a model of " +
                                std::to_string(m.num_params()) + " parameters");
  for (int p = 0; p < static_cast<int>(m.params().size()); ++p) {
    const ParamInfo& info = m.params()[p];
    double* dp = d.data() + info.offset;
    const double* wp = w.data() + info.offset;
    if (ignored_param(m, p, o)) {
      for (std::int64_t j = 0; j < info.size; ++j) dp[j] = 0.0;
      continue;
    }
    if (!o.filter_norm) continue;
    if (info.shape.size() <= 1) {
      for (std::int64_t j = 0; j < info.size; ++j) dp[j] = wp[j];
      continue;
    }
    // Filter i: the contiguous slice i of dimension 0 (row-major storage).
    const std::int64_t filters = info.shape[0];
    const std::int64_t per = filters > 0 ? info.size / filters : 0;
    for (std::int64_t i = 0; i < filters; ++i) {
      double dn = 0.0, wn = 0.0;
      for (std::int64_t j = 0; j < per; ++j) {
        dn += dp[i * per + j] * dp[i * per + j];
        wn += wp[i * per + j] * wp[i * per + j];
      }
      const double scale = std::sqrt(wn) / (std::sqrt(dn) + 1e-10);
      for (std::int64_t j = 0; j < per; ++j) dp[i * per + j] *= scale;
    }
  }
}

Eigen::VectorXd random_direction(const Model& m, const std::vector<double>& w, const DirectionOptions& o,
                                 std::uint64_t seed) {
  Eigen::MatrixXd d(m.num_params(), 1);
  internal::RandomStream(seed).gaussian(d);
  Eigen::VectorXd v = d.col(0);
  normalize_direction(m, w, o, v);
  return v;
}

LandscapeDirections read_directions(const std::string& file, const std::string& group, bool two_d,
                                    std::int64_t params) {
  SpectraReader r(file);
  const auto has = [&](const std::string& g) {
    return r.exists(g + "/xdirection") || r.exists(g + "/eigen/vectors");
  };
  std::string g = group.empty() ? "" : "/" + group;
  if (group.empty() && !has("")) {
    for (const auto& child : r.children("/"))
      if (has("/" + child)) {
        g = "/" + child;
        break;
      }
  }
  if (!has(g))
    throw std::runtime_error(file + ": no directions (xdirection, or eigen/vectors) in " + (g.empty() ? "/" : g));
  LandscapeDirections d;
  const auto column = [&](const StoredArray& a, std::uint64_t j, const std::string& what) {
    const std::uint64_t rows = a.shape.empty() ? 0 : a.shape[0];
    const std::uint64_t cols = a.shape.size() == 2 ? a.shape[1] : 1;
    if (a.shape.empty() || a.shape.size() > 2 || static_cast<std::int64_t>(rows) != params || j >= cols)
      throw std::runtime_error(file + ": " + what + " does not hold a direction of the model's " +
                               std::to_string(params) + " parameters");
    Eigen::VectorXd v(params);
    for (std::int64_t i = 0; i < params; ++i) v(i) = a.data[i * cols + j];
    return v;
  };
  if (r.exists(g + "/xdirection")) {
    d.x = column(r.read(g + "/xdirection"), 0, g + "/xdirection");
    if (two_d) {
      if (!r.exists(g + "/ydirection")) throw std::runtime_error(file + ": " + g + "/ydirection is missing (2-D grid)");
      d.y = column(r.read(g + "/ydirection"), 0, g + "/ydirection");
    }
    d.source = file + ":" + g + "/xdirection";
  } else {
    const StoredArray v = r.read(g + "/eigen/vectors");
    d.x = column(v, 0, g + "/eigen/vectors");
    if (two_d) d.y = column(v, 1, g + "/eigen/vectors (2 columns for a 2-D grid)");
    d.source = file + ":" + g + "/eigen/vectors";
  }
  return d;
}

}  // namespace curv
