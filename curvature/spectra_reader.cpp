#include "curvature/spectra_reader.h"

#include <stdexcept>

#include "curvature/internal/hdf5_handle.h"

namespace curv {

using internal::H5Handle;

static_assert(sizeof(hid_t) == sizeof(std::int64_t), "hid_t is stored as int64");

SpectraReader::SpectraReader(std::filesystem::path path) : m_path(std::move(path)) {
  internal::silence_hdf5_errors();
  m_file = H5Fopen(m_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (m_file < 0)
    throw std::runtime_error(m_path.string() + ": cannot open HDF5 file: " + internal::hdf5_error_message());
}

SpectraReader::~SpectraReader() {
  if (m_file >= 0) H5Fclose(m_file);
}

bool SpectraReader::exists(const std::string& object) const {
  if (object.empty() || object == "/") return true;
  std::string prefix;
  std::size_t pos = object[0] == '/' ? 1 : 0;
  while (pos <= object.size()) {
    const std::size_t next = object.find('/', pos);
    const std::string part = object.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!part.empty()) {
      prefix += "/" + part;
      if (H5Lexists(m_file, prefix.c_str(), H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

StoredArray SpectraReader::read(const std::string& dataset) const {
  if (!exists(dataset)) throw std::runtime_error(m_path.string() + ": no dataset '" + dataset + "'");
  H5Handle d = internal::dataset_handle(H5Dopen2(m_file, dataset.c_str(), H5P_DEFAULT));
  if (!d.valid())
    throw std::runtime_error(m_path.string() + ": cannot open dataset '" + dataset + "': " +
                             internal::hdf5_error_message());
  H5Handle space = internal::dataspace_handle(H5Dget_space(d.get()));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw std::runtime_error(m_path.string() + ": cannot read the shape of '" + dataset + "'");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  StoredArray out;
  std::size_t count = 1;
  for (hsize_t n : dims) {
    out.shape.push_back(n);
    count *= n;
  }
  out.data.resize(count);
  if (count > 0 && H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()) < 0)
    throw std::runtime_error(m_path.string() + ": cannot read dataset '" + dataset + "' as float64: " +
                             internal::hdf5_error_message());
  return out;
}

double SpectraReader::read_scalar(const std::string& dataset) const {
  const StoredArray a = read(dataset);
  if (a.data.size() != 1)
    throw std::runtime_error(m_path.string() + ": dataset '" + dataset + "' has " + std::to_string(a.data.size()) +
                             " elements, expected a scalar");
  return a.data[0];
}

std::string SpectraReader::string_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) throw std::runtime_error(m_path.string() + ": no object '" + object + "'");
  H5Handle o = {H5Oopen(m_file, object.c_str(), H5P_DEFAULT), H5Oclose};
  std::string out;
  if (!o.valid() || !internal::read_string_attribute(o.get(), name.c_str(), out))
    throw std::runtime_error(m_path.string() + ": '" + object + "' has no string attribute '" + name + "'");
  return out;
}

double SpectraReader::number_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) throw std::runtime_error(m_path.string() + ": no object '" + object + "'");
  H5Handle o = {H5Oopen(m_file, object.c_str(), H5P_DEFAULT), H5Oclose};
  double v = 0.0;
  if (!o.valid() || H5Aexists(o.get(), name.c_str()) <= 0)
    throw std::runtime_error(m_path.string() + ": '" + object + "' has no attribute '" + name + "'");
  H5Handle a = internal::attribute_handle(H5Aopen(o.get(), name.c_str(), H5P_DEFAULT));
  H5Handle type = internal::type_handle(H5Aget_type(a.get()));
  const H5T_class_t cls = H5Tget_class(type.get());
  if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0)
    throw std::runtime_error(m_path.string() + ": attribute '" + name + "' of '" + object + "' is not a number");
  return v;
}

namespace {
herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> SpectraReader::children(const std::string& group) const {
  if (!exists(group)) throw std::runtime_error(m_path.string() + ": no group '" + group + "'");
  H5Handle g = internal::group_handle(H5Gopen2(m_file, group.c_str(), H5P_DEFAULT));
  if (!g.valid()) throw std::runtime_error(m_path.string() + ": '" + group + "' is not a group");
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Literate(g.get(), H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, collect_name, &names) < 0) {
    H5Eclear2(H5E_DEFAULT);  // creation order not tracked: name order
    names.clear();
    idx = 0;
    if (H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &names) < 0)
      throw std::runtime_error(m_path.string() + ": cannot list group '" + group + "'");
  }
  return names;
}

}  // namespace curv
