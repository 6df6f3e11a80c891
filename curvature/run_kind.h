#pragma once
/// \file run_kind.h
/// The run kinds of `curv study`, behind one small interface, and their registry.
///
/// A study is a list of planned runs (study_plan.h). Each names a kind ("spectrum", "eval",
/// "landscape", "interpolate") whose RunKind object
///   - declares the settings it takes beyond the common ones (study_settings.h),
///   - checks a run against its loaded model and data before any run starts (check),
///   - estimates its operator products (for --dry-run),
///   - executes it into a RunResult that the runner writes into the run's group.
/// A run is self-contained: its settings say everything it needs, and execute() has no effect
/// outside its result. So a distributed runner can hand runs to workers (each writing its own run
/// file, study_store.h) and assemble the results on one rank; a new kind (K-FAC comparison,
/// quantization sensitivity) is a new RunKind passed to register_run_kind().
///
///     const RunKind& k = find_run_kind("spectrum");
///     k.check(run, inputs);                       // std::invalid_argument naming the setting
///     RunResult r = k.execute(run, inputs, {});
///     r.write(group);                             // h5::Object of the run's group
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "curvature/store_records.h"
#include "curvature/study_settings.h"
#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv {

namespace h5 {
class Object;
}

/// One run of a study, fully resolved.
struct PlannedRun {
  std::string name;          // its group name in the output file
  std::string kind;          // a registered RunKind
  std::string entry;         // where the study file declares it, for messages: "runs[2]", "grids[0]"
  nlohmann::json settings;   // every setting of the kind (defaults filled in), keys sorted
  std::string hash;          // sha256 (hex) of kind, settings and the input files' contents
};

/// Loads and caches the models and datasets of a study's runs (many runs share them). Paths in
/// settings are relative to `root`. Datasets are read once per file and selected per run
/// (load_all_samples / select_samples), models once per file and loading options.
/// Not thread-safe.
class InputCache {
 public:
  explicit InputCache(std::filesystem::path root);
  InputCache(const InputCache&) = delete;
  InputCache& operator=(const InputCache&) = delete;
  ~InputCache();

  /// `path` against the root (absolute paths and dataset names such as "fashion-mnist:train" or
  /// "random:..." unchanged).
  std::string resolve(const std::string& path) const;
  /// The run's samples: data, samples, offset + batch_index * samples, normalize, relabel, seed.
  const Dataset& data(const nlohmann::json& settings);
  /// The model of settings[key] ("model", or "model2" of an interpolation), or the `arch` built
  /// for the run's data.
  const Model& model(const nlohmann::json& settings, const std::string& key = "model");
  /// micro_batch, precision, cache_gb, group_directions.
  static ObjectiveOptions objective_options(const nlohmann::json& settings);
  /// The files a run reads (model, data files, directions file), resolved.
  std::vector<std::string> input_files(const nlohmann::json& settings) const;
  /// Drops everything loaded (between studies; memory).
  void clear();
  /// Seconds spent loading models and datasets so far.
  double load_seconds() const { return m_load_seconds; }

 private:
  double m_load_seconds = 0;
  std::filesystem::path m_root;
  std::map<std::string, std::unique_ptr<Dataset>> m_all, m_selected;
  std::map<std::string, std::unique_ptr<Model>> m_models;
};

/// What a run produced. The runner writes `attributes` on the run's group, then calls `write`.
struct RunResult {
  AttributeMap attributes;
  std::function<void(const h5::Object& group)> write;
  /// Headline figures for `curv study --json` (e.g. lambda_max, trace, loss, barrier).
  nlohmann::json summary = nlohmann::json::object();
  std::int64_t products = 0;  // curvature products used
};

/// Progress of one run: curvature products so far (estimators do not know their totals).
using RunProgress = std::function<void(std::int64_t products)>;

class RunKind {
 public:
  virtual ~RunKind() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  /// Bumped when the kind's results change meaning: part of every run's settings hash.
  virtual int version() const { return 1; }
  /// The settings this kind takes beyond common_settings().
  virtual const SettingTable& settings() const = 0;
  /// Checks the run against its inputs (loading them): model/data fit, block names, eigenpair
  /// counts against sizes, directions files. std::invalid_argument / std::runtime_error naming
  /// the setting or file.
  virtual void check(const PlannedRun& run, InputCache& inputs) const = 0;
  /// Estimated curvature products (0 for none), for --dry-run.
  virtual std::int64_t estimate_products(const PlannedRun& run, InputCache& inputs) const = 0;
  virtual RunResult execute(const PlannedRun& run, InputCache& inputs, const RunProgress& progress) const = 0;
};

/// The registered kinds (spectrum, eval, landscape, interpolate, then any registered later).
const std::vector<const RunKind*>& run_kinds();
/// The kind named `name`, or nullptr.
const RunKind* find_run_kind(const std::string& name);
/// Adds a kind (e.g. from a library above curvature/). REQUIRES: a new name, a kind that lives
/// as long as the program (std::invalid_argument for a duplicate).
void register_run_kind(const RunKind* kind);

/// The built-in kinds.
const RunKind& spectrum_run_kind();
const RunKind& eval_run_kind();
const RunKind& landscape_run_kind();
const RunKind& interpolate_run_kind();

}  // namespace curv
