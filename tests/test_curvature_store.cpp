// Tests of the HDF5 spectra store: a run filled from real estimators, written atomically and read
// back with the plain HDF5 C API and with SpectraReader; failures leave no file and no temp file.
#include <doctest/doctest.h>
#include <hdf5.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_diagonal.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/slq_density.h"
#include "curvature/spectra_reader.h"
#include "curvature/spectra_store.h"
#include "curvature/summary_json.h"
#include "tests/test_util.h"

using namespace curv;
using namespace curv_test;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using Index = Eigen::Index;

namespace {

fs::path test_dir() { return scratch_dir("curvature"); }

std::string h5_string_attribute(hid_t obj, const char* name) {
  const hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  const hid_t type = H5Aget_type(attr);
  std::string out;
  if (H5Tis_variable_str(type) > 0) {
    const hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5T_CSET_UTF8);
    char* buf = nullptr;
    H5Aread(attr, mem, &buf);
    out = buf;
    H5free_memory(buf);
    H5Tclose(mem);
  }
  H5Tclose(type);
  H5Aclose(attr);
  return out;
}

std::vector<hsize_t> h5_dims(hid_t file, const char* dataset) {
  const hid_t d = H5Dopen2(file, dataset, H5P_DEFAULT);
  const hid_t s = H5Dget_space(d);
  std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(s));
  H5Sget_simple_extent_dims(s, dims.data(), nullptr);
  H5Sclose(s);
  H5Dclose(d);
  return dims;
}

// A run with every group filled from real estimators on a small operator.
void fill_run(StoreRun& run, const LinearOperator& op) {
  run.attributes["model"] = std::string("tiny.onnx");
  run.attributes["model_sha256"] = std::string("abc123");
  run.attributes["samples"] = std::int64_t{256};
  run.attributes["curvature"] = std::string("hessian");
  run.attributes["seed"] = std::int64_t{0};
  EigenSolverOptions eo;
  eo.top = 3;
  eo.bottom = 2;
  EigenSolver es(op, eo);
  es.compute();
  run.model.eigen = eigen_record(es, true);
  HutchinsonTraceOptions to;
  to.probes = 10;
  HutchinsonTrace ht(op, to);
  ht.compute();
  run.model.trace = trace_record(ht);
  HutchinsonDiagonalOptions dop;
  dop.probes = 10;
  HutchinsonDiagonal hd(op, dop);
  hd.compute();
  run.model.diag = diag_record(hd);
  SlqDensityOptions so;
  so.probes = 2;
  so.steps = 5;
  so.grid_size = 50;
  SlqDensity slq(op, so);
  slq.compute();
  run.model.density = density_record(slq);
}

}  // namespace

TEST_CASE("SpectraStore: write, read back with the HDF5 C API") {
  const fs::path dir = test_dir();
  const fs::path path = dir / "spectrum.h5";
  const Index n = 20;
  const Matrix A = planted(Vector::LinSpaced(n, -1.0, 2.0), 91);
  const DenseOperator op(A);

  SpectraStore store(path, "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");
  StoreRun& run = store.add_run();
  fill_run(run, op);
  ExactSpectrum exact(op);
  exact.compute();
  run.add_block("layer2").trace = trace_record(exact);
  run.add_block("layer10").eigen = eigen_record(exact, 2, 1);
  CHECK_FALSE(fs::exists(path));
  store.commit();
  CHECK(store.committed());
  REQUIRE(fs::exists(path));
  CHECK_FALSE(fs::exists(store.temp_path()));

  // --- plain HDF5 C API ---
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  CHECK(h5_string_attribute(f, "format") == "curv");
  CHECK(h5_string_attribute(f, "curv_version") == "0.1.0");
  CHECK(h5_string_attribute(f, "command") == "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");
  const std::string created = h5_string_attribute(f, "created_utc");
  CHECK(created.size() == 20u);
  CHECK(created[10] == 'T');
  CHECK(created.back() == 'Z');
  {
    const hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
    const hid_t t = H5Aget_type(a);
    CHECK(H5Tget_class(t) == H5T_INTEGER);
    CHECK(H5Tget_size(t) == 8u);
    std::int64_t v = 0;
    H5Aread(a, H5T_NATIVE_INT64, &v);
    CHECK(v == 1);
    H5Tclose(t);
    H5Aclose(a);
  }
  {
    const hid_t g = H5Gopen2(f, "/spectrum", H5P_DEFAULT);
    CHECK(h5_string_attribute(g, "model") == "tiny.onnx");
    CHECK(h5_string_attribute(g, "curvature") == "hessian");
    H5Gclose(g);
  }
  CHECK(h5_dims(f, "/spectrum/eigen/values") == std::vector<hsize_t>{3});
  CHECK(h5_dims(f, "/spectrum/eigen/vectors") == std::vector<hsize_t>{20, 3});
  CHECK(h5_dims(f, "/spectrum/eigen/bottom_vectors") == std::vector<hsize_t>{20, 2});
  CHECK(h5_dims(f, "/spectrum/trace/estimate").empty());  // scalar
  CHECK(h5_dims(f, "/spectrum/trace/samples") == std::vector<hsize_t>{10});
  CHECK(h5_dims(f, "/spectrum/diag/estimate") == std::vector<hsize_t>{20});
  CHECK(h5_dims(f, "/spectrum/density/nodes") == std::vector<hsize_t>{2, 5});
  CHECK(h5_dims(f, "/spectrum/density/weights") == std::vector<hsize_t>{2, 5});
  CHECK(h5_dims(f, "/spectrum/density/grid") == std::vector<hsize_t>{50});
  {
    // [P, k] in C order: element (i, j) is component i of eigenvector j.
    std::vector<double> buf(20 * 3);
    const hid_t d = H5Dopen2(f, "/spectrum/eigen/vectors", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    H5Dclose(d);
    const Matrix& V = run.model.eigen->vectors;
    CHECK(buf[5 * 3 + 2] == V(5, 2));
    CHECK(buf[19 * 3 + 0] == V(19, 0));
  }
  H5Fclose(f);

  // --- SpectraReader ---
  SpectraReader reader(path);
  const StoredArray values = reader.read("/spectrum/eigen/values");
  for (Index i = 0; i < 3; ++i) CHECK(values.data[i] == run.model.eigen->values(i));
  CHECK(values.data[0] > values.data[1]);
  CHECK(reader.read_scalar("/spectrum/trace/estimate") == run.model.trace->estimate);
  CHECK(reader.read_scalar("/spectrum/trace/probes") == 10.0);
  CHECK(reader.string_attribute("/spectrum/eigen", "method") == "lanczos");
  CHECK(reader.number_attribute("/", "schema_version") == 1.0);
  CHECK(reader.number_attribute("/spectrum", "samples") == 256.0);
  CHECK(reader.read_scalar("/spectrum/blocks/layer2/trace/estimate") == doctest::Approx(A.trace()));
  CHECK(reader.exists("/spectrum/blocks/layer10/eigen/bottom_values"));
  CHECK_FALSE(reader.exists("/spectrum/blocks/layer10/trace"));
  CHECK(reader.children("/spectrum/blocks") == std::vector<std::string>{"layer2", "layer10"});  // creation order
  CHECK(reader.children("/") == std::vector<std::string>{"spectrum"});
  CHECK_THROWS_WITH_AS(reader.read("/spectrum/nope"), (path.string() + ": no dataset '/spectrum/nope'").c_str(),
                       std::runtime_error);

  // --- JSON summary keys ---
  const nlohmann::json js = summary_json(run);
  CHECK(js["eigen"]["top"].size() == 3u);
  CHECK(js["eigen"]["bottom"].size() == 2u);
  CHECK(js["eigen"]["residuals"].size() == 5u);
  CHECK(js["trace"]["probes"] == 10);
  CHECK(js["blocks"]["layer2"]["trace"]["estimate"].get<double>() == doctest::Approx(A.trace()));

  SUBCASE("append mode adds a run and keeps the first") {
    SpectraStore more(path, "curv study s.json", SpectraStore::Mode::Append);
    more.add_run("spectrum_step100").model.trace = trace_record(exact);
    more.commit();
    SpectraReader r(path);
    CHECK(r.children("/") == std::vector<std::string>{"spectrum", "spectrum_step100"});
    CHECK(r.string_attribute("/", "command") == "curv spectrum tiny.onnx --data x.npz --out spectrum.h5");

    const std::string before = read_bytes(path);
    SpectraStore dup(path, "again", SpectraStore::Mode::Append);
    dup.add_run("spectrum");
    CHECK_THROWS_WITH_AS(dup.commit(), (path.string() + ": run group '/spectrum' already exists").c_str(),
                         std::invalid_argument);
    CHECK(read_bytes(path) == before);
    CHECK_FALSE(fs::exists(dup.temp_path()));
  }
  fs::remove_all(dir);
}

TEST_CASE("SpectraStore: a failure while writing leaves no file at the target and no temp file") {
  const fs::path dir = test_dir();
  const fs::path path = dir / "broken.h5";
  const DenseOperator op(planted(Vector::LinSpaced(12, 0.0, 1.0), 93));

  SUBCASE("inconsistent record found mid-write") {
    SpectraStore store(path, "curv spectrum");
    StoreRun& run = store.add_run();
    fill_run(run, op);
    run.model.density->weights = Matrix::Zero(2, 4);  // nodes are [2 x 5]
    CHECK_THROWS_WITH_AS(store.commit(),
                         (path.string() + ": /spectrum/density/weights: shape [2 x 4] differs from nodes [2 x 5]").c_str(),
                         std::invalid_argument);
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(store.temp_path()));
    CHECK_FALSE(store.committed());
  }
  SUBCASE("HDF5 error mid-write keeps the previous good file") {
    {
      SpectraStore good(path, "first");
      fill_run(good.add_run(), op);
      good.commit();
    }
    const std::string before = read_bytes(path);
    SpectraStore store(path, "second");
    StoreRun& run = store.add_run();
    fill_run(run, op);
    run.add_block("fc1").trace = run.model.trace;
    run.add_block("fc1").trace = run.model.trace;  // duplicate group
    const std::string msg = thrown_message<std::runtime_error>([&] { store.commit(); });
    INFO(msg);
    CHECK(msg == path.string() + ": /spectrum/blocks/fc1: cannot create group (name already exists)");
    CHECK(read_bytes(path) == before);
    CHECK_FALSE(fs::exists(store.temp_path()));
  }
  SUBCASE("unwritable location names the file") {
    const fs::path bad = dir / "missing-dir" / "x.h5";
    SpectraStore store(bad, "curv spectrum");
    store.add_run();
    const std::string msg = thrown_message<std::runtime_error>([&] { store.commit(); });
    CHECK(msg == bad.string() + ": folder '" + (dir / "missing-dir").string() + "' does not exist");
  }
  SUBCASE("bad names and call order") {
    SpectraStore store(path, "curv spectrum");
    CHECK_THROWS_WITH_AS(store.add_run("a/b"),
                         "SpectraStore: run name 'a/b' must be non-empty, without '/', and not '.' or '..'",
                         std::invalid_argument);
    store.add_run().add_block("");
    CHECK_THROWS_WITH_AS(store.commit(),
                         "SpectraStore: block name '' in run 'spectrum' must be non-empty, without '/', and not '.' or "
                         "'..'",
                         std::invalid_argument);
    CHECK_FALSE(fs::exists(path));
    SpectraStore ok(path, "curv spectrum");
    ok.add_run();
    ok.commit();
    CHECK_THROWS_WITH_AS(ok.commit(), ("SpectraStore::commit: " + path.string() + " was already committed").c_str(),
                         std::logic_error);
  }
  fs::remove_all(dir);
}
