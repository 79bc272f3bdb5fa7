// The registration cache over a fake registrar that counts its calls.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "verbs/mr_cache.h"

using namespace braid;
using namespace braid::verbs;

namespace {

constexpr int kLocal = 1;   // stands for IBV_ACCESS_LOCAL_WRITE
constexpr int kRemote = 2;  // stands for IBV_ACCESS_REMOTE_WRITE

struct Counts {
  std::mutex mu;
  int regs = 0;
  int deregs = 0;
  std::set<uintptr_t> live;  // addr of registrations not yet deregistered
  std::vector<std::pair<uintptr_t, size_t>> ranges;
  bool fail = false;
};

class FakeRegistrar final : public Registrar {
 public:
  explicit FakeRegistrar(std::shared_ptr<Counts> c) : c_(std::move(c)) {}
  Result<RegisteredRange> reg(uintptr_t addr, size_t len, int) override {
    std::lock_guard<std::mutex> lk(c_->mu);
    if (c_->fail) return Status(Code::kNoMemory, "fake registration failure");
    ++c_->regs;
    c_->live.insert(addr);
    c_->ranges.emplace_back(addr, len);
    RegisteredRange r;
    r.addr = addr;
    r.len = len;
    r.lkey = static_cast<uint32_t>(c_->regs * 2);
    r.rkey = static_cast<uint32_t>(c_->regs * 2 + 1);
    return r;
  }
  void dereg(const RegisteredRange& r) noexcept override {
    std::lock_guard<std::mutex> lk(c_->mu);
    ++c_->deregs;
    c_->live.erase(r.addr);
  }

 private:
  std::shared_ptr<Counts> c_;
};

struct Rig {
  std::shared_ptr<Counts> counts = std::make_shared<Counts>();
  MrCache cache{std::make_unique<FakeRegistrar>(counts)};
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  // A page-aligned arena the tests carve ranges out of (never touched: only addresses).
  std::unique_ptr<char[]> storage{new char[16 * page * 2]};
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(storage.get()) + page - 1) &
                                       ~(uintptr_t(page) - 1));
};

}  // namespace

TEST_CASE("the same range and a range inside it are cache hits") {
  Rig r;
  auto a = r.cache.get(r.base + 100, 1000, kLocal);
  REQUIRE(a.isOk());
  auto b = r.cache.get(r.base + 100, 1000, kLocal);
  REQUIRE(b.isOk());
  auto c = r.cache.get(r.base + 200, 10, kLocal);
  REQUIRE(c.isOk());
  CHECK(r.counts->regs == 1);
  CHECK(a->lkey() == b->lkey());
  CHECK(c->rkey() == a->rkey());
  auto s = r.cache.stats();
  CHECK(s.misses == 1);
  CHECK(s.hits == 2);
  CHECK(s.registered == 1);
  CHECK(s.entries == 1);
}

TEST_CASE("registrations are rounded out to whole pages and neighbours in those pages hit") {
  Rig r;
  auto a = r.cache.get(r.base + 10, 20, kLocal);
  REQUIRE(a.isOk());
  CHECK(a->addr() == reinterpret_cast<uintptr_t>(r.base));
  CHECK(a->length() == r.page);
  CHECK(a->covers(r.base + 10, 20));
  CHECK(r.counts->ranges.back() == std::make_pair(reinterpret_cast<uintptr_t>(r.base), r.page));
  auto straddle = r.cache.get(r.base + r.page - 8, 16, kLocal);  // crosses into page 2
  REQUIRE(straddle.isOk());
  CHECK(straddle->length() == 2 * r.page);
  auto neighbour = r.cache.get(r.base + r.page - 100, 100, kLocal);
  REQUIRE(neighbour.isOk());
  CHECK(r.counts->regs == 2);
}

TEST_CASE("an overlapping range that is not contained is a miss") {
  Rig r;
  REQUIRE(r.cache.get(r.base, 2 * r.page, kLocal).isOk());
  REQUIRE(r.cache.get(r.base + r.page, 2 * r.page, kLocal).isOk());
  CHECK(r.counts->regs == 2);
  CHECK(r.cache.stats().misses == 2);
  // Both entries are kept; a range inside either one hits.
  REQUIRE(r.cache.get(r.base + 2 * r.page + 5, 10, kLocal).isOk());
  REQUIRE(r.cache.get(r.base + 5, 10, kLocal).isOk());
  CHECK(r.counts->regs == 2);
}

TEST_CASE("a request needing more access than the cached entry is a miss") {
  Rig r;
  REQUIRE(r.cache.get(r.base, 100, kLocal).isOk());
  REQUIRE(r.cache.get(r.base, 100, kLocal | kRemote).isOk());
  CHECK(r.counts->regs == 2);
  REQUIRE(r.cache.get(r.base, 100, kRemote).isOk());  // the second entry covers it
  CHECK(r.counts->regs == 2);
}

TEST_CASE("invalidate drops overlapping entries and the next get misses") {
  Rig r;
  REQUIRE(r.cache.get(r.base, 100, kLocal).isOk());
  REQUIRE(r.cache.get(r.base + 4 * r.page, 100, kLocal).isOk());
  r.cache.invalidate(r.base + 50, 1);  // same page as the first entry only
  auto s = r.cache.stats();
  CHECK(s.invalidations == 1);
  CHECK(s.entries == 1);
  CHECK(s.deregistered == 1);  // nobody held it: deregistered at once
  REQUIRE(r.cache.get(r.base, 100, kLocal).isOk());
  CHECK(r.counts->regs == 3);
  CHECK(r.cache.stats().misses == 3);
}

TEST_CASE("a referenced entry stays registered after invalidate until its last reference goes") {
  Rig r;
  MrRef held;
  {
    auto a = r.cache.get(r.base, 100, kLocal);
    REQUIRE(a.isOk());
    held = *a;
  }
  uint32_t lkey = held.lkey();
  r.cache.invalidate(r.base, r.page);
  CHECK(r.cache.stats().entries == 0);
  CHECK(r.counts->deregs == 0);  // still in use
  CHECK(held.lkey() == lkey);
  CHECK(held.covers(r.base, 100));
  MrRef copy = held;
  held = MrRef();
  CHECK(r.counts->deregs == 0);
  copy = MrRef();
  CHECK(r.counts->deregs == 1);
  CHECK(r.cache.stats().deregistered == 1);
}

TEST_CASE("a registration outlives the cache while referenced") {
  auto counts = std::make_shared<Counts>();
  MrRef held;
  {
    MrCache cache(std::make_unique<FakeRegistrar>(counts));
    static char buf[64];
    auto a = cache.get(buf, sizeof(buf), kLocal);
    REQUIRE(a.isOk());
    held = *a;
  }
  CHECK(counts->deregs == 0);
  held = MrRef();
  CHECK(counts->deregs == 1);
}

TEST_CASE("a bounded cache evicts the least recently used entry") {
  auto counts = std::make_shared<Counts>();
  MrCache cache(std::make_unique<FakeRegistrar>(counts), 2);
  size_t page = cache.pageSize();
  std::unique_ptr<char[]> storage(new char[8 * page]);
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(storage.get()) + page - 1) &
                                       ~(uintptr_t(page) - 1));
  REQUIRE(cache.get(base, 1, kLocal).isOk());             // A
  REQUIRE(cache.get(base + 2 * page, 1, kLocal).isOk());  // B
  REQUIRE(cache.get(base, 1, kLocal).isOk());             // A again: B is now the oldest
  REQUIRE(cache.get(base + 4 * page, 1, kLocal).isOk());  // C evicts B
  auto s = cache.stats();
  CHECK(s.evictions == 1);
  CHECK(s.entries == 2);
  REQUIRE(cache.get(base, 1, kLocal).isOk());
  CHECK(cache.stats().hits == 2);
  REQUIRE(cache.get(base + 2 * page, 1, kLocal).isOk());
  CHECK(cache.stats().misses == 4);
}

TEST_CASE("registrar errors pass through and empty ranges are refused") {
  Rig r;
  r.counts->fail = true;
  auto a = r.cache.get(r.base, 10, kLocal);
  REQUIRE_FALSE(a.isOk());
  CHECK(a.status().code() == Code::kNoMemory);
  CHECK(r.cache.stats().entries == 0);
  r.counts->fail = false;
  CHECK(r.cache.get(r.base, 0, kLocal).status().code() == Code::kInvalidArgument);
}

TEST_CASE("four threads getting and invalidating overlapping ranges stay consistent") {
  Rig r;
  constexpr int kThreads = 4;
  constexpr int kIters = 2000;
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        char* p = r.base + ((i + t) % 8) * r.page + 16;
        auto ref = r.cache.get(p, 64 + (i % 3) * r.page, kLocal);
        if (!ref.isOk() || !ref->covers(p, 64 + (i % 3) * r.page)) ++bad;
        if (i % 97 == t) r.cache.invalidate(p, 1);
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(bad == 0);
  auto s = r.cache.stats();
  CHECK(s.hits + s.misses == uint64_t{kThreads} * kIters);
  CHECK(s.registered == s.misses);
  CHECK(s.registered - s.deregistered == s.entries);  // nothing leaked, nothing freed twice
  CHECK(static_cast<uint64_t>(r.counts->regs) == s.registered);
}

TEST_CASE("concurrent misses on one range register it once") {
  Rig r;
  std::atomic<int> bad{0};  // Catch2 assertions are not thread-safe: count, check after
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        if (!r.cache.get(r.base + 8, 4000, kLocal).isOk()) ++bad;
    });
  for (auto& t : ts) t.join();
  CHECK(bad == 0);
  CHECK(r.counts->regs == 1);
  CHECK(r.cache.stats().hits == 1999);
}
