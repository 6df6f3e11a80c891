#include "src/io/onnx_export.h"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <utility>

#include "src/core/elementwise_table.h"
#include "src/core/op_registry.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"

namespace curv {

namespace {

constexpr int kOpset = 17;
constexpr int kIrVersion = 8;

[[noreturn]] void fail(const std::string& file, const std::string& msg) { throw std::runtime_error(file + ": " + msg); }

class Exporter {
 public:
  Exporter(const Model& m, const std::string& path) : m_model(m), m_path(path) {}

  onnx::ModelProto run() {
    onnx::ModelProto mp;
    mp.set_ir_version(kIrVersion);
    mp.set_producer_name("curv");
#ifdef CURV_VERSION
    mp.set_producer_version(CURV_VERSION);
#endif
    auto* op = mp.add_opset_import();
    op->set_domain("");
    op->set_version(kOpset);
    m_graph = mp.mutable_graph();
    m_graph->set_name("curv");
    for (int i : m_model.inputs()) {
      const Value& in = m_model.values().at(i);
      add_value_info(m_graph->add_input(), in.name, in.shape,
                     in.integer ? onnx::TensorProto_DataType_INT64 : onnx::TensorProto_DataType_FLOAT);
    }
    // Parameters are initializers; constants (BatchNorm statistics, graph constants) are Constant
    // nodes, so that an importer keeps them out of the trainable set.
    // Constants read only as booleans (a folded mask as Where's condition) are written as BOOL.
    std::vector<int> bool_uses(m_model.values().size(), 0), other_uses(m_model.values().size(), 0);
    for (const Node& n : m_model.nodes())
      for (std::size_t k = 0; k < n.inputs.size(); ++k)
        (bool_input(n.op->type(), k) ? bool_uses : other_uses)[n.inputs[k]]++;
    for (std::size_t i = 0; i < m_model.values().size(); ++i)
      m_bool_const.push_back(m_model.values()[i].kind == ValueKind::Constant && bool_uses[i] > 0 && !other_uses[i]);
    for (const Value& v : m_model.values()) {
      if (v.kind == ValueKind::Parameter) add_float_init(v.name, m_model.param(v.index));
      if (v.kind == ValueKind::Constant) {
        auto* n = add_node("Constant", v.name, {}, v.name);
        auto* a = n->add_attribute();
        a->set_name("value");
        a->set_type(onnx::AttributeProto_AttributeType_TENSOR);
        const Tensor<double>& t = m_model.constant(v.index);
        if (m_bool_const[&v - m_model.values().data()]) {
          auto* p = a->mutable_t();
          p->set_name(v.name);
          p->set_data_type(onnx::TensorProto_DataType_BOOL);
          for (auto d : t.shape()) p->add_dims(d);
          std::string raw(static_cast<std::size_t>(t.size()), '\0');
          for (std::int64_t k = 0; k < t.size(); ++k) raw[k] = t.data()[k] != 0.0 ? 1 : 0;
          p->set_raw_data(raw);
        } else {
          fill_float(a->mutable_t(), v.name, t);
        }
      }
    }
    for (std::size_t i = 0; i < m_model.nodes().size(); ++i) {
      try {
        export_node(static_cast<int>(i));
      } catch (const std::invalid_argument& e) {
        const Node& n = m_model.nodes()[i];
        fail(m_path, "node '" + n.name + "' (" + n.op->type() + "): " + e.what());
      }
    }
    const Value& out = m_model.values().at(m_model.output());
    add_value_info(m_graph->add_output(), out.name, Shape(out.shape.begin() + 1, out.shape.end()));
    return mp;
  }

 private:
  void add_value_info(onnx::ValueInfoProto* vi, const std::string& name, const Shape& sample,
                      int elem_type = onnx::TensorProto_DataType_FLOAT) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem_type);
    auto* shape = tt->mutable_shape();
    shape->add_dim()->set_dim_param("N");
    for (auto d : sample) shape->add_dim()->set_dim_value(d);
  }
  void add_float_init(const std::string& name, const Tensor<double>& t) {
    fill_float(m_graph->add_initializer(), name, t);
  }
  static void fill_float(onnx::TensorProto* p, const std::string& name, const Tensor<double>& t) {
    p->set_name(name);
    p->set_data_type(onnx::TensorProto_DataType_FLOAT);
    for (auto d : t.shape()) p->add_dims(d);
    std::string raw(static_cast<std::size_t>(t.size()) * sizeof(float), '\0');
    for (std::int64_t k = 0; k < t.size(); ++k) {
      const float f = static_cast<float>(t.data()[k]);
      std::memcpy(raw.data() + k * sizeof(float), &f, sizeof(float));
    }
    p->set_raw_data(raw);
  }
  // A fresh initializer name derived from the node.
  std::string const_name(const std::string& node, const std::string& what) {
    std::string name = node;
    name += "::";
    name += what;
    name += '_';
    name += std::to_string(m_counter++);
    return name;
  }
  std::string add_int_init(const std::string& node, const std::string& what, const std::vector<std::int64_t>& v,
                           Shape shape = {-1}) {
    auto* p = m_graph->add_initializer();
    const std::string name = const_name(node, what);
    p->set_name(name);
    p->set_data_type(onnx::TensorProto_DataType_INT64);
    if (shape.size() == 1 && shape[0] == -1) shape = {static_cast<std::int64_t>(v.size())};
    for (auto d : shape) p->add_dims(d);
    for (auto x : v) p->add_int64_data(x);
    return name;
  }
  // A float tensor as a Constant node (not an initializer: it must not become a parameter).
  std::string add_float_const(const std::string& node, const std::string& what, const Tensor<double>& t) {
    const std::string name = const_name(node, what);
    auto* n = add_node("Constant", name, {}, name);
    auto* a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto_AttributeType_TENSOR);
    fill_float(a->mutable_t(), name, t);
    return name;
  }
  std::string add_scalar_init(const std::string& node, const std::string& what, double v) {
    return add_float_const(node, what, Tensor<double>(Shape{}, {v}));
  }
  onnx::NodeProto* add_node(const std::string& type, const std::string& name, const std::vector<std::string>& ins,
                            const std::string& out) {
    auto* n = m_graph->add_node();
    n->set_op_type(type);
    n->set_name(name);
    for (const auto& i : ins) n->add_input(i);
    n->add_output(out);
    return n;
  }
  // The name of value v cast to ONNX type `to` (one Cast node per value and type).
  std::string cast_of(int v, int to, const std::string& suffix) {
    const auto key = std::make_pair(v, to);
    if (const auto it = m_casts.find(key); it != m_casts.end()) return it->second;
    const std::string& name = m_model.values().at(v).name;
    set_i(add_node("Cast", name + suffix, {name}, name + suffix), "to", to);
    return m_casts[key] = name + suffix;
  }
  static void set_i(onnx::NodeProto* n, const char* name, std::int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INT);
    a->set_i(v);
  }
  static void set_f(onnx::NodeProto* n, const char* name, double v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void set_ints(onnx::NodeProto* n, const char* name, const std::vector<std::int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INTS);
    for (auto x : v) a->add_ints(x);
  }
  void export_node(int i) {
    const Node& node = m_model.nodes()[i];
    const OpSpec a = node.op->spec();
    const std::string& t = a.type;
    std::vector<std::string> ins;
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      const int v = node.inputs[k];
      const Value& val = m_model.values().at(v);
      // Integer data (token ids, masks) is INT64 in the file and float in curv: ops other than
      // an Embedding's indices and Cast read it through one Cast(to FLOAT), and an Embedding
      // whose indices were computed in float reads them through Cast(to INT64), so that every
      // node sees the types ONNX requires.
      const bool index = t == "Embedding" && k == 1;
      const bool int_input = val.kind == ValueKind::Input && val.integer;
      if (int_input && !index && t != "Cast")
        ins.push_back(cast_of(v, onnx::TensorProto_DataType_FLOAT, "/float"));
      else if (index && !int_input)
        ins.push_back(cast_of(v, onnx::TensorProto_DataType_INT64, "/int64"));
      else
        ins.push_back(val.name);
    }
    const std::string& out = m_model.values().at(node.output).name;
    const std::string& nm = node.name;

    // Booleans are 0 / 1 floats in curv and BOOL in ONNX: the inputs of Not, And and Where's
    // condition go through Cast(to BOOL), the outputs of Not, And and the comparisons through
    // Cast(to FLOAT), so the file is typed as ONNX requires (the importer drops these Casts again).
    const bool logical = t == "Not" || t == "And";
    if (logical || t == "Where")
      for (std::size_t k = 0; k < (t == "Where" ? 1 : ins.size()); ++k) {
        if (m_bool_const[node.inputs[k]]) continue;
        const std::string b = nm + "/bool" + std::to_string(k);
        set_i(add_node("Cast", b, {ins[k]}, b + "_out"), "to", onnx::TensorProto_DataType_BOOL);
        ins[k] = b + "_out";
      }
    if (logical || t == "Equal" || t == "Less" || t == "Greater") {
      add_node(t, nm, ins, nm + "/bool_out");
      set_i(add_node("Cast", nm + "/float", {nm + "/bool_out"}, out), "to", onnx::TensorProto_DataType_FLOAT);
      return;
    }
    if (t == "FakeQuantize")  // levels qmin..qmax of any width: ONNX QuantizeLinear (opset < 21) has int8/uint8 only
      throw std::invalid_argument("curv's activation quantizer (" + a.format() +
                                  ") has no ONNX form; keep the model as a curv checkpoint");
    if (t == "Gelu") {  // 0.5 x (1 + erf(x / sqrt 2)): ONNX has Gelu only from opset 20
      const std::string x = ins.at(0);
      add_node("Div", nm + "/div", {x, add_scalar_init(nm, "sqrt2", std::sqrt(2.0))}, nm + "/div_out");
      add_node("Erf", nm + "/erf", {nm + "/div_out"}, nm + "/erf_out");
      add_node("Add", nm + "/add", {nm + "/erf_out", add_scalar_init(nm, "one", 1.0)}, nm + "/add_out");
      add_node("Mul", nm + "/mul", {x, nm + "/add_out"}, nm + "/mul_out");
      add_node("Mul", nm, {nm + "/mul_out", add_scalar_init(nm, "half", 0.5)}, out);
      return;
    }
    if (t == "GeluTanh") {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as PyTorch exports it
      const std::string x = ins.at(0);
      add_node("Mul", nm + "/x2", {x, x}, nm + "/x2_out");
      add_node("Mul", nm + "/x3", {nm + "/x2_out", x}, nm + "/x3_out");
      add_node("Mul", nm + "/ax3", {nm + "/x3_out", add_scalar_init(nm, "a", 0.044715)}, nm + "/ax3_out");
      add_node("Add", nm + "/inner", {x, nm + "/ax3_out"}, nm + "/inner_out");
      add_node("Mul", nm + "/u", {nm + "/inner_out", add_scalar_init(nm, "c", std::sqrt(2.0 / M_PI))}, nm + "/u_out");
      add_node("Tanh", nm + "/tanh", {nm + "/u_out"}, nm + "/tanh_out");
      add_node("Add", nm + "/add", {nm + "/tanh_out", add_scalar_init(nm, "one", 1.0)}, nm + "/add_out");
      add_node("Mul", nm + "/mul", {x, nm + "/add_out"}, nm + "/mul_out");
      add_node("Mul", nm, {nm + "/mul_out", add_scalar_init(nm, "half", 0.5)}, out);
      return;
    }
    if (t == "Pad") {  // the no-op Pad exporters emit before AveragePool
      const auto rank = static_cast<std::int64_t>(m_model.values().at(node.inputs.at(0)).shape.size()) +
                        (m_model.values().at(node.inputs.at(0)).kind == ValueKind::Input ? 1 : 0);
      ins.push_back(add_int_init(nm, "pads", std::vector<std::int64_t>(2 * rank, 0)));
      add_node(t, nm, ins, out);
      return;
    }
    if (t == "Cast") {
      set_i(add_node(t, nm, ins, out), "to", onnx::TensorProto_DataType_FLOAT);
      return;
    }
    // Attributes that ONNX takes as constant inputs.
    if (t == "Pow") {
      ins.push_back(add_scalar_init(nm, "exponent", a.get_float("exponent")));
      add_node(t, nm, ins, out);
      return;
    }
    if (t == "Clip") {  // bounds at their defaults are absent inputs
      const double lo = a.get_float("min"), hi = a.get_float("max");
      const bool has_hi = hi != kClipNone;
      ins.push_back(lo != -kClipNone ? add_scalar_init(nm, "min", lo) : std::string());
      if (has_hi) ins.push_back(add_scalar_init(nm, "max", hi));
      if (!has_hi && lo == -kClipNone) ins.pop_back();
      add_node(t, nm, ins, out);
      return;
    }
    if (t == "Resize") {  // X, roi (absent), scales [1, 1, sh, sw] or sizes [N, C, Ho, Wo] from Shape(X)
      const auto scales = a.get_floats("scales");
      ins.push_back("");
      if (!scales.empty()) {
        ins.push_back(add_float_const(nm, "scales", Tensor<double>(Shape{4}, {1.0, 1.0, scales[0], scales[1]})));
      } else {
        const auto& hw = a.get_ints("sizes");
        add_node("Shape", nm + "/shape", {ins.at(0)}, nm + "/shape_out");
        add_node("Slice", nm + "/nc", {nm + "/shape_out", add_int_init(nm, "start", {0}), add_int_init(nm, "end", {2})},
                 nm + "/nc_out");
        auto* c = add_node("Concat", nm + "/sizes", {nm + "/nc_out", add_int_init(nm, "hw", hw)}, nm + "/sizes_out");
        set_i(c, "axis", 0);
        ins.push_back("");
        ins.push_back(nm + "/sizes_out");
      }
      auto* n = add_node(t, nm, ins, out);
      auto set_s = [&](const char* k) {
        auto* at = n->add_attribute();
        at->set_name(k);
        at->set_type(onnx::AttributeProto_AttributeType_STRING);
        at->set_s(a.get_string(k));
      };
      set_s("mode");
      set_s("coordinate_transformation_mode");
      set_s("nearest_mode");
      return;
    }
    if (t == "Reshape") {
      ins.push_back(add_int_init(nm, "shape", a.get_ints("shape")));
      auto* n = add_node(t, nm, ins, out);
      if (a.get_bool("allowzero")) set_i(n, "allowzero", 1);
      return;
    }
    if (t == "Slice") {
      auto starts = a.get_ints("starts"), ends = a.get_ints("ends"), axes = a.get_ints("axes"),
           steps = a.get_ints("steps");
      if (axes.empty() && !steps.empty())
        for (std::size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<std::int64_t>(k));
      ins.push_back(add_int_init(nm, "starts", starts));
      ins.push_back(add_int_init(nm, "ends", ends));
      if (!axes.empty()) ins.push_back(add_int_init(nm, "axes", axes));
      if (!steps.empty()) ins.push_back(add_int_init(nm, "steps", steps));
      add_node(t, nm, ins, out);
      return;
    }
    if (t == "Embedding") {  // ONNX Gather with the indices as a graph value
      set_i(add_node("Gather", nm, ins, out), "axis", a.get_int("axis"));
      return;
    }
    if (t == "Expand" && !a.get_ints("batch_axes").empty()) {
      // shape = static shape + (N - 1) * onehot(batch axes), N = Shape(reference)[0:1]
      const auto shape = a.get_ints("shape");
      std::vector<std::int64_t> onehot(shape.size(), 0);
      for (auto ax : a.get_ints("batch_axes")) onehot[ax] = 1;
      add_node("Shape", nm + "/ref_shape", {ins[1]}, nm + "/ref_shape");
      add_node("Slice", nm + "/batch", {nm + "/ref_shape", add_int_init(nm, "zero", {0}), add_int_init(nm, "one", {1})},
               nm + "/batch");
      add_node("Sub", nm + "/batch_m1", {nm + "/batch", add_int_init(nm, "one_again", {1})}, nm + "/batch_m1");
      add_node("Mul", nm + "/grow", {nm + "/batch_m1", add_int_init(nm, "onehot", onehot)}, nm + "/grow");
      add_node("Add", nm + "/shape", {nm + "/grow", add_int_init(nm, "shape", shape)}, nm + "/shape");
      add_node(t, nm, {ins[0], nm + "/shape"}, out);
      return;
    }
    if (t == "Expand" || t == "Tile") {
      const char* k = t == "Expand" ? "shape" : "repeats";
      ins.push_back(add_int_init(nm, k, a.get_ints(k)));
      add_node(t, nm, ins, out);
      return;
    }
    if (t == "Trilu") {
      ins.push_back(add_int_init(nm, "k", {a.get_int("k")}, {}));
      set_i(add_node(t, nm, ins, out), "upper", a.get_bool("upper") ? 1 : 0);
      return;
    }
    if (t == "Gather") {
      ins.push_back(add_int_init(nm, "indices", a.get_ints("indices"), a.get_ints("indices_shape")));
      set_i(add_node(t, nm, ins, out), "axis", a.get_int("axis"));
      return;
    }
    if (t == "Unsqueeze" || t == "Squeeze" || t == "ReduceSum") {
      const auto& axes = a.get_ints("axes");
      if (!axes.empty()) ins.push_back(add_int_init(nm, "axes", axes));
      auto* n = add_node(t, nm, ins, out);
      if (t == "ReduceSum") set_i(n, "keepdims", a.get_bool("keepdims") ? 1 : 0);
      return;
    }
    // Attributes that are ONNX attributes.
    auto* n = add_node(t, nm, ins, out);
    const OpTypeInfo* info = find_op_type(t);
    if (info && info->unary)  // the parameter of a unary op (LeakyRelu: alpha)
      for (const AttrInfo& p : info->attrs) set_f(n, p.name.c_str(), a.get_float(p.name));
    if (t == "Gemm") {
      set_i(n, "transA", a.get_bool("transA") ? 1 : 0);
      set_i(n, "transB", a.get_bool("transB") ? 1 : 0);
      set_f(n, "alpha", a.get_float("alpha"));
      set_f(n, "beta", a.get_float("beta"));
    }
    if (t == "Conv" || t == "MaxPool" || t == "AveragePool") {
      set_ints(n, "kernel_shape", a.get_ints("kernel"));
      set_ints(n, "strides", a.get_ints("strides"));
      set_ints(n, "pads", a.get_ints("pads"));
      if (t != "AveragePool") set_ints(n, "dilations", a.get_ints("dilations"));  // AveragePool: opset 19
      if (t == "Conv") set_i(n, "group", a.get_int("group"));
      if (t != "Conv") set_i(n, "ceil_mode", a.get_bool("ceil_mode") ? 1 : 0);
      if (t == "AveragePool") set_i(n, "count_include_pad", a.get_bool("count_include_pad") ? 1 : 0);
    }
    if (t == "Einsum") {
      auto* at = n->add_attribute();
      at->set_name("equation");
      at->set_type(onnx::AttributeProto_AttributeType_STRING);
      at->set_s(a.get_string("equation"));
    }
    if (t == "LSTM" || t == "GRU") {
      set_i(n, "hidden_size", a.get_int("hidden_size"));
      if (t == "GRU") set_i(n, "linear_before_reset", 1);
      auto* at = n->add_attribute();
      at->set_name("direction");
      at->set_type(onnx::AttributeProto_AttributeType_STRING);
      at->set_s(a.get_string("direction"));
    }
    if (t == "ConvTranspose") {
      set_ints(n, "kernel_shape", a.get_ints("kernel"));
      set_ints(n, "strides", a.get_ints("strides"));
      set_ints(n, "pads", a.get_ints("pads"));
      set_ints(n, "dilations", a.get_ints("dilations"));
      set_ints(n, "output_padding", a.get_ints("output_padding"));
      set_i(n, "group", a.get_int("group"));
    }
    if (t == "Softmax" || t == "LogSoftmax" || t == "Flatten" || t == "Concat" || t == "LayerNormalization")
      set_i(n, "axis", a.get_int("axis"));
    if (t == "LayerNormalization" || t == "BatchNormalization" || t == "InstanceNormalization")
      set_f(n, "epsilon", a.get_float("epsilon"));
    if (t == "BatchNormalization" && a.get_bool("training")) set_i(n, "training_mode", 1);
    if (t == "ReduceMean" || t == "ReduceMax" || t == "ReduceMin") {
      if (!a.get_ints("axes").empty()) set_ints(n, "axes", a.get_ints("axes"));
      set_i(n, "keepdims", a.get_bool("keepdims") ? 1 : 0);
    }
    if (t == "Transpose" && !a.get_ints("perm").empty()) set_ints(n, "perm", a.get_ints("perm"));
  }

  static bool bool_input(const std::string& type, std::size_t k) {
    return (type == "Where" && k == 0) || type == "Not" || type == "And";
  }

  const Model& m_model;
  std::string m_path;
  std::vector<bool> m_bool_const;  // per model value: a constant written as BOOL
  std::map<std::pair<int, int>, std::string> m_casts;  // (value, ONNX type) -> its Cast's output
  onnx::GraphProto* m_graph = nullptr;
  int m_counter = 0;
};

}  // namespace

void export_onnx(const Model& model, const std::string& path) {
  if (model.input() < 0 || model.output() < 0) throw std::invalid_argument(path + ": model has no input or no output");
  AtomicFile file(path, model_files(model));
  const onnx::ModelProto mp = Exporter(model, path).run();
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    if (!out || !mp.SerializeToOstream(&out) || !out.flush()) fail(path, "cannot write '" + file.temp_path() + "'");
  }
  file.commit();
}

}  // namespace curv
