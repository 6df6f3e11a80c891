#include "curvature/study_plan.h"

#include <fnmatch.h>
#include <glob.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "src/io/sha256.h"

namespace curv {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ordered = nlohmann::ordered_json;

constexpr std::size_t kMaxNameBytes = 200;
const std::set<std::string> kTopKeys = {"$schema", "name", "description", "root", "defaults",
                                        "runs", "grid", "grids", "figures"};

std::string kind_list() {
  std::string s;
  for (const RunKind* k : run_kinds()) s += (s.empty() ? "" : ", ") + k->name();
  return s;
}

bool has_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

// Every setting a kind takes: the common ones, then its own.
std::vector<const Setting*> table_of(const RunKind& k) {
  std::vector<const Setting*> t;
  for (const auto& s : common_settings()) t.push_back(&s);
  for (const auto& s : k.settings()) t.push_back(&s);
  return t;
}

const Setting* find_setting(const std::vector<const Setting*>& t, const std::string& name) {
  for (const Setting* s : t)
    if (s->name == name) return s;
  return nullptr;
}

// A value as it appears in a run name: a path by its file stem, a number in its shortest form.
std::string name_text(const Setting& s, const json& v) {
  if (v.is_string()) {
    std::string t = v.get<std::string>();
    if (s.path && t.find(':') == std::string::npos) t = fs::path(t).stem().string();
    std::replace(t.begin(), t.end(), '/', '_');
    return t;
  }
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v.get<double>());
    return buf;
  }
  return v.dump();
}

class Planner {
 public:
  Planner(const std::string& text, const fs::path& file) : m_file(file) {
    m_plan.file = file;
    m_plan.text = text;
    ordered doc;
    try {
      doc = ordered::parse(text);
    } catch (const ordered::exception& e) {  // parse errors, and numbers out of double's range
      fail("", "not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!doc.is_object()) fail("", "expected a JSON object at the top");
    for (const auto& [k, v] : doc.items())
      if (!kTopKeys.count(k))
        fail("", "unknown key '" + k + "' (expected name, description, root, defaults, runs, grid, grids, figures)");
    if (doc.contains("name")) m_plan.name = string_of(doc["name"], "name");
    const fs::path folder = file.parent_path();
    m_plan.root = (folder / (doc.contains("root") ? string_of(doc["root"], "root") : std::string())).lexically_normal();
    if (m_plan.root.empty()) m_plan.root = ".";
    if (doc.contains("figures")) {
      if (!doc["figures"].is_array()) fail("figures", "expected an array");
      m_plan.figures = json::parse(doc["figures"].dump());
    }
    if (doc.contains("defaults")) {
      if (!doc["defaults"].is_object()) fail("defaults", "expected an object of settings");
      for (const auto& [k, v] : doc["defaults"].items()) {
        const Setting* s = nullptr;
        for (const RunKind* kind : run_kinds())
          if (!s) s = find_setting(table_of(*kind), k);
        if (!s) fail("defaults", "unknown setting '" + k + "'");
        m_defaults[k] = json::parse(v.dump());
      }
    }
    const auto entries = [&](const char* key, bool grid) {
      if (!doc.contains(key)) return;
      const ordered& list = doc[key];
      if (std::string(key) == "grid") {
        if (!list.is_object()) fail("grid", "expected an object (or use grids: [...])");
        entry(list, "grid", true);
        return;
      }
      if (!list.is_array()) fail(key, "expected an array of objects");
      for (std::size_t i = 0; i < list.size(); ++i) entry(list[i], std::string(key) + "[" + std::to_string(i) + "]", grid);
    };
    // Entries in the order the file lists them.
    for (const auto& [k, v] : doc.items())
      if (k == "runs" || k == "grids" || k == "grid") entries(k.c_str(), k != "runs");
    if (m_plan.runs.empty()) fail("", "declares no runs (runs, grid or grids)");
    // Hashes: settings and input files' contents.
    InputCache paths(m_plan.root);
    std::map<std::string, std::string> hashes;
    for (auto& run : m_plan.runs) {
      try {
        run.hash = run_hash(run, paths.input_files(run.settings), hashes);
      } catch (const std::exception& e) {
        fail(run.entry, "run '" + run.name + "': " + e.what());
      }
    }
  }

  StudyPlan take() { return std::move(m_plan); }

 private:
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw std::invalid_argument(m_file.string() + ": " + (where.empty() ? "" : where + ": ") + what);
  }

  std::string string_of(const ordered& v, const std::string& where) const {
    if (!v.is_string()) fail(where, "expected a string");
    return v.get<std::string>();
  }

  void entry(const ordered& e, const std::string& label, bool grid) {
    if (!e.is_object()) fail(label, "expected an object");
    if (!e.contains("kind")) fail(label, "no kind (expected one of " + kind_list() + ")");
    const std::string kind_name = string_of(e["kind"], label + ": kind");
    const RunKind* kind = find_run_kind(kind_name);
    if (!kind) fail(label, "unknown kind '" + kind_name + "' (expected one of " + kind_list() + ")");
    const auto table = table_of(*kind);
    // Defaults of the kind, then the study's defaults it takes, then the entry's settings.
    json base = json::object();
    for (const Setting* s : table) base[s->name] = s->default_value;
    for (const auto& [k, v] : m_defaults.items())
      if (find_setting(table, k)) base[k] = v;
    std::string name_template;
    bool has_name = false;
    for (const auto& [k, v] : e.items()) {
      if (k == "kind") continue;
      if (k == "name") {
        name_template = string_of(v, label + ": name");
        has_name = true;
        continue;
      }
      if (k == "axes") {
        if (!grid) fail(label, "axes belong in a grid (grids: [...]), not in runs");
        continue;
      }
      if (!find_setting(table, k)) fail(label, "unknown key '" + k + "' for kind '" + kind_name + "'");
      base[k] = json::parse(v.dump());
    }
    for (const Setting* s : table) check(*s, base[s->name], label);
    // Axes, in the order written.
    std::vector<std::pair<const Setting*, std::vector<json>>> axes;
    if (grid) {
      if (!e.contains("axes") || !e["axes"].is_object() || e["axes"].empty())
        fail(label, "a grid needs axes: {SETTING: [VALUE, ...], ...}");
      for (const auto& [k, v] : e["axes"].items()) {
        const Setting* s = find_setting(table, k);
        if (!s) fail(label + ": axes", "unknown setting '" + k + "' for kind '" + kind_name + "'");
        if (e.contains(k)) fail(label + ": axes", "'" + k + "' is both a fixed setting and an axis");
        if (!v.is_array() || v.empty()) fail(label + ": axes." + k, "expected a non-empty array of values");
        std::vector<json> values;
        for (std::size_t i = 0; i < v.size(); ++i) {
          values.push_back(json::parse(v[i].dump()));
          check(*s, values.back(), label + ": axes." + k + "[" + std::to_string(i) + "]");
        }
        axes.emplace_back(s, std::move(values));
      }
    }
    // Cartesian product, first axis outermost.
    std::vector<std::size_t> idx(axes.size(), 0);
    std::vector<PlannedRun> made;
    while (true) {
      json s = base;
      for (std::size_t a = 0; a < axes.size(); ++a) s[axes[a].first->name] = axes[a].second[idx[a]];
      expand_models(s, label, kind_name, axes, name_template, has_name, table, made);
      std::size_t a = axes.size();
      while (a > 0 && ++idx[a - 1] == axes[a - 1].second.size()) idx[--a] = 0;
      if (a == 0) break;
    }
    for (auto& r : made) add(std::move(r));
  }

  void check(const Setting& s, const json& v, const std::string& where) const {
    try {
      check_setting(s, v);
    } catch (const std::invalid_argument& e) {
      fail(where, e.what());
    }
  }

  void expand_models(json s, const std::string& label, const std::string& kind,
                     const std::vector<std::pair<const Setting*, std::vector<json>>>& axes,
                     const std::string& name_template, bool has_name, const std::vector<const Setting*>& table,
                     std::vector<PlannedRun>& out) const {
    if (s["data"].get<std::string>().empty()) fail(label, "data: required (a file or a dataset name)");
    const std::string model = s["model"].get<std::string>(), arch = s["arch"].get<std::string>();
    if (model.empty() == arch.empty()) fail(label, "give exactly one of model (a file) and arch");
    std::vector<std::string> models{model};
    const bool globbed = !model.empty() && has_glob(model);
    if (globbed) models = glob_models(model, label);
    for (const auto& m : models) {
      if (!m.empty() && !fs::exists(m_plan.root / m) && !fs::path(m).is_absolute())
        fail(label, "model '" + m + "': no such file");
      if (!m.empty() && fs::path(m).is_absolute() && !fs::exists(m)) fail(label, "model '" + m + "': no such file");
      json run_settings = s;
      run_settings["model"] = m;
      PlannedRun r;
      r.kind = kind;
      r.entry = label;
      r.settings = run_settings;
      // Names: the template with {SETTING} filled in, or name/kind plus the varying settings.
      std::vector<std::string> varying;
      for (const auto& [setting, values] : axes) varying.push_back(setting->name);
      if (globbed && std::find(varying.begin(), varying.end(), "model") == varying.end()) varying.push_back("model");
      if (has_name && name_template.find('{') != std::string::npos) {
        r.name = fill(name_template, run_settings, table, label);
      } else {
        r.name = has_name ? name_template : kind;
        std::string suffix;
        for (const auto& k : varying)
          suffix += (suffix.empty() ? "" : ",") + k + "=" + name_text(*find_setting(table, k), run_settings[k]);
        if (!suffix.empty()) r.name += "." + suffix;
      }
      out.push_back(std::move(r));
    }
  }

  std::vector<std::string> glob_models(const std::string& pattern, const std::string& label) const {
    const fs::path full = fs::path(pattern).is_absolute() ? fs::path(pattern) : m_plan.root / pattern;
    glob_t g{};
    const int rc = ::glob(full.string().c_str(), 0, nullptr, &g);
    std::vector<std::string> found;
    if (rc == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i) {
        const fs::path p(g.gl_pathv[i]);
        found.push_back(fs::path(pattern).is_absolute() ? p.string() : p.lexically_relative(m_plan.root).string());
      }
    globfree(&g);
    if (found.empty()) fail(label, "model '" + pattern + "' matches no file (in " + m_plan.root.string() + ")");
    std::sort(found.begin(), found.end());
    return found;
  }

  std::string fill(const std::string& tpl, const json& s, const std::vector<const Setting*>& table,
                   const std::string& label) const {
    std::string out;
    for (std::size_t i = 0; i < tpl.size(); ++i) {
      if (tpl[i] != '{') {
        out += tpl[i];
        continue;
      }
      const auto end = tpl.find('}', i);
      if (end == std::string::npos) fail(label, "name '" + tpl + "': unclosed '{'");
      const std::string key = tpl.substr(i + 1, end - i - 1);
      const Setting* st = find_setting(table, key);
      if (!st) fail(label, "name '" + tpl + "': unknown setting '{" + key + "}'");
      out += name_text(*st, s[key]);
      i = end;
    }
    return out;
  }

  void add(PlannedRun r) {
    if (r.name.empty() || r.name == "." || r.name == ".." || r.name.find('/') != std::string::npos ||
        r.name.size() > kMaxNameBytes)
      fail(r.entry, "run name '" + r.name + "' must be non-empty, without '/', not '.' or '..', and at most 200 bytes");
    if (auto it = m_names.find(r.name); it != m_names.end())
      fail(r.entry, "run name '" + r.name + "' is also the name of a run of " + it->second +
                        " (give the entries different names or a name template such as \"b{samples}\")");
    m_names[r.name] = r.entry;
    m_plan.runs.push_back(std::move(r));
  }

  fs::path m_file;
  StudyPlan m_plan;
  json m_defaults = json::object();
  std::map<std::string, std::string> m_names;
};

}  // namespace

std::string run_hash(const PlannedRun& run, const std::vector<std::string>& files,
                     std::map<std::string, std::string>& file_hashes) {
  const RunKind* kind = find_run_kind(run.kind);
  std::string text = "curv-study-run\n" + run.kind + "\n" + std::to_string(kind ? kind->version() : 0) + "\n" +
                     run.settings.dump() + "\n";
  for (const auto& f : files) {
    auto& h = file_hashes[f];
    if (h.empty()) h = xxh3_128_file(f);
    text += h + "\n";
  }
  return sha256_hex(text);
}

StudyPlan plan_study_text(const std::string& text, const std::filesystem::path& file) {
  Planner p(text, file);
  return p.take();
}

StudyPlan plan_study(const std::filesystem::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw std::invalid_argument(file.string() + ": no such file");
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in && !in.eof()) throw std::invalid_argument(file.string() + ": read error");
  return plan_study_text(ss.str(), file);
}

std::vector<const PlannedRun*> select_runs(const StudyPlan& plan, const std::vector<std::string>& patterns) {
  std::vector<const PlannedRun*> out;
  std::vector<bool> used(patterns.size(), false);
  for (const auto& r : plan.runs) {
    bool keep = patterns.empty();
    for (std::size_t i = 0; i < patterns.size(); ++i)
      if (fnmatch(patterns[i].c_str(), r.name.c_str(), 0) == 0) keep = used[i] = true;
    if (keep) out.push_back(&r);
  }
  for (std::size_t i = 0; i < patterns.size(); ++i)
    if (!used[i]) throw std::invalid_argument(plan.file.string() + ": no run is named like '" + patterns[i] + "'");
  return out;
}

json resolve_settings(const RunKind& kind, const json& values) {
  const auto table = table_of(kind);
  json s = json::object();
  for (const Setting* st : table) s[st->name] = st->default_value;
  for (const auto& [k, v] : values.items()) {
    const Setting* st = find_setting(table, k);
    if (!st) throw std::invalid_argument("unknown setting '" + k + "' for kind '" + kind.name() + "'");
    check_setting(*st, v);
    s[k] = v;
  }
  return s;
}

json study_schema() {
  // Each setting's value schema once, in $defs: common settings by name, a kind's own as KIND.NAME.
  json defs = json::object();
  const auto id = [](const RunKind& k, const Setting& s) {
    for (const auto& c : common_settings())
      if (&c == &s) return s.name;
    return k.name() + "." + s.name;
  };
  json kinds = json::array(), grid_kinds = json::array(), defaults = json::object();
  for (const RunKind* k : run_kinds()) {
    json props = json::object(), axes = json::object();
    props["kind"] = {{"const", k->name()}, {"description", k->description()}};
    props["name"] = {{"type", "string"},
                     {"description", "Run name, or a template with {SETTING} placeholders; default: the kind"}};
    for (const Setting* s : table_of(*k)) {
      const std::string ref = "#/$defs/" + id(*k, *s);
      defs[id(*k, *s)] = setting_schema(*s);
      props[s->name] = {{"$ref", ref}};
      axes[s->name] = {{"type", "array"}, {"minItems", 1}, {"items", {{"$ref", ref}}}};
      if (!defaults.contains(s->name)) defaults[s->name] = {{"$ref", ref}};
    }
    kinds.push_back({{"type", "object"}, {"required", {"kind"}}, {"properties", props}, {"additionalProperties", false}});
    json gprops = props;
    gprops["axes"] = {{"type", "object"},
                      {"minProperties", 1},
                      {"properties", axes},
                      {"additionalProperties", false},
                      {"description", "The cartesian product of these value lists (first axis outermost)"}};
    grid_kinds.push_back(
        {{"type", "object"}, {"required", {"kind", "axes"}}, {"properties", gprops}, {"additionalProperties", false}});
  }
  const json grid = {{"oneOf", grid_kinds}};
  return {{"$schema", "https://json-schema.org/draft/2020-12/schema"},
          {"title", "curv study file"},
          {"type", "object"},
          {"additionalProperties", false},
          {"$defs", defs},
          {"properties",
           {{"$schema", {{"type", "string"}}},
            {"name", {{"type", "string"}, {"description", "Name of the study (stored in the output file)"}}},
            {"description", {{"type", "string"}}},
            {"root", {{"type", "string"}, {"description", "Folder that paths are relative to, itself relative to the "
                                                          "study file's folder (default: that folder)"}}},
            {"defaults", {{"type", "object"}, {"properties", defaults}, {"additionalProperties", false},
                          {"description", "Settings applied to every run whose kind takes them (the first kind's "
                                          "range applies here; each run checks its own)"}}},
            {"runs", {{"type", "array"}, {"items", {{"oneOf", kinds}}}}},
            {"grid", grid},
            {"grids", {{"type", "array"}, {"items", grid}}},
            {"figures", {{"type", "array"}, {"items", {{"type", "object"}}},
                         {"description", "Figures for tools/plot_study.py (docs/study.md)"}}}}}};
}

}  // namespace curv
