#pragma once
// Runs the `curv` binary from a test (CURV_BINARY) and checks the bad-input contract: one line on
// stderr naming the problem, exit status 2, nothing on stdout. Shared by the tests that drive the CLI.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/scratch_dir.h"

namespace curv_test {

namespace fs = std::filesystem;

struct Run {
  int status = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A scratch folder for this test process, removed with its contents when the process exits.
inline fs::path tmpdir() {
  static const fs::path d = scratch_dir("cli");
  return d;
}

/// `curv ARGS` with stdout and stderr captured. A run that hangs is killed after 10 minutes
/// (status 124 or 137), so a hang fails the test instead of stalling the suite.
inline Run curv(const std::string& args) {
  const fs::path out = tmpdir() / "stdout", err = tmpdir() / "stderr";
  const std::string cmd = "timeout -k 10 600 " + std::string(CURV_BINARY) + " " + args + " >" + out.string() +
                          " 2>" + err.string();
  const int rc = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

/// One line on stderr, "curv: ..." naming `what`, exit status 2, nothing on stdout.
inline void check_bad(const std::string& args, const std::string& what) {
  Run r = curv(args);
  INFO("curv ", args, "\nstderr: ", r.err);
  CHECK(r.status == 2);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.rfind("curv: ", 0) == 0);
  CHECK(r.err.find(what) != std::string::npos);
  CHECK(r.out.empty());
}

}  // namespace curv_test
