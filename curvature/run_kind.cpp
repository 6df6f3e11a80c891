#include "curvature/run_kind.h"

#include <stdexcept>

#include "src/core/timer.h"
#include "src/io/data_io.h"
#include "src/io/model_source.h"

namespace curv {

namespace {

bool dataset_name(const std::string& spec) {
  return spec.rfind("fashion-mnist:", 0) == 0 || spec.rfind("random:", 0) == 0;
}

std::vector<const RunKind*>& registry() {
  static std::vector<const RunKind*> kinds = {&spectrum_run_kind(), &eval_run_kind(), &landscape_run_kind(),
                                              &interpolate_run_kind()};
  return kinds;
}

}  // namespace

InputCache::InputCache(std::filesystem::path root) : m_root(std::move(root)) {}
InputCache::~InputCache() = default;

std::string InputCache::resolve(const std::string& path) const {
  if (path.empty() || dataset_name(path) || std::filesystem::path(path).is_absolute()) return path;
  return (m_root / path).lexically_normal().string();
}

const Dataset& InputCache::data(const nlohmann::json& s) {
  const std::string spec = resolve(s.at("data").get<std::string>());
  DataOptions o;
  // As `curv spectrum --data`: the run's seed also seeds random: datasets (0 keeps their default).
  const std::uint64_t seed = s.at("seed").get<std::uint64_t>();
  if (seed) o.seed = seed;
  // The seed matters only to random: datasets; every other dataset is read once.
  const std::string all_key = spec + "\n" + (spec.rfind("random:", 0) == 0 ? std::to_string(o.seed) : "");
  auto& all = m_all[all_key];
  if (!all) {
    Timer t;
    all = std::make_unique<Dataset>(load_all_samples(spec, o));
    m_load_seconds += t.seconds();
  }
  o.samples = s.at("samples").get<std::int64_t>();
  o.offset = s.at("offset").get<std::int64_t>() + s.at("batch_index").get<std::int64_t>() * o.samples;
  o.classes = s.at("relabel").get<std::int64_t>();
  const std::string normalize = s.at("normalize").get<std::string>();
  if (!normalize.empty()) parse_normalize(normalize, o);
  const std::string key = all_key + "\n" + std::to_string(o.samples) + "\n" + std::to_string(o.offset) + "\n" +
                          normalize + "\n" + std::to_string(o.classes);
  auto& sel = m_selected[key];
  if (!sel) {
    Timer t;
    sel = std::make_unique<Dataset>(select_samples(*all, o));
    m_load_seconds += t.seconds();
  }
  return *sel;
}

const Model& InputCache::model(const nlohmann::json& s, const std::string& key) {
  ModelSource src;
  src.path = key == "model" && !s.at("arch").get<std::string>().empty() ? "" : resolve(s.at(key).get<std::string>());
  src.arch = key == "model" ? s.at("arch").get<std::string>() : "";
  src.seed = s.at("seed").get<std::uint64_t>();
  src.import.params_regex = s.at("params").get<std::string>();
  src.import.freeze_regex = s.at("freeze").get<std::string>();
  src.import.batch_norm_training = s.at("bn_train").get<bool>();
  if (src.path.empty() && src.arch.empty())
    throw std::invalid_argument(key + ": no model given (a file, or arch)");
  if (!src.path.empty() && !src.arch.empty()) throw std::invalid_argument("model and arch exclude each other");
  const Dataset* data = nullptr;
  // The cache key, built by appends (GCC 12 warns falsely on long operator+ chains).
  std::string id;
  for (const std::string& part : {src.path, src.import.params_regex, src.import.freeze_regex,
                                  std::to_string(src.import.batch_norm_training)})
    id.append(part).append("\n");
  if (!src.arch.empty()) {
    data = &this->data(s);
    std::int64_t classes = 0;
    for (auto y : data->labels) classes = std::max(classes, y + 1);
    for (const std::string& part :
         {src.arch, std::to_string(src.seed), shape_str(data->sample_shape),
          std::to_string(data->classification() ? 0 : numel(data->target_shape)), std::to_string(classes)})
      id.append(part).append("\n");
  }
  auto& m = m_models[id];
  if (!m) {
    Timer t;
    m = std::make_unique<Model>(load_model(src, data));
    m_load_seconds += t.seconds();
  }
  return *m;
}

ObjectiveOptions InputCache::objective_options(const nlohmann::json& s) {
  ObjectiveOptions o;
  o.precision = s.at("precision").get<std::string>() == "float64" ? Precision::Float64 : Precision::Float32;
  o.micro_batch = s.at("micro_batch").get<std::int64_t>();
  o.group_directions = s.at("group_directions").get<std::int64_t>();
  o.cache_bytes = static_cast<std::size_t>(std::max(0.0, s.at("cache_gb").get<double>()) * 1e9);
  return o;
}

std::vector<std::string> InputCache::input_files(const nlohmann::json& s) const {
  std::vector<std::string> files;
  const auto add = [&](const char* key) {
    if (s.contains(key) && s.at(key).is_string() && !s.at(key).get<std::string>().empty())
      files.push_back(resolve(s.at(key).get<std::string>()));
  };
  if (s.at("arch").get<std::string>().empty()) add("model");
  add("model2");
  if (s.contains("dirs")) {
    const std::string d = s.at("dirs").get<std::string>();
    if (d != "random" && d != "top-eig") files.push_back(resolve(d));
  }
  for (const auto& f : dataset_files(resolve(s.at("data").get<std::string>()))) files.push_back(f);
  return files;
}

void InputCache::clear() {
  m_all.clear();
  m_selected.clear();
  m_models.clear();
}

const std::vector<const RunKind*>& run_kinds() { return registry(); }

const RunKind* find_run_kind(const std::string& name) {
  for (const RunKind* k : registry())
    if (k->name() == name) return k;
  return nullptr;
}

void register_run_kind(const RunKind* kind) {
  if (!kind || find_run_kind(kind->name()))
    throw std::invalid_argument("register_run_kind: a run kind named '" + (kind ? kind->name() : std::string()) +
                                "' is already registered");
  registry().push_back(kind);
}

}  // namespace curv
