#include "curvature/internal/hdf5_handle.h"

namespace curv::internal {

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {
herr_t take_first(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}
}  // namespace

std::string hdf5_error_message() {
  std::string msg;
  // Upward: the first entry is the innermost (most specific) failure.
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string("unknown HDF5 error") : msg;
}

}  // namespace curv::internal

namespace curv::internal {

bool read_string_attribute(hid_t obj, const char* name, std::string& out) {
  if (H5Aexists(obj, name) <= 0) return false;
  H5Handle attr = attribute_handle(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr.valid()) return false;
  H5Handle type = type_handle(H5Aget_type(attr.get()));
  if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING) return false;
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Handle mem = type_handle(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* buf = nullptr;
    if (H5Aread(attr.get(), mem.get(), &buf) < 0) return false;
    out = buf ? buf : "";
    H5free_memory(buf);
    return true;
  }
  const size_t size = H5Tget_size(type.get());
  H5Handle mem = type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_size(mem.get(), size + 1);  // room for a terminator
  H5Tset_strpad(mem.get(), H5T_STR_NULLTERM);
  std::string buf(size + 1, '\0');
  if (H5Aread(attr.get(), mem.get(), buf.data()) < 0) return false;
  out = buf.c_str();
  return true;
}

}  // namespace curv::internal
