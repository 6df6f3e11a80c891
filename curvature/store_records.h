#pragma once
/// \file store_records.h
/// Plain result records that `SpectraStore` writes (see spectra_store.h / docs/hdf5-schema.md),
/// and converters from the estimators. Records own copies of their data; move large ones in.
#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace curv {

class EigenSolver;
class PowerIteration;
class ExactSpectrum;
class HutchinsonTrace;
class HutchPlusPlus;
class HutchinsonDiagonal;
class SlqDensity;

/// An HDF5 attribute: UTF-8 string, float64 or int64.
using AttributeValue = std::variant<std::string, double, std::int64_t>;
/// Attributes by name (written in name order).
using AttributeMap = std::map<std::string, AttributeValue>;

/// eigen/: top pairs descending, bottom pairs ascending. Empty members are not written.
struct EigenRecord {
  Eigen::VectorXd values;            // [k] top, descending
  Eigen::VectorXd residuals;         // [k] ||A v - lambda v||
  Eigen::MatrixXd vectors;           // [P x k] optional
  Eigen::VectorXd bottom_values;     // [kb] bottom, ascending
  Eigen::VectorXd bottom_residuals;  // [kb]
  Eigen::MatrixXd bottom_vectors;    // [P x kb] optional
  /// Monte Carlo Fisher only (fisher_sampling.h): label-sampling standard errors of the values,
  /// and the eigenvectors' Rayleigh quotients on an independent label draw with theirs.
  Eigen::VectorXd values_stderr, heldout_values, heldout_stderr;                      // [k] optional
  Eigen::VectorXd bottom_values_stderr, bottom_heldout_values, bottom_heldout_stderr;  // [kb] optional
  AttributeMap attributes;           // method, products, tol, ...
};

/// trace/: estimate with standard error and (optionally) per-probe samples.
struct TraceRecord {
  double estimate = 0.0;
  double std_error = 0.0;
  std::int64_t probes = 0;       // products spent
  std::vector<double> samples;   // optional per-probe samples
  AttributeMap attributes;
};

/// diag/: per-parameter estimate and standard error.
struct DiagRecord {
  Eigen::VectorXd estimate;   // [P]
  Eigen::VectorXd std_error;  // [P] optional (empty for an exact diagonal)
  std::int64_t probes = 0;
  AttributeMap attributes;
};

/// density/: SLQ nodes and weights per probe, smoothed density on a grid.
struct DensityRecord {
  Eigen::MatrixXd nodes;            // [probes x M]
  Eigen::MatrixXd weights;          // [probes x M]
  std::vector<std::int64_t> steps;  // [probes] valid entries per row (optional)
  Eigen::VectorXd grid;             // [G]
  Eigen::VectorXd values;           // [G]
  AttributeMap attributes;          // sigma, ...
};

/// gradient/: the gradient g of the loss at the analyzed parameters, and how much of it lies in
/// the top eigenspace: top_overlap[j] = sum_{i <= j} (v_i . g)^2 / ||g||^2 for the top eigenvectors
/// v_0 >= v_1 >= ... (Gur-Ari et al. 2018's overlap for k = j + 1).
struct GradientRecord {
  Eigen::VectorXd values;       // [P] optional
  double norm = 0.0;            // ||g||
  Eigen::VectorXd top_overlap;  // [k] cumulative shares (empty without top eigenvectors)
  AttributeMap attributes;
};

/// kfac/: one layer's K-FAC factors K = A (x) B (kfac.h) and their eigendecompositions.
struct KfacRecord {
  Eigen::MatrixXd A, B;         // [in_ext, in_ext], [out, out]
  Eigen::VectorXd alpha, beta;  // eigenvalues, ascending
  Eigen::MatrixXd QA, QB;       // eigenvectors (columns)
  AttributeMap attributes;      // type, layer geometry, --compare results
};

/// The results for one operator: the whole model, or one parameter block.
struct StoreSection {
  std::optional<EigenRecord> eigen;
  std::optional<TraceRecord> trace;
  std::optional<DiagRecord> diag;
  std::optional<DensityRecord> density;
  std::optional<GradientRecord> gradient;
  std::optional<KfacRecord> kfac;
  AttributeMap attributes;  // on the section's group (run group for the model, block group)
};

/// One run group: attributes (model path, sha256, dataset, samples, curvature, block, seed,
/// estimator settings), the whole-model section and per-block sections (written in this order).
struct StoreRun {
  AttributeMap attributes;
  StoreSection model;
  std::vector<std::pair<std::string, StoreSection>> blocks;

  /// Appends a block section and returns it. Names are checked at commit.
  StoreSection& add_block(std::string name);
};

/// Converters: results plus the estimator's settings as attributes ("method", "products", ...).
EigenRecord eigen_record(const EigenSolver& solver, bool with_vectors = false);
EigenRecord eigen_record(const PowerIteration& solver, bool with_vectors = false);
/// k largest and kb smallest of an exact spectrum (residuals from the dense matrix).
EigenRecord eigen_record(const ExactSpectrum& exact, Eigen::Index k, Eigen::Index kb, bool with_vectors = false);
TraceRecord trace_record(const HutchinsonTrace& est);
TraceRecord trace_record(const HutchPlusPlus& est);
TraceRecord trace_record(const ExactSpectrum& exact);
DiagRecord diag_record(const HutchinsonDiagonal& est);
DiagRecord diag_record(const ExactSpectrum& exact);
DensityRecord density_record(const SlqDensity& est);
/// The gradient `g` (restricted to the operator's parameters) and its overlap with the top
/// eigenvectors of `eigen` (which must hold them, else top_overlap stays empty).
GradientRecord gradient_record(const Eigen::VectorXd& g, const EigenRecord* eigen, bool with_values);

}  // namespace curv
