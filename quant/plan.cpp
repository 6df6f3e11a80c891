#include "quant/plan.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include "quant/sensitivity.h"
#include "src/io/atomic_file.h"
#include "src/io/sha256.h"

#ifndef CURV_VERSION
#define CURV_VERSION "unknown"
#endif

namespace curv::quant {

namespace {

using nlohmann::json;

// Stored floating totals must match the recomputed ones to this relative tolerance.
constexpr double kTotalsRelTol = 1e-9;

std::string status_string(AllocStatus s) { return s == AllocStatus::Optimal ? "optimal" : "node-limit"; }

// Typed access to a JSON document with error messages "<source>: <key path>: <what>".
class Reader {
 public:
  explicit Reader(std::string source) : m_source(std::move(source)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw std::runtime_error(m_source + ": " + (where.empty() ? "" : where + ": ") + what);
  }

  const json& key(const json& obj, const std::string& name, const std::string& where) const {
    auto it = obj.find(name);
    if (it == obj.end()) fail(join(where, name), "missing");
    return *it;
  }
  const json* optional(const json& obj, const std::string& name) const {
    auto it = obj.find(name);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  static std::string join(const std::string& where, const std::string& name) {
    return where.empty() ? name : where + "." + name;
  }

  void expect(const json& v, bool ok, const std::string& where, const char* what) const {
    if (!ok) fail(where, std::string("expected ") + what + ", got " + describe(v));
  }
  const json& object(const json& v, const std::string& where) const {
    expect(v, v.is_object(), where, "an object");
    return v;
  }
  const json& array(const json& v, const std::string& where) const {
    expect(v, v.is_array(), where, "an array");
    return v;
  }
  std::string string(const json& v, const std::string& where) const {
    expect(v, v.is_string(), where, "a string");
    return v.get<std::string>();
  }
  std::int64_t integer(const json& v, const std::string& where, std::int64_t lo, std::int64_t hi) const {
    expect(v, v.is_number_integer(), where, "an integer");
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
      fail(where, v.dump() + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    const std::int64_t x = v.get<std::int64_t>();
    if (x < lo || x > hi)
      fail(where, std::to_string(x) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  double number(const json& v, const std::string& where) const {
    expect(v, v.is_number(), where, "a number");
    return v.get<double>();
  }
  bool boolean(const json& v, const std::string& where) const {
    expect(v, v.is_boolean(), where, "true or false");
    return v.get<bool>();
  }

 private:
  static std::string describe(const json& v) {
    std::string d = v.dump();
    if (d.size() > 40) d = d.substr(0, 37) + "...";
    return std::string(v.type_name()) + " " + d;
  }
  std::string m_source;
};

constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();

bool close(double a, double b) {
  return std::abs(a - b) <= kTotalsRelTol * std::max({1e-300, std::abs(a), std::abs(b)});
}

}  // namespace

std::string curv_version_string() { return CURV_VERSION; }

bool has_activation_quantization(const Plan& plan) {
  for (const PlanLayer& l : plan.layers)
    if (l.act_bits > 0) return true;
  return false;
}

PlanTotals compute_totals(const Plan& plan) {
  PlanTotals t;
  std::int64_t numel = 0;
  for (const PlanLayer& l : plan.layers) {
    t.weight_bits += l.numel * l.bits;
    t.overhead_bits += scale_overhead_bits(l.scheme, l.groups);
    t.bops += l.macs * l.bits * (l.act_bits > 0 ? l.act_bits : plan.act_bits);
    t.predicted_omega += l.omega + l.act_omega;
    numel += l.numel;
  }
  t.predicted_omega += plan.inter_layer_omega;
  t.size_bytes = (t.weight_bits + t.overhead_bits + 7) / 8 + plan.unquantized_bytes;
  t.avg_bits = numel > 0 ? static_cast<double>(t.weight_bits) / static_cast<double>(numel) : 0.0;
  return t;
}

Plan make_plan(const AllocProblem& problem, const Allocation& allocation, std::span<const PlanLayerInfo> info) {
  const std::size_t n = problem.layers.size();
  if (info.size() != n || allocation.bits.size() != n)
    throw std::invalid_argument("make_plan: " + std::to_string(n) + " layers, but " + std::to_string(info.size()) +
                                " layer infos and " + std::to_string(allocation.bits.size()) + " bit widths");
  Plan p;
  p.act_bits = problem.act_bits;
  p.shared = problem.shared;
  p.optimizer_method = allocation.method;
  p.optimizer_status = status_string(allocation.status);
  p.optimizer_work = allocation.work;
  p.unquantized_bytes = (problem.extra_bits + 7) / 8;
  std::set<int> candidates, act_candidates;
  for (std::size_t i = 0; i < n; ++i) {
    const AllocLayer& a = problem.layers[i];
    const PlanLayerInfo& in = info[i];
    const std::int64_t overhead = scale_overhead_bits(in.scheme, in.groups);
    if (overhead != a.overhead_bits)
      throw std::invalid_argument("make_plan: layer " + a.name + ": overhead of " + std::to_string(in.groups) + " " +
                                  to_string(in.scheme) + " groups is " + std::to_string(overhead) +
                                  " bits, but the allocator counted " + std::to_string(a.overhead_bits));
    PlanLayer l;
    l.name = a.name;
    l.bits = allocation.bits[i];
    l.scheme = in.scheme;
    l.granularity = in.granularity;
    l.groups = in.groups;
    l.transposed = in.transposed;
    l.sensitivity = in.sensitivity;
    l.negative_top_eigenvalue = in.negative_top_eigenvalue;
    l.numel = a.numel;
    l.macs = a.macs;
    l.pinned = problem.pinned.count(a.name) > 0;
    bool found = false;
    const int act = allocation.act_bits.empty() ? -1 : allocation.act_bits[i];
    for (std::size_t k = 0; k < a.options.size(); ++k) {
      const BitOption& o = a.options[k];
      candidates.insert(o.bits);
      if (o.act_bits > 0) act_candidates.insert(o.act_bits);
      const int oact = o.act_bits > 0 ? o.act_bits : problem.act_bits;
      if (!found && o.bits == l.bits && (act < 0 || oact == act)) {
        const double act_part = k < in.act_omega.size() ? in.act_omega[k] : 0.0;
        l.omega = o.omega - act_part;
        if (o.act_bits > 0) {
          l.act_bits = o.act_bits;
          l.act_scheme = in.act_scheme;
          l.act_lo = in.act_lo;
          l.act_hi = in.act_hi;
          l.act_numel = in.act_numel;
          l.act_sensitivity = in.act_sensitivity;
          l.act_omega = act_part;
        }
        found = true;
      }
    }
    if (!found)
      throw std::invalid_argument("make_plan: layer " + a.name + ": " + std::to_string(l.bits) +
                                  " bits is not among its candidates");
    p.layers.push_back(std::move(l));
  }
  p.candidate_bits.assign(candidates.begin(), candidates.end());
  p.act_candidate_bits.assign(act_candidates.begin(), act_candidates.end());
  p.inter_layer_omega = allocation.chain_omega;
  p.totals = compute_totals(p);
  return p;
}

json plan_to_json(const Plan& plan) {
  json j;
  j["format"] = kPlanFormat;
  j["schema_version"] = plan.schema_version;
  j["curv_version"] = plan.curv_version;
  if (!plan.created_utc.empty()) j["created_utc"] = plan.created_utc;
  j["command"] = plan.command;
  j["model"] = {{"path", plan.model_path}, {"sha256", plan.model_sha256}};
  j["sensitivity"] = plan.sensitivity_kind;
  j["order"] = plan.order;
  if (plan.order_seed) j["order_seed"] = *plan.order_seed;
  if (plan.hessian_omega) j["hessian_omega"] = *plan.hessian_omega;
  if (plan.measured_omega) j["measured_omega"] = *plan.measured_omega;
  if (plan.inter_layer_omega != 0.0) j["inter_layer_omega"] = plan.inter_layer_omega;
  if (!plan.fine_tune_order.empty()) j["fine_tune_order"] = plan.fine_tune_order;
  if (!plan.selection.is_null()) j["selection"] = plan.selection;
  if (!plan.activations.is_null()) j["activations"] = plan.activations;
  if (!plan.measurement.is_null()) j["measurement"] = plan.measurement;
  j["act_bits"] = plan.act_bits;
  j["candidate_bits"] = plan.candidate_bits;
  if (!plan.act_candidate_bits.empty()) j["act_candidate_bits"] = plan.act_candidate_bits;
  j["budget"] =
      plan.budget ? json{{"kind", to_string(plan.budget->kind)}, {"value", plan.budget->value}} : json(nullptr);
  j["shared"] = plan.shared;
  j["optimizer"] = {
      {"method", plan.optimizer_method}, {"status", plan.optimizer_status}, {"work", plan.optimizer_work}};
  j["unquantized_bytes"] = plan.unquantized_bytes;
  json layers = json::array();
  for (const PlanLayer& l : plan.layers) {
    json o{{"name", l.name},
           {"bits", l.bits},
           {"scheme", to_string(l.scheme)},
           {"granularity", to_string(l.granularity)},
           {"groups", l.groups},
           {"sensitivity", l.sensitivity},
           {"negative_top_eigenvalue", l.negative_top_eigenvalue},
           {"omega", l.omega},
           {"numel", l.numel},
           {"macs", l.macs},
           {"pinned", l.pinned}};
    if (l.transposed) o["transposed"] = true;
    if (l.act_bits > 0) {
      o["act_bits"] = l.act_bits;
      o["act_scheme"] = to_string(l.act_scheme);
      o["act_lo"] = l.act_lo;
      o["act_hi"] = l.act_hi;
      o["act_numel"] = l.act_numel;
      o["act_sensitivity"] = l.act_sensitivity;
      o["act_omega"] = l.act_omega;
    }
    layers.push_back(std::move(o));
  }
  j["layers"] = std::move(layers);
  j["totals"] = {{"size_bytes", plan.totals.size_bytes},
                 {"avg_bits", plan.totals.avg_bits},
                 {"bops", plan.totals.bops},
                 {"predicted_omega", plan.totals.predicted_omega},
                 {"weight_bits", plan.totals.weight_bits},
                 {"overhead_bits", plan.totals.overhead_bits}};
  return j;
}

Plan plan_from_json(const json& j, const std::string& source) {
  const Reader r(source);
  r.object(j, "");
  {
    auto it = j.find("format");
    if (it == j.end() || !it->is_string() || it->get<std::string>() != kPlanFormat)
      r.fail("", std::string("not a curv quantization plan (expected \"format\": \"") + kPlanFormat + "\")");
  }
  Plan p;
  p.schema_version = static_cast<int>(r.integer(r.key(j, "schema_version", ""), "schema_version", 0, 1 << 20));
  if (p.schema_version < 1 || p.schema_version > kPlanSchemaVersion)
    r.fail("schema_version", std::to_string(p.schema_version) + " is not supported (this curv reads 1.." +
                                 std::to_string(kPlanSchemaVersion) + ")");
  p.curv_version = r.string(r.key(j, "curv_version", ""), "curv_version");
  if (const json* v = r.optional(j, "created_utc")) p.created_utc = r.string(*v, "created_utc");
  p.command = r.string(r.key(j, "command", ""), "command");
  const json& model = r.object(r.key(j, "model", ""), "model");
  if (const json* v = r.optional(model, "path")) p.model_path = r.string(*v, "model.path");
  p.model_sha256 = r.string(r.key(model, "sha256", "model"), "model.sha256");
  if (p.model_sha256.size() != 64 || !std::all_of(p.model_sha256.begin(), p.model_sha256.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      }))
    r.fail("model.sha256", "\"" + p.model_sha256 + "\" is not 64 lower-case hex digits");
  if (const json* v = r.optional(j, "sensitivity")) {
    p.sensitivity_kind = r.string(*v, "sensitivity");
    if (!p.sensitivity_kind.empty()) {
      try {
        sensitivity_kind_from_string(p.sensitivity_kind);
      } catch (const std::invalid_argument& e) {
        r.fail("sensitivity", e.what());
      }
    }
  }
  if (const json* v = r.optional(j, "order")) {
    p.order = r.string(*v, "order");
    try {
      sensitivity_order_from_string(p.order);
    } catch (const std::invalid_argument& e) {
      r.fail("order", e.what());
    }
  }
  if (const json* v = r.optional(j, "order_seed")) p.order_seed = r.integer(*v, "order_seed", 0, kMaxInt);
  if (const json* v = r.optional(j, "hessian_omega")) p.hessian_omega = r.number(*v, "hessian_omega");
  if (const json* v = r.optional(j, "measured_omega")) p.measured_omega = r.number(*v, "measured_omega");
  if (const json* v = r.optional(j, "inter_layer_omega")) p.inter_layer_omega = r.number(*v, "inter_layer_omega");
  if (const json* v = r.optional(j, "selection")) p.selection = r.object(*v, "selection");
  if (const json* v = r.optional(j, "activations")) p.activations = r.object(*v, "activations");
  if (const json* v = r.optional(j, "measurement")) p.measurement = r.object(*v, "measurement");
  p.act_bits = static_cast<int>(r.integer(r.key(j, "act_bits", ""), "act_bits", 1, 32));
  if (const json* v = r.optional(j, "act_candidate_bits")) {
    r.array(*v, "act_candidate_bits");
    for (std::size_t i = 0; i < v->size(); ++i)
      p.act_candidate_bits.push_back(
          static_cast<int>(r.integer((*v)[i], "act_candidate_bits[" + std::to_string(i) + "]", kMinBits, kMaxBits)));
  }
  if (const json* v = r.optional(j, "candidate_bits")) {
    r.array(*v, "candidate_bits");
    for (std::size_t i = 0; i < v->size(); ++i)
      p.candidate_bits.push_back(
          static_cast<int>(r.integer((*v)[i], "candidate_bits[" + std::to_string(i) + "]", kMinBits, kMaxBits)));
  }
  if (const json* v = r.optional(j, "budget")) {
    r.object(*v, "budget");
    Budget b;
    try {
      b.kind = budget_kind_from_string(r.string(r.key(*v, "kind", "budget"), "budget.kind"));
    } catch (const std::invalid_argument& e) {
      r.fail("budget.kind", e.what());
    }
    b.value = r.number(r.key(*v, "value", "budget"), "budget.value");
    if (!(b.value > 0.0)) r.fail("budget.value", "must be positive");
    p.budget = b;
  }
  if (const json* v = r.optional(j, "optimizer")) {
    r.object(*v, "optimizer");
    if (const json* m = r.optional(*v, "method")) p.optimizer_method = r.string(*m, "optimizer.method");
    if (const json* s = r.optional(*v, "status")) p.optimizer_status = r.string(*s, "optimizer.status");
    if (const json* w = r.optional(*v, "work")) p.optimizer_work = r.integer(*w, "optimizer.work", 0, kMaxInt);
  }
  if (const json* v = r.optional(j, "unquantized_bytes"))
    p.unquantized_bytes = r.integer(*v, "unquantized_bytes", 0, kMaxInt);

  // Layers.
  const json& layers = r.array(r.key(j, "layers", ""), "layers");
  if (layers.empty()) r.fail("layers", "empty (a plan has at least one layer)");
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string w = "layers[" + std::to_string(i) + "]";
    const json& o = r.object(layers[i], w);
    PlanLayer l;
    l.name = r.string(r.key(o, "name", w), w + ".name");
    if (l.name.empty()) r.fail(w + ".name", "empty");
    if (!index.emplace(l.name, i).second) r.fail(w + ".name", "\"" + l.name + "\" appears twice");
    l.bits = static_cast<int>(r.integer(r.key(o, "bits", w), w + ".bits", kMinBits, kMaxBits));
    try {
      l.scheme = scheme_from_string(r.string(r.key(o, "scheme", w), w + ".scheme"));
    } catch (const std::invalid_argument& e) {
      r.fail(w + ".scheme", e.what());
    }
    try {
      l.granularity = granularity_from_string(r.string(r.key(o, "granularity", w), w + ".granularity"));
    } catch (const std::invalid_argument& e) {
      r.fail(w + ".granularity", e.what());
    }
    l.numel = r.integer(r.key(o, "numel", w), w + ".numel", 1, kMaxInt / kMaxBits);
    l.groups = r.integer(r.key(o, "groups", w), w + ".groups", 1, l.numel);
    if (l.granularity == Granularity::PerTensor && l.groups != 1)
      r.fail(w + ".groups", std::to_string(l.groups) + " groups for per-tensor quantization (expected 1)");
    l.sensitivity = r.number(r.key(o, "sensitivity", w), w + ".sensitivity");
    if (const json* v = r.optional(o, "negative_top_eigenvalue"))
      l.negative_top_eigenvalue = r.boolean(*v, w + ".negative_top_eigenvalue");
    l.omega = r.number(r.key(o, "omega", w), w + ".omega");
    l.macs = r.integer(r.key(o, "macs", w), w + ".macs", 0, kMaxInt / (kMaxBits * 32));
    if (const json* v = r.optional(o, "pinned")) l.pinned = r.boolean(*v, w + ".pinned");
    if (const json* v = r.optional(o, "transposed")) l.transposed = r.boolean(*v, w + ".transposed");
    if (const json* v = r.optional(o, "act_bits")) {
      l.act_bits = static_cast<int>(r.integer(*v, w + ".act_bits", kMinBits, kMaxBits));
      try {
        l.act_scheme = scheme_from_string(r.string(r.key(o, "act_scheme", w), w + ".act_scheme"));
      } catch (const std::invalid_argument& e) {
        r.fail(w + ".act_scheme", e.what());
      }
      l.act_lo = r.number(r.key(o, "act_lo", w), w + ".act_lo");
      l.act_hi = r.number(r.key(o, "act_hi", w), w + ".act_hi");
      if (!std::isfinite(l.act_lo) || !std::isfinite(l.act_hi) || !(l.act_lo <= l.act_hi))
        r.fail(w + ".act_lo", "the activation range [" + json(l.act_lo).dump() + ", " + json(l.act_hi).dump() +
                                  "] is not a finite interval");
      l.act_numel = r.integer(r.key(o, "act_numel", w), w + ".act_numel", 1, kMaxInt);
      l.act_sensitivity = r.number(r.key(o, "act_sensitivity", w), w + ".act_sensitivity");
      l.act_omega = r.number(r.key(o, "act_omega", w), w + ".act_omega");
    }
    p.layers.push_back(std::move(l));
  }
  if (const json* v = r.optional(j, "fine_tune_order")) {
    r.array(*v, "fine_tune_order");
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string where = "fine_tune_order[" + std::to_string(i) + "]";
      const std::string name = r.string((*v)[i], where);
      if (!index.count(name)) r.fail(where, "unknown layer \"" + name + "\"");
      p.fine_tune_order.push_back(name);
    }
  }

  if (const json* v = r.optional(j, "shared")) {
    r.array(*v, "shared");
    for (std::size_t g = 0; g < v->size(); ++g) {
      const std::string w = "shared[" + std::to_string(g) + "]";
      r.array((*v)[g], w);
      std::vector<std::string> names;
      for (std::size_t k = 0; k < (*v)[g].size(); ++k) {
        const std::string name = r.string((*v)[g][k], w + "[" + std::to_string(k) + "]");
        auto it = index.find(name);
        if (it == index.end()) r.fail(w, "unknown layer \"" + name + "\"");
        const PlanLayer& first = p.layers[index.at(names.empty() ? name : names.front())];
        if (p.layers[it->second].bits != first.bits)
          r.fail(w, "layers " + first.name + " (" + std::to_string(first.bits) + " bits) and " + name + " (" +
                        std::to_string(p.layers[it->second].bits) + " bits) must share a bit width");
        names.push_back(name);
      }
      p.shared.push_back(std::move(names));
    }
  }

  // Totals must agree with the layers.
  const json& t = r.object(r.key(j, "totals", ""), "totals");
  p.totals.size_bytes = r.integer(r.key(t, "size_bytes", "totals"), "totals.size_bytes", 0, kMaxInt);
  p.totals.avg_bits = r.number(r.key(t, "avg_bits", "totals"), "totals.avg_bits");
  p.totals.bops = r.integer(r.key(t, "bops", "totals"), "totals.bops", 0, kMaxInt);
  p.totals.predicted_omega = r.number(r.key(t, "predicted_omega", "totals"), "totals.predicted_omega");
  p.totals.weight_bits = r.integer(r.key(t, "weight_bits", "totals"), "totals.weight_bits", 0, kMaxInt);
  p.totals.overhead_bits = r.integer(r.key(t, "overhead_bits", "totals"), "totals.overhead_bits", 0, kMaxInt);
  const PlanTotals c = compute_totals(p);
  auto mismatch = [&](const char* key, const std::string& stored, const std::string& expected) {
    r.fail(std::string("totals.") + key, stored + " does not match the layers (" + expected + ")");
  };
  if (p.totals.weight_bits != c.weight_bits)
    mismatch("weight_bits", std::to_string(p.totals.weight_bits), std::to_string(c.weight_bits));
  if (p.totals.overhead_bits != c.overhead_bits)
    mismatch("overhead_bits", std::to_string(p.totals.overhead_bits), std::to_string(c.overhead_bits));
  if (p.totals.size_bytes != c.size_bytes)
    mismatch("size_bytes", std::to_string(p.totals.size_bytes), std::to_string(c.size_bytes));
  if (p.totals.bops != c.bops) mismatch("bops", std::to_string(p.totals.bops), std::to_string(c.bops));
  if (!close(p.totals.avg_bits, c.avg_bits))
    mismatch("avg_bits", json(p.totals.avg_bits).dump(), json(c.avg_bits).dump());
  if (!close(p.totals.predicted_omega, c.predicted_omega))
    mismatch("predicted_omega", json(p.totals.predicted_omega).dump(), json(c.predicted_omega).dump());
  return p;
}

void write_plan(const Plan& plan, const std::string& path) {
  const json j = plan_to_json(plan);
  try {
    plan_from_json(j, path);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(std::string("refusing to write an invalid plan: ") + e.what());
  }
  AtomicFile file(path, {plan.model_path});
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot write (cannot create " + file.temp_path() + ")");
    out << j.dump(2) << '\n';
    out.close();
    if (!out) throw std::runtime_error(path + ": cannot write (write to " + file.temp_path() + " failed)");
  }
  file.commit();
}

Plan read_plan(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error(path + ": cannot open for reading");
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse errors, and numbers out of double's range
    throw std::runtime_error(path + ": not valid JSON (" + e.what() + ")");
  }
  return plan_from_json(j, path);
}

void check_plan_model(const Plan& plan, const std::string& plan_path, const std::string& model_path,
                      const std::map<std::string, std::string>* model_meta) {
  const std::string sha = sha256_file(model_path);
  if (model_meta) {
    const auto it = model_meta->find(kFineTunedForKey);
    if (it != model_meta->end() && it->second == plan.model_sha256) return;
  }
  if (sha != plan.model_sha256)
    throw std::runtime_error(plan_path + ": plan was made for a model with sha256 " + plan.model_sha256 + ", but " +
                             model_path + " has sha256 " + sha);
}

}  // namespace curv::quant
