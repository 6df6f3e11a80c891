// libFuzzer target: IDX datasets: a 4-byte little-endian length L, L bytes of the images file, the labels file.
// The body is run_target("idx") in fuzz_targets.cpp, shared with the regression tests.
#include <cstdint>

#include "fuzz/fuzz_harness.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  curv::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  curv::fuzz::run_target("idx", data, size);
  return 0;
}
