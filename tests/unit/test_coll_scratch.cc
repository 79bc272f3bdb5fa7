// The collectives' scratch pool (lib/coll/scratch_pool.h): buffers are reused across calls,
// and what it keeps stays bounded however many calls go through it.
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <vector>

#include "coll/scratch_pool.h"

using braid::MemoryRegion;
using braid::coll::ScratchPool;

TEST_CASE("coll scratch: small requests reuse one buffer call after call", "[coll][scratch]") {
  // Regression: a request under a quarter of the smallest class (64 KiB) never matched a
  // free buffer, so every small allreduce allocated a new one and the pool grew for ever.
  ScratchPool pool;
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4096}, size_t{16383}, size_t{65536}}) {
    uint8_t* first = pool.acquire(bytes);
    pool.release(first);
    for (int i = 0; i < 10000; ++i) {
      uint8_t* p = pool.acquire(bytes);
      REQUIRE(p == first);
      pool.release(p);
    }
  }
  CHECK(pool.buffers() == 1);
  CHECK(pool.bytesHeld() == ScratchPool::kMinBytes);
  CHECK(pool.inUse() == 0);
}

TEST_CASE("coll scratch: size classes, and a free buffer up to 4x larger is reused", "[coll][scratch]") {
  CHECK(ScratchPool::classFor(0) == ScratchPool::kMinBytes);
  CHECK(ScratchPool::classFor(ScratchPool::kMinBytes) == ScratchPool::kMinBytes);
  CHECK(ScratchPool::classFor(ScratchPool::kMinBytes + 1) == 2 * ScratchPool::kMinBytes);
  CHECK(ScratchPool::classFor(3u << 20) == 4u << 20);

  ScratchPool pool;
  uint8_t* big = pool.acquire(1u << 20);
  pool.release(big);
  CHECK(pool.acquire(300 * 1024) == big);  // 512 KiB class: a 1 MiB buffer serves it
  pool.release(big);
  uint8_t* small = pool.acquire(100);  // 64 KiB class: 16x smaller, a buffer of its own
  CHECK(small != big);
  CHECK(pool.buffers() == 2);
  // The smallest fitting free buffer is taken.
  pool.release(small);
  CHECK(pool.acquire(200 * 1024) == big);
  CHECK(pool.acquire(1) == small);
}

TEST_CASE("coll scratch: buffers in use are distinct and writable; a burst's peak is not kept", "[coll][scratch]") {
  ScratchPool pool;
  std::vector<uint8_t*> held;
  std::set<uint8_t*> distinct;
  for (int i = 0; i < 64; ++i) {  // 64 non-blocking calls in flight at once
    uint8_t* p = pool.acquire(ScratchPool::kMinBytes);
    p[0] = static_cast<uint8_t>(i);
    p[ScratchPool::kMinBytes - 1] = static_cast<uint8_t>(i);
    held.push_back(p);
    distinct.insert(p);
  }
  CHECK(distinct.size() == 64);
  CHECK(pool.inUse() == 64);
  for (size_t i = 0; i < held.size(); ++i) {
    REQUIRE(held[i][0] == static_cast<uint8_t>(i));
    REQUIRE(held[i][ScratchPool::kMinBytes - 1] == static_cast<uint8_t>(i));
  }
  for (uint8_t* p : held) pool.release(p);
  CHECK(pool.inUse() == 0);
  CHECK(pool.buffers() == ScratchPool::kFreePerClass);
  pool.release(nullptr);  // not one of its buffers: ignored
  CHECK(pool.buffers() == ScratchPool::kFreePerClass);
}

TEST_CASE("coll scratch: a buffer is registered once, however many calls reuse it", "[coll][scratch]") {
  int registered = 0;
  ScratchPool pool([&](uint8_t* base, size_t length) {
    ++registered;
    return MemoryRegion(base, length);  // unregistered stand-in: registered() is false
  });
  uint8_t* p = pool.acquire(10);
  pool.release(p);
  for (int i = 0; i < 100; ++i) pool.release(pool.acquire(10));
  CHECK(registered == 1);
  // A stand-in region is not "registered", so requests register their own.
  p = pool.acquire(10);
  CHECK(pool.regionFor(p, 10) == nullptr);
  pool.release(p);
}
