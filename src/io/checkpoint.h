#pragma once
/// \file checkpoint.h
/// curv HDF5 checkpoints (layout in docs/hdf5-schema.md, "checkpoint" section):
///
///   /                      attrs: format = "curv-checkpoint", schema_version, curv_version,
///                                 created_utc
///   /graph                 scalar fixed-length string dataset, the JSON text of
///                                {"input": {name, shape}, "output": value name,
///                                 "values": [{name, kind}], "nodes": [{name, type, attrs, inputs}]}
///                          in model order (parameters and constants in their index order)
///   /params/<name>         float64 dataset per trainable parameter (attr `name`: the exact name)
///   /constants/<name>      float64 dataset per constant (BatchNorm running statistics, ...)
///   /meta                  one string attribute per Model::meta() entry (source, producer, ...)
///   /train                 (training runs) attrs epoch, step, optimizer, optimizer_steps, config;
///                          /train/optimizer/<state> float64 [P] in flat parameter order
///   /history               (training runs) per-epoch series, and /history/curvature/ series
///
/// Names are escaped for HDF5 ('/' -> "%2F", '%' -> "%25"); the exact name is the `name`
/// attribute. Files are written atomically (src/io/atomic_file.h): a temporary beside <path>,
/// renamed when complete. Readers go through src/io/hdf5.h and check every size before reading.
#include <optional>
#include <string>
#include <vector>

#include "src/core/model.h"
#include "src/io/onnx_import.h"
#include "src/io/train_state.h"

namespace curv {

namespace h5 {
class Object;
}

/// Writes the model. Throws std::runtime_error naming the file (or the node whose op cannot be
/// described); nothing is left at `path` on failure.
/// With `train`, also writes the training state (`/train`) and history (`/history`).
/// Refuses (std::runtime_error) to replace the file the model was loaded from (model_files), a
/// read-only file, or a file in a missing folder.
void save_checkpoint(const Model& model, const std::string& path, const TrainState* train = nullptr);

/// Writes the checkpoint's groups and root attributes into `file`, a new empty HDF5 file, for
/// writers that add groups of their own (quantized models). Messages name file.file().
void write_checkpoint(const Model& model, const h5::Object& file, const TrainState* train = nullptr);

/// The file `model` was read from in this process (meta "checkpoint" for a curv checkpoint, else
/// "source"), as the inputs an atomic write must not replace; empty for a built model.
std::vector<std::string> model_files(const Model& model);

/// The training state and history stored by save_checkpoint, or nullopt when the checkpoint has
/// none. Throws std::runtime_error("<file>: <what>") when the file is missing, not a curv
/// checkpoint, or holds a corrupt state.
std::optional<TrainState> load_train_state(const std::string& path);

/// Reads a checkpoint written by save_checkpoint. Throws std::runtime_error("<file>: <what>"),
/// also for NaN in any tensor and +-Inf in a trainable parameter (naming the tensor).
/// `opts` as for import_onnx: params_regex / freeze_regex turn saved parameters into constants
/// (saved constants stay constants); batch_norm_training switches BatchNorm to batch statistics
/// (otherwise BatchNorm keeps the saved mode).
Model load_checkpoint(const std::string& path, const ImportOptions& opts = {});

}  // namespace curv
