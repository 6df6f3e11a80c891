#pragma once
/// \file model_source.h
/// Where a model comes from: an ONNX file, a curv checkpoint (.h5), or a built-in architecture
/// (src/core/builder.h) sized by the data. One loader for every command and for `curv study`.
///
///     ModelSource src{.path = "data/fmnist_cnn.onnx"};
///     Model m = load_model(src, &data);
#include <cstdint>
#include <string>

#include "src/core/dataset.h"
#include "src/core/model.h"
#include "src/io/onnx_import.h"

namespace curv {

struct ModelSource {
  /// An .onnx file or a curv checkpoint (.h5 / .hdf5).
  std::string path;
  /// A builder architecture ("mlp:64-64", "lenet", "resnet20", ...) instead of `path`.
  std::string arch;
  /// Seed of the architecture's initialization.
  std::uint64_t seed = 0;
  /// Which initializers are parameters, and BatchNorm's mode (onnx_import.h).
  ImportOptions import;
};

/// Loads the model. An architecture takes its input shape from `data` and its output size from
/// the data's classes (max label + 1, at least 2) or target size. Errors: std::invalid_argument
/// for a missing source or an architecture without data, and those of import_onnx /
/// load_checkpoint (naming the file).
Model load_model(const ModelSource& source, const Dataset* data);

}  // namespace curv
