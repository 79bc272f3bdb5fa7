#include <catch2/catch.hpp>

#include "core/ranges.h"

using braid::core::addRange;
using braid::core::RangeSet;

TEST_CASE("byte ranges count each byte once, in any order, and merge neighbours") {
  RangeSet s;
  CHECK(addRange(s, 100, 200) == 100);
  CHECK(addRange(s, 0, 50) == 50);
  CHECK(s.size() == 2);
  CHECK(addRange(s, 100, 200) == 0);  // the same chunk twice
  CHECK(addRange(s, 150, 250) == 50);  // overlapping the end
  CHECK(addRange(s, 50, 100) == 50);   // fills the gap: one range
  REQUIRE(s.size() == 1);
  CHECK(s[0] == std::make_pair<uint64_t, uint64_t>(0, 250));
  CHECK(addRange(s, 300, 400) == 100);
  CHECK(addRange(s, 260, 270) == 10);
  CHECK(addRange(s, 0, 1000) == 1000 - 250 - 100 - 10);  // covers all of them
  REQUIRE(s.size() == 1);
  CHECK(s[0].second == 1000);
  CHECK(addRange(s, 5, 5) == 0);
}
