// lib/transport/rail_monitor.h — per-rail estimates for the Scheduler, from completions.
//
// Pure: the transport (or the simulator of tests/sim) feeds it events with their time in
// nanoseconds; it reads no clock and does no I/O. Completion times alone suffice: hardware
// congestion counters, where a host has them, only add a signal.
//
// What it estimates per rail:
// - throughput: delivered bytes over *busy* time (time with at least one chunk in flight),
//   not bytes over one chunk's latency, so it is right with many chunks in flight at once
//   (on one lane or several) and does not fall to 0 for a rail that only gets a probe now
//   and then (idle time does not count). A window closes after `sampleNs` of busy time or
//   when the rail goes idle, and gives a sample; the EWMA weighs it by
//   1 - exp(-busy / rateTauNs), so it follows a rate change within a few rateTauNs of busy
//   time whatever the chunk sizes, and a lone small chunk moves it little.
// - completion time: EWMA of post-to-completion time per chunk (queueing included).
// - latency: the fixed per-chunk cost, from the first completion of each busy period (its
//   chunk started on an idle rail): completion time minus bytes / throughput. A filter that
//   falls fast and rises slowly (1/4 of chunkAlpha), so a chunk held up by a loss does not
//   make the rail look far away. With several lanes started at once a sample reads high by
//   the other lanes' share of the link; the filter mostly keeps the lower ones.
// - health: kUp; kDown after railFailed (nothing in flight any more: the transport resends
//   those chunks elsewhere and their completions, if any come, are ignored); kProbing after
//   railRecovered, and kUp again once the rail has completed `probeCompletions` chunks
//   posted after the recovery, over at least `probeNs`, and given a fresh throughput sample
//   (the first sample after a recovery replaces the old estimate).
#pragma once

#include <cstdint>
#include <vector>

#include "transport/scheduler.h"

namespace braid::transport {

struct RailMonitorConfig {
  uint64_t sampleNs = 10'000'000;    ///< busy time per throughput sample (10 ms)
  uint64_t rateTauNs = 100'000'000;  ///< time constant of the throughput EWMA (busy time)
  double chunkAlpha = 0.125;         ///< weight of one chunk in the completion/latency EWMAs
  uint32_t probeCompletions = 4;     ///< chunks a probing rail completes before kUp ...
  uint64_t probeNs = 100'000'000;    ///< ... over at least this long after its recovery
};

/// Not thread-safe: one owner (an endpoint's worker) feeds and reads it.
class RailMonitor {
 public:
  explicit RailMonitor(uint32_t rails = 0, RailMonitorConfig cfg = {});

  /// Static facts copied into the snapshot (lanes, nominal link speed in bytes/s, 0 unknown).
  void describe(uint32_t rail, uint32_t lanes, double nominalBps);
  /// A chunk of `bytes` was handed to the rail at nowNs. Ignored while the rail is kDown.
  void chunkPosted(uint32_t rail, uint64_t bytes, uint64_t nowNs);
  /// The chunk posted at postedNs completed (acknowledged, or drained for TCP) at nowNs.
  /// Ignored while kDown and for chunks posted before the rail's last recovery.
  void chunkCompleted(uint32_t rail, uint64_t bytes, uint64_t postedNs, uint64_t nowNs);
  /// The rail failed: kDown, nothing in flight. Estimates are kept for its recovery.
  void railFailed(uint32_t rail, uint64_t nowNs);
  /// A failed rail works again: kProbing (no-op unless kDown).
  void railRecovered(uint32_t rail, uint64_t nowNs);
  /// Latest congestion signal, 0 (none) .. 1 (heavy), e.g. from CNP/ECN/retransmit deltas.
  void congestion(uint32_t rail, double signal);

  /// Replaces `out` with one snapshot per rail known (indices 0..rails()-1).
  void snapshot(std::vector<RailSnapshot>& out) const;
  RailHealth health(uint32_t rail) const;
  uint32_t rails() const { return static_cast<uint32_t>(rails_.size()); }

 private:
  struct Rail {
    uint32_t lanes = 1;
    double nominalBps = 0;
    RailHealth health = RailHealth::kUp;
    uint64_t inFlightBytes = 0;
    uint64_t inFlightChunks = 0;
    uint64_t lastNs = 0;       ///< busy time counted up to here
    bool periodStart = false;  ///< the next completion is the first of a busy period
    uint64_t winBytes = 0;     ///< delivered in the current sample window
    uint64_t winBusyNs = 0;    ///< busy time of the current sample window
    double rate = 0;           ///< bytes/s
    double completionUs = 0;
    double latencyUs = 0;
    bool latencyKnown = false;
    double congestion = 0;
    uint64_t epochNs = 0;    ///< completions of chunks posted before are stale
    uint32_t probeDone = 0;  ///< chunks completed since the recovery
    bool fresh = false;      ///< the next rate sample replaces the estimate
  };
  Rail& at(uint32_t rail);
  void accrue(Rail& r, uint64_t nowNs);

  RailMonitorConfig cfg_;
  std::vector<Rail> rails_;
};

}  // namespace braid::transport
