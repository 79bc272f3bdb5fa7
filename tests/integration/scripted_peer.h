// A scripted peer: raw sockets that speak braid's wire format (lib/transport/wire.h) as a
// client or as a listener, then send whatever a test forges. The braid side runs in the
// test's thread; every step here is non-blocking and drives the braid side in between, so
// a braid bug shows as a failed REQUIRE with a deadline, never as a hung test.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>

#include "support.h"
#include "transport/wire.h"

namespace braid::test {

inline void setNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

inline int rawConnectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setNonBlocking(fd);
  return fd;
}

/// A listening socket on 127.0.0.1 (non-blocking); *port gets its port.
inline int rawListen(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  *port = ntohs(a.sin_port);
  return fd;
}

/// Resets the connection (RST instead of FIN) when closed.
inline void closeWithReset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

/// Repeats `drive` until `done` returns true, failing the test after `limit`.
inline void until(const std::function<bool()>& done, const std::function<void()>& drive,
                  std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    drive();
  }
}

/// Writes all of `bytes` to the non-blocking `fd`, driving `drive` whenever it is full.
inline void pump(int fd, const std::vector<uint8_t>& bytes, const std::function<void()>& drive,
                 std::chrono::milliseconds limit = 10s) {
  size_t off = 0;
  until([&] { return off == bytes.size(); },
        [&] {
          ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
          if (n > 0) off += static_cast<size_t>(n);
          else REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
          drive();
        },
        limit);
}

/// Reads one handshake frame (header + body) from the non-blocking `fd`.
inline std::vector<uint8_t> readHsFrame(int fd, const std::function<void()>& drive) {
  std::vector<uint8_t> got;
  size_t want = sizeof(wire::HsHeader);
  until([&] { return got.size() == want; },
        [&] {
          uint8_t buf[4096];
          ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - got.size()), 0);
          if (n > 0) {
            got.insert(got.end(), buf, buf + n);
            if (got.size() == sizeof(wire::HsHeader)) {
              wire::HsHeader h;
              std::memcpy(&h, got.data(), sizeof h);
              want += h.length;
            }
          } else {
            REQUIRE(n < 0);  // EOF before the frame is a failure of the test's premise
            REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
          }
          drive();
        });
  return got;
}

inline std::vector<uint8_t> frameBytes(const wire::FrameHeader& h,
                                       const std::vector<uint8_t>& payload = {}) {
  std::vector<uint8_t> b(sizeof h + payload.size());
  std::memcpy(b.data(), &h, sizeof h);
  if (!payload.empty()) std::memcpy(b.data() + sizeof h, payload.data(), payload.size());
  return b;
}

inline uint64_t tokenOfAddress(const Address& a) {
  uint64_t t;
  std::memcpy(&t, a.bytes + 16, 8);
  return t;
}

/// CPU seconds this process has used (user + system).
inline double cpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// A hostile client of a braid Listener: does the handshake by hand (one rail, one data
/// socket), so the listener's accept() yields a real Endpoint, then forges frames.
struct ScriptedClient {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Endpoint> server;  ///< the braid side
  int ctrl = -1, data = -1;
  uint64_t eagerMax = 0;  ///< agreed in the ack

  explicit ScriptedClient(ContextOptions o = {}, uint64_t offerEager = 16384) {
    if (!o.socketIfname) o.socketIfname = "lo";
    if (!o.socketsPerRail) o.socketsPerRail = 1;
    ctx = makeContext(o);
    worker = makeWorker(ctx);
    auto l = Listener::create(*worker);
    REQUIRE(l.isOk());
    listener = std::move(l).value();
    ctrl = rawConnectTo(listener->port());
    wire::HelloBody b{};
    b.token = tokenOfAddress(listener->address());
    b.nonce = 77;
    b.railCount = 1;
    b.socketsPerRail = 1;
    b.eagerMax = offerEager;
    b.transport = static_cast<uint32_t>(Transport::kTcp);
    uint8_t lo[16] = {127, 0, 0, 1};
    pump(ctrl, wire::encodeHello(b, {wire::makeRailDesc("lo", AF_INET, lo, 0)}), drive());
    auto f = readHsFrame(ctrl, drive());
    wire::HsHeader h;
    std::memcpy(&h, f.data(), sizeof h);
    REQUIRE(h.type == static_cast<uint16_t>(wire::HsType::kHelloAck));
    auto ack = wire::decodeHelloAck(f.data() + sizeof h, h.length);
    REQUIRE(ack.isOk());
    eagerMax = ack->body.eagerMax;
    data = rawConnectTo(ack->rails[0].port);
    pump(data, wire::encodeJoin({b.token, ack->body.endpointId, 0, 0}), drive());
    until([&] { return server != nullptr; },
          [&] {
            auto a = listener->accept();
            if (a) server = std::move(a).value();
            else REQUIRE(a.status().code() == Code::kInProgress);
          });
  }
  ~ScriptedClient() {
    if (ctrl >= 0) ::close(ctrl);
    if (data >= 0) ::close(data);
  }
  std::function<void()> drive() {
    return [this] { (void)worker->progress(); };
  }
  /// Progresses until the braid endpoint failed; returns its error.
  Status waitFailed(std::chrono::milliseconds limit = 10s) {
    until([&] { return !server->error().isOk(); }, drive(), limit);
    return server->error();
  }
};

/// A hostile listener for a braid Endpoint::connect: accepts the control socket, reads the
/// hello and answers with an ack the test may forge, then accepts the data socket.
struct ScriptedListener {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Endpoint> client;  ///< the braid side
  int lfd = -1, dataLfd = -1, ctrl = -1, data = -1;
  uint16_t port = 0, dataPort = 0;
  wire::Hello hello;

  explicit ScriptedListener(ContextOptions o = {}) {
    if (!o.socketIfname) o.socketIfname = "lo";
    if (!o.socketsPerRail) o.socketsPerRail = 1;
    ctx = makeContext(o);
    worker = makeWorker(ctx);
    lfd = rawListen(&port);
    dataLfd = rawListen(&dataPort);
    auto addr = Address::fromHostPort("127.0.0.1", port, 0x5ca1ab1e);
    REQUIRE(addr.isOk());
    auto c = Endpoint::connect(*worker, *addr);
    REQUIRE(c.isOk());
    client = std::move(c).value();
    until([&] { return (ctrl = ::accept(lfd, nullptr, nullptr)) >= 0; }, drive());
    setNonBlocking(ctrl);
    auto f = readHsFrame(ctrl, drive());
    wire::HsHeader h;
    std::memcpy(&h, f.data(), sizeof h);
    auto d = wire::decodeHello(f.data() + sizeof h, h.length);
    REQUIRE(d.isOk());
    hello = *d;
  }
  ~ScriptedListener() {
    for (int fd : {lfd, dataLfd, ctrl, data})
      if (fd >= 0) ::close(fd);
  }
  std::function<void()> drive() {
    return [this] { (void)client->connectProgress(); };
  }
  /// The ack an honest listener would send (one rail, one socket), for the test to alter.
  wire::HelloAckBody ackBody() const {
    return wire::HelloAckBody{0xe1, hello.body.nonce, 1, 1, hello.body.eagerMax, 0, 0};
  }
  std::vector<uint8_t> ackBytes(const wire::HelloAckBody& b) const {
    uint8_t lo[16] = {127, 0, 0, 1};
    return wire::encodeHelloAck(b, {wire::makeRailDesc("lo", AF_INET, lo, dataPort)});
  }
  /// Sends `ack`, then accepts the data socket and its join; the client is then connected.
  void finishHandshake(const std::vector<uint8_t>& ack) {
    pump(ctrl, ack, drive());
    until([&] { return (data = ::accept(dataLfd, nullptr, nullptr)) >= 0; }, drive());
    setNonBlocking(data);
    (void)readHsFrame(data, drive());
    until([&] { return client->connectProgress().code() != Code::kInProgress; },
          [] {});
    REQUIRE(client->connectProgress().isOk());
  }
  Status waitFailed(std::chrono::milliseconds limit = 10s) {
    until([&] { return !client->error().isOk(); },
          [&] { (void)worker->progress(); }, limit);
    return client->error();
  }
};

}  // namespace braid::test
