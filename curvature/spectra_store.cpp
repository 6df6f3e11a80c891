#include "curvature/spectra_store.h"

#include <unistd.h>

#include <Eigen/Core>
#include <chrono>
#include <ctime>
#include <stdexcept>
#include <system_error>

#include "curvature/internal/hdf5_handle.h"
#include "src/core/timer.h"

#ifndef CURV_VERSION
#define CURV_VERSION "0.1.0"
#endif

namespace curv {

namespace {

using internal::H5Handle;
namespace fs = std::filesystem;

bool valid_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

std::string shape_str(Eigen::Index r, Eigen::Index c) {
  // Appends (not operator+ chains): GCC 12 raises a false -Wrestrict on "[" + std::to_string(...).
  std::string s("[");
  s.append(std::to_string(r)).append(" x ").append(std::to_string(c)).append("]");
  return s;
}

// Writes groups, attributes and datasets under one file; every failure names the target file and
// the HDF5 object.
class Writer {
 public:
  explicit Writer(std::string target) : m_target(std::move(target)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(m_target + ": " + what + ": " + internal::hdf5_error_message());
  }
  [[noreturn]] void bad(const std::string& object, const std::string& what) const {
    throw std::invalid_argument(m_target + ": " + object + ": " + what);
  }

  H5Handle group(hid_t parent, const std::string& name, const std::string& full) const {
    H5Handle gcpl = internal::plist_handle(H5Pcreate(H5P_GROUP_CREATE));
    if (!gcpl.valid() || H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0)
      fail("cannot set up group '" + full + "'");
    H5Handle g = internal::group_handle(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
    if (!g.valid()) fail("cannot create group '" + full + "'");
    return g;
  }

  void attribute(hid_t obj, const std::string& path, const std::string& name, const AttributeValue& v) const {
    H5Handle space = internal::dataspace_handle(H5Screate(H5S_SCALAR));
    const std::string where = "cannot write attribute '" + name + "' of '" + path + "'";
    herr_t status = -1;
    if (const auto* s = std::get_if<std::string>(&v)) {
      H5Handle type = internal::type_handle(H5Tcopy(H5T_C_S1));
      if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
        fail(where);
      H5Handle a = internal::attribute_handle(
          H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
      if (!a.valid()) fail(where);
      const char* p = s->c_str();
      status = H5Awrite(a.get(), type.get(), &p);
    } else if (const auto* d = std::get_if<double>(&v)) {
      H5Handle a = internal::attribute_handle(
          H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
      if (!a.valid()) fail(where);
      status = H5Awrite(a.get(), H5T_NATIVE_DOUBLE, d);
    } else {
      const std::int64_t i = std::get<std::int64_t>(v);
      H5Handle a = internal::attribute_handle(
          H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
      if (!a.valid()) fail(where);
      status = H5Awrite(a.get(), H5T_NATIVE_INT64, &i);
    }
    if (status < 0) fail(where);
  }

  void attributes(hid_t obj, const std::string& path, const AttributeMap& attrs) const {
    for (const auto& [name, value] : attrs) attribute(obj, path, name, value);
  }

  // dims empty: scalar dataset.
  void dataset(hid_t parent, const std::string& parent_path, const std::string& name, hid_t file_type,
               hid_t mem_type, const void* data, const std::vector<hsize_t>& dims) const {
    const std::string full = parent_path + "/" + name;
    H5Handle space = internal::dataspace_handle(
        dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    if (!space.valid()) fail("cannot create dataspace of '" + full + "'");
    H5Handle d = internal::dataset_handle(
        H5Dcreate2(parent, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!d.valid()) fail("cannot create dataset '" + full + "'");
    hsize_t count = 1;
    for (hsize_t n : dims) count *= n;
    if (count > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
      fail("cannot write dataset '" + full + "'");
  }

  void scalar(hid_t g, const std::string& path, const std::string& name, double v) const {
    dataset(g, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, {});
  }
  void scalar(hid_t g, const std::string& path, const std::string& name, std::int64_t v) const {
    dataset(g, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, {});
  }
  void vector(hid_t g, const std::string& path, const std::string& name, const double* v, Eigen::Index n) const {
    dataset(g, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, {static_cast<hsize_t>(n)});
  }
  void vector(hid_t g, const std::string& path, const std::string& name, const std::vector<std::int64_t>& v) const {
    dataset(g, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v.data(), {static_cast<hsize_t>(v.size())});
  }
  // [rows, cols] in C order: h5py shows the same shape as the Eigen matrix.
  void matrix(hid_t g, const std::string& path, const std::string& name, const Eigen::MatrixXd& m) const {
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = m;
    dataset(g, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, r.data(),
            {static_cast<hsize_t>(m.rows()), static_cast<hsize_t>(m.cols())});
  }

  void eigen(hid_t parent, const std::string& ppath, const EigenRecord& r) const {
    const std::string path = ppath + "/eigen";
    if (r.residuals.size() != 0 && r.residuals.size() != r.values.size())
      bad(path + "/residuals", std::to_string(r.residuals.size()) + " residuals for " +
                                   std::to_string(r.values.size()) + " values");
    if (r.vectors.size() != 0 && r.vectors.cols() != r.values.size())
      bad(path + "/vectors", shape_str(r.vectors.rows(), r.vectors.cols()) + " for " +
                                 std::to_string(r.values.size()) + " values");
    if (r.bottom_residuals.size() != 0 && r.bottom_residuals.size() != r.bottom_values.size())
      bad(path + "/bottom_residuals", std::to_string(r.bottom_residuals.size()) + " residuals for " +
                                          std::to_string(r.bottom_values.size()) + " values");
    if (r.bottom_vectors.size() != 0 && r.bottom_vectors.cols() != r.bottom_values.size())
      bad(path + "/bottom_vectors", shape_str(r.bottom_vectors.rows(), r.bottom_vectors.cols()) + " for " +
                                        std::to_string(r.bottom_values.size()) + " values");
    H5Handle g = group(parent, "eigen", path);
    attributes(g.get(), path, r.attributes);
    vector(g.get(), path, "values", r.values.data(), r.values.size());
    vector(g.get(), path, "residuals", r.residuals.data(), r.residuals.size());
    if (r.vectors.size() != 0) matrix(g.get(), path, "vectors", r.vectors);
    if (r.bottom_values.size() != 0) {
      vector(g.get(), path, "bottom_values", r.bottom_values.data(), r.bottom_values.size());
      vector(g.get(), path, "bottom_residuals", r.bottom_residuals.data(), r.bottom_residuals.size());
      if (r.bottom_vectors.size() != 0) matrix(g.get(), path, "bottom_vectors", r.bottom_vectors);
    }
  }

  void trace(hid_t parent, const std::string& ppath, const TraceRecord& r) const {
    const std::string path = ppath + "/trace";
    H5Handle g = group(parent, "trace", path);
    attributes(g.get(), path, r.attributes);
    scalar(g.get(), path, "estimate", r.estimate);
    scalar(g.get(), path, "stderr", r.std_error);
    scalar(g.get(), path, "probes", r.probes);
    if (!r.samples.empty()) vector(g.get(), path, "samples", r.samples.data(), static_cast<Eigen::Index>(r.samples.size()));
  }

  void diag(hid_t parent, const std::string& ppath, const DiagRecord& r) const {
    const std::string path = ppath + "/diag";
    if (r.std_error.size() != 0 && r.std_error.size() != r.estimate.size())
      bad(path + "/stderr", std::to_string(r.std_error.size()) + " entries for an estimate of " +
                                std::to_string(r.estimate.size()));
    H5Handle g = group(parent, "diag", path);
    attributes(g.get(), path, r.attributes);
    vector(g.get(), path, "estimate", r.estimate.data(), r.estimate.size());
    if (r.std_error.size() != 0) vector(g.get(), path, "stderr", r.std_error.data(), r.std_error.size());
    scalar(g.get(), path, "probes", r.probes);
  }

  void density(hid_t parent, const std::string& ppath, const DensityRecord& r) const {
    const std::string path = ppath + "/density";
    H5Handle g = group(parent, "density", path);
    attributes(g.get(), path, r.attributes);
    matrix(g.get(), path, "nodes", r.nodes);
    // Checked after the first datasets on purpose: a failure mid-file must still leave nothing.
    if (r.weights.rows() != r.nodes.rows() || r.weights.cols() != r.nodes.cols())
      bad(path + "/weights", "shape " + shape_str(r.weights.rows(), r.weights.cols()) + " differs from nodes " +
                                 shape_str(r.nodes.rows(), r.nodes.cols()));
    matrix(g.get(), path, "weights", r.weights);
    if (!r.steps.empty()) {
      if (static_cast<Eigen::Index>(r.steps.size()) != r.nodes.rows())
        bad(path + "/steps", std::to_string(r.steps.size()) + " entries for " + std::to_string(r.nodes.rows()) +
                                 " probes");
      vector(g.get(), path, "steps", r.steps);
    }
    if (r.values.size() != r.grid.size())
      bad(path + "/values", std::to_string(r.values.size()) + " values for a grid of " +
                                std::to_string(r.grid.size()));
    vector(g.get(), path, "grid", r.grid.data(), r.grid.size());
    vector(g.get(), path, "values", r.values.data(), r.values.size());
  }

  void section(hid_t g, const std::string& path, const StoreSection& s) const {
    attributes(g, path, s.attributes);
    if (s.eigen) eigen(g, path, *s.eigen);
    if (s.trace) trace(g, path, *s.trace);
    if (s.diag) diag(g, path, *s.diag);
    if (s.density) density(g, path, *s.density);
  }

 private:
  std::string m_target;
};

}  // namespace

SpectraStore::SpectraStore(std::filesystem::path path, std::string command, Mode mode)
    : m_path(std::move(path)), m_command(std::move(command)), m_mode(mode) {}

SpectraStore::~SpectraStore() {
  std::error_code ec;
  fs::remove(temp_path(), ec);  // only exists if a commit was interrupted
}

std::filesystem::path SpectraStore::temp_path() const {
  return fs::path(m_path.string() + ".tmp." + std::to_string(::getpid()));
}

StoreRun& SpectraStore::add_run(const std::string& name) {
  if (m_committed) throw std::logic_error("SpectraStore::add_run: " + m_path.string() + " was already committed");
  if (!valid_name(name))
    throw std::invalid_argument("SpectraStore: run name '" + name +
                                "' must be non-empty, without '/', and not '.' or '..'");
  for (const auto& [n, run] : m_runs)
    if (n == name) throw std::invalid_argument("SpectraStore: run '" + name + "' was added twice");
  m_runs.emplace_back(name, std::make_unique<StoreRun>());
  return *m_runs.back().second;
}

void SpectraStore::commit() {
  if (m_committed) throw std::logic_error("SpectraStore::commit: " + m_path.string() + " was already committed");
  for (const auto& [name, run] : m_runs)
    for (const auto& [block, section] : run->blocks)
      if (!valid_name(block))
        throw std::invalid_argument("SpectraStore: block name '" + block + "' in run '" + name +
                                    "' must be non-empty, without '/', and not '.' or '..'");
  const fs::path tmp = temp_path();
  try {
    if (m_mode == Mode::Append && fs::exists(m_path)) {
      std::error_code ec;
      fs::copy_file(m_path, tmp, fs::copy_options::overwrite_existing, ec);
      if (ec) throw std::runtime_error(m_path.string() + ": cannot copy to temporary file: " + ec.message());
    }
    write(tmp);
    std::error_code ec;
    fs::rename(tmp, m_path, ec);
    if (ec)
      throw std::runtime_error(m_path.string() + ": cannot rename temporary file " + tmp.string() + ": " +
                               ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  m_committed = true;
}

void SpectraStore::write(const std::filesystem::path& file) const {
  internal::silence_hdf5_errors();
  const Writer w(m_path.string());
  H5Handle f;
  if (m_mode == Mode::Append && fs::exists(file)) {
    f = internal::file_handle(H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    if (!f.valid()) w.fail("cannot open HDF5 file for appending");
    std::string format;
    if (!internal::read_string_attribute(f.get(), "format", format) || format != "curv")
      throw std::runtime_error(m_path.string() + ": not a curv HDF5 file (root attribute format is not \"curv\")");
    for (const auto& [name, run] : m_runs)
      if (H5Lexists(f.get(), name.c_str(), H5P_DEFAULT) > 0)
        throw std::invalid_argument(m_path.string() + ": run group '/" + name + "' already exists");
  } else {
    f = internal::file_handle(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    if (!f.valid()) w.fail("cannot create HDF5 file");
    w.attribute(f.get(), "/", "format", std::string("curv"));
    w.attribute(f.get(), "/", "schema_version", kSpectraSchemaVersion);
    w.attribute(f.get(), "/", "curv_version", std::string(CURV_VERSION));
    w.attribute(f.get(), "/", "created_utc", utc_timestamp());
    w.attribute(f.get(), "/", "command", m_command);
  }
  for (const auto& [name, run] : m_runs) {
    const std::string path = "/" + name;
    H5Handle g = w.group(f.get(), name, path);
    w.attributes(g.get(), path, run->attributes);
    w.section(g.get(), path, run->model);
    if (run->blocks.empty()) continue;
    H5Handle bg = w.group(g.get(), "blocks", path + "/blocks");
    for (const auto& [block, section] : run->blocks) {
      const std::string bpath = path + "/blocks/" + block;
      H5Handle sg = w.group(bg.get(), block, bpath);
      w.section(sg.get(), bpath, section);
    }
  }
  if (f.close() < 0) w.fail("cannot close HDF5 file");
}

}  // namespace curv
