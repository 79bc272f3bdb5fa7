#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "braid/status.h"

using braid::Code;
using braid::Result;
using braid::Status;

namespace {
Result<int> half(int v) {
  if (v % 2) return Status(Code::kInvalidArgument, "odd");
  return v / 2;
}
Result<int> quarter(int v) {
  BRAID_ASSIGN_OR_RETURN(int h, half(v));
  return half(h);
}
Status checkEven(int v) {
  BRAID_RETURN_IF_ERROR(half(v).status());
  return Status::ok();
}
}  // namespace

TEST_CASE("a default Status is ok and prints as ok") {
  Status s;
  CHECK(s.isOk());
  CHECK(s.code() == Code::kOk);
  CHECK(s.toString() == "ok");
}

TEST_CASE("an error Status carries its code name, message and added context") {
  Status s(Code::kTimedOut, "peer 1.2.3.4:5 silent");
  CHECK_FALSE(s.isOk());
  CHECK(s.toString() == "timed-out: peer 1.2.3.4:5 silent");
  Status c = s.withContext("rail 0");
  CHECK(c.code() == Code::kTimedOut);
  CHECK(c.message() == "rail 0: peer 1.2.3.4:5 silent");
}

TEST_CASE("every code has a distinct name") {
  std::set<std::string> names;
  for (int c = 0; c <= static_cast<int>(Code::kInternal); ++c)
    names.insert(std::string(braid::codeName(static_cast<Code>(c))));
  CHECK(names.size() == static_cast<size_t>(Code::kInternal) + 1);
}

TEST_CASE("Result holds a value or an error, and the macros propagate errors") {
  CHECK(quarter(8).value() == 2);
  auto bad = quarter(6);  // 6/2 = 3 is odd
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(checkEven(4).isOk());
  CHECK(checkEven(5).code() == Code::kInvalidArgument);
}

TEST_CASE("a Result built from an ok Status is an internal error, not a value") {
  Result<int> r{Status::ok()};
  CHECK_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kInternal);
}
