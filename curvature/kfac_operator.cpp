#include "curvature/kfac_operator.h"

#include <cmath>
#include <map>
#include <stdexcept>

namespace curv {

KfacOperator::KfacOperator(const Kfac& kfac, const Model& model, std::vector<int> params, Mode mode, double damping,
                           KfacDamping damping_mode)
    : m_kfac(&kfac), m_mode(mode), m_damping(damping), m_damping_mode(damping_mode) {
  if (mode == Mode::Inverse && !(damping > 0 && std::isfinite(damping)))
    throw std::invalid_argument("K-FAC inverse: damping must be > 0, got " + std::to_string(damping));
  const auto& mp = model.params();
  if (params.empty())
    for (size_t i = 0; i < mp.size(); ++i) params.push_back(static_cast<int>(i));
  std::map<int, Index> offset;  // param -> row in X
  for (int p : params) {
    if (p < 0 || p >= static_cast<int>(mp.size()))
      throw std::invalid_argument("K-FAC operator: parameter index " + std::to_string(p) + " out of range");
    offset[p] = m_rows;
    m_rows += mp[p].size;
  }
  for (const auto& u : kfac.unsupported())
    if (offset.count(u.param))
      throw std::invalid_argument("K-FAC does not cover parameter '" + mp[u.param].name + "': " + u.reason);
  for (std::size_t l = 0; l < kfac.num_layers(); ++l) {
    const LinearLayer& layer = kfac.layer(l).layer;
    Block b{l, {}};
    for (int p : layer.params)
      if (offset.count(p)) b.rows.push_back({offset[p], mp[p].size});
    if (b.rows.empty()) continue;
    if (b.rows.size() != layer.params.size())
      throw std::invalid_argument("K-FAC operator: layer '" + layer.name +
                                  "' needs its weight and bias together, only one of them is listed");
    m_blocks.push_back(std::move(b));
  }
}

void KfacOperator::apply(const Matrix& X, Matrix& Y) const {
  if (X.rows() != m_rows)
    throw std::invalid_argument("K-FAC operator: X has " + std::to_string(X.rows()) + " rows, expected " +
                                std::to_string(m_rows));
  count_products(X.cols());
  Y.resize(X.rows(), X.cols());
  Matrix V, W;
  for (const Block& b : m_blocks) {
    const Index n = m_kfac->layer(b.layer).layer.size;
    V.resize(n, X.cols());
    Index r = 0;
    for (const auto& [off, size] : b.rows) {
      V.middleRows(r, size) = X.middleRows(off, size);
      r += size;
    }
    if (m_mode == Mode::Multiply)
      m_kfac->multiply(b.layer, V, W);
    else
      m_kfac->inverse(b.layer, m_damping, m_damping_mode, V, W);
    r = 0;
    for (const auto& [off, size] : b.rows) {
      Y.middleRows(off, size) = W.middleRows(r, size);
      r += size;
    }
  }
}

}  // namespace curv
