#pragma once
/// \file spectra_reader.h
/// Reads back what `SpectraStore` wrote (tests, `curv study --resume`, comparisons).
///
/// Paths are absolute HDF5 paths ("/spectrum/eigen/values"). Numeric datasets of any standard
/// integer or IEEE float type are converted to double and returned flat in C (row-major) order
/// with their shape. Reads go through the checked readers of src/io/hdf5.h, so a corrupt file
/// gives an error, not a crash. Errors: std::runtime_error naming the file and the object.
/// Not thread-safe.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "src/io/hdf5.h"

namespace curv {

/// A dataset read back: shape (empty for a scalar) and values in C order.
struct StoredArray {
  std::vector<std::uint64_t> shape;
  std::vector<double> data;
};

class SpectraReader {
 public:
  /// Opens read-only; std::runtime_error("<path>: no such file" / "not an HDF5 file" / "cannot
  /// open HDF5 file (...)") on failure.
  explicit SpectraReader(std::filesystem::path path);
  SpectraReader(const SpectraReader&) = delete;
  SpectraReader& operator=(const SpectraReader&) = delete;

  /// True if every component of `object` exists.
  bool exists(const std::string& object) const;
  StoredArray read(const std::string& dataset) const;
  /// A scalar (or single-element) dataset.
  double read_scalar(const std::string& dataset) const;
  bool has_attribute(const std::string& object, const std::string& name) const;
  std::string string_attribute(const std::string& object, const std::string& name) const;
  /// A numeric attribute (int64 or float64), as double.
  double number_attribute(const std::string& object, const std::string& name) const;
  /// Names of the links in a group, in creation order when the group tracks it (curv's do).
  std::vector<std::string> children(const std::string& group) const;

  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
  h5::Object m_file;
};

}  // namespace curv
