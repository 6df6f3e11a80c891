#pragma once
/// \file study_settings.h
/// The settings of a `curv study` run: a table per run kind (name, type, default, range, help),
/// checked key by key when a study file is read, and turned into the JSON Schema of docs/study.md.
///
/// A setting is named after the command-line option it mirrors (`top_k` is `curv spectrum
/// --top-k`), takes the same values, and has the same range check (tools/common.h), so a study
/// run accepts exactly what the command accepts.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace curv {

struct Setting {
  enum class Type { Integer, Number, Boolean, String, Choice };
  std::string name;
  Type type = Type::String;
  nlohmann::json default_value;
  /// Inclusive range of Integer and Number settings.
  double lo = 0, hi = 0;
  /// Allowed values of a Choice.
  std::vector<std::string> choices;
  std::string help;
  /// A file path (model, data, directions): resolved against the study's root.
  bool path = false;
};

using SettingTable = std::vector<Setting>;

/// The settings every run kind takes: model, arch, data, samples, offset, batch_index, seed, ...
const SettingTable& common_settings();

/// Checks `value` against `s`: std::invalid_argument("<name>: <problem>") for a wrong type, a
/// value outside the range or not among the choices.
void check_setting(const Setting& s, const nlohmann::json& value);

/// JSON Schema (draft 2020-12) of one setting's value.
nlohmann::json setting_schema(const Setting& s);

/// Shorthands for kinds' tables.
Setting int_setting(std::string name, std::int64_t def, double lo, double hi, std::string help);
Setting number_setting(std::string name, double def, double lo, double hi, std::string help);
Setting bool_setting(std::string name, bool def, std::string help);
Setting string_setting(std::string name, std::string def, std::string help, bool path = false);
Setting choice_setting(std::string name, std::string def, std::vector<std::string> choices, std::string help);

}  // namespace curv
