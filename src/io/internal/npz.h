#pragma once
/// \file npz.h
/// Reader for NumPy `.npz` archives (a zip of `.npy` files; stored or deflated) and `.npy`
/// buffers. Supported dtypes: <f4 <f8 |u1 |i1 <i4 <i8 |b1 and unicode strings <U*; C order only.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv {

/// One array of an `.npz`: its dtype, shape and values (numbers widened to double and int64).
struct NpyArray {
  std::string dtype;                 // numpy descr, e.g. "<f4", "|u1", "<U12"
  Shape shape;                       // empty for a 0-d array
  std::vector<double> data;          // numeric arrays, as double
  std::vector<std::int64_t> ints;    // integer and bool arrays, exact
  std::vector<std::string> strings;  // unicode arrays
  bool is_float() const { return dtype.size() > 1 && dtype[1] == 'f'; }
  bool is_int() const { return dtype.size() > 1 && (dtype[1] == 'i' || dtype[1] == 'u' || dtype[1] == 'b'); }
  bool is_string() const { return dtype.size() > 1 && dtype[1] == 'U'; }
  std::int64_t size() const { return numel(shape); }
};

/// Parses one `.npy` buffer; `what` names it in error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& what);

/// All arrays of an `.npz` file, read eagerly. Throws std::runtime_error("<file>: <problem>").
class NpzFile {
 public:
  explicit NpzFile(const std::string& path);
  bool has(const std::string& name) const { return m_arrays.count(name) != 0; }
  /// REQUIRES: has(name); otherwise throws std::runtime_error naming the file and the array.
  const NpyArray& get(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;
  std::map<std::string, NpyArray> m_arrays;
};

}  // namespace curv
