// AtomicFile and check_output_paths (src/io/atomic_file.h): the temporary and its rename, the
// refusals that prevent data loss (same file as an input, read-only, missing folder), stale
// temporaries of killed writers, and what SIGTERM / SIGINT do while a temporary exists; and the
// library writers that go through it (checkpoints, ONNX export).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "src/core/builder.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/onnx_export.h"
#include "src/io/onnx_import.h"
#include "tests/scratch_dir.h"

using namespace curv;
namespace fs = std::filesystem;

namespace {

fs::path scratch() { return curv_test::scratch_dir("atomic"); }  // removed at exit
std::string tmp(const std::string& name) { return (scratch() / name).string(); }

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void spit(const std::string& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A pid that belonged to a process that has exited (and been reaped).
pid_t dead_pid() {
  const pid_t p = fork();
  REQUIRE(p >= 0);
  if (p == 0) _exit(0);
  int st = 0;
  waitpid(p, &st, 0);
  return p;
}

bool default_disposition(int sig) {
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL;
}

// Waits (up to a minute: a bound, not a timing assertion) until `path` exists.
bool appears(const std::string& path) {
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// doctest installs crash handlers for SIGTERM and SIGINT; these tests need the default
// dispositions a program starts with, and restore doctest's afterwards.
struct DefaultSignals {
  struct sigaction saved[3];
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  DefaultSignals() {
    for (int i = 0; i < 3; ++i) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigemptyset(&dfl.sa_mask);
      sigaction(kSignals[i], &dfl, &saved[i]);
    }
  }
  ~DefaultSignals() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &saved[i], nullptr);
  }
};

volatile sig_atomic_t g_program_saw = 0;
extern "C" void program_handler(int sig) { g_program_saw = sig; }

}  // namespace

TEST_CASE("AtomicFile writes a temporary beside the target and renames it when committed") {
  const std::string target = tmp("out.bin");
  spit(target, "old");
  ::chmod(target.c_str(), 0640);
  {
    AtomicFile f(target);
    CHECK(f.temp_path() == target + ".curv-tmp." + std::to_string(getpid()));
    CHECK(f.temp_path() == AtomicFile::temp_name(target, getpid()));
    CHECK_FALSE(fs::exists(f.temp_path()));  // the writer creates it
    spit(f.temp_path(), "new");
    CHECK(slurp(target) == "old");
    f.commit();
    CHECK(f.committed());
    CHECK_FALSE(fs::exists(f.temp_path()));
    CHECK_THROWS_AS(f.commit(), std::logic_error);
  }
  CHECK(slurp(target) == "new");
  struct stat st {};
  REQUIRE(stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);  // the replaced file's permission bits

  // Not committed (an exception while writing): the temporary goes, the old file stays.
  {
    AtomicFile f(target);
    spit(f.temp_path(), "half");
  }
  CHECK(slurp(target) == "new");
  CHECK_FALSE(fs::exists(AtomicFile::temp_name(target, getpid())));
  // One writer per target in a process.
  AtomicFile a(target);
  CHECK_THROWS_AS(AtomicFile{target}, std::logic_error);
}

TEST_CASE("outputs that would lose data are refused: an input, a read-only file, a missing folder") {
  const std::string in = tmp("model.onnx");
  spit(in, "precious");
  auto refused = [&](const std::string& out, const std::vector<std::string>& inputs, const std::string& what) {
    const std::string msg = error_of([&] { check_output_paths({out}, inputs); });
    INFO(msg);
    CHECK(msg == out + ": " + what);
    CHECK(error_of([&] { AtomicFile f(out, inputs); }) == msg);
  };
  refused(in, {"data.npz", in}, "is the same file as the input '" + in + "'; refusing to overwrite it");
  // Through a hard link and a symbolic link (device and inode, not names).
  const std::string hard = tmp("hard.onnx"), soft = tmp("soft.onnx");
  fs::create_hard_link(in, hard);
  fs::create_symlink(in, soft);
  refused(hard, {in}, "is the same file as the input '" + in + "'; refusing to overwrite it");
  refused(soft, {in}, "is the same file as the input '" + in + "'; refusing to overwrite it");
  refused(in, {soft}, "is the same file as the input '" + soft + "'; refusing to overwrite it");
  CHECK(slurp(in) == "precious");
  // Read-only (also for root, who could write it).
  const std::string ro = tmp("readonly.h5");
  spit(ro, "keep");
  ::chmod(ro.c_str(), 0444);
  refused(ro, {}, "is read-only; refusing to replace it");
  CHECK(slurp(ro) == "keep");
  refused(tmp("no/such/dir/x.h5"), {}, "folder '" + tmp("no/such/dir") + "' does not exist");
  refused(in + "/x.h5", {}, "'" + in + "' is not a folder");
  refused(scratch().string(), {}, "is a folder, not a file");
  refused("/dev/null", {}, "is not a regular file; refusing to replace it");
  CHECK(error_of([&] { check_output_paths({tmp("a.json"), tmp("./a.json")}); }) ==
        tmp("./a.json") + ": is given as two outputs ('" + tmp("a.json") + "' and '" + tmp("./a.json") + "')");
  // Inputs that are not files (built-in dataset names) and new outputs are fine.
  CHECK_NOTHROW(check_output_paths({tmp("new.h5"), tmp("new.json")}, {"fashion-mnist:train", "random:3x8x8:10"}));
}

TEST_CASE("stale temporaries of killed writers are removed, live or foreign ones are kept") {
  const std::string target = tmp("stale.h5");
  const std::string dead = AtomicFile::temp_name(target, dead_pid());
  const std::string live = AtomicFile::temp_name(target, getppid());
  const std::string other = AtomicFile::temp_name(tmp("other.h5"), dead_pid());
  const std::string odd = target + ".curv-tmp.notapid";
  for (const auto& p : {dead, live, other, odd}) spit(p, "x");
  {
    AtomicFile f(target);
    spit(f.temp_path(), "new");
    f.commit();
  }
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(other));
  CHECK(fs::exists(odd));
  for (const auto& p : {live, other, odd}) fs::remove(p);
}

TEST_CASE("the signal handler is installed only while a temporary exists, never over a program's own") {
  DefaultSignals dfl;
  REQUIRE(default_disposition(SIGTERM));
  REQUIRE(default_disposition(SIGINT));
  struct sigaction mine {}, old {};
  mine.sa_handler = program_handler;
  sigemptyset(&mine.sa_mask);
  sigaction(SIGINT, &mine, &old);
  {
    AtomicFile f(tmp("handlers.h5"));
    CHECK_FALSE(default_disposition(SIGTERM));  // ours: removes the temporary, then dies of the signal
    CHECK_FALSE(default_disposition(SIGHUP));
    struct sigaction now {};
    sigaction(SIGINT, nullptr, &now);
    CHECK((now.sa_handler == program_handler));  // the program's stays
  }
  CHECK(default_disposition(SIGTERM));
  CHECK(default_disposition(SIGHUP));
  sigaction(SIGINT, &old, nullptr);
}

TEST_CASE("SIGTERM or SIGINT while a temporary exists leave the old output and no temporary") {
  for (const int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    const std::string target = tmp("killed_" + std::to_string(sig) + ".h5");
    spit(target, "old");
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      DefaultSignals dfl;
      setenv("CURV_TEST_HOLD_BEFORE_RENAME", "30", 1);
      AtomicFile f(target);
      spit(f.temp_path(), "new");
      f.commit();  // holds 30 s with the complete temporary in place
      _exit(0);
    }
    const std::string temp = AtomicFile::temp_name(target, pid);
    REQUIRE(appears(temp));
    kill(pid, sig);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == sig);
    CHECK(slurp(target) == "old");
    CHECK_FALSE(fs::exists(temp));
  }
  // A program that handles SIGINT itself (curv train stops after the step) keeps its handler:
  // the write in progress completes, and the program decides what the signal means.
  const std::string target = tmp("handled.h5");
  spit(target, "old");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    DefaultSignals dfl;
    signal(SIGINT, program_handler);
    setenv("CURV_TEST_HOLD_BEFORE_RENAME", "1", 1);
    AtomicFile f(target);
    spit(f.temp_path(), "new");
    f.commit();
    _exit(g_program_saw == SIGINT ? 42 : 1);
  }
  const std::string temp = AtomicFile::temp_name(target, pid);
  REQUIRE(appears(temp));
  kill(pid, SIGINT);
  int st = 0;
  waitpid(pid, &st, 0);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 42);
  CHECK(slurp(target) == "new");
  CHECK_FALSE(fs::exists(temp));
}

TEST_CASE("library writers refuse to replace the file their model was read from") {
  const std::string onnx = tmp("mlp.onnx");
  fs::copy_file(std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.onnx", onnx, fs::copy_options::overwrite_existing);
  const std::string before = slurp(onnx);
  const Model m = import_onnx(onnx);
  CHECK(model_files(m) == std::vector<std::string>{onnx});
  CHECK(error_of([&] { export_onnx(m, onnx); }) ==
        onnx + ": is the same file as the input '" + onnx + "'; refusing to overwrite it");
  CHECK(error_of([&] { save_checkpoint(m, onnx); }).find("is the same file as the input") != std::string::npos);
  CHECK(slurp(onnx) == before);
  const std::string h5 = tmp("mlp.h5");
  save_checkpoint(m, h5);
  const Model c = load_checkpoint(h5);
  CHECK(model_files(c) == std::vector<std::string>{h5});
  const std::string saved = slurp(h5);
  CHECK(error_of([&] { save_checkpoint(c, h5); }).find(h5 + ": is the same file as the input") == 0);
  CHECK(slurp(h5) == saved);
  // Another file is fine, and a built model has no input file.
  CHECK_NOTHROW(save_checkpoint(c, tmp("copy.h5")));
  for (const auto& p : model_files(build_arch("mlp", {1, 3, 3}, 3, 1))) CHECK_FALSE(fs::exists(p));
}
