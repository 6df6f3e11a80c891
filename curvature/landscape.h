#pragma once
/// \file landscape.h
/// Loss landscapes: the loss and accuracy of a model on a 1-D or 2-D grid of points in parameter
/// space, optionally with the extreme curvature eigenvalues at each point (`curv landscape`, and
/// the `landscape` / `interpolate` kinds of `curv study`).
///
/// For a centre w0 and directions dx (and dy), grid point (i, j) is
///     w_ij = w0 + x_i dx + y_j dy,    x_i = x_min + i (x_max - x_min) / (nx - 1)   (same for y)
/// and the results are L(w_ij) (the mean loss over the sample set), the accuracy, and with
/// eig_every = K > 0, at the points whose indices i and j are both multiples of K, lambda_max (and
/// lambda_min) of the chosen curvature at w_ij (EigenSolver, relative tolerance eig_tol).
/// Linear interpolation between checkpoints A and B is the 1-D case w0 = w_A, dx = w_B - w_A.
///
/// Points are evaluated in parallel (oneTBB), each on its own thread's Objective; every point's
/// value is the Objective's deterministic result at that point, so the grid is identical for any
/// thread count.
///
/// Layout written by write_landscape into a run group (docs/hdf5-schema.md), with the dataset
/// names of loss-landscape (Li et al.'s code) so that its plotting reads them:
///     xcoordinates f64 [nx]           ycoordinates f64 [ny]  (2-D only)
///     train_loss   f64 [nx] | [nx, ny]   loss at (x_i, y_j) in [i, j], as loss-landscape stores it
///     train_acc    f64 [nx] | [nx, ny]   accuracy in percent (loss-landscape's unit); NaN for MSE
///     lambda_max, lambda_min  f64 like train_loss, NaN where not computed (optional)
///     xdirection, ydirection  f64 [P]   the directions, in flat parameter order
/// plus attributes (grid, products, and for interpolation the barrier, see below).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "curvature/store_records.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv {

namespace h5 {
class Object;
}

/// Grid axes, parsed from "MIN:MAX:N[,MIN:MAX:N]".
struct LandscapeGrid {
  double x_min = -1, x_max = 1;
  std::int64_t nx = 51;
  bool two_d = false;
  double y_min = -1, y_max = 1;
  std::int64_t ny = 1;

  Eigen::VectorXd x() const;
  Eigen::VectorXd y() const;  // [1] = {0} for a 1-D grid
};
/// std::invalid_argument naming the text for malformed input, non-finite bounds, MIN > MAX,
/// N < 1 or N > 100000 (N = 1 needs MIN == MAX).
LandscapeGrid parse_grid(const std::string& text);

struct LandscapeOptions {
  LandscapeGrid grid;
  /// Eigenvalues at points whose grid indices are both multiples of eig_every (0: none).
  std::int64_t eig_every = 0;
  /// Also lambda_min (bottom eigenvalue) at those points.
  bool eig_bottom = false;
  Curvature curvature = Curvature::Hessian;
  double eig_tol = 1e-3;
  std::int64_t eig_max_restarts = 300;
  std::uint64_t seed = 0;
};

struct LandscapeResult {
  Eigen::VectorXd x, y;                    // [nx], [ny] (y = {0} in 1-D)
  Eigen::MatrixXd loss, accuracy;          // [nx, ny]; accuracy as a fraction, NaN for MSE
  Eigen::MatrixXd lambda_max, lambda_min;  // [nx, ny], NaN where not computed; empty if never
  std::int64_t products = 0;               // curvature products of the eigenvalues
  std::int64_t points = 0;
  double seconds = 0;
};

/// Evaluates the grid around `w0` (flat parameters) along `dx` and `dy` (dy ignored for a 1-D
/// grid). Objectives are built from `model` and `data` with `objective` options (their cache is
/// split between threads). Calls `progress(points_done)` from the calling thread's tasks (any
/// thread, serialized). REQUIRES: sizes equal model.num_params(); std::invalid_argument otherwise.
LandscapeResult compute_landscape(const Model& model, const Dataset& data, const ObjectiveOptions& objective,
                                  const std::vector<double>& w0, const Eigen::VectorXd& dx, const Eigen::VectorXd& dy,
                                  const LandscapeOptions& options,
                                  const std::function<void(std::int64_t)>& progress = {});

/// The loss barrier of a linear path (Frankle et al. 2020): over the grid points t in [0, 1],
///     barrier = max_t [ L(t) - ((1 - t) L(0) + t L(1)) ]
/// with L(0), L(1) the losses at the two endpoints; also the t where it is attained and
/// max_t L(t). NaN when no grid point lies in [0, 1].
struct Barrier {
  double barrier = 0, t = 0, max_loss = 0, loss_start = 0, loss_end = 0;
};
Barrier loss_barrier(const Eigen::VectorXd& t, const Eigen::VectorXd& loss, double loss_start, double loss_end);

/// Writes `r` (and the directions) into `group` as laid out in the file comment; attributes of
/// the run are written by the caller. dy is written for a 2-D grid only.
void write_landscape(const h5::Object& group, const LandscapeResult& r, const Eigen::VectorXd& dx,
                     const Eigen::VectorXd& dy, bool two_d);

}  // namespace curv
