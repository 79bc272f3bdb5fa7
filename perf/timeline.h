// perf/timeline.h — the bandwidth tools' --timeline FILE: the endpoint's per-rail counters
// sampled every 100 ms during a run, one JSON object per line (JSON Lines), flushed line by
// line so that `tail -f FILE` follows a long run.
//
//   {"t_ms": 0, "start_unix_ms": 1796318851285}
//   {"t_ms": 100.2, "interval_ms": 100.2, "rails": [{"rail": 0, "name": "lo 127.0.0.1 ->
//    127.0.0.1", "state": "up", "bytes": 123456789, "mbit_per_sec": 9856.1,
//    "throughput_mb_per_sec": 1180.3, "congestion": 0.0}, ...]}
//   {"t_ms": 412.0, "event": "rail 1 down", "rail": 1, "state": "down", "previous": "up"}
//   {"t_ms": 398.7, "event": "rail 1 down: system-error: ...", "rail": 1, "state": "down",
//    "cause": "system-error: ..."}
//
// t_ms counts from start() (the first timed message; the first line gives its wall-clock
// time); "bytes" is what the rail carried of this side's sends during the interval that
// ends at t_ms, "mbit_per_sec" that over the interval, "throughput_mb_per_sec" the
// scheduler's measured rate (EWMA, MiB/s; 0 until measured), "congestion" the rail's
// congestion signal (RailStats::congestion). The rail's own state changes
// (RailStats::events: down with its cause, up when it rejoined) come first, each at the
// time it happened; a rail whose sampled state differs from the previous sample's without
// one (probing over: "up") gets an event line at the sample's t_ms. Pure: it is fed
// EndpointStats snapshots and times (the Session does that from its waits), so tests can
// drive it directly. Public API only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "braid/status.h"
#include "braid/transport.h"

namespace braid::perf {

class Timeline {
 public:
  static constexpr uint64_t kPeriodNs = 100'000'000;  ///< one sample per 100 ms

  /// Creates (truncates) `path`. `tool` prefixes the warning of a later failed write.
  static Result<std::unique_ptr<Timeline>> open(const std::string& path, std::string tool);
  ~Timeline();
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  /// Sets the time origin and the counters' baseline; later calls change nothing (with
  /// -a, the timeline spans every size).
  /// `wallMs`: the wall-clock time at `ns` (ms since the Unix epoch, as RailEvent); -1
  /// reads the clock.
  void start(uint64_t ns, const EndpointStats& st, int64_t wallMs = -1);
  bool started() const { return started_; }
  /// When the next sample is due: UINT64_MAX before start(), after finish() or after a
  /// failed write, so a waiter's `now >= nextNs()` is its whole cost.
  uint64_t nextNs() const { return nextNs_; }
  /// Writes the event lines of the rails whose state changed, then the sample line of the
  /// interval since the previous sample, and flushes. Nothing before start().
  void sample(uint64_t ns, const EndpointStats& st);
  /// The last (shorter) interval's sample, then no more (sample() and finish() then write
  /// nothing). Nothing before start().
  void finish(uint64_t ns, const EndpointStats& st);
  /// Sample lines written so far.
  uint64_t samples() const { return samples_; }

 private:
  Timeline(std::FILE* f, std::string path, std::string tool);
  bool writeLine(const std::string& line);

  std::FILE* f_ = nullptr;
  std::string path_, tool_;
  bool started_ = false;
  bool finished_ = false;
  bool failed_ = false;
  uint64_t t0Ns_ = 0, lastNs_ = 0, nextNs_ = UINT64_MAX, samples_ = 0;
  std::vector<uint64_t> lastBytes_;
  std::vector<std::string> lastState_;
  int64_t t0WallMs_ = 0;
  std::vector<int64_t> lastEventMs_;  ///< per rail: the newest RailEvent written
};

}  // namespace braid::perf
