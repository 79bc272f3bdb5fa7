// lib/core/bytes.h — byte copies for the small messages of the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace braid::core {

namespace detail {
/// n bytes, sizeof(T) <= n <= 2 * sizeof(T): the first and the last sizeof(T) (they may
/// overlap) through two registers.
template <typename T>
inline void copyEnds(uint8_t* d, const uint8_t* s, size_t n) noexcept {
  T a, b;
  std::memcpy(&a, s, sizeof a);
  std::memcpy(&b, s + n - sizeof b, sizeof b);
  std::memcpy(d, &a, sizeof a);
  std::memcpy(d + n - sizeof b, &b, sizeof b);
}
}  // namespace detail

/// memcpy for a length known only at run time that is usually tiny (an eager payload):
/// up to 16 bytes in a few register moves (two overlapping loads and stores), longer ones
/// by memcpy. A library call per 8-byte message costs more than the copy itself.
inline void copyBytes(void* dst, const void* src, size_t n) noexcept {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  if (n > 16) {
    std::memcpy(d, s, n);
  } else if (n >= 8) {
    detail::copyEnds<uint64_t>(d, s, n);
  } else if (n >= 4) {
    detail::copyEnds<uint32_t>(d, s, n);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

}  // namespace braid::core
