#pragma once
/// \file tensor.h
/// Dense row-major tensors (NCHW for images) and non-owning views over them.
///
/// Ops work on views so that one direction of a k-direction tangent block ([k, ...shape]) is a
/// free slice. Element type T is float (default model precision) or double (tests, `--precision
/// float64`).
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "src/core/memory.h"

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

/// Allocator that leaves new elements uninitialized: buffers that kernels overwrite are not
/// zero-filled first (that memset was 5-10% of a Hessian-vector product). It also counts the bytes
/// it holds for the engine's memory accounting, and takes them from the engine's allocator
/// (memory.h: oneTBB's scalable allocator by default).
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    T* p = static_cast<T*>(internal::engine_alloc(n * sizeof(T)));
    internal::track_alloc(n * sizeof(T));
    return p;
  }
  void deallocate(T* p, std::size_t n) noexcept {
    internal::track_free(n * sizeof(T));
    internal::engine_free(p, n * sizeof(T));
  }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using Buffer = std::vector<T, UninitAllocator<T>>;

/// Owning tensor. Empty (no shape) means "absent" (e.g. a zero tangent that was never formed).
template <class T>
class Tensor {
 public:
  Tensor() = default;
  /// Zero-filled tensor.
  explicit Tensor(Shape shape) : m_shape(std::move(shape)), m_data(numel(m_shape), T(0)) {}
  Tensor(Shape shape, const std::vector<T>& data);

  const Shape& shape() const { return m_shape; }
  std::int64_t size() const { return static_cast<std::int64_t>(m_data.size()); }
  bool empty() const { return m_shape.empty() && m_data.empty(); }
  int rank() const { return static_cast<int>(m_shape.size()); }
  std::int64_t dim(int i) const { return m_shape[i < 0 ? m_shape.size() + i : i]; }
  T* data() { return m_data.data(); }
  const T* data() const { return m_data.data(); }
  Buffer<T>& vec() { return m_data; }
  const Buffer<T>& vec() const { return m_data; }

  /// Reshape to `shape`, reallocating only when the element count grows. Contents are undefined
  /// (not zeroed): callers overwrite them.
  void resize(Shape shape);
  void reshape(Shape shape);  // REQUIRES: same element count
  void set_zero();
  void clear() { m_shape.clear(); m_data.clear(); m_data.shrink_to_fit(); }
  /// Frees the elements and keeps the shape: size() 0, data() null, not empty() (a pass's value that
  /// no kernel reads any more, whose shape views still carry).
  void release_data() { m_data.clear(); m_data.shrink_to_fit(); }

  View<T> view() { return {m_data.data(), m_shape}; }
  ConstView<T> view() const { return {m_data.data(), m_shape}; }
  ConstView<T> cview() const { return {m_data.data(), m_shape}; }

 private:
  Shape m_shape;
  Buffer<T> m_data;
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
