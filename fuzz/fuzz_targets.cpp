// The bodies of the libFuzzer targets (one per loader). Each writes the input bytes where the
// loader expects a file, loads it under the error contract, and runs what a user does next.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <stdexcept>

#include "curvature/study_plan.h"
#include "fuzz/fuzz_harness.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "src/io/hdf5.h"
#include "src/io/onnx_export.h"
#include "src/io/onnx_import.h"

namespace curv::fuzz {

namespace {

// ONNX import (curv info / eval / convert on a .onnx file). After a successful import the model
// is evaluated with its gradient and one HVP, then converted to a curv checkpoint and read back:
// the round trip must give the same loss (`curv convert` promises a bit-identical model).
bool onnx_target(const std::uint8_t* data, std::size_t size) {
  const std::string path = write_input("input.onnx", data, size);
  Model model;
  if (!guarded(path, [&] { model = import_onnx(path); })) return false;
  const double loss = exercise_model(model);

  const std::string ckpt = scratch_dir() + "/converted.h5";
  bool saved = false;
  guarded_use("convert", [&] {
    save_checkpoint(model, ckpt);
    saved = true;
  });
  if (!saved) return true;
  Model back;
  if (!guarded(ckpt, [&] { back = load_checkpoint(ckpt); }))
    finding("a checkpoint written by save_checkpoint does not load back");
  const double loss_back = exercise_model(back);
  if (!(std::isnan(loss) && std::isnan(loss_back)) && loss != loss_back) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "convert round trip changed the loss: %.17g -> %.17g", loss, loss_back);
    finding(msg);
  }
  return true;
}

// Datasets as `--data PATH` reads them, then with --offset 1 --samples 1 --normalize 0.5/0.25.
bool dataset_target(const std::string& path) {
  Dataset d;
  if (!guarded(path, [&] { d = load_dataset(path); })) return false;
  exercise_dataset(d);
  DataOptions o;
  o.offset = 1;
  o.samples = 1;
  o.mean = {0.5};
  o.std = {0.25};
  guarded(path, [&] { load_dataset(path, o); });
  return true;
}

// IDX: one input carries both files. Layout: a 4-byte little-endian length L, then L bytes of the
// images file (L is clamped to what is there), then the labels file. An images part that starts
// with the gzip magic 1f 8b is written as "*-images-idx3-ubyte.gz" (labels then as
// "*-labels-idx1-ubyte.gz"; zlib reads plain files under that name too).
bool idx_target(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return false;
  std::size_t len =
      std::size_t(data[0]) | std::size_t(data[1]) << 8 | std::size_t(data[2]) << 16 | std::size_t(data[3]) << 24;
  len = std::min(len, size - 4);
  const std::uint8_t* images = data + 4;
  const bool gz = len >= 2 && images[0] == 0x1f && images[1] == 0x8b;
  const std::string suffix = gz ? ".gz" : "";
  const std::string path = write_input("f-images-idx3-ubyte" + suffix, images, len);
  write_input("f-labels-idx1-ubyte" + suffix, images + len, size - 4 - len);
  return dataset_target(path);
}

// curv checkpoints as `curv info`, `eval`, `export` and `train` (resume) read them; after a
// successful load the model is evaluated and exported to ONNX (what `curv export` does).
bool checkpoint_target(const std::uint8_t* data, std::size_t size) {
  const std::string path = write_input("input.h5", data, size);
  guarded(path, [&] { load_train_state(path); });
  Model model;
  if (!guarded(path, [&] { model = load_checkpoint(path); })) return false;
  exercise_model(model);
  const std::string onnx = scratch_dir() + "/exported.onnx";
  guarded_use("export", [&] { export_onnx(model, onnx); });
  return true;
}

// A study file (docs/study.md): parsed, validated, its grids expanded and its runs named and
// hashed (inputs that exist are hashed; relative paths resolve beside the file), then selected by
// name patterns as --only does.
bool study_target(const std::uint8_t* data, std::size_t size) {
  const std::string file = write_input("study.json", data, size);
  return guarded(file, [&] {
    const StudyPlan plan = plan_study(file);
    if (plan.runs.empty()) return;
    (void)select_runs(plan, {"*"});
    (void)select_runs(plan, {plan.runs.front().name});
  });
}

// A study's run file (F.h5.runs/<name>.<hash16>.run, h5::Object recordings): its writes replayed
// into a group of an in-memory HDF5 file, as curv study does when it rebuilds F.h5.
bool runfile_target(const std::uint8_t* data, std::size_t size) {
  const std::string file = write_input("input.run", data, size);
  return guarded(file, [&] {
    h5::Object f = h5::Object::create_in_memory(scratch_dir() + "/replayed.h5");
    h5::Object::replay(std::span<const unsigned char>(data, size), f.create_group("run", true), file);
    f.close();
  });
}

}  // namespace

const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names{"onnx", "npz", "idx", "h5data", "checkpoint", "study", "runfile"};
  return names;
}

bool run_target(const std::string& name, const std::uint8_t* data, std::size_t size) {
  if (name == "onnx") return onnx_target(data, size);
  if (name == "npz") return dataset_target(write_input("input.npz", data, size));
  if (name == "h5data") return dataset_target(write_input("input.h5", data, size));
  if (name == "idx") return idx_target(data, size);
  if (name == "checkpoint") return checkpoint_target(data, size);
  if (name == "study") return study_target(data, size);
  if (name == "runfile") return runfile_target(data, size);
  throw std::invalid_argument("fuzz target '" + name +
                              "' does not exist (onnx, npz, idx, h5data, checkpoint, study, runfile)");
}

}  // namespace curv::fuzz
