#include "src/io/sha256.h"

#define XXH_INLINE_ALL  // header-only: libxxhash-dev's header, nothing to link
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define CURV_SHA_NI 1
#endif

namespace curv {

namespace {

constexpr std::array<std::uint32_t, 64> kRound = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// FIPS 180-4 section 6.2.2: message schedule W[0..63], then 64 rounds on (a..h).
void block_portable(std::array<std::uint32_t, 8>& hs, const std::uint8_t* p) {
  std::uint32_t w[64];
  for (int t = 0; t < 16; ++t)
    w[t] = (std::uint32_t(p[4 * t]) << 24) | (std::uint32_t(p[4 * t + 1]) << 16) | (std::uint32_t(p[4 * t + 2]) << 8) |
           std::uint32_t(p[4 * t + 3]);
  for (int t = 16; t < 64; ++t) {
    const std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    const std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  std::uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4], f = hs[5], g = hs[6], h = hs[7];
  for (int t = 0; t < 64; ++t) {
    const std::uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const std::uint32_t ch = (e & f) ^ (~e & g);
    const std::uint32_t t1 = h + S1 + ch + kRound[t] + w[t];
    const std::uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    const std::uint32_t t2 = S0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  hs[0] += a;
  hs[1] += b;
  hs[2] += c;
  hs[3] += d;
  hs[4] += e;
  hs[5] += f;
  hs[6] += g;
  hs[7] += h;
}

#ifdef CURV_SHA_NI
// The same compression on the SHA extensions. sha256rnds2 does two rounds on the state held as
// ABEF and CDGH (A in the highest lane); sha256msg1/msg2 compute the sigma0 and sigma1 terms of
// the schedule W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16], four words at a time.
__attribute__((target("sha,sse4.1,ssse3"))) void blocks_sha_ni(std::array<std::uint32_t, 8>& hs,
                                                                const std::uint8_t* p, std::size_t n) {
  const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i abcd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hs.data()));  // lanes a b c d
  __m128i efgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hs.data() + 4));
  abcd = _mm_shuffle_epi32(abcd, 0xB1);                 // b a d c
  efgh = _mm_shuffle_epi32(efgh, 0x1B);                 // h g f e
  __m128i abef = _mm_alignr_epi8(abcd, efgh, 8);        // f e b a
  __m128i cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);     // h g d c
  for (; n > 0; --n, p += 64) {
    const __m128i abef_in = abef, cdgh_in = cdgh;
    __m128i m[4];  // W[4j .. 4j+3] of the last four groups, m[j % 4]
    for (int j = 0; j < 16; ++j) {
      if (j < 4) {
        m[j] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * j)), byte_swap);
      } else {
        const __m128i w16 = m[j % 4], w12 = m[(j + 1) % 4], w8 = m[(j + 2) % 4], w4 = m[(j + 3) % 4];
        const __m128i t = _mm_add_epi32(_mm_sha256msg1_epu32(w16, w12), _mm_alignr_epi8(w4, w8, 4));
        m[j % 4] = _mm_sha256msg2_epu32(t, w4);
      }
      __m128i k = _mm_add_epi32(m[j % 4], _mm_loadu_si128(reinterpret_cast<const __m128i*>(kRound.data() + 4 * j)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, k);
      k = _mm_shuffle_epi32(k, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, k);
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
  }
  const __m128i abef_r = _mm_shuffle_epi32(abef, 0x1B);  // a b e f
  const __m128i cdgh_r = _mm_shuffle_epi32(cdgh, 0xB1);  // g h c d
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hs.data()), _mm_blend_epi16(abef_r, cdgh_r, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hs.data() + 4), _mm_alignr_epi8(cdgh_r, abef_r, 8));
}

bool has_sha_ni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & (1u << 29));
}
#endif

bool use_sha_ni() {
#ifdef CURV_SHA_NI
  static const bool yes = has_sha_ni();
  return yes;
#else
  return false;
#endif
}

}  // namespace

Sha256::Sha256(bool portable)
    : m_h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19},
      m_portable(portable) {}

void Sha256::blocks(const std::uint8_t* p, std::size_t n) {
#ifdef CURV_SHA_NI
  if (!m_portable && use_sha_ni()) return blocks_sha_ni(m_h, p, n);
#endif
  for (; n > 0; --n, p += 64) block_portable(m_h, p);
}

void Sha256::update(const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  m_total += size;
  if (m_buf_len > 0) {
    const std::size_t take = std::min(size, 64 - m_buf_len);
    std::memcpy(m_buf.data() + m_buf_len, p, take);
    m_buf_len += take;
    p += take;
    size -= take;
    if (m_buf_len < 64) return;
    blocks(m_buf.data(), 1);
    m_buf_len = 0;
  }
  blocks(p, size / 64);
  p += size / 64 * 64;
  size %= 64;
  if (size > 0) std::memcpy(m_buf.data(), p, size);
  m_buf_len = size;
}

Sha256::Digest Sha256::finish() {
  // Padding: 0x80, zeros to 56 mod 64, then the message length in bits, big-endian.
  const std::uint64_t bits = m_total * 8;
  const std::uint8_t one = 0x80;
  update(&one, 1);
  const std::uint8_t zero[64] = {};
  update(zero, m_buf_len <= 56 ? 56 - m_buf_len : 120 - m_buf_len);
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
  update(len, 8);
  Digest d;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) d[4 * i + j] = static_cast<std::uint8_t>(m_h[i] >> (24 - 8 * j));
  return d;
}

namespace {

// Lower-case hex of n bytes.
std::string hex_of(const unsigned char* p, std::size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}

}  // namespace

std::string Sha256::hex(const Digest& digest) { return hex_of(digest.data(), digest.size()); }

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return Sha256::hex(h.finish());
}

namespace {

// Calls add(data, size) over the contents of the regular file `path`, in 1 MiB pieces.
template <class Add>
void read_regular_file(const std::string& path, Add add) {
  // A device (/dev/zero) never ends and a FIFO blocks the open: only regular files are read.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw std::runtime_error(path + ": cannot open for reading");
  if (!std::filesystem::is_regular_file(st)) throw std::runtime_error(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    add(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(path + ": read error");
}

}  // namespace

std::string sha256_file(const std::string& path) {
  Sha256 h;
  read_regular_file(path, [&](const char* p, std::size_t n) { h.update(p, n); });
  return Sha256::hex(h.finish());
}

std::string xxh3_128_file(const std::string& path) {
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  read_regular_file(path, [&](const char* p, std::size_t n) { XXH3_128bits_update(&state, p, n); });
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&state));
  return hex_of(c.digest, sizeof c.digest);
}

}  // namespace curv
