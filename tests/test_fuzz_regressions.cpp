// Regression tests for what the fuzzers found (fuzz/, scripts/fuzz.sh).
//
// Every reproducer under tests/data/fuzz/<target>/ replays through the very target that found it
// (curv::fuzz::run_target, fuzz/fuzz_targets.cpp): the loader must accept the file or throw
// std::runtime_error / std::invalid_argument naming it, and what a user does next with a loaded
// model or dataset (evaluate, gradient, HVP, convert, export) must not crash or throw anything
// else. Findings are thrown as curv::fuzz::Finding here, so a regression fails its test instead
// of aborting; a crash still takes the test binary down, which CTest reports as a failure too.
//
// Reproducers of findings that are not fixed yet are listed in kOpen below and skipped by the
// sweep; each also has its own TEST_CASE marked doctest::skip() naming the finding, to be enabled
// when the loader is fixed.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_harness.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRepro = fs::path(CURV_SOURCE_DIR) / "tests" / "data" / "fuzz";
const fs::path kSeeds = fs::path(CURV_SOURCE_DIR) / "fuzz" / "corpus";

// Reproducers of open findings ("<target>/<file>"): skipped by the sweep below until fixed.
const std::vector<std::string> kOpen = {
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Replays one file through `target` with findings thrown and loader messages required to name
// the file. Returns whether the loader accepted it.
bool replay(const std::string& target, const fs::path& file) {
  INFO("target " << target << ", input " << file.string());
  curv::fuzz::set_finding_mode(curv::fuzz::OnFinding::Throw, /*strict=*/true);
  const std::string bytes = read_bytes(file);
  bool loaded = false;
  CHECK_NOTHROW(loaded = curv::fuzz::run_target(target, reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                                bytes.size()));
  return loaded;
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> r;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) r.push_back(e.path());
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace

TEST_CASE("fuzz seeds: every seed of fuzz/corpus loads through its target without a finding") {
  int seeds = 0;
  for (const auto& target : curv::fuzz::target_names()) {
    for (const auto& file : files_in(kSeeds / target)) {
      INFO("seed " << file.string());
      CHECK(replay(target, file));  // seeds are valid inputs: the loader must accept them
      ++seeds;
    }
  }
  CHECK(seeds >= 15);
}

TEST_CASE("fuzz regressions: every fixed reproducer is rejected cleanly or loads and runs") {
  int replayed = 0;
  for (const auto& target : curv::fuzz::target_names()) {
    for (const auto& file : files_in(kRepro / target)) {
      const std::string key = target + "/" + file.filename().string();
      if (std::find(kOpen.begin(), kOpen.end(), key) != kOpen.end()) continue;
      replay(target, file);
      ++replayed;
    }
  }
  MESSAGE("replayed " << replayed << " reproducers (" << kOpen.size() << " open findings skipped)");
}

TEST_CASE("fuzz harness: a loader error outside the contract is a finding, a clean one is not") {
  // An empty .npz is not a zip archive: load_dataset must throw std::runtime_error naming it.
  curv::fuzz::set_finding_mode(curv::fuzz::OnFinding::Throw, true);
  CHECK_FALSE(curv::fuzz::run_target("npz", nullptr, 0));
  CHECK_THROWS_AS(curv::fuzz::guarded("x.npz", [] { throw std::out_of_range("vector::at"); }),
                  curv::fuzz::Finding);
  CHECK_THROWS_AS(curv::fuzz::guarded("x.npz", [] { throw std::runtime_error("no file name"); }),
                  curv::fuzz::Finding);
  CHECK_FALSE(curv::fuzz::guarded("x.npz", [] { throw std::runtime_error("x.npz: truncated"); }));
  CHECK_THROWS_AS(curv::fuzz::run_target("nope", nullptr, 0), std::invalid_argument);
}
