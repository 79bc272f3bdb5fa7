// perf/stats.h — message buffers, the clock, and the figures of a run: bandwidth (average
// and peak, and on which side they were measured) and latency statistics. Public API only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "braid/status.h"

namespace braid::perf {

/// Page-aligned, pre-touched memory (so page faults stay out of the timed loop).
class Buffer {
 public:
  static Result<Buffer> allocate(size_t bytes);
  uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t n_ = 0;
};

inline uint64_t nowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

/// Where a bandwidth figure was measured: the side the data leaves or the side it lands on.
enum class Side : uint8_t { kSender, kReceiver };
inline const char* sideName(Side s) {
  return s == Side::kSender ? "sender" : "receiver";
}

struct BwRow {
  uint64_t bytes = 0;  ///< message size
  uint64_t iters = 0;
  double peakBps = 0;         ///< bytes per second, best interval (never below the average)
  double avgBps = 0;          ///< bytes per second, the whole timed interval
  double msgRate = 0;         ///< messages per second
  uint64_t elapsedNs = 0;     ///< the timed interval
  Side side = Side::kSender;  ///< where these figures were measured
  std::vector<uint64_t> bytesPerRail;  ///< sender: payload bytes each rail carried (JSON)
  /// braid_send_bw's client: the receiver's own figures of the same size, for comparison.
  struct Other {
    Side side = Side::kReceiver;
    double peakBps = 0, avgBps = 0;
  };
  std::optional<Other> other;
};

// Bandwidth. The timed interval runs from `startNs`, the end of the warm-up (the last
// warm-up operation's completion, or the receiver's acknowledgement of it), to `endNs`;
// the warm-up's bytes are outside it. Average: the timed bytes over that interval.
//
// Peak: the best rate over an interval of at least a tenth of the run (and 100 us) that
// holds at least max(`window`, a tenth of the timed operations), the whole run included, so
// it is never below the average, and never above ten times it. An interval only counts
// bytes known to have moved inside it, so it cannot exceed what the path carried:

/// Figures of a side that sees when each operation's bytes have landed (a receive
/// completed, a write acknowledged, a read's data here): `landed[k]` for timed operation
/// k. An interval starts at a completion that the next one did not arrive together with:
/// completions reaped in one burst (a signaled write retiring 15 unsignaled ones, a socket
/// read holding many small messages) may have landed before the first of them was seen.
/// Intervals hold at least 2 x `window` operations (the operations in flight) and end
/// before the last `window` ones: those drain in a burst, having moved in good part while
/// earlier ones finished.
BwRow computeBwLanded(uint64_t size, uint64_t startNs, const std::vector<uint64_t>& landed,
                      uint64_t endNs, size_t window, Side side);
/// Figures of a sender that cannot see its bytes land (a TCP send finishes once the kernel
/// has the bytes, an eager send once copied) except through the receiver's end of size at
/// `endNs`: `posted[k]` is when timed operation k was posted. Its intervals run from a
/// post to `endNs`: every byte of the operations posted since moved inside them.
BwRow computeBwSent(uint64_t size, uint64_t startNs, const std::vector<uint64_t>& posted,
                    uint64_t endNs, size_t window);

struct LatRow {
  uint64_t bytes = 0;
  uint64_t iters = 0;
  double min = 0, max = 0, typical = 0, avg = 0, stdev = 0, p99 = 0, p999 = 0;  ///< usec
};
/// Statistics of one-way latency samples in microseconds (t_typical is the median).
LatRow computeLat(uint64_t size, std::vector<double> usec);

}  // namespace braid::perf
