#pragma once
/// \file fuzz_harness.h
/// Shared pieces of the libFuzzer targets in fuzz/: a per-process scratch folder for the input
/// bytes (the loaders take paths), the error contract, and the "what a user does next" step run on
/// whatever a loader accepted.
///
/// The contract checked on every input (DESIGN.md "Errors"): a loader either returns, or throws
/// std::runtime_error / std::invalid_argument. Any other exception (std::out_of_range,
/// std::bad_alloc, nlohmann::json errors, ...) is reported as a finding by aborting with its type
/// and message, so libFuzzer records the input. With CURV_FUZZ_STRICT=1 in the environment, a
/// loader message that does not name the input file is a finding too.
///
/// The bodies of the five targets are here too (run_target), so the regression tests in
/// tests/test_fuzz_regressions.cpp replay a reproducer through exactly the code that found it,
/// with findings thrown as fuzz::Finding instead of aborting.
///
/// Environment:
///   CURV_FUZZ_STRICT=1   also require loader messages to contain the file path
///   CURV_FUZZ_VERBOSE=1  print every caught message to stderr (for triage)
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/core/dataset.h"
#include "src/core/model.h"

namespace curv::fuzz {

/// The targets, by name: "onnx", "npz", "idx", "h5data", "checkpoint", "study", "runfile" (their
/// inputs: fuzz/fuzz_main.cpp).
const std::vector<std::string>& target_names();

/// Runs one input through target `name`; returns true when the loader accepted it (false: it
/// threw an error within the contract). Throws std::invalid_argument for an unknown name.
bool run_target(const std::string& name, const std::uint8_t* data, std::size_t size);

/// A contract violation found by a target (see the file comment).
struct Finding : std::logic_error {
  using std::logic_error::logic_error;
};

/// How findings are reported: abort (libFuzzer records the input) or throw Finding (tests).
/// `strict` also makes a loader message without the file name a finding (as CURV_FUZZ_STRICT=1).
enum class OnFinding { Abort, Throw };
void set_finding_mode(OnFinding mode, bool strict);

/// Reports a finding as set by set_finding_mode (default: abort).
[[noreturn]] void finding(const std::string& what);

/// Sets up the process: one TBB thread (the machine is shared; results do not depend on it),
/// HDF5 error printing off. Call from LLVMFuzzerInitialize.
void init();

/// The per-process scratch folder ($TMPDIR or /tmp, "curv-fuzz-<pid>"), created on first use and
/// removed at normal exit.
const std::string& scratch_dir();

/// Writes `size` bytes to scratch_dir()/name (replacing it) and returns the path.
std::string write_input(const std::string& name, const std::uint8_t* data, std::size_t size);

/// Runs `load` (a loader call on `file`). Returns true when it returned, false when it threw
/// std::runtime_error or std::invalid_argument; aborts with a description on anything else.
bool guarded(const std::string& file, const std::function<void()>& load);

/// Like guarded(), for the steps after loading: the message need not name the file.
bool guarded_use(const char* step, const std::function<void()>& use);

/// What a user does next with a loaded model: a 2-sample dataset shaped for its input and output,
/// an Objective, evaluate(), gradient() and one Hessian-vector product. Skipped for models whose
/// input or parameter count is too large to be cheap. Returns the loss (NaN when skipped or
/// rejected) so callers can compare two loads of one model.
double exercise_model(const Model& model);

/// What a user does next with a loaded dataset: subsets, normalization, and a linear model
/// evaluated with its gradient on the first samples.
void exercise_dataset(const Dataset& data);

}  // namespace curv::fuzz
