#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

#include <fmt/format.h>

#include "transport/verbs_path.h"
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
VerbsRailDesc verbsRail(uint32_t qpn) {
  VerbsRailDesc v{};
  uint8_t gid[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 1};
  std::memcpy(v.gid, gid, 16);
  v.qpn = qpn;
  v.psn = 0x123456;
  v.linkLayer = 2;
  v.mtu = 3;
  v.recvSlots = 128;
  v.ctsRingAddr = 0x7f0000001000;
  v.ctsRingRkey = 0x1234;
  v.ctsSlots = 256;
  v.flowAddr = 0x7f0000009000;
  v.flowRkey = 0x1234;
  v.port = 1;
  v.gidIndex = 1;
  std::memcpy(v.device, "rxe0", 4);
  return v;
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
  HelloAckBody ab{99, 7, 1, 2, 4096, 0, 0};
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

TEST_CASE("a hello or hello-ack announcing an eager limit above 1 MiB is malformed") {
  // The fuzz finding hello_ack/eager-limit-4GiB: a listener's 4 GiB limit was adopted.
  HelloAckBody ab{99, 7, 1, 2, uint64_t{1} << 32, 0, 0};
  auto f = encodeHelloAck(ab, {rail("127.0.0.1", 5555)});
  auto a = decodeHelloAck(f.data() + sizeof(HsHeader), headerOf(f).length);
  REQUIRE_FALSE(a.isOk());
  CHECK(a.status().code() == Code::kProtocolError);
  CHECK_THAT(a.status().message(), Catch::Contains("eager limit 4294967296"));
  ab.eagerMax = kMaxEagerLimit;
  f = encodeHelloAck(ab, {rail("127.0.0.1", 5555)});
  CHECK(decodeHelloAck(f.data() + sizeof(HsHeader), headerOf(f).length).isOk());
  HelloBody hb = helloBody();
  hb.eagerMax = kMaxEagerLimit + 1;
  f = encodeHello(hb, {rail("10.0.0.1", 0), rail("10.1.0.1", 0)});
  CHECK_FALSE(decodeHello(f.data() + sizeof(HsHeader), headerOf(f).length).isOk());
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
  CHECK_THAT(c.status.message(),
             Catch::Contains(fmt::format("version {} (this side speaks {})", kVersion + 1,
                                         kVersion)));
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
  constexpr Path C = Path::kControlSocket, D = Path::kDataSocket;
  FrameHeader f{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kCts);
  f.total = 100;
  CHECK(checkFrame(f, 16384, C).isOk());
  f.length = 5;  // control frames carry no payload
  CHECK_FALSE(checkFrame(f, 16384, C).isOk());

  f = FrameHeader{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kEager);
  f.length = f.total = 20000;
  CHECK_FALSE(checkFrame(f, 16384, C).isOk());  // over the agreed eager limit
  f.length = f.total = 100;
  CHECK(checkFrame(f, 16384, C).isOk());

  f.type = static_cast<uint8_t>(FrameType::kChunk);
  f.total = 1000;
  f.offset = 0;
  f.length = 100;
  CHECK_FALSE(checkFrame(f, 16384, C).isOk());  // a chunk never belongs on the control socket
  CHECK(checkFrame(f, 16384, D).isOk());
  f.offset = 900;
  f.length = 200;  // beyond the message
  CHECK_FALSE(checkFrame(f, 16384, D).isOk());
  f.length = 100;
  CHECK(checkFrame(f, 16384, D).isOk());
  f.length = 0;
  CHECK_FALSE(checkFrame(f, 16384, D).isOk());

  f.magic = 0x1234;
  CHECK_THAT(checkFrame(f, 16384, C).message(), Catch::Contains("out of sync"));
  f.magic = kFrameMagic;
  f.type = 99;
  CHECK_FALSE(checkFrame(f, 16384, C).isOk());
}

TEST_CASE("a hello with verbs rails round-trips and names each rail") {
  HelloBody b = helloBody();
  b.verbsRailCount = 2;
  auto f = encodeHello(b, {rail("10.0.0.1", 0), rail("10.1.0.1", 0)},
                       {verbsRail(0x11), verbsRail(0x12)});
  HsHeader h = headerOf(f);
  auto d = decodeHello(f.data() + sizeof h, h.length);
  INFO(d.status().toString());
  REQUIRE(d.isOk());
  REQUIRE(d->rails.size() == 2);
  REQUIRE(d->verbsRails.size() == 2);
  CHECK(d->verbsRails[1].qpn == 0x12);
  CHECK(verbsRailName(d->verbsRails[0]) == "rxe0:1 gid[1] ::ffff:10.77.0.1 qpn 0x11");
  HelloAckBody ab{99, 7, 1, 2, 4096, 1, 0};
  auto fa = encodeHelloAck(ab, {rail("127.0.0.1", 5555)}, {verbsRail(0x21)});
  auto a = decodeHelloAck(fa.data() + sizeof h, headerOf(fa).length);
  REQUIRE(a.isOk());
  REQUIRE(a->verbsRails.size() == 1);
  CHECK(a->verbsRails[0].ctsSlots == 256);
}

TEST_CASE("a hello whose verbs rails are malformed is refused naming the field") {
  auto bad = [](VerbsRailDesc v) {
    HelloBody b = helloBody();
    b.railCount = 1;
    b.verbsRailCount = 1;
    auto f = encodeHello(b, {rail("10.0.0.1", 0)}, {v});
    auto d = decodeHello(f.data() + sizeof(HsHeader), headerOf(f).length);
    REQUIRE_FALSE(d.isOk());
    CHECK(d.status().code() == Code::kProtocolError);
    return d.status().message();
  };
  VerbsRailDesc v = verbsRail(0x11);
  v.linkLayer = 9;
  CHECK_THAT(bad(v), Catch::Contains("link layer 9"));
  v = verbsRail(0x11);
  v.mtu = 7;
  CHECK_THAT(bad(v), Catch::Contains("MTU"));
  v = verbsRail(0);
  CHECK_THAT(bad(v), Catch::Contains("QP number"));
  v = verbsRail(0x11);
  v.ctsSlots = 100;
  CHECK_THAT(bad(v), Catch::Contains("power of two"));
  v = verbsRail(0x11);
  v.recvSlots = 0;
  CHECK_THAT(bad(v), Catch::Contains("receive slots"));
  v = verbsRail(0x11);
  v.ctsRingAddr = 0;
  CHECK_THAT(bad(v), Catch::Contains("null"));
  // A count that promises more verbs rails than the bytes hold.
  HelloBody b = helloBody();
  b.railCount = 1;
  b.verbsRailCount = 3;
  auto f = encodeHello(b, {rail("10.0.0.1", 0)}, {verbsRail(0x11)});
  auto d = decodeHello(f.data() + sizeof(HsHeader), headerOf(f).length);
  REQUIRE_FALSE(d.isOk());
  b.verbsRailCount = kMaxRails + 1;
  f = encodeHello(b, {rail("10.0.0.1", 0)}, {verbsRail(0x11)});
  d = decodeHello(f.data() + sizeof(HsHeader), headerOf(f).length);
  REQUIRE_FALSE(d.isOk());
  CHECK_THAT(d.status().message(), Catch::Contains("verbs rail count"));
}

TEST_CASE("a FIN frame is checked: 1 to 16 byte ranges, rail bytes within the message") {
  FrameHeader f{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kFin);
  f.offset = 100;
  f.total = 1000;
  f.length = sizeof(FinRange);
  CHECK(checkFrame(f, 4096, Path::kVerbsSend).isOk());
  f.offset = 1001;
  CHECK_FALSE(checkFrame(f, 4096, Path::kVerbsSend).isOk());
  f.offset = 0;  // a FIN for no bytes
  CHECK_FALSE(checkFrame(f, 4096, Path::kVerbsSend).isOk());
  f.offset = 10;
  for (uint32_t bad : {0u, 5u, 24u, (kFinRanges + 1) * 16u}) {
    f.length = bad;
    CHECK_FALSE(checkFrame(f, 4096, Path::kVerbsSend).isOk());
  }
  f.length = kFinRanges * 16u;
  CHECK(checkFrame(f, 4096, Path::kVerbsSend).isOk());
}

TEST_CASE("a FIN's ranges are within the message and add up to what it announces") {
  auto fin = [](uint64_t total, uint64_t bytes, std::vector<FinRange> rs) {
    FrameHeader f = makeFrame(FrameType::kFin, 7, 3, total,
                              static_cast<uint32_t>(rs.size() * sizeof(FinRange)), bytes);
    std::vector<uint8_t> p(rs.size() * sizeof(FinRange));
    if (!rs.empty()) std::memcpy(p.data(), rs.data(), p.size());
    FinRange out[kFinRanges];
    uint32_t n = 99;
    Status st = parseFinRanges(f, p.data(), out, &n);
    if (st.isOk()) CHECK(n == rs.size());
    return st;
  };
  CHECK(fin(1000, 300, {{0, 100}, {500, 200}}).isOk());
  CHECK(fin(1000, 1000, {{0, 1000}}).isOk());
  Status st = fin(1000, 300, {{0, 100}, {950, 200}});  // past the end
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("outside the 1000-byte message"));
  st = fin(1000, 300, {{0, 100}, {500, 100}});  // adds up to less
  CHECK_THAT(st.message(), Catch::Contains("add up to 200 bytes, it announces 300"));
  st = fin(1000, 150, {{0, 100}, {500, 100}});  // to more
  CHECK_THAT(st.message(), Catch::Contains("more than the 150 bytes"));
  CHECK_FALSE(fin(1000, 100, {{0, 100}, {200, 0}}).isOk());  // an empty range
  // Lengths that wrap 2^64 when added.
  CHECK_FALSE(fin(UINT64_MAX, UINT64_MAX, {{0, UINT64_MAX}, {0, 2}}).isOk());
  CHECK_FALSE(fin(1000, 100, {{UINT64_MAX - 10, 100}}).isOk());
}

TEST_CASE("recheck frames travel on the control socket and name a range that does not wrap") {
  FrameHeader q = makeFrame(FrameType::kRecheck, 7, 3, /*length*/ 4096, 0, /*offset*/ 8192);
  CHECK(checkFrame(q, 4096, Path::kControlSocket).isOk());
  CHECK_FALSE(checkFrame(q, 4096, Path::kVerbsSend).isOk());
  CHECK_FALSE(checkFrame(q, 4096, Path::kDataSocket).isOk());
  q.total = 0;  // a recheck of nothing
  CHECK_FALSE(checkFrame(q, 4096, Path::kControlSocket).isOk());
  q.total = 2;
  q.offset = UINT64_MAX;
  CHECK_THAT(checkFrame(q, 4096, Path::kControlSocket).message(), Catch::Contains("past 2^64"));
  FrameHeader r = makeFrame(FrameType::kRecheckReply, 7, 3, 0, 0, 8192);
  r.flags = kRecheckLast;  // the end of an answer names no bytes
  CHECK(checkFrame(r, 4096, Path::kControlSocket).isOk());
  r.flags = 2;
  CHECK_FALSE(checkFrame(r, 4096, Path::kControlSocket).isOk());
  r.flags = 0;
  r.length = 16;
  CHECK_FALSE(checkFrame(r, 4096, Path::kControlSocket).isOk());
}

TEST_CASE("return-to-RDMA frames travel on the control socket, name a lane and carry no "
          "payload") {
  FrameHeader b = makeFrame(FrameType::kVerbsBack, 0, /*seq*/ 12, /*total*/ 5, 0, /*offset*/ 7);
  CHECK(checkFrame(b, 4096, Path::kControlSocket).isOk());
  CHECK_FALSE(checkFrame(b, 4096, Path::kVerbsSend).isOk());
  CHECK_FALSE(checkFrame(b, 4096, Path::kDataSocket).isOk());
  b.flags = kJoinRefused;  // only an answer may refuse
  CHECK_THAT(checkFrame(b, 4096, Path::kControlSocket).message(), Catch::Contains("unknown flags"));
  FrameHeader a = makeFrame(FrameType::kVerbsBackAck, 0, 0, 0);
  a.flags = kJoinRefused;
  CHECK(checkFrame(a, 4096, Path::kControlSocket).isOk());
  a.flags = 2;
  CHECK_FALSE(checkFrame(a, 4096, Path::kControlSocket).isOk());
  a.flags = 0;
  a.tag = kMaxRails;
  CHECK_THAT(checkFrame(a, 4096, Path::kControlSocket).message(), Catch::Contains("out of range"));
  a.tag = 0;
  a.length = 8;
  CHECK_THAT(checkFrame(a, 4096, Path::kControlSocket).message(), Catch::Contains("payload"));
}

TEST_CASE("an RTS frame is checked: no payload, a message above the eager limit") {
  FrameHeader f{};
  f.magic = kFrameMagic;
  f.type = static_cast<uint8_t>(FrameType::kRts);
  f.total = 4097;
  CHECK(checkFrame(f, 4096, Path::kVerbsSend).isOk());
  f.total = 4096;  // an eager message is never announced
  Status st = checkFrame(f, 4096, Path::kVerbsSend);
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("eager limit 4096"));
  f.total = 1 << 20;
  f.length = 8;
  CHECK_FALSE(checkFrame(f, 4096, Path::kVerbsSend).isOk());
}

TEST_CASE("each path accepts only its own frame types, whatever the peer announced") {
  auto frame = [](FrameType t, uint32_t length = 0) {
    FrameHeader f = makeFrame(t, 1, 0, length, length);
    if (t == FrameType::kChunk) f.total = 1 << 20;
    if (t == FrameType::kRts) f.total = 1 << 20;
    return f;
  };
  // A data socket carries chunks only.
  for (FrameType t : {FrameType::kCts, FrameType::kEager, FrameType::kTruncated,
                      FrameType::kClose, FrameType::kFin, FrameType::kRts,
                      FrameType::kCancelRecv})
    CHECK_THAT(checkFrame(frame(t), 4096, Path::kDataSocket).message(),
               Catch::Contains("does not belong on this path"));
  // The control socket never carries chunks, FINs or RTS (verbs-only and data frames).
  for (FrameType t : {FrameType::kChunk, FrameType::kFin, FrameType::kRts}) {
    FrameHeader f = frame(t, t == FrameType::kChunk ? 100 : 0);
    Status st = checkFrame(f, 4096, Path::kControlSocket);
    CHECK(st.code() == Code::kProtocolError);
    CHECK_THAT(st.message(), Catch::Contains("control socket"));
  }
  // Verbs SENDs never carry chunks, CTS frames or CLOSE.
  for (FrameType t : {FrameType::kChunk, FrameType::kCts, FrameType::kClose})
    CHECK_FALSE(checkFrame(frame(t, t == FrameType::kChunk ? 100 : 0), 4096, Path::kVerbsSend).isOk());
  // An eager payload is bounded by the local limit passed in, not the frame's claim.
  CHECK_FALSE(checkFrame(frame(FrameType::kEager, 512 * 1024), 16384, Path::kControlSocket).isOk());
  // Cancel replies say yes (1) or no (0), nothing else.
  FrameHeader r = makeFrame(FrameType::kCancelReply, 1, 2, 0, 0, 1);
  CHECK(checkFrame(r, 4096, Path::kControlSocket).isOk());
  r.offset = 2;
  CHECK_FALSE(checkFrame(r, 4096, Path::kControlSocket).isOk());
}

TEST_CASE("a long reject reason arrives whole, or cut at a word with an ellipsis") {
  std::string reason =
      "job token 0x0000000000000001 does not match this listener's; set the same "
      "BRAID_JOB_TOKEN on every rank or pass the listener's address";
  REQUIRE(reason.size() > 128);
  auto f = encodeReject(RejectReason::kBadToken, reason);
  HsHeader h;
  std::memcpy(&h, f.data(), sizeof h);
  Status st = decodeReject(f.data() + sizeof h, h.length);
  CHECK_THAT(st.message(), Catch::EndsWith("pass the listener's address"));

  std::string longer;
  for (int i = 0; i < 300; ++i) longer += "word ";
  f = encodeReject(RejectReason::kMalformed, longer);
  std::memcpy(&h, f.data(), sizeof h);
  CHECK(h.length <= kMaxHandshakeBody);
  st = decodeReject(f.data() + sizeof h, h.length);
  CHECK_THAT(st.message(), Catch::EndsWith("word..."));

  // A reject whose length field disagrees with its size is unreadable, not over-read.
  RejectBody b{static_cast<uint32_t>(RejectReason::kBadToken), 50};
  std::vector<uint8_t> body(sizeof b + 10, 'x');
  std::memcpy(body.data(), &b, sizeof b);
  st = decodeReject(body.data(), body.size());
  CHECK(st.code() == Code::kConnectionRefused);
  CHECK_THAT(st.message(), Catch::Contains("says its message has 50"));
  // Control characters from the peer never reach a terminal.
  f = encodeReject(RejectReason::kMalformed, "bad\x1b[2Jthing");
  std::memcpy(&h, f.data(), sizeof h);
  CHECK_THAT(decodeReject(f.data() + sizeof h, h.length).message(), Catch::Contains("bad?[2Jthing"));
}

TEST_CASE("a remote key of no bytes, or one wrapping past the address space, is refused") {
  auto key = [](uint64_t addr, uint64_t length, uint32_t rails) {
    RemoteKey k{};
    std::memcpy(k.bytes, &addr, 8);
    std::memcpy(k.bytes + 8, &length, 8);
    std::memcpy(k.bytes + 80, &rails, 4);
    return k;
  };
  CHECK(decodeRemoteKey(key(0x1000, 4096, 1)).isOk());
  for (auto k : {key(0x1000, 0, 1), key(~uint64_t{0} - 10, 4096, 1), key(0, 4096, 1),
                 key(0x1000, 4096, 0), key(0x1000, 4096, kMaxRails + 1)}) {
    auto d = decodeRemoteKey(k);
    REQUIRE_FALSE(d.isOk());
    CHECK(d.status().code() == Code::kInvalidArgument);
    CHECK_THAT(d.status().message(), Catch::Contains("not a braid remote key"));
  }
}

TEST_CASE("a rejoin round-trips; one of the wrong size, out of range or epoch 0 is refused") {
  RejoinBody j{1, 2, 1, 3, 4, 0};
  auto f = encodeRejoin(j);
  HsHeader h;
  std::memcpy(&h, f.data(), sizeof h);
  REQUIRE(checkHeader(h).status.isOk());
  CHECK(h.type == static_cast<uint16_t>(HsType::kRejoin));
  auto d = decodeRejoin(f.data() + sizeof h, h.length);
  REQUIRE(d.isOk());
  CHECK((d->endpointId == 2 && d->rail == 1 && d->socket == 3 && d->epoch == 4));
  CHECK_FALSE(decodeRejoin(f.data() + sizeof h, h.length - 1).isOk());
  for (auto bad : {RejoinBody{1, 2, kMaxRails, 0, 1, 0}, RejoinBody{1, 2, 0, kMaxSocketsPerRail, 1, 0},
                   RejoinBody{1, 2, 0, 0, 0, 0}}) {
    auto r = decodeRejoin(reinterpret_cast<const uint8_t*>(&bad), sizeof bad);
    CHECK(r.status().code() == Code::kProtocolError);
    CHECK_THAT(r.status().message(), Catch::Contains("out of range"));
  }
}

TEST_CASE("rail down and up frames ride the control socket only, with a rail in range") {
  FrameHeader d = makeFrame(FrameType::kRailDown, 0, 0, /*epoch*/ 3, 0, /*rail*/ 1);
  FrameHeader u = makeFrame(FrameType::kRailUp, 0, 0, 3, 0, 1);
  CHECK(checkFrame(d, 4096, Path::kControlSocket).isOk());
  CHECK(checkFrame(u, 4096, Path::kControlSocket).isOk());
  CHECK_FALSE(checkFrame(d, 4096, Path::kDataSocket).isOk());
  CHECK_FALSE(checkFrame(u, 4096, Path::kVerbsSend).isOk());
  d.offset = kMaxRails;
  CHECK_THAT(checkFrame(d, 4096, Path::kControlSocket).message(), Catch::Contains("out of range"));
  u.total = 1ull << 40;
  CHECK_FALSE(checkFrame(u, 4096, Path::kControlSocket).isOk());
  u.total = 3;
  u.length = 8;
  CHECK_THAT(checkFrame(u, 4096, Path::kControlSocket).message(), Catch::Contains("payload"));
}
