// I/O: datasets (.npz, .h5, IDX, fashion-mnist, random), ONNX import against PyTorch references
// (data/fixtures, made by scripts/make_fixtures.py), bad-input errors (data/fixtures/io, made by
// scripts/make_io_fixtures.py), and curv HDF5 checkpoint round trips.
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "src/core/builder.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "src/io/internal/npz.h"
#include "src/core/objective.h"
#include "src/io/onnx_export.h"
#include "src/io/onnx_import.h"

using namespace curv;
namespace fs = std::filesystem;

namespace {

constexpr double kTol64 = 1e-9;  // float64 model vs float64 PyTorch
constexpr double kTol32 = 1e-4;  // float32 model vs float32 PyTorch

std::string src_path(const std::string& rel) { return std::string(CURV_SOURCE_DIR) + "/" + rel; }
std::string fixture(const std::string& name) {
  return name.rfind('/', 0) == 0 ? name : src_path("data/fixtures/" + name);  // absolute paths as they are
}
std::string io_fixture(const std::string& name) { return src_path("data/fixtures/io/" + name); }

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("curv_test_io_" + std::to_string(::getpid()) + "_" + name)).string();
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

// Plain float64 forward pass of the model on x (the reference for the logits).
std::vector<double> forward(const Model& m, const Dataset& d) {
  const std::int64_t n = d.size();
  std::vector<Tensor<double>> vals(m.values().size());
  for (std::size_t v = 0; v < m.values().size(); ++v) {
    const Value& val = m.values()[v];
    if (val.kind == ValueKind::Input) vals[v] = Tensor<double>(with_lead(n, val.shape), {d.x.begin(), d.x.end()});
    if (val.kind == ValueKind::Parameter) vals[v] = m.param(val.index);
    if (val.kind == ValueKind::Constant) vals[v] = m.constant(val.index);
  }
  for (const Node& node : m.nodes()) {
    OpCtx<double> c;
    OpState<double> st;
    c.state = &st;
    std::vector<Shape> shapes;
    for (int v : node.inputs) {
      c.in.push_back(vals[v].cview());
      shapes.push_back(vals[v].shape());
    }
    Tensor<double> out(node.op->output_shape(shapes));
    node.op->forward(c, out.view());
    vals[node.output] = std::move(out);
  }
  const auto& out = vals[m.output()].vec();
  return {out.begin(), out.end()};
}

// Maps the fixture's PyTorch parameter order/layout onto the model's flat parameter vector:
// model_index[k] is the model position of fixture element k.
std::vector<std::int64_t> param_map(const Model& m, const NpzFile& z) {
  const auto& names = z.get("param_names").strings;
  const auto& onnx_names = z.get("onnx_param").strings;
  const auto& transposed = z.get("onnx_param_transposed").ints;
  std::vector<std::int64_t> map;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const int p = find_onnx_param(m, onnx_names[i]);
    INFO("parameter " << names[i] << " (initializer " << onnx_names[i] << ")");
    REQUIRE(p >= 0);
    const ParamInfo& info = m.params()[p];
    const Shape pt = z.get("shape/" + names[i]).ints;
    REQUIRE(numel(pt) == info.size);
    if (transposed[i]) {
      REQUIRE(pt.size() == 2);
      for (std::int64_t r = 0; r < pt[0]; ++r)
        for (std::int64_t c = 0; c < pt[1]; ++c) map.push_back(info.offset + c * pt[0] + r);
    } else {
      for (std::int64_t k = 0; k < info.size; ++k) map.push_back(info.offset + k);
    }
  }
  REQUIRE(static_cast<std::int64_t>(map.size()) == m.num_params());
  return map;
}

struct FixtureErrors {
  double logits = 0, loss = 0, grad = 0, hvp = 0, ggn = 0;
};

FixtureErrors check_fixture(const std::string& onnx, const std::string& npz, Precision prec, bool bn_training = false) {
  ImportOptions io;
  io.batch_norm_training = bn_training;
  const Model m = import_onnx(fixture(onnx), io);
  const NpzFile z(fixture(npz));
  const Dataset d = load_dataset(fixture(npz));
  const auto map = param_map(m, z);
  const bool f32 = prec == Precision::Float32;
  const std::string sfx = f32 ? "32" : "";

  FixtureErrors e;
  if (!bn_training) e.logits = rel_err(forward(m, d), z.get("logits" + sfx).data);
  ObjectiveOptions oo;
  oo.precision = prec;
  oo.micro_batch = d.size();  // one batch: BatchNorm batch statistics over all samples, as PyTorch
  auto obj = Objective::create(m, d, oo);
  Objective::Vector g;
  const double loss = obj->gradient(g);
  const double ref_loss = z.get("loss" + sfx).data.at(0);
  e.loss = std::abs(loss - ref_loss) / std::abs(ref_loss);
  std::vector<double> gf(map.size());
  for (std::size_t k = 0; k < map.size(); ++k) gf[k] = g[map[k]];
  e.grad = rel_err(gf, z.get("grad" + sfx).data);

  const auto& v = z.get("v").data;
  Objective::Matrix V(m.num_params(), 1), Y;
  for (std::size_t k = 0; k < map.size(); ++k) V(map[k], 0) = v[k];
  obj->product(Curvature::Hessian, V, Y);
  std::vector<double> hf(map.size());
  for (std::size_t k = 0; k < map.size(); ++k) hf[k] = Y(map[k], 0);
  e.hvp = rel_err(hf, z.get("hvp" + sfx).data);
  obj->product(Curvature::GGN, V, Y);
  for (std::size_t k = 0; k < map.size(); ++k) hf[k] = Y(map[k], 0);
  e.ggn = rel_err(hf, z.get("ggn_v" + sfx).data);
  return e;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

}  // namespace

// ---- datasets ----------------------------------------------------------------------------------

TEST_CASE("npz datasets: uint8 images scale to [0,1], integer y gives labels, float y targets") {
  const Dataset d = load_dataset(io_fixture("u8_labels.npz"));
  const NpzFile z(io_fixture("u8_labels.npz"));
  CHECK(d.sample_shape == Shape{1, 4, 4});
  CHECK(d.size() == 6);
  CHECK(d.classification());
  CHECK(d.labels == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});
  for (std::size_t i = 0; i < d.x.size(); ++i) CHECK(d.x[i] == static_cast<float>(z.get("x").data[i] * (1.0 / 255.0)));

  const Dataset r = load_dataset(io_fixture("f4_targets.npz"));  // savez_compressed: deflated entries
  CHECK(r.sample_shape == Shape{3});
  CHECK(!r.classification());
  CHECK(r.target_shape == Shape{2});
  CHECK(r.targets.size() == 10);

  const Dataset i4 = load_dataset(io_fixture("f8_i4.npz"));
  CHECK(i4.labels == std::vector<std::int64_t>{1, 0, 1, 0, 1});
  CHECK(i4.x == r.x);  // float64 copies of the same float32 values
}

TEST_CASE("h5 and IDX datasets match the npz they were written from") {
  const Dataset npz = load_dataset(io_fixture("u8_labels.npz"));
  const Dataset h5 = load_dataset(io_fixture("data.h5"));
  CHECK(h5.sample_shape == npz.sample_shape);
  CHECK(h5.x == npz.x);
  CHECK(h5.labels == npz.labels);
  const Dataset hf = load_dataset(io_fixture("data_f.h5"));
  CHECK(hf.targets == load_dataset(io_fixture("f4_targets.npz")).targets);
  const Dataset idx = load_dataset(io_fixture("tiny-images-idx3-ubyte"));
  CHECK(idx.sample_shape == Shape{1, 4, 4});
  CHECK(idx.x == npz.x);
  CHECK(idx.labels == npz.labels);
}

TEST_CASE("samples, offset and per-channel normalization") {
  DataOptions o;
  o.offset = 2;
  o.samples = 3;
  const Dataset full = load_dataset(io_fixture("u8_labels.npz"));
  const Dataset d = load_dataset(io_fixture("u8_labels.npz"), o);
  CHECK(d.size() == 3);
  CHECK(d.labels == std::vector<std::int64_t>{2, 3, 4});
  CHECK(d.x[0] == full.x[2 * 16]);
  parse_normalize("0.5/0.25", o);
  const Dataset n = load_dataset(io_fixture("u8_labels.npz"), o);
  CHECK(n.x[5] == doctest::Approx((d.x[5] - 0.5) / 0.25));
  CHECK_THROWS_AS(parse_normalize("0.5", o), std::invalid_argument);
  CHECK_THROWS_AS(parse_normalize("0.5,0.1/0", o), std::invalid_argument);
  DataOptions two;
  parse_normalize("0.1,0.2/1,2", two);  // 2 values for a 1-channel dataset
  CHECK_THROWS_AS(load_dataset(io_fixture("u8_labels.npz"), two), std::invalid_argument);
}

TEST_CASE("fashion-mnist:test and random: datasets") {
  DataOptions o;
  o.samples = 100;
  const Dataset f = load_dataset("fashion-mnist:test", o);
  CHECK(f.size() == 100);
  CHECK(f.sample_shape == Shape{1, 28, 28});
  for (auto y : f.labels) CHECK((y >= 0 && y < 10));
  float lo = 1, hi = 0;
  for (float v : f.x) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);

  const Dataset r = load_dataset("random:3x8x8:10:20");
  CHECK(r.size() == 20);
  CHECK(r.sample_shape == Shape{3, 8, 8});
  CHECK(r.labels[13] == 3);
  CHECK(load_dataset("random:3x8x8:10:20").x == r.x);  // seeded
  CHECK(load_dataset("random:4:2").size() == 256);
  CHECK_THROWS_AS(load_dataset("random:3x0:10"), std::invalid_argument);
}

TEST_CASE("bad datasets name the file and the problem") {
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("missing.npz")), doctest::Contains("missing.npz: no such file"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("no_y.npz")), doctest::Contains("no_y.npz: no array 'y'"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("no_y.h5")), doctest::Contains("no_y.h5: no dataset '/y'"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("bad_dtype.npz")), doctest::Contains("unsupported dtype '<f2'"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("count_mismatch.npz")),
                       doctest::Contains("count_mismatch.npz: x has 5 samples but y has 6"), std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("nan_x.npz")), doctest::Contains("nan_x.npz: NaN in x (sample 2)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("orphan-images-idx3-ubyte")),
                       doctest::Contains("orphan-labels-idx1-ubyte: no such file"), std::runtime_error);
  CHECK_THROWS_WITH_AS(load_dataset(io_fixture("linear.onnx")), doctest::Contains("unknown dataset format"),
                       std::runtime_error);
  const std::string trunc = tmp_path("trunc.npz");
  const std::string bytes = read_bytes(io_fixture("u8_labels.npz"));
  write_bytes(trunc, bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH_AS(load_dataset(trunc), doctest::Contains((trunc + ": not an .npz archive").c_str()),
                       std::runtime_error);
  std::remove(trunc.c_str());
}

// ---- ONNX import against PyTorch ---------------------------------------------------------------

TEST_CASE("ONNX fixtures match PyTorch: logits, loss, gradient, HVP and GGN-vector product") {
  struct Case {
    const char* onnx;
    const char* npz;
    bool bn_training;
  };
  const Case cases[] = {{"mlp.onnx", "mlp.npz", false},
                        {"mlp_mse.onnx", "mlp_mse.npz", false},
                        {"cnn_bn.onnx", "cnn_bn.npz", false},
                        {"cnn_bn_fused.onnx", "cnn_bn_fused.npz", false},
                        {"cnn_bn.onnx", "cnn_bn_train.npz", true},
                        {"resblock.onnx", "resblock.npz", false},
                        {"resblock_fused.onnx", "resblock_fused.npz", false},
                        {"attention_op17.onnx", "attention_op17.npz", false},
                        {"attention_op13.onnx", "attention_op13.npz", false},
                        {"io/opset11.onnx", "io/opset11.npz", false},
                        {"io/opset12.onnx", "io/opset12.npz", false},
                        {"io/zero_pad.onnx", "io/zero_pad.npz", false},
                        {"io/fixed_batch.onnx", "io/fixed_batch.npz", false},
                        {"io/clip_split.onnx", "io/clip_split.npz", false},
                        {"vision/activations.onnx", "vision/activations.npz", false},
                        {"vision/groupnorm_cnn.onnx", "vision/groupnorm_cnn.npz", false},
                        {"vision/unet.onnx", "vision/unet.npz", false},
                        {"vision/lstm.onnx", "vision/lstm.npz", false},
                        {"vision/bilstm.onnx", "vision/bilstm.npz", false},
                        {"vision/gru.onnx", "vision/gru.npz", false},
                        {"lmops/causal_attention_op14.onnx", "lmops/causal_attention_op14.npz", false},
                        {"lmops/causal_attention_op17.onnx", "lmops/causal_attention_op17.npz", false},
                        {"lmops/einsum_attention_op14.onnx", "lmops/einsum_attention_op14.npz", false},
                        {"lmops/einsum_attention_op17.onnx", "lmops/einsum_attention_op17.npz", false},
                        {"lmops/minmax_op13.onnx", "lmops/minmax_op13.npz", false},
                        {"lmops/minmax_op17.onnx", "lmops/minmax_op17.npz", false},
                        {"lmops/minmax_op18.onnx", "lmops/minmax_op18.npz", false},
                        {"lmops/cls_token_op17.onnx", "lmops/cls_token_op17.npz", false}};
  for (const Case& c : cases) {
    for (Precision p : {Precision::Float64, Precision::Float32}) {
      const bool f32 = p == Precision::Float32;
      // The attention graphs carry float32 constants (LN epsilon, sqrt(2), the score scale, GELU-tanh's
      // 0.044715 and sqrt(2/pi)), and the
      // activations graph float32 attributes (Selu's alpha and gamma, Elu's alpha), so a float64 run
      // of the graph differs from float64 PyTorch at the 1e-9 level (see README).
      const bool f32_consts = std::string(c.onnx).rfind("attention", 0) == 0 ||
                              std::string(c.onnx) == "vision/activations.onnx" ||
                              std::string(c.onnx).rfind("lmops/causal_attention", 0) == 0;
      const double tol = f32 ? kTol32 : (f32_consts ? 1e-7 : kTol64);
      const std::string name = c.npz;
      CAPTURE(name);
      CAPTURE(f32);
      const FixtureErrors e = check_fixture(c.onnx, c.npz, p, c.bn_training);
      MESSAGE(name << (f32 ? " f32" : " f64") << ": logits " << e.logits << " loss " << e.loss << " grad " << e.grad
                   << " hvp " << e.hvp << " ggn " << e.ggn);
      if (!f32 || !c.bn_training) CHECK(e.logits < tol);
      CHECK(e.loss < tol);
      CHECK(e.grad < tol);
      CHECK(e.hvp < (f32 ? 10 * tol : tol));  // float32 HVPs lose a digit to cancellation
      CHECK(e.ggn < (f32 ? 10 * tol : tol));
      if (name.rfind("lmops/", 0) == 0) {  // issue 13's bar: loss 1e-10 (float64) / 1e-5 (float32), HVP 1e-4
        CHECK(e.loss < (f32 ? 1e-5 : f32_consts ? 1e-7 : 1e-10));
        if (f32) CHECK(e.hvp < 1e-4);
      }
    }
  }
}

// Recurrent ops see the batch on axis 1 (X [T, B, I] after the exporter's Transpose): split into
// micro-batches of one sample on several threads, the loss, gradient and HVP are those of one batch.
TEST_CASE("LSTM and GRU models give the same results in micro-batches of one sample") {
  for (const char* name : {"vision/lstm", "vision/bilstm", "vision/gru"}) {
    CAPTURE(name);
    const Model m = import_onnx(fixture(std::string(name) + ".onnx"));
    const Dataset d = load_dataset(fixture(std::string(name) + ".npz"));
    Objective::Vector g[2];
    Objective::Matrix V = Objective::Matrix::Ones(m.num_params(), 2), Y[2];
    V.col(1).setLinSpaced(-1.0, 1.0);
    double loss[2];
    for (int k = 0; k < 2; ++k) {
      ObjectiveOptions oo;
      oo.precision = Precision::Float64;
      oo.micro_batch = k == 0 ? d.size() : 1;
      auto obj = Objective::create(m, d, oo);
      loss[k] = obj->gradient(g[k]);
      obj->product(Curvature::Hessian, V, Y[k]);
    }
    CHECK(loss[1] == doctest::Approx(loss[0]).epsilon(1e-13));
    CHECK((g[1] - g[0]).norm() <= 1e-13 * g[0].norm());
    CHECK((Y[1] - Y[0]).norm() <= 1e-13 * Y[0].norm());
  }
}

// torchvision's MobileNetV3-small (HardSwish, HardSigmoid squeeze-excite gates, depthwise convs,
// BatchNorm kept as nodes), exported with random weights by `scripts/make_vision_fixtures.py
// --mobilenet` to ~/.cache/curv (6 MB ONNX, 56 MB references: kept out of git). Runs only when
// that file exists.
TEST_CASE("MobileNetV3-small matches PyTorch when its export is in ~/.cache/curv") {
  const char* home = std::getenv("HOME");
  const std::string base = std::string(home ? home : "") + "/.cache/curv/mobilenet_v3_small";
  if (!home || !fs::exists(base + ".onnx") || !fs::exists(base + ".npz")) {
    MESSAGE("skipped: no " << base << ".onnx (run scripts/make_vision_fixtures.py --mobilenet)");
    return;
  }
  for (Precision p : {Precision::Float64, Precision::Float32}) {
    const bool f32 = p == Precision::Float32;
    const FixtureErrors e = check_fixture(base + ".onnx", base + ".npz", p);
    MESSAGE("mobilenet_v3_small" << (f32 ? " f32" : " f64") << ": logits " << e.logits << " loss " << e.loss
                                 << " grad " << e.grad << " hvp " << e.hvp << " ggn " << e.ggn);
    const double tol = f32 ? kTol32 : 1e-7;  // float32 BatchNorm epsilon in the graph
    CHECK(e.logits < tol);
    CHECK(e.loss < tol);
    CHECK(e.grad < tol);
    CHECK(e.hvp < (f32 ? 10 * tol : tol));
    CHECK(e.ggn < (f32 ? 10 * tol : tol));
  }
}

TEST_CASE("ONNX import: names, BatchNorm statistics as constants, metadata, regex overrides") {
  const Model m = import_onnx(fixture("cnn_bn.onnx"));
  CHECK(m.find_param("conv1.weight") >= 0);
  CHECK(m.find_param("bn1.weight") >= 0);
  CHECK(m.find_param("bn1.running_mean") < 0);
  CHECK(m.find_value("bn1.running_mean") >= 0);
  CHECK(m.num_params() == 403);
  CHECK(m.meta().at("opset") == "13");
  CHECK(m.meta().at("producer").rfind("pytorch", 0) == 0);
  CHECK(m.input_shape() == Shape{2, 8, 8});

  ImportOptions o;
  o.freeze_regex = "^conv";
  const Model f = import_onnx(fixture("cnn_bn.onnx"), o);
  CHECK(f.find_param("conv1.weight") < 0);
  CHECK(f.find_param("fc.weight") >= 0);
  o = {};
  o.params_regex = "^fc\\.";
  const Model p = import_onnx(fixture("cnn_bn.onnx"), o);
  CHECK(p.params().size() == 2);
  CHECK(p.num_params() == 21);
}

TEST_CASE("ONNX import: PyTorch's generated onnx::* initializers are named after their module") {
  // cnn_bn_fused: BatchNorm folded into conv1 by the exporter, which named the results
  // onnx::Conv_27 and onnx::Conv_28; the node is "/conv1/Conv".
  const Model m = import_onnx(fixture("cnn_bn_fused.onnx"));
  REQUIRE(m.find_param("conv1.weight") >= 0);
  REQUIRE(m.find_param("conv1.bias") >= 0);
  CHECK(m.find_param("onnx::Conv_27") < 0);
  CHECK(onnx_initializer_name(m, "conv1.weight") == "onnx::Conv_27");
  CHECK(onnx_initializer_name(m, "conv1.bias") == "onnx::Conv_28");
  CHECK(onnx_initializer_name(m, "conv2.weight") == "conv2.weight");  // named by the file
  CHECK(find_onnx_param(m, "onnx::Conv_28") == m.find_param("conv1.bias"));
  CHECK(find_onnx_param(m, "conv2.bias") == m.find_param("conv2.bias"));
  CHECK(find_onnx_param(m, "nope") == -1);
  const auto layers = m.blocks("layers");
  REQUIRE(!layers.empty());
  CHECK(layers[0].name == "conv1");
  CHECK(layers[0].params.size() == 2);  // weight and bias: one layer
  // Regexes see the module names.
  ImportOptions o;
  o.freeze_regex = "^conv1\\.";
  CHECK(import_onnx(fixture("cnn_bn_fused.onnx"), o).find_param("conv1.weight") < 0);
  // Nested scopes ("/blocks.0/attn/qkv/MatMul") and a Linear's transposed weight under MatMul.
  const Model lm = import_onnx(src_path("data/license_bert.onnx"));
  const int w = lm.find_param("blocks.0.attn.qkv.weight_t");
  REQUIRE(w >= 0);
  CHECK(lm.params()[w].shape == Shape{64, 192});
  CHECK(onnx_initializer_name(lm, "blocks.0.attn.qkv.weight_t").rfind("onnx::MatMul_", 0) == 0);
  bool grouped = false;
  for (const auto& b : lm.blocks("layers"))
    if (b.name == "blocks.0.attn.qkv") grouped = b.params.size() == 2;
  CHECK(grouped);
  // "/layers/layers.0/conv1/Conv": a Sequential child's scope repeats its parent's name.
  const Model r20 = import_onnx(src_path("data/resnet20_fmnist.onnx"));
  CHECK(r20.find_param("layers.0.conv1.weight") >= 0);
  CHECK(r20.find_param("layers.layers.0.conv1.weight") < 0);
  // A checkpoint keeps the mapping.
  const std::string path = tmp_path("renamed.h5");
  save_checkpoint(m, path);
  CHECK(onnx_initializer_name(load_checkpoint(path), "conv1.bias") == "onnx::Conv_28");
  std::remove(path.c_str());
}

TEST_CASE("ONNX import errors name the file, node, op type and opset") {
  CHECK_THROWS_WITH_AS(import_onnx(io_fixture("missing.onnx")), doctest::Contains("missing.onnx: no such file"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(import_onnx(io_fixture("not_onnx.onnx")), doctest::Contains("not_onnx.onnx: not an ONNX model"),
                       std::runtime_error);
  const std::string trunc = tmp_path("trunc.onnx");
  const std::string bytes = read_bytes(fixture("cnn_bn.onnx"));
  write_bytes(trunc, bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH_AS(import_onnx(trunc), doctest::Contains((trunc + ": not an ONNX model").c_str()),
                       std::runtime_error);
  std::remove(trunc.c_str());
  CHECK_THROWS_WITH_AS(
      import_onnx(io_fixture("unknown_op.onnx")),
      doctest::Contains("unknown_op.onnx: node '/weird/Hardmax' (Hardmax, opset 13): unsupported operator"),
      std::runtime_error);
  {  // several data inputs import (issue 13), in graph order
    const Model two = import_onnx(io_fixture("two_inputs.onnx"));
    REQUIRE(two.inputs().size() == 2);
    CHECK(two.values()[two.inputs()[0]].name == "input");
    CHECK(two.values()[two.inputs()[1]].name == "mask");
  }
  CHECK_THROWS_WITH_AS(import_onnx(io_fixture("nan_weight.onnx")),
                       doctest::Contains("nan_weight.onnx: initializer 'fc.weight': NaN at element 6"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(import_onnx(io_fixture("fp16_weight.onnx")),
                       doctest::Contains("initializer 'fc.weight': unsupported data type FLOAT16"), std::runtime_error);
  {  // token ids computed in float and cast back to INT64 for a Gather (curv's export writes this)
    const Model m = import_onnx(io_fixture("cast_index.onnx"));
    const std::vector<double> y = forward(m, load_dataset(io_fixture("cast_index.npz")));
    // ids [[0, 2], [1, 0]] + 1 select rows 1, 3, 2, 1 of emb.weight = arange(12) / 7 as [4, 3].
    std::vector<double> want;
    for (int row : {1, 3, 2, 1})
      for (int c = 0; c < 3; ++c) want.push_back(static_cast<double>(static_cast<float>((3 * row + c) / 7.0)));
    CHECK(y == want);
  }
  // A Cast to INT64 whose result is also used as a number would need truncation: refused.
  CHECK_THROWS_WITH_AS(import_onnx(io_fixture("cast_int_bad.onnx")),
                       doctest::Contains("cast_int_bad.onnx: node '/to_int' (Cast, opset 13): Cast of a data tensor to "
                                         "INT64 is supported only as the indices of a Gather"),
                       std::runtime_error);
}

TEST_CASE("data that does not fit the model, and labels out of range, are rejected") {
  const Model m = import_onnx(io_fixture("linear.onnx"));
  const Dataset ok = load_dataset(io_fixture("linear.npz"));
  CHECK_NOTHROW(Objective::create(m, ok));
  const Dataset images = load_dataset(io_fixture("u8_labels.npz"));  // [1,4,4] images for a [4] input
  CHECK_THROWS_WITH_AS(Objective::create(m, images), doctest::Contains("u8_labels.npz"), std::invalid_argument);
  const Dataset three = load_dataset(io_fixture("f8_i4.npz"));  // 3 features for a [4] input
  CHECK_THROWS_WITH_AS(Objective::create(m, three), doctest::Contains("f8_i4.npz"), std::invalid_argument);
  Dataset bad_label = ok;
  bad_label.labels[1] = 3;  // 3 classes
  CHECK_THROWS_WITH_AS(Objective::create(m, bad_label), doctest::Contains("label 3"), std::invalid_argument);
}

// ---- curv checkpoints ----------------------------------------------------------------------------

namespace {

// Same graph (names, op types and attributes, inputs), bit-identical tensors and outputs.
void check_same_model(const Model& a, const Model& b, const Dataset& d) {
  REQUIRE(a.values().size() == b.values().size());
  REQUIRE(a.nodes().size() == b.nodes().size());
  for (std::size_t i = 0; i < a.values().size(); ++i) {
    CHECK(a.values()[i].name == b.values()[i].name);
    CHECK(a.values()[i].kind == b.values()[i].kind);
    CHECK(a.values()[i].shape == b.values()[i].shape);
  }
  for (std::size_t i = 0; i < a.nodes().size(); ++i) {
    CHECK(a.nodes()[i].op->type() == b.nodes()[i].op->type());
    CHECK(a.nodes()[i].op->attributes() == b.nodes()[i].op->attributes());
    CHECK(a.nodes()[i].inputs == b.nodes()[i].inputs);
  }
  REQUIRE(a.params().size() == b.params().size());
  for (std::size_t i = 0; i < a.params().size(); ++i) {
    CHECK(a.params()[i].name == b.params()[i].name);
    CHECK(a.param(static_cast<int>(i)).vec() == b.param(static_cast<int>(i)).vec());  // bit-identical
  }
  REQUIRE(a.num_constants() == b.num_constants());
  for (int i = 0; i < a.num_constants(); ++i) CHECK(a.constant(i).vec() == b.constant(i).vec());
  CHECK(a.output() == b.output());
  CHECK(forward(a, d) == forward(b, d));  // bit-identical outputs
}

Dataset random_for(const Model& m, std::int64_t n) {
  std::string spec = "random:";
  for (std::size_t i = 0; i < m.input_shape().size(); ++i) {
    if (i) spec += 'x';
    spec += std::to_string(m.input_shape()[i]);
  }
  spec += ":3:";
  spec += std::to_string(n);
  return load_dataset(spec);
}

}  // namespace

TEST_CASE("checkpoint round trip of imported ONNX models is exact") {
  for (const char* onnx : {"mlp.onnx", "mlp_mse.onnx", "cnn_bn.onnx", "cnn_bn_fused.onnx", "resblock.onnx",
                           "attention_op17.onnx", "attention_op13.onnx", "lmops/causal_attention_op17.onnx",
                           "lmops/einsum_attention_op14.onnx", "lmops/minmax_op17.onnx"}) {
    CAPTURE(std::string(onnx));
    const Model m = import_onnx(fixture(onnx));
    const std::string path = tmp_path("ckpt.h5");
    save_checkpoint(m, path);
    CHECK(!fs::exists(AtomicFile::temp_name(path, ::getpid())));
    const Model r = load_checkpoint(path);
    CHECK(r.meta().at("source") == fixture(onnx));
    CHECK(r.meta().at("producer") == m.meta().at("producer"));
    check_same_model(m, r, random_for(m, 3));
    // Saving the loaded model again gives the same graph.
    const std::string path2 = tmp_path("ckpt2.h5");
    save_checkpoint(r, path2);
    check_same_model(r, load_checkpoint(path2), random_for(m, 2));
    std::remove(path.c_str());
    std::remove(path2.c_str());
  }
}

TEST_CASE("checkpoint load options: freeze and params regexes, BatchNorm training mode") {
  const Model m = import_onnx(fixture("cnn_bn.onnx"));
  const std::string path = tmp_path("opts.h5");
  save_checkpoint(m, path);
  ImportOptions o;
  o.freeze_regex = "^conv";
  const Model f = load_checkpoint(path, o);
  CHECK(f.find_param("conv1.weight") < 0);
  CHECK(f.find_value("conv1.weight") >= 0);
  CHECK(f.num_params() == import_onnx(fixture("cnn_bn.onnx"), o).num_params());
  o = {};
  o.params_regex = "^fc\\.";
  CHECK(load_checkpoint(path, o).num_params() == 21);
  o = {};
  o.batch_norm_training = true;
  const Model t = load_checkpoint(path, o);
  int bn_train = 0;
  for (const Node& n : t.nodes()) bn_train += n.op->mixes_batch();
  CHECK(bn_train == 1);
  std::remove(path.c_str());
}

TEST_CASE("checkpoint round trip of builder models (ops described from their attributes)") {
  const Model models[] = {build_arch("mlp", {1, 6, 6}, 3, 11), build_arch("lenet", {1, 28, 28}, 10, 12),
                          build_arch("resnet20-bn", {3, 8, 8}, 4, 13, true)};
  for (const Model& m : models) {
    const std::string path = tmp_path("arch.h5");
    save_checkpoint(m, path);
    const Model r = load_checkpoint(path);
    check_same_model(m, r, random_for(m, 2));
    std::remove(path.c_str());
  }
}

TEST_CASE("checkpoint errors name the file, and a failed save leaves nothing behind") {
  CHECK_THROWS_WITH_AS(load_checkpoint(io_fixture("missing.h5")), doctest::Contains("missing.h5: no such file"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_checkpoint(io_fixture("u8_labels.npz")),
                       doctest::Contains("u8_labels.npz: not an HDF5 file"), std::runtime_error);
  CHECK_THROWS_WITH_AS(load_checkpoint(io_fixture("data.h5")), doctest::Contains("data.h5: not a curv checkpoint"),
                       std::runtime_error);
  const Model m = build_arch("mlp", {6}, 3, 1);
  const std::string path = tmp_path("no_such_dir") + "/bad.h5";  // the file cannot be created
  CHECK_THROWS_WITH_AS(save_checkpoint(m, path), doctest::Contains(path.c_str()), std::runtime_error);
  CHECK(!fs::exists(path));
  CHECK(!fs::exists(AtomicFile::temp_name(path, ::getpid())));
}

TEST_CASE("ONNX -> h5 -> ONNX round trip gives the same graph, bit-identical parameters and outputs") {
  for (const char* onnx : {"mlp.onnx", "cnn_bn.onnx", "cnn_bn_fused.onnx", "resblock.onnx", "attention_op17.onnx",
                           "attention_op13.onnx", "io/opset11.onnx", "io/zero_pad.onnx", "io/clip_split.onnx",
                           "vision/activations.onnx", "vision/groupnorm_cnn.onnx", "vision/unet.onnx",
                           "vision/lstm.onnx", "vision/bilstm.onnx", "vision/gru.onnx",
                           "lmops/causal_attention_op14.onnx", "lmops/causal_attention_op17.onnx",
                           "lmops/einsum_attention_op17.onnx", "lmops/minmax_op13.onnx", "lmops/minmax_op18.onnx",
                           // integer inputs feeding float ops (Equal on a mask) and Embeddings
                           "lm/bert_cls.onnx", "lm/bert_cls_where.onnx", "lm/gpt_lm_tied.onnx", "io/cast_index.onnx",
                           "lmops/cls_token_op17.onnx"}) {
    CAPTURE(std::string(onnx));
    const Model m = import_onnx(fixture(onnx));
    const std::string h5 = tmp_path("rt.h5"), out = tmp_path("rt.onnx");
    save_checkpoint(m, h5);
    export_onnx(load_checkpoint(h5), out);
    CHECK(!fs::exists(AtomicFile::temp_name(out, ::getpid())));
    const Model r = import_onnx(out);
    CHECK(r.meta().at("producer").rfind("curv", 0) == 0);
    CHECK(r.meta().at("opset") == "17");
    const std::string name = onnx;
    if (name.rfind("lm/", 0) == 0)  // token ids and masks: the fixture's own batch
      check_same_model(m, r, load_dataset(fixture(name.find("bert") != std::string::npos ? "lm/bert_cls.npz" : "lm/gpt_lm_tied.npz")));
    else if (name == "io/cast_index.onnx")
      check_same_model(m, r, load_dataset(io_fixture("cast_index.npz")));
    else
      check_same_model(m, r, random_for(m, 3));
    std::remove(h5.c_str());
    std::remove(out.c_str());
  }
}

TEST_CASE("ONNX export of builder models (Gelu written as its Erf decomposition)") {
  ModelBuilder b({2, 6, 6}, 5);
  int x = b.conv(b.input(), 3, 3, 1, 1, "conv1");
  x = b.batch_norm(x, "bn1", false, true);
  x = b.max_pool(b.unary(x, UnaryKind::Gelu), 2, 2);
  x = b.avg_pool(b.unary(x, UnaryKind::LeakyRelu, 0.125), 3, 1, 1);
  const Model m = b.finish(b.linear(b.flatten(x), 3, "fc"));
  const std::string out = tmp_path("gelu.onnx");
  export_onnx(m, out);
  const Model r = import_onnx(out);
  const Dataset d = random_for(m, 4);
  CHECK(r.num_params() == m.num_params());
  std::vector<double> rounded = m.flat_params();
  for (auto& w : rounded) w = static_cast<float>(w);
  CHECK(r.flat_params() == rounded);
  CHECK(rel_err(forward(r, d), forward(m, d)) < 1e-6);  // parameters rounded to float32 on export
  std::remove(out.c_str());
}

TEST_CASE("the shipped default model evaluates as trained (data/fmnist_cnn.json)") {
  const Model m = import_onnx(src_path("data/fmnist_cnn.onnx"));
  DataOptions o;
  o.samples = 2000;
  const Dataset d = load_dataset("fashion-mnist:test", o);
  auto obj = Objective::create(m, d, {});
  const EvalResult r = obj->evaluate();
  MESSAGE("fmnist_cnn on 2000 test samples: loss " << r.loss << " accuracy " << r.accuracy);
  CHECK(r.samples == 2000);
  CHECK(r.accuracy > 0.88);
  CHECK(r.loss < 0.35);
}
