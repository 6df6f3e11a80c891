#pragma once
/// \file onnx_fold.h
/// Constant folding for the ONNX importer: small tensors known at load time (initializers,
/// Constant nodes, shape arithmetic). Integer elements are affine in the free batch size N,
/// value = i + n * N, so `Shape(input) -> Gather -> Unsqueeze -> Concat` folds to a Reshape target
/// with the batch position still recognisable. Errors are std::invalid_argument (the importer adds
/// the file and node).
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace curv::onnx_fold {

struct Folded {
  bool is_int = false;
  Shape shape;
  std::vector<double> f;        // float elements (is_int == false)
  std::vector<std::int64_t> i;  // int elements: constant part
  std::vector<std::int64_t> n;  // int elements: coefficient of the batch size (same size as i)
  bool trainable = false;       // a float initializer: becomes a parameter when used as data

  std::int64_t size() const { return numel(shape); }
  bool symbolic() const;
  /// Concrete int values; throws if any element depends on the batch size.
  std::vector<std::int64_t> ints(const std::string& what) const;
  /// Values as double (ints must be concrete).
  std::vector<double> doubles(const std::string& what) const;
  static Folded of_ints(Shape shape, std::vector<std::int64_t> v);
  static Folded of_floats(Shape shape, std::vector<double> v);
};

/// Shape of a tensor whose dims at batch sizes 1 and 2 are s1, s2 (affine per dim).
Folded shape_of(const Shape& s1, const Shape& s2);

/// Elementwise Add Sub Mul Div Pow Max Min (numpy broadcasting; int Div truncates), and Equal Less
/// Greater And, which give booleans as ints 0 / 1 (operands are true where nonzero).
Folded binary(const std::string& op, const Folded& a, const Folded& b);
/// Float Neg Sqrt Exp Log Reciprocal Relu Abs Identity Not (ints: Neg, Abs, Identity, Not).
Folded unary(const std::string& op, const Folded& a);
Folded cast(const Folded& a, bool to_int);
Folded gather(const Folded& a, std::int64_t axis, const Folded& indices);
Folded unsqueeze(const Folded& a, std::vector<std::int64_t> axes);
Folded squeeze(const Folded& a, std::vector<std::int64_t> axes);
Folded concat(const std::vector<const Folded*>& parts, std::int64_t axis);
Folded slice(const Folded& a, const std::vector<std::int64_t>& starts, const std::vector<std::int64_t>& ends,
             std::vector<std::int64_t> axes, std::vector<std::int64_t> steps);
Folded reshape(const Folded& a, const std::vector<std::int64_t>& target, bool allowzero);
Folded transpose(const Folded& a, std::vector<std::int64_t> perm);
/// c ? x : y elementwise, the three broadcast together.
Folded where(const Folded& c, const Folded& x, const Folded& y);
Folded expand(const Folded& a, const std::vector<std::int64_t>& shape);
Folded tile(const Folded& a, const std::vector<std::int64_t>& repeats);
/// Trilu: keeps the last two dims' elements with j - i <= k (lower) or j - i >= k (upper).
Folded trilu(const Folded& a, std::int64_t k, bool upper);
Folded range(const Folded& start, const Folded& limit, const Folded& delta);
Folded constant_of_shape(const std::vector<std::int64_t>& shape, const Folded& value);

}  // namespace curv::onnx_fold
