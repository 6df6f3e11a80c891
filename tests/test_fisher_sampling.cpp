// Standard errors of the Monte Carlo Fisher's spectral figures that include the label sampling
// (curvature/fisher_sampling.h), on tiny networks in float64 against the exact Fisher (= the GGN):
// the fresh-label trace's mean over seeds converges to tr(F) within 4 of its stated standard
// errors, its label part is the actual spread over label draws and shrinks like 1/sqrt(S), the
// eigenvalue errors match the spread of lambda_max over draws and the held-out quotient brackets
// lambda_max(F) from below, and everything is identical for 1 and 2 threads.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <Eigen/Eigenvalues>
#include <cmath>

#include "curvature/curvature_operator.h"
#include "curvature/fisher_sampling.h"
#include "curvature/spectrum_analysis.h"
#include "src/core/builder.h"
#include "tests/test_util.h"

using namespace curv;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

namespace {

constexpr double kStdErrs = 4.0;  // estimates within this many stated standard errors of the truth

using curv_test::synthetic_data;

Model mlp(std::uint64_t seed) {
  ModelBuilder b({5}, seed);
  int x = b.unary(b.linear(b.input(), 4, "fc1"), UnaryKind::Tanh);
  return b.finish(b.linear(x, 3, "fc2"));
}

ObjectiveOptions fisher_opts(std::int64_t samples, std::uint64_t seed) {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = 4;
  o.fisher_samples = samples;
  o.fisher_seed = seed;
  return o;
}

Matrix dense(const LinearOperator& op) {
  Matrix Y;
  op.apply(Matrix::Identity(op.rows(), op.rows()), Y);
  return 0.5 * (Y + Y.transpose());
}

double mean(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / double(x.size());
}

double sd(const std::vector<double>& x) {
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size() - 1));
}

double rms(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s / double(x.size()));
}

}  // namespace

TEST_CASE("fresh-label trace of the MC Fisher: mean over seeds within 4 stated standard errors of tr(F)") {
  Model m = mlp(1);
  Dataset d = synthetic_data({5}, 12, 3, 2, false);
  auto exact = Objective::create(m, d, fisher_opts(0, 0));
  const double truth = dense(CurvatureOperator(*exact, Curvature::Fisher)).trace();
  const int R = 12;
  std::vector<double> est, se;
  for (int r = 0; r < R; ++r) {
    auto mc = Objective::create(m, d, fisher_opts(2, 100 + r));
    FisherSampledTraceOptions o;
    o.probes = 16;
    o.seed = 7 + r;
    FisherSampledTrace t(*mc, {}, o);
    CHECK(t.compute() == 16);
    CHECK(t.info() == CompInfo::Successful);
    CHECK(mc->fisher_seed() == std::uint64_t(100 + r));  // restored
    INFO("seed ", r, ": ", t.estimate(), " +- ", t.std_error(), " (labels ", t.label_std_error(), "), tr F = ", truth);
    CHECK(t.std_error() > 0);
    CHECK(t.label_std_error() > 0);
    CHECK(std::abs(t.estimate() - truth) <= kStdErrs * t.std_error());
    est.push_back(t.estimate());
    se.push_back(t.std_error());
  }
  // The mean of R independent runs, with the stated error of that mean.
  const double se_mean = rms(se) / std::sqrt(double(R));
  INFO("mean ", mean(est), " +- ", se_mean, ", tr F = ", truth, "; spread of the runs ", sd(est), ", stated ", rms(se));
  CHECK(std::abs(mean(est) - truth) <= kStdErrs * se_mean);
  // The stated standard error is the runs' actual spread (within the noise of 12 runs).
  CHECK(sd(est) < 2.0 * rms(se));
  CHECK(sd(est) > 0.4 * rms(se));
}

TEST_CASE("label_stderr of the fresh-label trace is the spread over label draws and shrinks like 1/sqrt(S)") {
  Model m = mlp(3);
  Dataset d = synthetic_data({5}, 40, 3, 4, false);
  double stated[2];
  const std::int64_t S_of[2] = {2, 8};
  for (int i = 0; i < 2; ++i) {
    // The same probes (seed 5) under R label seeds: the estimates vary by the labels alone.
    std::vector<double> est, label;
    for (int r = 0; r < 24; ++r) {
      auto mc = Objective::create(m, d, fisher_opts(S_of[i], 1000 + r));
      FisherSampledTraceOptions o;
      o.probes = 6;
      o.seed = 5;
      FisherSampledTrace t(*mc, {}, o);
      t.compute();
      est.push_back(t.estimate());
      label.push_back(t.label_std_error());
    }
    stated[i] = rms(label);
    INFO("S = ", S_of[i], ": spread over label seeds ", sd(est), ", stated label stderr ", stated[i]);
    CHECK(sd(est) < 1.6 * stated[i]);
    CHECK(sd(est) > 0.6 * stated[i]);
  }
  // 4 times the labels: half the label error (sqrt(4) = 2).
  INFO("label stderr S = 2: ", stated[0], ", S = 8: ", stated[1]);
  CHECK(stated[0] / stated[1] > 1.7);
  CHECK(stated[0] / stated[1] < 2.3);
}

TEST_CASE("MC Fisher eigenvalues: label stderr matches the spread of lambda_max over draws, held-out brackets it") {
  Model m = mlp(5);
  Dataset d = synthetic_data({5}, 30, 3, 6, false);
  auto exact = Objective::create(m, d, fisher_opts(0, 0));
  const Matrix F = dense(CurvatureOperator(*exact, Curvature::Fisher));
  Eigen::SelfAdjointEigenSolver<Matrix> es(F);
  const double lmax = es.eigenvalues().maxCoeff();
  std::vector<double> top, top_se, held, held_se;
  for (int r = 0; r < 20; ++r) {
    auto mc = Objective::create(m, d, fisher_opts(4, 300 + r));
    SpectrumOptions o;
    o.top = 1;
    o.trace_probes = 4;
    o.eig_tol = 1e-10;
    StoreRun run;
    analyze_model_spectrum(*mc, Curvature::Fisher, true, {}, o, 9, run);
    REQUIRE(run.model.eigen);
    const EigenRecord& e = *run.model.eigen;
    REQUIRE(e.values_stderr.size() == 1);
    REQUIRE(e.heldout_values.size() == 1);
    CHECK(e.vectors.size() == 0);  // computed for the errors, not stored
    CHECK(e.values_stderr[0] > 0);
    CHECK(run.model.trace->attributes.count("label_stderr") == 1);
    top.push_back(e.values[0]);
    top_se.push_back(e.values_stderr[0]);
    held.push_back(e.heldout_values[0]);
    held_se.push_back(e.heldout_stderr[0]);
  }
  INFO("lambda_max(F) = ", lmax, "; draws: mean ", mean(top), " sd ", sd(top), " stated ", rms(top_se),
       "; held-out mean ", mean(held), " stated ", rms(held_se));
  // First order: the stated stderr is the spread of lambda_max(F^) over draws.
  CHECK(sd(top) < 2.0 * rms(top_se));
  CHECK(sd(top) > 0.5 * rms(top_se));
  // The held-out quotient estimates v^T F v <= lambda_max(F); the draw's value is biased upward.
  const double n = std::sqrt(double(top.size()));
  CHECK(mean(held) <= lmax + kStdErrs * rms(held_se) / n);
  CHECK(mean(top) >= lmax - kStdErrs * rms(top_se) / n);
  CHECK(std::abs(mean(held) - lmax) <= 0.2 * lmax);  // the eigenvector is nearly right
}

TEST_CASE("MC Fisher spectrum errors are identical for 1 and 2 threads, and bad requests") {
  Model m = mlp(7);
  Dataset d = synthetic_data({5}, 13, 3, 8, false);
  StoreRun runs[2];
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    auto mc = Objective::create(m, d, fisher_opts(3, 41));
    SpectrumOptions o;
    o.top = 2;
    o.trace_probes = 5;
    analyze_model_spectrum(*mc, Curvature::Fisher, true, m.blocks("layers"), o, 3, runs[threads - 1]);
  }
  const StoreSection* a[] = {&runs[0].model, &runs[0].blocks[0].second, &runs[0].blocks[1].second};
  const StoreSection* b[] = {&runs[1].model, &runs[1].blocks[0].second, &runs[1].blocks[1].second};
  for (int i = 0; i < 3; ++i) {
    CHECK(a[i]->trace->estimate == b[i]->trace->estimate);
    CHECK(a[i]->trace->std_error == b[i]->trace->std_error);
    CHECK(std::get<double>(a[i]->trace->attributes.at("label_stderr")) ==
          std::get<double>(b[i]->trace->attributes.at("label_stderr")));
    CHECK(a[i]->eigen->values == b[i]->eigen->values);
    CHECK(a[i]->eigen->values_stderr == b[i]->eigen->values_stderr);
    CHECK(a[i]->eigen->heldout_values == b[i]->eigen->heldout_values);
    CHECK(a[i]->eigen->heldout_stderr == b[i]->eigen->heldout_stderr);
  }
  // Hutch++ and a trace tolerance need one fixed matrix.
  auto mc = Objective::create(m, d, fisher_opts(3, 41));
  SpectrumOptions o;
  o.trace_probes = 6;
  o.trace_method = TraceMethod::HutchPlusPlus;
  StoreRun run;
  CHECK_THROWS_AS(analyze_model_spectrum(*mc, Curvature::Fisher, true, {}, o, 3, run), std::invalid_argument);
  auto ex = Objective::create(m, d, fisher_opts(0, 0));
  CHECK_THROWS_AS(FisherSampledTrace(*ex, {}), std::invalid_argument);  // the exact Fisher has no label error
}
