#include "curvature/spectra_store.h"

#include <unistd.h>

#include <Eigen/Core>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "src/core/timer.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"

#ifndef CURV_VERSION
#define CURV_VERSION "0.1.0"
#endif

namespace curv {

namespace {

namespace fs = std::filesystem;
using Group = h5::Object;

bool valid_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

std::string shape_str(Eigen::Index r, Eigen::Index c) {
  // Appends (not operator+ chains): GCC 12 raises a false -Wrestrict on "[" + std::to_string(...).
  std::string s("[");
  s.append(std::to_string(r)).append(" x ").append(std::to_string(c)).append("]");
  return s;
}

// Writes the records under one file through the HDF5 layer (whose errors name the target file and
// the object); inconsistent records are std::invalid_argument naming the dataset.
class Writer {
 public:
  explicit Writer(std::string target) : m_target(std::move(target)) {}

  [[noreturn]] void bad(const std::string& object, const std::string& what) const {
    throw std::invalid_argument(m_target + ": " + object + ": " + what);
  }

  Group group(const Group& parent, const std::string& name) const { return parent.create_group(name, true); }

  void attributes(const Group& obj, const AttributeMap& attrs) const {
    for (const auto& kv : attrs) std::visit([&](const auto& v) { obj.write_attribute(kv.first, v); }, kv.second);
  }

  void scalar(const Group& g, const std::string& name, double v) const {
    g.write_dataset(name, std::span<const double>(&v, 1), {});
  }
  void scalar(const Group& g, const std::string& name, std::int64_t v) const {
    g.write_dataset(name, std::span<const std::int64_t>(&v, 1), {});
  }
  void vector(const Group& g, const std::string& name, const double* v, Eigen::Index n) const {
    g.write_dataset(name, std::span<const double>(v, static_cast<std::size_t>(n)), {static_cast<std::uint64_t>(n)});
  }
  void vector(const Group& g, const std::string& name, const std::vector<std::int64_t>& v) const {
    g.write_dataset(name, std::span<const std::int64_t>(v), {v.size()});
  }
  // [rows, cols] in C order: h5py shows the same shape as the Eigen matrix.
  void matrix(const Group& g, const std::string& name, const Eigen::MatrixXd& m) const {
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = m;
    g.write_dataset(name, std::span<const double>(r.data(), static_cast<std::size_t>(r.size())),
                    {static_cast<std::uint64_t>(m.rows()), static_cast<std::uint64_t>(m.cols())});
  }

  void eigen(const Group& parent, const EigenRecord& r) const {
    const std::string path = parent.path() + "/eigen";
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
    const Group g = group(parent, "eigen");
    attributes(g, r.attributes);
    vector(g, "values", r.values.data(), r.values.size());
    vector(g, "residuals", r.residuals.data(), r.residuals.size());
    if (r.vectors.size() != 0) matrix(g, "vectors", r.vectors);
    if (r.bottom_values.size() != 0) {
      vector(g, "bottom_values", r.bottom_values.data(), r.bottom_values.size());
      vector(g, "bottom_residuals", r.bottom_residuals.data(), r.bottom_residuals.size());
      if (r.bottom_vectors.size() != 0) matrix(g, "bottom_vectors", r.bottom_vectors);
    }
    // Monte Carlo Fisher: label-sampling errors (fisher_sampling.h), each as long as its values.
    const std::pair<const char*, const Eigen::VectorXd*> extra[] = {
        {"values_stderr", &r.values_stderr},
        {"heldout_values", &r.heldout_values},
        {"heldout_stderr", &r.heldout_stderr},
        {"bottom_values_stderr", &r.bottom_values_stderr},
        {"bottom_heldout_values", &r.bottom_heldout_values},
        {"bottom_heldout_stderr", &r.bottom_heldout_stderr}};
    for (const auto& [name, v] : extra) {
      if (v->size() == 0) continue;
      const Eigen::Index want = std::string(name).rfind("bottom", 0) == 0 ? r.bottom_values.size() : r.values.size();
      if (v->size() != want)
        bad(path + "/" + name, std::to_string(v->size()) + " entries for " + std::to_string(want) + " values");
      vector(g, name, v->data(), v->size());
    }
  }

  void trace(const Group& parent, const TraceRecord& r) const {
    const Group g = group(parent, "trace");
    attributes(g, r.attributes);
    scalar(g, "estimate", r.estimate);
    scalar(g, "stderr", r.std_error);
    scalar(g, "probes", r.probes);
    if (!r.samples.empty()) vector(g, "samples", r.samples.data(), static_cast<Eigen::Index>(r.samples.size()));
  }

  void diag(const Group& parent, const DiagRecord& r) const {
    const std::string path = parent.path() + "/diag";
    if (r.std_error.size() != 0 && r.std_error.size() != r.estimate.size())
      bad(path + "/stderr", std::to_string(r.std_error.size()) + " entries for an estimate of " +
                                std::to_string(r.estimate.size()));
    const Group g = group(parent, "diag");
    attributes(g, r.attributes);
    vector(g, "estimate", r.estimate.data(), r.estimate.size());
    if (r.std_error.size() != 0) vector(g, "stderr", r.std_error.data(), r.std_error.size());
    scalar(g, "probes", r.probes);
  }

  void density(const Group& parent, const DensityRecord& r) const {
    const std::string path = parent.path() + "/density";
    const Group g = group(parent, "density");
    attributes(g, r.attributes);
    matrix(g, "nodes", r.nodes);
    // Checked after the first datasets on purpose: a failure mid-file must still leave nothing.
    if (r.weights.rows() != r.nodes.rows() || r.weights.cols() != r.nodes.cols())
      bad(path + "/weights", "shape " + shape_str(r.weights.rows(), r.weights.cols()) + " differs from nodes " +
                                 shape_str(r.nodes.rows(), r.nodes.cols()));
    matrix(g, "weights", r.weights);
    if (!r.steps.empty()) {
      if (static_cast<Eigen::Index>(r.steps.size()) != r.nodes.rows())
        bad(path + "/steps", std::to_string(r.steps.size()) + " entries for " + std::to_string(r.nodes.rows()) +
                                 " probes");
      vector(g, "steps", r.steps);
    }
    if (r.values.size() != r.grid.size())
      bad(path + "/values", std::to_string(r.values.size()) + " values for a grid of " +
                                std::to_string(r.grid.size()));
    vector(g, "grid", r.grid.data(), r.grid.size());
    vector(g, "values", r.values.data(), r.values.size());
  }

  void gradient(const Group& parent, const GradientRecord& r) const {
    const Group g = group(parent, "gradient");
    attributes(g, r.attributes);
    scalar(g, "norm", r.norm);
    if (r.values.size() != 0) vector(g, "values", r.values.data(), r.values.size());
    if (r.top_overlap.size() != 0) vector(g, "top_overlap", r.top_overlap.data(), r.top_overlap.size());
  }

  void kfac(const Group& g, const KfacRecord& r) const {
    attributes(g, r.attributes);
    matrix(g, "A", r.A);
    matrix(g, "B", r.B);
    vector(g, "alpha", r.alpha.data(), r.alpha.size());
    vector(g, "beta", r.beta.data(), r.beta.size());
    matrix(g, "QA", r.QA);
    matrix(g, "QB", r.QB);
  }

  // A block's K-FAC record goes to <run>/kfac/<block>/ (schema_minor 1), not into the section.
  void section(const Group& g, const StoreSection& s) const {
    attributes(g, s.attributes);
    if (s.eigen) eigen(g, *s.eigen);
    if (s.trace) trace(g, *s.trace);
    if (s.diag) diag(g, *s.diag);
    if (s.density) density(g, *s.density);
    if (s.gradient) gradient(g, *s.gradient);
  }

  void run(const Group& g, const StoreRun& r) const {
    attributes(g, r.attributes);
    section(g, r.model);
    if (r.blocks.empty()) return;
    const Group bg = group(g, "blocks");
    for (const auto& [block, sec] : r.blocks) section(group(bg, block), sec);
    bool any = false;
    for (const auto& [block, sec] : r.blocks) any = any || sec.kfac.has_value();
    if (!any) return;
    const Group kg = group(g, "kfac");
    for (const auto& [block, sec] : r.blocks)
      if (sec.kfac) kfac(group(kg, block), *sec.kfac);
  }

 private:
  std::string m_target;
};

}  // namespace

SpectraStore::SpectraStore(std::filesystem::path path, std::string command, Mode mode,
                           std::vector<std::string> inputs)
    : m_path(std::move(path)), m_command(std::move(command)), m_mode(mode), m_inputs(std::move(inputs)) {}

SpectraStore::~SpectraStore() = default;

std::filesystem::path SpectraStore::temp_path() const {
  return AtomicFile::temp_name(m_path.string(), static_cast<long>(::getpid()));
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
  AtomicFile out(m_path.string(), m_inputs);
  const bool append = m_mode == Mode::Append && fs::exists(m_path);
  if (append) {
    std::error_code ec;
    fs::copy_file(m_path, out.temp_path(), fs::copy_options::overwrite_existing, ec);
    if (ec) throw std::runtime_error(m_path.string() + ": cannot copy to temporary file: " + ec.message());
  }
  write(out.temp_path(), append);
  out.commit();
  m_committed = true;
}

void SpectraStore::write(const std::string& file, bool append) const {
  const std::string target = m_path.string();
  const Writer w(target);
  h5::Object f = append ? h5::Object::open(file, true, target) : h5::Object::create(file, target);
  if (append) {
    if (!f.has_attribute("format") || f.read_string_attribute("format", 256) != "curv")
      throw std::runtime_error(target + ": not a curv HDF5 file (root attribute format is not \"curv\")");
    for (const auto& [name, run] : m_runs)
      if (f.exists(name)) throw std::invalid_argument(target + ": run group '/" + name + "' already exists");
  } else {
    write_root_attributes(f, m_command);
  }
  for (const auto& [name, run] : m_runs) w.run(w.group(f, name), *run);
  f.close();
}

void write_root_attributes(const h5::Object& file, const std::string& command) {
  file.write_attribute("format", "curv");
  file.write_attribute("schema_version", kSpectraSchemaVersion);
  file.write_attribute("schema_minor", kSpectraSchemaMinor);
  file.write_attribute("curv_version", CURV_VERSION);
  file.write_attribute("created_utc", utc_timestamp());
  file.write_attribute("command", command);
}

void write_run(const h5::Object& group, const StoreRun& run) {
  for (const auto& [block, section] : run.blocks)
    if (!valid_name(block))
      throw std::invalid_argument("SpectraStore: block name '" + block + "' must be non-empty, without '/', and not '.' or '..'");
  Writer(group.file()).run(group, run);
}

}  // namespace curv
