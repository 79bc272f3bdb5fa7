#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

#include "transport/wire.h"

using namespace braid;
using namespace braid::wire;

namespace {
RailDesc rail(const char* ip, uint16_t port) {
  uint8_t a[16] = {};
  inet_pton(AF_INET, ip, a);
  return makeRailDesc("eth0", AF_INET, a, port);
}
HsHeader headerOf(const std::vector<uint8_t>& f) {
  HsHeader h;
  std::memcpy(&h, f.data(), sizeof h);
  return h;
}
HelloBody helloBody() {
  HelloBody b{};
  b.token = 42;
  b.nonce = 7;
  b.railCount = 2;
  b.socketsPerRail = 4;
  b.eagerMax = 16384;
  return b;
}
}  // namespace

TEST_CASE("a hello round-trips through encode and decode") {
  auto f = encodeHello(helloBody(), {rail("10.0.0.1", 0), rail("10.1.0.1", 0)});
  HsHeader h = headerOf(f);
  REQUIRE(checkHeader(h).status.isOk());
  CHECK(h.type == static_cast<uint16_t>(HsType::kHello));
  REQUIRE(h.length == f.size() - sizeof h);
  auto d = decodeHello(f.data() + sizeof h, h.length);
  REQUIRE(d.isOk());
  CHECK(d->body.token == 42);
  CHECK(d->body.socketsPerRail == 4);
  REQUIRE(d->rails.size() == 2);
  CHECK(railName(d->rails[1]) == "eth0(10.1.0.1:0)");
}

TEST_CASE("a hello-ack and a join round-trip") {
  HelloAckBody ab{99, 7, 1, 2, 4096};
  auto f = encodeHelloAck(ab, {rail("127.0.0.1", 5555)});
  HsHeader h = headerOf(f);
  auto a = decodeHelloAck(f.data() + sizeof h, h.length);
  REQUIRE(a.isOk());
  CHECK(a->body.endpointId == 99);
  CHECK(a->rails[0].port == 5555);
  auto j = encodeJoin({42, 99, 0, 1});
  auto jd = decodeJoin(j.data() + sizeof(HsHeader), headerOf(j).length);
  REQUIRE(jd.isOk());
  CHECK(jd->socket == 1);
}

TEST_CASE("a header with the wrong magic is refused as bad magic") {
  auto f = encodeFrame(HsType::kHello, nullptr, 0, 0x12345678);
  auto c = checkHeader(headerOf(f));
  CHECK(c.status.code() == Code::kProtocolError);
  CHECK(c.reason == RejectReason::kBadMagic);
  CHECK_THAT(c.status.message(), Catch::Contains("not braid"));
}

TEST_CASE("a header with another protocol version is refused as a version mismatch") {
  auto f = encodeFrame(HsType::kHello, nullptr, 0, kMagic, kVersion + 1);
  auto c = checkHeader(headerOf(f));
  CHECK(c.reason == RejectReason::kBadVersion);
  CHECK_THAT(c.status.message(), Catch::Contains("version 2"));
}

TEST_CASE("a header with an unknown type or an absurd length is malformed") {
  HsHeader h{kMagic, kVersion, 77, 0, 0};
  CHECK(checkHeader(h).reason == RejectReason::kMalformed);
  CHECK_FALSE(checkHeader(h).status.isOk());
  HsHeader big{kMagic, kVersion, static_cast<uint16_t>(HsType::kHello), 0xFFFFFFF0u, 0};
  auto c = checkHeader(big);
  CHECK_FALSE(c.status.isOk());
  CHECK_THAT(c.status.message(), Catch::Contains("absurd length"));
}

TEST_CASE("a truncated hello body is refused without reading past it") {
  auto f = encodeHello(helloBody(), {rail("10.0.0.1", 0), rail("10.1.0.1", 0)});
  size_t body = f.size() - sizeof(HsHeader);
  for (size_t cut : {size_t(0), size_t(10), sizeof(HelloBody), body - 1}) {
    std::vector<uint8_t> copy(f.begin() + sizeof(HsHeader), f.begin() + sizeof(HsHeader) + cut);
    auto d = decodeHello(copy.data(), copy.size());
    CHECK_FALSE(d.isOk());
    CHECK(d.status().code() == Code::kProtocolError);
  }
}

TEST_CASE("a hello with zero, too many or badly addressed rails is refused") {
  HelloBody b = helloBody();
  b.railCount = 0;
  auto f0 = encodeHello(b, {});
  CHECK_FALSE(decodeHello(f0.data() + sizeof(HsHeader), headerOf(f0).length).isOk());
  b.railCount = kMaxRails + 1;
  auto f1 = encodeHello(b, std::vector<RailDesc>(kMaxRails + 1, rail("10.0.0.1", 0)));
  auto d1 = decodeHello(f1.data() + sizeof(HsHeader), headerOf(f1).length);
  CHECK_FALSE(d1.isOk());
  CHECK_THAT(d1.status().message(), Catch::Contains("rail count"));
  b.railCount = 1;
  RailDesc r = rail("10.0.0.1", 0);
  r.family = 12345;
  auto f2 = encodeHello(b, {r});
  CHECK_FALSE(decodeHello(f2.data() + sizeof(HsHeader), headerOf(f2).length).isOk());
  b.socketsPerRail = 0;
  auto f3 = encodeHello(b, {rail("10.0.0.1", 0)});
  CHECK_FALSE(decodeHello(f3.data() + sizeof(HsHeader), headerOf(f3).length).isOk());
}

TEST_CASE("a hello whose rail count disagrees with its rail bytes is refused") {
  HelloBody b = helloBody();
  b.railCount = 3;  // but only two rails follow
  auto f = encodeHello(b, {rail("10.0.0.1", 0), rail("10.1.0.1", 0)});
  auto d = decodeHello(f.data() + sizeof(HsHeader), headerOf(f).length);
  CHECK_FALSE(d.isOk());
}

TEST_CASE("a join of the wrong size or out-of-range indices is refused") {
  JoinBody j{1, 2, 0, 0};
  CHECK_FALSE(decodeJoin(reinterpret_cast<uint8_t*>(&j), sizeof j - 1).isOk());
  j.rail = kMaxRails;
  CHECK_FALSE(decodeJoin(reinterpret_cast<uint8_t*>(&j), sizeof j).isOk());
}

TEST_CASE("a reject decodes to connection-refused with the peer's reason") {
  auto f = encodeReject(RejectReason::kBadToken, "token 0x1 does not match");
  auto st = decodeReject(f.data() + sizeof(HsHeader), headerOf(f).length);
  CHECK(st.code() == Code::kConnectionRefused);
  CHECK_THAT(st.message(), Catch::Contains("wrong job token"));
  CHECK_THAT(st.message(), Catch::Contains("token 0x1 does not match"));
  CHECK(decodeReject(f.data(), 3).code() == Code::kConnectionRefused);
}

TEST_CASE("data frames are checked for magic, type, payload limits and range") {
  FrameHeader f{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kCts);
  f.total = 100;
  CHECK(checkFrame(f, 16384).isOk());
  f.length = 5;  // control frames carry no payload
  CHECK_FALSE(checkFrame(f, 16384).isOk());

  f = FrameHeader{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kEager);
  f.length = f.total = 20000;
  CHECK_FALSE(checkFrame(f, 16384).isOk());  // over the agreed eager limit
  f.length = f.total = 100;
  CHECK(checkFrame(f, 16384).isOk());

  f.type = static_cast<uint8_t>(FrameType::kChunk);
  f.total = 1000;
  f.offset = 900;
  f.length = 200;  // beyond the message
  CHECK_FALSE(checkFrame(f, 16384).isOk());
  f.length = 100;
  CHECK(checkFrame(f, 16384).isOk());
  f.length = 0;
  CHECK_FALSE(checkFrame(f, 16384).isOk());

  f.magic = 0x1234;
  CHECK_THAT(checkFrame(f, 16384).message(), Catch::Contains("out of sync"));
  f.magic = kFrameMagic;
  f.type = 99;
  CHECK_FALSE(checkFrame(f, 16384).isOk());
}
