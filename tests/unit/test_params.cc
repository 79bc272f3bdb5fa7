#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <map>

#include "core/params.h"

using namespace braid;

namespace {
core::EnvLookup env(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}
}  // namespace

TEST_CASE("params take their declared defaults when the environment is empty") {
  auto p = core::parseParams(env({}));
  REQUIRE(p.isOk());
  CHECK(p->logLevel == "warn");
  CHECK(p->timeoutMs == 30000);
  CHECK(p->socketNsocks == 2);
  CHECK(p->eagerMax == 16384);
  CHECK(p->chunkSize == 512 * 1024);
  CHECK_FALSE(p->jobToken.has_value());
  CHECK(p->ibGidIndex == -1);
}

TEST_CASE("params parse numbers, sizes with suffixes, enums and tokens") {
  auto p = core::parseParams(env({{"BRAID_TIMEOUT_MS", "1500"},
                                  {"BRAID_EAGER_MAX", "64K"},
                                  {"BRAID_CHUNK_SIZE", "2M"},
                                  {"BRAID_LOG_LEVEL", "debug"},
                                  {"BRAID_JOB_TOKEN", "0xdeadbeef"},
                                  {"BRAID_SOCKET_IFNAME", "^docker,lo"}}));
  REQUIRE(p.isOk());
  CHECK(p->timeoutMs == 1500);
  CHECK(p->eagerMax == 65536);
  CHECK(p->chunkSize == 2 * 1024 * 1024);
  CHECK(p->logLevel == "debug");
  CHECK(*p->jobToken == 0xdeadbeefull);
  CHECK(p->socketIfname == "^docker,lo");
}

TEST_CASE("a non-numeric value is an error naming the variable and the value") {
  auto p = core::parseParams(env({{"BRAID_TIMEOUT_MS", "soon"}}));
  REQUIRE_FALSE(p.isOk());
  CHECK(p.status().code() == Code::kInvalidArgument);
  CHECK_THAT(p.status().message(), Catch::Contains("BRAID_TIMEOUT_MS='soon'"));
  CHECK_THAT(p.status().message(), Catch::Contains("not a number"));
}

TEST_CASE("an out-of-range value is an error that states the allowed range") {
  auto p = core::parseParams(env({{"BRAID_SOCKET_NSOCKS", "0"}}));
  REQUIRE_FALSE(p.isOk());
  CHECK_THAT(p.status().message(), Catch::Contains("BRAID_SOCKET_NSOCKS='0'"));
  CHECK_THAT(p.status().message(), Catch::Contains("[1, 64]"));
  auto q = core::parseParams(env({{"BRAID_IB_RETRY_CNT", "8"}}));
  REQUIRE_FALSE(q.isOk());
  CHECK_THAT(q.status().message(), Catch::Contains("out of range"));
}

TEST_CASE("an enum value outside its choices is an error listing them") {
  auto p = core::parseParams(env({{"BRAID_LOG_LEVEL", "loud"}}));
  REQUIRE_FALSE(p.isOk());
  CHECK_THAT(p.status().message(), Catch::Contains("off|error|warn|info|debug|trace"));
  auto t = core::parseParams(env({{"BRAID_TRANSPORT", "carrier-pigeon"}}));
  REQUIRE_FALSE(t.isOk());
  CHECK_THAT(t.status().message(), Catch::Contains("BRAID_TRANSPORT"));
}

TEST_CASE("bad job tokens are refused: zero, negative, garbage") {
  for (const char* bad : {"0", "-5", "0xZZ", "12abc", ""}) {
    auto p = core::parseParams(env({{"BRAID_JOB_TOKEN", bad}}));
    if (std::string(bad).empty()) {
      CHECK(p.isOk());  // set but empty means unset
      continue;
    }
    REQUIRE_FALSE(p.isOk());
    CHECK_THAT(p.status().message(), Catch::Contains("BRAID_JOB_TOKEN"));
  }
}

TEST_CASE("sizes accept K, M and G suffixes and refuse junk") {
  CHECK(*core::parseSize("4096") == 4096);
  CHECK(*core::parseSize("4k") == 4096);
  CHECK(*core::parseSize("1M") == 1048576);
  CHECK(*core::parseSize("2G") == 2147483648LL);
  CHECK_FALSE(core::parseSize("").isOk());
  CHECK_FALSE(core::parseSize("M").isOk());
  CHECK_FALSE(core::parseSize("-1").isOk());
  CHECK_FALSE(core::parseSize("99999999999999999999G").isOk());
}

TEST_CASE("the registry lists every knob with its default, value in force and doc") {
  auto rows = core::listParams(env({{"BRAID_SOCKET_NSOCKS", "4"}}));
  REQUIRE(rows.size() >= 15);
  bool seen = false;
  for (auto& r : rows) {
    CHECK(r.name.rfind("BRAID_", 0) == 0);
    CHECK_FALSE(r.doc.empty());
    if (r.name == "BRAID_SOCKET_NSOCKS") {
      seen = true;
      CHECK(r.isSet);
      CHECK(r.value == "4");
      CHECK(r.defaultValue == "2");
    }
  }
  CHECK(seen);
}

TEST_CASE("docs/params.md lists every knob with its default") {
  std::ifstream in(BRAID_SOURCE_DIR "/docs/params.md");
  REQUIRE(in.good());
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto& r : core::listParams(env({}))) {
    INFO(r.name << " is missing or has another default in docs/params.md: regenerate it");
    std::string cell = r.defaultValue.empty() ? "(unset)" : "`" + r.defaultValue + "`";
    auto at = doc.find("| `" + r.name + "` |");
    REQUIRE(at != std::string::npos);
    std::string row = doc.substr(at, doc.find('\n', at) - at);
    CHECK_THAT(row, Catch::Contains(" | " + cell + " | "));
  }
}
