// lib/core/clock.h — monotonic time for deadlines and rates (vDSO clock, no syscall).
#pragma once

#include <cstdint>

namespace braid::core {

/// Monotonic nanoseconds.
uint64_t nowNs() noexcept;
inline uint64_t nowUs() noexcept { return nowNs() / 1000; }
inline uint64_t nowMs() noexcept { return nowNs() / 1000000; }

}  // namespace braid::core
