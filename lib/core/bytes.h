// lib/core/bytes.h — byte copies for the small messages of the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace braid::core {

/// memcpy for a length known only at run time that is usually tiny (an eager payload):
/// up to 16 bytes in a few register moves (two overlapping loads and stores), longer ones
/// by memcpy. A library call per 8-byte message costs more than the copy itself.
inline void copyBytes(void* dst, const void* src, size_t n) noexcept {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  if (n > 16) {
    std::memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(d, &a, 8);
    std::memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(d, &a, 4);
    std::memcpy(d + n - 4, &b, 4);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

}  // namespace braid::core
