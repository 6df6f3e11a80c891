#pragma once
/// \file tensor.h
/// Dense row-major tensors (NCHW for images) and non-owning views over them.
///
/// Ops work on views so that one direction of a k-direction tangent block ([k, ...shape]) is a
/// free slice. Element type T is float (default model precision) or double (tests, `--precision
/// float64`).
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace curv {

using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3, 4]"

template <class T>
struct ConstView {
  const T* data = nullptr;
  Shape shape;
  std::int64_t size() const { return numel(shape); }
  std::int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int rank() const { return static_cast<int>(shape.size()); }
  /// Slice j of the leading dimension: a view of shape shape[1:].
  ConstView<T> slice(std::int64_t j) const;
};

template <class T>
struct View {
  T* data = nullptr;
  Shape shape;
  std::int64_t size() const { return numel(shape); }
  std::int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int rank() const { return static_cast<int>(shape.size()); }
  View<T> slice(std::int64_t j) const;
  operator ConstView<T>() const { return {data, shape}; }
  void set_zero() const;
};

/// Owning tensor. Empty (no shape) means "absent" (e.g. a zero tangent that was never formed).
template <class T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape) : m_shape(std::move(shape)), m_data(numel(m_shape), T(0)) {}
  Tensor(Shape shape, std::vector<T> data);

  const Shape& shape() const { return m_shape; }
  std::int64_t size() const { return static_cast<std::int64_t>(m_data.size()); }
  bool empty() const { return m_shape.empty() && m_data.empty(); }
  int rank() const { return static_cast<int>(m_shape.size()); }
  std::int64_t dim(int i) const { return m_shape[i < 0 ? m_shape.size() + i : i]; }
  T* data() { return m_data.data(); }
  const T* data() const { return m_data.data(); }
  std::vector<T>& vec() { return m_data; }
  const std::vector<T>& vec() const { return m_data; }

  /// Reshape to `shape`, reallocating only when the element count changes. Contents undefined
  /// unless the count is unchanged.
  void resize(Shape shape);
  void reshape(Shape shape);  // REQUIRES: same element count
  void set_zero();
  void clear() { m_shape.clear(); m_data.clear(); m_data.shrink_to_fit(); }

  View<T> view() { return {m_data.data(), m_shape}; }
  ConstView<T> view() const { return {m_data.data(), m_shape}; }
  ConstView<T> cview() const { return {m_data.data(), m_shape}; }

 private:
  Shape m_shape;
  std::vector<T> m_data;
};

/// Shape with a leading dimension k prepended.
inline Shape with_lead(std::int64_t k, const Shape& s) {
  Shape r;
  r.reserve(s.size() + 1);
  r.push_back(k);
  r.insert(r.end(), s.begin(), s.end());
  return r;
}

}  // namespace curv
