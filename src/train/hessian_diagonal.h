#pragma once
/// \file hessian_diagonal.h
/// Stochastic estimates of the diagonal of the mini-batch Hessian for AdaHessian and Sophia, on
/// the Objective of the batch (exact curvature products, no double backward):
///
///   Hutchinson (Bekas et al. 2007)   D = z . (H z),  z Rademacher (+-1 with probability 1/2)
///                                    E[D] = diag(H)
///   Gauss-Newton-Bartlett (Liu et al. 2023, Sophia's Algorithm 2)
///                                    y^_n ~ softmax(f(x_n; w)),  g^ = grad (1/B) sum_n l(f(x_n; w), y^_n)
///                                    D = B g^ . g^,   E[D] = diag of the Gauss-Newton matrix (Bartlett)
///   spatial averaging (AdaHessian)   for a parameter of rank >= 3 (convolution kernels [O, I, k...]),
///                                    D[o, i, :] <- mean over the kernel window of |D[o, i, :]|
///
/// Randomness is counter-based: entry i of probe `draw` is the sign of hashed_uniform(seed, draw,
/// i, 0x52) - 1/2 (loss.h), and the sampled label of sample n of draw `draw` compares
/// hashed_uniform(seed, draw, n, 0x47) with the cumulative softmax. No generator state exists, so
/// the estimates depend on (seed, draw, w, batch) only: not on threads, and a resumed run that
/// knows its draw count continues the same sequence. scripts/make_diag_optimizer_fixtures.py
/// reproduces both in Python.
#include <cstdint>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv {

enum class DiagonalEstimator { Hutchinson, GaussNewtonBartlett };
/// "hutchinson" | "gnb"; anything else throws std::invalid_argument.
DiagonalEstimator parse_diagonal_estimator(const std::string& s);
const char* diagonal_estimator_name(DiagonalEstimator e);

/// The Rademacher probe of draw `draw`: n entries of +-1.
std::vector<double> rademacher_probe(std::int64_t n, std::uint64_t seed, std::uint64_t draw);

/// z . (H z) on the objective's samples at its current parameters (Hutchinson with one probe).
std::vector<double> hutchinson_diagonal(Objective& objective, std::uint64_t seed, std::uint64_t draw);

/// B g^ . g^ (Gauss-Newton-Bartlett) on `batch` at the parameters w, with labels sampled from the
/// model's softmax. `model` is the training graph (BatchNorm as in the gradient passes); `options`
/// those of the gradient passes (precision, micro-batch). REQUIRES: a cross-entropy model (integer
/// labels); throws std::invalid_argument otherwise.
std::vector<double> gauss_newton_bartlett_diagonal(const Model& model, const std::vector<double>& w,
                                                   const Dataset& batch, const ObjectiveOptions& options,
                                                   std::uint64_t seed, std::uint64_t draw);

/// AdaHessian's spatial averaging in place: for each parameter of rank >= 3, |D| averaged over
/// all axes after the first two (the kernel window); other parameters untouched.
void average_over_kernels(const std::vector<ParamInfo>& params, std::vector<double>& d);

}  // namespace curv
