#include "curvature/study_store.h"

#include <signal.h>

#include <cerrno>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "curvature/spectra_store.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"

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

// Writes the run file's temporary completely; the caller commits.
void write_run_temporary(AtomicFile& out, const std::string& path, const std::string& command,
                         const std::string& group, const AttributeMap& attributes,
                         const std::function<void(const h5::Object&)>& write) {
  h5::Object f = h5::Object::create(out.temp_path(), path);
  write_root_attributes(f, command);
  h5::Object g = f.create_group(group, true);
  for (const auto& kv : attributes) std::visit([&](const auto& v) { g.write_attribute(kv.first, v); }, kv.second);
  if (write) write(g);
  f.close();
}

}  // namespace

void write_run_file(const std::string& path, const std::vector<std::string>& inputs, const std::string& command,
                    const std::string& group, const AttributeMap& attributes,
                    const std::function<void(const h5::Object&)>& write) {
  AtomicFile out(path, inputs);
  write_run_temporary(out, path, command, group, attributes, write);
  out.commit();
}

StudyStore::StudyStore(fs::path out, std::vector<std::string> inputs)
    : m_out(std::move(out)), m_inputs(std::move(inputs)) {}

StudyStore::~StudyStore() {
  if (m_commit.valid()) m_commit.wait();
}

void StudyStore::finish_commits() {
  if (!m_commit.valid()) return;
  std::future<void> f = std::move(m_commit);
  f.get();
}

fs::path StudyStore::runs_dir() const { return fs::path(m_out.string() + ".runs"); }

fs::path StudyStore::run_path(const PlannedRun& run) const {
  return runs_dir() / (run.name + "." + run.hash.substr(0, 16) + ".h5");
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
    if (e.is_regular_file(ec) && name.size() > 3 && name.compare(name.size() - 3, 3, ".h5") == 0) m_files.insert(name);
  }
  if (ec) throw std::runtime_error(runs_dir().string() + ": cannot list (" + ec.message() + ")");
  return m_files.size();
}

bool StudyStore::complete(const PlannedRun& run) const { return m_files.count(run_path(run).filename().string()) > 0; }

void StudyStore::commit_run(const PlannedRun& run, const std::string& command, const AttributeMap& attributes,
                            const std::function<void(const h5::Object&)>& write) {
  std::error_code ec;
  fs::create_directories(runs_dir(), ec);
  if (ec) throw std::runtime_error(runs_dir().string() + ": cannot create folder (" + ec.message() + ")");
  const fs::path path = run_path(run);
  finish_commits();
  auto out = std::make_shared<AtomicFile>(path.string(), m_inputs);
  write_run_temporary(*out, path.string(), command, run.name, attributes, write);
  commit_in_background(std::move(out));
  m_files.insert(path.filename().string());
}

void StudyStore::commit_in_background(std::shared_ptr<AtomicFile> file) {
  // The fsyncs and the rename overlap the next run's computation.
  m_commit = std::async(std::launch::async, [file = std::move(file)] { file->commit(); });
}

void StudyStore::assemble(const std::vector<const PlannedRun*>& runs, const StudyHeader& header) {
  finish_commits();
  auto out = std::make_shared<AtomicFile>(m_out.string(), m_inputs);
  {
    h5::Object f = h5::Object::create(out->temp_path(), m_out.string());
    write_root_attributes(f, header.command);
    f.write_attribute("study", header.study_text);
    f.write_attribute("study_file", header.study_file);
    f.write_attribute("study_name", header.study_name);
    for (const PlannedRun* run : runs) {
      if (!complete(*run)) continue;
      const std::string path = run_path(*run).string();
      // Run files are only ever created by commit_run (temporary + rename), so they are complete
      // curv files: the child-process walk of untrusted files (src/io/hdf5.h) is skipped.
      const h5::Object src = h5::Object::open(path, false, {}, true);
      src.copy_to(run->name, f, run->name);
    }
    f.close();
  }
  commit_in_background(std::move(out));
}

void StudyStore::append(const std::vector<const PlannedRun*>& runs) {
  finish_commits();
  if (runs.empty()) return;
  auto out = std::make_shared<AtomicFile>(m_out.string(), m_inputs);
  std::error_code ec;
  fs::copy_file(m_out, out->temp_path(), fs::copy_options::overwrite_existing, ec);
  if (ec) throw std::runtime_error(m_out.string() + ": cannot copy to a temporary file (" + ec.message() + ")");
  {
    // Both files were written by this process (assemble, commit_run).
    h5::Object f = h5::Object::open(out->temp_path(), true, m_out.string(), true);
    for (const PlannedRun* run : runs) {
      const std::string path = run_path(*run).string();
      const h5::Object src = h5::Object::open(path, false, {}, true);
      if (f.exists(run->name)) throw std::logic_error(m_out.string() + ": run '" + run->name + "' is already there");
      src.copy_to(run->name, f, run->name);
    }
    f.close();
  }
  commit_in_background(std::move(out));
}

}  // namespace curv
