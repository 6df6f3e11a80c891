#include "curvature/kfac.h"

#include <tbb/parallel_for.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "src/core/memory.h"

namespace curv {

const char* kfac_type_name(KfacType t) {
  switch (t) {
    case KfacType::Exact: return "exact";
    case KfacType::MonteCarlo: return "mc";
    case KfacType::Empirical: return "empirical";
  }
  return "?";
}

KfacType parse_kfac_type(const std::string& s) {
  if (s == "exact") return KfacType::Exact;
  if (s == "mc") return KfacType::MonteCarlo;
  if (s == "empirical") return KfacType::Empirical;
  throw std::invalid_argument("unknown K-FAC type '" + s + "' (expected exact, mc or empirical)");
}

namespace {

// Sums of a a^T and g g^T per layer over the micro-batches of one run.
class FactorSums final : public LayerSink {
 public:
  explicit FactorSums(const std::vector<LinearLayer>& layers) {
    Eigen::Index widest = 0;
    for (const auto& l : layers) {
      m_A.push_back(Eigen::MatrixXd::Zero(l.in_ext(), l.in_ext()));
      m_B.push_back(Eigen::MatrixXd::Zero(l.out, l.out));
      m_bytes += std::size_t(l.in_ext() * l.in_ext() + l.out * l.out) * sizeof(double);
      widest = std::max<Eigen::Index>(widest, std::max(l.in_ext(), l.out));
    }
    internal::track_alloc(m_bytes);  // the engine's memory accounting (memory.h) sees the sums
    m_chunk_bound = std::size_t(widest * widest) * sizeof(float);
  }
  ~FactorSums() override { internal::track_free(m_bytes + m_chunk_bytes); }
  FactorSums(const FactorSums&) = delete;
  FactorSums& operator=(const FactorSums&) = delete;
  std::size_t bytes() const override { return m_bytes + m_chunk_bound; }  // gram()'s chunk: float32 only
  void reset() override {
    for (auto& a : m_A) a.setZero();
    for (auto& b : m_B) b.setZero();
  }
  // Lower triangles only (symmetric rank-k updates, half the flops of a GEMM); full() mirrors them.
  void add(const LayerIO& io) override {
    if (io.input.size()) m_A[io.layer].selfadjointView<Eigen::Lower>().rankUpdate(io.input.transpose());
    for (const auto& g : io.output_grads) m_B[io.layer].selfadjointView<Eigen::Lower>().rankUpdate(g.transpose());
    if (io.input_f.size()) gram(io.input_f, m_A[io.layer]);
    for (const auto& g : io.output_grads_f) gram(g, m_B[io.layer]);
  }
  bool wants_float() const override { return true; }
  std::vector<Eigen::MatrixXd> m_A, m_B;

 private:
  // Float32 model: S += X^T X (lower) by float32 rank-k updates over kRows rows at a time (twice
  // the speed of float64 and no converted copy of the im2col), each chunk summed into S in float64.
  static constexpr Eigen::Index kRows = 4096;
  void gram(const Eigen::MatrixXf& X, Eigen::MatrixXd& S) {
    m_chunk.resize(X.cols(), X.cols());
    const std::size_t b = std::size_t(m_chunk.size()) * sizeof(float);
    if (b > m_chunk_bytes) {
      internal::track_alloc(b - m_chunk_bytes);
      m_chunk_bytes = b;
    }
    for (Eigen::Index r = 0; r < X.rows(); r += kRows) {
      m_chunk.triangularView<Eigen::Lower>().setZero();
      m_chunk.selfadjointView<Eigen::Lower>().rankUpdate(X.middleRows(r, std::min(kRows, X.rows() - r)).transpose());
      S.triangularView<Eigen::Lower>() += m_chunk.cast<double>();
    }
  }
  Eigen::MatrixXf m_chunk;
  std::size_t m_bytes = 0, m_chunk_bound = 0, m_chunk_bytes = 0;
};

void symmetric_eigen(const Eigen::MatrixXd& M, Eigen::VectorXd& values, Eigen::MatrixXd& vectors) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M);
  if (es.info() != Eigen::Success) throw std::runtime_error("K-FAC: eigendecomposition of a factor failed");
  values = es.eigenvalues();
  vectors = es.eigenvectors();
}

}  // namespace

Kfac::Kfac(Objective& objective, const KfacOptions& options) : m_model(&objective.model()) {
  if (options.type == KfacType::MonteCarlo && options.mc_samples < 1)
    throw std::invalid_argument("K-FAC: mc_samples must be >= 1, got " + std::to_string(options.mc_samples));
  for (const auto& n : m_model->nodes())
    if (n.op->mixes_batch())
      throw std::invalid_argument("K-FAC needs samples that do not interact: node '" + n.name +
                                  "' mixes the batch (BatchNorm with batch statistics; use inference mode)");
  LinearLayers found = find_linear_layers(*m_model);
  m_unsupported = std::move(found.unsupported);
  if (found.layers.empty())
    throw std::invalid_argument("K-FAC: the model has no supported layer (Linear/Gemm, MatMul with a weight, Conv)");
  const auto& layers = found.layers;
  std::vector<Eigen::MatrixXd> A, B;
  for (const auto& l : layers) {
    A.push_back(Eigen::MatrixXd::Zero(l.in_ext(), l.in_ext()));
    B.push_back(Eigen::MatrixXd::Zero(l.out, l.out));
  }
  const OutputSeeds seeds = options.type == KfacType::Exact        ? OutputSeeds::LossHessianRoot
                            : options.type == KfacType::MonteCarlo ? OutputSeeds::Sampled
                                                                   : OutputSeeds::Gradient;
  objective.layer_io(
      seeds, options.mc_samples, options.seed, [&] { return std::make_unique<FactorSums>(layers); },
      [&](LayerSink& s) {  // runs in order: a deterministic sum
        auto& f = static_cast<FactorSums&>(s);
        for (size_t l = 0; l < layers.size(); ++l) {
          A[l] += f.m_A[l];
          B[l] += f.m_B[l];
        }
      });
  const double N = double(objective.num_samples());
  m_layers.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    KfacFactors& f = m_layers[l];
    f.layer = layers[l];
    f.A = Eigen::MatrixXd(A[l].selfadjointView<Eigen::Lower>()) / (N * double(layers[l].positions));
    f.B = Eigen::MatrixXd(B[l].selfadjointView<Eigen::Lower>()) / N;
  }
  // The 2 L eigendecompositions are independent (each sequential, so the same for any thread
  // count): run them on oneTBB, the largest first.
  if (options.decompose) {
    std::vector<std::pair<Eigen::Index, std::size_t>> jobs;  // (size, 2 l + which)
    for (size_t l = 0; l < layers.size(); ++l) {
      jobs.push_back({m_layers[l].A.rows(), 2 * l});
      jobs.push_back({m_layers[l].B.rows(), 2 * l + 1});
    }
    std::sort(jobs.begin(), jobs.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    tbb::parallel_for(std::size_t(0), jobs.size(), std::size_t(1), [&](std::size_t j) {
      KfacFactors& f = m_layers[jobs[j].second / 2];
      if (jobs[j].second % 2 == 0) symmetric_eigen(f.A, f.alpha, f.QA);
      else symmetric_eigen(f.B, f.beta, f.QB);
    });
  }
}

void Kfac::set_factors(std::size_t l, const Matrix& A, const Matrix& B, bool decompose) {
  if (l >= m_layers.size()) throw std::invalid_argument("K-FAC: layer " + std::to_string(l) + " out of range");
  KfacFactors& f = m_layers[l];
  if (A.rows() != f.A.rows() || A.cols() != f.A.cols() || B.rows() != f.B.rows() || B.cols() != f.B.cols())
    throw std::invalid_argument("K-FAC: layer '" + f.layer.name + "' factors of the wrong shape");
  f.A = A;
  f.B = B;
  if (decompose) {
    symmetric_eigen(f.A, f.alpha, f.QA);
    symmetric_eigen(f.B, f.beta, f.QB);
  }
}

int Kfac::find_layer(const std::string& name) const {
  for (size_t l = 0; l < m_layers.size(); ++l)
    if (m_layers[l].layer.name == name) return static_cast<int>(l);
  return -1;
}

void Kfac::check(std::size_t l, const Matrix& V) const {
  if (l >= m_layers.size())
    throw std::invalid_argument("K-FAC: layer " + std::to_string(l) + " out of range (" +
                                std::to_string(m_layers.size()) + " layers)");
  if (V.rows() != m_layers[l].layer.size)
    throw std::invalid_argument("K-FAC: layer '" + m_layers[l].layer.name + "' vectors have " +
                                std::to_string(m_layers[l].layer.size) + " rows, got " + std::to_string(V.rows()));
}

namespace {

// Y_j = vec(f(W~_j)) for every column j of V, through the layer's [out, in_ext] view.
template <class F>
void per_column(const Model& m, const LinearLayer& l, const Eigen::MatrixXd& V, Eigen::MatrixXd& Y, F&& f) {
  Y.resize(V.rows(), V.cols());
  for (Eigen::Index j = 0; j < V.cols(); ++j) {
    const Eigen::MatrixXd W = layer_matrix(m, l, V.col(j).data());
    layer_vector(m, l, f(W), Y.col(j).data());
  }
}

}  // namespace

void Kfac::multiply(std::size_t l, const Matrix& V, Matrix& Y) const {
  check(l, V);
  const KfacFactors& f = m_layers[l];
  per_column(*m_model, f.layer, V, Y, [&](const Matrix& W) -> Matrix { return f.B * W * f.A; });
}

void Kfac::inverse(std::size_t l, double damping, KfacDamping mode, const Matrix& V, Matrix& Y) const {
  check(l, V);
  if (!(damping > 0) || !std::isfinite(damping))
    throw std::invalid_argument("K-FAC: the inverse needs damping > 0, got " + std::to_string(damping));
  const KfacFactors& f = m_layers[l];
  if (f.alpha.size() != f.A.rows())
    throw std::logic_error("K-FAC: layer '" + f.layer.name + "' has no eigendecomposition (decompose = false)");
  // In the eigenbases: W' = Q_B^T W Q_A, divided elementwise by D(i, j), back by Q_B W' Q_A^T.
  Matrix D(f.beta.size(), f.alpha.size());
  if (mode == KfacDamping::Exact) {
    D = f.beta * f.alpha.transpose();
    D.array() += damping;
  } else {
    const double ta = f.A.trace() / double(f.A.rows()), tb = f.B.trace() / double(f.B.rows());
    const double pi = ta > 0 && tb > 0 ? std::sqrt(ta / tb) : 1.0;
    const double s = std::sqrt(damping);
    D = (f.beta.array() + s / pi).matrix() * (f.alpha.array() + pi * s).matrix().transpose();
  }
  per_column(*m_model, f.layer, V, Y, [&](const Matrix& W) -> Matrix {
    Matrix Wp = f.QB.transpose() * W * f.QA;
    Wp.array() /= D.array();
    return f.QB * Wp * f.QA.transpose();
  });
}

Kfac::Matrix Kfac::dense(std::size_t l) const {
  const Index n = m_layers.at(l).layer.size;
  Matrix Y;
  multiply(l, Matrix::Identity(n, n), Y);
  return Y;
}

Kfac::Vector Kfac::eigenvalues(std::size_t l) const {
  const KfacFactors& f = m_layers.at(l);
  Vector ev(f.alpha.size() * f.beta.size());
  for (Index i = 0; i < f.alpha.size(); ++i)
    for (Index j = 0; j < f.beta.size(); ++j) ev[i * f.beta.size() + j] = f.alpha[i] * f.beta[j];
  std::sort(ev.data(), ev.data() + ev.size(), std::greater<double>());
  return ev;
}

}  // namespace curv
