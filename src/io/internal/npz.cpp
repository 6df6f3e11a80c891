#include "src/io/internal/npz.h"

#include <zip.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

namespace curv {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& msg) { throw std::runtime_error(what + ": " + msg); }

// Bounds checked before anything is allocated.
constexpr std::uint64_t kMaxArrayValues = std::uint64_t(1) << 32;  // elements of one array
constexpr std::uint64_t kMaxEntryBytes = std::uint64_t(1) << 36;   // one uncompressed archive entry
constexpr std::uint64_t kMaxDeflateRatio = 1100;                   // deflate expands at most ~1032:1
constexpr std::size_t kMaxStringChars = 1 << 20;                    // width of a <U string

// Header text for a message: printable ASCII only, at most 80 characters.
std::string printable(const std::string& s) {
  std::string r;
  for (char c : s.substr(0, 80)) r += (c >= 32 && c < 127) ? c : '?';
  return s.size() > 80 ? r + "..." : r;
}

// A non-negative decimal integer of at most 18 digits (no sign, no exponent); -1 if malformed.
std::int64_t parse_count(const std::string& s, std::size_t& i) {
  const std::size_t start = i;
  std::int64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (i - start >= 18) return -1;
    v = 10 * v + (s[i++] - '0');
  }
  return i == start ? -1 : v;
}

// Value of `'key': ...` in the npy header dict (a Python literal).
std::string header_field(const std::string& h, const std::string& key, const std::string& what) {
  const auto k = h.find("'" + key + "'");
  if (k == std::string::npos) fail(what, "npy header has no '" + key + "'");
  auto p = h.find(':', k);
  if (p == std::string::npos) fail(what, "malformed npy header");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  if (p >= h.size()) fail(what, "malformed npy header");
  std::size_t e;
  if (h[p] == '\'') {
    e = h.find('\'', p + 1);
    if (e == std::string::npos) fail(what, "malformed npy header");
    return h.substr(p + 1, e - p - 1);
  }
  if (h[p] == '(') {
    e = h.find(')', p);
    if (e == std::string::npos) fail(what, "malformed npy header");
    return h.substr(p, e - p + 1);
  }
  e = h.find_first_of(",}", p);
  return h.substr(p, e - p);
}

template <class T>
T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string utf32_to_utf8(const char* p, std::size_t chars) {
  std::string s;
  for (std::size_t i = 0; i < chars; ++i) {
    const auto c = load_le<std::uint32_t>(p + 4 * i);
    if (c == 0) break;
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return s;
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

}  // namespace

NpyArray parse_npy(const std::string& b, const std::string& what) {
  // Format: "\x93NUMPY" major minor, header length (u16 for v1, u32 for v2/3), header dict, data.
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) fail(what, "not a .npy array (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  if (major < 1 || major > 3) fail(what, "unsupported .npy version " + std::to_string(major));
  std::size_t hlen, hstart;
  if (major == 1) {
    hlen = load_le<std::uint16_t>(b.data() + 8);
    hstart = 10;
  } else {
    if (b.size() < 12) fail(what, "truncated .npy header");
    hlen = load_le<std::uint32_t>(b.data() + 8);
    hstart = 12;
  }
  if (hstart + hlen > b.size()) fail(what, "truncated .npy header");
  const std::string h = b.substr(hstart, hlen);
  NpyArray a;
  a.dtype = header_field(h, "descr", what);
  const std::string fortran = header_field(h, "fortran_order", what);
  if (fortran.find("True") != std::string::npos) fail(what, "Fortran-order arrays are not supported");
  const std::string shape = header_field(h, "shape", what);
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')') fail(what, "malformed npy shape '" + printable(shape) + "'");
  // n counts the elements; `bound` multiplies the nonzero dims only, so that an empty array with
  // absurd other dims ((0, 2^32, 2^32): zero elements, but a per-sample size that overflows) is
  // rejected too.
  std::uint64_t n = 1, bound = 1;
  for (std::size_t i = 1; i < shape.size();) {
    while (i < shape.size() && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i >= shape.size() || shape[i] == ')') break;
    const std::int64_t dim = parse_count(shape, i);
    if (dim < 0 || a.shape.size() >= 32) fail(what, "malformed npy shape '" + printable(shape) + "'");
    if (dim != 0 && bound > kMaxArrayValues / static_cast<std::uint64_t>(dim))
      fail(what, "shape " + printable(shape) + (n == 0 ? " is too large (its nonzero dims make" : " has") +
                     " more than " + std::to_string(kMaxArrayValues) + " elements" + (n == 0 ? ")" : ""));
    if (dim != 0) bound *= static_cast<std::uint64_t>(dim);
    n *= static_cast<std::uint64_t>(dim);
    a.shape.push_back(dim);
  }
  const char* d = b.data() + hstart + hlen;
  const std::size_t avail = b.size() - hstart - hlen;
  const std::string& t = a.dtype;
  if (t.size() < 3 || t[0] == '>')
    fail(what, "unsupported dtype '" + printable(t) + "' (expected little-endian <f4 <f8 |u1 <i4 <i8)");
  const char kind = t[1];
  std::size_t wpos = 2;
  const std::int64_t w = parse_count(t, wpos);
  const bool known = kind == 'U' ? w >= 1 && static_cast<std::size_t>(w) <= kMaxStringChars
                                 : (kind == 'f' && (w == 4 || w == 8)) || ((kind == 'u' || kind == 'b') && w == 1) ||
                                       (kind == 'i' && (w == 1 || w == 4 || w == 8)) || (kind == 'u' && w == 4);
  if (wpos != t.size() || !known) fail(what, "unsupported dtype '" + printable(t) + "' (expected <f4 <f8 |u1 <i4 <i8)");
  const std::size_t width = static_cast<std::size_t>(w);
  const std::size_t elem = kind == 'U' ? 4 * width : width;
  if (avail / elem < n)
    fail(what, "truncated data: " + std::to_string(n) + " elements of " + t + " need " + std::to_string(n * elem) +
                   " bytes, have " + std::to_string(avail));
  if (kind == 'U') {
    for (std::uint64_t i = 0; i < n; ++i) a.strings.push_back(utf32_to_utf8(d + i * elem, width));
    return a;
  }
  a.data.resize(n);
  const bool integer = kind == 'i' || kind == 'u' || kind == 'b';
  if (integer) a.ints.resize(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const char* p = d + i * elem;
    if (kind == 'f' && width == 4) {
      a.data[i] = load_le<float>(p);
    } else if (kind == 'f' && width == 8) {
      a.data[i] = load_le<double>(p);
    } else if ((kind == 'u' || kind == 'b') && width == 1) {
      a.ints[i] = static_cast<unsigned char>(*p);
    } else if (kind == 'i' && width == 1) {
      a.ints[i] = static_cast<signed char>(*p);
    } else if (kind == 'i' && width == 4) {
      a.ints[i] = load_le<std::int32_t>(p);
    } else if (kind == 'i' && width == 8) {
      a.ints[i] = load_le<std::int64_t>(p);
    } else if (kind == 'u' && width == 4) {
      a.ints[i] = load_le<std::uint32_t>(p);
    } else {
      fail(what, "unsupported dtype '" + t + "' (expected <f4 <f8 |u1 <i4 <i8)");
    }
    if (integer) a.data[i] = static_cast<double>(a.ints[i]);
  }
  return a;
}

NpzFile::NpzFile(const std::string& path) : m_path(path) {
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> z(zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err));
  if (!z) {
    if (err == ZIP_ER_NOENT || err == ZIP_ER_OPEN) fail(path, "cannot open file (missing or unreadable)");
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    const std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail(path, "not an .npz archive (" + msg + ")");
  }
  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read the file size (" + ec.message() + ")");
  const zip_int64_t n = zip_get_num_entries(z.get(), 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z.get(), i, 0, &st) != 0) fail(path, "cannot read archive entry " + std::to_string(i));
    const zip_uint64_t need = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if ((st.valid & need) != need || !st.name) fail(path, "archive entry " + std::to_string(i) + " has no name or size");
    std::string name = st.name;
    const std::string shown = printable(name);  // names come from the archive: no control characters in messages
    // The sizes come from the archive's directory: check them before allocating.
    const bool stored = st.comp_method == ZIP_CM_STORE;
    if (st.size > kMaxEntryBytes || st.comp_size > file_size || (stored ? st.size != st.comp_size : st.size / kMaxDeflateRatio > st.comp_size))
      fail(path, "archive entry '" + shown + "' claims " + std::to_string(st.size) + " bytes from " +
                     std::to_string(st.comp_size) + " compressed");
    std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(z.get(), i, 0));
    if (!f) fail(path, "cannot open archive entry '" + shown + "': " + zip_strerror(z.get()));
    std::string bytes(st.size, '\0');
    const zip_int64_t got = st.size ? zip_fread(f.get(), bytes.data(), st.size) : 0;
    if (got < 0 || static_cast<zip_uint64_t>(got) != st.size) fail(path, "corrupt archive entry '" + shown + "'");
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
    m_arrays.emplace(name, parse_npy(bytes, path + ": array '" + printable(name) + "'"));
  }
}

const NpyArray& NpzFile::get(const std::string& name) const {
  const auto it = m_arrays.find(name);
  if (it == m_arrays.end()) fail(m_path, "no array '" + name + "'");
  return it->second;
}

std::vector<std::string> NpzFile::names() const {
  std::vector<std::string> r;
  for (const auto& [k, v] : m_arrays) r.push_back(k);
  return r;
}

}  // namespace curv
