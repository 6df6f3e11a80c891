#include "src/io/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <stdexcept>
#include <cmath>
#include <limits>
#include <type_traits>

#include "src/io/internal/h5.h"
#include "src/io/graph_json.h"
#include "src/core/timer.h"

namespace curv {

namespace {

using nlohmann::json;

constexpr const char* kFormat = "curv-checkpoint";
constexpr std::int64_t kSchemaVersion = 1;  // /train and /history are optional additions

[[noreturn]] void fail(const std::string& file, const std::string& msg) { throw std::runtime_error(file + ": " + msg); }

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

h5::Type string_type(std::size_t size) {
  h5::Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), std::max<std::size_t>(size, 1));
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  return t;
}

// Variable-length UTF-8 string attributes (h5py reads them as str), like the spectra store.
void write_str_attr(const std::string& file, hid_t obj, const std::string& name, const std::string& v) {
  h5::Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  h5::Space s(H5Screate(H5S_SCALAR));
  h5::Attr a(H5Acreate2(obj, name.c_str(), t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT));
  const char* p = v.c_str();
  if (!a || H5Awrite(a.get(), t.get(), &p) < 0) fail(file, "cannot write attribute '" + name + "'");
}

void write_int_attr(const std::string& file, hid_t obj, const std::string& name, std::int64_t v) {
  h5::Space s(H5Screate(H5S_SCALAR));
  h5::Attr a(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, s.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a || H5Awrite(a.get(), H5T_NATIVE_INT64, &v) < 0) fail(file, "cannot write attribute '" + name + "'");
}

// Reads a string attribute (fixed-length as written here, or variable-length as h5py writes).
std::string read_str(hid_t obj, hid_t ftype, bool is_attr, const std::string& file, const std::string& what) {
  std::string s;
  if (H5Tis_variable_str(ftype) > 0) {
    h5::Type mt(H5Tcopy(H5T_C_S1));
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(ftype));  // HDF5 does not convert between character sets
    char* p = nullptr;
    const herr_t rc = is_attr ? H5Aread(obj, mt.get(), &p) : H5Dread(obj, mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p);
    if (rc < 0) fail(file, "cannot read " + what);
    s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  if (H5Tget_class(ftype) != H5T_STRING) fail(file, what + " is not a string");
  const std::size_t n = H5Tget_size(ftype);
  s.assign(n, '\0');
  const herr_t rc =
      is_attr ? H5Aread(obj, ftype, s.data()) : H5Dread(obj, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data());
  if (rc < 0) fail(file, "cannot read " + what);
  s.resize(strnlen(s.c_str(), n));
  return s;
}

std::string read_str_attr(const std::string& file, hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) fail(file, "missing attribute '" + name + "'");
  h5::Attr a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  h5::Type t(H5Aget_type(a.get()));
  return read_str(a.get(), t.get(), true, file, "attribute '" + name + "'");
}

void write_tensor(const std::string& file, hid_t group, const std::string& name, const Tensor<double>& t) {
  std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
  h5::Space s(dims.empty() ? H5Screate(H5S_SCALAR)
                           : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  h5::Dataset d(
      H5Dcreate2(group, escape(name).c_str(), H5T_IEEE_F64LE, s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!d || (t.size() > 0 && H5Dwrite(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()) < 0))
    fail(file, "cannot write dataset '" + name + "'");
  write_str_attr(file, d.get(), "name", name);
}

Tensor<double> read_tensor(const std::string& file, hid_t group, const std::string& gname, const std::string& name) {
  const std::string link = escape(name);
  if (H5Lexists(group, link.c_str(), H5P_DEFAULT) <= 0) fail(file, "missing dataset '/" + gname + "/" + link + "'");
  h5::Dataset d(H5Dopen2(group, link.c_str(), H5P_DEFAULT));
  h5::Space s(H5Dget_space(d.get()));
  const int rank = H5Sget_simple_extent_ndims(s.get());
  std::vector<hsize_t> dims(std::max(rank, 0));
  if (rank > 0) H5Sget_simple_extent_dims(s.get(), dims.data(), nullptr);
  Tensor<double> t(Shape(dims.begin(), dims.end()));
  if (t.size() > 0 && H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()) < 0)
    fail(file, "cannot read dataset '/" + gname + "/" + link + "'");
  return t;
}

// A float64 or int64 array dataset [n] or [n, k] (no name attribute: the link name is plain).
template <class V>
void write_array(const std::string& file, hid_t group, const std::string& name, const std::vector<V>& v,
                 hsize_t cols = 0) {
  const bool is_int = std::is_integral_v<V>;
  hsize_t dims[2] = {cols ? v.size() / cols : v.size(), cols};
  h5::Space s(H5Screate_simple(cols ? 2 : 1, dims, nullptr));
  h5::Dataset d(H5Dcreate2(group, name.c_str(), is_int ? H5T_STD_I64LE : H5T_IEEE_F64LE, s.get(), H5P_DEFAULT,
                           H5P_DEFAULT, H5P_DEFAULT));
  if (!d || (!v.empty() && H5Dwrite(d.get(), is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                    H5P_DEFAULT, v.data()) < 0))
    fail(file, "cannot write dataset '" + name + "'");
}

template <class V>
std::vector<V> read_array(const std::string& file, hid_t group, const std::string& where, const std::string& name) {
  if (H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0) fail(file, "missing dataset '" + where + "/" + name + "'");
  h5::Dataset d(H5Dopen2(group, name.c_str(), H5P_DEFAULT));
  h5::Space s(H5Dget_space(d.get()));
  const hssize_t n = H5Sget_simple_extent_npoints(s.get());
  std::vector<V> v(std::max<hssize_t>(n, 0));
  if (!d || n < 0 ||
      (n > 0 && H5Dread(d.get(), std::is_integral_v<V> ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                        H5P_DEFAULT, v.data()) < 0))
    fail(file, "cannot read dataset '" + where + "/" + name + "'");
  return v;
}

std::int64_t read_int_attr(const std::string& file, hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) fail(file, "missing attribute '" + name + "'");
  h5::Attr a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  std::int64_t v = 0;
  if (!a || H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) fail(file, "cannot read attribute '" + name + "'");
  return v;
}

h5::Group make_group(const std::string& file, hid_t parent, const char* name) {
  h5::Group g(H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!g) fail(file, std::string("cannot create group '") + name + "'");
  return g;
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

void write_train_state(const std::string& path, hid_t f, const TrainState& t) {
  h5::Group train = make_group(path, f, "train");
  write_int_attr(path, train.get(), "epoch", t.epoch);
  write_int_attr(path, train.get(), "step", t.step);
  write_str_attr(path, train.get(), "optimizer", t.optimizer);
  write_int_attr(path, train.get(), "optimizer_steps", t.optimizer_steps);
  write_str_attr(path, train.get(), "config", t.config);
  h5::Group opt = make_group(path, train.get(), "optimizer");
  for (const auto& [name, v] : t.optimizer_state) write_array(path, opt.get(), name, v);

  const auto& E = t.history.epochs;
  h5::Group h = make_group(path, f, "history");
  write_array(path, h.get(), "epoch", column(E, &EpochRecord::epoch));
  write_array(path, h.get(), "step", column(E, &EpochRecord::step));
  for (const auto& c : kEpochF64) write_array(path, h.get(), c.name, column(E, c.field));

  const auto& C = t.history.curvature;
  h5::Group c = make_group(path, h.get(), "curvature");
  write_array(path, c.get(), "step", column(C, &CurvatureRecord::step));
  write_array(path, c.get(), "hvps", column(C, &CurvatureRecord::hvps));
  for (const auto& col : kCurvatureF64) write_array(path, c.get(), col.name, column(C, col.field));
  std::size_t k = 0;
  for (const auto& r : C) k = std::max(k, r.top_values.size());
  std::vector<double> top;
  for (const auto& r : C)
    for (std::size_t j = 0; j < k; ++j)
      top.push_back(j < r.top_values.size() ? r.top_values[j] : std::numeric_limits<double>::quiet_NaN());
  write_array(path, c.get(), "top_values", top, std::max<hsize_t>(k, 1));
}

// Opens a file that must be an HDF5 file, with the errors load_checkpoint reports.
h5::File open_hdf5(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail(path, "no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, "not an HDF5 file");
  h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!f) fail(path, "cannot open HDF5 file");
  return f;
}

void write_file(const Model& m, const std::string& path, const std::string& tmp, const TrainState* train) {
  const std::string text = graph_to_json(m);
  h5::File f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (!f) fail(path, "cannot create '" + tmp + "'");
  write_str_attr(path, f.get(), "format", kFormat);
  write_int_attr(path, f.get(), "schema_version", kSchemaVersion);
#ifdef CURV_VERSION
  write_str_attr(path, f.get(), "curv_version", CURV_VERSION);
#endif
  write_str_attr(path, f.get(), "created_utc", utc_timestamp());
  {
    h5::Type t = string_type(text.size());
    h5::Space s(H5Screate(H5S_SCALAR));
    h5::Dataset d(H5Dcreate2(f.get(), "graph", t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!d || H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.c_str()) < 0)
      fail(path, "cannot write dataset '/graph'");
  }
  h5::Group params(H5Gcreate2(f.get(), "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  h5::Group consts(H5Gcreate2(f.get(), "constants", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  h5::Group meta(H5Gcreate2(f.get(), "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  for (const Value& v : m.values()) {
    if (v.kind == ValueKind::Parameter) write_tensor(path, params.get(), v.name, m.param(v.index));
    if (v.kind == ValueKind::Constant) write_tensor(path, consts.get(), v.name, m.constant(v.index));
  }
  for (const auto& [k, v] : m.meta()) write_str_attr(path, meta.get(), k, v);
  if (train) write_train_state(path, f.get(), *train);
  if (H5Fflush(f.get(), H5F_SCOPE_GLOBAL) < 0) fail(path, "cannot flush '" + tmp + "'");
}

}  // namespace

void save_checkpoint(const Model& model, const std::string& path, const TrainState* train) {
  if (model.input() < 0 || model.output() < 0) throw std::invalid_argument(path + ": model has no input or no output");
  const std::string tmp = path + ".tmp";
  try {
    h5::QuietErrors quiet;
    write_file(model, path, tmp, train);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(path, "cannot rename '" + tmp + "' into place (" + ec.message() + ")");
  }
}

Model load_checkpoint(const std::string& path, const ImportOptions& opts) {
  h5::QuietErrors quiet;
  h5::File f = open_hdf5(path);
  if (H5Aexists(f.get(), "format") <= 0 || read_str_attr(path, f.get(), "format") != kFormat)
    fail(path, std::string("not a curv checkpoint (root attribute format != \"") + kFormat + "\")");
  if (H5Lexists(f.get(), "graph", H5P_DEFAULT) <= 0) fail(path, "missing dataset '/graph'");
  std::string graph;
  {
    h5::Dataset d(H5Dopen2(f.get(), "graph", H5P_DEFAULT));
    h5::Type t(H5Dget_type(d.get()));
    graph = read_str(d.get(), t.get(), false, path, "dataset '/graph'");
  }
  std::optional<std::regex> params_re, freeze_re;
  try {
    if (!opts.params_regex.empty()) params_re.emplace(opts.params_regex);
    if (!opts.freeze_regex.empty()) freeze_re.emplace(opts.freeze_regex);
  } catch (const std::regex_error& e) {
    throw std::invalid_argument("--params/--freeze: invalid regular expression (" + std::string(e.what()) + ")");
  }
  auto trainable = [&](const std::string& name) {
    if (params_re && !std::regex_search(name, *params_re)) return false;
    return !(freeze_re && std::regex_search(name, *freeze_re));
  };
  Model m;
  try {
    h5::Group params(H5Gopen2(f.get(), "params", H5P_DEFAULT));
    h5::Group consts(H5Gopen2(f.get(), "constants", H5P_DEFAULT));
    if (!params || !consts) fail(path, "missing group '/params' or '/constants'");
    GraphTensors tensors;
    tensors.load = [&](const std::string& name, bool param) {
      return param ? read_tensor(path, params.get(), "params", name) : read_tensor(path, consts.get(), "constants", name);
    };
    tensors.trainable = trainable;
    m = graph_from_json(graph, tensors, opts.batch_norm_training);
  } catch (const std::invalid_argument& e) {
    fail(path, e.what());
  }
  if (H5Lexists(f.get(), "meta", H5P_DEFAULT) > 0) {
    h5::Group meta(H5Gopen2(f.get(), "meta", H5P_DEFAULT));
    std::vector<std::string> keys;
    auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
      static_cast<std::vector<std::string>*>(out)->push_back(name);
      return 0;
    };
    hsize_t idx = 0;
    H5Aiterate2(meta.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &keys);
    for (const auto& key : keys) m.meta()[key] = read_str_attr(path, meta.get(), key);
  }
  m.meta()["checkpoint"] = path;
  return m;
}

}  // namespace curv

namespace curv {

std::optional<TrainState> load_train_state(const std::string& path) {
  h5::QuietErrors quiet;
  h5::File f = open_hdf5(path);
  if (H5Aexists(f.get(), "format") <= 0 || read_str_attr(path, f.get(), "format") != kFormat)
    fail(path, std::string("not a curv checkpoint (root attribute format != \"") + kFormat + "\")");
  if (H5Lexists(f.get(), "train", H5P_DEFAULT) <= 0) return std::nullopt;
  TrainState t;
  h5::Group train(H5Gopen2(f.get(), "train", H5P_DEFAULT));
  t.epoch = read_int_attr(path, train.get(), "epoch");
  t.step = read_int_attr(path, train.get(), "step");
  t.optimizer = read_str_attr(path, train.get(), "optimizer");
  t.optimizer_steps = read_int_attr(path, train.get(), "optimizer_steps");
  t.config = read_str_attr(path, train.get(), "config");
  if (H5Lexists(train.get(), "optimizer", H5P_DEFAULT) > 0) {
    h5::Group opt(H5Gopen2(train.get(), "optimizer", H5P_DEFAULT));
    std::vector<std::string> names;
    auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
      static_cast<std::vector<std::string>*>(out)->push_back(name);
      return 0;
    };
    hsize_t idx = 0;
    H5Literate(opt.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &names);
    for (const auto& n : names) t.optimizer_state[n] = read_array<double>(path, opt.get(), "/train/optimizer", n);
  }
  if (H5Lexists(f.get(), "history", H5P_DEFAULT) <= 0) fail(path, "has '/train' but no '/history'");
  h5::Group h(H5Gopen2(f.get(), "history", H5P_DEFAULT));
  // Reads one series of `n` values into field `field` of records `rs` (resized to n).
  auto series = [&](hid_t g, const std::string& where, const char* name, std::size_t n, auto& rs, auto field) {
    using V = std::remove_reference_t<decltype(rs.front().*field)>;
    const auto v = read_array<V>(path, g, where, name);
    if (v.size() != n) fail(path, "'" + where + "/" + name + "' has " + std::to_string(v.size()) + " values, expected " +
                                      std::to_string(n));
    rs.resize(n);
    for (std::size_t i = 0; i < n; ++i) rs[i].*field = v[i];
  };
  auto& E = t.history.epochs;
  const std::size_t ne = read_array<std::int64_t>(path, h.get(), "/history", "epoch").size();
  series(h.get(), "/history", "epoch", ne, E, &EpochRecord::epoch);
  series(h.get(), "/history", "step", ne, E, &EpochRecord::step);
  for (const auto& c : kEpochF64) series(h.get(), "/history", c.name, ne, E, c.field);

  h5::Group c(H5Gopen2(h.get(), "curvature", H5P_DEFAULT));
  if (!c) fail(path, "missing group '/history/curvature'");
  auto& C = t.history.curvature;
  const std::size_t nc = read_array<std::int64_t>(path, c.get(), "/history/curvature", "step").size();
  series(c.get(), "/history/curvature", "step", nc, C, &CurvatureRecord::step);
  series(c.get(), "/history/curvature", "hvps", nc, C, &CurvatureRecord::hvps);
  for (const auto& col : kCurvatureF64) series(c.get(), "/history/curvature", col.name, nc, C, col.field);
  const auto top = read_array<double>(path, c.get(), "/history/curvature", "top_values");
  const std::size_t k = nc ? top.size() / nc : 0;
  if (nc && top.size() != k * nc) fail(path, "'/history/curvature/top_values' does not have one row per measurement");
  for (std::size_t i = 0; i < nc; ++i)
    for (std::size_t j = 0; j < k; ++j)
      if (!std::isnan(top[i * k + j])) C[i].top_values.push_back(top[i * k + j]);
  return t;
}

}  // namespace curv
