#pragma once
/// \file op_registry.h
/// The one table of op types: for each ONNX-style type name, its attributes (name, kind, default)
/// and the factory that builds the op from a spec. make_op is the only way from data (ONNX nodes,
/// checkpoint graphs) to an op, so every op built from a file passes the same checks:
///
///   1. the type is known;
///   2. every attribute is one of the type's, of its kind; absent ones take their defaults
///      (an attribute without a default is required);
///   3. the op's constructor checks the values (kernel, stride, dilation >= 1, pads >= 0, ...).
///
/// Errors are std::invalid_argument naming the node (when given) and the type, e.g.
///   "node 'conv1' (Conv): strides must be >= 1, got [0, 1]".
/// The table itself (op_registry.cpp) documents the attributes of every type; unary and binary
/// elementwise ops come from elementwise_table.h.
#include <optional>
#include <string>
#include <vector>

#include "src/core/op.h"
#include "src/core/op_spec.h"

namespace curv {

struct AttrInfo {
  std::string name;
  AttrKind kind;
  std::optional<AttrValue> default_value;  // nullopt: required
};

struct OpTypeInfo {
  std::string type;
  std::vector<AttrInfo> attrs;
  /// Builds the op from a spec that resolve_spec completed (every attribute present, right kind).
  OpPtr (*make)(const OpSpec& spec) = nullptr;
  /// A unary elementwise op of elementwise_table.h (its one attribute, if any, is its parameter).
  bool unary = false;
  /// A binary elementwise op of elementwise_table.h (no attributes, inputs a and b).
  bool binary = false;

  const AttrInfo* attr(const std::string& name) const;
};

/// Every op type, in table order.
const std::vector<OpTypeInfo>& op_types();
/// The entry of `type`, or nullptr.
const OpTypeInfo* find_op_type(const std::string& type);

/// The spec with its type's defaults filled in and kinds normalized (an Int where a Float is
/// expected becomes a Float). Throws std::invalid_argument("<Type>: ...") for an unknown type, an
/// unknown attribute, a missing required one or one of the wrong kind.
OpSpec resolve_spec(const OpSpec& spec);

/// Builds the op described by `spec` (see the checks above). `node`, if not empty, is named in
/// errors: "node '<node>' (<Type>): <what>".
OpPtr make_op(const OpSpec& spec, const std::string& node = {});

}  // namespace curv
