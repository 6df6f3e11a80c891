#include "src/io/internal/hdf5_probe.h"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

// The sanitizer runtimes' hook for "this process is about to die of a report" (a weak reference:
// null outside sanitizer builds). libFuzzer sets it to write the input it is running as a crash-
// artifact; a probe child is a fork of the fuzzer that refuses the file, not a finding.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace curv::h5::internal {

namespace {

// Bounds of the walk: it must finish quickly on any file, valid or not.
constexpr std::size_t kMaxObjects = 1 << 16;
constexpr std::size_t kMaxNamesPerObject = 1 << 16;
constexpr int kMaxDepth = 64;
constexpr hsize_t kMaxChunks = 1 << 20;
constexpr std::uint64_t kReadBudget = std::uint64_t(256) << 20;  // bytes of dataset values read in total
constexpr std::size_t kMaxString = std::size_t(1) << 28;
constexpr double kBaseSeconds = 10;
constexpr double kBytesPerSecond = 50e6;

herr_t collect(const char* name, void* data) {
  auto* names = static_cast<std::vector<std::string>*>(data);
  if (names->size() >= kMaxNamesPerObject) return 1;
  names->emplace_back(name, strnlen(name, 4096));
  return 0;
}
herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* data) { return collect(name, data); }
herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) { return collect(name, data); }

bool standard_numeric(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  if (cls == H5T_INTEGER)
    return (size == 1 || size == 2 || size == 4 || size == 8) && H5Tget_precision(type) == 8 * size &&
           H5Tget_offset(type) == 0;
  if (cls == H5T_FLOAT)
    for (hid_t t : {H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE})
      if (H5Tequal(type, t) > 0) return true;
  return false;
}

// Points of a simple or scalar dataspace, or -1.
hssize_t points(hid_t space) {
  const H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls != H5S_SCALAR && cls != H5S_SIMPLE) return -1;
  return H5Sget_simple_extent_npoints(space);
}

// A name no object or attribute has: looking it up visits every message.
constexpr const char* kAbsentName = "\x01curv-probe-absent";

herr_t innermost(unsigned n, const H5E_error2_t* err, void* data) {
  if (n == 0 && err && err->desc) *static_cast<std::string*>(data) = err->desc;
  return 0;
}

// Walks every object; remembers the first error HDF5 reports on the file's metadata (a valid
// file has none: the walk only does reads that succeed on well-formed metadata).
class Walk {
 public:
  void group(hid_t g, int depth) {
    attributes(g);
    if (depth > kMaxDepth) return;
    // Name lookups decode the link messages on their own code path (H5Lexists), as the readers'
    // first call on a group does: a lookup of a name that is not there visits every link.
    if (H5Lexists(g, kAbsentName, H5P_DEFAULT) < 0) return error("cannot look up a link");
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &names) < 0) return error("cannot list a group");
    for (const auto& name : names) {
      if (++m_objects > kMaxObjects) return;
      H5L_info_t li;
      if (H5Lget_info(g, name.c_str(), &li, H5P_DEFAULT) < 0) return error("cannot read a link");
      if (li.type != H5L_TYPE_HARD) continue;  // soft links lead to objects walked elsewhere (or nowhere)
      const hid_t o = H5Oopen(g, name.c_str(), H5P_DEFAULT);
      if (o < 0) return error("cannot open an object");
      H5O_info_t info;
      if (H5Oget_info2(o, &info, H5O_INFO_BASIC | H5O_INFO_NUM_ATTRS) < 0) {
        H5Oclose(o);
        return error("cannot read an object header");
      }
      if (m_seen.insert(info.addr).second) {
        const H5I_type_t t = H5Iget_type(o);
        if (t == H5I_GROUP) group(o, depth + 1);
        if (t == H5I_DATASET) dataset(o);
      }
      H5Oclose(o);
    }
  }

  const std::string& first_error() const { return m_error; }

 private:
  void error(const char* what) {
    if (!m_error.empty()) return;
    std::string detail;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &detail);
    m_error = detail.empty() ? what : std::string(what) + ": " + detail;
    H5Eclear2(H5E_DEFAULT);
  }

  void attributes(hid_t o) {
    // As the readers start with H5Aexists (which decodes attribute messages on its own code path,
    // where some corruptions crash), so does the walk, with a name that is not there.
    if (H5Aexists(o, kAbsentName) < 0) return error("cannot look up an attribute");
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &names) < 0)
      return error("cannot list the attributes of an object");
    for (const auto& name : names) {
      const hid_t a = H5Aopen(o, name.c_str(), H5P_DEFAULT);
      if (a < 0) return error("cannot open an attribute");
      const hid_t type = H5Aget_type(a), space = H5Aget_space(a);
      if (type < 0 || space < 0) {
        error("cannot read the type or dataspace of an attribute");
      } else if (points(space) == 1) {
        if (H5Tget_class(type) == H5T_STRING) {
          if (!read_string(a, type, true)) error("cannot read a string attribute");
        } else if (standard_numeric(type)) {
          double v = 0;
          if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) error("cannot read a numeric attribute");
        }
      }
      if (space >= 0) H5Sclose(space);
      if (type >= 0) H5Tclose(type);
      H5Aclose(a);
    }
  }

  // One string of attribute or dataset `obj` (variable-length strings go through the global heap).
  bool read_string(hid_t obj, hid_t type, bool is_attr) {
    const htri_t vlen = H5Tis_variable_str(type);
    const hid_t mem = H5Tcopy(H5T_C_S1);
    if (mem < 0 || vlen < 0) return false;
    bool ok = true;
    H5Tset_cset(mem, H5Tget_cset(type));
    const hid_t scalar = H5Screate(H5S_SCALAR);
    if (vlen > 0) {
      H5Tset_size(mem, H5T_VARIABLE);
      char* p = nullptr;
      hsize_t need = 0;
      const hid_t space = is_attr ? -1 : H5Dget_space(obj);
      const bool simple = space >= 0 && H5Sget_simple_extent_type(space) == H5S_SIMPLE;
      const bool too_big = simple && (H5Dvlen_get_buf_size(obj, mem, space, &need) < 0 || need > kMaxString);
      if (space >= 0) H5Sclose(space);
      if (too_big) {
        ok = false;
      } else {
        ok = (is_attr ? H5Aread(obj, mem, &p) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p)) >= 0;
        if (ok && p) H5Dvlen_reclaim(mem, scalar, H5P_DEFAULT, &p);
      }
    } else {
      const std::size_t size = H5Tget_size(type);
      if (size > 0 && size <= kMaxString) {
        H5Tset_size(mem, size);
        std::vector<char> buf(size);
        ok = (is_attr ? H5Aread(obj, mem, buf.data()) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data())) >= 0;
      }
    }
    H5Sclose(scalar);
    H5Tclose(mem);
    return ok;
  }

  void dataset(hid_t d) {
    attributes(d);
    const hid_t type = H5Dget_type(d), space = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    const hssize_t n = space >= 0 ? points(space) : -1;
    if (type < 0 || space < 0 || dcpl < 0) error("cannot read the type, dataspace or layout of a dataset");
    if (type >= 0 && dcpl >= 0 && n >= 0) {
      const H5D_layout_t layout = H5Pget_layout(dcpl);
      const hsize_t stored = H5Dget_storage_size(d);
      if (layout == H5D_CHUNKED) {
        hsize_t chunks = 0;
        if (H5Dget_num_chunks(d, space, &chunks) < 0) error("cannot read the chunk index of a dataset");
        for (hsize_t i = 0; i < chunks && i < kMaxChunks; ++i) {
          haddr_t addr = 0;
          hsize_t size = 0;
          unsigned mask = 0;
          hsize_t offset[H5S_MAX_RANK];
          if (H5Dget_chunk_info(d, space, i, offset, &mask, &addr, &size) < 0) {
            error("cannot read the chunk index of a dataset");
            break;
          }
        }
      }
      const bool plain = H5Pget_external_count(dcpl) == 0 &&
                         (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT || layout == H5D_CHUNKED);
      if (plain && H5Tget_class(type) == H5T_STRING && n == 1) {
        if (!read_string(d, type, false)) error("cannot read a string dataset");
      } else if (plain && standard_numeric(type) && n > 0) {
        const std::uint64_t bytes = static_cast<std::uint64_t>(n) * 8;
        const std::uint64_t file_bytes = static_cast<std::uint64_t>(n) * H5Tget_size(type);
        const bool fits = layout == H5D_CHUNKED ? stored > 0 && file_bytes / 1100 <= stored : stored >= file_bytes;
        if (fits && bytes <= m_budget) {
          m_budget -= bytes;
          std::vector<double> buf(static_cast<std::size_t>(n));
          H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());  // values: errors left to the reader
          H5Eclear2(H5E_DEFAULT);
        }
      }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
  }

  std::string m_error;
  std::size_t m_objects = 0;
  std::uint64_t m_budget = kReadBudget;
  std::set<haddr_t> m_seen;
};

// Exit status of a child whose walk found metadata errors (the message goes through its pipe).
constexpr int kMetadataErrors = 3;

}  // namespace

namespace {

bool g_guarded = false;  // inside guarded(): in its child, or in the parent's second run

bool probe_disabled() {
  const char* env = std::getenv("CURV_HDF5_PROBE");
  return env && std::strcmp(env, "0") == 0;
}

double timeout_for(const std::string& path) {
  struct stat st {};
  const double size = stat(path.c_str(), &st) == 0 ? static_cast<double>(st.st_size) : 0.0;
  double base = kBaseSeconds;
  if (const char* env = std::getenv("CURV_HDF5_PROBE_SECONDS"); env && std::strtod(env, nullptr) > 0)
    base = std::min(std::strtod(env, nullptr), 600.0);
  return base + size / kBytesPerSecond;
}

// Child setup shared by the walk and guarded reads: default signals (the parent's handlers would
// remove its temporary files), no output, no core files, a bounded address space and run time.
void child_setup(unsigned seconds) {
  // Crash signals too: a sanitizer's or test framework's handler would turn a crash into an
  // ordinary exit status (AddressSanitizer exits with 1), which the parent must not take for a
  // clean read.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGALRM, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
    signal(sig, SIG_DFL);
  // Under a fuzzer, the sanitizer still reports a crash here (it keeps its own SIGSEGV handler) and
  // libFuzzer's death callback would save the parent's current input as a crash- artifact: the
  // file this child was sent to walk, which the parent then refuses cleanly. Drop the callback.
  if (&__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  alarm(seconds + 1);
  const int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 1);
    dup2(null, 2);
  }
  rlimit core{0, 0};
  setrlimit(RLIMIT_CORE, &core);
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    unsigned long pages = 0;
    if (std::fscanf(f, "%lu", &pages) == 1) {
      const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t(8) << 30);
      rlimit as{limit, limit};
      setrlimit(RLIMIT_AS, &as);
    }
    std::fclose(f);
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

struct ChildResult {
  bool ran = false;  // false: no child could be started (then nothing is known)
  int status = 0;
  bool timed_out = false;
  std::string message;  // what the child wrote to its pipe
};

// Forks; the child runs `body(fd)` (which must _exit), the parent waits up to `seconds`.
template <class Body>
ChildResult run_child(double seconds, Body body) {
  std::fflush(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return {};
  }
  if (pid == 0) {
    close(fds[0]);
    child_setup(static_cast<unsigned>(seconds));
    body(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  ChildResult r;
  r.ran = true;
  timespec start{}, now{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  long sleep_ns = 200000;
  for (;;) {
    const pid_t w = waitpid(pid, &r.status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      close(fds[0]);
      return {};
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (double(now.tv_sec - start.tv_sec) + 1e-9 * double(now.tv_nsec - start.tv_nsec) > seconds) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
      }
      r.timed_out = true;
      break;
    }
    timespec ts{0, sleep_ns};
    nanosleep(&ts, nullptr);
    sleep_ns = std::min(sleep_ns * 2, 20000000L);
  }
  if (!r.timed_out && r.status != 0) {
    char buf[513] = {};
    const ssize_t n = read(fds[0], buf, 512);
    r.message.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  close(fds[0]);
  return r;
}

// The problem a child's end shows ("" for a clean exit).
std::string problem_of(const ChildResult& r, double seconds, const char* what) {
  if (!r.ran) return {};
  if (r.timed_out || (WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGALRM))
    return std::string(what) + " did not finish within " + std::to_string(static_cast<int>(seconds)) +
           " s (corrupt HDF5 structures)";
  if (WIFSIGNALED(r.status))
    return "the HDF5 library crashed (signal " + std::to_string(WTERMSIG(r.status)) + ") " + what +
           " (corrupt HDF5 structures)";
  if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == kMetadataErrors)
    return "corrupt HDF5 metadata (" + r.message + ")";
  // The child ends with _exit(0) or kMetadataErrors; any other status is a crash that some
  // handler turned into an exit (e.g. a sanitizer's report), and so is refused as well.
  if (WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0)
    return "the HDF5 library crashed (exit status " + std::to_string(WEXITSTATUS(r.status)) + ") " + what +
           " (corrupt HDF5 structures)";
  return {};
}

}  // namespace

std::string probe_file(const std::string& path) {
  if (probe_disabled() || g_guarded) return {};
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};  // the caller reports the missing file
  const double seconds = timeout_for(path);
  const ChildResult r = run_child(seconds, [&](int fd) {
    const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
    if (f < 0) _exit(0);  // not openable: the caller reports it
    Walk walk;
    walk.group(f, 0);
    if (walk.first_error().empty()) _exit(0);
    const std::string& e = walk.first_error();
    (void)!write(fd, e.data(), std::min<std::size_t>(e.size(), 512));
    _exit(kMetadataErrors);
  });
  return problem_of(r, seconds, "reading the file's metadata");
}

bool in_guarded_read() { return g_guarded; }

void guarded(const std::string& file, const std::function<void()>& read) {
  if (probe_disabled() || g_guarded) return read();
  const double seconds = timeout_for(file);
  const ChildResult r = run_child(seconds, [&](int) {
    g_guarded = true;
    try {
      read();
    } catch (...) {
      // The parent's run reports it.
    }
    _exit(0);
  });
  if (const std::string p = problem_of(r, seconds, "reading the file"); !p.empty())
    throw std::runtime_error(file + ": " + p);
  struct Reset {
    ~Reset() { g_guarded = false; }
  } reset;
  g_guarded = true;
  read();
}

}  // namespace curv::h5::internal
