#include "curvature/solve_store.h"

#include <cmath>
#include <span>
#include <stdexcept>
#include <variant>

#include "curvature/spectra_store.h"
#include "src/core/timer.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"

namespace curv {

void write_solve_file(const std::string& path, const std::string& command, const std::vector<std::string>& inputs,
                      const AttributeMap& attributes, const DampedSolveResult& r, const Eigen::VectorXd& b) {
  AtomicFile out(path, inputs);
  {
    h5::Object f = h5::Object::create(out.temp_path(), path);
    f.write_attribute("format", "curv");
    f.write_attribute("schema_version", kSpectraSchemaVersion);
    f.write_attribute("curv_version", CURV_VERSION);
    f.write_attribute("created_utc", utc_timestamp());
    f.write_attribute("command", command);
    h5::Object g = f.create_group("solve");
    for (const auto& kv : attributes) std::visit([&](const auto& v) { g.write_attribute(kv.first, v); }, kv.second);
    auto vec = [&](const std::string& name, const Eigen::VectorXd& v) {
      g.write_dataset(name, std::span<const double>(v.data(), std::size_t(v.size())), {std::uint64_t(v.size())});
    };
    vec("x", r.x);
    vec("rhs", b);
    // Row-major [I + 1, L] from the column-major history.
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> h = r.residual_history;
    if (h.cols() == 1)
      g.write_dataset("residual_history", std::span<const double>(h.data(), std::size_t(h.size())), {std::uint64_t(h.rows())});
    else
      g.write_dataset("residual_history", std::span<const double>(h.data(), std::size_t(h.size())),
                      {std::uint64_t(h.rows()), std::uint64_t(h.cols())});
    if (r.influence.size() > 0) vec("influence", r.influence);
    if (!r.blocks.empty()) {
      h5::Object bg = g.create_group("blocks", true);
      for (const auto& blk : r.blocks) {
        h5::Object one = bg.create_group(blk.name);
        one.write_attribute("residual", blk.residual);
        one.write_attribute("iterations", std::int64_t(blk.iterations));
      }
    }
    f.close();
  }
  out.commit();
}

Eigen::VectorXd read_rhs_file(const std::string& path, std::int64_t params, const std::string& model_sha256) {
  h5::Object f = h5::Object::open(path);
  if (f.has_attribute("model_sha256") && !model_sha256.empty()) {
    const std::string s = f.read_string_attribute("model_sha256", 256);
    if (s != model_sha256)
      throw std::invalid_argument(path + ": right-hand side is for another model (model_sha256 " + s + ", the model's " +
                                  model_sha256 + ")");
  }
  std::string name = "rhs";
  if (!f.exists(name)) name = "solve/x";
  if (!f.exists(name)) throw std::invalid_argument(path + ": no dataset /rhs (or /solve/x) holding the right-hand side");
  if (name == "solve/x") {
    h5::Object g = f.open_object("solve");
    if (g.has_attribute("model_sha256") && !model_sha256.empty() &&
        g.read_string_attribute("model_sha256", 256) != model_sha256)
      throw std::invalid_argument(path + ": /solve/x is for another model (model_sha256 differs)");
  }
  const h5::Array<double> a = f.read_f64(name, {.rank = 1});
  if (static_cast<std::int64_t>(a.data.size()) != params)
    throw std::invalid_argument(path + ": /" + name + " has " + std::to_string(a.data.size()) + " entries, the model " +
                                std::to_string(params) + " parameters");
  Eigen::VectorXd v(params);
  for (std::int64_t i = 0; i < params; ++i) {
    v[i] = a.data[i];
    if (!std::isfinite(v[i])) throw std::invalid_argument(path + ": /" + name + " holds NaN or inf");
  }
  return v;
}

}  // namespace curv
