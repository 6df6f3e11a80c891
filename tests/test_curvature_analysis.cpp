// Tests of curvature/spectrum_analysis (what `curv spectrum` runs): the estimators it runs on an
// operator against planted spectra and against the estimators called directly with the same
// seeds, block selection by name, request checks before any product, and the whole-model plus
// per-block analysis of a tiny network.
#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/slq_density.h"
#include "curvature/spectra_reader.h"
#include "curvature/spectra_store.h"
#include "curvature/spectrum_analysis.h"
#include "curvature/summary_json.h"
#include "src/core/builder.h"
#include "src/io/data_io.h"
#include "tests/test_util.h"

using namespace curv;
using namespace curv_test;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using Index = Eigen::Index;

namespace {

constexpr double kEigenTol = 1e-8;  // planted eigenvalues vs Lanczos at tol 1e-12

// Counts every product, to show that a refused request applied none.
class CountingOperator final : public LinearOperator {
 public:
  explicit CountingOperator(const LinearOperator& A) : m_A(A) {}
  Index rows() const override { return m_A.rows(); }
  void apply(const Matrix& X, Matrix& Y) const override {
    count_products(X.cols());
    m_A.apply(X, Y);
  }

 private:
  const LinearOperator& m_A;
};

Model tiny_mlp() { return build_arch("mlp:6", {5}, 3, 7); }

Dataset tiny_data() {
  DataOptions o;
  o.seed = 8;
  return load_dataset("random:5:3:12", o);
}

ObjectiveOptions f64() {
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  o.micro_batch = 4;
  return o;
}

}  // namespace

TEST_CASE("analyze_spectrum: every estimator, with the seeds of the estimators called directly") {
  const Index n = 60;
  Vector lambda = Vector::LinSpaced(n, -1.0, 3.0);
  lambda(n - 1) = 6.0;
  const DenseOperator op(planted(lambda, 3));
  SpectrumOptions o;
  o.top = 2;
  o.bottom = 2;
  o.eig_tol = 1e-12;
  o.trace_probes = 20;
  o.probe_batch = 7;
  o.diag = true;
  o.diag_probes = 9;
  o.density = true;
  o.slq_steps = 10;
  o.slq_probes = 3;
  const std::uint64_t seed = 41;
  StoreSection sec;
  analyze_spectrum(op, o, seed, sec);
  REQUIRE(sec.eigen);
  REQUIRE(sec.trace);
  REQUIRE(sec.diag);
  REQUIRE(sec.density);
  CHECK(std::abs(sec.eigen->values(0) - 6.0) <= kEigenTol);
  CHECK(std::abs(sec.eigen->values(1) - lambda(n - 2)) <= kEigenTol);
  CHECK(std::abs(sec.eigen->bottom_values(0) - lambda(0)) <= kEigenTol);
  CHECK(std::get<std::string>(sec.eigen->attributes.at("status")) == "successful");

  // Same numbers as the estimators run by hand with seed, seed + 1, seed + 2, seed + 3.
  EigenSolverOptions eo;
  eo.top = 2;
  eo.bottom = 2;
  eo.tol = 1e-12;
  eo.seed = seed;
  EigenSolver es(op, eo);
  es.compute();
  CHECK(bitwise_equal(sec.eigen->values, es.top_values()));
  CHECK(bitwise_equal(sec.eigen->bottom_values, es.bottom_values()));
  HutchinsonTraceOptions to;
  to.probes = 20;
  to.batch = 7;
  to.seed = seed + 1;
  HutchinsonTrace ht(op, to);
  ht.compute();
  CHECK(sec.trace->estimate == ht.estimate());
  HutchinsonDiagonalOptions dop;
  dop.probes = 9;
  dop.batch = 7;
  dop.seed = seed + 2;
  HutchinsonDiagonal hd(op, dop);
  hd.compute();
  CHECK(bitwise_equal(sec.diag->estimate, hd.estimate()));
  SlqDensityOptions so;
  so.steps = 10;
  so.probes = 3;
  so.seed = seed + 3;
  SlqDensity slq(op, so);
  slq.compute();
  CHECK(bitwise_equal(sec.density->nodes, slq.nodes()));

  SUBCASE("exact mode: the dense spectrum, all P eigenpairs allowed") {
    SpectrumOptions x;
    x.exact = true;
    x.top = n;
    x.diag = true;
    StoreSection e;
    analyze_spectrum(op, x, seed, e);
    REQUIRE(e.eigen);
    CHECK(e.eigen->values.size() == n);
    CHECK(std::abs(e.eigen->values(n - 1) - lambda(0)) <= kEigenTol);
    CHECK(e.trace->estimate == doctest::Approx(lambda.sum()).epsilon(1e-12));
    CHECK(e.diag->estimate.sum() == doctest::Approx(lambda.sum()).epsilon(1e-12));
  }
  SUBCASE("power iteration and Hutch++") {
    SpectrumOptions p;
    p.eig_method = EigenMethod::Power;
    p.eig_tol = 1e-10;
    p.top = 1;
    p.trace_probes = 30;
    p.trace_method = TraceMethod::HutchPlusPlus;
    StoreSection s;
    analyze_spectrum(op, p, seed, s);
    CHECK(std::get<std::string>(s.eigen->attributes.at("method")) == "power");
    CHECK(s.eigen->values(0) == doctest::Approx(6.0).epsilon(1e-6));
    CHECK(std::get<std::string>(s.trace->attributes.at("method")) == "hutch++");
  }
}

TEST_CASE("check_spectrum_request: eigenpair counts above the operator size are errors, not clamped") {
  SpectrumOptions o;
  o.top = 10;
  CHECK_THROWS_WITH_AS(check_spectrum_request(o, 10, "block 'fc2.bias'"),
                       "10 top eigenpairs requested, but block 'fc2.bias' has 10 parameters (Lanczos finds at most 9; "
                       "the exact spectrum finds all)",
                       std::invalid_argument);
  CHECK_NOTHROW(check_spectrum_request(o, 11, "the model"));
  o.top = 1;
  o.bottom = 12;
  CHECK_THROWS_WITH_AS(check_spectrum_request(o, 11, "the model"),
                       "12 bottom eigenpairs requested, but the model has 11 parameters (Lanczos finds at most 10; the "
                       "exact spectrum finds all)",
                       std::invalid_argument);
  o.exact = true;
  CHECK_THROWS_WITH_AS(check_spectrum_request(o, 11, "the model"),
                       "12 bottom eigenpairs requested, but the model has 11 parameters", std::invalid_argument);
  o.bottom = 11;
  CHECK_NOTHROW(check_spectrum_request(o, 11, "the model"));
  CHECK_THROWS_WITH_AS(check_spectrum_request(o, 5001, "the model"),
                       "the exact spectrum needs at most 5000 parameters, the model has 5001 (analyze smaller blocks)",
                       std::invalid_argument);
  o = {};
  o.eig_method = EigenMethod::Power;
  o.bottom = 1;
  CHECK_THROWS_WITH_AS(check_spectrum_request(o, 100, "the model"),
                       "power iteration finds top eigenpairs only; bottom eigenpairs need Lanczos",
                       std::invalid_argument);

  // analyze_spectrum checks before its first product.
  const DenseOperator dense(toeplitz(8));
  const CountingOperator counting(dense);
  SpectrumOptions big;
  big.top = 8;
  StoreSection sec;
  CHECK_THROWS_AS(analyze_spectrum(counting, big, 0, sec), std::invalid_argument);
  CHECK(counting.num_products() == 0);
  CHECK_FALSE(sec.eigen);
}

TEST_CASE("select_blocks: all, layers, tensors and names") {
  const Model m = tiny_mlp();
  CHECK(select_blocks(m, "all").empty());
  const auto layers = m.blocks("layers"), tensors = m.blocks("tensors");
  REQUIRE(layers.size() == 2);
  REQUIRE(tensors.size() == 4);
  CHECK(select_blocks(m, "layers").size() == layers.size());
  CHECK(select_blocks(m, "tensors").size() == tensors.size());
  const auto named = select_blocks(m, layers[1].name + "," + tensors[0].name);
  REQUIRE(named.size() == 2);
  CHECK(named[0].name == layers[1].name);
  CHECK(named[0].size == layers[1].size);
  CHECK(named[1].name == tensors[0].name);
  CHECK(named[1].params == tensors[0].params);
  CHECK_THROWS_WITH_AS(select_blocks(m, layers[0].name + ",nosuch"), "no layer or parameter named 'nosuch' in the model",
                       std::invalid_argument);
}

TEST_CASE("analyze_model_spectrum: whole model and blocks equal the operators analyzed one by one") {
  const Model m = tiny_mlp();
  const Dataset d = tiny_data();
  auto obj = Objective::create(m, d, f64());
  const auto blocks = select_blocks(m, "layers");
  SpectrumOptions o;
  o.top = 2;
  o.bottom = 1;
  o.eig_tol = 1e-10;
  o.trace_probes = 8;
  std::map<std::string, std::int64_t> done;
  std::vector<std::string> order;
  StoreRun run;
  const std::int64_t products = analyze_model_spectrum(
      *obj, Curvature::GGN, true, blocks, o, 5, run, [&](const std::string& label, std::int64_t p, bool finished) {
        if (finished) done[label] = p, order.push_back(label);
      });
  REQUIRE(run.model.eigen);
  REQUIRE(run.blocks.size() == 2);
  CHECK(order == std::vector<std::string>{"all", blocks[0].name, blocks[1].name});
  std::int64_t sum = 0;
  for (const auto& [label, p] : done) sum += p;
  CHECK(products == sum);

  // The GGN has lambda_min = 0 (12 samples x 2 logit directions < P): the bottom pair converges.
  CHECK(std::get<std::string>(run.model.eigen->attributes.at("status")) == "successful");
  const CurvatureOperator full(*obj, Curvature::GGN);
  ExactSpectrum exact(full);
  exact.compute();
  CHECK(std::abs(run.model.eigen->bottom_values(0)) <= 1e-8 * exact.top(1)(0));
  CHECK(std::abs(run.model.eigen->values(0) - exact.top(1)(0)) <= 1e-8 * exact.top(1)(0));

  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const auto& [name, sec] = run.blocks[b];
    CHECK(name == blocks[b].name);
    CHECK(std::get<std::int64_t>(sec.attributes.at("params")) == blocks[b].size);
    const CurvatureOperator op(*obj, Curvature::GGN, blocks[b].params);
    StoreSection direct;
    analyze_spectrum(op, o, 5, direct);
    CHECK(bitwise_equal(sec.eigen->values, direct.eigen->values));
    CHECK(sec.trace->estimate == direct.trace->estimate);
  }

  SUBCASE("a request too large for one block fails before any product") {
    auto fresh = Objective::create(m, d, f64());
    SpectrumOptions big = o;
    big.top = blocks[0].size;  // fits the model, not the first layer
    StoreRun none;
    bool called = false;
    const std::string expected = "block '" + blocks[0].name + "' has";
    CHECK_THROWS_WITH_AS(analyze_model_spectrum(*fresh, Curvature::Hessian, true, blocks, big, 5, none,
                                                [&](const std::string&, std::int64_t, bool) { called = true; }),
                         doctest::Contains(expected.c_str()), std::invalid_argument);
    CHECK_FALSE(called);
    CHECK_FALSE(none.model.eigen);
    CHECK(none.blocks.empty());
  }
}

TEST_CASE("a run that hits the restart cap is stored with its status, counts and residuals") {
  const Index n = 300;
  const DenseOperator op(planted(Vector::LinSpaced(n, 0.0, 1.0), 37));
  SpectrumOptions o;
  o.top = 2;
  o.bottom = 2;
  o.eig_tol = 1e-15;
  o.eig_max_restarts = 1;
  const fs::path path = scratch_dir("analysis") / "capped.h5";
  SpectraStore store(path, "test");
  StoreRun& run = store.add_run();
  analyze_spectrum(op, o, 0, run.model);
  store.commit();
  SpectraReader r(path);
  CHECK(r.string_attribute("/spectrum/eigen", "status") == "not_converging");
  CHECK(r.number_attribute("/spectrum/eigen", "max_restarts") == 1.0);
  CHECK(r.number_attribute("/spectrum/eigen", "converged_top") < 2.0);
  CHECK(r.read("/spectrum/eigen/values").data.size() == 2);
  CHECK(r.read("/spectrum/eigen/bottom_residuals").data.size() == 2);
  const nlohmann::json j = summary_json(run);
  CHECK(j["eigen"]["converged"] == false);
  fs::remove_all(path.parent_path());
}
