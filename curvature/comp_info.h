#pragma once
/// \file comp_info.h
/// The status every estimator's `info()` returns. It is Spectra's enum, so a status read from an
/// `EigenSolver` and one read from Spectra directly compare equal.
///
///   Successful      compute() finished and met its tolerance (or had none to meet)
///   NotComputed     compute() has not been called yet
///   NotConverging   ran out of iterations / probes before meeting the tolerance (results are
///                   still the best available; non-convergence is a status, not an exception)
///   NumericalIssue  a NaN/Inf appeared or a factorization failed
#include <Spectra/Util/CompInfo.h>

namespace curv {

using CompInfo = Spectra::CompInfo;

}  // namespace curv
