#include "src/core/model.h"

#include <algorithm>
#include <stdexcept>

#include "src/core/size_limits.h"

namespace curv {

namespace {
// Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points above U+10FFFF).
// Names are written to checkpoints as JSON and to ONNX as protobuf strings, which need it.
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned c = p[i];
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len >= n) return false;
    for (std::size_t k = 1; k <= len; ++k) {
      const unsigned b = p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += len + 1;
  }
  return true;
}

// The name with bytes outside printable ASCII written as \xNN (for messages).
std::string printable(const std::string& s) {
  std::string r;
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

void check_name(const std::vector<Value>& values, const std::string& name) {
  if (!valid_utf8(name)) throw std::invalid_argument("model: value name '" + printable(name) + "' is not valid UTF-8");
  for (const auto& v : values)
    if (v.name == name) throw std::invalid_argument("model: duplicate value name '" + name + "'");
}
}  // namespace

int Model::add_input(const std::string& name, Shape sample_shape, bool integer) {
  check_name(m_values, name);
  checked_numel(with_lead(2, sample_shape), "model: input '" + name + "' at batch size 2,");
  m_values.push_back({name, ValueKind::Input, std::move(sample_shape), {}, -1, -1, integer});
  m_inputs.push_back(static_cast<int>(m_values.size()) - 1);
  return m_inputs.back();
}

int Model::add_parameter(const std::string& name, Tensor<double> value) {
  check_name(m_values, name);
  ParamInfo p;
  p.name = name;
  p.shape = value.shape();
  p.size = value.size();
  p.offset = m_num_params;
  p.value = static_cast<int>(m_values.size());
  m_num_params += p.size;
  m_values.push_back({name, ValueKind::Parameter, value.shape(), value.shape(), -1, static_cast<int>(m_params.size())});
  m_params.push_back(p);
  m_param_values.push_back(std::move(value));
  return p.value;
}

int Model::add_constant(const std::string& name, Tensor<double> value) {
  check_name(m_values, name);
  m_values.push_back({name, ValueKind::Constant, value.shape(), value.shape(), -1, static_cast<int>(m_constants.size())});
  m_constants.push_back(std::move(value));
  return static_cast<int>(m_values.size()) - 1;
}

Shape Model::node_shape(const Node& n, std::int64_t batch) const {
  // Shapes at a given batch size, recomputed through the graph (ops are cheap to query).
  std::vector<Shape> in;
  for (int v : n.inputs) {
    const Value& val = m_values.at(v);
    if (val.kind == ValueKind::Input)
      in.push_back(with_lead(batch, val.shape));
    else if (val.kind == ValueKind::Node)
      in.push_back(batch == 1 ? val.shape : val.shape2);
    else
      in.push_back(val.shape);
  }
  return n.op->output_shape(in);
}

int Model::add_node(const std::string& name, OpPtr op, const std::vector<int>& inputs) {
  check_name(m_values, name);
  if (op->arity() >= 0 && static_cast<int>(inputs.size()) != op->arity())
    throw std::invalid_argument("node '" + name + "' (" + op->type() + "): expected " + std::to_string(op->arity()) +
                                " inputs, got " + std::to_string(inputs.size()));
  for (int v : inputs)
    if (v < 0 || v >= static_cast<int>(m_values.size()))
      throw std::invalid_argument("node '" + name + "' (" + op->type() + "): unknown input value");
  Node n{name, std::move(op), inputs, static_cast<int>(m_values.size())};
  Shape s1, s2;
  try {
    s1 = node_shape(n, 1);
    s2 = node_shape(n, 2);
    checked_numel(s2, "output at batch size 2");
  } catch (const std::invalid_argument& e) {
    std::string shapes;
    for (int v : inputs) shapes += (shapes.empty() ? "" : ", ") + m_values[v].name;
    throw std::invalid_argument("node '" + name + "' (" + n.op->type() + ") on " + shapes + ": " + e.what());
  }
  m_values.push_back({name, ValueKind::Node, s1, s2, static_cast<int>(m_nodes.size()), -1});
  m_nodes.push_back(std::move(n));
  return m_nodes.back().output;
}

void Model::replace_op(int node, OpPtr op) {
  Node& n = m_nodes.at(node);
  OpPtr old = n.op;
  n.op = std::move(op);
  try {
    node_shape(n, 2);
  } catch (...) {
    n.op = old;
    throw;
  }
}

void Model::set_output(int value) {
  if (value < 0 || value >= static_cast<int>(m_values.size())) throw std::invalid_argument("model: bad output value");
  m_output = value;
}

Shape Model::output_shape() const {
  if (m_output < 0) throw std::logic_error("model: no output set");
  const Value& v = m_values[m_output];
  if (v.kind != ValueKind::Node) throw std::logic_error("model: output is not computed by a node");
  return Shape(v.shape.begin() + 1, v.shape.end());
}

int Model::find_value(const std::string& name) const {
  for (size_t i = 0; i < m_values.size(); ++i)
    if (m_values[i].name == name) return static_cast<int>(i);
  return -1;
}

int Model::find_param(const std::string& name) const {
  for (size_t i = 0; i < m_params.size(); ++i)
    if (m_params[i].name == name) return static_cast<int>(i);
  return -1;
}

std::vector<double> Model::flat_params() const {
  std::vector<double> w(m_num_params);
  for (size_t i = 0; i < m_params.size(); ++i)
    std::copy(m_param_values[i].vec().begin(), m_param_values[i].vec().end(), w.begin() + m_params[i].offset);
  return w;
}

void Model::set_flat_params(const std::vector<double>& w) {
  if (static_cast<std::int64_t>(w.size()) != m_num_params)
    throw std::invalid_argument("model: parameter vector of length " + std::to_string(w.size()) + ", expected " +
                                std::to_string(m_num_params));
  for (size_t i = 0; i < m_params.size(); ++i)
    std::copy_n(w.begin() + m_params[i].offset, m_params[i].size, m_param_values[i].vec().begin());
}

std::vector<ParamBlock> Model::blocks(const std::string& kind) const {
  std::vector<ParamBlock> out;
  if (kind == "all") {
    ParamBlock b{"all", {}, m_num_params};
    for (size_t i = 0; i < m_params.size(); ++i) b.params.push_back(static_cast<int>(i));
    out.push_back(b);
  } else if (kind == "tensors") {
    for (size_t i = 0; i < m_params.size(); ++i) out.push_back({m_params[i].name, {static_cast<int>(i)}, m_params[i].size});
  } else if (kind == "layers") {
    for (size_t i = 0; i < m_params.size(); ++i) {
      const auto& n = m_params[i].name;
      const auto dot = n.rfind('.');
      const std::string layer = dot == std::string::npos ? n : n.substr(0, dot);
      if (out.empty() || out.back().name != layer) out.push_back({layer, {}, 0});
      out.back().params.push_back(static_cast<int>(i));
      out.back().size += m_params[i].size;
    }
  } else {
    throw std::invalid_argument("unknown block kind '" + kind + "' (expected all, layers or tensors)");
  }
  return out;
}

}  // namespace curv
