#pragma once
/// \file sha256.h
/// SHA-256 (FIPS 180-4), small and dependency-free: identifies the model a plan was made for.
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
  Sha256();
  void update(const void* data, std::size_t size);
  /// REQUIRES: called once; the object must not be updated afterwards.
  Digest finish();
  /// Lower-case hex, 64 characters.
  static std::string hex(const Digest& digest);

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> m_h;
  std::array<std::uint8_t, 64> m_buf{};
  std::size_t m_buf_len = 0;
  std::uint64_t m_total = 0;  // bytes
};

/// Hex digest of a byte string.
std::string sha256_hex(std::string_view data);

/// Hex digest of a file's contents; std::runtime_error("<path>: cannot open for reading") or
/// ("<path>: read error").
std::string sha256_file(const std::string& path);

}  // namespace curv
