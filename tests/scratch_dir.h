#pragma once
// Scratch folders of a test process (tests/test_util.h, tests/cli_run.h).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace curv_test {

/// A scratch folder `<tmp>/curv_test_<tag>_<pid>` (created), removed with its contents when the
/// process exits.
inline std::filesystem::path scratch_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  struct Made {
    std::vector<fs::path> dirs;
    ~Made() {
      std::error_code ec;
      for (const auto& d : dirs) fs::remove_all(d, ec);
    }
  };
  static Made made;
  const fs::path d = fs::temp_directory_path() / ("curv_test_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  if (std::find(made.dirs.begin(), made.dirs.end(), d) == made.dirs.end()) made.dirs.push_back(d);
  return d;
}

}  // namespace curv_test
