#include "src/core/dataset.h"

#include <algorithm>
#include <stdexcept>

namespace curv {

namespace {
// Rows idx[0..count) of `per` values each from `src`.
template <class V>
V rows(const V& src, std::int64_t per, const std::int64_t* idx, std::int64_t count) {
  V out(static_cast<std::size_t>(count * per));
  for (std::int64_t i = 0; i < count; ++i) std::copy_n(src.begin() + idx[i] * per, per, out.begin() + i * per);
  return out;
}
}  // namespace

Dataset Dataset::gather(const std::int64_t* idx, std::int64_t count) const {
  Dataset d;
  d.source = source;
  d.x_name = x_name;
  d.x_integer = x_integer;
  d.sample_shape = sample_shape;
  d.label_shape = label_shape;
  d.target_shape = target_shape;
  d.x = rows(x, numel(sample_shape), idx, count);
  for (const auto& a : more) d.more.push_back({a.name, a.sample_shape, rows(a.values, numel(a.sample_shape), idx, count), a.integer});
  if (!labels.empty()) d.labels = rows(labels, numel(label_shape), idx, count);
  if (!targets.empty()) d.targets = rows(targets, numel(target_shape), idx, count);
  return d;
}

Dataset Dataset::subset(std::int64_t first, std::int64_t count) const {
  if (first < 0 || count < 0 || first + count > size())
    throw std::invalid_argument(source + ": samples " + std::to_string(first) + ".." + std::to_string(first + count) +
                                " out of range (" + std::to_string(size()) + " samples)");
  std::vector<std::int64_t> idx(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) idx[i] = first + i;
  return gather(idx.data(), count);
}

}  // namespace curv
