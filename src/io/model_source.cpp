#include "src/io/model_source.h"

#include <algorithm>
#include <stdexcept>

#include "src/core/builder.h"
#include "src/io/checkpoint.h"

namespace curv {

namespace {
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
}  // namespace

Model load_model(const ModelSource& src, const Dataset* data) {
  if (!src.arch.empty()) {
    if (!data) throw std::invalid_argument("architecture '" + src.arch + "' needs data to know the input shape");
    std::int64_t classes = 0;
    if (data->classification()) {
      for (auto y : data->labels) classes = std::max(classes, y + 1);
      classes = std::max<std::int64_t>(classes, 2);
      // The output layer is sized by the largest label: bound it before allocating.
      constexpr std::int64_t kMaxClasses = 100000;
      if (classes > kMaxClasses)
        throw std::invalid_argument(data->source + ": labels go up to " + std::to_string(classes - 1) +
                                    ", more classes than an architecture is built for (" +
                                    std::to_string(kMaxClasses) + ")");
    } else {
      classes = numel(data->target_shape);
    }
    // A language model's vocabulary covers its input ids as well as its labels.
    if (data->x_integer && src.arch.rfind("gpt", 0) == 0)
      for (float id : data->x) classes = std::max(classes, static_cast<std::int64_t>(id) + 1);
    Model m = build_arch(src.arch, data->sample_shape, classes, src.seed, src.import.batch_norm_training,
                         data->x_name == "x" ? "input" : data->x_name);
    m.meta()["source"] = "arch:" + src.arch;
    return m;
  }
  if (src.path.empty()) throw std::invalid_argument("no model given (a file or an architecture)");
  if (ends_with(src.path, ".h5") || ends_with(src.path, ".hdf5")) return load_checkpoint(src.path, src.import);
  return import_onnx(src.path, src.import);
}

}  // namespace curv
