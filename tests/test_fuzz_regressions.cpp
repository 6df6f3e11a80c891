// Regression tests for what the fuzzers found (fuzz/, scripts/fuzz.sh).
//
// Every reproducer under tests/data/fuzz/<target>/ replays through the very target that found it
// (curv::fuzz::run_target, fuzz/fuzz_targets.cpp): the loader must accept the file or throw
// std::runtime_error / std::invalid_argument naming it, and what a user does next with a loaded
// model or dataset (evaluate, gradient, HVP, convert, export) must not crash or throw anything
// else. Findings are thrown as curv::fuzz::Finding here, so a regression fails its test instead
// of aborting; a crash still takes the test binary down, which CTest reports as a failure too.
//
// A new finding that is not fixed yet goes into kOpen below (skipped by the sweep) with its own
// TEST_CASE marked doctest::skip(); when the loader is fixed, both marks go. All findings so far
// are fixed: each has a TEST_CASE at the end saying what used to happen.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_harness.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRepro = fs::path(CURV_SOURCE_DIR) / "tests" / "data" / "fuzz";
const fs::path kSeeds = fs::path(CURV_SOURCE_DIR) / "fuzz" / "corpus";

// Reproducers of open findings ("<target>/<file>"): skipped by the sweep below until fixed. When
// a loader is fixed, delete its line here and the doctest::skip() of its TEST_CASE at the end.
const std::vector<std::string> kOpen = {};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Replays one file through `target` with findings thrown and loader messages required to name
// the file. Returns whether the loader accepted it.
bool replay(const std::string& target, const fs::path& file) {
  INFO("target " << target << ", input " << file.string());
  curv::fuzz::set_finding_mode(curv::fuzz::OnFinding::Throw, /*strict=*/true);
  const std::string bytes = read_bytes(file);
  bool loaded = false;
  CHECK_NOTHROW(loaded =
                    curv::fuzz::run_target(target, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  return loaded;
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> r;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) r.push_back(e.path());
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace

TEST_CASE("fuzz seeds: every seed of fuzz/corpus loads through its target without a finding") {
  int seeds = 0;
  for (const auto& target : curv::fuzz::target_names()) {
    for (const auto& file : files_in(kSeeds / target)) {
      INFO("seed " << file.string());
      CHECK(replay(target, file));  // seeds are valid inputs: the loader must accept them
      ++seeds;
    }
  }
  CHECK(seeds >= 15);
}

TEST_CASE("fuzz regressions: every fixed reproducer is rejected cleanly or loads and runs") {
  int replayed = 0;
  for (const auto& target : curv::fuzz::target_names()) {
    for (const auto& file : files_in(kRepro / target)) {
      const std::string key = target + "/" + file.filename().string();
      if (std::find(kOpen.begin(), kOpen.end(), key) != kOpen.end()) continue;
      replay(target, file);
      ++replayed;
    }
  }
  MESSAGE("replayed " << replayed << " reproducers (" << kOpen.size() << " open findings skipped)");
}

TEST_CASE("fuzz harness: a loader error outside the contract is a finding, a clean one is not") {
  // An empty .npz is not a zip archive: load_dataset must throw std::runtime_error naming it.
  curv::fuzz::set_finding_mode(curv::fuzz::OnFinding::Throw, true);
  CHECK_FALSE(curv::fuzz::run_target("npz", nullptr, 0));
  CHECK_THROWS_AS(curv::fuzz::guarded("x.npz", [] { throw std::out_of_range("vector::at"); }), curv::fuzz::Finding);
  CHECK_THROWS_AS(curv::fuzz::guarded("x.npz", [] { throw std::runtime_error("no file name"); }), curv::fuzz::Finding);
  CHECK_FALSE(curv::fuzz::guarded("x.npz", [] { throw std::runtime_error("x.npz: truncated"); }));
  CHECK_THROWS_AS(curv::fuzz::run_target("nope", nullptr, 0), std::invalid_argument);
}

// ---- fixed findings ---------------------------------------------------------------------------
// One TEST_CASE per finding. The comments say what used to happen (with the sanitizers of
// build-fuzz/); the tests check what happens now.

namespace {
bool replay_finding(const std::string& key) { return replay(key.substr(0, key.find('/')), kRepro / key); }
}  // namespace

// ONNX (owner: ops/io). Crash in curv code after a successful import.
TEST_CASE("fuzz finding: onnx convert of a model with an empty tensor calls memcmp on null (UBSan, same_op)") {
  replay_finding("onnx/convert_same_op_memcmp_null.onnx");  // load may succeed; convert must not be UB
}
// A name with invalid UTF-8 imports, then save_checkpoint's JSON dump of /graph throws
// nlohmann::json::type_error 316 (outside the contract; `curv convert` prints it without the file).
TEST_CASE("fuzz finding: onnx names that are not UTF-8 are rejected on import, naming the file") {
  CHECK_FALSE(replay_finding("onnx/convert_invalid_utf8_name_json.onnx"));
}
// ONNX attribute sweep: strides = 0 divides by zero when the op is built (SIGFPE in `curv info`).
TEST_CASE("fuzz finding: onnx Conv with strides 0 is rejected naming the node, not SIGFPE") {
  CHECK_FALSE(replay_finding("onnx/conv_stride0.onnx"));
}
TEST_CASE("fuzz finding: onnx MaxPool with strides 0 is rejected naming the node, not SIGFPE") {
  CHECK_FALSE(replay_finding("onnx/maxpool_stride0.onnx"));
}
TEST_CASE("fuzz finding: onnx AveragePool with strides 0 is rejected naming the node, not SIGFPE") {
  CHECK_FALSE(replay_finding("onnx/avgpool_stride0.onnx"));
}
// Attribute sweep replayed through the ASan fuzz target (scripts/onnx_attribute_sweep.py --fuzzer).
// MaxPool kernel_shape 0 (or -1) imports, then the backward pass writes past its buffer
// (heap-buffer-overflow in PoolOp::bwd); a Release `curv eval` prints numbers and exits 0.
TEST_CASE("fuzz finding: onnx MaxPool with kernel_shape 0 is rejected, not a heap overflow at backward") {
  CHECK_FALSE(replay_finding("onnx/maxpool_kernel0_heap_overflow.onnx"));
}
// Sizes near 2^62 overflow int64 in out_size (ops_conv.cpp) and group * channels (ConvOp), and
// pads of 2^31 overflow numel of the output shape (UBSan).
TEST_CASE("fuzz finding: onnx Conv pads, dilations and group near 2^62 are rejected, not int64 overflow") {
  CHECK_FALSE(replay_finding("onnx/conv_pads_2e62_overflow.onnx"));
  CHECK_FALSE(replay_finding("onnx/conv_dilations_2e62_overflow.onnx"));
  CHECK_FALSE(replay_finding("onnx/conv_group_2e62_overflow.onnx"));
}
TEST_CASE("fuzz finding: onnx AveragePool pads of 2^31 are rejected, not an overflow in numel") {
  CHECK_FALSE(replay_finding("onnx/avgpool_pads_2e31_numel_overflow.onnx"));
}
// Transpose perm of the wrong length: import_onnx throws std::out_of_range (vector::at).
TEST_CASE("fuzz finding: onnx Transpose perm of the wrong length is rejected naming the node") {
  CHECK_FALSE(replay_finding("onnx/transpose_perm0_out_of_range.onnx"));
}
// A model whose logits are not [N, C] (ReduceMean over the wrong axis, Squeeze without axes)
// with integer labels [N]: Objective::create accepts it and loss_forward reads past the labels
// (heap-buffer-overflow); `curv eval` prints "label 193 out of range" without a file name.
// Now the model imports and Objective::create refuses its output (tests/test_op_specs.cpp).
TEST_CASE("fuzz finding: a model output without the batch axis first is refused by the objective") {
  replay_finding("onnx/reducemean_axes0_loss_overflow.onnx");
  replay_finding("onnx/squeeze_no_axes_loss_overflow.onnx");
}

// npz (owner: io). A 586-byte archive declares a 4 GB entry, allocated before reading (npz.cpp).
TEST_CASE("fuzz finding: npz entry size from the zip directory is checked before it is allocated") {
  CHECK_FALSE(replay_finding("npz/entry_size_alloc.npz"));
}

// A malformed shape in a .npy header: std::invalid_argument("stoll") escapes without the file name
// (as `curv: stoll` on the command line). Found with CURV_FUZZ_STRICT=1.
TEST_CASE("fuzz finding: npz with a malformed .npy shape fails with a message naming the file") {
  CHECK_FALSE(replay_finding("npz/npy_shape_stoll_no_file_name.npz"));
}

// IDX (owner: io). The product of the header dims overflows int64 (UBSan, read_idx).
TEST_CASE("fuzz finding: idx header dims whose product overflows are rejected") {
  CHECK_FALSE(replay_finding("idx/dims_product_overflow.idx"));
}
// Session 18 (scripts/fuzz.sh 120): zero images of 2^32 - 1 x 2^32 - 2 pixels. The dims' product is
// 0, so the size check passed, and the per-image size overflowed later (UBSan: numel in
// check_finite). The same hole was in the npz and h5 loaders (the two files below, made by hand)
// and in checked_numel: every size check now multiplies the nonzero dims.
TEST_CASE("fuzz finding: zero samples of an absurd size are rejected (idx, npz, h5)") {
  CHECK_FALSE(replay_finding("idx/zero_images_huge_plane.idx"));
  CHECK_FALSE(replay_finding("npz/zero_samples_huge_sample.npz"));
  CHECK_FALSE(replay_finding("h5data/zero_samples_huge_sample.h5"));
}

// HDF5 datasets (owner: io). Sizes from the file are trusted (read_h5_array).
TEST_CASE("fuzz finding: h5 dataset dims are checked against the storage before allocating") {
  CHECK_FALSE(replay_finding("h5data/dims_alloc_huge.h5"));    // ASan: allocation-size-too-big
  CHECK_FALSE(replay_finding("h5data/dims_length_error.h5"));  // std::length_error escapes the loader
}
TEST_CASE("fuzz finding: h5 dataset dims whose product overflows are rejected") {
  CHECK_FALSE(replay_finding("h5data/dims_numel_overflow.h5"));  // UBSan: signed overflow in numel
}
// Crashes inside libhdf5 1.10.8 (Debian) on crafted files: the loader must refuse them before the
// call that crashes where it can (type precision/offset, storage size, object header sizes).
TEST_CASE("fuzz finding: h5 dataset whose object header crashes H5Dopen2 (libhdf5 SEGV)") {
  CHECK_FALSE(replay_finding("h5data/libhdf5_dopen_segv.h5"));
}
TEST_CASE("fuzz finding: h5 dataset whose integer type crashes the conversion in H5Dread (libhdf5 BUS)") {
  CHECK_FALSE(replay_finding("h5data/libhdf5_conv_bitcopy_bus.h5"));
}
TEST_CASE("fuzz finding: h5 dataset whose storage crashes H5Dread (libhdf5 SEGV in H5VM_memcpyvv)") {
  CHECK_FALSE(replay_finding("h5data/libhdf5_read_memcpy_segv.h5"));
}
TEST_CASE("fuzz finding: h5 dataset whose metadata makes libhdf5 allocate terabytes (H5C_protect)") {
  CHECK_FALSE(replay_finding("h5data/libhdf5_cache_alloc.h5"));
}

// Checkpoints (owner: io).
TEST_CASE("fuzz finding: checkpoint with a non-finite parameter is rejected naming the tensor") {
  CHECK_FALSE(replay_finding("checkpoint/nonfinite_param.h5"));
}
TEST_CASE("fuzz finding: checkpoint variable-length string attribute with a corrupt length (ASan memcpy overlap)") {
  CHECK_FALSE(replay_finding("checkpoint/vlen_attr_memcpy_overlap.h5"));
}
TEST_CASE("fuzz finding: checkpoint variable-length string attribute that hangs libhdf5 (global heap loop)") {
  CHECK_FALSE(replay_finding("checkpoint/vlen_attr_hang.h5"));
}
TEST_CASE("fuzz finding: checkpoint whose metadata makes libhdf5 allocate terabytes (H5C_protect)") {
  CHECK_FALSE(replay_finding("checkpoint/libhdf5_cache_alloc.h5"));
}
TEST_CASE("fuzz finding: checkpoint whose /meta attributes crash H5Aiterate2 (libhdf5 SEGV in H5A__close)") {
  CHECK_FALSE(replay_finding("checkpoint/libhdf5_meta_attr_iterate_segv.h5"));
}
