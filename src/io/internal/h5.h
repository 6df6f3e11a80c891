#pragma once
/// \file h5.h
/// RAII owners for HDF5 C handles, and a scope that silences HDF5's automatic error printing
/// (errors are reported as exceptions naming the file instead).
#include <hdf5.h>

#include <utility>

namespace curv::h5 {

/// Owns one hid_t; `Close` is H5Fclose, H5Dclose, ...
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : m_id(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : m_id(std::exchange(o.m_id, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = std::exchange(o.m_id, H5I_INVALID_HID);
    }
    return *this;
  }
  ~Handle() { reset(); }
  void reset() {
    if (m_id >= 0) Close(m_id);
    m_id = H5I_INVALID_HID;
  }
  hid_t get() const { return m_id; }
  bool valid() const { return m_id >= 0; }
  explicit operator bool() const { return valid(); }

 private:
  hid_t m_id = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Space = Handle<H5Sclose>;
using Type = Handle<H5Tclose>;
using Attr = Handle<H5Aclose>;
using Plist = Handle<H5Pclose>;

/// Turns off HDF5's error stack printing for the lifetime of the object.
class QuietErrors {
 public:
  QuietErrors() {
    H5Eget_auto2(H5E_DEFAULT, &m_func, &m_data);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, m_func, m_data); }
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t m_func = nullptr;
  void* m_data = nullptr;
};

}  // namespace curv::h5
