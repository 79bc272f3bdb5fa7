// The bootstrap stores: the TCP store (server thread, clients, wire protocol robustness),
// the file store, and the prefix store.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "braid/coll.h"
#include "coll/store_internal.h"

using namespace braid;
using namespace braid::coll;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<Store> serve(uint64_t token = 7) {
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  o.serve = true;
  o.jobToken = token;
  o.timeout = 2000ms;
  auto s = openTcpStore(o);
  INFO(s.status().toString());
  REQUIRE(s.isOk());
  REQUIRE(servedPort(**s) != 0);
  return *s;
}

Result<std::shared_ptr<Store>> connectTo(uint16_t port, uint64_t token = 7,
                                         std::chrono::milliseconds timeout = 2000ms) {
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.jobToken = token;
  o.timeout = timeout;
  return openTcpStore(o);
}

std::shared_ptr<Store> client(uint16_t port) {
  auto c = connectTo(port);
  INFO(c.status().toString());
  REQUIRE(c.isOk());
  return *c;
}

// Waits for a condition another thread brings about (polled, bounded): the test hooks are
// counters, not events.
template <typename F>
bool eventually(F f, std::chrono::milliseconds limit = 5000ms) {
  auto end = Clock::now() + limit;
  while (!f()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

int64_t msSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// ---- raw sockets speaking (or not) the wire protocol ----

class RawSocket {
 public:
  explicit RawSocket(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{5, 0};  // a read that hangs fails the test instead of blocking it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawSocket() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(const std::string& bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // Reads one frame: its type and body (after the type byte).
  std::pair<int, std::string> readFrame() {
    std::string hdr = readExact(4);
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= uint32_t{static_cast<unsigned char>(hdr[i])} << (8 * i);
    REQUIRE(len >= 1);
    std::string body = readExact(len);
    return {static_cast<unsigned char>(body[0]), body.substr(1)};
  }
  // Whether the server closed the connection (end of stream or reset) within 5 s; whatever
  // it sent before is skipped.
  bool closedByServer() {
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }
  // Resets the connection (RST, as when a killed process's socket is torn down with data
  // unread) instead of closing it in order.
  void abort() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  int fd() const { return fd_; }

 private:
  std::string readExact(size_t n) {
    std::string s(n, '\0');
    size_t off = 0;
    while (off < n) {
      ssize_t r = ::recv(fd_, s.data() + off, n - off, 0);
      REQUIRE(r > 0);
      off += static_cast<size_t>(r);
    }
    return s;
  }
  int fd_ = -1;
};

struct Bytes {
  std::string b;
  Bytes& u8(uint8_t v) {
    b.push_back(static_cast<char>(v));
    return *this;
  }
  Bytes& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  Bytes& str(const std::string& s) {
    le(s.size(), 4);
    b += s;
    return *this;
  }
  // Prefixed with its length, as a frame.
  std::string frame() const {
    Bytes f;
    f.le(b.size(), 4);
    return f.b + b;
  }
};

std::string helloFrame(uint64_t token) {
  return Bytes()
      .u8(static_cast<uint8_t>(detail::Frame::kHello))
      .le(detail::kStoreMagic, 4)
      .le(detail::kStoreVersion, 2)
      .le(token, 8)
      .frame();
}

// A raw client that has said hello (and read the server's hello-ok).
std::unique_ptr<RawSocket> helloedRaw(uint16_t port, uint64_t token = 7) {
  auto r = std::make_unique<RawSocket>(port);
  r->send(helloFrame(token));
  auto [type, body] = r->readFrame();
  REQUIRE(type == static_cast<int>(detail::Frame::kHelloOk));
  return r;
}

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/braid-store-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

// A port nothing listens on: bound (so nobody else takes it) but not listening.
struct ReservedPort {
  ReservedPort() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~ReservedPort() { ::close(fd); }
  int fd = -1;
  uint16_t port = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// TCP store

TEST_CASE("the tcp store serves set, get, add and erase to clients in other threads") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  REQUIRE(server->set("from/server", std::string("v\0s", 3)).isOk());

  std::string seen;
  Status threadStatus;
  std::thread t([&] {
    auto c = connectTo(port);
    if (!c) {
      threadStatus = c.status();
      return;
    }
    auto v = (*c)->get("from/server", 1000ms);
    if (!v) {
      threadStatus = v.status();
      return;
    }
    seen = *v;
    threadStatus = (*c)->set("from/client", "hello");
    if (threadStatus) threadStatus = (*c)->add("counter", 5).status();
  });
  t.join();
  INFO(threadStatus.toString());
  REQUIRE(threadStatus.isOk());
  CHECK(seen == std::string("v\0s", 3));

  auto c = client(port);
  auto v = server->get("from/client", 1000ms);
  REQUIRE(v.isOk());
  CHECK(*v == "hello");
  auto sum = c->add("counter", -2);
  REQUIRE(sum.isOk());
  CHECK(*sum == 3);
  CHECK(*server->add("counter", 10) == 13);
  CHECK(*c->get("counter", 100ms) == "13");
  CHECK(*c->contains("from/client"));
  CHECK(*server->contains("from/client"));
  REQUIRE(c->erase("from/client").isOk());
  CHECK_FALSE(*c->contains("from/client"));
  CHECK_FALSE(*server->contains("from/client"));
  REQUIRE(c->erase("never/set").isOk());  // erasing a missing key is ok
  REQUIRE(server->erase("counter").isOk());
  CHECK(*c->add("counter", 1) == 1);  // an erased counter starts again at 0

  // A value add() cannot read is an error naming the key, and the connection goes on.
  REQUIRE(c->set("text", "abc").isOk());
  auto bad = c->add("text", 1);
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK_THAT(bad.status().message(), Catch::Contains("text"));
  CHECK(*c->get("text", 100ms) == "abc");
  // Keys are checked before anything is sent.
  CHECK(c->set("", "x").code() == Code::kInvalidArgument);
  CHECK(c->set(std::string(detail::kMaxKeyBytes + 1, 'k'), "x").code() == Code::kInvalidArgument);
  REQUIRE(c->set(std::string(detail::kMaxKeyBytes, 'k'), "longest").isOk());
  CHECK(*server->get(std::string(detail::kMaxKeyBytes, 'k'), 100ms) == "longest");
}

TEST_CASE("a tcp store get waits for a key that another thread sets later") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto c = client(port);

  // A client's get parks on the server until the serving process sets the key.
  Result<std::string> got = Status(Code::kInternal, "not run");
  std::thread t([&] { got = c->get("late/one", 10000ms); });
  REQUIRE(eventually([&] { return detail::servedStats(*server).pendingGets == 1; }));
  CHECK_FALSE(*server->contains("late/one"));
  auto start = Clock::now();
  REQUIRE(server->set("late/one", "v1").isOk());
  t.join();
  INFO(got.status().toString());
  REQUIRE(got.isOk());
  CHECK(*got == "v1");
  CHECK(msSince(start) < 2000);

  // The serving process's own get waits for a client's set.
  Result<std::string> local = Status(Code::kInternal, "not run");
  std::thread t2([&] { local = server->get("late/two", 10000ms); });
  REQUIRE(eventually([&] { return detail::servedStats(*server).pendingGets == 1; }));
  REQUIRE(c->set("late/two", "v2").isOk());
  t2.join();
  REQUIRE(local.isOk());
  CHECK(*local == "v2");

  // A client's get is answered by another client's add.
  auto c2 = client(port);
  Result<std::string> viaAdd = Status(Code::kInternal, "not run");
  std::thread t3([&] { viaAdd = c->get("late/three", 10000ms); });
  REQUIRE(eventually([&] { return detail::servedStats(*server).pendingGets == 1; }));
  REQUIRE(c2->add("late/three", 42).isOk());
  t3.join();
  REQUIRE(viaAdd.isOk());
  CHECK(*viaAdd == "42");
  CHECK(detail::servedStats(*server).pendingGets == 0);

  // A client that has its value sees a server that no longer counts its get as parked (the count
  // once lagged the reply: CI caught pendingGets == 1 here). Many rounds make the race show.
  for (int i = 0; i < 200; ++i) {
    std::string key = "late/round/" + std::to_string(i);
    Result<std::string> v = Status(Code::kInternal, "not run");
    std::thread tr([&] { v = c->get(key, 10000ms); });
    REQUIRE(eventually([&] { return detail::servedStats(*server).pendingGets == 1; }));
    REQUIRE(c2->set(key, "x").isOk());
    tr.join();
    REQUIRE(v.isOk());
    INFO("round " << i);
    REQUIRE(detail::servedStats(*server).pendingGets == 0);
  }
}

TEST_CASE("a tcp store get of a key never set times out after its timeout, naming the key") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto c = client(port);
  for (Store* s : {c.get(), server.get()}) {
    auto start = Clock::now();
    auto v = s->get("never/set/key", 200ms);
    int64_t ms = msSince(start);
    REQUIRE_FALSE(v.isOk());
    CHECK(v.status().code() == Code::kTimedOut);
    CHECK_THAT(v.status().message(), Catch::Contains("never/set/key"));
    CHECK_THAT(v.status().message(), Catch::Contains(std::to_string(port)));
    CHECK(ms >= 190);
    CHECK(ms < 1500);
  }
  // The connection is still usable after a timed-out get.
  REQUIRE(c->set("after", "x").isOk());
  CHECK(*c->get("after", 100ms) == "x");
  // A zero timeout answers at once.
  CHECK(c->get("never/set/key", 0ms).status().code() == Code::kTimedOut);
}

TEST_CASE(
    "concurrent tcp store adds from four threads through shared and separate connections sum "
    "exactly") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto shared = client(port);
  auto own = client(port);
  std::vector<std::vector<int64_t>> seen(4);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    // Threads 0 and 1 share one connection, 2 has its own, 3 is the serving process.
    Store* s = i < 2 ? shared.get() : i == 2 ? own.get() : server.get();
    threads.emplace_back([&, i, s] {
      for (int k = 0; k < 1000; ++k) {
        auto v = s->add("sum", 1);
        if (!v) {
          ++failures;
          return;
        }
        seen[i].push_back(*v);
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(failures == 0);
  CHECK(*server->get("sum", 100ms) == "4000");
  // Atomic: every add saw a different total, so together they are 1..4000.
  std::set<int64_t> all;
  for (auto& v : seen) all.insert(v.begin(), v.end());
  CHECK(all.size() == 4000);
  CHECK(*all.begin() == 1);
  CHECK(*all.rbegin() == 4000);
}

TEST_CASE("a tcp store client with the wrong job token is refused with job token mismatch") {
  auto server = serve(0x1234);
  uint16_t port = servedPort(*server);
  auto start = Clock::now();
  auto c = connectTo(port, 0x9999, 3000ms);
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().code() == Code::kConnectionRefused);
  CHECK_THAT(c.status().message(), Catch::Contains("job token mismatch"));
  CHECK_THAT(c.status().message(), Catch::Contains("127.0.0.1:" + std::to_string(port)));
  CHECK(msSince(start) < 1500);  // a refusal is final: no retrying until the timeout

  // Wrong magic and wrong version are refused too, with their reason.
  RawSocket magic(port);
  magic.send(Bytes().u8(1).le(0xdeadbeef, 4).le(1, 2).le(0x1234, 8).frame());
  auto [t1, reason1] = magic.readFrame();
  CHECK(t1 == static_cast<int>(detail::Frame::kReject));
  CHECK_THAT(reason1, Catch::Contains("magic"));
  CHECK(magic.closedByServer());
  RawSocket version(port);
  version.send(Bytes().u8(1).le(detail::kStoreMagic, 4).le(99, 2).le(0x1234, 8).frame());
  auto [t2, reason2] = version.readFrame();
  CHECK(t2 == static_cast<int>(detail::Frame::kReject));
  CHECK_THAT(reason2, Catch::Contains("version 99"));

  // The right token is let in.
  auto ok = connectTo(port, 0x1234);
  REQUIRE(ok.isOk());
  REQUIRE((*ok)->set("k", "v").isOk());
}

TEST_CASE(
    "the tcp store drops a client that sends garbage or an oversized frame and goes on serving "
    "others") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto good = client(port);

  // One that stalls in the middle of a frame must not block anybody.
  RawSocket stalled(port);
  stalled.send(helloFrame(7).substr(0, 6));

  RawSocket http(port);  // "GET " read as a length is far over the bound
  http.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(http.closedByServer());

  auto huge = helloedRaw(port);  // an oversized length, refused before its body comes
  huge->send(Bytes().le(0xfffffff0u, 4).b);
  CHECK(huge->closedByServer());

  auto zero = helloedRaw(port);  // a frame of length zero
  zero->send(Bytes().le(0, 4).b);
  CHECK(zero->closedByServer());

  auto shortSet = helloedRaw(port);  // a set whose fields overrun its length
  shortSet->send(
      Bytes().u8(static_cast<uint8_t>(detail::Frame::kSet)).le(100, 4).u8('a').u8('b').frame());
  CHECK(shortSet->closedByServer());

  auto longKey = helloedRaw(port);  // a key over 4 KiB
  longKey->send(Bytes()
                    .u8(static_cast<uint8_t>(detail::Frame::kContains))
                    .str(std::string(detail::kMaxKeyBytes + 1, 'k'))
                    .frame());
  CHECK(longKey->closedByServer());

  auto unknown = helloedRaw(port);  // an unknown frame type
  unknown->send(Bytes().u8(200).frame());
  CHECK(unknown->closedByServer());

  RawSocket noHello(port);  // a request before the hello
  noHello.send(Bytes().u8(static_cast<uint8_t>(detail::Frame::kContains)).str("k").frame());
  auto [type, reason] = noHello.readFrame();
  CHECK(type == static_cast<int>(detail::Frame::kReject));
  CHECK_THAT(reason, Catch::Contains("hello"));
  CHECK(noHello.closedByServer());

  // The others are served all along.
  REQUIRE(good->set("still", "here").isOk());
  CHECK(*good->get("still", 100ms) == "here");
  auto late = client(port);
  CHECK(*late->get("still", 100ms) == "here");
  // The stalled one is still held (and only the three live connections are).
  CHECK(eventually([&] { return detail::servedStats(*server).clients == 3; }));
}

TEST_CASE("the tcp store keeps a set whose client closes right after sending it") {
  auto server = serve();
  auto raw = helloedRaw(servedPort(*server));
  raw->send(
      Bytes().u8(static_cast<uint8_t>(detail::Frame::kSet)).str("parting").str("words").frame());
  REQUIRE(::shutdown(raw->fd(), SHUT_WR) == 0);
  CHECK(raw->closedByServer());
  auto v = server->get("parting", 1000ms);
  REQUIRE(v.isOk());
  CHECK(*v == "words");
}

TEST_CASE("the tcp store forgets a client that vanishes while its get is parked") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  for (bool reset : {true, false}) {
    auto raw = helloedRaw(port);
    raw->send(
        Bytes().u8(static_cast<uint8_t>(detail::Frame::kGet)).str("never").le(60000, 4).frame());
    REQUIRE(eventually([&] {
      auto st = detail::servedStats(*server);
      return st.pendingGets == 1 && st.clients == 1;
    }));
    if (reset)
      raw->abort();  // as the kernel does for a killed process with data unread
    else
      raw->close();
    REQUIRE(eventually([&] {
      auto st = detail::servedStats(*server);
      return st.pendingGets == 0 && st.clients == 0;
    }));
  }
  auto c = client(port);
  REQUIRE(c->set("k", "v").isOk());
  CHECK(*server->get("k", 100ms) == "v");
}

TEST_CASE("a tcp store client connecting where no server listens fails within its timeout") {
  ReservedPort nobody;
  auto start = Clock::now();
  auto c = connectTo(nobody.port, 7, 300ms);
  int64_t ms = msSince(start);
  REQUIRE_FALSE(c.isOk());
  CHECK((c.status().code() == Code::kTimedOut || c.status().code() == Code::kConnectionRefused));
  CHECK_THAT(c.status().message(), Catch::Contains("127.0.0.1:" + std::to_string(nobody.port)));
  CHECK_THAT(c.status().message(), Catch::Contains("refused"));  // the last errno's text
  CHECK(ms >= 250);
  CHECK(ms < 2000);

  // A client needs a host and a port.
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  CHECK(openTcpStore(o).status().code() == Code::kInvalidArgument);
}

TEST_CASE("a tcp store client keeps trying until a server that starts later is up") {
  ReservedPort reserved;
  uint16_t port = reserved.port;
  Result<std::shared_ptr<Store>> c = Status(Code::kInternal, "not run");
  std::atomic<bool> started{false};
  std::thread t([&] {
    started = true;
    c = connectTo(port, 7, 10000ms);
  });
  REQUIRE(eventually([&] { return started.load(); }));
  ::close(reserved.fd);
  reserved.fd = -1;
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.serve = true;
  o.jobToken = 7;
  auto server = openTcpStore(o);
  REQUIRE(server.isOk());
  t.join();
  INFO(c.status().toString());
  REQUIRE(c.isOk());
  REQUIRE((*c)->set("k", "v").isOk());
  CHECK(*(*server)->get("k", 100ms) == "v");
}

TEST_CASE("serving a tcp store on a port already in use fails naming the port") {
  auto first = serve();
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  o.port = servedPort(*first);
  o.serve = true;
  auto second = openTcpStore(o);
  REQUIRE_FALSE(second.isOk());
  CHECK(second.status().code() == Code::kSystemError);
  CHECK_THAT(second.status().message(), Catch::Contains(std::to_string(o.port)));
  CHECK_THAT(second.status().message(), Catch::Contains("another port"));
}

TEST_CASE(
    "dropping the serving tcp store with clients connected returns promptly and the clients then "
    "see the connection reset") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto waiting = client(port);
  auto idle = client(port);
  RawSocket silent(port);

  Result<std::string> got = Status(Code::kInternal, "not run");
  std::thread t([&] { got = waiting->get("never", 30000ms); });
  REQUIRE(eventually([&] { return detail::servedStats(*server).pendingGets == 1; }));

  auto start = Clock::now();
  server.reset();  // the last reference: stops the thread, closes every socket
  CHECK(msSince(start) < 1000);
  t.join();
  REQUIRE_FALSE(got.isOk());
  CHECK(got.status().code() == Code::kConnectionReset);
  CHECK_THAT(got.status().message(), Catch::Contains("127.0.0.1:" + std::to_string(port)));
  CHECK(msSince(start) < 2000);  // the parked get did not wait out its 30 s

  Status st = idle->set("k", "v");
  CHECK(st.code() == Code::kConnectionReset);
  CHECK_THAT(st.message(), Catch::Contains("127.0.0.1:" + std::to_string(port)));
  CHECK(idle->contains("k").status().code() == Code::kConnectionReset);  // and stays so
  CHECK(silent.closedByServer());
}

TEST_CASE("servedPort of a store is its listening port when it serves and 0 otherwise") {
  auto server = serve();
  uint16_t port = servedPort(*server);
  auto c = client(port);
  CHECK(servedPort(*c) == 0);
  CHECK(servedPort(*prefixStore(server, "p/")) == port);
  TempDir dir;
  auto f = openFileStore(dir.path);
  REQUIRE(f.isOk());
  CHECK(servedPort(**f) == 0);
}

// ---------------------------------------------------------------------------------------
// File store

TEST_CASE("the file store serves set, get, add, erase and contains in a fresh directory") {
  TempDir tmp;
  std::string dir = tmp.path + "/made/by/the/store";  // parents are created
  auto opened = openFileStore(dir);
  INFO(opened.status().toString());
  REQUIRE(opened.isOk());
  auto s = *opened;
  REQUIRE(std::filesystem::is_directory(dir));

  std::string binary("a\0b\n", 4);
  REQUIRE(s->set("rank/0/addr", binary).isOk());
  CHECK(*s->get("rank/0/addr", 100ms) == binary);
  CHECK(*s->contains("rank/0/addr"));
  CHECK_FALSE(*s->contains("rank/1/addr"));
  REQUIRE(s->set("rank/0/addr", "again").isOk());  // overwritten whole
  CHECK(*s->get("rank/0/addr", 100ms) == "again");
  // Keys that differ only in characters the escaping touches stay apart.
  REQUIRE(s->set("a/b", "slash").isOk());
  REQUIRE(s->set("a%2Fb", "percent").isOk());
  REQUIRE(s->set("..", "dots").isOk());
  CHECK(*s->get("a/b", 100ms) == "slash");
  CHECK(*s->get("a%2Fb", 100ms) == "percent");
  CHECK(*s->get("..", 100ms) == "dots");
  // A key too long for a file name is hashed into one.
  std::string longKey(3000, 'x');
  REQUIRE(s->set(longKey, "long").isOk());
  CHECK(*s->get(longKey, 100ms) == "long");
  CHECK_FALSE(*s->contains(std::string(2999, 'x')));

  CHECK(*s->add("n", 5) == 5);
  CHECK(*s->add("n", -7) == -2);
  CHECK(*s->get("n", 100ms) == "-2");
  CHECK(s->add("a/b", 1).status().code() == Code::kInvalidArgument);

  REQUIRE(s->erase("rank/0/addr").isOk());
  CHECK_FALSE(*s->contains("rank/0/addr"));
  REQUIRE(s->erase("rank/0/addr").isOk());  // twice is fine

  auto start = Clock::now();
  auto missing = s->get("rank/0/addr", 200ms);
  int64_t ms = msSince(start);
  REQUIRE_FALSE(missing.isOk());
  CHECK(missing.status().code() == Code::kTimedOut);
  CHECK_THAT(missing.status().message(), Catch::Contains("rank/0/addr"));
  CHECK_THAT(missing.status().message(), Catch::Contains(dir));
  CHECK(ms >= 190);
  CHECK(ms < 1500);

  // Nothing but key files and the lock is left behind (no temporary files).
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename();
    CHECK((name.rfind("k.", 0) == 0 || name == "lock"));
  }
  // A second store over the same directory sees the same keys.
  auto other = openFileStore(dir + "/");
  REQUIRE(other.isOk());
  CHECK(*(*other)->get("a/b", 100ms) == "slash");
}

TEST_CASE("a file store get waits for a key that another thread sets later") {
  TempDir tmp;
  auto s = *openFileStore(tmp.path);
  Result<std::string> got = Status(Code::kInternal, "not run");
  std::thread t([&] { got = s->get("late", 10000ms); });
  REQUIRE(s->set("late", "value").isOk());
  t.join();
  REQUIRE(got.isOk());
  CHECK(*got == "value");
}

TEST_CASE("a file store refuses a path that is a file") {
  TempDir tmp;
  std::string file = tmp.path + "/plain";
  { std::ofstream(file) << "x"; }
  auto s = openFileStore(file);
  REQUIRE_FALSE(s.isOk());
  CHECK_THAT(s.status().message(), Catch::Contains(file));
  CHECK(openFileStore("").status().code() == Code::kInvalidArgument);
}

TEST_CASE("file store adds from two forked processes sum exactly") {
  TempDir tmp;
  constexpr int kAdds = 500;
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto s = openFileStore(tmp.path);
      if (!s) ::_exit(2);
      for (int k = 0; k < kAdds; ++k)
        if (!(*s)->add("total", 1)) ::_exit(3);
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  auto s = *openFileStore(tmp.path);
  CHECK(*s->get("total", 100ms) == std::to_string(2 * kAdds));
}

// ---------------------------------------------------------------------------------------
// Prefix store

TEST_CASE("a prefix store keeps each namespace's keys apart") {
  auto server = serve();
  TempDir tmp;
  auto file = *openFileStore(tmp.path);
  for (auto inner : {server, file}) {
    auto one = prefixStore(inner, "comm1/");
    auto two = prefixStore(inner, "comm2/");
    REQUIRE(one->set("rank0", "a").isOk());
    REQUIRE(two->set("rank0", "b").isOk());
    CHECK(*one->get("rank0", 100ms) == "a");
    CHECK(*two->get("rank0", 100ms) == "b");
    CHECK(*inner->get("comm1/rank0", 100ms) == "a");
    CHECK_FALSE(*inner->contains("rank0"));
    CHECK(*one->add("n", 2) == 2);
    CHECK(*two->add("n", 5) == 5);
    CHECK_FALSE(*two->contains("x"));
    REQUIRE(one->set("x", "1").isOk());
    CHECK_FALSE(*two->contains("x"));
    REQUIRE(two->erase("rank0").isOk());
    CHECK(*one->contains("rank0"));
    auto nested = prefixStore(one, "sub/");
    REQUIRE(nested->set("k", "v").isOk());
    CHECK(*inner->get("comm1/sub/k", 100ms) == "v");
    auto timedOut = two->get("missing", 50ms);
    CHECK(timedOut.status().code() == Code::kTimedOut);
    CHECK_THAT(timedOut.status().message(), Catch::Contains("comm2/missing"));
  }
  CHECK(prefixStore(nullptr, "p/") == nullptr);
}
