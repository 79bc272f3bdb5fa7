// The Scheduler and RailMonitor against scripted rails, in simulated time. The adaptive runs
// tell the monitor nothing but completions (no nominal speeds, no congestion counters).
// Each case prints its figures on stdout: run `braid_sim_tests` to read them.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <tuple>

#include "sim/rail_sim.h"

using namespace braid::sim;

namespace {

SimConfig config(StripePolicy p, uint32_t messages, uint32_t inFlight = 1,
                 uint64_t bytes = 8 << 20) {
  SimConfig c;
  c.sched.policy = p;
  c.messages = messages;
  c.inFlight = inFlight;
  c.messageBytes = bytes;
  return c;
}

// Throughput after `warmup` completions as a fraction of the oracle at time 0.
double ratio(const std::vector<SimRail>& rails, const SimConfig& c, size_t warmup) {
  SimResult r = simulate(rails, c);
  return r.throughput(warmup) / oracleBps(rails, 0, c);
}

std::vector<SimRail> rails400and100(bool nominal) {
  std::vector<SimRail> rails = {SimRail::constant(400 * kMbit), SimRail::constant(100 * kMbit)};
  if (nominal) {
    rails[0].nominalBps = 400 * kMbit;
    rails[1].nominalBps = 100 * kMbit;
  }
  return rails;
}

bool deliveredWhole(const SimResult& r, uint64_t bytes) {
  for (const auto& m : r.messages) {
    uint64_t sum = 0;
    for (uint64_t b : m.railBytes) sum += b;
    if (sum != bytes || m.doneNs < m.postNs) return false;
  }
  return true;
}

}  // namespace

TEST_CASE(
    "sim: one 8 MiB message in flight over 400 and 100 Mbit/s rails, adaptive reaches 0.9x "
    "the sum and 1.6x roundrobin") {
  const auto rails = rails400and100(false);
  const double adaptive = ratio(rails, config(StripePolicy::kAdaptive, 60), 5);
  const double rr = ratio(rails, config(StripePolicy::kRoundRobin, 60), 5);
  const double single = ratio(rails, config(StripePolicy::kSingle, 60), 5);
  const double weighted = ratio(rails400and100(true), config(StripePolicy::kWeighted, 60), 5);
  const double weightedBlind = ratio(rails, config(StripePolicy::kWeighted, 60), 5);
  SimResult a = simulate(rails, config(StripePolicy::kAdaptive, 60));
  const double slowShare = a.share(1, a.messages[5].postNs, UINT64_MAX);
  std::printf(
      "sim 400+100 Mbit/s, 8 MiB, -t 1, x the oracle (sum of rails): adaptive %.3f, "
      "weighted %.3f (no nominal speeds: %.3f), roundrobin %.3f, single %.3f; "
      "adaptive/roundrobin %.2f; adaptive puts %.1f%% on the 100 Mbit/s rail\n",
      adaptive, weighted, weightedBlind, rr, single, adaptive / rr, 100 * slowShare);
  CHECK(deliveredWhole(a, 8 << 20));
  CHECK(adaptive >= 0.90);
  CHECK(adaptive >= 1.6 * rr);
  CHECK(weighted >= 0.90);
  CHECK(slowShare == Approx(0.2).margin(0.02));
}

TEST_CASE("sim: sixteen 8 MiB messages in flight, adaptive stays at 0.9x the sum") {
  const auto rails = rails400and100(false);
  SimResult a = simulate(rails, config(StripePolicy::kAdaptive, 300, 16));
  const double adaptive =
      a.throughput(48) / oracleBps(rails, 0, config(StripePolicy::kAdaptive, 300, 16));
  const double rr = ratio(rails, config(StripePolicy::kRoundRobin, 300, 16), 48);
  std::printf("sim 400+100 Mbit/s, 8 MiB, -t 16, x the oracle: adaptive %.3f, roundrobin %.3f\n",
              adaptive, rr);
  CHECK(deliveredWhole(a, 8 << 20));
  CHECK(adaptive >= 0.90);
}

TEST_CASE("sim: two equal rails carry at least 1.8x one rail") {
  const std::vector<SimRail> one = {SimRail::constant(400 * kMbit)};
  const std::vector<SimRail> two = {SimRail::constant(400 * kMbit), SimRail::constant(400 * kMbit)};
  const SimConfig c = config(StripePolicy::kAdaptive, 60);
  const double x = simulate(two, c).throughput(5) / simulate(one, c).throughput(5);
  std::printf("sim two 400 Mbit/s rails against one, 8 MiB, -t 1: %.3fx\n", x);
  CHECK(x >= 1.8);
}

TEST_CASE("sim: the share of a rail whose rate drops 4x follows within a second") {
  std::vector<SimRail> rails = {SimRail::constant(400 * kMbit), SimRail::constant(400 * kMbit)};
  const uint64_t drop = 3 * kSec;
  rails[1].rates.push_back({drop, 100 * kMbit});
  SimResult r = simulate(rails, config(StripePolicy::kAdaptive, 100));
  REQUIRE(r.messages.back().postNs > drop + 4 * kSec);
  const double before = r.share(1, kSec, drop);
  const double after = r.share(1, drop + kSec, UINT64_MAX);
  // The first message after the drop planned with a share within 5 points of the new one.
  uint64_t followedNs = UINT64_MAX;
  for (const auto& m : r.messages)
    if (m.postNs >= drop && r.share(1, m.postNs, m.postNs + 1) < 0.25) {
      followedNs = m.postNs - drop;
      break;
    }
  std::printf(
      "sim rail 1 drops from 400 to 100 Mbit/s at 3 s: its share %.1f%% before, %.1f%% "
      "from 1 s after (fair: 20%%), below 25%% after %.0f ms; in 250 ms windows:",
      100 * before, 100 * after, static_cast<double>(followedNs) / kMs);
  for (uint64_t t = drop - 250 * kMs; t < drop + 1500 * kMs; t += 250 * kMs)
    std::printf(" %.1f%%", 100 * r.share(1, t, t + 250 * kMs));
  std::printf("\n");
  CHECK(before == Approx(0.5).margin(0.02));
  CHECK(after == Approx(0.2).margin(0.02));
  CHECK(followedNs < kSec);
  CHECK(deliveredWhole(r, 8 << 20));
}

TEST_CASE("sim: a rail that slows to a crawl is left out but probed, and seen when it recovers") {
  std::vector<SimRail> rails = {SimRail::constant(400 * kMbit), SimRail::constant(400 * kMbit)};
  const uint64_t crawl = 2 * kSec, back = 40 * kSec;
  rails[1].rates.push_back({crawl, 2 * kMbit});
  rails[1].rates.push_back({back, 400 * kMbit});
  const SimConfig c = config(StripePolicy::kAdaptive, 320);
  SimResult r = simulate(rails, c);
  REQUIRE(r.messages.back().postNs > back + 5 * kSec);
  // The message in flight at the drop waits for its chunks on the crawling rail.
  uint64_t stall = 0;
  for (const auto& m : r.messages) stall = std::max(stall, m.doneNs - m.postNs);
  const uint64_t settled = 20 * kSec;
  const double crawlShare = r.share(1, settled, back);
  // Throughput while it crawls, against one rail (and a 2 Mbit/s one).
  uint64_t b0 = 0, t0 = 0, b1 = 0, t1 = 0;
  for (const auto& [t, b] : r.progress) {
    if (t < settled) std::tie(t0, b0) = std::pair(t, b);
    if (t < back) std::tie(t1, b1) = std::pair(t, b);
  }
  const double crawlRatio = static_cast<double>(b1 - b0) / (static_cast<double>(t1 - t0) * 1e-9) /
                            oracleBps(rails, settled, c);
  uint64_t seenNs = UINT64_MAX;
  for (const auto& m : r.messages)
    if (m.postNs >= back && r.share(1, m.postNs, m.postNs + 1) > 0.4) {
      seenNs = m.postNs - back;
      break;
    }
  std::printf(
      "sim rail 1 of two 400 Mbit/s crawls at 2 Mbit/s from 2 s to 40 s: the message in "
      "flight at the drop took %.1f s; while it crawls it carries %.2f%% (probes), "
      "throughput %.3f x the oracle; back at 40 s, share above 40%% after %.2f s\n",
      static_cast<double>(stall) / kSec, 100 * crawlShare, crawlRatio,
      static_cast<double>(seenNs) / kSec);
  CHECK(crawlShare > 0);
  CHECK(crawlShare < 0.01);
  CHECK(crawlRatio >= 0.9);
  CHECK(seenNs < 5 * kSec);
  CHECK(deliveredWhole(r, c.messageBytes));
}

TEST_CASE(
    "sim: a failed rail gets nothing, after its recovery a probe share, then its fair share") {
  std::vector<SimRail> rails = {SimRail::constant(400 * kMbit), SimRail::constant(400 * kMbit)};
  const uint64_t fail = 2 * kSec, recover = 4 * kSec;
  rails[1].failAt = {fail};
  rails[1].recoverAt = {recover};
  const SimConfig c = config(StripePolicy::kAdaptive, 100);
  SimResult r = simulate(rails, c);
  REQUIRE(r.messages.back().postNs > recover + 2 * kSec);
  CHECK(deliveredWhole(r, c.messageBytes));
  CHECK(r.resent > 0);  // the chunks in flight on rail 1 when it failed went again on rail 0

  const uint64_t probe =
      static_cast<uint64_t>(c.sched.probeShare * static_cast<double>(c.messageBytes) / 128) * 128;
  int down = 0, probing = 0, probed = 0;
  uint64_t upAgainNs = UINT64_MAX;
  for (const auto& m : r.messages) {
    if (m.postNs >= fail && m.postNs < recover) {
      CHECK(m.health[1] == RailHealth::kDown);
      CHECK(m.railBytes[1] == 0);
      ++down;
    }
    if (m.health[1] == RailHealth::kProbing) {
      CHECK(m.railBytes[1] <= probe);
      ++probing;
      probed += m.railBytes[1] > 0;
    }
    if (m.postNs >= recover && m.health[1] == RailHealth::kUp && upAgainNs == UINT64_MAX)
      upAgainNs = m.postNs - recover;
  }
  const double during = r.share(1, recover, recover + upAgainNs);
  const double later = r.share(1, recover + upAgainNs + 500 * kMs, UINT64_MAX);
  std::printf(
      "sim rail 1 of two 400 Mbit/s fails at 2 s, back at 4 s: %d messages without it, "
      "%d probing (%d with a probe, share %.1f%%), up again after %.0f ms, then share "
      "%.1f%%\n",
      down, probing, probed, 100 * during, static_cast<double>(upAgainNs) / kMs, 100 * later);
  CHECK(down > 10);
  CHECK(probing > 0);
  CHECK(probed == probing);
  CHECK(upAgainNs < kSec);
  CHECK(later == Approx(0.5).margin(0.03));
  CHECK(r.finalHealth[1] == RailHealth::kUp);
}

TEST_CASE("sim: five thousand messages over four lossy rails, each delivered whole") {
  std::vector<SimRail> rails = {SimRail::constant(10e9), SimRail::constant(10e9),
                                SimRail::constant(5e9), SimRail::constant(2.5e9)};
  for (auto& r : rails) r.latencyNs = 5000;
  rails[3].loss = 0.01;
  rails[3].rtoNs = kMs;
  const SimConfig a = config(StripePolicy::kAdaptive, 5000, 4, 1 << 20);
  const SimConfig rr = config(StripePolicy::kRoundRobin, 5000, 4, 1 << 20);
  SimResult ra = simulate(rails, a), rr0 = simulate(rails, rr);
  const double xa = ra.throughput(100) / oracleBps(rails, 0, a);
  const double xr = rr0.throughput(100) / oracleBps(rails, 0, rr);
  std::printf(
      "sim 4 rails (10, 10, 5, 2.5 GB/s, 1%% loss on the last), 1 MiB, -t 4, 5000 "
      "messages: adaptive %.3f x the oracle (%llu chunks, %llu lost), roundrobin %.3f; "
      "adaptive's shares and chunks per rail:",
      xa, static_cast<unsigned long long>(ra.chunks), static_cast<unsigned long long>(ra.lost), xr);
  for (uint32_t i = 0; i < rails.size(); ++i)
    std::printf(" %.1f%% %llu", 100 * ra.share(i, 0, UINT64_MAX),
                static_cast<unsigned long long>(ra.railChunks[i]));
  std::printf("\n");
  CHECK(ra.messages.size() == 5000);
  CHECK(deliveredWhole(ra, 1 << 20));
  CHECK(deliveredWhole(rr0, 1 << 20));
  CHECK(xa > xr);
}
