#pragma once
/// \file sha256.h
/// SHA-256 (FIPS 180-4), small and dependency-free: identifies the model a plan was made for and
/// the inputs of a study's runs. On x86-64 processors with the SHA extensions the compression
/// function runs on them (chosen at run time, about 4x faster on large files); the digest is the
/// same either way.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace curv {

/// Incremental hasher: update() any number of times, then finish() once.
class Sha256 {
 public:
  using Digest = std::array<std::uint8_t, 32>;
  /// `portable`: never use the SHA extensions (tests compare both paths).
  explicit Sha256(bool portable = false);
  void update(const void* data, std::size_t size);
  /// REQUIRES: called once; the object must not be updated afterwards.
  Digest finish();
  /// Lower-case hex, 64 characters.
  static std::string hex(const Digest& digest);

 private:
  // Compresses n consecutive 64-byte blocks into m_h.
  void blocks(const std::uint8_t* p, std::size_t n);
  std::array<std::uint32_t, 8> m_h;
  std::array<std::uint8_t, 64> m_buf{};
  std::size_t m_buf_len = 0;
  std::uint64_t m_total = 0;  // bytes
  bool m_portable = false;
};

/// Hex digest of a byte string.
std::string sha256_hex(std::string_view data);

/// Hex digest of a regular file's contents; std::runtime_error("<path>: cannot open for reading"),
/// ("<path>: not a regular file") for devices, FIFOs and folders, or ("<path>: read error").
std::string sha256_file(const std::string& path);

/// Hex digest (32 characters) of a regular file's contents by XXH3-128 (xxHash): a content
/// fingerprint at memory speed, not a cryptographic hash. Identifies the input files of a study's
/// runs, where SHA-256 of a large dataset cost more than the study's own bookkeeping. Errors as
/// sha256_file's.
std::string xxh3_128_file(const std::string& path);

}  // namespace curv
