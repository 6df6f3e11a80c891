#include "src/io/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <regex>
#include <stdexcept>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>

#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"
#include "src/io/internal/hdf5_probe.h"
#include "src/io/graph_json.h"
#include "src/core/timer.h"

namespace curv {

namespace {


constexpr const char* kFormat = "curv-checkpoint";
constexpr std::int64_t kSchemaVersion = 1;  // /train and /history are optional additions

// Names in messages come from the file: control characters are replaced (one-line errors).
[[noreturn]] void fail(const std::string& file, const std::string& msg) {
  std::string text = file + ": " + msg;
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 32) c = '?';
  throw std::runtime_error(text);
}

std::string escape(const std::string& name) {
  std::string r;
  for (char c : name) {
    if (c == '%')
      r += "%25";
    else if (c == '/')
      r += "%2F";
    else
      r += c;
  }
  if (r.empty() || r == "." || r == "..") r = "%" + r;  // not a valid HDF5 link name otherwise
  return r;
}

// Bounds of what a checkpoint may hold, checked before anything is allocated.
constexpr std::size_t kMaxGraphBytes = std::size_t(1) << 28;  // /graph JSON text
constexpr std::size_t kMaxMetaEntries = 4096;                  // attributes of /meta
constexpr std::size_t kMaxOptimizerStates = 64;                // datasets of /train/optimizer

// Reads a parameter or constant tensor; NaN is an error, and so is +-Inf in a trainable
// parameter (-inf is legitimate in a constant such as an attention mask).
Tensor<double> read_tensor(const h5::Object& group, const std::string& name, bool parameter) {
  const std::string link = escape(name);
  if (!group.exists(link)) fail(group.file(), "missing dataset '" + group.path() + "/" + link + "'");
  h5::Array<double> a = group.read_f64(link);
  Shape shape(a.shape.begin(), a.shape.end());
  for (std::size_t k = 0; k < a.data.size(); ++k)
    if (std::isnan(a.data[k]) || (parameter && std::isinf(a.data[k])))
      fail(group.file(), std::string(parameter ? "parameter '" : "constant '") + name + "': " +
                             (std::isnan(a.data[k]) ? "NaN" : "Inf") + " at element " + std::to_string(k) + " of " +
                             shape_str(shape));
  return Tensor<double>(shape, std::move(a.data));
}

void write_tensor(const h5::Object& group, const std::string& name, const Tensor<double>& t) {
  const std::string link = escape(name);
  group.write_dataset(link, std::span<const double>(t.data(), t.size()),
                      std::vector<std::uint64_t>(t.shape().begin(), t.shape().end()));
  group.open_object(link).write_attribute("name", name);
}

// A float64 or int64 series [n] (or [n, cols]) of /train or /history.
template <class V>
void write_array(const h5::Object& group, const std::string& name, const std::vector<V>& v, std::uint64_t cols = 0) {
  std::vector<std::uint64_t> shape{cols ? v.size() / cols : v.size()};
  if (cols) shape.push_back(cols);
  group.write_dataset(name, std::span<const V>(v), shape);
}

template <class V>
std::vector<V> read_array(const h5::Object& group, const std::string& name) {
  if (!group.exists(name)) fail(group.file(), "missing dataset '" + group.path() + "/" + name + "'");
  if constexpr (std::is_integral_v<V>)
    return group.read_i64(name).data;
  else
    return group.read_f64(name).data;
}

// The float64 series of /history and /history/curvature: one table serves the writer and the reader.
struct EpochF64 {
  const char* name;
  double EpochRecord::*field;
};
constexpr EpochF64 kEpochF64[] = {
    {"lr", &EpochRecord::lr},
    {"train_loss", &EpochRecord::train_loss},
    {"train_accuracy", &EpochRecord::train_accuracy},
    {"test_loss", &EpochRecord::test_loss},
    {"test_accuracy", &EpochRecord::test_accuracy},
    {"seconds", &EpochRecord::seconds},
    {"samples_per_second", &EpochRecord::samples_per_second},
};
struct CurvatureF64 {
  const char* name;
  double CurvatureRecord::*field;
};
constexpr CurvatureF64 kCurvatureF64[] = {
    {"epoch", &CurvatureRecord::epoch},
    {"loss", &CurvatureRecord::loss},
    {"lambda_max", &CurvatureRecord::lambda_max},
    {"lambda_max_residual", &CurvatureRecord::lambda_max_residual},
    {"trace", &CurvatureRecord::trace},
    {"trace_stderr", &CurvatureRecord::trace_stderr},
    {"grad_overlap", &CurvatureRecord::grad_overlap},
    {"grad_norm", &CurvatureRecord::grad_norm},
    {"lr", &CurvatureRecord::lr},
    {"seconds", &CurvatureRecord::seconds},
};

// Column of a record series: one value per record.
template <class R, class V>
std::vector<V> column(const std::vector<R>& rs, V R::*field) {
  std::vector<V> v;
  for (const auto& r : rs) v.push_back(r.*field);
  return v;
}

// /history/optimizer: the steps of a second-order optimizer, one float64 column per logged name
// (NaN where a step did not log it). Written only when there are records.
void write_optimizer_history(const h5::Object& h, const std::vector<OptimizerRecord>& R) {
  if (R.empty()) return;
  const h5::Object g = h.create_group("optimizer");
  write_array(g, "step", column(R, &OptimizerRecord::step));
  std::set<std::string> names;
  for (const auto& r : R)
    for (const auto& kv : r.values) names.insert(kv.first);
  for (const auto& n : names) {
    std::vector<double> v;
    for (const auto& r : R) {
      const auto it = r.values.find(n);
      v.push_back(it == r.values.end() ? std::numeric_limits<double>::quiet_NaN() : it->second);
    }
    write_array(g, n, v);
  }
}

void write_train_state(const h5::Object& f, const TrainState& t) {
  const h5::Object train = f.create_group("train");
  train.write_attribute("epoch", t.epoch);
  train.write_attribute("step", t.step);
  train.write_attribute("optimizer", t.optimizer);
  train.write_attribute("optimizer_steps", t.optimizer_steps);
  train.write_attribute("config", t.config);
  const h5::Object opt = train.create_group("optimizer");
  for (const auto& [name, v] : t.optimizer_state) write_array(opt, name, v);

  const auto& E = t.history.epochs;
  const h5::Object h = f.create_group("history");
  write_array(h, "epoch", column(E, &EpochRecord::epoch));
  write_array(h, "step", column(E, &EpochRecord::step));
  for (const auto& c : kEpochF64) write_array(h, c.name, column(E, c.field));
  // Optimizer statistics by name, one value per epoch (NaN where an epoch has none): adahessian,
  // sophia. (The per-step logs of kfac/hf/bhf are /history/optimizer.)
  std::set<std::string> stat_names;
  for (const auto& r : E)
    for (const auto& kv : r.optimizer) stat_names.insert(kv.first);
  if (!stat_names.empty()) {
    const h5::Object os = h.create_group("optimizer_epochs");
    for (const auto& n : stat_names) {
      std::vector<double> v;
      for (const auto& r : E) {
        const auto it = r.optimizer.find(n);
        v.push_back(it == r.optimizer.end() ? std::numeric_limits<double>::quiet_NaN() : it->second);
      }
      write_array(os, n, v);
    }
  }

  const auto& C = t.history.curvature;
  const h5::Object c = h.create_group("curvature");
  write_array(c, "step", column(C, &CurvatureRecord::step));
  write_array(c, "hvps", column(C, &CurvatureRecord::hvps));
  for (const auto& col : kCurvatureF64) write_array(c, col.name, column(C, col.field));
  std::size_t k = 0;
  for (const auto& r : C) k = std::max(k, r.top_values.size());
  std::vector<double> top;
  for (const auto& r : C)
    for (std::size_t j = 0; j < k; ++j)
      top.push_back(j < r.top_values.size() ? r.top_values[j] : std::numeric_limits<double>::quiet_NaN());
  write_array(c, "top_values", top, std::max<std::uint64_t>(k, 1));
  write_optimizer_history(h, t.history.optimizer);
}

// Opens a curv checkpoint: an HDF5 file whose root says format = "curv-checkpoint" and a
// schema_version this reader knows.
h5::Object open_checkpoint(const std::string& path) {
  h5::Object f = h5::Object::open(path);
  if (!f.has_attribute("format") || f.read_string_attribute("format", 256) != kFormat)
    fail(path, std::string("not a curv checkpoint (root attribute format != \"") + kFormat + "\")");
  if (f.has_attribute("schema_version")) {
    const std::int64_t v = f.read_int_attribute("schema_version");
    if (v < 1 || v > kSchemaVersion)
      fail(path, "checkpoint schema_version " + std::to_string(v) + " is not supported (this curv reads 1.." +
                     std::to_string(kSchemaVersion) + ")");
  }
  return f;
}

}  // namespace

std::vector<std::string> model_files(const Model& model) {
  for (const char* key : {"checkpoint", "source"})
    if (const auto it = model.meta().find(key); it != model.meta().end()) return {it->second};
  return {};
}

void write_checkpoint(const Model& m, const h5::Object& f, const TrainState* train) {
  const std::string graph = graph_to_json(m);
  f.write_attribute("format", kFormat);
  f.write_attribute("schema_version", kSchemaVersion);
#ifdef CURV_VERSION
  f.write_attribute("curv_version", CURV_VERSION);
#endif
  f.write_attribute("created_utc", utc_timestamp());
  f.write_string("graph", graph);
  const h5::Object params = f.create_group("params");
  const h5::Object consts = f.create_group("constants");
  const h5::Object meta = f.create_group("meta");
  for (const Value& v : m.values()) {
    if (v.kind == ValueKind::Parameter) write_tensor(params, v.name, m.param(v.index));
    if (v.kind == ValueKind::Constant) write_tensor(consts, v.name, m.constant(v.index));
  }
  for (const auto& [k, v] : m.meta()) meta.write_attribute(k, v);
  if (train) write_train_state(f, *train);
}

void save_checkpoint(const Model& model, const std::string& path, const TrainState* train) {
  if (model.input() < 0 || model.output() < 0) throw std::invalid_argument(path + ": model has no input or no output");
  AtomicFile out(path, model_files(model));
  h5::Object f = h5::Object::create(out.temp_path(), path);
  write_checkpoint(model, f, train);
  f.close();
  out.commit();
}

// The reads of load_checkpoint, run under h5::internal::guarded (first in a child process).
static Model read_checkpoint(const std::string& path, const ImportOptions& opts) {
  const h5::Object f = open_checkpoint(path);
  if (!f.exists("graph")) fail(path, "missing dataset '/graph'");
  const std::string graph = f.read_string("graph", kMaxGraphBytes);
  std::optional<std::regex> params_re, freeze_re;
  try {
    if (!opts.params_regex.empty()) params_re.emplace(opts.params_regex);
    if (!opts.freeze_regex.empty()) freeze_re.emplace(opts.freeze_regex);
  } catch (const std::regex_error& e) {
    throw std::invalid_argument("parameter selection: invalid regular expression (" + std::string(e.what()) + ")");
  }
  auto trainable = [&](const std::string& name) {
    if (params_re && !std::regex_search(name, *params_re)) return false;
    return !(freeze_re && std::regex_search(name, *freeze_re));
  };
  Model m;
  try {
    if (!f.exists("params") || !f.exists("constants")) fail(path, "missing group '/params' or '/constants'");
    const h5::Object params = f.open_object("params");
    const h5::Object consts = f.open_object("constants");
    GraphTensors tensors;
    tensors.load = [&](const std::string& name, bool param) {
      return param ? read_tensor(params, name, trainable(name)) : read_tensor(consts, name, false);
    };
    tensors.trainable = trainable;
    m = graph_from_json(graph, tensors, opts.batch_norm_training);
  } catch (const std::invalid_argument& e) {
    fail(path, e.what());
  }
  if (f.exists("meta")) {
    const h5::Object meta = f.open_object("meta");
    for (const auto& key : meta.attribute_names(kMaxMetaEntries)) m.meta()[key] = meta.read_string_attribute(key);
  }
  m.meta()["checkpoint"] = path;
  return m;
}

}  // namespace curv

namespace curv {

static std::optional<TrainState> read_train_state(const std::string& path) {
  const h5::Object f = open_checkpoint(path);
  if (!f.exists("train")) return std::nullopt;
  TrainState t;
  const h5::Object train = f.open_object("train");
  t.epoch = train.read_int_attribute("epoch");
  t.step = train.read_int_attribute("step");
  t.optimizer = train.read_string_attribute("optimizer");
  t.optimizer_steps = train.read_int_attribute("optimizer_steps");
  t.config = train.read_string_attribute("config");
  if (train.exists("optimizer")) {
    const h5::Object opt = train.open_object("optimizer");
    for (const auto& n : opt.children(kMaxOptimizerStates)) {
      std::vector<double> v = read_array<double>(opt, n);
      for (std::size_t k = 0; k < v.size(); ++k)
        if (!std::isfinite(v[k]))
          fail(path, "'/train/optimizer/" + n + "': " + (std::isnan(v[k]) ? "NaN" : "Inf") + " at element " +
                         std::to_string(k));
      t.optimizer_state[n] = std::move(v);
    }
  }
  if (!f.exists("history")) fail(path, "has '/train' but no '/history'");
  const h5::Object h = f.open_object("history");
  // Reads one series of `n` values into field `field` of records `rs` (resized to n).
  auto series = [&](const h5::Object& g, const char* name, std::size_t n, auto& rs, auto field) {
    using V = std::remove_reference_t<decltype(rs.front().*field)>;
    const auto v = read_array<V>(g, name);
    if (v.size() != n)
      fail(path, "'" + g.path() + "/" + name + "' has " + std::to_string(v.size()) + " values, expected " +
                     std::to_string(n));
    rs.resize(n);
    for (std::size_t i = 0; i < n; ++i) rs[i].*field = v[i];
  };
  auto& E = t.history.epochs;
  const std::size_t ne = read_array<std::int64_t>(h, "epoch").size();
  series(h, "epoch", ne, E, &EpochRecord::epoch);
  series(h, "step", ne, E, &EpochRecord::step);
  for (const auto& c : kEpochF64) series(h, c.name, ne, E, c.field);
  if (h.exists("optimizer_epochs")) {
    const h5::Object os = h.open_object("optimizer_epochs");
    for (const auto& n : os.children(kMaxOptimizerStates)) {
      const auto v = read_array<double>(os, n);
      if (v.size() != ne)
        fail(path, "'/history/optimizer_epochs/" + n + "' has " + std::to_string(v.size()) + " values, expected " +
                       std::to_string(ne));
      for (std::size_t i = 0; i < ne; ++i)
        if (!std::isnan(v[i])) E[i].optimizer[n] = v[i];
    }
  }

  if (!h.exists("curvature")) fail(path, "missing group '/history/curvature'");
  const h5::Object c = h.open_object("curvature");
  auto& C = t.history.curvature;
  const std::size_t nc = read_array<std::int64_t>(c, "step").size();
  series(c, "step", nc, C, &CurvatureRecord::step);
  series(c, "hvps", nc, C, &CurvatureRecord::hvps);
  for (const auto& col : kCurvatureF64) series(c, col.name, nc, C, col.field);
  const auto top = read_array<double>(c, "top_values");
  const std::size_t k = nc ? top.size() / nc : 0;
  if (nc && top.size() != k * nc) fail(path, "'/history/curvature/top_values' does not have one row per measurement");
  for (std::size_t i = 0; i < nc; ++i)
    for (std::size_t j = 0; j < k; ++j)
      if (!std::isnan(top[i * k + j])) C[i].top_values.push_back(top[i * k + j]);
  if (h.exists("optimizer")) {  // optional: second-order optimizers only
    const h5::Object g = h.open_object("optimizer");
    auto& R = t.history.optimizer;
    const std::size_t no = read_array<std::int64_t>(g, "step").size();
    series(g, "step", no, R, &OptimizerRecord::step);
    for (const auto& n : g.children(kMaxOptimizerStates)) {
      if (n == "step") continue;
      const auto v = read_array<double>(g, n);
      if (v.size() != no) fail(path, "'" + g.path() + "/" + n + "' does not have one value per step");
      for (std::size_t i = 0; i < no; ++i)
        if (!std::isnan(v[i])) R[i].values[n] = v[i];
    }
  }
  return t;
}

// libhdf5 can crash or loop on corrupt metadata whatever the reader checks: the reads run first
// in a child process (src/io/internal/hdf5_probe.h).
Model load_checkpoint(const std::string& path, const ImportOptions& opts) {
  Model m;
  h5::internal::guarded(path, [&] { m = read_checkpoint(path, opts); });
  return m;
}

std::optional<TrainState> load_train_state(const std::string& path) {
  std::optional<TrainState> t;
  h5::internal::guarded(path, [&] { t = read_train_state(path); });
  return t;
}

}  // namespace curv
