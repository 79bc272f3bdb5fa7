// The listener against bad peers: raw sockets that send what a broken or hostile peer
// would, followed by a good peer that must still be served.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "support.h"
#include "transport/wire.h"

using namespace braid;
using namespace braid::test;

namespace {

int rawConnect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

/// Drives the listener until the raw socket sees EOF; returns what it received.
std::vector<uint8_t> serveUntilClosed(Listener& l, int fd, std::chrono::milliseconds limit = 10s) {
  std::vector<uint8_t> got;
  auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    auto a = l.accept();
    REQUIRE_FALSE(a.isOk());  // a bad peer never becomes an endpoint
    REQUIRE(a.status().code() == Code::kInProgress);
    uint8_t buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return got;
  }
}

Status rejectIn(const std::vector<uint8_t>& got) {
  if (got.size() < sizeof(wire::HsHeader)) return Status(Code::kInternal, "no reject frame");
  wire::HsHeader h;
  std::memcpy(&h, got.data(), sizeof h);
  REQUIRE(h.type == static_cast<uint16_t>(wire::HsType::kReject));
  return wire::decodeReject(got.data() + sizeof h, got.size() - sizeof h);
}

std::vector<uint8_t> hello(uint64_t token) {
  wire::HelloBody b{};
  b.token = token;
  b.nonce = 1;
  b.railCount = 1;
  b.socketsPerRail = 1;
  b.eagerMax = 1024;
  uint8_t a[16] = {127, 0, 0, 1};
  return wire::encodeHello(b, {wire::makeRailDesc("lo", AF_INET, a, 0)});
}

uint64_t tokenOf(const Address& a) {
  uint64_t t;
  std::memcpy(&t, a.bytes + 16, 8);
  return t;
}

void sendBytes(int fd, const std::vector<uint8_t>& b) {
  REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size()));
}

void checkGoodPeerServed(LocalPair& p) {
  auto c = Endpoint::connect(*p.worker, p.listener->address());
  REQUIRE(c.isOk());
  std::unique_ptr<Endpoint> srv;
  auto end = std::chrono::steady_clock::now() + 10s;
  while (!srv || (*c)->connectProgress().code() == Code::kInProgress) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    if (!srv) {
      auto a = p.listener->accept();
      if (a) srv = std::move(a).value();
    }
  }
  uint32_t v = 7, got = 0;
  auto r = srv->irecv(&got, 4, 1);
  auto s = (*c)->isend(&v, 4, 1);
  REQUIRE(s->wait(10s).isOk());
  REQUIRE(r->wait(10s).isOk());
  CHECK(got == 7);
}

}  // namespace

TEST_CASE("the listener refuses malformed handshakes with a reason and keeps serving good peers") {
  ContextOptions o;
  o.timeoutMs = 500;
  auto p = connectLocal(o);
  uint16_t port = p.listener->port();
  uint64_t token = tokenOf(p.listener->address());
  size_t fdsBefore = openFdCount();
  uint64_t refusedBefore = p.listener->refusedCount();

  SECTION("garbage (an HTTP request)") {
    int fd = rawConnect(port);
    std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    sendBytes(fd, std::vector<uint8_t>(http.begin(), http.end()));
    auto st = rejectIn(serveUntilClosed(*p.listener, fd));
    CHECK_THAT(st.message(), Catch::Contains("bad magic"));
    ::close(fd);
  }
  SECTION("wrong protocol version") {
    int fd = rawConnect(port);
    auto h = hello(token);
    uint16_t v = wire::kVersion + 1;
    std::memcpy(h.data() + 4, &v, 2);
    sendBytes(fd, h);
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("protocol version mismatch"));
    ::close(fd);
  }
  SECTION("wrong job token") {
    int fd = rawConnect(port);
    sendBytes(fd, hello(token + 1));
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("wrong job token"));
    ::close(fd);
  }
  SECTION("absurd length") {
    int fd = rawConnect(port);
    auto h = hello(token);
    uint32_t len = 0x7FFFFFFF;
    std::memcpy(h.data() + 8, &len, 4);
    sendBytes(fd, h);
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("malformed"));
    ::close(fd);
  }
  SECTION("a hello with a lying rail count") {
    int fd = rawConnect(port);
    auto h = hello(token);
    uint32_t rails = 9;
    std::memcpy(h.data() + sizeof(wire::HsHeader) + 16, &rails, 4);
    sendBytes(fd, h);
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("rail"));
    ::close(fd);
  }
  SECTION("a join for an endpoint that does not exist") {
    int fd = rawConnect(port);
    sendBytes(fd, wire::encodeJoin({token, 12345, 0, 0}));
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("unknown endpoint"));
    ::close(fd);
  }
  SECTION("a rejoin for an endpoint that does not exist") {
    int fd = rawConnect(port);
    sendBytes(fd, wire::encodeRejoin({token, 12345, 0, 0, 1, 0}));
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("unknown endpoint"));
    ::close(fd);
  }
  SECTION("a rejoin with another job's token") {
    int fd = rawConnect(port);
    sendBytes(fd, wire::encodeRejoin({token + 1, 12345, 0, 0, 1, 0}));
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("wrong job token"));
    ::close(fd);
  }
  SECTION("a rejoin of epoch 0") {
    int fd = rawConnect(port);
    sendBytes(fd, wire::encodeRejoin({token, 12345, 0, 0, 0, 0}));
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("out of range"));
    ::close(fd);
  }
  SECTION("a truncated frame, then silence, is refused at the timeout") {
    int fd = rawConnect(port);
    auto h = hello(token);
    h.resize(h.size() - 10);
    sendBytes(fd, h);
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THAT(rejectIn(serveUntilClosed(*p.listener, fd)).message(),
               Catch::Contains("timed out"));
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    ::close(fd);
  }
  SECTION("a truncated frame, then close") {
    int fd = rawConnect(port);
    auto h = hello(token);
    h.resize(7);
    sendBytes(fd, h);
    ::close(fd);
    auto end = std::chrono::steady_clock::now() + 5s;
    while (p.listener->refusedCount() == refusedBefore) {
      REQUIRE(std::chrono::steady_clock::now() < end);
      (void)p.listener->accept();
    }
  }
  CHECK(p.listener->refusedCount() == refusedBefore + 1);
  checkGoodPeerServed(p);
  // Nothing leaked: the refused sockets are closed (lingering ones drain on the peer's EOF).
  auto end = std::chrono::steady_clock::now() + 5s;
  while (openFdCount() > fdsBefore + 3 /* the good pair: 1 control + 1 data... */ &&
         std::chrono::steady_clock::now() < end)
    (void)p.worker->waitAndProgress(10ms);
  CHECK(openFdCount() <= fdsBefore + 6);
}

TEST_CASE("connecting with the wrong job token fails with connection-refused naming the token") {
  auto p = connectLocal();
  Address bad = p.listener->address();
  uint64_t t = tokenOf(bad) ^ 1;
  std::memcpy(bad.bytes + 16, &t, 8);
  auto c = Endpoint::connect(*p.worker, bad);
  REQUIRE(c.isOk());
  Status st;
  auto end = std::chrono::steady_clock::now() + 10s;
  do {
    REQUIRE(std::chrono::steady_clock::now() < end);
    (void)p.listener->accept();
    st = (*c)->connectProgress();
  } while (st.code() == Code::kInProgress);
  CHECK(st.code() == Code::kConnectionRefused);
  CHECK_THAT(st.message(), Catch::Contains("wrong job token"));
  checkGoodPeerServed(p);
}

TEST_CASE("connecting to a port where nothing listens fails with connection-refused") {
  auto ctx = makeContext();
  auto w = makeWorker(ctx);
  uint16_t port;
  {
    auto l = Listener::create(*w);
    REQUIRE(l.isOk());
    port = (*l)->port();
  }
  auto a = Address::fromHostPort("127.0.0.1", port, 1);
  REQUIRE(a.isOk());
  auto c = Endpoint::connect(*w, *a);
  Status st = c.isOk() ? (*c)->waitConnected(5s) : c.status();
  CHECK(st.code() == Code::kConnectionRefused);
}

TEST_CASE("addresses print and parse back") {
  auto a = Address::fromHostPort("127.0.0.1", 4242, 0xabcdef);
  REQUIRE(a.isOk());
  CHECK(a->toString() == "braid://127.0.0.1:4242?token=0x0000000000abcdef");
  auto b = Address::parse(a->toString());
  REQUIRE(b.isOk());
  CHECK(std::memcmp(a->bytes, b->bytes, Address::kSize) == 0);
  CHECK_FALSE(Address::parse("http://x").isOk());
  CHECK_FALSE(Address::parse("braid://1.2.3.4:99999?token=1").isOk());
}

TEST_CASE("forged rejoins at a connected endpoint are refused and leave it working") {
  // This test is the connector: hello, ack, one join; the listener's endpoint is then
  // connected with one rail of one socket. Rejoins for that rail (the last one), for a
  // rail it does not have, or twice, must close the socket and change nothing.
  ContextOptions o;
  o.timeoutMs = 2000;
  auto p = connectLocal(o);
  const uint16_t port = p.listener->port();
  const uint64_t token = tokenOf(p.listener->address());
  int ctl = rawConnect(port);
  sendBytes(ctl, hello(token));
  std::vector<uint8_t> got;
  wire::HsHeader h{};
  auto end = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    (void)p.listener->accept();
    uint8_t buf[512];
    ssize_t n = ::recv(ctl, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    if (got.size() >= sizeof h) {
      std::memcpy(&h, got.data(), sizeof h);
      if (got.size() >= sizeof h + h.length) break;
    }
  }
  REQUIRE(h.type == static_cast<uint16_t>(wire::HsType::kHelloAck));
  auto ack = wire::decodeHelloAck(got.data() + sizeof h, h.length);
  REQUIRE(ack.isOk());
  const uint64_t id = ack->body.endpointId;
  int data = rawConnect(ack->rails[0].port);
  sendBytes(data, wire::encodeJoin({token, id, 0, 0}));
  std::unique_ptr<Endpoint> srv;
  while (!srv) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    auto a = p.listener->accept();
    if (a) srv = std::move(a).value();
  }
  auto refusedSilently = [&](const wire::RejoinBody& j) {
    int fd = rawConnect(ack->rails[0].port);
    sendBytes(fd, wire::encodeRejoin(j));
    auto until = std::chrono::steady_clock::now() + 5s;
    for (;;) {  // closed by the listener, with no frame
      REQUIRE(std::chrono::steady_clock::now() < until);
      (void)p.worker->waitAndProgress(1ms);
      uint8_t b[64];
      ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break;
    }
    ::close(fd);
    CHECK(srv->error().isOk());
  };
  refusedSilently({token, id, 0, 0, 1, 0});  // its only rail: refused, the rail stays up
  refusedSilently({token, id, 0, 5, 1, 0});  // a socket index the rail does not have
  // The endpoint still works: the raw peer answers... nothing, but a send to it goes out
  // on the original data socket.
  std::vector<uint8_t> big(64 * 1024, 0x5a);
  auto s = srv->isend(big.data(), big.size(), 9);
  REQUIRE(s.isOk());
  CHECK(srv->error().isOk());
  ::close(data);
  ::close(ctl);
}
