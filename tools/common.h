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

/// Range check of a numeric option: its text must be a finite number in [lo, hi] (NaN and inf are
/// refused). Every numeric option of every command goes through it, e.g.
///     app.add_option("--top-k", k, "...")->check(in_range(0, kMaxEigenpairs));
CLI::Validator in_range(double lo, double hi);

/// Sane upper bounds shared by commands (a value above is a typo, not a request).
inline constexpr double kMaxEigenpairs = 100000;  // eigenpairs, Krylov sizes
inline constexpr double kMaxProbes = 100000;      // random probes of an estimator
inline constexpr double kMaxSteps = 100000;       // Lanczos steps
inline constexpr double kMaxBlock = 4096;         // directions per block product
inline constexpr double kMaxSamples = 1e12;       // samples, offsets
inline constexpr double kMinTol = 1e-15, kMaxTol = 0.5;  // relative tolerances
inline constexpr double kMaxSeed = 18446744073709551615.0;  // any std::uint64_t
inline constexpr double kMaxFisherSamples = 100000;  // sampled labels per input

/// --help of --curvature and --fisher-samples, shared by the commands that take them.
inline constexpr const char* kCurvatureHelp =
    "hessian: exact Hessian; ggn: Gauss-Newton J^T H_loss J; fisher: true Fisher, labels sampled from the model "
    "(--fisher-samples per input, seeded by --seed); ef: empirical Fisher (the data's labels). For cross-entropy "
    "(and MSE) the exact Fisher equals the GGN";
inline constexpr const char* kFisherSamplesHelp =
    "--curvature fisher: labels sampled per input (Monte Carlo Fisher); 0 = the exact Fisher (= the GGN)";

/// What the command works on ("spectrum m.onnx", or the file being read), for the one-line
/// error of exceptions that do not name it themselves (std::bad_alloc, std::length_error, ...).
void set_error_context(std::string context);
const std::string& error_context();
/// Sets the context for its lifetime and restores the previous one.
class ErrorContext {
 public:
  explicit ErrorContext(std::string context);
  ~ErrorContext();
  ErrorContext(const ErrorContext&) = delete;
  ErrorContext& operator=(const ErrorContext&) = delete;

 private:
  std::string m_previous;
};
/// The one line `curv` prints for a failure: "curv: " + what, with an internal message
/// (no spaces, as "stoll" or "std::bad_alloc") explained and prefixed with the error context,
/// and newlines folded.
std::string error_line(const std::exception& e);

/// Options shared by commands that evaluate a model on data.
struct RunOptions {
  std::string model;       // .onnx or curv .h5
  std::string arch;        // builder architecture instead of a model file
  std::uint64_t seed = 0;  // seed of --arch initialization and random estimators
  std::string data;
  std::int64_t samples = 0;
  std::int64_t offset = 0;
  std::string normalize;
  std::int64_t relabel = 0;  // y <- y mod relabel (0: off)
  std::int64_t ignore_index = kDefaultIgnoreIndex;  // cross-entropy labels to skip
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
