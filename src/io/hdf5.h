#pragma once
/// \file hdf5.h
/// curv's one HDF5 layer: every HDF5 file curv writes or reads (checkpoints, datasets, spectra
/// stores, quantization files) goes through `h5::Object`. It owns its HDF5 identifier, knows the
/// file name and the object's path for messages, and offers typed writers and defensive readers:
///
///     h5::Object f = h5::Object::create(tmp, "out.h5");   // messages name "out.h5"
///     f.write_attribute("format", "curv");
///     h5::Object g = f.create_group("trace");
///     g.write_dataset("samples", std::span<const double>(v), {v.size()});
///     f.close();                                           // flushes; throws on failure
///
///     h5::Object r = h5::Object::open("in.h5");
///     h5::Array<double> x = r.read_f64("x", {.rank = 2, .max_elements = 1 << 20});
///     std::string s = r.read_string_attribute("format", 64);
///
/// Types written: float64 as IEEE `<f8`, integers as `<i8` (or `<i4` / `<i1` where a format asks
/// for it), strings as variable-length UTF-8 (attributes and string arrays) or one fixed-length
/// string (large text such as a checkpoint's /graph).
///
/// libhdf5 1.10 itself can crash or loop on corrupt metadata, whatever is checked first
/// (docs/robustness.md). So the loaders of checkpoints, training state and .h5 datasets run their
/// reads first in a forked copy of the process (h5::internal::guarded), and open() outside such a
/// read lets a child process walk the whole file first (h5::internal::probe_file): a crash or an
/// endless loop there becomes an error here. External links to other files are not followed
/// (exists() says false).
///
/// Readers check before reading, so a corrupt or hostile file gives an error instead of a crash,
/// a huge allocation or a hang: the type class and size (only the standard integer and IEEE float
/// types are converted), the dataspace (simple or scalar, rank <= 32), every dimension and the
/// overflow-checked element count against the caller's bounds, string lengths against a bound,
/// and the number of attributes or links before listing them (by index, never by an unbounded
/// callback). Attributes are read only when they hold exactly one element, so a read never writes
/// past its buffer; variable-length strings are freed with HDF5's allocator.
///
/// A recording (Object::recording) is a group that performs none of its writes: it keeps them,
/// in order, as bytes (take_recording), and Object::replay performs them later on a real group.
/// curv study commits each run's results this way (a few microseconds instead of building an HDF5
/// file per run) and writes them into its study file once. Replay parses untrusted bytes: any
/// malformed, truncated or out-of-bounds record is an error naming the source, never a crash, and
/// no write leaves the destination group.
///
/// Errors: std::runtime_error("<file>: <object>: <problem>"), with HDF5's innermost message in
/// parentheses where it helps (e.g. "out.h5: /spectrum/blocks/fc1: cannot create group (name
/// already exists)"). HDF5's automatic error printing is turned off by every entry point.
/// Not thread-safe: use from one thread at a time.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace curv::h5 {

/// Default bounds of the readers (callers pass tighter ones where they know more).
inline constexpr std::uint64_t kMaxElements = std::uint64_t(1) << 31;  // 16 GiB of float64
inline constexpr std::size_t kMaxAttributeString = std::size_t(1) << 20;  // 1 MiB
inline constexpr std::size_t kMaxNames = 1 << 16;   // attributes or links listed in one object
inline constexpr std::size_t kMaxNameBytes = 4096;  // one attribute or link name

/// Owns one HDF5 identifier (file, group, dataset, attribute, dataspace, datatype or property
/// list) and closes it with the matching H5?close. Move-only; an invalid id (< 0) owns nothing.
class Handle {
 public:
  using Id = std::int64_t;  // hid_t

  Handle() = default;
  explicit Handle(Id id) : m_id(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : m_id(o.m_id) { o.m_id = -1; }
  Handle& operator=(Handle&& o) noexcept;
  ~Handle() { (void)close(); }

  Id get() const { return m_id; }
  bool valid() const { return m_id >= 0; }
  /// Closes now; returns false if HDF5 reported a failure (closing a file flushes it).
  bool close();

 private:
  Id m_id = -1;
};

/// Values of a dataset in C (row-major) order and its shape as h5py shows it (empty: scalar).
template <class T>
struct Array {
  std::vector<std::uint64_t> shape;
  std::vector<T> data;
};

/// The element type of a numeric dataset as stored in the file.
struct ElementType {
  bool integer = false;    // integer (true) or IEEE floating point (false)
  bool is_signed = true;   // integers only
  std::size_t bytes = 0;   // 1, 2, 4 or 8
};

/// What a reader requires of a dataset before it allocates anything.
struct ArrayLimits {
  /// Required rank (0 for a scalar); -1 accepts any rank.
  int rank = -1;
  /// Upper bound on the element count (the product of the dims, overflow-checked).
  std::uint64_t max_elements = kMaxElements;
};

/// A file, group or dataset of an open HDF5 file (see the file comment).
class Object {
 public:
  /// Creates (truncates) the HDF5 file `path`. `name` is the file name used in messages (e.g. the
  /// target of an atomic write while `path` is its temporary file); empty: `path`.
  static Object create(const std::string& path, const std::string& name = {});
  /// Creates an HDF5 file that lives only in memory (HDF5's core driver, no backing file):
  /// nothing touches the disk until close_to_image() hands over its bytes. `name` names it in
  /// messages (e.g. the file the image is going to become).
  static Object create_in_memory(const std::string& name);
  /// Opens an existing HDF5 file, read-only unless `writable`. Checks that it is a regular file
  /// and an HDF5 file first ("<file>: no such file", "<file>: not an HDF5 file").
  /// `trusted`: a file this process wrote itself (e.g. an output it is extending), whose
  /// child-process walk (see the file comment) is skipped.
  static Object open(const std::string& path, bool writable = false, const std::string& name = {},
                     bool trusted = false);

  /// A recording (see the file comment): a root group whose create_group, write_attribute,
  /// write_dataset, write_strings and write_string calls (on it and on the groups it creates) are
  /// recorded, not performed; every other member throws std::logic_error. `name` names it in
  /// messages.
  static Object recording(const std::string& name);
  /// The recorded writes as bytes (a recording's root only); the recording is then empty.
  std::vector<unsigned char> take_recording() const;
  /// Performs the writes recorded in `bytes` on the group `destination`. `source` names the bytes
  /// in errors ("<source>: bad recording: <what>").
  static void replay(std::span<const unsigned char> bytes, const Object& destination, const std::string& source);

  Object(Object&&) noexcept = default;
  Object& operator=(Object&&) noexcept = default;

  // -- structure ---------------------------------------------------------------------------
  /// A new group `name` (one link name). With `track_order`, its links are listed in creation order.
  Object create_group(const std::string& name, bool track_order = false) const;
  /// The group or dataset at `path` (relative, or absolute from the file's root).
  Object open_object(const std::string& path) const;
  /// True if every component of `path` exists (a missing component is not an error).
  bool exists(const std::string& path) const;
  /// Copies the group or dataset `name` below this object, with everything below it and all its
  /// attributes, to `new_name` below `destination` (which may be in another open file).
  /// REQUIRES: `new_name` does not exist there (std::runtime_error naming both).
  void copy_to(const std::string& name, const Object& destination, const std::string& new_name) const;
  bool is_group() const;
  bool is_dataset() const;
  /// Names of the links of this group, in creation order when tracked, else in name order.
  /// REQUIRES: a group with at most `max_count` links (else std::runtime_error).
  std::vector<std::string> children(std::size_t max_count = kMaxNames) const;

  // -- attributes (scalar unless noted) --------------------------------------------------------
  bool has_attribute(const std::string& name) const;
  /// Names of this object's attributes in name order. REQUIRES: at most `max_count` of them.
  std::vector<std::string> attribute_names(std::size_t max_count = kMaxNames) const;
  void write_attribute(const std::string& name, std::string_view value) const;
  void write_attribute(const std::string& name, const char* value) const {
    write_attribute(name, std::string_view(value));
  }
  void write_attribute(const std::string& name, std::int64_t value) const;
  void write_attribute(const std::string& name, double value) const;
  /// A string attribute (fixed- or variable-length, any character set) of at most `max_bytes`.
  std::string read_string_attribute(const std::string& name, std::size_t max_bytes = kMaxAttributeString) const;
  /// An integer attribute (any standard integer type) as int64.
  std::int64_t read_int_attribute(const std::string& name) const;
  /// An integer or floating-point attribute as double.
  double read_number_attribute(const std::string& name) const;

  // -- datasets ----------------------------------------------------------------------------
  /// Writes `values` as dataset `name` of shape `shape` (empty: a scalar). REQUIRES: the
  /// product of `shape` equals values.size() (std::invalid_argument).
  void write_dataset(const std::string& name, std::span<const double> values,
                     const std::vector<std::uint64_t>& shape) const;
  void write_dataset(const std::string& name, std::span<const std::int64_t> values,
                     const std::vector<std::uint64_t>& shape) const;
  void write_dataset(const std::string& name, std::span<const std::int32_t> values,
                     const std::vector<std::uint64_t>& shape) const;
  void write_dataset(const std::string& name, std::span<const std::int8_t> values,
                     const std::vector<std::uint64_t>& shape) const;
  /// A 1-D dataset of variable-length UTF-8 strings.
  void write_strings(const std::string& name, const std::vector<std::string>& values) const;
  /// A scalar fixed-length string dataset (large text; h5py reads it as bytes).
  void write_string(const std::string& name, std::string_view value) const;

  /// A numeric dataset (standard integer or IEEE float type) converted to double.
  Array<double> read_f64(const std::string& name, const ArrayLimits& limits = {}) const;
  /// An integer dataset as int64 (floating-point datasets are rejected).
  Array<std::int64_t> read_i64(const std::string& name, const ArrayLimits& limits = {}) const;
  /// A scalar (or one-element) string dataset of at most `max_bytes`.
  std::string read_string(const std::string& name, std::size_t max_bytes) const;
  /// The element type of numeric dataset `name` (throws if it is not a standard integer or IEEE
  /// float type).
  ElementType element_type(const std::string& name) const;

  // -- file --------------------------------------------------------------------------------
  /// Flushes and closes (a file: every object of it); throws if HDF5 reports a failure. Objects
  /// opened from a closed file are invalid afterwards.
  void close();
  /// For a file from create_in_memory(): flushes it, closes it (as close()), and returns the
  /// complete HDF5 file it holds, ready to be written to disk as is.
  std::vector<unsigned char> close_to_image();

  /// The file name used in messages, and this object's absolute path ("/" for the file).
  const std::string& file() const { return m_file; }
  const std::string& path() const { return m_path; }
  Handle::Id id() const { return m_handle.get(); }

  /// Throws std::runtime_error("<file>: <path of `object`>: <problem>").
  [[noreturn]] void fail(const std::string& object, const std::string& problem) const;

 private:
  struct Recording;
  Object(Handle h, std::string file, std::string path, std::shared_ptr<Recording> recording = nullptr);
  std::string child_path(const std::string& name) const;
  void write_numeric(const std::string& name, Handle::Id file_type, Handle::Id mem_type, const void* data,
                     std::size_t count, const std::vector<std::uint64_t>& shape) const;
  template <class T>
  Array<T> read_numeric(const std::string& name, const ArrayLimits& limits, bool integers_only) const;

  [[noreturn]] void record_only(const char* what) const;

  Handle m_handle;
  std::string m_file;
  std::string m_path;
  std::shared_ptr<Recording> m_recording;  // set: a recording (m_path is then relative, "" = root)
};

/// The innermost message on HDF5's error stack of this thread (e.g. "name already exists"), then
/// clears the stack; "unknown HDF5 error" when it is empty.
std::string error_message();

}  // namespace curv::h5
