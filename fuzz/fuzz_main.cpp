// The libFuzzer entry point of every target: fuzz_<name> is this file compiled with
// CURV_FUZZ_TARGET="<name>" (fuzz/CMakeLists.txt). The bodies are run_target(name) in
// fuzz_targets.cpp, shared with the regression tests; what each target's input is:
//   onnx        the bytes of an .onnx file (ONNX import)
//   npz         the bytes of an .npz dataset (arrays x and y)
//   idx         a 4-byte little-endian length L, L bytes of an IDX images file, then the labels file
//   h5data      the bytes of an .h5 dataset (/x and /y)
//   checkpoint  the bytes of a curv checkpoint .h5 (load_checkpoint, load_train_state)
//   study       the bytes of a study JSON file (docs/study.md)
//   runfile     a study run file (F.h5.runs/*.run): recorded HDF5 writes replayed into a group
#include <cstdint>

#include "fuzz/fuzz_harness.h"

#ifndef CURV_FUZZ_TARGET
#error "compile with -DCURV_FUZZ_TARGET=\"<name>\""
#endif

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  curv::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  curv::fuzz::run_target(CURV_FUZZ_TARGET, data, size);
  return 0;
}
