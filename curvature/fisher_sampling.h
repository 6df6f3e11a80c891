#pragma once
/// \file fisher_sampling.h
/// Standard errors of the Monte Carlo (sampled-label) Fisher's spectral figures that include the
/// label sampling, not only the probes.
///
/// The sampled Fisher F^ (objective.h: S labels drawn per input, keyed by a seed) is one random
/// matrix with E[F^] = F, the true Fisher. An estimator run on one draw F^ reports F^'s figures;
/// its probe standard error says nothing about how far F^ is from F. Here:
///
/// Trace, FisherSampledTrace: Hutchinson with a fresh label draw for every probe,
///     t_j = z_j^T F^_j z_j,   z_j Rademacher,   F^_j the Monte Carlo Fisher with seed s_j,
/// s_j = fresh_fisher_seed(fisher_seed, j) (distinct hashes, so the F^_j are independent). The t_j
/// are i.i.d. with E[t_j] = E[tr F^_j] = tr F, so estimate = mean t_j and
///     stderr = sample std(t) / sqrt(J)
/// cover both sources of randomness (probes and labels). The label part alone,
///     label_stderr = sqrt(sum_j sigma_j^2) / J,   sigma_j = Objective::product_stderr() of t_j
/// (the spread of z_j^T F^_j z_j over the labels for the fixed z_j), shrinks like 1/sqrt(S) with
/// the labels per input S. One product of one column per probe (draws cannot share a product).
///
/// Eigenvalues, fisher_eigen_errors: for an eigenpair (lambda, v) of one draw F^ (seed s_0),
///   values_stderr   the label-sampling standard error of v^T F^ v at the fixed v
///                   (product_stderr on the same draw). To first order in the perturbation
///                   F^ - F, lambda(F^) - lambda(F) = v^T (F^ - F) v, so this is lambda's standard
///                   error from the labels when the eigenvalue is separated from its neighbours by
///                   more than the noise; it does not include the bias below.
///   heldout_values  v^T F^' v on an independent draw F^' (seed fresh_fisher_seed(s_0, kHeldOut)),
///   heldout_stderr  its label-sampling standard error. For the top pair E[v^T F^' v | v] =
///                   v^T F v <= lambda_max(F), while E[lambda_max(F^)] >= lambda_max(F) (lambda_max
///                   is convex, Jensen): the two bracket the true Fisher's lambda_max in
///                   expectation, and their gap is the selection bias of the one draw.
/// One product with the k eigenvectors on each draw.
///
/// The objective's seed is restored afterwards. Results are bitwise identical for any thread
/// count (products are). REQUIRES: objective.fisher_samples() > 0 (a sampled Fisher).
#include <cstdint>
#include <vector>

#include "curvature/comp_info.h"
#include "curvature/store_records.h"
#include "src/core/objective.h"

namespace curv {

/// The label seed of draw j derived from `seed` (a 64-bit mix; j = 0, 1, ... never gives `seed`
/// itself except by a hash collision).
std::uint64_t fresh_fisher_seed(std::uint64_t seed, std::uint64_t j);

struct FisherSampledTraceOptions {
  /// Probes, each with its own label draw (one product each).
  std::int64_t probes = 30;
  /// Seed of the Rademacher probes (the label seeds come from the objective's fisher_seed()).
  std::uint64_t seed = 0;
};

class FisherSampledTrace {
 public:
  /// `params`: the diagonal block of these parameter tensors (empty: the whole model). Non-owning.
  FisherSampledTrace(Objective& objective, std::vector<int> params, FisherSampledTraceOptions options = {});

  /// Returns the probes used. info(): Successful, or NumericalIssue on NaN/Inf.
  std::int64_t compute();
  CompInfo info() const { return m_info; }
  double estimate() const { return m_estimate; }
  /// Sample std of the t_j / sqrt(J): probes and labels together. NaN with one probe.
  double std_error() const { return m_std_error; }
  /// The label-sampling part: sqrt(sum_j sigma_j^2) / J.
  double label_std_error() const { return m_label_std_error; }
  const std::vector<double>& samples() const { return m_samples; }
  const std::vector<double>& sample_label_stderr() const { return m_sigma; }
  std::int64_t num_operations() const { return std::int64_t(m_samples.size()); }
  const FisherSampledTraceOptions& options() const { return m_options; }
  /// The objective's fisher_seed() at compute(), from which the probes' label seeds derive.
  std::uint64_t label_seed() const { return m_label_seed; }

 private:
  Objective& m_obj;
  std::vector<int> m_params;
  FisherSampledTraceOptions m_options;
  CompInfo m_info = CompInfo::NotComputed;
  double m_estimate = 0, m_std_error = 0, m_label_std_error = 0;
  std::uint64_t m_label_seed = 0;
  std::vector<double> m_samples, m_sigma;
};

/// trace/ record of the estimator: method "hutchinson_fresh_labels", label_stderr, fisher_samples,
/// seed (the probes'), label_seed (the objective's, from which each probe's draw derives).
TraceRecord trace_record(const FisherSampledTrace& est, std::int64_t fisher_samples);

/// Fills e.values_stderr (and bottom_values_stderr), e.heldout_values and e.heldout_stderr for
/// the eigenvectors in e.vectors (and e.bottom_vectors), which must be set, on the operator of
/// `params`, whose eigenpairs were computed on the objective's current draw. Returns the products
/// used (one column per vector and draw).
std::int64_t fisher_eigen_errors(Objective& objective, const std::vector<int>& params, EigenRecord& e);

}  // namespace curv
