#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "transport/scheduler.h"

using namespace braid::transport;

namespace {
// Every byte of [0, bytes) is covered exactly once, in order.
void checkCovers(const std::vector<Chunk>& plan, uint64_t bytes) {
  uint64_t next = 0;
  for (const auto& c : plan) {
    CHECK(c.offset == next);
    next += c.length;
  }
  CHECK(next == bytes);
}
}  // namespace

TEST_CASE("the scheduler covers every byte exactly once with aligned chunks") {
  Scheduler s({512 * 1024, 64 * 1024, 128});
  std::vector<RailSnapshot> rails = {{0, 2, 0, 0, true}, {1, 2, 0, 0, true}};
  std::vector<Chunk> plan;
  for (uint64_t bytes : {1ull, 4095ull, 65536ull, (1ull << 20) + 13, 64ull << 20, 5ull << 30}) {
    s.plan(bytes, rails, plan);
    checkCovers(plan, bytes);
    for (size_t i = 0; i + 1 < plan.size(); ++i) CHECK(plan[i].length % 128 == 0);
    for (const auto& c : plan) CHECK(c.length <= 512 * 1024);
  }
}

TEST_CASE("the scheduler splits a large message evenly over equal rails") {
  Scheduler s({512 * 1024, 64 * 1024, 128});
  std::vector<RailSnapshot> rails = {{0, 1, 0, 0, true}, {1, 1, 0, 0, true}};
  std::vector<Chunk> plan;
  s.plan(8 << 20, rails, plan);
  std::map<uint32_t, uint64_t> per;
  for (auto& c : plan) per[c.rail] += c.length;
  CHECK(per[0] == 4 << 20);
  CHECK(per[1] == 4 << 20);
}

TEST_CASE("the scheduler spreads a medium message over all lanes but not below the minimum") {
  Scheduler s({512 * 1024, 64 * 1024, 128});
  std::vector<RailSnapshot> rails = {{0, 4, 0, 0, true}};
  std::vector<Chunk> plan;
  s.plan(1 << 20, rails, plan);
  CHECK(plan.size() == 4);  // 256 KiB per lane
  s.plan(100 * 1024, rails, plan);
  CHECK(plan.size() == 2);  // 64 KiB minimum
  checkCovers(plan, 100 * 1024);
}

TEST_CASE("the scheduler skips unhealthy rails and plans nothing when none is healthy") {
  Scheduler s;
  std::vector<Chunk> plan;
  std::vector<RailSnapshot> rails = {{0, 1, 0, 0, false}, {1, 1, 0, 0, true}};
  s.plan(4 << 20, rails, plan);
  for (auto& c : plan) CHECK(c.rail == 1);
  rails[1].healthy = false;
  s.plan(4 << 20, rails, plan);
  CHECK(plan.empty());
}

TEST_CASE("the scheduler gives fewer chunks to a rail that already has a backlog") {
  Scheduler s({256 * 1024, 64 * 1024, 128});
  std::vector<RailSnapshot> rails = {{0, 1, 4 << 20, 0, true}, {1, 1, 0, 0, true}};
  std::vector<Chunk> plan;
  s.plan(4 << 20, rails, plan);
  uint64_t on0 = 0, on1 = 0;
  for (auto& c : plan) (c.rail == 0 ? on0 : on1) += c.length;
  CHECK(on1 == 4 << 20);  // rail 0's 4 MiB backlog absorbs the whole message elsewhere
  CHECK(on0 == 0);
}

TEST_CASE("a zero-byte message is one empty chunk on a healthy rail") {
  Scheduler s;
  std::vector<Chunk> plan;
  s.plan(0, {{3, 1, 0, 0, true}}, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].rail == 3);
  CHECK(plan[0].length == 0);
}
