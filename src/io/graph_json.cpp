#include "src/io/graph_json.h"

#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "src/core/op_registry.h"

namespace curv {

namespace {

using nlohmann::json;

const char* kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::Input:
      return "input";
    case ValueKind::Parameter:
      return "param";
    case ValueKind::Constant:
      return "constant";
    case ValueKind::Node:
      return "node";
  }
  return "?";
}

json attrs_to_json(const OpSpec& s) {
  const OpTypeInfo* info = find_op_type(s.type);
  json a = json::object();
  for (const auto& [name, v] : s.attrs) {
    const AttrInfo* ai = info ? info->attr(name) : nullptr;
    switch (v.index()) {
      case 0:
        if (ai && ai->kind == AttrKind::Bool)
          a[name] = std::get<0>(v) != 0;
        else
          a[name] = std::get<0>(v);
        break;
      case 1:
        a[name] = std::get<1>(v);
        break;
      case 2:
        a[name] = std::get<2>(v);
        break;
      case 3:
        a[name] = std::get<3>(v);
        break;
      default:
        a[name] = std::get<4>(v);
        break;
    }
  }
  return a;
}

std::int64_t json_int(const json& v, const std::string& what) {
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
    throw std::invalid_argument(what + ": " + v.dump() + " is out of range");
  return v.get<std::int64_t>();
}

// JSON attribute values to typed ones: booleans and integers -> Int, numbers -> Float, lists of
// integers -> Ints, lists with a non-integer number -> Floats; null means absent.
OpSpec spec_from_json(const std::string& type, const json& attrs) {
  OpSpec s(type);
  if (!attrs.is_object()) throw std::invalid_argument(type + ": attrs must be an object, got " + attrs.dump());
  for (const auto& [name, v] : attrs.items()) {
    const std::string what = type + ": attribute '" + name + "'";
    if (v.is_null()) continue;
    if (v.is_boolean()) {
      s.set_bool(name, v.get<bool>());
    } else if (v.is_number_integer()) {
      s.set_int(name, json_int(v, what));
    } else if (v.is_number_float()) {
      s.set_float(name, v.get<double>());
    } else if (v.is_string()) {
      s.set(name, v.get<std::string>());
    } else if (v.is_array()) {
      bool floats = false;
      for (const auto& e : v) {
        if (!e.is_number()) throw std::invalid_argument(what + " must hold numbers, got " + v.dump());
        floats = floats || e.is_number_float();
      }
      if (floats) {
        std::vector<double> d;
        for (const auto& e : v) d.push_back(e.get<double>());
        s.set(name, std::move(d));
      } else {
        std::vector<std::int64_t> i;
        for (const auto& e : v) i.push_back(json_int(e, what));
        s.set(name, std::move(i));
      }
    } else {
      throw std::invalid_argument(what + " must be a number, a list or a string, got " + v.dump());
    }
  }
  return s;
}

const json& field(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) throw std::invalid_argument("graph: " + where + " has no '" + key + "'");
  return obj.at(key);
}

std::string str(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  if (!v.is_string())
    throw std::invalid_argument("graph: '" + std::string(key) + "' of " + where + " must be a string");
  return v.get<std::string>();
}

}  // namespace

std::string graph_to_json(const Model& m) {
  json g;
  const Value& in = m.values().at(m.input());
  g["input"] = {{"name", in.name}, {"shape", in.shape}};  // the first input, as before several inputs
  json inputs = json::array();
  for (int i : m.inputs()) {
    const Value& v = m.values().at(i);
    inputs.push_back({{"name", v.name}, {"shape", v.shape}, {"dtype", v.integer ? "int64" : "float"}});
  }
  g["inputs"] = inputs;
  g["output"] = m.values().at(m.output()).name;
  json values = json::array();
  for (const Value& v : m.values()) values.push_back({{"name", v.name}, {"kind", kind_name(v.kind)}});
  g["values"] = values;
  json nodes = json::array();
  for (const Node& n : m.nodes()) {
    const OpSpec spec = n.op->spec();
    json ins = json::array();
    for (int v : n.inputs) ins.push_back(m.values().at(v).name);
    nodes.push_back({{"name", n.name}, {"type", spec.type}, {"attrs", attrs_to_json(spec)}, {"inputs", ins}});
  }
  g["nodes"] = nodes;
  try {
    return g.dump();
  } catch (const json::type_error&) {  // a string attribute that is not UTF-8 (names are checked on entry)
    throw std::invalid_argument("graph: a name or string attribute is not valid UTF-8");
  }
}

Model graph_from_json(const std::string& text, const GraphTensors& tensors, bool batch_norm_training) {
  json g;
  try {
    g = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("graph: not JSON (") + e.what() + ")");
  }
  Model m;
  try {
    std::map<std::string, int> ids;
    std::map<std::string, const json*> node_of;
    const json& nodes = field(g, "nodes", "the graph");
    const json& values = field(g, "values", "the graph");
    if (!nodes.is_array() || !values.is_array())
      throw std::invalid_argument("graph: 'nodes' and 'values' must be lists");
    for (const json& n : nodes) node_of[str(n, "name", "a node")] = &n;
    for (const json& v : values) {
      const std::string name = str(v, "name", "a value");
      const std::string kind = str(v, "kind", "value '" + name + "'");
      int id = -1;
      if (kind == "input") {
        // "inputs" lists every input by name (and dtype); older graphs have one "input".
        const json* info = &field(g, "input", "the graph");
        if (g.contains("inputs")) {
          info = nullptr;
          for (const json& i : g.at("inputs"))
            if (str(i, "name", "an input") == name) info = &i;
          if (!info) throw std::invalid_argument("graph: input '" + name + "' is not in 'inputs'");
        }
        const json& shape = field(*info, "shape", "input '" + name + "'");
        if (!shape.is_array()) throw std::invalid_argument("graph: the shape of input '" + name + "' must be a list");
        Shape s;
        for (const auto& d : shape) s.push_back(json_int(d, "graph: input shape"));
        const std::string dtype = info->contains("dtype") ? str(*info, "dtype", "input '" + name + "'") : "float";
        if (dtype != "float" && dtype != "int64")
          throw std::invalid_argument("graph: input '" + name + "' has dtype '" + dtype + "' (expected float or int64)");
        id = m.add_input(name, s, dtype == "int64");
      } else if (kind == "param") {
        Tensor<double> t = tensors.load(name, true);
        id = tensors.trainable(name) ? m.add_parameter(name, std::move(t)) : m.add_constant(name, std::move(t));
      } else if (kind == "constant") {
        id = m.add_constant(name, tensors.load(name, false));
      } else if (kind == "node") {
        const auto it = node_of.find(name);
        if (it == node_of.end()) throw std::invalid_argument("graph: value '" + name + "' has no node");
        const json& n = *it->second;
        const std::string type = str(n, "type", "node '" + name + "'");
        OpSpec spec;
        try {
          spec = spec_from_json(type, n.contains("attrs") ? n.at("attrs") : json::object());
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("node '" + name + "' (" + type +
                                      "): " + std::string(e.what()).substr(type.size() + 2));
        }
        if (type == "BatchNormalization" && batch_norm_training) spec.set_bool("training", true);
        std::vector<int> ins;
        const json& in_names = field(n, "inputs", "node '" + name + "'");
        if (!in_names.is_array()) throw std::invalid_argument("graph: 'inputs' of node '" + name + "' must be a list");
        for (const auto& in : in_names) {
          const auto iv = in.is_string() ? ids.find(in.get<std::string>()) : ids.end();
          if (iv == ids.end()) throw std::invalid_argument("node '" + name + "': unknown input " + in.dump());
          ins.push_back(iv->second);
        }
        id = m.add_node(name, make_op(spec, name), ins);
      } else {
        throw std::invalid_argument("graph: value '" + name + "' has unknown kind '" + kind + "'");
      }
      ids[name] = id;
    }
    const auto out = ids.find(str(g, "output", "the graph"));
    if (out == ids.end() || m.values()[out->second].kind != ValueKind::Node)
      throw std::invalid_argument("graph: the output must be the value of a node");
    m.set_output(out->second);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("graph: corrupt (") + e.what() + ")");
  }
  return m;
}

}  // namespace curv
