#include "src/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace curv {

namespace {

namespace fs = std::filesystem;

constexpr const char* kTempTag = ".curv-tmp.";
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);

// ---- the process-wide registry of live temporaries ------------------------------------------------
// Slots are written under g_mutex and read lock-free by the signal handler: a slot's path is
// complete before its state becomes kLive, and a freed slot is kFree before its path changes.
constexpr int kSlots = 64;
constexpr std::size_t kPathBytes = 4096;
enum SlotState : int { kFree = 0, kLive = 1 };
struct Slot {
  std::atomic<int> state{kFree};
  char path[kPathBytes] = {};
};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

Slot g_slots[kSlots];
std::mutex g_mutex;
int g_live = 0;                          // live slots (under g_mutex)
bool g_installed[kNumSignals] = {};      // our handler is installed for kSignals[i] (under g_mutex)

extern "C" void curv_remove_temporaries_and_reraise(int sig) {
  // Async-signal-safe only: atomic loads, unlink, signal, raise.
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == kLive) unlink(s.path);
  signal(sig, SIG_DFL);
  raise(sig);  // delivered with the default action (termination) as the handler returns
}

// Installs the handler for each signal whose disposition is the default one (a program's own
// handler, or SIG_IGN, stays as it is). REQUIRES: g_mutex held.
void install_handlers() {
  for (int i = 0; i < kNumSignals; ++i) {
    struct sigaction cur {};
    if (sigaction(kSignals[i], nullptr, &cur) != 0) continue;
    if ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = curv_remove_temporaries_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    g_installed[i] = sigaction(kSignals[i], &sa, nullptr) == 0;
  }
}

// Restores the default disposition where our handler is still the installed one. REQUIRES: g_mutex held.
void remove_handlers() {
  for (int i = 0; i < kNumSignals; ++i) {
    if (!g_installed[i]) continue;
    g_installed[i] = false;
    struct sigaction cur {};
    if (sigaction(kSignals[i], nullptr, &cur) != 0) continue;
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == curv_remove_temporaries_and_reraise) signal(kSignals[i], SIG_DFL);
  }
}

int register_temporary(const std::string& target, const std::string& temp) {
  if (temp.size() >= kPathBytes) throw std::runtime_error(target + ": path too long for a temporary file");
  std::lock_guard lock(g_mutex);
  int free_slot = -1;
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].state.load(std::memory_order_relaxed) == kFree) {
      if (free_slot < 0) free_slot = i;
    } else if (temp == g_slots[i].path) {
      throw std::logic_error(target + ": is already being written by this process");
    }
  }
  if (free_slot < 0)
    throw std::runtime_error(target + ": more than " + std::to_string(kSlots) + " files are being written at once");
  Slot& s = g_slots[free_slot];
  std::memcpy(s.path, temp.c_str(), temp.size() + 1);
  s.state.store(kLive, std::memory_order_release);
  if (g_live++ == 0) install_handlers();
  return free_slot;
}

void unregister_temporary(int slot) {
  if (slot < 0) return;
  std::lock_guard lock(g_mutex);
  g_slots[slot].state.store(kFree, std::memory_order_release);
  if (--g_live == 0) remove_handlers();
}

// ---- checks --------------------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& file, const std::string& problem) {
  throw std::runtime_error(file + ": " + problem);
}

std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

void check_one_output(const std::string& out, const std::vector<std::string>& inputs) {
  if (out.empty()) throw std::runtime_error("an output file name is empty");
  const std::string dir = folder_of(out);
  struct stat ds {};
  if (stat(dir.c_str(), &ds) != 0) fail(out, "folder '" + dir + "' does not exist");
  if (!S_ISDIR(ds.st_mode)) fail(out, "'" + dir + "' is not a folder");
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    fail(out, "cannot write in folder '" + dir + "' (" + std::strerror(errno) + ")");
  struct stat os {};
  if (stat(out.c_str(), &os) != 0) return;  // a new file (or a dangling link, which is replaced)
  if (S_ISDIR(os.st_mode)) fail(out, "is a folder, not a file");
  if (!S_ISREG(os.st_mode)) fail(out, "is not a regular file; refusing to replace it");
  for (const auto& in : inputs) {
    struct stat is {};
    if (in.empty() || stat(in.c_str(), &is) != 0) continue;
    if (is.st_dev == os.st_dev && is.st_ino == os.st_ino)
      fail(out, "is the same file as the input '" + in + "'; refusing to overwrite it");
  }
  // Root may write anything: the permission bits are the user's statement.
  if ((os.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0 || access(out.c_str(), W_OK) != 0)
    fail(out, "is read-only; refusing to replace it");
}

// Removes "<target>.curv-tmp.<pid>" files of processes that no longer run.
void remove_stale_temporaries(const std::string& target) {
  const fs::path t(target);
  const std::string prefix = t.filename().string() + kTempTag;
  std::error_code ec;
  fs::directory_iterator it(folder_of(target), ec);
  if (ec) return;
  for (const auto& e : it) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(digits.c_str(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(getpid())) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rec;
    fs::remove(e.path(), rec);
  }
}

// CURV_TEST_HOLD_BEFORE_RENAME=SECONDS: waits with the complete temporary in place (tests only).
void test_hold() {
  const char* env = std::getenv("CURV_TEST_HOLD_BEFORE_RENAME");
  if (!env || !*env) return;
  double seconds = std::strtod(env, nullptr);
  if (!(seconds > 0)) return;
  if (seconds > 60) seconds = 60;
  timespec end{};
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += static_cast<time_t>(seconds);
  end.tv_nsec += static_cast<long>((seconds - static_cast<double>(static_cast<time_t>(seconds))) * 1e9);
  if (end.tv_nsec >= 1000000000L) end.tv_sec += 1, end.tv_nsec -= 1000000000L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, nullptr) == EINTR) {
  }
}

void sync_path(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

}  // namespace

void check_output_paths(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    check_one_output(outputs[i], inputs);
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code e1, e2;
      const fs::path a = fs::weakly_canonical(outputs[i], e1), b = fs::weakly_canonical(outputs[j], e2);
      if ((!e1 && !e2 && a == b) || outputs[i] == outputs[j])
        fail(outputs[i], "is given as two outputs ('" + outputs[j] + "' and '" + outputs[i] + "')");
    }
  }
}

std::string AtomicFile::temp_name(const std::string& target, long pid) {
  return target + kTempTag + std::to_string(pid);
}

AtomicFile::AtomicFile(std::string target, const std::vector<std::string>& inputs, bool remove_stale)
    : m_target(std::move(target)) {
  check_output_paths({m_target}, inputs);
  m_temp = temp_name(m_target, static_cast<long>(getpid()));
  if (remove_stale) remove_stale_temporaries(m_target);
  m_slot = register_temporary(m_target, m_temp);
  unlink(m_temp.c_str());  // left by an earlier process that had our pid
}

AtomicFile::~AtomicFile() {
  if (!m_committed) unlink(m_temp.c_str());
  unregister_temporary(m_slot);
}

void AtomicFile::commit() {
  if (m_committed) throw std::logic_error(m_target + ": AtomicFile::commit called twice");
  test_hold();
  struct stat ts {};
  if (stat(m_temp.c_str(), &ts) != 0) fail(m_target, "temporary file '" + m_temp + "' is missing");
  sync_path(m_temp, O_RDONLY);
  struct stat old {};
  if (stat(m_target.c_str(), &old) == 0 && S_ISREG(old.st_mode)) (void)chmod(m_temp.c_str(), old.st_mode & 07777);
  if (std::rename(m_temp.c_str(), m_target.c_str()) != 0)
    fail(m_target, "cannot rename '" + m_temp + "' into place (" + std::strerror(errno) + ")");
  m_committed = true;
  sync_path(folder_of(m_target), O_RDONLY | O_DIRECTORY);
  unregister_temporary(m_slot);
  m_slot = -1;
}

}  // namespace curv
