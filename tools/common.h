#pragma once
// Shared plumbing of the `curv` subcommands: options every command takes, model and data loading,
// one-line errors, JSON output, progress on stderr.
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/core/objective.h"

namespace curv::cli {

/// Options shared by commands that evaluate a model on data.
struct RunOptions {
  std::string model;       // .onnx or curv .h5
  std::string arch;        // builder architecture instead of a model file
  std::uint64_t seed = 0;  // seed of --arch initialization and random estimators
  std::string data;
  std::int64_t samples = 0;
  std::int64_t offset = 0;
  std::string normalize;
  std::string params_regex, freeze_regex;
  bool bn_train = false;
  std::string precision = "float32";
  std::int64_t micro_batch = 0;  // 0: automatic (resolve_micro_batch)
  double cache_gb = 8.0;
  std::int64_t group_directions = 0;  // 0: automatic
  int threads = 0;  // 0: all cores
  bool json = false;
};

/// Registers MODEL (positional, optional when `allow_arch`), --arch, --data and friends.
void add_run_options(CLI::App& app, RunOptions& o, bool allow_arch);
/// Loads the model: ONNX file, curv checkpoint, or --arch (needs the data's shape and classes).
Model load_model(const RunOptions& o, const Dataset* data);
Dataset load_data(const RunOptions& o);
ObjectiveOptions objective_options(const RunOptions& o);
/// Keeps a tbb::global_control alive for the command's lifetime.
std::shared_ptr<void> limit_threads(int threads);
int thread_count();

/// The command line as one string (stored in every output file as `command`).
std::string command_line(int argc, char** argv);

/// Prints the JSON object on stdout (one line) when --json, else nothing.
void emit_json(const RunOptions& o, const nlohmann::json& j);
/// A progress line on stderr: an updating bar on a terminal, plain lines otherwise.
class Progress {
 public:
  Progress(std::string what, std::int64_t total);
  void update(std::int64_t done, const std::string& note = {});
  void finish(const std::string& note = {});

 private:
  std::string m_what;
  std::int64_t m_total;
  bool m_tty;
  std::int64_t m_last_logged = -1;
  double m_last_time = -1e9;
};

}  // namespace curv::cli
