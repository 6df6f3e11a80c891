// libFuzzer target: study run files (F.h5.runs/*.run): recorded HDF5 writes replayed into a group.
// The body is run_target("runfile") in fuzz_targets.cpp, shared with the regression tests.
#include <cstdint>

#include "fuzz/fuzz_harness.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  curv::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  curv::fuzz::run_target("study", data, size);
  return 0;
}
