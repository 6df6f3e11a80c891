#include "src/io/hdf5.h"

#include <hdf5.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <map>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "src/io/internal/hdf5_probe.h"

namespace curv::h5 {

static_assert(std::is_same_v<hid_t, Handle::Id>, "Handle::Id must be hid_t");

namespace {

// Every entry point turns HDF5's automatic error printing off: failures become exceptions.
void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

herr_t innermost(unsigned n, const H5E_error2_t* err, void* data) {
  if (n == 0 && err && err->desc) *static_cast<std::string*>(data) = err->desc;
  return 0;
}

// " (<HDF5's innermost message>)", or nothing when the stack is empty.
std::string why() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string() : " (" + msg + ")";
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// The standard integer and IEEE float types are the only ones converted: a crafted type (odd
// precision, offset, exponent layout) never reaches HDF5's conversion routines.
bool standard_numeric(hid_t type, ElementType& out) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  if (cls == H5T_INTEGER) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return false;
    if (H5Tget_precision(type) != 8 * size || H5Tget_offset(type) != 0) return false;
    const H5T_order_t order = H5Tget_order(type);
    if (size > 1 && order != H5T_ORDER_LE && order != H5T_ORDER_BE) return false;
    const H5T_sign_t sign = H5Tget_sign(type);
    if (sign != H5T_SGN_NONE && sign != H5T_SGN_2) return false;
    out = {true, sign == H5T_SGN_2, size};
    return true;
  }
  if (cls == H5T_FLOAT) {
    for (hid_t t : {H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE})
      if (H5Tequal(type, t) > 0) {
        out = {false, true, size};
        return true;
      }
  }
  return false;
}

const char* class_name(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    case H5T_REFERENCE: return "reference";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_TIME: return "time";
    default: return "unknown";
  }
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s.append(i ? ", " : "").append(std::to_string(shape[i]));
  return s + "]";
}

// Shape of a dataspace with every bound checked: simple or scalar, rank <= H5S_MAX_RANK, element
// count overflow-checked. Returns false with `problem` set otherwise.
bool checked_shape(hid_t space, std::uint64_t max_elements, std::vector<std::uint64_t>& shape, std::uint64_t& count,
                   std::string& problem) {
  shape.clear();
  count = 1;
  const H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_SCALAR) return true;
  if (cls != H5S_SIMPLE) {
    problem = cls == H5S_NULL ? "has an empty (null) dataspace" : "has an unreadable dataspace";
    return false;
  }
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK) {
    problem = "has an invalid rank";
    return false;
  }
  hsize_t dims[H5S_MAX_RANK] = {};
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims, nullptr) != rank) {
    problem = "has unreadable dimensions";
    return false;
  }
  // `bound` multiplies the nonzero dims only: an empty dataset with absurd other dims ([0, 2^40,
  // 2^40]) has no elements, but the size of one of its samples overflows.
  bool overflow = false, empty = false;
  std::uint64_t bound = 1;
  for (int i = 0; i < rank; ++i) {
    shape.push_back(dims[i]);
    empty = empty || dims[i] == 0;
    if (dims[i] != 0) overflow = overflow || __builtin_mul_overflow(bound, static_cast<std::uint64_t>(dims[i]), &bound);
  }
  count = empty ? 0 : bound;
  if (overflow || bound > max_elements) {
    const std::string limit = overflow ? "2^64" : std::to_string(max_elements);
    if (empty)
      problem = "has dims " + shape_text(shape) + ", too large (its nonzero dims make more than " + limit + " elements)";
    else if (overflow)
      problem = "has dims " + shape_text(shape) + ", more than 2^64 elements";
    else
      problem = "has " + std::to_string(count) + " elements, more than " + limit;
    count = 0;
    return false;
  }
  return true;
}

std::uint64_t product(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}


// Names collected by a bounded iteration: stops (returns 1) once `max` names are exceeded.
struct NameList {
  std::vector<std::string> names;
  std::size_t max = 0;
  bool overflow = false;
  herr_t add(const char* name) {
    if (names.size() >= max) {
      overflow = true;
      return 1;
    }
    const std::size_t n = strnlen(name, kMaxNameBytes + 1);
    if (n > kMaxNameBytes) {
      overflow = true;
      return 1;
    }
    names.emplace_back(name, n);
    return 0;
  }
};

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* data) {
  return static_cast<NameList*>(data)->add(name);
}
herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) {
  return static_cast<NameList*>(data)->add(name);
}

// A string memory type matching file type `ftype` (HDF5 does not convert between character sets).
Handle string_mem_type(hid_t ftype, std::size_t size) {
  Handle mem(H5Tcopy(H5T_C_S1));
  if (!mem.valid()) return mem;
  if (H5Tset_size(mem.get(), size) < 0 || H5Tset_cset(mem.get(), H5Tget_cset(ftype)) < 0) return Handle();
  if (size != H5T_VARIABLE && H5Tset_strpad(mem.get(), H5T_STR_NULLPAD) < 0) return Handle();
  return mem;
}

}  // namespace

// ---- Handle --------------------------------------------------------------------------------------

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    (void)close();
    m_id = o.m_id;
    o.m_id = -1;
  }
  return *this;
}

bool Handle::close() {
  if (m_id < 0) return true;
  const hid_t id = m_id;
  m_id = -1;
  herr_t status = 0;
  switch (H5Iget_type(id)) {
    case H5I_FILE: status = H5Fclose(id); break;
    case H5I_GROUP: status = H5Gclose(id); break;
    case H5I_DATASET: status = H5Dclose(id); break;
    case H5I_ATTR: status = H5Aclose(id); break;
    case H5I_DATASPACE: status = H5Sclose(id); break;
    case H5I_DATATYPE: status = H5Tclose(id); break;
    case H5I_GENPROP_LST: status = H5Pclose(id); break;
    default: break;  // already closed (e.g. with its file)
  }
  return status >= 0;
}

std::string error_message() {
  const std::string w = why();
  return w.empty() ? "unknown HDF5 error" : w.substr(2, w.size() - 3);
}

// ---- Object: files and structure -----------------------------------------------------------------

Object::Object(Handle h, std::string file, std::string path, std::shared_ptr<Recording> recording)
    : m_handle(std::move(h)), m_file(std::move(file)), m_path(std::move(path)), m_recording(std::move(recording)) {}

namespace {

// `s` with control characters as '?': names from files go into one-line errors (a newline would
// split them).
std::string printable(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 32) c = '?';
  return s;
}

}  // namespace

void Object::fail(const std::string& object, const std::string& problem) const {
  // Object names come from the file.
  throw std::runtime_error(printable(m_file + ": " + object + ": " + problem));
}

std::string Object::child_path(const std::string& name) const {
  if (!name.empty() && name[0] == '/') return name;
  return m_path == "/" ? "/" + name : m_path + "/" + name;
}

namespace {

// File access for every file curv opens or creates. Strong close: closing the file closes every
// object of it, so close() really flushes it.
Handle strong_close_access(const std::string& file) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl.valid() || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0)
    throw std::runtime_error(file + ": cannot set up HDF5 file access" + why());
  return fapl;
}

}  // namespace

// ---- recordings ----------------------------------------------------------------------------------

namespace {

static_assert(std::endian::native == std::endian::little, "recordings are stored little-endian, as written");

constexpr char kRecordingMagic[8] = {'C', 'U', 'R', 'V', 'R', 'E', 'C', '1'};

// One recorded write: the op, the path of the object it applies to (relative to the recording's
// root, "" for the root) and the link or attribute name, then the op's own fields.
enum class Op : std::uint8_t { End = 0, Group, AttrString, AttrInt, AttrFloat, Dataset, Strings, String };

// Element types of recorded datasets, in the order write_dataset's overloads take them.
enum class RecordType : std::uint8_t { F64 = 0, I64, I32, I8 };

std::uint8_t record_dtype(hid_t file_type) {
  if (H5Tequal(file_type, H5T_IEEE_F64LE) > 0) return static_cast<std::uint8_t>(RecordType::F64);
  if (H5Tequal(file_type, H5T_STD_I64LE) > 0) return static_cast<std::uint8_t>(RecordType::I64);
  if (H5Tequal(file_type, H5T_STD_I32LE) > 0) return static_cast<std::uint8_t>(RecordType::I32);
  return static_cast<std::uint8_t>(RecordType::I8);
}

}  // namespace

struct Object::Recording {
  std::vector<unsigned char> bytes;

  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
  void u8(std::uint8_t v) { bytes.push_back(v); }
  void u64(std::uint64_t v) { raw(&v, sizeof v); }
  void str(std::string_view v) {
    u64(v.size());
    raw(v.data(), v.size());
  }
  void op(Op o, const std::string& object, const std::string& name) {
    u8(static_cast<std::uint8_t>(o));
    str(object);
    str(name);
  }
};

Object Object::recording(const std::string& name) {
  auto r = std::make_shared<Recording>();
  r->raw(kRecordingMagic, sizeof kRecordingMagic);
  return Object(Handle(), name, "", std::move(r));
}

std::vector<unsigned char> Object::take_recording() const {
  if (!m_recording || !m_path.empty())
    throw std::logic_error(m_file + ": take_recording needs the root of a recording");
  m_recording->u8(static_cast<std::uint8_t>(Op::End));
  std::vector<unsigned char> out = std::move(m_recording->bytes);
  m_recording->bytes.clear();
  m_recording->raw(kRecordingMagic, sizeof kRecordingMagic);
  return out;
}

void Object::record_only(const char* what) const {
  throw std::logic_error(m_file + ": " + (m_path.empty() ? "/" : m_path) + ": a recording only records writes, not " +
                         what);
}

namespace {

// Reads a recording, every field bounds-checked against what is left.
class RecordReader {
 public:
  RecordReader(std::span<const unsigned char> b, const std::string& source) : m_b(b), m_source(source) {}

  [[noreturn]] void bad(const std::string& what) const {
    throw std::runtime_error(m_source + ": bad recording: " + what + " (at byte " + std::to_string(m_pos) + ")");
  }
  std::size_t left() const { return m_b.size() - m_pos; }
  void raw(void* out, std::size_t n) {
    if (n > left()) bad("truncated");
    if (n) std::memcpy(out, m_b.data() + m_pos, n);
    m_pos += n;
  }
  std::uint8_t u8() {
    std::uint8_t v;
    raw(&v, 1);
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v;
    raw(&v, sizeof v);
    return v;
  }
  std::string str(std::size_t max_bytes) {
    const std::uint64_t n = u64();
    if (n > left()) bad("truncated string");
    if (n > max_bytes) bad("string of " + std::to_string(n) + " bytes, more than " + std::to_string(max_bytes));
    std::string s(reinterpret_cast<const char*>(m_b.data() + m_pos), static_cast<std::size_t>(n));
    m_pos += static_cast<std::size_t>(n);
    return s;
  }
  // A link name: non-empty, relative, no empty, "." or ".." component, no control characters.
  std::string name() {
    std::string n = str(kMaxNameBytes);
    bool ok = !n.empty() && n.front() != '/' && n.back() != '/';
    std::size_t start = 0;
    while (ok && start <= n.size()) {
      const std::size_t end = std::min(n.find('/', start), n.size());
      const std::string_view part(n.data() + start, end - start);
      ok = !part.empty() && part != "." && part != "..";
      start = end + 1;
    }
    for (unsigned char c : n) ok = ok && c >= 32;
    if (!ok) bad("invalid name '" + printable(n) + "'");
    return n;
  }
  // An attribute name: non-empty, no control characters.
  std::string attribute_name() {
    std::string n = str(kMaxNameBytes);
    bool ok = !n.empty();
    for (unsigned char c : n) ok = ok && c >= 32;
    if (!ok) bad("invalid attribute name '" + printable(n) + "'");
    return n;
  }
 private:
  std::span<const unsigned char> m_b;
  const std::string& m_source;
  std::size_t m_pos = 0;
};

template <class T>
std::vector<T> record_values(RecordReader& r, std::uint64_t count) {
  if (count > r.left() / sizeof(T)) r.bad("dataset data truncated");
  std::vector<T> v(static_cast<std::size_t>(count));
  r.raw(v.data(), v.size() * sizeof(T));
  return v;
}

}  // namespace

void Object::replay(std::span<const unsigned char> bytes, const Object& destination, const std::string& source) {
  RecordReader r(bytes, source);
  char magic[sizeof kRecordingMagic];
  if (bytes.size() < sizeof magic) r.bad("too short");
  r.raw(magic, sizeof magic);
  if (std::memcmp(magic, kRecordingMagic, sizeof magic) != 0) r.bad("not a curv recording");
  std::map<std::string, Object> groups;  // the groups created so far, by recorded path
  auto at = [&](const std::string& path) -> const Object& {
    if (path.empty()) return destination;
    const auto it = groups.find(path);
    if (it == groups.end()) r.bad("write to group '" + printable(path) + "', which it did not create");
    return it->second;
  };
  try {
    for (;;) {
      const auto op = static_cast<Op>(r.u8());
      if (op == Op::End) break;
      if (op > Op::String) r.bad("unknown operation " + std::to_string(static_cast<int>(op)));
      const std::string object = r.str(1 << 20);
      const Object& target = at(object);
      const bool attribute = op == Op::AttrString || op == Op::AttrInt || op == Op::AttrFloat;
      const std::string name = attribute ? r.attribute_name() : r.name();
      switch (op) {
        case Op::Group: {
          const std::uint8_t track = r.u8();
          if (track > 1) r.bad("invalid group flag");
          std::string path = object.empty() ? name : object + "/" + name;
          Object g = target.create_group(name, track == 1);
          groups.insert_or_assign(std::move(path), std::move(g));
          break;
        }
        case Op::AttrString: target.write_attribute(name, std::string_view(r.str(kMaxAttributeString * 64))); break;
        case Op::AttrInt: {
          std::int64_t v;
          r.raw(&v, sizeof v);
          target.write_attribute(name, v);
          break;
        }
        case Op::AttrFloat: {
          double v;
          r.raw(&v, sizeof v);
          target.write_attribute(name, v);
          break;
        }
        case Op::Dataset: {
          const std::uint8_t type = r.u8();
          const std::uint8_t rank = r.u8();
          if (type > static_cast<std::uint8_t>(RecordType::I8)) r.bad("unknown element type");
          if (rank > H5S_MAX_RANK) r.bad("rank above 32");
          std::vector<std::uint64_t> shape(rank);
          std::uint64_t product = 1;
          bool overflow = false;
          for (auto& d : shape) {
            d = r.u64();
            overflow = overflow || __builtin_mul_overflow(product, d, &product);
          }
          const std::uint64_t count = r.u64();
          if (overflow || product != count) r.bad("dataset shape and element count disagree");
          switch (static_cast<RecordType>(type)) {
            case RecordType::F64: target.write_dataset(name, std::span<const double>(record_values<double>(r, count)), shape); break;
            case RecordType::I64: target.write_dataset(name, std::span<const std::int64_t>(record_values<std::int64_t>(r, count)), shape); break;
            case RecordType::I32: target.write_dataset(name, std::span<const std::int32_t>(record_values<std::int32_t>(r, count)), shape); break;
            case RecordType::I8: target.write_dataset(name, std::span<const std::int8_t>(record_values<std::int8_t>(r, count)), shape); break;
          }
          break;
        }
        case Op::Strings: {
          const std::uint64_t n = r.u64();
          if (n > r.left() / sizeof(std::uint64_t)) r.bad("truncated string list");
          std::vector<std::string> values;
          values.reserve(static_cast<std::size_t>(n));
          for (std::uint64_t i = 0; i < n; ++i) values.push_back(r.str(kMaxAttributeString * 64));
          target.write_strings(name, values);
          break;
        }
        case Op::String: target.write_string(name, r.str(std::numeric_limits<std::size_t>::max())); break;
        case Op::End: break;
      }
    }
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (what.rfind(source + ": ", 0) == 0) throw;
    throw std::runtime_error(source + ": " + what);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": bad recording: " + e.what());
  }
  if (r.left() != 0) r.bad("data after the end");
}

Object Object::create(const std::string& path, const std::string& name) {
  quiet();
  const std::string file = name.empty() ? path : name;
  const Handle fapl = strong_close_access(file);
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!f.valid()) throw std::runtime_error(file + ": cannot create HDF5 file" + why());
  return Object(std::move(f), file, "/");
}

Object Object::create_in_memory(const std::string& name) {
  quiet();
  const Handle fapl = strong_close_access(name);
  // 64 KiB growth steps; no backing store: the image is taken before the close.
  if (H5Pset_fapl_core(fapl.get(), 64 << 10, false) < 0)
    throw std::runtime_error(name + ": cannot set up an in-memory HDF5 file" + why());
  Handle f(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!f.valid()) throw std::runtime_error(name + ": cannot create an in-memory HDF5 file" + why());
  return Object(std::move(f), name, "/");
}

std::vector<unsigned char> Object::close_to_image() {
  if (m_recording) record_only("close_to_image");
  quiet();
  if (!m_handle.valid() || H5Iget_type(id()) != H5I_FILE) fail(m_path, "close_to_image needs an open file");
  if (H5Fflush(id(), H5F_SCOPE_LOCAL) < 0) fail(m_path, "cannot flush" + why());
  const ssize_t size = H5Fget_file_image(id(), nullptr, 0);
  if (size <= 0) fail(m_path, "cannot size the file image" + why());
  std::vector<unsigned char> image(static_cast<std::size_t>(size));
  if (H5Fget_file_image(id(), image.data(), image.size()) != size) fail(m_path, "cannot copy the file image" + why());
  close();
  return image;
}

Object Object::open(const std::string& path, bool writable, const std::string& name, bool trusted) {
  quiet();
  const std::string file = name.empty() ? path : name;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error(file + ": no such file");
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error(file + ": not a regular file");
  // libhdf5 can crash or hang on corrupt metadata whatever we check first: a child process
  // walks the file before this process reads it (src/io/internal/hdf5_probe.h).
  if (const std::string problem = trusted ? std::string() : internal::probe_file(path); !problem.empty())
    throw std::runtime_error(file + ": " + problem);
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw std::runtime_error(file + ": not an HDF5 file");
  }
  const Handle fapl = strong_close_access(file);
  Handle f(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl.get()));
  if (!f.valid()) throw std::runtime_error(file + ": cannot open HDF5 file" + why());
  return Object(std::move(f), file, "/");
}

void Object::close() {
  if (!m_handle.valid()) return;
  if (!m_handle.close()) fail(m_path, "cannot close" + why());
}

Object Object::create_group(const std::string& name, bool track_order) const {
  if (m_recording) {
    m_recording->op(Op::Group, m_path, name);
    m_recording->u8(track_order ? 1 : 0);
    return Object(Handle(), m_file, m_path.empty() ? name : m_path + "/" + name, m_recording);
  }
  quiet();
  const std::string full = child_path(name);
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE));
  if (!gcpl.valid() ||
      (track_order && H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0))
    fail(full, "cannot set up group" + why());
  Handle g(H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
  if (!g.valid()) fail(full, "cannot create group" + why());
  return Object(std::move(g), m_file, full);
}

bool Object::exists(const std::string& path) const {
  if (m_recording) record_only("exists");
  quiet();
  if (path.empty() || path == "/") return true;
  std::string prefix = path[0] == '/' ? "/" : "";
  std::size_t pos = path[0] == '/' ? 1 : 0;
  while (pos <= path.size()) {
    const std::size_t next = path.find('/', pos);
    const std::string part = path.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!part.empty()) {
      prefix += (prefix.empty() || prefix == "/" ? "" : "/") + part;
      // External links (to other files) are not followed: they count as absent.
      H5L_info_t li;
      if (part == "." || H5Lexists(id(), prefix.c_str(), H5P_DEFAULT) <= 0 ||
          H5Lget_info(id(), prefix.c_str(), &li, H5P_DEFAULT) < 0 || li.type == H5L_TYPE_EXTERNAL) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

Object Object::open_object(const std::string& path) const {
  if (m_recording) record_only("open_object");
  quiet();
  const std::string full = child_path(path);
  if (!exists(path)) fail(full, "no such group or dataset");
  Handle o(H5Oopen(id(), path.c_str(), H5P_DEFAULT));
  if (!o.valid()) fail(full, "cannot open" + why());
  const H5I_type_t t = H5Iget_type(o.get());
  if (t != H5I_GROUP && t != H5I_DATASET) fail(full, "is not a group or dataset");
  return Object(std::move(o), m_file, full);
}

void Object::copy_to(const std::string& name, const Object& destination, const std::string& new_name) const {
  if (m_recording) record_only("copy_to");
  quiet();
  const std::string full = child_path(name);
  if (!exists(name)) fail(full, "no such group or dataset");
  // H5Ocopy copies the object with everything below it and every attribute, across files.
  if (H5Ocopy(id(), name.c_str(), destination.id(), new_name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    destination.fail(destination.child_path(new_name), "cannot copy " + m_file + ":" + full + why());
}

bool Object::is_group() const { return H5Iget_type(id()) == H5I_GROUP || H5Iget_type(id()) == H5I_FILE; }
bool Object::is_dataset() const { return H5Iget_type(id()) == H5I_DATASET; }

std::vector<std::string> Object::children(std::size_t max_count) const {
  if (m_recording) record_only("children");
  quiet();
  if (!is_group()) fail(m_path, "is not a group");
  H5G_info_t info;
  if (H5Gget_info(id(), &info) < 0) fail(m_path, "cannot read the group" + why());
  if (info.nlinks > max_count)
    fail(m_path, "has " + std::to_string(info.nlinks) + " links, more than " + std::to_string(max_count));
  // Creation order where the group tracks it (curv's groups do), else name order.
  H5_index_t index = H5_INDEX_NAME;
  {
    Handle gcpl(H5Gget_create_plist(id()));
    unsigned flags = 0;
    if (gcpl.valid() && H5Pget_link_creation_order(gcpl.get(), &flags) >= 0 && (flags & H5P_CRT_ORDER_INDEXED))
      index = H5_INDEX_CRT_ORDER;
  }
  NameList list;
  list.max = max_count;
  hsize_t idx = 0;
  const herr_t rc = H5Literate(id(), index, H5_ITER_INC, &idx, collect_link, &list);
  if (list.overflow) fail(m_path, "has more than " + std::to_string(max_count) + " links or an overlong name");
  if (rc < 0) fail(m_path, "cannot list the group" + why());
  return list.names;
}

// ---- attributes ----------------------------------------------------------------------------------

bool Object::has_attribute(const std::string& name) const {
  if (m_recording) record_only("has_attribute");
  quiet();
  const htri_t r = H5Aexists(id(), name.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

std::vector<std::string> Object::attribute_names(std::size_t max_count) const {
  if (m_recording) record_only("attribute_names");
  quiet();
  H5O_info_t info;
  if (H5Oget_info2(id(), &info, H5O_INFO_NUM_ATTRS) < 0) fail(m_path, "cannot read the object header" + why());
  if (info.num_attrs > max_count)
    fail(m_path, "has " + std::to_string(info.num_attrs) + " attributes, more than " + std::to_string(max_count));
  NameList list;
  list.max = max_count;
  hsize_t idx = 0;
  const herr_t rc = H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &list);
  if (list.overflow) fail(m_path, "has more than " + std::to_string(max_count) + " attributes or an overlong name");
  if (rc < 0) fail(m_path, "cannot list the attributes" + why());
  return list.names;
}

namespace {

// Opens attribute `name` of `obj` and checks it holds exactly one element.
Handle open_single_attribute(const Object& obj, const std::string& name) {
  quiet();
  const htri_t exists = H5Aexists(obj.id(), name.c_str());
  if (exists <= 0) {
    H5Eclear2(H5E_DEFAULT);
    obj.fail(obj.path(), "missing attribute " + quoted(name));
  }
  Handle a(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT));
  if (!a.valid()) obj.fail(obj.path(), "cannot open attribute " + quoted(name) + why());
  Handle space(H5Aget_space(a.get()));
  std::vector<std::uint64_t> shape;
  std::uint64_t count = 0;
  std::string problem;
  if (!space.valid() || !checked_shape(space.get(), kMaxElements, shape, count, problem))
    obj.fail(obj.path(), "attribute " + quoted(name) + " " + (problem.empty() ? "has no dataspace" : problem) +
                             ", expected one value");
  if (count != 1)
    obj.fail(obj.path(), "attribute " + quoted(name) + " holds " + std::to_string(count) + " values, expected one");
  return a;
}

}  // namespace

void Object::write_attribute(const std::string& name, std::string_view value) const {
  if (m_recording) {
    m_recording->op(Op::AttrString, m_path, name);
    m_recording->str(value);
    return;
  }
  quiet();
  const std::string v(value);
  Handle type(H5Tcopy(H5T_C_S1));
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
    fail(m_path, "cannot write attribute " + quoted(name) + why());
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  const char* p = v.c_str();
  if (!a.valid() || H5Awrite(a.get(), type.get(), &p) < 0) fail(m_path, "cannot write attribute " + quoted(name) + why());
}

void Object::write_attribute(const std::string& name, std::int64_t value) const {
  if (m_recording) {
    m_recording->op(Op::AttrInt, m_path, name);
    m_recording->raw(&value, sizeof value);
    return;
  }
  quiet();
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid() || H5Awrite(a.get(), H5T_NATIVE_INT64, &value) < 0)
    fail(m_path, "cannot write attribute " + quoted(name) + why());
}

void Object::write_attribute(const std::string& name, double value) const {
  if (m_recording) {
    m_recording->op(Op::AttrFloat, m_path, name);
    m_recording->raw(&value, sizeof value);
    return;
  }
  quiet();
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate2(id(), name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid() || H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    fail(m_path, "cannot write attribute " + quoted(name) + why());
}

std::string Object::read_string_attribute(const std::string& name, std::size_t max_bytes) const {
  if (m_recording) record_only("an attribute read");
  Handle a = open_single_attribute(*this, name);
  const std::string what = "attribute " + quoted(name);
  Handle type(H5Aget_type(a.get()));
  if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING)
    fail(m_path, what + " is not a string" + (type.valid() ? std::string(" (") + class_name(type.get()) + ")" : ""));
  const htri_t vlen = H5Tis_variable_str(type.get());
  if (vlen < 0) fail(m_path, what + ": unreadable string type" + why());
  if (vlen > 0) {
    Handle mem = string_mem_type(type.get(), H5T_VARIABLE);
    Handle space(H5Screate(H5S_SCALAR));
    char* p = nullptr;
    if (!mem.valid() || H5Aread(a.get(), mem.get(), &p) < 0) fail(m_path, "cannot read " + what + why());
    const std::size_t n = p ? strnlen(p, max_bytes + 1) : 0;
    std::string s = n <= max_bytes ? std::string(p ? p : "", n) : std::string();
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &p);
    if (n > max_bytes) fail(m_path, what + " is longer than " + std::to_string(max_bytes) + " bytes");
    return s;
  }
  const std::size_t size = H5Tget_size(type.get());
  if (size == 0 || size > max_bytes)
    fail(m_path, what + " has " + std::to_string(size) + " bytes, expected 1.." + std::to_string(max_bytes));
  Handle mem = string_mem_type(type.get(), size);
  std::vector<char> buf(size, '\0');
  if (!mem.valid() || H5Aread(a.get(), mem.get(), buf.data()) < 0) fail(m_path, "cannot read " + what + why());
  return std::string(buf.data(), strnlen(buf.data(), size));
}

std::int64_t Object::read_int_attribute(const std::string& name) const {
  if (m_recording) record_only("an attribute read");
  Handle a = open_single_attribute(*this, name);
  Handle type(H5Aget_type(a.get()));
  ElementType et;
  if (!type.valid() || !standard_numeric(type.get(), et) || !et.integer)
    fail(m_path, "attribute " + quoted(name) + " is not an integer");
  std::int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) fail(m_path, "cannot read attribute " + quoted(name) + why());
  return v;
}

double Object::read_number_attribute(const std::string& name) const {
  if (m_recording) record_only("an attribute read");
  Handle a = open_single_attribute(*this, name);
  Handle type(H5Aget_type(a.get()));
  ElementType et;
  if (!type.valid() || !standard_numeric(type.get(), et)) fail(m_path, "attribute " + quoted(name) + " is not a number");
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0) fail(m_path, "cannot read attribute " + quoted(name) + why());
  return v;
}

// ---- datasets: writing ---------------------------------------------------------------------------

void Object::write_numeric(const std::string& name, Handle::Id file_type, Handle::Id mem_type, const void* data,
                           std::size_t count, const std::vector<std::uint64_t>& shape) const {
  quiet();
  const std::string full = child_path(name);
  if (product(shape) != count)
    throw std::invalid_argument(m_file + ": " + full + ": " + std::to_string(count) + " values for shape " +
                                shape_text(shape));
  if (shape.size() > H5S_MAX_RANK) throw std::invalid_argument(m_file + ": " + full + ": rank above 32");
  if (m_recording) {
    m_recording->op(Op::Dataset, m_path, name);
    m_recording->u8(record_dtype(file_type));
    m_recording->u8(static_cast<std::uint8_t>(shape.size()));
    for (auto d : shape) m_recording->u64(d);
    m_recording->u64(count);
    m_recording->raw(data, count * H5Tget_size(file_type));
    return;
  }
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  if (!space.valid()) fail(full, "cannot create dataspace" + why());
  Handle d(H5Dcreate2(id(), name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) fail(full, "cannot create dataset" + why());
  if (count > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(full, "cannot write dataset" + why());
}

void Object::write_dataset(const std::string& name, std::span<const double> v,
                           const std::vector<std::uint64_t>& shape) const {
  write_numeric(name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v.data(), v.size(), shape);
}
void Object::write_dataset(const std::string& name, std::span<const std::int64_t> v,
                           const std::vector<std::uint64_t>& shape) const {
  write_numeric(name, H5T_STD_I64LE, H5T_NATIVE_INT64, v.data(), v.size(), shape);
}
void Object::write_dataset(const std::string& name, std::span<const std::int32_t> v,
                           const std::vector<std::uint64_t>& shape) const {
  write_numeric(name, H5T_STD_I32LE, H5T_NATIVE_INT32, v.data(), v.size(), shape);
}
void Object::write_dataset(const std::string& name, std::span<const std::int8_t> v,
                           const std::vector<std::uint64_t>& shape) const {
  write_numeric(name, H5T_STD_I8LE, H5T_NATIVE_INT8, v.data(), v.size(), shape);
}

void Object::write_strings(const std::string& name, const std::vector<std::string>& values) const {
  if (m_recording) {
    m_recording->op(Op::Strings, m_path, name);
    m_recording->u64(values.size());
    for (const auto& v : values) m_recording->str(v);
    return;
  }
  quiet();
  const std::string full = child_path(name);
  Handle type(H5Tcopy(H5T_C_S1));
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
    fail(full, "cannot create a string type" + why());
  std::vector<const char*> ptrs;
  for (const auto& s : values) ptrs.push_back(s.c_str());
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr));
  Handle d(H5Dcreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) fail(full, "cannot create dataset" + why());
  if (n > 0 && H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
    fail(full, "cannot write dataset" + why());
}

void Object::write_string(const std::string& name, std::string_view value) const {
  if (m_recording) {
    m_recording->op(Op::String, m_path, name);
    m_recording->str(value);
    return;
  }
  quiet();
  const std::string full = child_path(name);
  const std::string text(value);
  Handle type(H5Tcopy(H5T_C_S1));
  if (!type.valid() || H5Tset_size(type.get(), std::max<std::size_t>(text.size(), 1)) < 0 ||
      H5Tset_strpad(type.get(), H5T_STR_NULLPAD) < 0)
    fail(full, "cannot create a string type" + why());
  Handle space(H5Screate(H5S_SCALAR));
  Handle d(H5Dcreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid() || H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.c_str()) < 0)
    fail(full, "cannot write dataset" + why());
}

// ---- datasets: reading ---------------------------------------------------------------------------

namespace {

Handle open_dataset(const Object& obj, const std::string& name, const std::string& full) {
  quiet();
  if (!obj.exists(name)) obj.fail(full, "no such dataset");
  Handle d(H5Dopen2(obj.id(), name.c_str(), H5P_DEFAULT));
  if (!d.valid()) obj.fail(full, "cannot open dataset" + why());
  if (H5Iget_type(d.get()) != H5I_DATASET) obj.fail(full, "is not a dataset");
  return d;
}

// Deflate cannot expand data more than about 1032:1; this bounds what a chunked dataset may claim.
constexpr std::uint64_t kMaxExpansion = 1100;

// The storage of dataset `d` must be able to hold `bytes` bytes of data: contiguous and compact
// data is stored whole, chunked data at most kMaxExpansion times compressed; virtual and external
// storage (other files) is not read. So a header that claims more than the file holds fails here,
// before anything is allocated.
void check_storage(const Object& obj, hid_t d, std::uint64_t bytes, const std::string& full) {
  if (bytes == 0) return;
  Handle dcpl(H5Dget_create_plist(d));
  if (!dcpl.valid()) obj.fail(full, "cannot read the dataset's storage properties" + why());
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout != H5D_CONTIGUOUS && layout != H5D_COMPACT && layout != H5D_CHUNKED)
    obj.fail(full, "has an unsupported storage layout (virtual or unknown)");
  if (H5Pget_external_count(dcpl.get()) != 0) obj.fail(full, "is stored in external files, which curv does not read");
  const std::uint64_t stored = H5Dget_storage_size(d);
  const bool whole = layout != H5D_CHUNKED;
  if (whole ? stored < bytes : stored == 0 || bytes / kMaxExpansion > stored)
    obj.fail(full, "its shape needs " + std::to_string(bytes) + " bytes but the file stores " + std::to_string(stored));
}

}  // namespace

ElementType Object::element_type(const std::string& name) const {
  if (m_recording) record_only("element_type");
  const std::string full = child_path(name);
  Handle d = open_dataset(*this, name, full);
  Handle type(H5Dget_type(d.get()));
  ElementType et;
  if (!type.valid() || !standard_numeric(type.get(), et))
    fail(full, std::string("is not numeric (") + (type.valid() ? class_name(type.get()) : "unreadable") +
                   " type; expected a standard integer or IEEE float type)");
  return et;
}

template <class T>
Array<T> Object::read_numeric(const std::string& name, const ArrayLimits& limits, bool integers_only) const {
  if (m_recording) record_only("a dataset read");
  const std::string full = child_path(name);
  Handle d = open_dataset(*this, name, full);
  Handle type(H5Dget_type(d.get()));
  ElementType et;
  if (!type.valid() || !standard_numeric(type.get(), et))
    fail(full, std::string("is not numeric (") + (type.valid() ? class_name(type.get()) : "unreadable") +
                   " type; expected a standard integer or IEEE float type)");
  if (integers_only && !et.integer) fail(full, "is not an integer dataset");
  Handle space(H5Dget_space(d.get()));
  Array<T> a;
  std::uint64_t count = 0;
  std::string problem;
  if (!space.valid()) fail(full, "has no dataspace" + why());
  if (!checked_shape(space.get(), limits.max_elements, a.shape, count, problem)) fail(full, problem);
  if (limits.rank >= 0 && static_cast<int>(a.shape.size()) != limits.rank)
    fail(full, "has shape " + shape_text(a.shape) + ", expected rank " + std::to_string(limits.rank));
  check_storage(*this, d.get(), count * et.bytes, full);
  a.data.resize(static_cast<std::size_t>(count));
  const hid_t mem = std::is_same_v<T, double> ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
  if (count > 0 && H5Dread(d.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0)
    fail(full, "cannot read dataset" + why());
  return a;
}

Array<double> Object::read_f64(const std::string& name, const ArrayLimits& limits) const {
  return read_numeric<double>(name, limits, false);
}

Array<std::int64_t> Object::read_i64(const std::string& name, const ArrayLimits& limits) const {
  return read_numeric<std::int64_t>(name, limits, true);
}

std::string Object::read_string(const std::string& name, std::size_t max_bytes) const {
  if (m_recording) record_only("read_string");
  const std::string full = child_path(name);
  Handle d = open_dataset(*this, name, full);
  Handle type(H5Dget_type(d.get()));
  if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING)
    fail(full, std::string("is not a string (") + (type.valid() ? class_name(type.get()) : "unreadable") + " type)");
  Handle space(H5Dget_space(d.get()));
  std::vector<std::uint64_t> shape;
  std::uint64_t count = 0;
  std::string problem;
  if (!space.valid() || !checked_shape(space.get(), 1, shape, count, problem) || count != 1)
    fail(full, (problem.empty() ? std::string("is empty") : problem) + ", expected one string");
  const htri_t vlen = H5Tis_variable_str(type.get());
  if (vlen < 0) fail(full, "unreadable string type" + why());
  if (vlen > 0) {
    Handle mem = string_mem_type(type.get(), H5T_VARIABLE);
    if (!mem.valid()) fail(full, "cannot read dataset" + why());
    // The size first, where HDF5 can tell it (its H5Dvlen_get_buf_size crashes on scalar
    // dataspaces in 1.10; a scalar string's length is then checked after the read).
    hsize_t need = 0;
    if (H5Sget_simple_extent_type(space.get()) == H5S_SIMPLE) {
      if (H5Dvlen_get_buf_size(d.get(), mem.get(), space.get(), &need) < 0) fail(full, "cannot read dataset" + why());
      if (need > max_bytes + 1) fail(full, "string is longer than " + std::to_string(max_bytes) + " bytes");
    }
    char* p = nullptr;
    if (H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) < 0) fail(full, "cannot read dataset" + why());
    const std::size_t n = p ? strnlen(p, max_bytes + 1) : 0;
    std::string s = n <= max_bytes ? std::string(p ? p : "", n) : std::string();
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &p);
    if (n > max_bytes) fail(full, "string is longer than " + std::to_string(max_bytes) + " bytes");
    return s;
  }
  const std::size_t size = H5Tget_size(type.get());
  if (size == 0 || size > max_bytes)
    fail(full, "string has " + std::to_string(size) + " bytes, expected 1.." + std::to_string(max_bytes));
  check_storage(*this, d.get(), size, full);
  Handle mem = string_mem_type(type.get(), size);
  std::vector<char> buf(size, '\0');
  if (!mem.valid() || H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
    fail(full, "cannot read dataset" + why());
  return std::string(buf.data(), strnlen(buf.data(), size));
}

}  // namespace curv::h5
