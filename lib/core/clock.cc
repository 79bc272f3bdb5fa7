#include "core/clock.h"

#include <sys/random.h>

#include <time.h>

namespace braid::core {

uint64_t randomNonZero() noexcept {
  uint64_t v = 0;
  while (v == 0)
    if (getrandom(&v, sizeof v, 0) != sizeof v) v = nowNs() * 0x9E3779B97F4A7C15ull;
  return v;
}

}  // namespace braid::core
