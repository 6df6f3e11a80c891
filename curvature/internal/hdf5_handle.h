#pragma once
/// \file hdf5_handle.h
/// RAII for HDF5 ids and the error-message plumbing of the store (private to curvature/).
#include <hdf5.h>

#include <string>
#include <utility>

namespace curv::internal {

/// Owns one hid_t and closes it with the matching H5?close on destruction. Move-only.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);

  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : m_id(id), m_close(close) {}
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  H5Handle(H5Handle&& o) noexcept : m_id(std::exchange(o.m_id, H5I_INVALID_HID)), m_close(o.m_close) {}
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = std::exchange(o.m_id, H5I_INVALID_HID);
      m_close = o.m_close;
    }
    return *this;
  }
  ~H5Handle() { reset(); }

  hid_t get() const { return m_id; }
  bool valid() const { return m_id >= 0; }
  /// Closes now and reports HDF5's status (file close flushes: check it before renaming).
  herr_t close() {
    herr_t status = 0;
    if (m_id >= 0 && m_close) status = m_close(m_id);
    m_id = H5I_INVALID_HID;
    return status;
  }
  void reset() { (void)close(); }

 private:
  hid_t m_id = H5I_INVALID_HID;
  Closer m_close = nullptr;
};

inline H5Handle file_handle(hid_t id) { return {id, H5Fclose}; }
inline H5Handle group_handle(hid_t id) { return {id, H5Gclose}; }
inline H5Handle dataset_handle(hid_t id) { return {id, H5Dclose}; }
inline H5Handle dataspace_handle(hid_t id) { return {id, H5Sclose}; }
inline H5Handle attribute_handle(hid_t id) { return {id, H5Aclose}; }
inline H5Handle type_handle(hid_t id) { return {id, H5Tclose}; }
inline H5Handle plist_handle(hid_t id) { return {id, H5Pclose}; }

/// Turns off HDF5's automatic printing of error stacks to stderr (for this thread's default
/// stack); our exceptions carry the message instead.
void silence_hdf5_errors();

/// The most specific message on HDF5's current error stack (e.g. "unable to open file: ...
/// No such file or directory"), then clears the stack. "unknown HDF5 error" if empty.
std::string hdf5_error_message();

}  // namespace curv::internal

namespace curv::internal {

/// Reads a string attribute (variable- or fixed-length) of `obj` into `out`. Returns false if the
/// attribute is missing or not a string.
bool read_string_attribute(hid_t obj, const char* name, std::string& out);

}  // namespace curv::internal
