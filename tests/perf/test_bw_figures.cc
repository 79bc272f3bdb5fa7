// The bandwidth figures of the perf tools (perf/stats.h): the average covers the timed
// bytes only, and the peak is a real interval's rate: never below the average, never
// above what the path carried, whatever the completions' bunching.
#include <catch2/catch.hpp>
#include <vector>

#include "stats.h"

namespace braid::perf {
namespace {

constexpr uint64_t kSize = 1 << 20;
constexpr uint64_t kT = 1'000'000;  // ns per message at the link's rate: 1 MiB/ms
constexpr double kLink = static_cast<double>(kSize) * 1e9 / static_cast<double>(kT);
constexpr uint64_t kStart = 5'000'000'000ull;

}  // namespace

TEST_CASE("steady landings give peak = average = the link's rate", "[perf][bw]") {
  std::vector<uint64_t> landed;
  for (uint64_t k = 0; k < 1000; ++k) landed.push_back(kStart + (k + 1) * kT);
  BwRow r = computeBwLanded(kSize, kStart, landed, landed.back(), 16, Side::kReceiver);
  CHECK(r.iters == 1000);
  CHECK(r.avgBps == Approx(kLink));
  CHECK(r.peakBps == Approx(kLink));
  CHECK(r.elapsedNs == 1000 * kT);
  CHECK(r.side == Side::kReceiver);
}

TEST_CASE("completions reaped in bursts do not inflate the peak", "[perf][bw]") {
  // Every 16th operation is signaled: 16 land one kT apart but are seen together.
  std::vector<uint64_t> landed;
  for (uint64_t k = 0; k < 960; ++k) landed.push_back(kStart + (k / 16 + 1) * 16 * kT + k % 16);
  BwRow r = computeBwLanded(kSize, kStart, landed, landed.back(), 16, Side::kSender);
  CHECK(r.avgBps == Approx(kLink).epsilon(1e-3));
  CHECK(r.peakBps >= r.avgBps);
  CHECK(r.peakBps <= kLink * 1.001);
}

// Landing times of `total` messages of one unit each when the `w` in flight share the
// link equally (several sockets or QPs at once), message i+w starting when i lands.
std::vector<uint64_t> sharedLink(uint64_t total, uint64_t w) {
  std::vector<double> remaining;  // of the messages in flight, oldest first
  std::vector<uint64_t> landed;
  double now = 0;
  uint64_t next = 0;
  while (landed.size() < total) {
    while (remaining.size() < w && next < total) remaining.push_back(1.0), ++next;
    // The oldest has the least left; all move at 1/k units per kT each.
    const double k = static_cast<double>(remaining.size());
    now += remaining.front() * k;
    const double least = remaining.front();
    for (double& r : remaining) r -= least;
    remaining.erase(remaining.begin());
    landed.push_back(static_cast<uint64_t>(now * static_cast<double>(kT)));
  }
  return landed;
}

TEST_CASE("the drain at the end of a run does not read as a peak", "[perf][bw]") {
  // Once the last message is posted the ones in flight, moved in good part already, finish
  // ever faster: intervals ending there would read up to twice the link's rate.
  const uint64_t warmup = 16, n = 400;
  std::vector<uint64_t> all = sharedLink(warmup + n, 16);
  std::vector<uint64_t> landed(all.begin() + warmup, all.end());
  BwRow r = computeBwLanded(kSize, all[warmup - 1], landed, landed.back(), 16, Side::kReceiver);
  // The average's own error: the bytes in flight when the warm-up ended (about half a
  // window here) count as timed.
  CHECK(r.avgBps == Approx(kLink).epsilon(0.03));
  CHECK(r.peakBps >= r.avgBps);
  CHECK(r.peakBps <= kLink * 1.03);
}

TEST_CASE("a faster half shows as the peak, bounded by ten times the average", "[perf][bw]") {
  std::vector<uint64_t> landed;
  uint64_t t = kStart;
  for (uint64_t k = 0; k < 1000; ++k) landed.push_back(t += (k < 500 ? 2 * kT : kT));
  BwRow r = computeBwLanded(kSize, kStart, landed, landed.back(), 16, Side::kReceiver);
  CHECK(r.avgBps == Approx(kLink / 1.5));
  CHECK(r.peakBps > 0.95 * kLink);
  CHECK(r.peakBps <= kLink * 1.001);
  CHECK(r.peakBps <= 10 * r.avgBps);
}

TEST_CASE("a run too short for a peak interval reports its average as peak", "[perf][bw]") {
  // -n 16 -t 16: every interval would include the drain.
  std::vector<uint64_t> landed;
  for (uint64_t k = 0; k < 16; ++k) landed.push_back(kStart + (k + 1) * kT);
  BwRow r = computeBwLanded(kSize, kStart, landed, landed.back(), 16, Side::kReceiver);
  CHECK(r.peakBps == r.avgBps);
  CHECK(r.avgBps == Approx(kLink));
  BwRow none = computeBwLanded(kSize, kStart, {}, kStart, 16, Side::kReceiver);
  CHECK(none.iters == 0);
}

TEST_CASE("a sender's intervals run from a post to the receiver's end of size", "[perf][bw]") {
  // A pipeline of 16: operation k is posted when k-16 lands; the link moves one per kT.
  // The sender never sees the landings, only the end of size.
  const uint64_t n = 200, w = 16;
  std::vector<uint64_t> posted;
  for (uint64_t k = 0; k < n; ++k) posted.push_back(kStart + (k + 1 > w ? k + 1 - w : 0) * kT);
  const uint64_t end = kStart + n * kT;
  BwRow r = computeBwSent(kSize, kStart, posted, end, w);
  CHECK(r.side == Side::kSender);
  CHECK(r.avgBps == Approx(kLink));
  CHECK(r.peakBps >= r.avgBps);
  CHECK(r.peakBps <= kLink * 1.001);
  // Sends that finished at once (eager copies, a kernel buffer) change nothing: only
  // posts and the end of size count.
  BwRow early = computeBwSent(kSize, kStart, std::vector<uint64_t>(n, kStart), end, w);
  CHECK(early.peakBps <= kLink * 1.001);
}

}  // namespace braid::perf
