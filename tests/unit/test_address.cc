// Address::parse says exactly what is wrong with a malformed braid:// address.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "braid/transport.h"

using namespace braid;

namespace {
// The refusal of `text`, checked for the code, the quoted text and the expected form.
std::string refusal(const std::string& text, Code code = Code::kInvalidArgument) {
  auto a = Address::parse(text);
  INFO("'" << text << "'");
  REQUIRE_FALSE(a.isOk());
  CHECK(a.status().code() == code);
  CHECK_THAT(a.status().message(), Catch::Contains("'" + text + "'"));
  if (code == Code::kInvalidArgument)
    CHECK_THAT(a.status().message(), Catch::Contains("braid://HOST:PORT?token=TOKEN"));
  return a.status().message();
}
}  // namespace

TEST_CASE("Address::parse takes IPv4, bracketed IPv6 and host names with hex or decimal tokens") {
  auto v4 = Address::parse("braid://127.0.0.1:18515?token=0x1f");
  REQUIRE(v4.isOk());
  CHECK(v4->toString() == "braid://127.0.0.1:18515?token=0x000000000000001f");
  auto v6 = Address::parse("braid://[::1]:18515?token=31");
  REQUIRE(v6.isOk());
  CHECK(v6->toString() == "braid://[::1]:18515?token=0x000000000000001f");
  auto named = Address::parse("braid://localhost:1?token=0X1F");
  REQUIRE(named.isOk());
  auto back = Address::parse(v4->toString());
  REQUIRE(back.isOk());
  CHECK(std::memcmp(back->bytes, v4->bytes, Address::kSize) == 0);
}

TEST_CASE("Address::parse names a missing prefix, token or port") {
  CHECK_THAT(refusal(""), Catch::Contains("empty"));
  CHECK_THAT(refusal(" braid://127.0.0.1:1?token=1"), Catch::Contains("space"));
  CHECK_THAT(refusal("127.0.0.1:18515?token=0x1f"), Catch::Contains("must start with braid://"));
  CHECK_THAT(refusal("http://x"), Catch::Contains("must start with braid://"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515"), Catch::Contains("no ?token="));
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token="), Catch::Contains("token is empty"));
  CHECK_THAT(refusal("braid://127.0.0.1?token=0x1f"), Catch::Contains("no port"));
  CHECK_THAT(refusal("braid://127.0.0.1:?token=0x1f"), Catch::Contains("no port"));
  CHECK_THAT(refusal("braid://:18515?token=1"), Catch::Contains("no host"));
  CHECK_THAT(refusal("braid://[]:18515?token=1"), Catch::Contains("no host"));
}

TEST_CASE("Address::parse names a port that is not a number or out of range") {
  CHECK_THAT(refusal("braid://127.0.0.1:http?token=1"),
             Catch::Contains("port 'http' is not a decimal number"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515/?token=1"),
             Catch::Contains("port '18515/' is not a decimal number"));
  CHECK_THAT(refusal("braid://127.0.0.1:-1?token=1"), Catch::Contains("not a decimal number"));
  CHECK_THAT(refusal("braid://127.0.0.1:99999?token=1"),
             Catch::Contains("port 99999 is out of range (1..65535)"));
  CHECK_THAT(refusal("braid://127.0.0.1:99999999999999999999999?token=1"),
             Catch::Contains("out of range (1..65535)"));
  CHECK_THAT(refusal("braid://127.0.0.1:0?token=1"), Catch::Contains("out of range (1..65535)"));
}

TEST_CASE("Address::parse names a token that is neither 0x hex nor decimal") {
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=0xZZ"),
             Catch::Contains("token '0xZZ' is invalid"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=0xZZ"), Catch::Contains("hex"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=0x1f&x=1"), Catch::Contains("token"));
  // strtoull(..., 0) read 010 as octal 8.
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=010"), Catch::Contains("no leading zeros"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=-1"), Catch::Contains("no sign"));
  CHECK_THAT(refusal("braid://127.0.0.1:18515?token=0x10000000000000000"),
             Catch::Contains("too large"));
}

TEST_CASE("Address::parse names an IPv6 address without brackets or with one bracket") {
  CHECK_THAT(refusal("braid://fe80::1:18515?token=0x1"),
             Catch::Contains("IPv6 address without brackets: write "
                             "braid://[fe80::1]:18515?token=0x1"));
  CHECK_THAT(refusal("braid://::1?token=0x1"),
             Catch::Contains("IPv6 address without brackets: write braid://[::1]:PORT?token=0x1"));
  CHECK_THAT(refusal("braid://a:b:c?token=0x1"), Catch::Contains("braid://[IPV6]:PORT?token=0x1"));
  CHECK_THAT(refusal("braid://[fe80::1:18515?token=0x1"), Catch::Contains("no ']'"));
  CHECK_THAT(refusal("braid://[::1]18515?token=1"), Catch::Contains("':PORT' after ']'"));
}

TEST_CASE("Address::parse passes on the resolver's message for a host it cannot resolve") {
  auto a = Address::parse("braid://no-such-host.invalid:18515?token=1");
  REQUIRE_FALSE(a.isOk());
  CHECK(a.status().code() == Code::kNotFound);
  CHECK_THAT(a.status().message(),
             Catch::Contains("'braid://no-such-host.invalid:18515?token=1'"));
  CHECK_THAT(a.status().message(), Catch::Contains("cannot resolve host 'no-such-host.invalid'"));
}
