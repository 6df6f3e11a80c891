#include "src/core/tensor.h"

#include <algorithm>
#include <cassert>
#include <sstream>
#include <stdexcept>

namespace curv {

std::int64_t numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

template <class T>
ConstView<T> ConstView<T>::slice(std::int64_t j) const {
  Shape inner(shape.begin() + 1, shape.end());
  return {data + j * numel(inner), inner};
}

template <class T>
View<T> View<T>::slice(std::int64_t j) const {
  Shape inner(shape.begin() + 1, shape.end());
  return {data + j * numel(inner), inner};
}

template <class T>
void View<T>::set_zero() const {
  std::fill(data, data + size(), T(0));
}

template <class T>
Tensor<T>::Tensor(Shape shape, const std::vector<T>& data) : m_shape(std::move(shape)), m_data(data.begin(), data.end()) {
  if (numel(m_shape) != static_cast<std::int64_t>(m_data.size()))
    throw std::invalid_argument("Tensor: shape " + shape_str(m_shape) + " does not match " +
                                std::to_string(m_data.size()) + " elements");
}

template <class T>
void Tensor<T>::resize(Shape shape) {
  m_shape = std::move(shape);
  m_data.resize(numel(m_shape));
}

template <class T>
void Tensor<T>::reshape(Shape shape) {
  if (numel(shape) != size())
    throw std::invalid_argument("Tensor::reshape: cannot view " + shape_str(m_shape) + " as " + shape_str(shape));
  m_shape = std::move(shape);
}

template <class T>
void Tensor<T>::set_zero() {
  std::fill(m_data.begin(), m_data.end(), T(0));
}

template struct ConstView<float>;
template struct ConstView<double>;
template struct View<float>;
template struct View<double>;
template class Tensor<float>;
template class Tensor<double>;
template class Tensor<std::int64_t>;

}  // namespace curv
