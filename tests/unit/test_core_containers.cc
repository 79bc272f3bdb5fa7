// Unit tests of lib/core's hot-path helpers: copyBytes, Ring, Freelist.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <vector>

#include "core/bytes.h"
#include "core/freelist.h"

using namespace braid::core;

TEST_CASE("copyBytes copies exactly n bytes for every small and large length") {
  std::vector<uint8_t> src(300), dst(320);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t n = 0; n <= 300; n = n < 40 ? n + 1 : n + 37) {
    for (size_t off = 0; off < 3; ++off) {  // unaligned destinations too
      std::fill(dst.begin(), dst.end(), 0xEE);
      copyBytes(dst.data() + off, src.data(), n);
      CHECK(std::memcmp(dst.data() + off, src.data(), n) == 0);
      for (size_t i = 0; i < off; ++i) CHECK(dst[i] == 0xEE);              // nothing before
      for (size_t i = off + n; i < dst.size(); ++i) REQUIRE(dst[i] == 0xEE);  // nothing after
    }
  }
}

TEST_CASE("Ring keeps FIFO order across growth and wrap-around") {
  Ring<uint64_t> r;
  uint64_t next = 0, expect = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < round % 7 + 3; ++i) r.push_back(next++);
    for (int i = 0; i < round % 5 + 1 && !r.empty(); ++i) {
      REQUIRE(r.front() == expect++);
      r.pop_front();
    }
  }
  for (size_t i = 0; i < r.size(); ++i) CHECK(r[i] == expect + i);
  CHECK(r.back() == next - 1);
}

TEST_CASE("Ring::emplace_back fills a slot in place; owning types are reset on pop") {
  Ring<std::shared_ptr<int>> owning;
  auto p = std::make_shared<int>(5);
  owning.emplace_back() = p;
  CHECK(p.use_count() == 2);
  owning.pop_front();
  CHECK(p.use_count() == 1);  // released at pop, not when the slot is reused

  Ring<int> plain;
  plain.emplace_back() = 1;
  plain.emplace_back() = 2;
  CHECK(plain.front() == 1);
  plain.pop_front();
  CHECK(plain.front() == 2);
  CHECK(plain.size() == 1);
}

TEST_CASE("Freelist hands back what was put, then new objects") {
  Freelist<int> f;
  int* a = f.get();
  int* b = f.get();
  CHECK(a != b);
  CHECK(f.allocated() == 2);
  f.put(a);
  CHECK(f.available() == 1);
  CHECK(f.get() == a);
  CHECK(f.get() != b);
  CHECK(f.allocated() == 3);
}

TEST_CASE("a ring erases one element in the middle and keeps the others in order") {
  Ring<int> r;
  for (int i = 0; i < 6; ++i) r.push_back(i);
  r.pop_front();
  r.pop_front();  // head away from slot 0, so indices wrap
  for (int i = 6; i < 9; ++i) r.push_back(i);
  r.erase(2);  // removes 4
  REQUIRE(r.size() == 6);
  std::vector<int> got;
  for (size_t i = 0; i < r.size(); ++i) got.push_back(r[i]);
  CHECK(got == std::vector<int>{2, 3, 5, 6, 7, 8});
  r.erase(r.size() - 1);
  CHECK(r.back() == 7);
  r.erase(0);
  CHECK(r.front() == 3);
}
