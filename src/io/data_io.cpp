#include "src/io/data_io.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <new>
#include <random>
#include <sstream>
#include <stdexcept>

#include "src/io/hdf5.h"
#include "src/io/internal/hdf5_probe.h"
#include "src/io/internal/npz.h"

namespace curv {

namespace {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// Largest dataset loaded (values of x or y), checked before allocating.
constexpr std::uint64_t kMaxDataValues = std::uint64_t(1) << 32;

[[noreturn]] void fail(const std::string& file, const std::string& msg) { throw std::runtime_error(file + ": " + msg); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void require_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail(path, "no such file");
}

// ---- IDX (gzip or plain; gzread passes plain files through) --------------------------------

// Reads up to `limit` bytes of a gzip (or plain) file; the buffer grows with the data actually
// read, so a header that promises more than the file holds costs nothing.
std::string read_gz(gzFile f, const std::string& path, std::uint64_t limit) {
  std::string out;
  char buf[1 << 16];
  while (out.size() < limit) {
    const unsigned want = static_cast<unsigned>(std::min<std::uint64_t>(sizeof buf, limit - out.size()));
    const int n = gzread(f, buf, want);
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      fail(path, "corrupt gzip stream (" + std::string(msg ? msg : "unknown error") + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

std::uint32_t be32(const std::string& b, std::size_t off) {
  return (std::uint32_t(std::uint8_t(b[off])) << 24) | (std::uint32_t(std::uint8_t(b[off + 1])) << 16) |
         (std::uint32_t(std::uint8_t(b[off + 2])) << 8) | std::uint32_t(std::uint8_t(b[off + 3]));
}

// Returns the dims and the byte payload of an IDX file of unsigned bytes with `rank` dims (the
// payload's size is the product of the dims, checked before it is read).
std::vector<std::int64_t> read_idx(const std::string& path, int rank, std::string& bytes) {
  require_file(path);
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) fail(path, "cannot open file");
  const std::string head = read_gz(f.get(), path, 4 + 4 * std::uint64_t(rank));
  if (head.size() < 4 || head[0] != 0 || head[1] != 0) fail(path, "not an IDX file (bad magic)");
  if (static_cast<std::uint8_t>(head[2]) != 0x08) fail(path, "IDX element type must be unsigned byte (0x08)");
  if (head[3] != rank)
    fail(path, "expected an IDX file with " + std::to_string(rank) + " dims, got " + std::to_string(int(head[3])));
  if (head.size() < 4 + 4 * std::size_t(rank)) fail(path, "truncated IDX header");
  std::vector<std::int64_t> dims;
  for (int i = 0; i < rank; ++i) dims.push_back(be32(head, 4 + 4 * i));
  // n counts the values; `bound` multiplies the nonzero dims only, so that zero images of an
  // absurd size (dims [0, 2^32 - 1, 2^32 - 1]) are rejected too: their per-image size overflows.
  std::uint64_t n = 1, bound = 1;
  for (const auto dim : dims) {
    const auto d = static_cast<std::uint64_t>(dim);
    if (d != 0 && bound > kMaxDataValues / d)
      fail(path, "IDX dims " + shape_str(Shape(dims.begin(), dims.end())) + " are too large (more than " +
                     std::to_string(kMaxDataValues) + " values)");
    if (d != 0) bound *= d;
    n *= d;
  }
  bytes = read_gz(f.get(), path, n);
  if (bytes.size() < n)
    fail(path, "truncated IDX data: expected " + std::to_string(n) + " bytes, have " + std::to_string(bytes.size()));
  return dims;
}

std::string labels_beside(const std::string& images) {
  const std::filesystem::path p(images);
  std::string name = p.filename().string();
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto k = name.find(from);
    if (k != std::string::npos) name.replace(k, from.size(), to);
  };
  replace("images", "labels");
  replace("idx3", "idx1");
  return (p.parent_path() / name).string();
}

Dataset load_idx(const std::string& images) {
  std::string bytes;
  const std::size_t off = 0;
  const auto dims = read_idx(images, 3, bytes);
  Dataset d;
  d.source = images;
  d.sample_shape = {1, dims[1], dims[2]};
  d.x.resize(static_cast<std::size_t>(dims[0] * dims[1] * dims[2]));
  for (std::size_t i = 0; i < d.x.size(); ++i) d.x[i] = static_cast<std::uint8_t>(bytes[off + i]) / 255.0f;
  const std::string labels = labels_beside(images);
  if (labels == images) fail(images, "cannot derive the labels file name (expected '*-images-idx3-ubyte*')");
  std::string lb;
  const std::size_t loff = 0;
  const auto ldims = read_idx(labels, 1, lb);
  if (ldims[0] != dims[0])
    fail(labels, std::to_string(ldims[0]) + " labels for " + std::to_string(dims[0]) + " images in " + images);
  d.labels.resize(ldims[0]);
  for (std::int64_t i = 0; i < ldims[0]; ++i) d.labels[i] = static_cast<std::uint8_t>(lb[loff + i]);
  return d;
}

// ---- x / y arrays from npz or h5 ----------------------------------------------------------

// One array as read from a file: shape, values, dtype class.
struct RawArray {
  std::string name;
  Shape shape;
  std::vector<double> data;
  std::vector<std::int64_t> ints;
  bool integer = false;
  bool uint8 = false;
};

// Fills d from the input arrays (x first, see load_npz) and y. uint8 inputs are images scaled to
// [0, 1]; other integer inputs are kept exactly (float32 holds every integer up to 2^24).
void assign_arrays(Dataset& d, const std::string& file, std::vector<RawArray> inputs, RawArray y) {
  if (y.shape.empty()) fail(file, "y must have a leading sample dimension, got a scalar");
  d.source = file;
  for (std::size_t a = 0; a < inputs.size(); ++a) {
    RawArray& in = inputs[a];
    if (in.shape.empty()) fail(file, in.name + " must have a leading sample dimension, got a scalar");
    if (in.shape[0] != y.shape[0])
      fail(file, in.name + " has " + std::to_string(in.shape[0]) + " samples but y has " + std::to_string(y.shape[0]));
    const bool exact = in.integer && !in.uint8;
    std::vector<float> v(in.data.size());
    const double scale = in.uint8 ? 1.0 / 255.0 : 1.0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (exact && (in.ints[i] > kMaxExactDataInteger || in.ints[i] < -kMaxExactDataInteger))
        fail(file, "array '" + in.name + "' holds the integer " + std::to_string(in.ints[i]) +
                       ", beyond 2^24 (integer data is kept exactly as float32)");
      v[i] = static_cast<float>(in.data[i] * scale);
    }
    Shape sample(in.shape.begin() + 1, in.shape.end());
    if (a == 0) {
      d.x_name = in.name;
      d.x_integer = exact;
      d.sample_shape = std::move(sample);
      d.x = std::move(v);
    } else {
      d.more.push_back({in.name, std::move(sample), std::move(v), exact});
    }
  }
  if (y.integer) {
    d.label_shape.assign(y.shape.begin() + 1, y.shape.end());
    d.labels = std::move(y.ints);
  } else {
    d.target_shape.assign(y.shape.begin() + 1, y.shape.end());
    d.targets.assign(y.data.begin(), y.data.end());
  }
}

// The input arrays among `names`: `x` alone if present (other arrays are then ignored, as before
// models had several inputs), else every array but `y`, in name order.
std::vector<std::string> input_names(std::vector<std::string> names, const std::string& file) {
  std::sort(names.begin(), names.end());
  if (std::find(names.begin(), names.end(), "x") != names.end()) return {"x"};
  std::vector<std::string> r;
  for (const auto& n : names)
    if (n != "y") r.push_back(n);
  if (r.empty()) fail(file, "no input array (expected 'x', or arrays named after the model's inputs, and 'y')");
  return r;
}

bool numeric_dtype_ok(const NpyArray& a) {
  const std::string& t = a.dtype;
  return t == "<f4" || t == "<f8" || t == "|u1" || t == "<i8" || t == "<i4" || t == "|i1" || t == "<u4" ||
         t == "|b1";
}

RawArray npz_array(const NpzFile& z, const std::string& path, const std::string& name) {
  const NpyArray& a = z.get(name);
  if (!numeric_dtype_ok(a) || a.is_string()) fail(path, "array '" + name + "' has unsupported dtype '" + a.dtype + "'");
  return {name, a.shape, a.data, a.ints, a.is_int(), a.dtype == "|u1"};
}

Dataset load_npz(const std::string& path) {
  require_file(path);
  NpzFile z(path);
  if (!z.has("y")) fail(path, "no array 'y' (expected arrays x and y)");
  std::vector<RawArray> inputs;
  for (const auto& n : input_names(z.names(), path)) inputs.push_back(npz_array(z, path, n));
  Dataset d;
  assign_arrays(d, path, std::move(inputs), npz_array(z, path, "y"));
  return d;
}

RawArray read_h5_array(const h5::Object& file, const std::string& path, const std::string& name) {
  if (!file.exists(name)) fail(path, "no dataset '" + name + "' (expected datasets /x and /y)");
  const h5::ElementType type = file.element_type(name);
  h5::ArrayLimits limits;
  limits.max_elements = kMaxDataValues;
  RawArray a;
  a.name = name;
  h5::Array<double> values = file.read_f64(name, limits);
  for (auto v : values.shape) a.shape.push_back(static_cast<std::int64_t>(v));
  a.data = std::move(values.data);
  a.integer = type.integer;
  a.uint8 = type.integer && type.bytes == 1 && !type.is_signed;
  if (a.integer) a.ints = file.read_i64(name, limits).data;
  return a;
}

Dataset load_h5(const std::string& path) {
  require_file(path);
  Dataset d;
  // First in a child process: libhdf5 can crash or loop on corrupt metadata (hdf5_probe.h).
  h5::internal::guarded(path, [&] {
    const h5::Object f = h5::Object::open(path);
    RawArray y = read_h5_array(f, path, "/y");
    std::vector<std::string> names;
    for (const auto& n : f.children())
      if (f.open_object(n).is_dataset()) names.push_back(n);
    std::vector<RawArray> inputs;
    for (const auto& n : input_names(names, path)) {
      inputs.push_back(read_h5_array(f, path, "/" + n));
      inputs.back().name = n;
    }
    d = Dataset();
    assign_arrays(d, path, std::move(inputs), std::move(y));
  });
  return d;
}

// ---- random:CxHxW:CLASSES[:N] ---------------------------------------------------------------

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> r;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) r.push_back(cur);
  return r;
}

std::int64_t parse_positive(const std::string& s, const std::string& spec, const char* what) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v <= 0)
    throw std::invalid_argument(spec + ": " + what + " must be a positive integer, got '" + s + "'");
  return v;
}

Dataset make_random(const std::string& spec, std::uint64_t seed) {
  const auto parts = split(spec, ':');
  if (parts.size() < 3 || parts.size() > 4) throw std::invalid_argument(spec + ": expected random:CxHxW:CLASSES[:N]");
  Dataset d;
  d.source = spec;
  for (const auto& s : split(parts[1], 'x')) d.sample_shape.push_back(parse_positive(s, spec, "a dimension"));
  if (d.sample_shape.empty()) throw std::invalid_argument(spec + ": empty sample shape");
  const std::int64_t classes = parse_positive(parts[2], spec, "CLASSES");
  const std::int64_t n = parts.size() == 4 ? parse_positive(parts[3], spec, "N") : 256;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  d.x.resize(static_cast<std::size_t>(n * numel(d.sample_shape)));
  for (auto& v : d.x) v = static_cast<float>(normal(rng));
  d.labels.resize(n);
  for (std::int64_t i = 0; i < n; ++i) d.labels[i] = i % classes;
  return d;
}

void check_finite(const Dataset& d) {
  const std::int64_t per = numel(d.sample_shape);
  for (std::size_t i = 0; i < d.x.size(); ++i)
    if (!std::isfinite(d.x[i]))
      fail(d.source,
           std::string(std::isnan(d.x[i]) ? "NaN" : "Inf") + " in x (sample " + std::to_string(i / per) + ")");
  for (const auto& a : d.more) {
    const std::int64_t aper = std::max<std::int64_t>(1, numel(a.sample_shape));
    for (std::size_t i = 0; i < a.values.size(); ++i)
      if (!std::isfinite(a.values[i]))
        fail(d.source, std::string(std::isnan(a.values[i]) ? "NaN" : "Inf") + " in " + a.name + " (sample " +
                           std::to_string(i / aper) + ")");
  }
  const std::int64_t tper = std::max<std::int64_t>(1, numel(d.target_shape));
  for (std::size_t i = 0; i < d.targets.size(); ++i)
    if (!std::isfinite(d.targets[i]))
      fail(d.source,
           std::string(std::isnan(d.targets[i]) ? "NaN" : "Inf") + " in y (sample " + std::to_string(i / tper) + ")");
}

void normalize(Dataset& d, const DataOptions& o) {
  if (o.mean.empty() && o.std.empty()) return;
  if (d.x_integer)
    throw std::invalid_argument(d.source + ": input '" + d.x_name + "' holds integers (token ids); it cannot be normalized");
  const std::int64_t channels = d.sample_shape.empty() ? 1 : d.sample_shape[0];
  auto fits = [&](std::size_t k) { return k == 1 || static_cast<std::int64_t>(k) == channels; };
  if (!fits(o.mean.size()) || !fits(o.std.size()))
    throw std::invalid_argument(d.source + ": the normalization has " + std::to_string(o.mean.size()) + " means and " +
                                std::to_string(o.std.size()) + " stds for " + std::to_string(channels) + " channels");
  const std::int64_t per = numel(d.sample_shape);
  const std::int64_t inner = channels > 0 ? per / channels : 0;
  for (std::size_t i = 0; i < d.x.size(); ++i) {
    const std::size_t c = inner > 0 ? (i % per) / inner : 0;
    const double m = o.mean.size() == 1 ? o.mean[0] : o.mean[c];
    const double s = o.std.size() == 1 ? o.std[0] : o.std[c];
    d.x[i] = static_cast<float>((d.x[i] - m) / s);
  }
}

std::string fashion_mnist_images(const std::string& spec) {
  const std::string part = spec == "fashion-mnist:train" ? "train" : "t10k";
  return std::string(kFashionMnistDir) + "/" + part + "-images-idx3-ubyte.gz";
}

bool is_idx(const std::string& spec) { return ends_with(spec, "idx3-ubyte") || ends_with(spec, "idx3-ubyte.gz"); }

Dataset load_any(const std::string& spec, const DataOptions& opts) {
  Dataset d;
  if (spec == "fashion-mnist:train" || spec == "fashion-mnist:test") {
    d = load_idx(fashion_mnist_images(spec));
    d.source = spec;
  } else if (spec.rfind("fashion-mnist:", 0) == 0) {
    throw std::invalid_argument(spec + ": expected fashion-mnist:train or fashion-mnist:test");
  } else if (spec.rfind("random:", 0) == 0) {
    d = make_random(spec, opts.seed);
  } else if (ends_with(spec, ".npz")) {
    d = load_npz(spec);
  } else if (ends_with(spec, ".h5") || ends_with(spec, ".hdf5")) {
    d = load_h5(spec);
  } else if (is_idx(spec)) {
    d = load_idx(spec);
  } else {
    require_file(spec);
    fail(spec,
         "unknown dataset format (expected .npz, .h5, *-images-idx3-ubyte[.gz], fashion-mnist:train|test or "
         "random:CxHxW:CLASSES[:N])");
  }
  return d;
}

}  // namespace

std::vector<std::string> dataset_files(const std::string& spec) {
  if (spec.rfind("random:", 0) == 0) return {};
  const std::string images = spec.rfind("fashion-mnist:", 0) == 0 ? fashion_mnist_images(spec) : spec;
  if (is_idx(images)) return {images, labels_beside(images)};
  return {spec};
}

Dataset load_all_samples(const std::string& spec, const DataOptions& opts) {
  Dataset d;
  try {
    d = load_any(spec, opts);
  } catch (const std::bad_alloc&) {
    fail(spec, "the dataset does not fit in memory");
  }
  check_finite(d);
  return d;
}

Dataset select_samples(const Dataset& all, const DataOptions& opts) {
  const std::string& spec = all.source;
  if (opts.offset < 0 || opts.samples < 0)
    throw std::invalid_argument(spec + ": the sample offset (= " + std::to_string(opts.offset) +
                                ") and count (= " + std::to_string(opts.samples) + ") must be >= 0");
  const std::int64_t n = all.size();
  if (opts.offset > n)
    throw std::invalid_argument(spec + ": sample offset " + std::to_string(opts.offset) + " is past the " +
                                std::to_string(n) + " samples");
  const std::int64_t count = opts.samples == 0 ? n - opts.offset : std::min(opts.samples, n - opts.offset);
  Dataset d = opts.offset != 0 || count != n ? all.subset(opts.offset, count) : all;
  d.source = spec;
  normalize(d, opts);
  if (opts.classes > 0) {
    if (!d.classification())
      throw std::invalid_argument(spec + ": relabelling to " + std::to_string(opts.classes) +
                                  " classes needs integer labels, the data has float targets");
    for (auto& y : d.labels) y = y >= 0 ? y % opts.classes : y;
  }
  return d;
}

Dataset load_dataset(const std::string& spec, const DataOptions& opts) {
  Dataset all = load_all_samples(spec, opts);
  // Without a selection the samples move instead of being copied.
  if (opts.offset == 0 && opts.samples == 0 && opts.mean.empty() && opts.std.empty() && opts.classes == 0) {
    return all;
  }
  return select_samples(all, opts);
}

void parse_normalize(const std::string& text, DataOptions& opts) {
  const auto slash = text.find('/');
  if (slash == std::string::npos)
    throw std::invalid_argument("normalization: expected MEAN[,MEAN..]/STD[,STD..], got '" + text + "'");
  auto list = [&](const std::string& s) {
    std::vector<double> r;
    for (const auto& p : split(s, ',')) {
      std::size_t used = 0;
      double v = 0;
      try {
        v = std::stod(p, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (p.empty() || used != p.size())
        throw std::invalid_argument("normalization: '" + p + "' is not a number in '" + text + "'");
      r.push_back(v);
    }
    return r;
  };
  opts.mean = list(text.substr(0, slash));
  opts.std = list(text.substr(slash + 1));
  if (opts.mean.empty() || opts.std.empty()) throw std::invalid_argument("normalization: empty list in '" + text + "'");
  for (double s : opts.std)
    if (!(s > 0)) throw std::invalid_argument("normalization: std must be > 0, got " + std::to_string(s));
}

}  // namespace curv
