#include "curvature/spectra_reader.h"

#include <stdexcept>

namespace curv {

SpectraReader::SpectraReader(std::filesystem::path path)
    : m_path(std::move(path)), m_file(h5::Object::open(m_path.string())) {}

bool SpectraReader::exists(const std::string& object) const { return m_file.exists(object); }

StoredArray SpectraReader::read(const std::string& dataset) const {
  if (!exists(dataset)) throw std::runtime_error(m_path.string() + ": no dataset '" + dataset + "'");
  h5::Array<double> a = m_file.read_f64(dataset);
  return {std::move(a.shape), std::move(a.data)};
}

double SpectraReader::read_scalar(const std::string& dataset) const {
  const StoredArray a = read(dataset);
  if (a.data.size() != 1)
    throw std::runtime_error(m_path.string() + ": dataset '" + dataset + "' has " + std::to_string(a.data.size()) +
                             " elements, expected a scalar");
  return a.data[0];
}

bool SpectraReader::has_attribute(const std::string& object, const std::string& name) const {
  return exists(object) && m_file.open_object(object).has_attribute(name);
}

std::string SpectraReader::string_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) throw std::runtime_error(m_path.string() + ": no object '" + object + "'");
  return m_file.open_object(object).read_string_attribute(name);
}

double SpectraReader::number_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) throw std::runtime_error(m_path.string() + ": no object '" + object + "'");
  return m_file.open_object(object).read_number_attribute(name);
}

std::vector<std::string> SpectraReader::children(const std::string& group) const {
  if (!exists(group)) throw std::runtime_error(m_path.string() + ": no group '" + group + "'");
  return m_file.open_object(group).children();
}

}  // namespace curv
