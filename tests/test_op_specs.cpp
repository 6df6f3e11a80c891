// Ops as data: every op type round-trips through its spec (make_op(op->spec())), through the
// checkpoint graph JSON and through ONNX; graphs written before specs existed still load; an
// attribute sweep over every op type and attribute with bad values gives std::invalid_argument
// naming the node, never a crash; bad files (data/fixtures/ops, made by scripts/make_op_fixtures.py)
// give one error naming the file and the node, in the library and through the CLI.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "src/core/builder.h"
#include "src/core/objective.h"
#include "src/core/op_registry.h"
#include "src/core/ops.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "src/io/graph_json.h"
#include "src/io/onnx_export.h"
#include "src/io/onnx_import.h"
#include "tests/cli_run.h"

using namespace curv;
namespace fs = std::filesystem;

namespace {

// Gelu and GeluTanh are exported as their Erf and Tanh decompositions with sqrt(2) as a float32 constant; every other op
// comes back exactly (attributes and constants are float32-exact here).
constexpr double kGeluExportTol = 1e-7;
constexpr std::int64_t kBig = std::int64_t(1) << 62;
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

std::string ops_fixture(const std::string& name) { return std::string(CURV_SOURCE_DIR) + "/data/fixtures/ops/" + name; }

// One op with inputs: shapes[0] is the data input (leading batch dim 2), the others are constants,
// or the data input again when `same_input`.
struct Case {
  OpSpec spec;
  std::vector<Shape> shapes;
  bool same_input = false;
};

OpSpec spec(const std::string& type) { return OpSpec(type); }

std::vector<Case> cases() {
  std::vector<Case> c;
  for (const OpTypeInfo& t : op_types())
    if (t.unary) {  // every row of elementwise_table.h, with a non-default parameter
      OpSpec s(t.type);
      for (const AttrInfo& a : t.attrs)
        s.set_float(a.name, a.name == "exponent" ? 2.5 : a.name == "min" ? 0.75 : a.name == "max" ? 1.25 : 0.25);
      c.push_back({s, {{2, 3, 4}}});
    }
  for (const char* b : {"Add", "Sub", "Mul", "Div", "PRelu", "Max", "Min", "Equal", "Less", "Greater", "And"})
    c.push_back({spec(b), {{2, 3, 4}, {3, 4}}});
  c.push_back({spec("Where"), {{2, 3, 4}, {3, 4}, {4}}});
  c.push_back({spec("Einsum").set("equation", std::string("bi,ij->bj")), {{2, 3}, {3, 4}}});
  c.push_back({spec("Expand").set_ints("shape", {3, 1, 4}), {{2, 1, 3, 1}}});
  c.push_back({spec("Tile").set_ints("repeats", {1, 2, 3}), {{2, 3, 4}}});
  c.push_back({spec("Trilu").set_int("k", -1).set_bool("upper", false), {{2, 3, 4}}});
  c.push_back({spec("ReduceMax").set_ints("axes", {1}).set_bool("keepdims", false), {{2, 3, 4}}});
  c.push_back({spec("ReduceMin").set_ints("axes", {-1}), {{2, 3, 4}}});
  c.push_back(
      {spec("Gemm").set_bool("transB", true).set_float("alpha", 0.5).set_float("beta", 2.0), {{2, 3}, {4, 3}, {4}}});
  c.push_back({spec("MatMul"), {{2, 3, 4}, {4, 5}}});
  c.push_back({spec("Conv")
                   .set_ints("kernel", {3, 3})
                   .set_ints("strides", {2, 1})
                   .set_ints("dilations", {1, 2})
                   .set_ints("pads", {1, 2, 0, 1})
                   .set_int("group", 2),
               {{2, 4, 7, 8}, {6, 2, 3, 3}, {6}}});
  c.push_back({spec("ConvTranspose")
                   .set_ints("kernel", {3, 2})
                   .set_ints("strides", {2, 3})
                   .set_ints("dilations", {1, 2})
                   .set_ints("pads", {1, 0, 0, 1})
                   .set_ints("output_padding", {1, 2})
                   .set_int("group", 2),
               {{2, 4, 3, 4}, {4, 3, 3, 2}, {6}}});
  c.push_back({spec("Resize")
                   .set("mode", std::string("linear"))
                   .set("coordinate_transformation_mode", std::string("half_pixel"))
                   .set("scales", std::vector<double>{2.0, 1.5}),
               {{2, 3, 4, 4}}});
  c.push_back({spec("Resize")
                   .set("mode", std::string("nearest"))
                   .set("coordinate_transformation_mode", std::string("asymmetric"))
                   .set("nearest_mode", std::string("floor"))
                   .set_ints("sizes", {7, 3}),
               {{2, 3, 4, 5}}});
  c.push_back({spec("LSTM").set_int("hidden_size", 2).set("direction", std::string("bidirectional")),
               {{2, 3, 2}, {2, 8, 2}, {2, 8, 2}, {2, 16}}});
  c.push_back({spec("GRU").set_int("hidden_size", 2).set("direction", std::string("reverse")),
               {{2, 3, 2}, {1, 6, 2}, {1, 6, 2}, {1, 12}}});
  c.push_back({spec("MaxPool")
                   .set_ints("kernel", {3, 2})
                   .set_ints("strides", {2, 1})
                   .set_ints("dilations", {1, 2})
                   .set_ints("pads", {1, 0, 2, 1})
                   .set_bool("ceil_mode", true),
               {{2, 3, 7, 8}}});
  c.push_back({spec("AveragePool")
                   .set_ints("kernel", {3, 3})
                   .set_ints("strides", {2, 2})
                   .set_ints("pads", {1, 1, 1, 1})
                   .set_bool("count_include_pad", true),
               {{2, 3, 7, 7}}});
  c.push_back({spec("GlobalAveragePool"), {{2, 3, 4, 5}}});
  c.push_back({spec("Softmax").set_int("axis", 1), {{2, 3, 4}}});
  c.push_back({spec("LogSoftmax").set_int("axis", -1), {{2, 3, 4}}});
  c.push_back({spec("ReduceMean").set_ints("axes", {1}).set_bool("keepdims", false), {{2, 3, 4}}});
  c.push_back({spec("ReduceSum").set_ints("axes", {-1}), {{2, 3, 4}}});
  c.push_back({spec("BatchNormalization").set_float("epsilon", 0.0009765625).set_bool("training", true),
               {{2, 3, 4, 4}, {3}, {3}, {3}, {3}}});
  c.push_back({spec("InstanceNormalization").set_float("epsilon", 0.0009765625), {{2, 3, 4, 4}, {3}, {3}}});
  c.push_back(
      {spec("LayerNormalization").set_int("axis", -1).set_float("epsilon", 0.0001220703125), {{2, 3, 4}, {4}, {4}}});
  c.push_back({spec("Reshape").set_ints("shape", {0, -1}), {{2, 3, 4}}});
  c.push_back({spec("Flatten").set_int("axis", 2), {{2, 3, 4}}});
  c.push_back({spec("Transpose").set_ints("perm", {0, 2, 1}), {{2, 3, 4}}});
  c.push_back({spec("Slice")
                   .set_ints("starts", {1, 0})
                   .set_ints("ends", {3, -1})
                   .set_ints("axes", {1, 2})
                   .set_ints("steps", {1, 2}),
               {{2, 4, 5}}});
  c.push_back({spec("Concat").set_int("axis", 1), {{2, 3, 4}, {2, 3, 4}}, true});
  c.push_back({spec("Gather").set_int("axis", 1).set_ints("indices", {2, 0, -1, 1}).set_ints("indices_shape", {2, 2}),
               {{2, 4, 3}}});
  // Input 1 holds ids (integer_inputs): the table is the data input here, ids a constant.
  c.push_back({spec("Embedding").set_int("axis", 1), {{2, 4, 3}, {2, 2}}});
  c.push_back({spec("Unsqueeze").set_ints("axes", {1}), {{2, 3}}});
  c.push_back({spec("Squeeze").set_ints("axes", {1}), {{2, 1, 3}}});
  for (const char* t : {"Dropout", "Cast", "Pad"}) c.push_back({spec(t), {{2, 3}}});
  c.push_back({spec("FakeQuantize").set_float("scale", 0.125).set_int("zero_point", 1).set_int("qmin", -8).set_int("qmax", 7),
               {{2, 3, 4}}});
  return c;
}

// Values in [0.5, 1.5) rounded to float32 (exact through ONNX export), positive for Sqrt, Log and
// variances.
Tensor<double> values(const Shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  Tensor<double> t(s);
  for (auto& v : t.vec()) v = static_cast<float>(u(rng));
  return t;
}

Tensor<double> run_kernels(const Op& op, const std::vector<Tensor<double>>& in);

// Input i of an op of `type` holds integer ids (Embedding's indices): values() floored to {0, 1}.
Tensor<double> input_values(const std::string& type, std::size_t i, const Shape& s, std::uint64_t seed) {
  Tensor<double> t = values(s, seed);
  if (type == "Embedding" && i == 1)
    for (auto& v : t.vec()) v = std::floor(v);
  return t;
}

// All four kernels of `op` on inputs of `shapes` (so the sweep exercises what a model would run).
// Returns the forward output.
Tensor<double> run_kernels(const Op& op, const std::vector<Shape>& shapes) {
  std::vector<Tensor<double>> in;
  for (std::size_t i = 0; i < shapes.size(); ++i) in.push_back(input_values(op.type(), i, shapes[i], i + 1));
  return run_kernels(op, in);
}

Tensor<double> run_kernels(const Op& op, const std::vector<Tensor<double>>& in) {
  std::vector<Shape> shapes;
  for (const auto& t : in) shapes.push_back(t.shape());
  OpState<double> st;
  OpCtx<double> c;
  c.state = &st;
  for (const auto& t : in) c.in.push_back(t.cview());
  Tensor<double> y(op.output_shape(shapes));
  op.forward(c, y.view());
  c.out = y.cview();
  Tensor<double> g = values(y.shape(), 99);
  c.gout = g.cview();
  std::vector<Tensor<double>> gin;
  for (const auto& s : shapes) gin.emplace_back(s);
  for (auto& t : gin) c.gin.push_back(t.view());
  op.backward(c);
  const std::int64_t k = 2;
  std::vector<Tensor<double>> tin, tgin;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    tin.push_back(values(with_lead(k, shapes[i]), 50 + i));
    tgin.emplace_back(with_lead(k, shapes[i]));
  }
  c.k = k;
  for (auto& t : tin) c.tin.push_back(t.cview());
  Tensor<double> ty(with_lead(k, y.shape())), tg = values(with_lead(k, y.shape()), 77);
  c.tout = ty.view();
  op.jvp(c);
  c.tgout = tg.cview();
  for (auto& t : tgin) c.tgin.push_back(t.view());
  op.backward_tangent(c);
  return y;
}

bool same_bits(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

// The case as a model: input "x" (shapes[0] without its batch dim), constants "c1".., one node "op".
std::vector<int> case_inputs(Model& m, const Case& c) {
  std::vector<int> ins{m.add_input("x", Shape(c.shapes[0].begin() + 1, c.shapes[0].end()))};
  for (std::size_t i = 1; i < c.shapes.size(); ++i)
    ins.push_back(c.same_input ? ins[0]
                               : m.add_constant(std::string("c").append(std::to_string(i)),
                                                input_values(c.spec.type, i, c.shapes[i], i + 1)));
  return ins;
}
Model case_model(const Case& c) {
  Model m;
  const std::vector<int> ins = case_inputs(m, c);
  m.set_output(m.add_node("op", make_op(c.spec, "op"), ins));
  return m;
}

// Plain float64 forward pass of a model on the batch-2 data input of values(shape, 1).
Tensor<double> model_forward(const Model& m, const Shape& x_shape) {
  std::vector<Tensor<double>> vals(m.values().size());
  for (std::size_t v = 0; v < m.values().size(); ++v) {
    const Value& val = m.values()[v];
    if (val.kind == ValueKind::Input) vals[v] = values(x_shape, 1);
    if (val.kind == ValueKind::Parameter) vals[v] = m.param(val.index);
    if (val.kind == ValueKind::Constant) vals[v] = m.constant(val.index);
  }
  for (const Node& n : m.nodes()) {
    OpCtx<double> c;
    OpState<double> st;
    c.state = &st;
    std::vector<Shape> shapes;
    for (int v : n.inputs) c.in.push_back(vals[v].cview()), shapes.push_back(vals[v].shape());
    Tensor<double> out(n.op->output_shape(shapes));
    n.op->forward(c, out.view());
    vals[n.output] = std::move(out);
  }
  return vals[m.output()];
}

GraphTensors tensors_of(const Model& m) {
  GraphTensors t;
  t.load = [&m](const std::string& name, bool param) {
    const Value& v = m.values().at(m.find_value(name));
    return param ? m.param(v.index) : m.constant(v.index);
  };
  t.trainable = [](const std::string&) { return true; };
  return t;
}

std::string tmp(const std::string& name) {
  return (fs::temp_directory_path() / ("curv_test_op_specs_" + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST_CASE("OpSpec: typed reads, formatting, and what resolve_spec rejects") {
  OpSpec s("Custom");
  s.set_int("n", 3).set_bool("flag", true).set_float("eps", 0.25).set_ints("pads", {1, 2});
  s.set("scales", std::vector<double>{0.5, 2.0}).set("mode", std::string("same"));
  CHECK(s.get_int("n") == 3);
  CHECK(s.get_bool("flag"));
  CHECK(s.get_float("eps") == 0.25);
  CHECK(s.get_float("n") == 3.0);  // an Int reads as a Float
  CHECK(s.get_ints("pads") == std::vector<std::int64_t>{1, 2});
  CHECK(s.get_floats("pads") == std::vector<double>{1.0, 2.0});
  CHECK(s.get_floats("scales") == std::vector<double>{0.5, 2.0});
  CHECK(s.get_string("mode") == "same");
  CHECK(s.format() == "eps=0.25 flag=1 mode='same' n=3 pads=[1, 2] scales=[0.5, 2]");
  CHECK_THROWS_WITH_AS(s.get_int("eps"), "Custom: attribute 'eps' must be an integer, got 0.25", std::invalid_argument);
  CHECK_THROWS_WITH_AS(s.get_ints("missing"), "Custom: attribute 'missing' is missing", std::invalid_argument);
  CHECK_THROWS_WITH_AS(OpSpec(s).set_int("flag", 2).get_bool("flag"), "Custom: attribute 'flag' must be 0 or 1, got 2",
                       std::invalid_argument);
  CHECK(format_attr(0.1) == "0.1");  // shortest form that reads back exactly

  CHECK_THROWS_WITH_AS(resolve_spec(OpSpec("Hardmax")), "unsupported op type 'Hardmax'", std::invalid_argument);
  CHECK_THROWS_WITH_AS(resolve_spec(OpSpec("Relu").set_int("alpha", 1)),
                       "Relu: unknown attribute 'alpha' (it takes none)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(resolve_spec(OpSpec("Pow")), "Pow: attribute 'exponent' is required", std::invalid_argument);
  CHECK_THROWS_WITH_AS(resolve_spec(OpSpec("Flatten").set_float("axis", 1.5)),
                       "Flatten: attribute 'axis' must be an integer, got 1.5", std::invalid_argument);
  CHECK_THROWS_WITH_AS(resolve_spec(OpSpec("Gemm").set_int("transA", 2)),
                       "Gemm: attribute 'transA' must be 0 or 1, got 2", std::invalid_argument);
  const OpSpec leaky = resolve_spec(OpSpec("LeakyRelu").set_int("alpha", 1));  // Int -> Float
  CHECK(std::get<double>(leaky.attrs.at("alpha")) == 1.0);
  CHECK(resolve_spec(OpSpec("Softmax")).get_int("axis") == -1);  // defaults filled in
  CHECK_THROWS_WITH_AS(make_op(OpSpec("Flatten").set_ints("axis", {1}), "flat"),
                       "node 'flat' (Flatten): attribute 'axis' must be an integer, got [1]", std::invalid_argument);
}

TEST_CASE("every op type has a case here, and make_op(op->spec()) rebuilds it with the same forward pass") {
  std::set<std::string> covered;
  for (const Case& c : cases()) {
    CAPTURE(c.spec.type);
    covered.insert(c.spec.type);
    const OpPtr op = make_op(c.spec, "op");
    CHECK(op->type() == c.spec.type);
    const OpSpec s = op->spec();
    CHECK(s == resolve_spec(c.spec));  // complete: every attribute, defaults filled in
    CHECK(s.format() == op->attributes());
    const OpPtr again = make_op(s);
    CHECK(again->spec() == s);
    CHECK(same_bits(run_kernels(*op, c.shapes), run_kernels(*again, c.shapes)));
  }
  for (const OpTypeInfo& t : op_types()) {
    INFO("op type ", t.type, " needs a case in cases()");
    CHECK(covered.count(t.type) == 1);
  }
}

TEST_CASE("op specs round-trip through the checkpoint graph JSON (booleans stay JSON booleans)") {
  for (const Case& c : cases()) {
    CAPTURE(c.spec.type);
    const Model m = case_model(c);
    const std::string text = graph_to_json(m);
    const Model r = graph_from_json(text, tensors_of(m));
    CHECK(r.nodes().at(0).op->spec() == m.nodes().at(0).op->spec());
    CHECK(graph_to_json(r) == text);
    CHECK(same_bits(model_forward(r, c.shapes[0]), model_forward(m, c.shapes[0])));
  }
  const Case gemm{spec("Gemm").set_bool("transB", true), {{2, 3}, {4, 3}}};
  const nlohmann::json j = nlohmann::json::parse(graph_to_json(case_model(gemm)));
  CHECK(j["nodes"][0]["attrs"]["transB"] == true);
  CHECK(j["nodes"][0]["attrs"]["alpha"].is_number_float());
}

TEST_CASE("op specs round-trip through ONNX export and import") {
  for (const Case& c : cases()) {
    CAPTURE(c.spec.type);
    const Model m = case_model(c);
    const std::string path = tmp("op.onnx");
    if (c.spec.type == "FakeQuantize") {  // curv's own op: refused by name, nothing written
      const std::string fq = tmp("fake_quantize.onnx");
      CHECK_THROWS_WITH_AS(export_onnx(m, fq), doctest::Contains("node 'op' (FakeQuantize): curv's activation quantizer"),
                           std::runtime_error);
      CHECK_FALSE(std::filesystem::exists(fq));
      continue;
    }
    export_onnx(m, path);
    const Model r = import_onnx(path);
    const Tensor<double> a = model_forward(m, c.shapes[0]), b = model_forward(r, c.shapes[0]);
    REQUIRE(a.shape() == b.shape());
    double err = 0;
    for (std::int64_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(a.data()[i] - b.data()[i]));
    const bool decomposed = c.spec.type == "Gelu" || c.spec.type == "GeluTanh";
    CHECK(err <= (decomposed ? kGeluExportTol : 0.0));
    // Gelu is written as its Erf decomposition and fused back into Gelu on import; GeluTanh comes
    // back as its Tanh decomposition; an Embedding whose ids are a constant (as in this case)
    // folds into a constant Gather.
    if (c.spec.type == "Embedding") CHECK(r.nodes().back().op->type() == "Gather");
    else if (c.spec.type != "GeluTanh") CHECK(r.nodes().back().op->type() == c.spec.type);
    if (c.spec.type == "Gelu") CHECK(r.nodes().size() == 1);
    std::remove(path.c_str());
  }
}

// The /graph of a LeNet checkpoint written before ops had specs: builder ops were described from
// their printed attributes, so Conv has no dilations or group and MaxPool no dilations or modes.
TEST_CASE("an exported GELU (Div, Erf, Add, Mul, Mul) imports as one Gelu node, and look-alikes do not") {
  // scripts/make_op_fixtures.py: out = a + b + c + e, a an exported GELU, b the same with x / 2,
  // c an exported GELU whose Erf output e is also read elsewhere.
  const Model m = import_onnx(ops_fixture("gelu_patterns.onnx"));
  int gelus = 0, erfs = 0;
  for (const Node& n : m.nodes()) {
    gelus += n.op->type() == "Gelu";
    erfs += n.op->type() == "Erf";
  }
  CHECK(gelus == 1);
  CHECK(erfs == 2);
  CHECK(m.meta().at("fused_gelus") == "1");
  CHECK(m.num_params() == 0);
  CHECK(m.find_value("/a/Gelu") >= 0);
  const Shape shape{2, 4, 4, 4};
  const Tensor<double> x = values(shape, 1), y = model_forward(m, shape);
  const double s2 = static_cast<float>(std::sqrt(2.0));
  for (std::int64_t i = 0; i < x.size(); ++i) {
    const double v = x.data()[i], e = std::erf(v / s2);
    const double want = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))) + 0.5 * v * (1 + std::erf(v / 2)) +
                        0.5 * v * (1 + e) + e;
    CHECK(y.data()[i] == doctest::Approx(want).epsilon(1e-12));
  }
}

TEST_CASE("graphs written before op specs load into the same ops") {
  const char* legacy = R"({"input": {"name": "input", "shape": [1, 12, 12]}, "nodes": [
    {"attrs": {"kernel": [5, 5], "pads": [2, 2, 2, 2], "strides": [1, 1]}, "inputs": ["input", "conv1.weight", "conv1.bias"], "name": "conv1/Conv", "type": "Conv"},
    {"attrs": {}, "inputs": ["conv1/Conv"], "name": "/Relu_0", "type": "Relu"},
    {"attrs": {"kernel": [2, 2], "pads": [0, 0, 0, 0], "strides": [2, 2]}, "inputs": ["/Relu_0"], "name": "/MaxPool_1", "type": "MaxPool"},
    {"attrs": {"kernel": [5, 5], "pads": [0, 0, 0, 0], "strides": [1, 1]}, "inputs": ["/MaxPool_1", "conv2.weight", "conv2.bias"], "name": "conv2/Conv", "type": "Conv"},
    {"attrs": {}, "inputs": ["conv2/Conv"], "name": "/Relu_2", "type": "Relu"},
    {"attrs": {"kernel": [2, 2], "pads": [0, 0, 0, 0], "strides": [2, 2]}, "inputs": ["/Relu_2"], "name": "/MaxPool_3", "type": "MaxPool"},
    {"attrs": {"axis": 1}, "inputs": ["/MaxPool_3"], "name": "/Flatten_4", "type": "Flatten"},
    {"attrs": {"transA": false, "transB": true}, "inputs": ["/Flatten_4", "fc1.weight", "fc1.bias"], "name": "fc1/Gemm", "type": "Gemm"},
    {"attrs": {}, "inputs": ["fc1/Gemm"], "name": "/Relu_5", "type": "Relu"},
    {"attrs": {"transA": false, "transB": true}, "inputs": ["/Relu_5", "fc2.weight", "fc2.bias"], "name": "fc2/Gemm", "type": "Gemm"},
    {"attrs": {}, "inputs": ["fc2/Gemm"], "name": "/Relu_6", "type": "Relu"},
    {"attrs": {"transA": false, "transB": true}, "inputs": ["/Relu_6", "fc3.weight", "fc3.bias"], "name": "fc3/Gemm", "type": "Gemm"}],
    "output": "fc3/Gemm", "values": [{"kind": "input", "name": "input"}, {"kind": "param", "name": "conv1.weight"},
    {"kind": "param", "name": "conv1.bias"}, {"kind": "node", "name": "conv1/Conv"}, {"kind": "node", "name": "/Relu_0"},
    {"kind": "node", "name": "/MaxPool_1"}, {"kind": "param", "name": "conv2.weight"}, {"kind": "param", "name": "conv2.bias"},
    {"kind": "node", "name": "conv2/Conv"}, {"kind": "node", "name": "/Relu_2"}, {"kind": "node", "name": "/MaxPool_3"},
    {"kind": "node", "name": "/Flatten_4"}, {"kind": "param", "name": "fc1.weight"}, {"kind": "param", "name": "fc1.bias"},
    {"kind": "node", "name": "fc1/Gemm"}, {"kind": "node", "name": "/Relu_5"}, {"kind": "param", "name": "fc2.weight"},
    {"kind": "param", "name": "fc2.bias"}, {"kind": "node", "name": "fc2/Gemm"}, {"kind": "node", "name": "/Relu_6"},
    {"kind": "param", "name": "fc3.weight"}, {"kind": "param", "name": "fc3.bias"}, {"kind": "node", "name": "fc3/Gemm"}]})";
  const Model ref = build_arch("lenet", {1, 12, 12}, 3, 5);
  const Model m = graph_from_json(legacy, tensors_of(ref));
  REQUIRE(m.nodes().size() == ref.nodes().size());
  for (std::size_t i = 0; i < m.nodes().size(); ++i) {
    CAPTURE(m.nodes()[i].name);
    CHECK(m.nodes()[i].op->spec() == ref.nodes()[i].op->spec());
  }
  CHECK(same_bits(model_forward(m, {2, 1, 12, 12}), model_forward(ref, {2, 1, 12, 12})));
}

// Checkpoints written by curv before op specs (commit 7f793d2): `curv convert` of
// data/fixtures/cnn_bn.onnx, and `curv train --arch vit:6-4-1-2 --data random:1x12x12:3:8
// --epochs 1 --batch-size 8 --seed 1` (its /graph holds attributes recovered from printed op
// descriptions). Each must rebuild the ops of its source, evaluate bit-identically to them, and
// give the loss that curv printed for `curv eval --precision float64` (cnn_bn on its npz, vit on
// random:1x12x12:3:16), up to the rounding differences of other compiler flags.
TEST_CASE("checkpoints written before op specs rebuild the same ops and evaluate to the same loss") {
  constexpr double kFlagsTol = 1e-12;  // the references come from a -O3 -march=native build
  ObjectiveOptions o;
  o.precision = Precision::Float64;
  auto loss = [&](const Model& m, const Dataset& d) { return Objective::create(m, d, o)->evaluate().loss; };
  auto same_ops = [](const Model& a, const Model& b) {
    REQUIRE(a.nodes().size() == b.nodes().size());
    for (std::size_t i = 0; i < a.nodes().size(); ++i) {
      CAPTURE(a.nodes()[i].name);
      CHECK(a.nodes()[i].name == b.nodes()[i].name);
      CHECK(a.nodes()[i].op->spec() == b.nodes()[i].op->spec());
    }
  };
  {
    const Model legacy = load_checkpoint(ops_fixture("legacy_cnn_bn.h5"));
    const Model onnx = import_onnx(std::string(CURV_SOURCE_DIR) + "/data/fixtures/cnn_bn.onnx");
    const Dataset d = load_dataset(std::string(CURV_SOURCE_DIR) + "/data/fixtures/cnn_bn.npz");
    same_ops(legacy, onnx);
    CHECK(loss(legacy, d) == loss(onnx, d));
    CHECK(std::abs(loss(legacy, d) - 1.148081429183239) <= kFlagsTol);
  }
  {
    const Model legacy = load_checkpoint(ops_fixture("legacy_vit.h5"));
    Model arch = build_arch("vit:6-4-1-2", {1, 12, 12}, 3, 0);
    same_ops(legacy, arch);
    arch.set_flat_params(legacy.flat_params());
    const Dataset d = load_dataset("random:1x12x12:3:16");
    CHECK(loss(legacy, d) == loss(arch, d));
    CHECK(std::abs(loss(legacy, d) - 1.176764753451898) <= kFlagsTol);
  }
}

TEST_CASE("attribute sweep: every bad value of every attribute is an error naming the node, never a crash") {
  const std::vector<std::int64_t> ints{0, -1, 1, 2, 7, -7, std::int64_t(1) << 31, kBig, -kBig, kMin, kMax};
  const std::vector<double> floats{0.0,
                                   -1.0,
                                   1e300,
                                   -1e300,
                                   std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity()};
  int built = 0, rejected = 0;
  for (const Case& c : cases()) {
    const OpSpec base = resolve_spec(c.spec);
    std::vector<OpSpec> bad;
    for (const auto& [name, v] : base.attrs) {
      auto with = [&, n = name](AttrValue x) { bad.push_back(OpSpec(base).set(n, std::move(x))); };
      switch (kind_of(v)) {
        case AttrKind::Int:
          for (auto x : ints) with(x);
          with(std::vector<std::int64_t>{1});
          break;
        case AttrKind::Float:
          for (auto x : floats) with(x);
          with(std::string("x"));
          break;
        case AttrKind::Ints: {
          const auto& l = std::get<std::vector<std::int64_t>>(v);
          for (std::size_t i = 0; i < l.size(); ++i)
            for (auto x : ints) {
              auto m = l;
              m[i] = x;
              with(m);
            }
          with(std::vector<std::int64_t>{});
          if (!l.empty()) {
            with(std::vector<std::int64_t>(l.begin(), l.end() - 1));
            auto dup = l;
            dup.push_back(l[0]);
            with(dup);
          }
          auto longer = l;
          longer.push_back(kBig);
          with(longer);
          with(std::int64_t(2));
          break;
        }
        default:
          break;
      }
    }
    bad.push_back(OpSpec(base).set("no_such_attribute", std::int64_t(1)));
    for (const OpSpec& s : bad) {
      CAPTURE(s.type);
      CAPTURE(s.format());
      try {
        Model m;
        const std::vector<int> ins = case_inputs(m, c);
        m.add_node("node", make_op(s, "node"), ins);
        run_kernels(*m.nodes()[0].op, c.shapes);  // a value that passes must run (sanitizers watch)
        ++built;
      } catch (const std::invalid_argument& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find("node 'node'") != std::string::npos);
        ++rejected;
      }
    }
  }
  MESSAGE("attribute sweep: " << built << " specs built and run, " << rejected << " rejected");
  CHECK(built > 100);
  CHECK(rejected > 500);
}

// The values that crashed curv before attributes were checked: heap corruption (MaxPool kernel <= 0
// or pads >= kernel), a segfault (MaxPool pads 2^62), SIGFPE (stride 0 in Conv, MaxPool, AveragePool).
TEST_CASE("known crashes are errors naming the node") {
  auto pool = [](const char* type, std::vector<std::int64_t> k, std::vector<std::int64_t> s,
                 std::vector<std::int64_t> p) {
    return OpSpec(type)
        .set_ints("kernel", std::move(k))
        .set_ints("strides", std::move(s))
        .set_ints("pads", std::move(p));
  };
  CHECK_THROWS_WITH_AS(make_op(pool("MaxPool", {0, 0}, {1, 1}, {0, 0, 0, 0}), "p"),
                       "node 'p' (MaxPool): kernel_shape must be >= 1, got [0, 0]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("MaxPool", {-2, 2}, {1, 1}, {0, 0, 0, 0}), "p"),
                       "node 'p' (MaxPool): kernel_shape must be >= 1, got [-2, 2]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("MaxPool", {2, 2}, {1, 1}, {0, 2, 0, 0}), "p"),
                       "node 'p' (MaxPool): pads [0, 2, 0, 0] must be smaller than the kernel_shape [2, 2]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("MaxPool", {2, 2}, {1, 1}, {kBig, 0, 0, 0}), "p"),
                       "node 'p' (MaxPool): pads must be <= 4294967296, got [4611686018427387904, 0, 0, 0]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("MaxPool", {2, 2}, {0, 1}, {0, 0, 0, 0}), "p"),
                       "node 'p' (MaxPool): strides must be >= 1, got [0, 1]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("AveragePool", {2, 2}, {1, 0}, {0, 0, 0, 0}), "p"),
                       "node 'p' (AveragePool): strides must be >= 1, got [1, 0]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_op(pool("Conv", {3, 3}, {0, 0}, {1, 1, 1, 1}), "c"),
                       "node 'c' (Conv): strides must be >= 1, got [0, 0]", std::invalid_argument);
  // A dilated MaxPool whose window skips the whole input (no element to take the max of).
  const OpPtr gap = make_op(pool("MaxPool", {2, 1}, {1, 1}, {1, 0, 1, 0}).set_ints("dilations", {2, 1}));
  CHECK_THROWS_WITH_AS(gap->output_shape({{1, 1, 1, 3}}), doctest::Contains("covers no element of the input"),
                       std::invalid_argument);
  // Sizes that overflow int64 or exceed kMaxTensorElements are errors, not wrap-arounds.
  CHECK_THROWS_WITH_AS(make_op(OpSpec("Reshape").set_ints("shape", {kBig, 4}))->output_shape({{2, 3}}),
                       doctest::Contains("overflows"), std::invalid_argument);
  Model m;
  const int x = m.add_input("x", {1, 8, 8});
  Conv2dAttrs a;
  a.kernel = {1, 1};
  a.pads = {0, 0, 0, std::int64_t(1) << 31};
  const int w = m.add_constant("w", Tensor<double>({1, 1, 1, 1}));
  CHECK_THROWS_WITH_AS(m.add_node("wide", make_conv(a), {x, w}), doctest::Contains("is too large"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Model().add_input("y", {kBig, kBig}), doctest::Contains("too large"), std::invalid_argument);
}

TEST_CASE("ONNX files and checkpoints with bad attributes: one error naming the file and the node") {
  std::ifstream in(ops_fixture("bad_attributes.json"));
  const nlohmann::json expect = nlohmann::json::parse(in);
  REQUIRE(expect.size() >= 30);
  for (const auto& [file, what] : expect.items()) {
    CAPTURE(file);
    const std::string path = ops_fixture(file);
    const std::string msg = what.get<std::string>();
    const bool onnx = file.size() > 5 && file.substr(file.size() - 5) == ".onnx";
    CHECK_THROWS_WITH_AS(onnx ? import_onnx(path) : load_checkpoint(path), doctest::Contains((path + ": ").c_str()),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(onnx ? import_onnx(path) : load_checkpoint(path), doctest::Contains(msg.c_str()),
                         std::runtime_error);
    curv_test::check_bad("info " + path, msg);  // `curv info`: one line, exit status 2
  }
}

TEST_CASE("model names must be UTF-8 and the output must keep the batch axis first") {
  using curv::Model;
  auto error_of = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  Model m;
  CHECK(error_of([&] { m.add_input("x\xC3", {3}); }) == "model: value name 'x\\xc3' is not valid UTF-8");  // truncated
  CHECK(error_of([&] { m.add_input("\xC0\xAF", {3}); }).find("not valid UTF-8") != std::string::npos);   // overlong
  CHECK(error_of([&] { m.add_input("\xED\xA0\x80", {3}); }).find("not valid UTF-8") != std::string::npos);  // surrogate
  CHECK(error_of([&] { m.add_input("\xF4\x90\x80\x80", {3}); }).find("not valid UTF-8") != std::string::npos);  // > U+10FFFF
  const int x = m.add_input("x \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", {4, 3});  // é € 😀 are fine
  const int over_batch = m.add_node("mean0", curv::make_reduce(true, {0}, false), {x});
  const int squeezed = m.add_node("sq", curv::make_squeeze({}), {x});
  const int per_sample = m.add_node("mean2", curv::make_reduce(true, {2}, false), {x});
  curv::Dataset d;
  d.source = "mem";
  d.sample_shape = {4, 3};
  d.x.assign(24, 0.5f);
  d.target_shape = {4};
  d.targets.assign(8, 0.f);
  auto objective_error = [&](int out) {
    m.set_output(out);
    return error_of([&] { (void)curv::Objective::create(m, d); });
  };
  CHECK(objective_error(over_batch) ==
        "objective: model output 'mean0' does not keep the batch axis first (shape [4, 3] for 1 sample, [4, 3] for 2)");
  CHECK(objective_error(squeezed).find("does not keep the batch axis first") != std::string::npos);
  CHECK(objective_error(per_sample).empty());
}
