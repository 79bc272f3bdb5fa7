// lib/transport/scheduler.h — the striping planner: which rail carries which byte range.
//
// A pure function of the message size and a snapshot of each rail, so it is tested alone.
// This version splits evenly over healthy rails and hands each chunk to the rail with
// the fewest bytes queued (a slow rail drains slower and so gets fewer chunks); the
// adaptive, congestion-aware planner of the multi-rail issue replaces plan() behind the
// same interface.
#pragma once

#include <cstdint>
#include <vector>

namespace braid::transport {

/// What the planner knows about one rail.
struct RailSnapshot {
  uint32_t rail = 0;            ///< index in the endpoint
  uint32_t lanes = 1;           ///< parallel lanes (TCP sockets, QPs) on this rail
  uint64_t bytesInFlight = 0;   ///< queued or unacknowledged bytes now
  double throughputEwma = 0;    ///< delivered bytes/s (0: unknown)
  bool healthy = true;
};

/// One planned piece: bytes [offset, offset+length) go on `rail`.
struct Chunk {
  uint32_t rail = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct SchedulerConfig {
  uint64_t chunkSize = 512 * 1024;  ///< upper bound of a chunk
  uint64_t minChunk = 64 * 1024;    ///< do not split below this
  uint64_t align = 128;             ///< chunk boundaries are multiples (NCCL LL128)
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig cfg = {}) : cfg_(cfg) {}
  /// Appends the plan for `bytes` to `out` (cleared first). Empty when no rail is healthy.
  void plan(uint64_t bytes, const std::vector<RailSnapshot>& rails, std::vector<Chunk>& out) const;
  const SchedulerConfig& config() const { return cfg_; }

 private:
  SchedulerConfig cfg_;
};

}  // namespace braid::transport
