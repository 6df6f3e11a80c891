#include "curvature/study_store.h"

#include <signal.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <system_error>

#include <nlohmann/json.hpp>

#include "curvature/spectra_store.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"
#include "src/io/sha256.h"

namespace curv {

namespace {

namespace fs = std::filesystem;

constexpr const char* kTempTag = ".curv-tmp.";

// A temporary "<target>.curv-tmp.<pid>" whose writer is gone.
bool stale_temporary(const std::string& name) {
  const auto pos = name.rfind(kTempTag);
  if (pos == std::string::npos) return false;
  const std::string pid_text = name.substr(pos + std::string(kTempTag).size());
  if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) return false;
  const long pid = std::stol(pid_text);
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// A run file's content in the open file f: root attributes, then group `group` with
// `attributes`, then write(group). The callers close f.
void write_run_contents(const h5::Object& f, const std::string& command, const std::string& group,
                        const AttributeMap& attributes, const std::function<void(const h5::Object&)>& write) {
  write_root_attributes(f, command);
  h5::Object g = f.create_group(group, true);
  for (const auto& kv : attributes) std::visit([&](const auto& v) { g.write_attribute(kv.first, v); }, kv.second);
  if (write) write(g);
}

// Writes `bytes` as the new file `path` (the temporary of `target`, named in errors).
void write_bytes(const std::string& path, const std::string& target, const std::vector<unsigned char>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error(target + ": cannot create '" + path + "' (" + std::strerror(errno) + ")");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "nothing written";
      ::close(fd);
      throw std::runtime_error(target + ": cannot write '" + path + "' (" + why + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) throw std::runtime_error(target + ": cannot write '" + path + "' (" + std::strerror(errno) + ")");
}

// What F.h5 holds, written beside the run files after each commit of F.h5 (see the header).
constexpr const char* kManifest = "assembled.json";
constexpr std::uintmax_t kMaxManifestBytes = std::uintmax_t{256} << 20;

// The identity of the file at `path` now (device, inode, size, modification time in ns);
// null if there is none.
nlohmann::json file_stamp(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
          static_cast<std::int64_t>(st.st_size),
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + static_cast<std::int64_t>(st.st_mtim.tv_nsec)};
}

std::string header_hash(const StudyHeader& h) {
  return sha256_hex(h.study_file + '\0' + h.study_name + '\0' + h.study_text);
}

// Records that `out`, as it is now on disk, holds exactly `runs` (run file names) under a header
// whose hash is `header`.
void write_manifest(const fs::path& out, const fs::path& manifest, const std::string& header,
                    const std::set<std::string>& runs) {
  const nlohmann::json j = {{"version", 1}, {"header", header}, {"file", file_stamp(out)}, {"runs", runs}};
  const std::string text = j.dump();
  std::error_code ec;
  fs::create_directories(manifest.parent_path(), ec);  // before the first run file
  if (ec) throw std::runtime_error(manifest.parent_path().string() + ": cannot create folder (" + ec.message() + ")");
  // Renamed into place but not synced: after a crash it may be missing, stale or empty, and any of
  // these only costs a rebuild of F.h5 (manifest_matches says false); a leftover temporary is
  // removed by the next scan(). Saves two fsyncs that the end of every study would wait for.
  const std::string temp = AtomicFile::temp_name(manifest.string(), static_cast<long>(::getpid()));
  write_bytes(temp, manifest.string(), std::vector<unsigned char>(text.begin(), text.end()));
  if (std::rename(temp.c_str(), manifest.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(temp.c_str());
    throw std::runtime_error(manifest.string() + ": cannot rename '" + temp + "' into place (" + why + ")");
  }
}

// True if `manifest` says that `out`, unchanged since, holds exactly `runs` under `header`.
// Anything unreadable or different: false (F.h5 is then rebuilt).
bool manifest_matches(const fs::path& out, const fs::path& manifest, const std::string& header,
                      const std::set<std::string>& runs) {
  std::error_code ec;
  const auto size = fs::file_size(manifest, ec);
  if (ec || size > kMaxManifestBytes) return false;
  try {
    std::ifstream in(manifest, std::ios::binary);
    const nlohmann::json j = nlohmann::json::parse(in);
    const nlohmann::json stamp = file_stamp(out);
    return !stamp.is_null() && j.at("version") == 1 && j.at("header") == header && j.at("file") == stamp &&
           j.at("runs").get<std::set<std::string>>() == runs;
  } catch (const std::exception&) {
    return false;
  }
}

// Creates group `group` (links in creation order, as write_run_file's) in `f` and performs in it the
// writes recorded in the run file `path`.
void replay_run(const fs::path& path, const h5::Object& f, const std::string& group) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> bytes;
  if (in) {
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(0);
    if (size >= 0) {
      bytes.resize(static_cast<std::size_t>(size));
      in.read(reinterpret_cast<char*>(bytes.data()), size);
    }
  }
  if (!in) throw std::runtime_error(path.string() + ": cannot read");
  const h5::Object g = f.create_group(group, true);
  h5::Object::replay(bytes, g, path.string());
}

}  // namespace

// One thread for the whole study (starting a thread per commit cost ~0.1 ms each time). It runs
// its jobs one at a time in the order given; at most kMaxJobs are queued or running, so a caller
// that gets ahead waits (make_room). A job's failure is kept (the first one) and thrown once by the
// next make_room() or wait().
class StudyStore::CommitThread {
 public:
  static constexpr std::size_t kMaxJobs = 2;  // a run file's commit and an F.h5 extension

  CommitThread() : m_thread([this] { loop(); }) {}
  ~CommitThread() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    m_thread.join();
  }
  // Waits until fewer than kMaxJobs are queued or running; throws a failure kept since the last report.
  void make_room() {
    std::unique_lock lock(m_mutex);
    m_cv.wait(lock, [&] { return m_jobs.size() + (m_running ? 1 : 0) < kMaxJobs; });
    if (std::exception_ptr e = std::exchange(m_error, nullptr)) std::rethrow_exception(e);
  }
  // REQUIRES: make_room() returned since the last start().
  void start(std::function<void()> job) {
    {
      std::lock_guard lock(m_mutex);
      m_jobs.push_back(std::move(job));
    }
    m_cv.notify_all();
  }
  // CPU time this thread has used, in seconds.
  double cpu_seconds() const {
    clockid_t id;
    timespec t{};
    if (pthread_getcpuclockid(m_thread.native_handle(), &id) != 0 || clock_gettime(id, &t) != 0) return 0;
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  // Throws a failure kept since the last report (once), without waiting.
  void check() {
    std::lock_guard lock(m_mutex);
    if (std::exception_ptr e = std::exchange(m_error, nullptr)) std::rethrow_exception(e);
  }
  // Waits for every job given so far; throws a failure kept since the last report (once).
  void wait() {
    std::unique_lock lock(m_mutex);
    m_cv.wait(lock, [&] { return m_jobs.empty() && !m_running; });
    if (std::exception_ptr e = std::exchange(m_error, nullptr)) std::rethrow_exception(e);
  }

 private:
  void loop() {
    // Lowest priority (Linux SCHED_IDLE): the commits use CPU the runs leave idle, and waking
    // this thread never preempts a run's threads (at normal priority the wake-up for each run
    // file cost the main thread ~0.3 ms in two runs out of five).
    sched_param idle{};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    std::unique_lock lock(m_mutex);
    for (;;) {
      m_cv.wait(lock, [&] { return m_stop || !m_jobs.empty(); });
      if (m_jobs.empty()) return;  // stopping, with nothing left to do
      std::function<void()> job = std::move(m_jobs.front());
      m_jobs.pop_front();
      m_running = true;
      lock.unlock();
      std::exception_ptr error;
      try {
        job();
      } catch (...) {
        error = std::current_exception();
      }
      job = nullptr;  // its captures (the AtomicFile, which removes a failed temporary) go first
      lock.lock();
      if (error && !m_error) m_error = error;
      m_running = false;
      m_cv.notify_all();
    }
  }

  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::function<void()>> m_jobs;  // given, not started
  bool m_running = false;                    // a job is running
  std::exception_ptr m_error;                // the first failure not yet reported
  bool m_stop = false;
  mutable std::thread m_thread;  // last: starts after the members above exist (mutable: native_handle)
};

void write_run_file(const std::string& path, const std::vector<std::string>& inputs, const std::string& command,
                    const std::string& group, const AttributeMap& attributes,
                    const std::function<void(const h5::Object&)>& write) {
  AtomicFile out(path, inputs);
  h5::Object f = h5::Object::create(out.temp_path(), path);
  write_run_contents(f, command, group, attributes, write);
  f.close();
  out.commit();
}

StudyStore::StudyStore(fs::path out, std::vector<std::string> inputs)
    : m_out(std::move(out)), m_inputs(std::move(inputs)) {}

StudyStore::~StudyStore() {
  if (!m_thread) return;
  try {
    m_thread->wait();
  } catch (...) {  // dropped, as documented: finish_commits() reports it
  }
}

void StudyStore::finish_commits() {
  if (m_thread) m_thread->wait();
}

void StudyStore::check_commits() {
  if (m_thread) m_thread->check();
}

fs::path StudyStore::runs_dir() const { return fs::path(m_out.string() + ".runs"); }

fs::path StudyStore::run_path(const PlannedRun& run) const {
  return runs_dir() / (run.name + "." + run.hash.substr(0, 16) + ".run");
}

std::size_t StudyStore::scan() {
  m_files.clear();
  std::error_code ec;
  if (!fs::exists(runs_dir(), ec)) return 0;
  if (!fs::is_directory(runs_dir(), ec))
    throw std::runtime_error(runs_dir().string() + ": exists and is not a folder (curv study keeps its runs there)");
  for (const auto& e : fs::directory_iterator(runs_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (stale_temporary(name)) {
      fs::remove(e.path(), ec);
      continue;
    }
    if (e.is_regular_file(ec) && name.size() > 4 && name.compare(name.size() - 4, 4, ".run") == 0) m_files.insert(name);
  }
  if (ec) throw std::runtime_error(runs_dir().string() + ": cannot list (" + ec.message() + ")");
  return m_files.size();
}

bool StudyStore::complete(const PlannedRun& run) const { return m_files.count(run_path(run).filename().string()) > 0; }

void StudyStore::commit_run(const PlannedRun& run, const AttributeMap& attributes,
                            const std::function<void(const h5::Object&)>& write) {
  if (!m_dir_ready) {  // once per study, not a stat per run
    std::error_code ec;
    fs::create_directories(runs_dir(), ec);
    if (ec) throw std::runtime_error(runs_dir().string() + ": cannot create folder (" + ec.message() + ")");
    m_dir_ready = true;
  }
  const fs::path path = run_path(run);
  // The run group's writes recorded (no HDF5 file per run: see the header), then written to disk
  // in the background.
  std::vector<unsigned char> image;
  {
    const h5::Object g = h5::Object::recording(path.string());
    for (const auto& kv : attributes) std::visit([&](const auto& v) { g.write_attribute(kv.first, v); }, kv.second);
    if (write) write(g);
    image = g.take_recording();
  }
  // Everything that touches runs_dir happens in the background, where it does not wait for the
  // folder's lock behind the previous commit's rename. scan() removed the temporaries of dead
  // writers there once, so no folder walk per run.
  commit_in_background([target = path.string(), inputs = m_inputs, image = std::move(image)] {
    AtomicFile out(target, inputs, false);
    write_bytes(out.temp_path(), target, image);
    out.commit();
  });
  m_files.insert(path.filename().string());
}

double StudyStore::background_cpu_seconds() const { return m_thread ? m_thread->cpu_seconds() : 0.0; }

void StudyStore::commit_in_background(std::function<void()> job) {
  // The fsyncs and the rename overlap the next run's computation.
  if (!m_thread) m_thread = std::make_unique<CommitThread>();
  m_thread->make_room();
  m_thread->start(std::move(job));
}

void StudyStore::assemble(const std::vector<const PlannedRun*>& runs, const StudyHeader& header) {
  finish_commits();
  std::set<std::string> names;
  for (const PlannedRun* run : runs)
    if (complete(*run)) names.insert(run_path(*run).filename().string());
  m_header_hash = header_hash(header);
  const fs::path manifest = runs_dir() / kManifest;
  if (manifest_matches(m_out, manifest, m_header_hash, names)) {
    m_assembled = std::move(names);  // F.h5 already is what this would write
    return;
  }
  auto out = std::make_shared<AtomicFile>(m_out.string(), m_inputs);
  {
    h5::Object f = h5::Object::create(out->temp_path(), m_out.string());
    write_root_attributes(f, header.command);
    f.write_attribute("study", header.study_text);
    f.write_attribute("study_file", header.study_file);
    f.write_attribute("study_name", header.study_name);
    for (const PlannedRun* run : runs) {
      if (!complete(*run)) continue;
      replay_run(run_path(*run), f, run->name);
    }
    f.close();
  }
  m_assembled = std::move(names);
  commit_study_file(std::move(out));
}

namespace {

// Copies F.h5 (`out`) to `temp` and replays the run files `runs` (path, group name) into the copy.
void extend_copy(const fs::path& out, const std::string& temp, const std::vector<std::pair<fs::path, std::string>>& runs) {
  std::error_code ec;
  fs::copy_file(out, temp, fs::copy_options::overwrite_existing, ec);
  if (ec) throw std::runtime_error(out.string() + ": cannot copy to a temporary file (" + ec.message() + ")");
  // Both files were written by this process (assemble, commit_run).
  h5::Object f = h5::Object::open(temp, true, out.string(), true);
  for (const auto& [path, name] : runs) {
    if (f.exists(name)) throw std::logic_error(out.string() + ": run '" + name + "' is already there");
    replay_run(path, f, name);
  }
  f.close();
}

}  // namespace

void StudyStore::append(const std::vector<const PlannedRun*>& runs) {
  if (runs.empty()) return;
  finish_commits();  // the runs' files are committed
  std::vector<std::pair<fs::path, std::string>> files;
  for (const PlannedRun* run : runs) files.emplace_back(run_path(*run), run->name);
  auto out = std::make_shared<AtomicFile>(m_out.string(), m_inputs);
  extend_copy(m_out, out->temp_path(), files);
  for (const PlannedRun* run : runs) m_assembled.insert(run_path(*run).filename().string());
  commit_study_file(std::move(out));
}

void StudyStore::commit_study_file(std::shared_ptr<AtomicFile> out) {
  // The manifest after the rename, with F.h5's new identity; a kill between the two leaves the
  // old manifest, which no longer matches F.h5, so the next assemble() rebuilds it.
  commit_in_background([out, target = m_out, manifest = runs_dir() / kManifest, header = m_header_hash,
                        runs = m_assembled] {
    out->commit();
    write_manifest(target, manifest, header, runs);
  });
}

}  // namespace curv
