#include "curvature/study_settings.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace curv {

namespace {

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The bounds of tools/common.h that this file uses, repeated here because the library cannot
// include tools/ (spectrum_run.cpp repeats the ones it uses).
constexpr double kMaxBlock = 4096;
constexpr double kMaxSamples = 1e12, kMaxSeed = 18446744073709551615.0;

}  // namespace

Setting int_setting(std::string name, std::int64_t def, double lo, double hi, std::string help) {
  Setting s;
  s.name = std::move(name);
  s.type = Setting::Type::Integer;
  s.default_value = def;
  s.lo = lo;
  s.hi = hi;
  s.help = std::move(help);
  return s;
}

Setting number_setting(std::string name, double def, double lo, double hi, std::string help) {
  Setting s = int_setting(std::move(name), 0, lo, hi, std::move(help));
  s.type = Setting::Type::Number;
  s.default_value = def;
  return s;
}

Setting bool_setting(std::string name, bool def, std::string help) {
  Setting s;
  s.name = std::move(name);
  s.type = Setting::Type::Boolean;
  s.default_value = def;
  s.help = std::move(help);
  return s;
}

Setting string_setting(std::string name, std::string def, std::string help, bool path) {
  Setting s;
  s.name = std::move(name);
  s.type = Setting::Type::String;
  s.default_value = std::move(def);
  s.help = std::move(help);
  s.path = path;
  return s;
}

Setting choice_setting(std::string name, std::string def, std::vector<std::string> choices, std::string help) {
  Setting s = string_setting(std::move(name), std::move(def), std::move(help));
  s.type = Setting::Type::Choice;
  s.choices = std::move(choices);
  return s;
}

const SettingTable& common_settings() {
  static const SettingTable table = [] {
    SettingTable t;
    t.push_back(string_setting("model", "", "Model: an .onnx file or a curv checkpoint .h5; a glob (*, ?, [..]) "
                               "makes one run per matching file, in name order", true));
    t.push_back(string_setting("arch", "", "Built-in architecture instead of model: mlp[:H1-H2-...], lenet, "
                               "resnet20, resnet20-noskip, ..."));
    t.push_back(int_setting("seed", 0, 0, kMaxSeed, "Seed of the arch initialization and of random estimators"));
    t.push_back(string_setting("data", "", "Data: .npz, .h5, IDX images, fashion-mnist:train|test, "
                               "random:CxHxW:CLASSES[:N] (required)", true));
    t.push_back(int_setting("samples", 0, 0, kMaxSamples, "Use N samples after the offset; 0 = all"));
    t.push_back(int_setting("offset", 0, 0, kMaxSamples, "Skip the first K samples"));
    t.push_back(int_setting("batch_index", 0, 0, 1e9, "Disjoint batches: the samples start at offset + "
                            "batch_index * samples"));
    t.push_back(string_setting("normalize", "", "Per-channel MEAN[,MEAN..]/STD[,STD..] applied to inputs"));
    t.push_back(int_setting("relabel", 0, 0, 1e9, "Fold integer labels into C classes: y <- y mod C (0: keep)"));
    t.push_back(string_setting("params", "", "ONNX initializers matching REGEX are trainable parameters"));
    t.push_back(string_setting("freeze", "", "ONNX initializers matching REGEX are constants"));
    t.push_back(bool_setting("bn_train", false, "BatchNorm with batch statistics (training mode)"));
    t.push_back(choice_setting("precision", "float32", {"float32", "float64"}, "Model compute precision"));
    t.push_back(int_setting("micro_batch", 0, 0, 1e6, "Samples per micro-batch (0: automatic from the layer shapes, as curv spectrum; fixes the reduction order)"));
    t.push_back(number_setting("cache_gb", 8.0, 0, 1e6, "Memory budget for cached activations (GB)"));
    t.push_back(int_setting("group_directions", 0, 0, kMaxBlock, "Directions per tangent pass (0: automatic)"));
    return t;
  }();
  return table;
}

void check_setting(const Setting& s, const nlohmann::json& v) {
  const auto bad = [&](const std::string& why) { throw std::invalid_argument(s.name + ": " + why); };
  const std::string range = "[" + number_text(s.lo) + ", " + number_text(s.hi) + "]";
  switch (s.type) {
    case Setting::Type::Integer:
      if (!v.is_number_integer()) bad(v.dump() + " is not an integer");
      if (v.is_number_unsigned() ? double(v.get<std::uint64_t>()) > s.hi || double(v.get<std::uint64_t>()) < s.lo
                                 : double(v.get<std::int64_t>()) > s.hi || double(v.get<std::int64_t>()) < s.lo)
        bad(v.dump() + " is outside " + range);
      break;
    case Setting::Type::Number:
      if (!v.is_number()) bad(v.dump() + " is not a number");
      if (!std::isfinite(v.get<double>()) || v.get<double>() < s.lo || v.get<double>() > s.hi)
        bad(v.dump() + " is outside " + range);
      break;
    case Setting::Type::Boolean:
      if (!v.is_boolean()) bad(v.dump() + " is not true or false");
      break;
    case Setting::Type::String:
      if (!v.is_string()) bad(v.dump() + " is not a string");
      break;
    case Setting::Type::Choice: {
      if (!v.is_string()) bad(v.dump() + " is not a string");
      bool ok = false;
      std::string list;
      for (const auto& c : s.choices) {
        ok = ok || v.get<std::string>() == c;
        list += (list.empty() ? "" : ", ") + c;
      }
      if (!ok) bad("'" + v.get<std::string>() + "' is not one of " + list);
      break;
    }
  }
}

nlohmann::json setting_schema(const Setting& s) {
  nlohmann::json j;
  switch (s.type) {
    case Setting::Type::Integer:
      j["type"] = "integer";
      j["minimum"] = s.lo;
      j["maximum"] = s.hi;
      break;
    case Setting::Type::Number:
      j["type"] = "number";
      j["minimum"] = s.lo;
      j["maximum"] = s.hi;
      break;
    case Setting::Type::Boolean: j["type"] = "boolean"; break;
    case Setting::Type::String: j["type"] = "string"; break;
    case Setting::Type::Choice: j["enum"] = s.choices; break;
  }
  j["default"] = s.default_value;
  j["description"] = s.help;
  return j;
}

}  // namespace curv
