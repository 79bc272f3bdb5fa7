// lib/core/clock.h — monotonic time for deadlines and rates (vDSO clock, no syscall).
#pragma once

#include <time.h>

#include <cstdint>

namespace braid::core {

/// Monotonic nanoseconds. Inline: busy-polling loops read it.
inline uint64_t nowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
inline uint64_t nowUs() noexcept { return nowNs() / 1000; }
inline uint64_t nowMs() noexcept { return nowNs() / 1000000; }

/// A random non-zero 64-bit value from getrandom(2) (tokens, nonces, endpoint ids); falls
/// back to a scrambled clock if the kernel refuses.
uint64_t randomNonZero() noexcept;

}  // namespace braid::core
