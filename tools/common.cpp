#include "tools/common.h"

#include <tbb/global_control.h>
#include <tbb/info.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <iostream>
#include <set>

#include "src/io/data_io.h"
#include "src/io/model_source.h"

namespace curv::cli {

namespace {
std::string g_error_context;

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

CLI::Validator in_range(double lo, double hi) {
  const std::string range = "[" + number_text(lo) + ", " + number_text(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        const char* begin = text.c_str();
        char* end = nullptr;
        const double v = std::strtod(begin, &end);
        if (end == begin || *end != '\0') return "'" + text + "' is not a number";
        if (!std::isfinite(v)) return text + " is not a finite number";
        if (v < lo || v > hi) return text + " is outside " + range;
        return {};
      },
      "in " + range, "RANGE");
}

void set_error_context(std::string context) { g_error_context = std::move(context); }
const std::string& error_context() { return g_error_context; }
ErrorContext::ErrorContext(std::string context) : m_previous(g_error_context) { g_error_context = std::move(context); }
ErrorContext::~ErrorContext() { g_error_context = std::move(m_previous); }

std::string error_line(const std::exception& e) {
  std::string what = e.what();
  // Messages of the standard library name neither the file nor the problem: "std::bad_alloc",
  // "vector::reserve", "stoll". Say what kind of failure it is, and where.
  const bool bare = what.find(' ') == std::string::npos;
  if (dynamic_cast<const std::bad_alloc*>(&e)) {
    what = "out of memory (" + what + ")";
  } else if (bare) {
    const char* kind = dynamic_cast<const std::length_error*>(&e)     ? "a size is too large"
                       : dynamic_cast<const std::out_of_range*>(&e)    ? "a value is out of range"
                       : dynamic_cast<const std::invalid_argument*>(&e) ? "a value is malformed"
                                                                        : "unexpected failure";
    what = std::string(kind) + " (" + (what.empty() ? "no message" : what) + ")";
  }
  if ((bare || dynamic_cast<const std::bad_alloc*>(&e)) && !g_error_context.empty()) what = g_error_context + ": " + what;
  // One line whatever the message holds: control bytes (a newline or tab in a node name read
  // from a file) are written as \xNN.
  std::string line;
  static const char* hex = "0123456789abcdef";
  for (char ch : what) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      line += "\\x";
      line += hex[c >> 4];
      line += hex[c & 15];
    } else {
      line += ch;
    }
  }
  return "curv: " + line;
}

void add_run_options(CLI::App& app, RunOptions& o, bool allow_arch) {
  auto* m = app.add_option("model", o.model, "Model: an .onnx file or a curv checkpoint .h5");
  if (allow_arch) {
    auto* a = app.add_option("--arch", o.arch,
                             "Built-in architecture instead of MODEL: mlp[:H1-H2-...], lenet, resnet20[-bn], "
                             "vit[:P-D-L-H], gpt[:D-L-H] (token ids)");
    m->excludes(a);
    app.add_option("--seed", o.seed, "Seed of the --arch initialization and of random estimators")
        ->check(in_range(0, kMaxSeed))
        ->capture_default_str();
  } else {
    m->required();
  }
  app.add_option("--data", o.data,
                 "Data: .npz (x, y), .h5 (/x, /y), IDX images, fashion-mnist:train|test, random:CxHxW:CLASSES[:N]; a "
                 "model with several inputs reads arrays named after them")
      ->required();
  app.add_option("--samples", o.samples, "Use the first N samples (after --offset); 0 = all")
      ->check(in_range(0, kMaxSamples));
  app.add_option("--offset", o.offset, "Skip the first K samples")->check(in_range(0, kMaxSamples));
  app.add_option("--normalize", o.normalize, "Per-channel MEAN[,MEAN..]/STD[,STD..] applied to inputs");
  app.add_option("--relabel", o.relabel, "Fold integer labels into C classes: y <- y mod C (0: keep them)")
      ->check(in_range(0, 1e9));
  app.add_option("--ignore-index", o.ignore_index,
                 "Cross-entropy labels equal to this are skipped; the loss is the mean over the others (as PyTorch)")
      ->check(in_range(-1e15, 1e15))
      ->capture_default_str();
  app.add_option("--params", o.params_regex, "ONNX initializers whose names (as curv info lists them) match REGEX are trainable parameters");
  app.add_option("--freeze", o.freeze_regex, "ONNX initializers whose names (as curv info lists them) match REGEX are constants");
  app.add_flag("--bn-train", o.bn_train, "BatchNorm with batch statistics (training mode)");
  app.add_option("--precision", o.precision, "Model compute precision")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  app.add_option("--micro-batch", o.micro_batch,
                 "Samples per micro-batch (fixes the reduction order); 0: chosen from the layer shapes")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app.add_option("--cache-gb", o.cache_gb, "Memory budget for cached activations between products (GB)")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app.add_option("--group-directions", o.group_directions,
                 "Directions per tangent pass of a block product (0: automatic, by cache size; results do not change)")
      ->check(in_range(0, kMaxBlock))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "Worker threads (0: all cores)")->check(in_range(0, 4096));
  app.add_flag("--json", o.json, "Print one JSON object with the results on stdout");
}

Dataset load_data(const RunOptions& o) {
  ErrorContext context(o.data);
  DataOptions d;
  d.samples = o.samples;
  d.offset = o.offset;
  if (!o.normalize.empty()) parse_normalize(o.normalize, d);
  d.seed = o.seed ? o.seed : d.seed;
  d.classes = o.relabel;
  return load_dataset(o.data, d);
}

Model load_model(const RunOptions& o, const Dataset* data) {
  ErrorContext context(o.arch.empty() ? o.model : "--arch " + o.arch);
  if (!o.arch.empty() && !data) throw std::invalid_argument("--arch needs --data to know the input shape");
  if (o.arch.empty() && o.model.empty()) throw std::invalid_argument("no model given (MODEL or --arch)");
  ModelSource src;
  src.path = o.model;
  src.arch = o.arch;
  src.seed = o.seed;
  src.import.params_regex = o.params_regex;
  src.import.freeze_regex = o.freeze_regex;
  src.import.batch_norm_training = o.bn_train;
  return curv::load_model(src, data);
}

ObjectiveOptions objective_options(const RunOptions& o) {
  ObjectiveOptions opts;
  opts.precision = o.precision == "float64" ? Precision::Float64 : Precision::Float32;
  opts.micro_batch = o.micro_batch;
  opts.ignore_index = o.ignore_index;
  opts.group_directions = o.group_directions;
  opts.cache_bytes = static_cast<std::size_t>(std::max(0.0, o.cache_gb) * 1e9);
  return opts;
}

std::shared_ptr<void> limit_threads(int threads) {
  if (threads <= 0) return nullptr;
  return std::make_shared<tbb::global_control>(tbb::global_control::max_allowed_parallelism, threads);
}

int thread_count() {
  return static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
}

std::string command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) s += (i ? " " : "") + std::string(argv[i]);
  return s;
}

void emit_json(const RunOptions& o, const nlohmann::json& j) {
  if (o.json) std::cout << j.dump() << std::endl;
}

Progress::Progress(std::string what, std::int64_t total)
    : m_what(std::move(what)), m_total(total), m_tty(isatty(fileno(stderr))) {}

void Progress::update(std::int64_t done, const std::string& note) {
  if (m_tty) {
    const int width = 30;
    const int fill = m_total > 0 ? static_cast<int>(width * done / m_total) : 0;
    if (m_total > 0)
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld %s\033[K", m_what.c_str(), std::string(fill, '#').c_str(),
                   std::string(width - fill, '.').c_str(), (long long)done, (long long)m_total, note.c_str());
    else
      std::fprintf(stderr, "\r%s: %lld %s\033[K", m_what.c_str(), (long long)done, note.c_str());
    std::fflush(stderr);
  } else {
    // Plain log lines: every 10% of a known total, else at most one every 5 seconds.
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    const std::int64_t step = std::max<std::int64_t>(1, m_total / 10);
    const bool due = m_total > 0 ? (done == m_total || done / step != m_last_logged / step) : now - m_last_time >= 5.0;
    if (due) {
      if (m_total > 0)
        std::fprintf(stderr, "%s: %lld/%lld %s\n", m_what.c_str(), (long long)done, (long long)m_total, note.c_str());
      else
        std::fprintf(stderr, "%s: %lld %s\n", m_what.c_str(), (long long)done, note.c_str());
      m_last_logged = done;
      m_last_time = now;
    }
  }
}

void Progress::finish(const std::string& note) {
  std::fprintf(stderr, m_tty ? "\r%s: done, %s\033[K\n" : "%s: done, %s\n", m_what.c_str(), note.c_str());
}

}  // namespace curv::cli
