// libFuzzer target: curv checkpoints (load_checkpoint, load_train_state): the bytes of a checkpoint .h5.
// The body is run_target("checkpoint") in fuzz_targets.cpp, shared with the regression tests.
#include <cstdint>

#include "fuzz/fuzz_harness.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  curv::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  curv::fuzz::run_target("checkpoint", data, size);
  return 0;
}
