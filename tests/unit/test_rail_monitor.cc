#include <catch2/catch.hpp>

#include "transport/rail_monitor.h"

using namespace braid::transport;

namespace {

constexpr uint64_t kMs = 1'000'000;

RailSnapshot snap(const RailMonitor& m, uint32_t rail) {
  std::vector<RailSnapshot> s;
  m.snapshot(s);
  REQUIRE(rail < s.size());
  return s[rail];
}

// Rail 0 as a serial pipe of `bps` bytes/s and `latencyNs`: posts `n` chunks of `bytes` at
// `t`, completes them in order; returns when the last one completed.
uint64_t burst(RailMonitor& m, uint64_t t, int n, uint64_t bytes, double bps,
               uint64_t latencyNs = 0) {
  for (int i = 0; i < n; ++i) m.chunkPosted(0, bytes, t);
  uint64_t done = t;
  for (int i = 0; i < n; ++i) {
    done = t + latencyNs + static_cast<uint64_t>((i + 1) * static_cast<double>(bytes) / bps * 1e9);
    m.chunkCompleted(0, bytes, t, done);
  }
  return done;
}

}  // namespace

TEST_CASE("rail monitor: throughput is delivered bytes over busy time with many chunks in flight") {
  RailMonitor m(1);
  // 16 chunks of 1 MB at once on a 100 MB/s rail: the last takes 160 ms from its post, which
  // bytes over one chunk's completion time would read as 6 MB/s.
  uint64_t t = burst(m, 0, 16, 1'000'000, 100e6);
  RailSnapshot s = snap(m, 0);
  CHECK(s.throughputEwma == Approx(100e6).epsilon(0.02));
  CHECK(s.bytesInFlight == 0);
  CHECK(s.completionEwmaUs > 10'000);  // queueing included
  // Idle time does not count: a 1 MB chunk each second still reads 100 MB/s.
  for (int k = 0; k < 10; ++k) t = burst(m, t + 1000 * kMs, 1, 1'000'000, 100e6);
  CHECK(snap(m, 0).throughputEwma == Approx(100e6).epsilon(0.02));
}

TEST_CASE("rail monitor: throughput follows a 4x rate drop within half a second") {
  RailMonitor m(1);
  uint64_t t = 0;
  while (t < 1000 * kMs) t = burst(m, t, 4, 256 * 1024, 100e6);
  CHECK(snap(m, 0).throughputEwma == Approx(100e6).epsilon(0.02));
  const uint64_t drop = t;
  while (t < drop + 500 * kMs) t = burst(m, t, 4, 256 * 1024, 25e6);
  CHECK(snap(m, 0).throughputEwma == Approx(25e6).epsilon(0.1));
}

TEST_CASE("rail monitor: tracks bytes in flight and the fixed per-chunk latency") {
  RailMonitor m(1);
  m.chunkPosted(0, 1000, 0);
  m.chunkPosted(0, 3000, 5);
  CHECK(snap(m, 0).bytesInFlight == 4000);
  m.chunkCompleted(0, 1000, 0, 10 * kMs);
  m.chunkCompleted(0, 3000, 5, 20 * kMs);
  CHECK(snap(m, 0).bytesInFlight == 0);
  // Learn the rate, then chunks on an idle 100 MB/s rail with 2 ms of latency each.
  uint64_t t = 100 * kMs;
  for (int k = 0; k < 50; ++k) t = burst(m, t + 10 * kMs, 8, 500'000, 100e6, 2 * kMs);
  RailSnapshot s = snap(m, 0);
  CHECK(s.throughputEwma == Approx(100e6).epsilon(0.1));
  // A floor estimate: the samples scatter with the rate estimate, the filter keeps low ones.
  CHECK(s.latencyUs > 1000);
  CHECK(s.latencyUs < 2500);
}

TEST_CASE("rail monitor: a failed rail is down with nothing in flight, then probes, then is up") {
  RailMonitorConfig c;
  RailMonitor m(2, c);
  m.describe(1, 4, 12.5e6);
  uint64_t t = burst(m, 0, 8, 1'000'000, 100e6);
  m.chunkPosted(0, 1'000'000, t);
  m.railFailed(0, t + kMs);
  RailSnapshot s = snap(m, 0);
  CHECK(s.health == RailHealth::kDown);
  CHECK_FALSE(s.usable());
  CHECK(s.bytesInFlight == 0);
  CHECK(s.throughputEwma == Approx(100e6).epsilon(0.02));  // kept for the recovery
  m.chunkPosted(0, 1000, t + 2 * kMs);                     // ignored while down
  m.chunkCompleted(0, 1'000'000, t, t + 3 * kMs);          // from before the failure
  CHECK(snap(m, 0).bytesInFlight == 0);

  t += 1000 * kMs;
  m.railRecovered(0, t);
  CHECK(m.health(0) == RailHealth::kProbing);
  m.chunkCompleted(0, 1'000'000, t - 500 * kMs, t + kMs);  // stale: ignored
  // Back at a quarter of the old rate: the first sample replaces the estimate.
  t = burst(m, t, 2, 250'000, 25e6);
  CHECK(m.health(0) == RailHealth::kProbing);
  CHECK(snap(m, 0).throughputEwma == Approx(25e6).epsilon(0.05));
  t = burst(m, t, 2, 250'000, 25e6);  // four completions, but only 40 ms since the recovery
  CHECK(m.health(0) == RailHealth::kProbing);
  t = burst(m, t + 100 * kMs, 1, 250'000, 25e6);
  CHECK(m.health(0) == RailHealth::kUp);

  // Describe, congestion, and rails known only by their facts.
  m.congestion(1, 0.4);
  m.congestion(2, 7);
  s = snap(m, 1);
  CHECK(s.rail == 1);
  CHECK(s.lanes == 4);
  CHECK(s.nominalBps == 12.5e6);
  CHECK(s.congestion == 0.4);
  CHECK(s.throughputEwma == 0);
  CHECK(s.health == RailHealth::kUp);
  CHECK(snap(m, 2).congestion == 1);
  CHECK(m.rails() == 3);
  m.railRecovered(1, t);  // not down: no-op
  CHECK(m.health(1) == RailHealth::kUp);
}
