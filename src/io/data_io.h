#pragma once
/// \file data_io.h
/// Loading sample sets from files and built-in names into a Dataset.
///
/// Specs:
///   fashion-mnist:train | fashion-mnist:test   /usr/share/datasets/fashion-mnist (IDX, gzip)
///   PATH-images-idx3-ubyte[.gz] | PATH-idx3-ubyte[.gz]   IDX images, labels found beside them
///                                                      ("images" -> "labels", "idx3" -> "idx1")
///   PATH.npz     arrays `x` and `y` (dtypes <f4 <f8 |u1 |i1 <i4 <i8 <u4 |b1, C order)
///   PATH.h5      datasets `/x` and `/y`
/// Models with several inputs: the arrays (npz keys, or datasets in the h5 root) are named after
/// the model's inputs, e.g. `input_ids`, `attention_mask` and `y`: without an `x`, every array
/// other than `y` is an input (in name order), bound to the model by name (Objective); with an `x`,
/// `x` is the one input and other arrays are ignored.
/// Integer inputs other than uint8 (token ids, integer masks) are kept exactly (|v| <= 2^24, see
/// dataset.h); integer `y` of shape [N, T, ...] gives per-position labels (language models).
///   random:CxHxW:CLASSES[:N]   N (default 256) seeded standard-normal samples, label n mod CLASSES
/// uint8 inputs are images and scale to [0, 1]. Integer `y` gives class labels (cross-entropy), float `y` gives
/// regression targets (mean squared error). IDX images get the sample shape [1, rows, cols].
/// Errors: std::runtime_error("<file>: <what is wrong>") for a missing or corrupt file, a missing
/// array, an unsupported dtype, mismatched x/y counts, NaN or Inf in the data, sizes beyond 2^32
/// values or beyond what the file holds (checked before allocating). Label range and the
/// fit with a model's input are checked by the Objective.
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/dataset.h"

namespace curv {

struct DataOptions {
  /// Number of samples to keep after `offset` (0: all that remain).
  std::int64_t samples = 0;
  /// Index of the first sample to keep.
  std::int64_t offset = 0;
  /// Per-channel normalization x = (x - mean[c]) / std[c], channel c = first sample dimension;
  /// one value applies to every channel; empty: none.
  std::vector<double> mean;
  std::vector<double> std;
  /// Seed of `random:` datasets.
  std::uint64_t seed = 0x5eed;
  /// Relabel integer labels y <- y mod classes (e.g. Fashion-MNIST's 10 classes folded into 2 or
  /// 5, as in Sagun et al.'s class-count experiments); 0 keeps them. Float targets are refused.
  std::int64_t classes = 0;
};

/// Loads the dataset named by `spec` (see the file comment): load_all_samples, then
/// select_samples.
Dataset load_dataset(const std::string& spec, const DataOptions& opts = {});

/// Every sample of `spec`, checked (only opts.seed is used, by `random:` datasets), for callers
/// that take several selections of one dataset (curv study).
Dataset load_all_samples(const std::string& spec, const DataOptions& opts = {});
/// The samples [offset, offset + samples) of `all`, normalized and relabelled as `opts` says:
/// exactly what load_dataset returns for the same spec and options.
Dataset select_samples(const Dataset& all, const DataOptions& opts);

/// The files `spec` reads (IDX: images and labels; fashion-mnist: its files; random: none), so a
/// command can refuse an output that would replace one of them (check_output_paths).
std::vector<std::string> dataset_files(const std::string& spec);

/// Parses "MEAN[,MEAN..]/STD[,STD..]" (e.g. "0.2860/0.3530") into opts.mean / opts.std.
/// Throws std::invalid_argument on a malformed string or a non-positive std.
void parse_normalize(const std::string& text, DataOptions& opts);

}  // namespace curv
