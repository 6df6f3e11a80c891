#include "fuzz/fuzz_harness.h"

#include <cxxabi.h>
#include <hdf5.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>
#include <typeinfo>

#include "src/core/builder.h"
#include "src/core/objective.h"

namespace curv::fuzz {

namespace {

// Inputs larger than this per sample, or models with more parameters, are loaded but not run:
// the point is the loader and the first use, not the speed of a big forward pass.
constexpr std::int64_t kMaxSampleElements = 1 << 14;
constexpr std::int64_t kMaxParams = 1 << 20;
constexpr std::int64_t kMaxClasses = 64;

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

OnFinding g_mode = OnFinding::Abort;
bool g_strict = env_on("CURV_FUZZ_STRICT");

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && d ? d.get() : name;
}

// Product of the dims, or -1 when a dim is negative or the product overflows.
std::int64_t checked_numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  return n;
}

// The message names the input: the file itself, or a file beside it in the scratch folder (the
// labels file of an IDX input).
bool names_input(const std::string& what, const std::string& file) {
  return what.find(file) != std::string::npos || what.find(scratch_dir() + "/") != std::string::npos;
}

bool run(const std::string& where, const std::string& file, const std::function<void()>& f) {
  try {
    f();
    return true;
  } catch (const Finding&) {
    throw;
  } catch (const std::invalid_argument& e) {
    if (env_on("CURV_FUZZ_VERBOSE"))
      std::fprintf(stderr, "curv-fuzz: %s: invalid_argument: %s\n", where.c_str(), e.what());
    if (!file.empty() && g_strict && !names_input(e.what(), file))
      finding(where + ": std::invalid_argument without the file name: " + e.what());
  } catch (const std::runtime_error& e) {
    // Subclasses (std::range_error, std::overflow_error, std::system_error, ...) are runtime errors
    // too, but name them so that triage sees where they came from.
    if (env_on("CURV_FUZZ_VERBOSE"))
      std::fprintf(stderr, "curv-fuzz: %s: %s: %s\n", where.c_str(), demangle(typeid(e).name()).c_str(), e.what());
    if (!file.empty() && g_strict && !names_input(e.what(), file))
      finding(where + ": " + demangle(typeid(e).name()) + " without the file name: " + e.what());
  } catch (const std::exception& e) {
    finding(where + ": exception outside the contract (" + demangle(typeid(e).name()) + "): " + e.what());
  } catch (...) {
    finding(where + ": a thrown value that is not a std::exception");
  }
  return false;
}

}  // namespace

void set_finding_mode(OnFinding mode, bool strict) {
  g_mode = mode;
  g_strict = strict;
}

void finding(const std::string& what) {
  if (g_mode == OnFinding::Throw) throw Finding(what);
  std::fprintf(stderr, "\n==curv-fuzz== FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void init() {
  static tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  scratch_dir();
}

const std::string& scratch_dir() {
  // Never destroyed: the atexit cleanup below runs after static destructors registered later.
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::filesystem::path p = std::filesystem::path(tmp && *tmp ? tmp : "/tmp") /
                              ("curv-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(p);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return new std::string(p.string());
  }();
  return *dir;
}

std::string write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) finding("harness: cannot write " + path);
  return path;
}

bool guarded(const std::string& file, const std::function<void()>& load) { return run("load", file, load); }

bool guarded_use(const char* step, const std::function<void()>& use) { return run(step, "", use); }

double exercise_model(const Model& m) {
  // Oracle: a loader never hands out a non-finite trainable parameter (DESIGN.md: NaN in weights
  // is bad input). Constants may hold -inf (attention masks).
  for (std::size_t i = 0; i < m.params().size(); ++i)
    for (double v : m.param(static_cast<int>(i)).vec())
      if (!std::isfinite(v)) finding("loader accepted a non-finite value in parameter '" + m.params()[i].name + "'");

  double loss = std::numeric_limits<double>::quiet_NaN();
  guarded_use("objective", [&] {
    if (m.input() < 0 || m.output() < 0) return;
    const Shape in = m.input_shape();
    const std::int64_t n_in = checked_numel(in);
    if (n_in <= 0 || n_in > kMaxSampleElements || m.num_params() > kMaxParams) return;
    const Shape out = m.output_shape();
    const std::int64_t n_out = checked_numel(out);
    if (n_out <= 0 || n_out > kMaxSampleElements) return;

    constexpr std::int64_t kSamples = 2;
    Dataset d;
    d.source = "fuzz:model-input";
    d.sample_shape = in;
    d.x.resize(static_cast<std::size_t>(kSamples * n_in));
    for (std::size_t i = 0; i < d.x.size(); ++i) d.x[i] = static_cast<float>(std::sin(0.37 * double(i)));
    if (out.size() == 1) {
      d.labels = {0, out[0] - 1};  // logits [N, C]: cross-entropy
    } else {
      d.target_shape = out;  // anything else: mean squared error against a constant
      d.targets.assign(static_cast<std::size_t>(kSamples * n_out), 0.5f);
    }
    ObjectiveOptions opts;
    opts.micro_batch = kSamples;
    opts.cache_bytes = std::size_t(1) << 26;
    auto obj = Objective::create(m, d, opts);
    loss = obj->evaluate().loss;
    Objective::Vector g;
    obj->gradient(g);
    if (obj->num_params() > 0) {
      Objective::Matrix v = Objective::Matrix::Constant(obj->num_params(), 1, 0.01), hv;
      obj->product(Curvature::Hessian, v, hv);
    }
  });
  return loss;
}

void exercise_dataset(const Dataset& data) {
  guarded_use("dataset", [&] {
    const std::int64_t n = data.size();
    const std::int64_t per = checked_numel(data.sample_shape);
    if (n <= 0 || per <= 0 || per > kMaxSampleElements) return;
    const Dataset first = data.subset(0, std::min<std::int64_t>(n, 4));
    const Dataset last = data.subset(n - 1, 1);
    if (last.size() != 1) finding("Dataset::subset(n - 1, 1) has " + std::to_string(last.size()) + " samples");

    ModelBuilder b(first.sample_shape, 7);
    int x = first.sample_shape.size() == 1 ? b.input() : b.flatten(b.input());
    if (first.classification()) {
      std::int64_t classes = 1;
      for (auto l : first.labels) classes = std::max(classes, l >= kMaxClasses ? kMaxClasses : l + 1);
      x = b.linear(x, classes, "fc");
    } else {
      const std::int64_t t = checked_numel(first.target_shape);
      if (t <= 0 || t > kMaxSampleElements) return;
      x = b.linear(x, t, "fc");
    }
    const Model m = b.finish(x);
    auto obj = Objective::create(m, first, {});
    obj->evaluate();
    Objective::Vector g;
    obj->gradient(g);
  });
}

}  // namespace curv::fuzz
