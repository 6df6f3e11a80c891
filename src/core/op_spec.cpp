#include "src/core/op_spec.h"

#include <charconv>
#include <stdexcept>

namespace curv {

const char* attr_kind_name(AttrKind k) {
  switch (k) {
    case AttrKind::Int:
      return "an integer";
    case AttrKind::Bool:
      return "a boolean (0 or 1)";
    case AttrKind::Float:
      return "a number";
    case AttrKind::Ints:
      return "a list of integers";
    case AttrKind::Floats:
      return "a list of numbers";
    case AttrKind::String:
      return "a string";
  }
  return "?";
}

AttrKind kind_of(const AttrValue& v) {
  switch (v.index()) {
    case 0:
      return AttrKind::Int;
    case 1:
      return AttrKind::Float;
    case 2:
      return AttrKind::Ints;
    case 3:
      return AttrKind::Floats;
    default:
      return AttrKind::String;
  }
}

namespace {

std::string format_double(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest form that reads back exactly
  return std::string(buf, r.ptr);
}

template <class V, class F>
std::string format_list(const std::vector<V>& v, F&& one) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + one(v[i]);
  return s + "]";
}

}  // namespace

std::string format_attr(const AttrValue& v) {
  switch (v.index()) {
    case 0:
      return std::to_string(std::get<0>(v));
    case 1:
      return format_double(std::get<1>(v));
    case 2:
      return format_list(std::get<2>(v), [](std::int64_t x) { return std::to_string(x); });
    case 3:
      return format_list(std::get<3>(v), format_double);
    default:
      return "'" + std::get<4>(v) + "'";
  }
}

namespace {

[[noreturn]] void bad_attr(const OpSpec& s, const std::string& name, const std::string& what) {
  throw std::invalid_argument(s.type + ": attribute '" + name + "' " + what);
}

const AttrValue& find(const OpSpec& s, const std::string& name) {
  const auto it = s.attrs.find(name);
  if (it == s.attrs.end()) bad_attr(s, name, "is missing");
  return it->second;
}

template <class V>
const V& typed(const OpSpec& s, const std::string& name, AttrKind want) {
  const AttrValue& v = find(s, name);
  if (const V* p = std::get_if<V>(&v)) return *p;
  bad_attr(s, name, std::string("must be ") + attr_kind_name(want) + ", got " + format_attr(v));
}

}  // namespace

std::int64_t OpSpec::get_int(const std::string& name) const { return typed<std::int64_t>(*this, name, AttrKind::Int); }

bool OpSpec::get_bool(const std::string& name) const {
  const std::int64_t v = typed<std::int64_t>(*this, name, AttrKind::Bool);
  if (v != 0 && v != 1) bad_attr(*this, name, "must be 0 or 1, got " + std::to_string(v));
  return v != 0;
}

double OpSpec::get_float(const std::string& name) const {
  const AttrValue& v = find(*this, name);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return typed<double>(*this, name, AttrKind::Float);
}

const std::vector<std::int64_t>& OpSpec::get_ints(const std::string& name) const {
  return typed<std::vector<std::int64_t>>(*this, name, AttrKind::Ints);
}

std::vector<double> OpSpec::get_floats(const std::string& name) const {
  const AttrValue& v = find(*this, name);
  if (const auto* i = std::get_if<std::vector<std::int64_t>>(&v)) return {i->begin(), i->end()};
  return typed<std::vector<double>>(*this, name, AttrKind::Floats);
}

const std::string& OpSpec::get_string(const std::string& name) const {
  return typed<std::string>(*this, name, AttrKind::String);
}

std::string OpSpec::format() const {
  std::string s;
  for (const auto& [name, v] : attrs) s += (s.empty() ? "" : " ") + name + "=" + format_attr(v);
  return s;
}

}  // namespace curv
