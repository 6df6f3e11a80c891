#pragma once
/// \file op_spec.h
/// An op as data: its ONNX-style type and typed attributes, exactly enough to rebuild it.
///
///   OpSpec s = op->spec();             // e.g. {"Conv", kernel=[3, 3], strides=[1, 1], ...}
///   OpPtr same = make_op(s);           // op_registry.h: equal spec, bit-identical kernels
///
/// Every op reports its spec (Op::spec()); make_op builds any op from one. ONNX export, checkpoint
/// graphs and `curv info` are translations of specs, so no code parses an op's printed form.
/// Attribute values are int64 (booleans as 0 / 1), double, int64 lists, double lists or strings;
/// the registry (op_registry.h) knows each type's attributes, kinds and defaults.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace curv {

/// The kind of an attribute. Bool values are stored as Int 0 or 1.
enum class AttrKind { Int, Bool, Float, Ints, Floats, String };
const char* attr_kind_name(AttrKind k);

using AttrValue = std::variant<std::int64_t, double, std::vector<std::int64_t>, std::vector<double>, std::string>;

/// The kind a value holds (Int for integers, never Bool).
AttrKind kind_of(const AttrValue& v);
/// "3", "0.5", "[1, 2]", "'same'": doubles in their shortest round-trip form.
std::string format_attr(const AttrValue& v);

struct OpSpec {
  std::string type;
  std::map<std::string, AttrValue> attrs;  // by name

  OpSpec() = default;
  explicit OpSpec(std::string t) : type(std::move(t)) {}

  OpSpec& set(const std::string& name, AttrValue v) {
    attrs[name] = std::move(v);
    return *this;
  }
  OpSpec& set_int(const std::string& name, std::int64_t v) { return set(name, v); }
  OpSpec& set_bool(const std::string& name, bool v) { return set(name, std::int64_t(v ? 1 : 0)); }
  OpSpec& set_float(const std::string& name, double v) { return set(name, v); }
  OpSpec& set_ints(const std::string& name, std::vector<std::int64_t> v) { return set(name, std::move(v)); }
  bool has(const std::string& name) const { return attrs.count(name) != 0; }

  /// Typed reads of a present attribute; throw std::invalid_argument("<type>: attribute '<name>' ...")
  /// when it is absent or of another kind. get_float accepts an Int, get_floats an Ints value.
  std::int64_t get_int(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  double get_float(const std::string& name) const;
  const std::vector<std::int64_t>& get_ints(const std::string& name) const;
  std::vector<double> get_floats(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;

  /// "name=value ..." in name order, e.g. "group=1 kernel=[3, 3] pads=[1, 1, 1, 1]".
  std::string format() const;

  bool operator==(const OpSpec& o) const = default;
};

}  // namespace curv
