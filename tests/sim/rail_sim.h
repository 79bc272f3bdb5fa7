// tests/sim/rail_sim.h — a deterministic simulator of messages striped over rails.
//
// Each rail is one pipe: chunks are sent in the order posted, each at the rail's scripted
// rate of that moment (piecewise constant over time), and complete `latencyNs` after their
// last byte left. A lost chunk (probability `loss`, from a seeded generator) blocks the pipe
// for `rtoNs` and is sent again. A rail fails at scripted times: its chunks in flight are
// lost and planned again over the rails left; it comes back at scripted times.
//
// Messages of `messageBytes` are sent `inFlight` at a time; the next is posted when one
// completes. Every message (and every resend) is planned by the real Scheduler from the real
// RailMonitor's snapshots, and the monitor is fed the simulated post, completion, failure
// and recovery events, so the pair is tested as the transport will run it, in simulated
// time: thousands of messages take milliseconds.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "transport/rail_monitor.h"
#include "transport/scheduler.h"

namespace braid::sim {

using transport::RailHealth;
using transport::RailMonitorConfig;
using transport::SchedulerConfig;
using transport::StripePolicy;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1'000'000'000;
constexpr double kMbit = 1e6 / 8;  ///< bytes/s

struct SimRail {
  std::vector<std::pair<uint64_t, double>> rates;  ///< (from ns, bytes/s > 0), from 0, sorted
  uint64_t latencyNs = 50'000;
  double loss = 0;                  ///< probability that a chunk is lost (once) and sent again
  uint64_t rtoNs = 5 * kMs;         ///< how long a loss blocks the pipe
  std::vector<uint64_t> failAt;     ///< the rail fails at these times ...
  std::vector<uint64_t> recoverAt;  ///< ... and comes back at these
  double nominalBps = 0;            ///< told to the monitor (the weighted policy's input)

  static SimRail constant(double bps) {
    SimRail r;
    r.rates = {{0, bps}};
    return r;
  }
  double rateAt(uint64_t ns) const;
  bool upAt(uint64_t ns) const;
};

struct SimConfig {
  SchedulerConfig sched;
  RailMonitorConfig monitor;
  uint64_t messageBytes = 8 << 20;
  uint32_t messages = 100;
  uint32_t inFlight = 1;
  uint64_t seed = 1;
};

struct SimMessage {
  uint64_t postNs = 0;
  uint64_t doneNs = 0;
  std::vector<uint64_t> railBytes;  ///< bytes delivered on each rail
  std::vector<RailHealth> health;   ///< each rail's health when the message was planned
};

struct SimResult {
  std::vector<SimMessage> messages;
  /// (completion time, bytes delivered so far) at each message's completion, in time order.
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  uint64_t chunks = 0;               ///< chunks posted
  std::vector<uint64_t> railChunks;  ///< chunks posted on each rail
  uint64_t lost = 0;                 ///< of which lost once and sent again on their rail
  uint64_t resent = 0;               ///< bytes planned again after a rail failed
  std::vector<RailHealth> finalHealth;

  /// Delivered bytes/s from the `warmup`-th completion to the last.
  double throughput(size_t warmup) const;
  /// Share of `rail` in the bytes of the messages posted in [fromNs, toNs).
  double share(uint32_t rail, uint64_t fromNs, uint64_t toNs) const;
};

/// Runs the scripted rails under cfg (the policy is cfg.sched.policy).
SimResult simulate(const std::vector<SimRail>& rails, const SimConfig& cfg);

/// The best throughput at time `ns`: every usable rail busy, one latency per message
/// (hidden behind the others when several are in flight): K*B / (K*B/sum(rates) + latency).
double oracleBps(const std::vector<SimRail>& rails, uint64_t ns, const SimConfig& cfg);

}  // namespace braid::sim
