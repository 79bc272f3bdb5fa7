#include <catch2/catch.hpp>

#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>

#include "core/log.h"
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

TEST_CASE("params record which knobs the environment set, even to their default value") {
  auto unset = core::parseParams(env({}));
  REQUIRE(unset.isOk());
  CHECK_FALSE(unset->isSet("BRAID_EAGER_MAX"));
  CHECK(unset->setNames.empty());
  auto p = core::parseParams(env({{"BRAID_EAGER_MAX", "16K"}, {"BRAID_TIMEOUT_MS", "1500"},
                                  {"BRAID_NOT_A_KNOB", "1"}}));
  REQUIRE(p.isOk());
  CHECK(p->eagerMax == unset->eagerMax);  // the default's value, but set by the user
  CHECK(p->isSet("BRAID_EAGER_MAX"));
  CHECK(p->isSet("BRAID_TIMEOUT_MS"));
  CHECK_FALSE(p->isSet("BRAID_CHUNK_SIZE"));
  CHECK_FALSE(p->isSet("BRAID_NOT_A_KNOB"));
  CHECK(p->setNames.size() == 2);
}

TEST_CASE("a non-numeric value is an error naming the variable and the value") {
  auto p = core::parseParams(env({{"BRAID_TIMEOUT_MS", "soon"}}));
  REQUIRE_FALSE(p.isOk());
  CHECK(p.status().code() == Code::kInvalidArgument);
  CHECK_THAT(p.status().message(), Catch::Contains("BRAID_TIMEOUT_MS='soon'"));
  CHECK_THAT(p.status().message(), Catch::Contains("not a decimal number"));
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

namespace {
// The message of a refused value, after checking it names the variable and the value.
std::string refusal(const std::string& var, const std::string& value) {
  auto p = core::parseParams(env({{var, value}}));
  INFO(var << "='" << value << "'");
  REQUIRE_FALSE(p.isOk());
  CHECK(p.status().code() == Code::kInvalidArgument);
  CHECK_THAT(p.status().message(), Catch::Contains(var + "='" + value + "'"));
  return p.status().message();
}
}  // namespace

TEST_CASE("integer knobs are decimal only: 030000 is not octal 12288, 0x10 and ' 5' are refused") {
  // strtoll(..., 0) used to read these as 12288, 16 and 5.
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "030000"), Catch::Contains("no leading zeros"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "030000"), Catch::Contains("write 30000"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "0x10"), Catch::Contains("hex"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", " 5"), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "5 "), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "5\n"), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "+5"), Catch::Contains("sign"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "-5"), Catch::Contains("sign"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", ""), Catch::Contains("empty"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "1e3"), Catch::Contains("not a decimal number"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "1_000"), Catch::Contains("not a decimal number"));
  CHECK_THAT(refusal("BRAID_TIMEOUT_MS", "99999999999999999999"), Catch::Contains("too large"));
  CHECK_THAT(refusal("BRAID_IB_GID_INDEX", "-01"), Catch::Contains("no leading zeros"));
  CHECK_THAT(refusal("BRAID_IB_GID_INDEX", "-0"), Catch::Contains("write 0"));
  CHECK_THAT(refusal("BRAID_IB_GID_INDEX", "+1"), Catch::Contains("sign"));
  // Every refusal says what is accepted and what the default is.
  std::string m = refusal("BRAID_SOCKET_NSOCKS", "04");
  CHECK_THAT(m, Catch::Contains("decimal integer in [1, 64]"));
  CHECK_THAT(m, Catch::Contains("default '2'"));
}

TEST_CASE("integer knobs take plain decimal, and '-' only where the range goes below zero") {
  auto p = core::parseParams(env({{"BRAID_TIMEOUT_MS", "30000"},
                                  {"BRAID_SPIN_US", "0"},
                                  {"BRAID_IB_GID_INDEX", "-1"},
                                  {"BRAID_IB_TC", "10"}}));
  REQUIRE(p.isOk());
  CHECK(p->timeoutMs == 30000);
  CHECK(p->spinUs == 0);
  CHECK(p->ibGidIndex == -1);
  CHECK(p->ibTc == 10);
  CHECK_THAT(refusal("BRAID_IB_GID_INDEX", "-2"), Catch::Contains("out of range"));
}

TEST_CASE("size knobs are decimal with an optional K, M or G suffix, nothing else") {
  auto p = core::parseParams(env({{"BRAID_EAGER_MAX", "0"}, {"BRAID_CHUNK_SIZE", "1m"}}));
  REQUIRE(p.isOk());
  CHECK(p->eagerMax == 0);
  CHECK(p->chunkSize == 1048576);
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "016K"), Catch::Contains("no leading zeros"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "016K"), Catch::Contains("write 16K"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "0x4000"), Catch::Contains("hex"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", " 16K"), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "16 K"), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "16KB"), Catch::Contains("suffix"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "16KiB"), Catch::Contains("suffix"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "-1"), Catch::Contains("sign"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", "K"), Catch::Contains("no digits"));
  CHECK_THAT(refusal("BRAID_EAGER_MAX", ""), Catch::Contains("empty"));
  CHECK_THAT(refusal("BRAID_CHUNK_SIZE", "9999999999G"), Catch::Contains("too large"));
  CHECK_THAT(refusal("BRAID_CHUNK_SIZE", "99999999999999999999"), Catch::Contains("too large"));
  std::string m = refusal("BRAID_EAGER_MAX", "lots");
  CHECK_THAT(m, Catch::Contains("K, M or G"));
  CHECK_THAT(m, Catch::Contains("[0, 1048576]"));
}

TEST_CASE("BRAID_JOB_TOKEN is 0x hex or decimal, never octal") {
  auto hex = core::parseParams(env({{"BRAID_JOB_TOKEN", "0x0010"}}));
  REQUIRE(hex.isOk());
  CHECK(*hex->jobToken == 16);
  auto dec = core::parseParams(env({{"BRAID_JOB_TOKEN", "18446744073709551615"}}));
  REQUIRE(dec.isOk());
  CHECK(*dec->jobToken == UINT64_MAX);
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "010"), Catch::Contains("no leading zeros"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "0x"), Catch::Contains("hex digits"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", " 7"), Catch::Contains("space"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "0x1ffffffffffffffff"), Catch::Contains("too large"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "18446744073709551616"), Catch::Contains("too large"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "0x0"), Catch::Contains("must not be 0"));
  CHECK_THAT(refusal("BRAID_JOB_TOKEN", "-5"), Catch::Contains("0x then hex digits"));
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

TEST_CASE("docs/params.md is what the registry generates") {
  std::ifstream in(BRAID_SOURCE_DIR "/docs/params.md", std::ios::binary);
  REQUIRE(in.good());
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string want = core::paramsMarkdown();
  if (doc == want) return;
  // Name the first line that differs: a knob's doc, default or range changed.
  size_t at = 0;
  while (at < doc.size() && at < want.size() && doc[at] == want[at]) ++at;
  size_t bol = doc.rfind('\n', at == 0 ? 0 : at - 1);
  bol = bol == std::string::npos ? 0 : bol + 1;
  INFO("docs/params.md differs from the registry from this line on; regenerate it with "
       "`cmake --build build --target params_doc`\n  docs: "
       << doc.substr(bol, doc.find('\n', bol) - bol) << "\n  registry: "
       << want.substr(bol, want.find('\n', bol) - bol));
  FAIL();
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

TEST_CASE("a misspelled BRAID_* variable gets a warning naming the closest knob") {
  auto w = core::unknownKnobWarnings({"PATH", "BRAID_SOCKET_IFNAME", "BRAID_SOCKET_IFNAMES"});
  REQUIRE(w.size() == 1);
  CHECK(w[0] ==
        "BRAID_SOCKET_IFNAMES is not a braid knob (ignored); did you mean BRAID_SOCKET_IFNAME?");
  // Near misses: a dropped unit, a dropped prefix, a part of the name, the wrong case.
  for (auto [typed, meant] : std::vector<std::pair<std::string, std::string>>{
           {"BRAID_TIMEOUT", "BRAID_TIMEOUT_MS"},
           {"BRAID_TC", "BRAID_IB_TC"},
           {"BRAID_NSOCKS", "BRAID_SOCKET_NSOCKS"},
           {"BRAID_EAGER_MAXX", "BRAID_EAGER_MAX"},
           {"BRAID_IB_GID_IDX", "BRAID_IB_GID_INDEX"},
           {"braid_log_level", "BRAID_LOG_LEVEL"}}) {
    auto one = core::unknownKnobWarnings({typed});
    INFO(typed);
    REQUIRE(one.size() == 1);
    CHECK_THAT(one[0], Catch::StartsWith(typed + " is not a braid knob (ignored)"));
    CHECK_THAT(one[0], Catch::EndsWith("did you mean " + meant + "?"));
  }
  // Nothing close: no guess, but where the list is.
  auto far = core::unknownKnobWarnings({"BRAID_COMPLETELY_DIFFERENT"});
  REQUIRE(far.size() == 1);
  CHECK_THAT(far[0], !Catch::Contains("did you mean"));
  CHECK_THAT(far[0], Catch::Contains("docs/params.md"));
}

TEST_CASE("knobs, other variables, braid's own harness variables and repeats get no warning") {
  std::vector<std::string> names = {"HOME", "NCCL_SOCKET_IFNAME", "BRAIDED", "BRAID_IN_VM",
                                    "BRAID_VM_INDEX", "BRAID_VM_PEER_IP0", "BRAID_SOFTROCE_KEEP",
                                    "BRAID_BUILD_DIR"};
  for (auto& r : core::listParams(env({}))) names.push_back(r.name);
  CHECK(core::unknownKnobWarnings(names).empty());
  CHECK(core::unknownKnobWarnings({"BRAID_FOO", "BRAID_FOO"}).size() == 1);
}

TEST_CASE("params() logs each unknown BRAID_* variable once per process, through the facade") {
  std::vector<std::string> lines;
  core::setLogFunction([&](spdlog::level::level_enum lvl, std::string_view, std::string_view m) {
    if (lvl == spdlog::level::warn) lines.emplace_back(m);
  });
  auto& log = core::logger(core::Subsys::kCore);
  auto level = log.level();
  log.set_level(spdlog::level::warn);  // unit tests run with BRAID_LOG_LEVEL=off
  ::setenv("BRAID_SPIN_USEC", "10", 1);
  (void)core::params();
  (void)core::params();
  ::unsetenv("BRAID_SPIN_USEC");
  log.set_level(level);
  core::setLogFunction(nullptr);
  auto n = std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("BRAID_SPIN_USEC is not a braid knob (ignored); did you mean BRAID_SPIN_US?") !=
           std::string::npos;
  });
  CHECK(n == 1);
}
