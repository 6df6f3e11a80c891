#include "quant/inter_layer.h"

#include <map>
#include <stdexcept>

namespace curv::quant {

namespace {

QuantSpec spec_of(const PlanLayer& pl) {
  QuantSpec s;
  s.bits = pl.bits;
  s.scheme = pl.scheme;
  s.granularity = pl.granularity;
  s.groups = pl.granularity == Granularity::Group ? static_cast<int>(pl.groups) : 1;
  return s;
}

}  // namespace

InterLayerTerms inter_layer_terms(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                  const QuantSpec& spec, const std::vector<std::vector<int>>& bits,
                                  const ObjectiveOptions& objective) {
  if (bits.size() != layers.size())
    throw std::invalid_argument("inter_layer_terms: " + std::to_string(bits.size()) + " width lists for " +
                                std::to_string(layers.size()) + " layers");
  InterLayerTerms t;
  if (layers.empty()) return t;
  auto obj = Objective::create(m, data, objective);
  // dW_i(b) in the model's layout, per layer and width.
  std::vector<std::vector<std::vector<double>>> dw(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (int b : bits[i]) {
      QuantSpec q = spec;
      q.bits = b;
      dw[i].push_back(quantization_delta(m, layers[i], q));
    }
  for (std::size_t i = 0; i + 1 < layers.size(); ++i) {
    const std::int64_t ni = layers[i].numel, nj = layers[i + 1].numel;
    const std::size_t B = bits[i].size();
    Eigen::MatrixXd V = Eigen::MatrixXd::Zero(ni + nj, static_cast<Eigen::Index>(B)), Y;
    for (std::size_t x = 0; x < B; ++x)
      V.col(static_cast<Eigen::Index>(x)).head(ni) = Eigen::Map<const Eigen::VectorXd>(dw[i][x].data(), ni);
    obj->product(Curvature::Hessian, V, Y, {layers[i].param, layers[i + 1].param});
    t.products += static_cast<std::int64_t>(B);
    std::vector<std::vector<double>> c(B, std::vector<double>(bits[i + 1].size()));
    std::vector<double> diag(B);
    for (std::size_t x = 0; x < B; ++x) {
      const auto col = Y.col(static_cast<Eigen::Index>(x));
      diag[x] = 0.5 * col.head(ni).dot(Eigen::Map<const Eigen::VectorXd>(dw[i][x].data(), ni));
      for (std::size_t y = 0; y < bits[i + 1].size(); ++y)
        c[x][y] = col.tail(nj).dot(Eigen::Map<const Eigen::VectorXd>(dw[i + 1][y].data(), nj));
    }
    t.c.push_back(std::move(c));
    t.diag.push_back(std::move(diag));
  }
  // The last layer's diagonal terms: its own block product.
  const std::size_t l = layers.size() - 1;
  const std::int64_t n = layers[l].numel;
  Eigen::MatrixXd V(n, static_cast<Eigen::Index>(bits[l].size())), Y;
  for (std::size_t x = 0; x < bits[l].size(); ++x)
    V.col(static_cast<Eigen::Index>(x)) = Eigen::Map<const Eigen::VectorXd>(dw[l][x].data(), n);
  obj->product(Curvature::Hessian, V, Y, {layers[l].param});
  t.products += static_cast<std::int64_t>(bits[l].size());
  std::vector<double> diag(bits[l].size());
  for (std::size_t x = 0; x < bits[l].size(); ++x) diag[x] = 0.5 * Y.col(static_cast<Eigen::Index>(x)).dot(V.col(static_cast<Eigen::Index>(x)));
  t.diag.push_back(std::move(diag));
  return t;
}

double measured_omega(const Model& m, const Dataset& data, const Plan& plan, const ObjectiveOptions& objective) {
  const std::vector<ModelLayer> layers = quantizable_layers(m);
  std::map<std::string, const ModelLayer*> by_name;
  for (const ModelLayer& l : layers) by_name[l.name] = &l;
  std::vector<int> params;
  std::vector<double> dw;
  for (const PlanLayer& pl : plan.layers) {
    const auto it = by_name.find(pl.name);
    if (it == by_name.end() || it->second->numel != pl.numel)
      throw std::invalid_argument("plan layer '" + pl.name + "' is not a quantizable layer of the model with " +
                                  std::to_string(pl.numel) + " weights");
    params.push_back(it->second->param);
    const std::vector<double> d = quantization_delta(m, *it->second, spec_of(pl));
    dw.insert(dw.end(), d.begin(), d.end());
  }
  auto obj = Objective::create(m, data, objective);
  const Eigen::Map<const Eigen::VectorXd> v(dw.data(), static_cast<Eigen::Index>(dw.size()));
  Eigen::MatrixXd Y;
  obj->product(Curvature::Hessian, Eigen::MatrixXd(v), Y, params);
  return 0.5 * v.dot(Y.col(0));
}

}  // namespace curv::quant
