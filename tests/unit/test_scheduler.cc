#include <catch2/catch.hpp>
#include <map>

#include "transport/scheduler.h"

using namespace braid::transport;

namespace {

constexpr double kMbit = 1e6 / 8;  // bytes/s
constexpr StripePolicy kAllPolicies[] = {StripePolicy::kAdaptive, StripePolicy::kWeighted,
                                         StripePolicy::kRoundRobin, StripePolicy::kSingle};

RailSnapshot rail(uint32_t index, uint32_t lanes = 1, uint64_t inFlight = 0, double rate = 0) {
  RailSnapshot r;
  r.rail = index;
  r.lanes = lanes;
  r.bytesInFlight = inFlight;
  r.throughputEwma = rate;
  return r;
}

SchedulerConfig config(StripePolicy p, uint64_t chunk = 512 * 1024) {
  SchedulerConfig c;
  c.chunkSize = chunk;
  c.policy = p;
  return c;
}

// Every byte of [0, bytes) is covered exactly once, in order, within the chunk bounds.
void checkPlan(const std::vector<Chunk>& plan, uint64_t bytes, const SchedulerConfig& c) {
  uint64_t next = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const Chunk& ch = plan[i];
    CHECK(ch.offset == next);
    next += ch.length;
    CHECK(ch.length <= c.chunkSize);
    if (i + 1 < plan.size()) {
      CHECK(ch.length % c.align == 0);
      CHECK(ch.length >= c.minChunk);
    } else if (plan.size() > 1) {
      CHECK(ch.length + c.align > c.minChunk);  // the last one gives back the alignment excess
    }
  }
  CHECK(next == bytes);
}

std::map<uint32_t, uint64_t> perRail(const std::vector<Chunk>& plan) {
  std::map<uint32_t, uint64_t> per;
  for (const auto& c : plan) per[c.rail] += c.length;
  return per;
}

}  // namespace

TEST_CASE("stripe policies have names that parse back, and nothing else parses") {
  for (StripePolicy p : kAllPolicies) {
    StripePolicy q = p == StripePolicy::kSingle ? StripePolicy::kAdaptive : StripePolicy::kSingle;
    REQUIRE(parseStripePolicy(stripePolicyName(p), &q));
    CHECK(q == p);
  }
  StripePolicy q = StripePolicy::kWeighted;
  CHECK_FALSE(parseStripePolicy("Adaptive", &q));
  CHECK_FALSE(parseStripePolicy("", &q));
  CHECK_FALSE(parseStripePolicy("round-robin", &q));
  CHECK(q == StripePolicy::kWeighted);
  CHECK(std::string(stripePolicyName(StripePolicy::kRoundRobin)) == "roundrobin");
}

TEST_CASE("every policy covers every byte exactly once with aligned chunks within bounds") {
  std::vector<std::vector<RailSnapshot>> railSets = {
      {rail(0, 2), rail(1, 2)},
      {rail(0, 1, 0, 50e6), rail(1, 4, 0, 12.5e6)},
      {rail(0, 1, 0, 100e6), rail(1, 1, 0, 1e6), rail(2, 1, 3 << 20, 20e6)},
  };
  railSets[2][1].health = RailHealth::kProbing;
  for (StripePolicy p : kAllPolicies)
    for (const auto& rails : railSets) {
      Scheduler s(config(p));
      std::vector<Chunk> plan;
      for (uint64_t bytes : {1ull, 127ull, 4095ull, 65536ull, 65537ull, 100ull * 1024,
                             (1ull << 20) + 13, 8ull << 20, (64ull << 20) - 1, 5ull << 30}) {
        INFO(stripePolicyName(p) << " over " << rails.size() << " rails, " << bytes << " bytes");
        s.plan(bytes, rails, plan);
        REQUIRE_FALSE(plan.empty());
        checkPlan(plan, bytes, s.config());
      }
    }
}

TEST_CASE("the scheduler splits a large message evenly over equal rails") {
  for (StripePolicy p :
       {StripePolicy::kAdaptive, StripePolicy::kWeighted, StripePolicy::kRoundRobin}) {
    Scheduler s(config(p));
    std::vector<Chunk> plan;
    s.plan(8 << 20, {rail(0), rail(1)}, plan);
    auto per = perRail(plan);
    CHECK(per[0] == 4 << 20);
    CHECK(per[1] == 4 << 20);
  }
}

TEST_CASE("the scheduler spreads a medium message over all lanes but not below the minimum") {
  Scheduler s(config(StripePolicy::kAdaptive));
  std::vector<Chunk> plan;
  s.plan(1 << 20, {rail(0, 4)}, plan);
  CHECK(plan.size() == 4);  // 256 KiB per lane
  s.plan(100 * 1024, {rail(0, 4)}, plan);
  CHECK(plan.size() == 1);  // two pieces would be below the 64 KiB minimum
  checkPlan(plan, 100 * 1024, s.config());
  s.plan(8 << 20, {rail(0, 4)}, plan);
  CHECK(plan.size() == 16);  // 512 KiB maximum
}

TEST_CASE("adaptive splits in proportion to the measured rates, 80/20 for 400 and 100 Mbit/s") {
  Scheduler s(config(StripePolicy::kAdaptive));
  std::vector<Chunk> plan;
  const uint64_t bytes = 8 << 20;
  s.plan(bytes, {rail(0, 1, 0, 400 * kMbit), rail(1, 1, 0, 100 * kMbit)}, plan);
  auto per = perRail(plan);
  CHECK(per[0] == Approx(0.8 * bytes).margin(128));
  CHECK(per[1] == Approx(0.2 * bytes).margin(128));
  // Nominal speeds stand in for unmeasured rates; a measured rate wins over the nominal one.
  std::vector<RailSnapshot> rails = {rail(0), rail(1)};
  rails[0].nominalBps = 100 * kMbit;
  rails[1].nominalBps = 300 * kMbit;
  s.plan(bytes, rails, plan);
  CHECK(perRail(plan)[1] == Approx(0.75 * bytes).margin(128));
  rails[1].throughputEwma = 100 * kMbit;
  s.plan(bytes, rails, plan);
  CHECK(perRail(plan)[1] == Approx(0.5 * bytes).margin(128));
}

TEST_CASE("adaptive lists the chunks by predicted arrival, so the message fills front to back") {
  Scheduler s(config(StripePolicy::kAdaptive));
  std::vector<Chunk> plan;
  s.plan(8 << 20, {rail(0, 1, 0, 400 * kMbit), rail(1, 1, 0, 100 * kMbit)}, plan);
  // 13 chunks on the fast rail, 4 on the slow one (each 4x slower): the slow rail's first
  // chunk arrives about when the fast rail's fourth does.
  REQUIRE(plan.size() > 8);
  CHECK(plan[0].rail == 0);
  size_t firstSlow = 0;
  while (plan[firstSlow].rail == 0) ++firstSlow;
  CHECK(firstSlow >= 3);
  CHECK(firstSlow <= 5);
}

TEST_CASE("adaptive gives fewer bytes to a rail with a backlog, a congestion signal or latency") {
  Scheduler s(config(StripePolicy::kAdaptive, 256 * 1024));
  std::vector<Chunk> plan;
  // Rail 0's 4 MiB backlog absorbs the whole message elsewhere; equal rates.
  s.plan(4 << 20, {rail(0, 1, 4 << 20), rail(1)}, plan);
  auto per = perRail(plan);
  CHECK(per[1] == 4 << 20);
  CHECK(per[0] == 0);
  // A 2 MiB backlog: rail 0 takes 1 MiB, and both finish together.
  s.plan(4 << 20, {rail(0, 1, 2 << 20, 100e6), rail(1, 1, 0, 100e6)}, plan);
  per = perRail(plan);
  CHECK(per[0] == 1 << 20);
  CHECK(per[1] == 3 << 20);
  // Full congestion halves the predicted rate: 1/3 vs 2/3.
  std::vector<RailSnapshot> rails = {rail(0, 1, 0, 100e6), rail(1, 1, 0, 100e6)};
  rails[0].congestion = 1;
  s.plan(6 << 20, rails, plan);
  CHECK(perRail(plan)[0] == Approx(2 << 20).margin(128));
  // 10 ms more latency at 100 MB/s: 1 MB less.
  rails[0].congestion = 0;
  rails[0].latencyUs = 10000;
  s.plan(6 << 20, rails, plan);
  CHECK(perRail(plan)[0] == Approx((6 << 20) / 2 - 0.5e6).margin(128));
}

TEST_CASE("a rail too slow for a chunk is probed now and then, for about probeShare of the time") {
  SchedulerConfig c = config(StripePolicy::kAdaptive);
  Scheduler s(c);
  std::vector<Chunk> plan;
  const uint64_t bytes = 8 << 20;
  // 100:1 leaves it its fair share (1%, above the minimum chunk): measured, no probe needed.
  std::vector<RailSnapshot> rails = {rail(0, 1, 0, 100e6), rail(1, 1, 0, 1e6)};
  s.plan(bytes, rails, plan);
  CHECK(perRail(plan)[1] == Approx(bytes / 101.0).margin(128));
  // 200:1 leaves it 0.5%, below the minimum chunk: left out. A probe (64 KiB, 131 ms there)
  // would make an 84 ms message 48 ms later; at 3% of 84 ms per message, once in 20.
  rails[1].throughputEwma = 0.5e6;
  int probes = 0;
  for (int k = 0; k < 1000; ++k) {
    s.plan(bytes, rails, plan);
    checkPlan(plan, bytes, c);
    uint64_t on1 = perRail(plan)[1];
    CHECK((on1 == 0 || on1 == c.minChunk));
    probes += on1 > 0;
  }
  CHECK(probes >= 45);
  CHECK(probes <= 55);
  // Not while something of it is in flight: it is being measured.
  rails[1].bytesInFlight = 1;
  for (int k = 0; k < 400; ++k) {
    s.plan(bytes, rails, plan);
    CHECK(perRail(plan)[1] == 0);
  }
  // A probe is at least a minimum chunk, and at most a quarter of the message.
  rails[1].bytesInFlight = 0;
  rails[1].throughputEwma = 1e6;
  std::map<uint32_t, uint64_t> seen;
  for (int k = 0; k < 400; ++k) {
    s.plan(1 << 20, rails, plan);
    for (auto [r, b] : perRail(plan))
      if (r == 1 && b) ++seen[b];
    s.plan(200 * 1024, rails, plan);
    CHECK(perRail(plan)[1] == 0);
  }
  CHECK(seen.size() == 1);
  CHECK(seen.begin()->first == c.minChunk);
}

TEST_CASE("a left-out rail whose chunks take long is probed as rarely as they take") {
  // By rate alone a 64 KiB probe takes 0.33 s on the slow rail, 0.16 s more than the
  // 168 ms message on the fast one: paid from the credit (3% of a message's time each),
  // about one message in 32. Its chunks have been taking 2 s (a rail that drops packets:
  // loss recovery), and a probe holds its message that long: one in about 370.
  SchedulerConfig c = config(StripePolicy::kAdaptive);
  Scheduler s(c);
  std::vector<Chunk> plan;
  const uint64_t bytes = 8 << 20;
  std::vector<RailSnapshot> rails = {rail(0, 1, 0, 50e6), rail(1, 1, 0, 0.2e6)};
  auto probesIn = [&](int messages) {
    int probes = 0;
    for (int k = 0; k < messages; ++k) {
      s.plan(bytes, rails, plan);
      probes += perRail(plan)[1] > 0;
    }
    return probes;
  };
  const int byRate = probesIn(1000);
  CHECK(byRate >= 25);
  CHECK(byRate <= 40);
  rails[1].completionEwmaUs = 2e6;
  const int byCompletion = probesIn(2000);
  CHECK(byCompletion >= 3);
  CHECK(byCompletion <= 8);
}

TEST_CASE("a probing rail gets only a probe share, unless every usable rail is probing") {
  for (StripePolicy p :
       {StripePolicy::kAdaptive, StripePolicy::kWeighted, StripePolicy::kRoundRobin}) {
    INFO(stripePolicyName(p));
    SchedulerConfig c = config(p);
    Scheduler s(c);
    std::vector<Chunk> plan;
    const uint64_t bytes = 8 << 20;
    const uint64_t probe = static_cast<uint64_t>(c.probeShare * bytes / 128) * 128;
    std::vector<RailSnapshot> rails = {rail(0, 1, 0, 100e6), rail(1, 1, 0, 100e6)};
    rails[1].health = RailHealth::kProbing;
    s.plan(bytes, rails, plan);
    CHECK(perRail(plan)[1] == probe);
    checkPlan(plan, bytes, c);
    s.plan(1 << 20, rails, plan);
    CHECK(perRail(plan)[1] == c.minChunk);  // 3% is below the minimum chunk
    s.plan(200 * 1024, rails, plan);
    CHECK(perRail(plan)[1] == 0);  // a minimum chunk is over a quarter
    s.plan(32 * 1024, rails, plan);
    CHECK(perRail(plan)[1] == 0);
    rails[0].health = RailHealth::kProbing;
    s.plan(bytes, rails, plan);
    CHECK(perRail(plan)[0] == bytes / 2);
  }
}

TEST_CASE("down rails get nothing, and no usable rail means an empty plan") {
  for (StripePolicy p : kAllPolicies) {
    INFO(stripePolicyName(p));
    Scheduler s(config(p));
    std::vector<Chunk> plan;
    std::vector<RailSnapshot> rails = {rail(0, 1, 0, 1e9), rail(1), rail(2, 1, 0, 1e9)};
    rails[0].health = RailHealth::kDown;
    rails[2].health = RailHealth::kDown;
    for (uint64_t bytes : {0ull, 1000ull, 4ull << 20}) {
      s.plan(bytes, rails, plan);
      REQUIRE_FALSE(plan.empty());
      for (auto& c : plan) CHECK(c.rail == 1);
    }
    rails[1].health = RailHealth::kDown;
    s.plan(4 << 20, rails, plan);
    CHECK(plan.empty());
    s.plan(0, rails, plan);
    CHECK(plan.empty());
    s.plan(4 << 20, {}, plan);
    CHECK(plan.empty());
  }
}

TEST_CASE("a small message goes whole on the rail predicted to deliver it first") {
  Scheduler s(config(StripePolicy::kAdaptive));
  std::vector<Chunk> plan;
  std::vector<RailSnapshot> rails = {rail(0, 1, 0, 10e6), rail(1, 1, 0, 100e6)};
  s.plan(64 * 1024, rails, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 1);
  rails[1].bytesInFlight = 8 << 20;  // 84 ms behind, the slow rail is first
  s.plan(64 * 1024, rails, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 0);
  rails[1].bytesInFlight = 0;
  rails[1].latencyUs = 20000;  // 20 ms per chunk against 6.5 ms
  s.plan(1000, rails, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 0);
}

TEST_CASE("a zero-byte message is one empty chunk on the best usable rail") {
  Scheduler s;
  std::vector<Chunk> plan;
  s.plan(0, {rail(3)}, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 3);
  CHECK(plan[0].length == 0);
  s.plan(0, {rail(0, 1, 0, 1e6), rail(1, 1, 0, 1e9)}, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 1);
}

TEST_CASE("weighted splits by nominal speed, blind to measured rates and backlog") {
  Scheduler s(config(StripePolicy::kWeighted));
  std::vector<Chunk> plan;
  const uint64_t bytes = 10 << 20;
  std::vector<RailSnapshot> rails = {rail(0, 1, 64 << 20, 1e6), rail(1, 1, 0, 1e9)};
  rails[0].nominalBps = 400 * kMbit;
  rails[1].nominalBps = 100 * kMbit;
  s.plan(bytes, rails, plan);
  auto per = perRail(plan);
  CHECK(per[0] == Approx(0.8 * bytes).margin(128));
  CHECK(per[1] == Approx(0.2 * bytes).margin(128));
  s.plan(32 * 1024, rails, plan);  // small: whole on the nominally fastest rail
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 0);
  rails[0].nominalBps = rails[1].nominalBps = 0;  // unknown: equal
  s.plan(bytes, rails, plan);
  CHECK(perRail(plan)[0] == bytes / 2);
}

TEST_CASE("roundrobin deals equal chunks in turn, and small messages whole in turn") {
  Scheduler s(config(StripePolicy::kRoundRobin));
  std::vector<Chunk> plan;
  std::vector<RailSnapshot> rails = {rail(0, 1, 0, 400 * kMbit), rail(1, 1, 8 << 20, 1 * kMbit)};
  s.plan(8 << 20, rails, plan);
  REQUIRE(plan.size() == 16);
  for (size_t i = 0; i < plan.size(); ++i) {
    CHECK(plan[i].rail == i % 2);
    CHECK(plan[i].length == 512 * 1024);
  }
  std::vector<uint32_t> smallRails;
  for (int k = 0; k < 4; ++k) {
    s.plan(1000, rails, plan);
    REQUIRE(plan.size() == 1);
    smallRails.push_back(plan[0].rail);
  }
  CHECK(smallRails == std::vector<uint32_t>{0, 1, 0, 1});
  s.plan(3 * 512 * 1024, rails, plan);  // three chunks: the cursor goes on from rail 0
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].rail == 0);
  CHECK(plan[1].rail == 1);
  CHECK(plan[2].rail == 0);
  s.plan(1000, rails, plan);
  CHECK(plan[0].rail == 1);
}

TEST_CASE("single puts the whole message on the best rail, cut into chunks") {
  Scheduler s(config(StripePolicy::kSingle));
  std::vector<Chunk> plan;
  s.plan(8 << 20, {rail(0, 1, 0, 10e6), rail(1, 2, 0, 20e6)}, plan);
  CHECK(plan.size() == 16);
  CHECK(perRail(plan)[1] == 8 << 20);
  checkPlan(plan, 8 << 20, s.config());
}
