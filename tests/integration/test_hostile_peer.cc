// The adversarial-peer suite: a scripted peer (scripted_peer.h) speaks braid's wire format
// as a client and as a listener and sends what a broken or hostile peer would. Each case
// must end in a clear error on the endpoint (or a correct result), within a deadline, with
// nothing written outside a posted buffer (CI runs this suite under ASan and UBSan).
#include <thread>

#include "scripted_peer.h"

using namespace braid;
using namespace braid::test;

namespace {

wire::FrameHeader frame(wire::FrameType t, uint64_t tag, uint64_t seq, uint64_t total,
                        uint32_t length = 0, uint64_t offset = 0) {
  return wire::makeFrame(t, tag, seq, total, length, offset);
}

std::vector<uint8_t> bytesOf(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }

}  // namespace

// ---------------------------------------------------------------- frames on the wrong path

TEST_CASE("hostile client: a 1 MiB chunk header on the control socket fails the endpoint at "
          "once instead of spinning") {
  ScriptedClient p;
  auto f = frameBytes(frame(wire::FrameType::kChunk, 1, 0, 1 << 20, 1 << 20));
  auto junk = bytesOf(300 * 1024, 0xab);
  f.insert(f.end(), junk.begin(), junk.end());
  double cpu0 = cpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  // The endpoint may fail (and stop reading) before all of it is written.
  (void)::send(p.ctrl, f.data(), f.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  Status st = p.waitFailed();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("control socket"));
  CHECK_THAT(st.message(), Catch::Contains("does not belong"));
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(cpuSeconds() - cpu0 < 1.5);
  // Later calls report the same error; nothing hangs.
  uint8_t b[8];
  CHECK(p.server->irecv(b, 8, 1).status().code() == Code::kProtocolError);
}

TEST_CASE("hostile client: an eager frame above this side's limit fails the endpoint, whatever "
          "the client offered") {
  // The client offers a 1 MiB eager limit; the listener's own (16 KiB) is what holds.
  ScriptedClient p({}, 1ull << 20);
  CHECK(p.eagerMax == 16384);
  auto f = frameBytes(frame(wire::FrameType::kEager, 1, 0, 512 * 1024, 512 * 1024),
                      bytesOf(512 * 1024, 1));
  (void)::send(p.ctrl, f.data(), f.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  Status st = p.waitFailed();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("eager payload over the agreed limit 16384"));
}

TEST_CASE("hostile client: eager messages nobody receives are held up to BRAID_UNEXPECTED_MAX, "
          "then fail the endpoint") {
  ContextOptions o;
  o.unexpectedMax = 1u << 20;
  ScriptedClient p(o);
  const size_t n = p.eagerMax;  // 16 KiB each
  auto send = [&](uint64_t seq) {
    auto f = frameBytes(frame(wire::FrameType::kEager, 5, seq, n, static_cast<uint32_t>(n)),
                        bytesOf(n, static_cast<uint8_t>(seq)));
    pump(p.ctrl, f, p.drive());
  };
  // 64 x 16 KiB = exactly the limit: held, and every one arrives intact once received.
  for (uint64_t seq = 0; seq < 64; ++seq) send(seq);
  std::vector<uint8_t> buf(n);
  for (uint64_t seq = 0; seq < 64; ++seq) {
    auto r = p.server->irecv(buf.data(), n, 5);
    REQUIRE(r.isOk());
    until([&] { return r->test().code() != Code::kInProgress; }, p.drive());
    REQUIRE(r->test().isOk());
    CHECK(buf == bytesOf(n, static_cast<uint8_t>(seq)));
  }
  // 65 with no receive: one over the limit fails the endpoint, naming it.
  for (uint64_t seq = 64; seq < 64 + 65; ++seq) send(seq);
  Status st = p.waitFailed();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("no receive was posted for (BRAID_UNEXPECTED_MAX 1048576)"));
}

TEST_CASE("hostile client: control frames on a data socket and garbage headers fail the "
          "endpoint") {
  ScriptedClient p;
  std::vector<uint8_t> f;
  SECTION("a CTS on a data socket") {
    f = frameBytes(frame(wire::FrameType::kCts, 1, 0, 100));
  }
  SECTION("a bad magic on a data socket") {
    f = bytesOf(sizeof(wire::FrameHeader), 0x5a);
  }
  pump(p.data, f, p.drive());
  Status st = p.waitFailed();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("data socket 0 of rail 0"));
}

TEST_CASE("hostile listener: a hello-ack announcing more than the connector offered is refused") {
  // 512 KiB: a limit braid allows, but above the 16 KiB this connector offered.
  // 1 GiB: above what any side may offer, malformed (the fuzz finding eager-limit-4GiB).
  auto [limit, says] = GENERATE(table<uint64_t, std::string>(
      {{512 * 1024, "eager limit of 524288 bytes, above the 16384 this side offered"},
       {1ull << 30, "malformed handshake: hello-ack with eager limit 1073741824 above 1048576"}}));
  ScriptedListener p;
  auto body = p.ackBody();
  body.eagerMax = limit;
  pump(p.ctrl, p.ackBytes(body), p.drive());
  until([&] { return p.client->connectProgress().code() != Code::kInProgress; }, [] {});
  Status st = p.client->connectProgress();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains(says));
}

TEST_CASE("hostile listener: a 512 KiB eager frame after an honest ack fails the client's "
          "endpoint") {
  ScriptedListener p;
  p.finishHandshake(p.ackBytes(p.ackBody()));
  uint8_t b[64];
  auto r = p.client->irecv(b, sizeof b, 1);
  REQUIRE(r.isOk());
  auto f = frameBytes(frame(wire::FrameType::kEager, 1, 0, 512 * 1024, 512 * 1024),
                      bytesOf(512 * 1024, 1));
  (void)::send(p.ctrl, f.data(), f.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("eager payload over the agreed limit"));
}

TEST_CASE("hostile listener: an ack for another connection, or with more rails than offered, "
          "is refused") {
  ScriptedListener p;
  auto body = p.ackBody();
  std::string expect;
  SECTION("another nonce") {
    body.nonce ^= 1;
    expect = "acked another connection";
  }
  SECTION("more rails") {
    body.railCount = 2;
    expect = "more rails than offered";
  }
  uint8_t lo[16] = {127, 0, 0, 1};
  auto rail = wire::makeRailDesc("lo", AF_INET, lo, p.dataPort);
  pump(p.ctrl, wire::encodeHelloAck(body, std::vector<wire::RailDesc>(body.railCount, rail)),
       p.drive());
  until([&] { return p.client->connectProgress().code() != Code::kInProgress; }, [] {});
  Status st = p.client->connectProgress();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains(expect));
}

// ---------------------------------------------------------------- frames that contradict

TEST_CASE("hostile client: a receive half filled by a chunk and then ended on the control "
          "socket fails the endpoint, and nothing lands in the freed buffer") {
  ScriptedClient p;
  auto buf = std::make_unique<std::vector<uint8_t>>(64 * 1024, 0);
  auto r = p.server->irecv(buf->data(), buf->size(), 5);
  REQUIRE(r.isOk());
  (void)p.worker->progress();  // the CTS goes out
  // Half of a 32 KiB chunk: the data socket is now writing into the receive buffer.
  auto chunk = frameBytes(frame(wire::FrameType::kChunk, 5, 0, 64 * 1024, 32 * 1024, 0),
                          bytesOf(16 * 1024, 0x11));
  pump(p.data, chunk, p.drive());
  until([&] { return p.server->stats().bytesReceived > 0 || true; }, p.drive());
  for (int i = 0; i < 20; ++i) (void)p.worker->progress();
  std::vector<uint8_t> finisher;
  SECTION("TRUNCATED for the same tag and seq") {
    finisher = frameBytes(frame(wire::FrameType::kTruncated, 5, 0, 1 << 20));
  }
  SECTION("EAGER for the same tag and seq") {
    finisher = frameBytes(frame(wire::FrameType::kEager, 5, 0, 100, 100), bytesOf(100, 0x22));
  }
  pump(p.ctrl, finisher, p.drive());
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  // The application may free the buffer now; the rest of the chunk must go nowhere.
  buf.reset();
  auto rest = bytesOf(16 * 1024, 0x33);
  (void)::send(p.data, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  for (int i = 0; i < 50; ++i) (void)p.worker->waitAndProgress(1ms);
  CHECK(p.server->error().code() == Code::kProtocolError);
}

TEST_CASE("hostile client: the same chunk twice does not complete a receive whose second half "
          "never came; chunks that overlap count each byte once") {
  ScriptedClient p;
  std::vector<uint8_t> buf(64 * 1024, 0);
  auto r = p.server->irecv(buf.data(), buf.size(), 9);
  REQUIRE(r.isOk());
  (void)p.worker->progress();
  auto first = frameBytes(frame(wire::FrameType::kChunk, 9, 0, 64 * 1024, 32 * 1024, 0),
                          bytesOf(32 * 1024, 0x44));
  pump(p.data, first, p.drive());
  pump(p.data, first, p.drive());
  for (int i = 0; i < 100; ++i) (void)p.worker->waitAndProgress(1ms);
  CHECK(r->test().code() == Code::kInProgress);
  CHECK(p.server->stats().bytesReceived == 32 * 1024);
  // [16 KiB, 64 KiB) overlaps what landed: only the second half is new.
  auto second = frameBytes(frame(wire::FrameType::kChunk, 9, 0, 64 * 1024, 48 * 1024, 16 * 1024),
                           bytesOf(48 * 1024, 0x44));
  pump(p.data, second, p.drive());
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(r->size() == 64 * 1024);
  CHECK(p.server->stats().bytesReceived == 64 * 1024);
  CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0x44; }));
}

TEST_CASE("hostile client: a chunk that changes the message size fails the endpoint") {
  ScriptedClient p;
  std::vector<uint8_t> buf(64 * 1024, 0);
  auto r = p.server->irecv(buf.data(), buf.size(), 9);
  REQUIRE(r.isOk());
  (void)p.worker->progress();
  pump(p.data, frameBytes(frame(wire::FrameType::kChunk, 9, 0, 64 * 1024, 1024, 0),
                          bytesOf(1024, 1)),
       p.drive());
  pump(p.data, frameBytes(frame(wire::FrameType::kChunk, 9, 0, 2048, 1024, 1024),
                          bytesOf(1024, 1)),
       p.drive());
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains("an earlier frame said 65536"));
}

TEST_CASE("hostile client: frames for receives that do not exist or were never asked fail the "
          "endpoint with what was wrong") {
  ScriptedClient p;
  uint8_t b[64];
  auto r = p.server->irecv(b, sizeof b, 3);  // a receive of tag 3 seq 0, 64 bytes
  REQUIRE(r.isOk());
  wire::FrameHeader f{};
  std::string expect;
  SECTION("a chunk on a tag with no receive") {
    pump(p.data, frameBytes(frame(wire::FrameType::kChunk, 4, 0, 100, 100), bytesOf(100, 0)),
         p.drive());
    expect = "has no posted receive";
  }
  SECTION("a truncation notice for a receive not posted") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kTruncated, 3, 7, 1 << 20)), p.drive());
    expect = "a receive not posted";
  }
  SECTION("a truncation notice for a message that fits") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kTruncated, 3, 0, 10)), p.drive());
    expect = "truncation notice for tag 3 seq 0 (10 bytes for a 64-byte receive)";
  }
  SECTION("the same eager message twice") {
    auto e = frameBytes(frame(wire::FrameType::kEager, 8, 0, 4, 4), bytesOf(4, 9));
    pump(p.ctrl, e, p.drive());
    pump(p.ctrl, e, p.drive());
    expect = "duplicate or out of order";
  }
  SECTION("a second clear-to-send for the same receive") {
    auto c = frameBytes(frame(wire::FrameType::kCts, 6, 2, 1 << 20));
    pump(p.ctrl, c, p.drive());
    pump(p.ctrl, c, p.drive());
    expect = "a second clear-to-send for tag 6 seq 2";
  }
  SECTION("a cancel reply nobody asked for") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kCancelReply, 3, 0, 0, 0, 1)), p.drive());
    expect = "which asked none";
  }
  // What only a verbs endpoint takes (after a lane failure), at a TCP endpoint.
  SECTION("a recheck of a lane's bytes") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kRecheck, 3, 0, 32, 0, 0)), p.drive());
    expect = "recheck frame on an endpoint without a verbs data path";
  }
  SECTION("an answer to a recheck") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kRecheckReply, 3, 0, 32, 0, 0)), p.drive());
    expect = "recheck frame on an endpoint without a verbs data path";
  }
  SECTION("an offer to return to RDMA") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kVerbsBack, 0, 0, 0)), p.drive());
    expect = "offers a return to RDMA, which this side does not take";
  }
  SECTION("an answer to a return to RDMA nobody offered") {
    pump(p.ctrl, frameBytes(frame(wire::FrameType::kVerbsBackAck, 0, 0, 0)), p.drive());
    expect = "answers a return to RDMA this side did not offer";
  }
  SECTION("an eager message flagged as sent again after verbs lanes failed") {
    wire::FrameHeader again = frame(wire::FrameType::kEager, 3, 0, 4, 4);
    again.flags = wire::kAgain;
    pump(p.ctrl, frameBytes(again, bytesOf(4, 9)), p.drive());
    expect = "sent again after verbs lanes failed, on an endpoint without verbs lanes";
  }
  (void)f;
  Status st = p.waitFailed();
  INFO(st.toString());
  CHECK(st.code() == Code::kProtocolError);
  CHECK_THAT(st.message(), Catch::Contains(expect));
  CHECK(r->test().code() == Code::kProtocolError);
}

// ---------------------------------------------------------------- handshakes

TEST_CASE("hostile clients: idle handshakes are reaped by the worker's progress while the "
          "application never calls accept, and their number is bounded") {
  ContextOptions o;
  o.timeoutMs = 400;
  auto p = connectLocal(o);
  size_t before = openFdCount();
  std::vector<int> idle;
  SECTION("100 idle connections are closed within the timeout") {
    for (int i = 0; i < 100; ++i) idle.push_back(rawConnectTo(p.listener->port()));
  }
  SECTION("300 idle connections never hold more than the bound") {
    for (int i = 0; i < 300; ++i) {
      idle.push_back(rawConnectTo(p.listener->port()));
      if (i % 20 == 0) (void)p.worker->progress();
    }
  }
  // The application is busy with its own transfer: a request's wait, no accept().
  std::vector<uint8_t> buf(1 << 20), out(1 << 20, 7);
  size_t peak = 0;
  // BRAID_TIMEOUT_MS, then the 2 s a refused socket may linger for its reject to leave.
  auto end = std::chrono::steady_clock::now() + 3000ms;
  while (std::chrono::steady_clock::now() < end) {
    auto r = p.server->irecv(buf.data(), buf.size(), 1);
    auto s = p.client->isend(out.data(), out.size(), 1);
    REQUIRE(s->wait(5s).isOk());
    REQUIRE(r->wait(5s).isOk());
    peak = std::max(peak, openFdCount());
  }
  // Each listener-side socket is one descriptor (the raw clients' own are `idle.size()`):
  // at most 128 pending handshakes and 64 lingering refusals at any time.
  CHECK(peak <= before + idle.size() + 128 + 64 + 8);
  CHECK(openFdCount() <= before + idle.size() + 4);
  CHECK(p.listener->refusedCount() >= idle.size());
  for (int fd : idle) ::close(fd);
}

TEST_CASE("hostile client: a control socket reset right after the hello-ack costs no CPU and "
          "the half-made endpoint is reaped") {
  ContextOptions o;
  o.timeoutMs = 2000;
  o.socketIfname = "lo";
  o.socketsPerRail = 1;
  auto ctx = makeContext(o);
  auto w = makeWorker(ctx);
  auto l = Listener::create(*w);
  REQUIRE(l.isOk());
  int ctrl = rawConnectTo((*l)->port());
  wire::HelloBody b{};
  b.token = tokenOfAddress((*l)->address());
  b.nonce = 5;
  b.railCount = 1;
  b.socketsPerRail = 1;
  b.eagerMax = 16384;
  uint8_t lo[16] = {127, 0, 0, 1};
  auto drive = [&] { (void)(*l)->accept(); };
  pump(ctrl, wire::encodeHello(b, {wire::makeRailDesc("lo", AF_INET, lo, 0)}), drive);
  (void)readHsFrame(ctrl, drive);
  closeWithReset(ctrl);
  double cpu0 = cpuSeconds();
  auto a = (*l)->waitAccept(600ms);
  CHECK(a.status().code() == Code::kTimedOut);
  double used = cpuSeconds() - cpu0;
  CHECK(used < 0.3);  // a spinning epoll_wait burns the whole 600 ms
  CHECK((*l)->refusedCount() == 1);
}

TEST_CASE("a refusal's reason reaches the client whole, and errors name the control socket") {
  auto ctx = makeContext();
  auto w = makeWorker(ctx);
  ListenOptions lo;
  lo.jobToken = 1;
  auto l = Listener::create(*w, lo);
  REQUIRE(l.isOk());
  auto addr = Address::fromHostPort("127.0.0.1", (*l)->port(), 2);
  REQUIRE(addr.isOk());
  auto c = Endpoint::connect(*w, *addr);
  REQUIRE(c.isOk());
  Status st;
  until([&] { return (st = (*c)->connectProgress()).code() != Code::kInProgress; },
        [&] { (void)(*l)->accept(); });
  INFO(st.toString());
  CHECK(st.code() == Code::kConnectionRefused);
  CHECK_THAT(st.message(), Catch::EndsWith("or pass the listener's address"));
}

TEST_CASE("the control port answers on every local address: a client may use 127.0.0.1 "
          "whatever the first rail is") {
  auto ctx = makeContext();
  auto w = makeWorker(ctx);
  auto l = Listener::create(*w);
  REQUIRE(l.isOk());
  // The rail here is lo (127.0.0.1); 127.0.0.2 is another local address of it.
  auto addr = Address::fromHostPort("127.0.0.2", (*l)->port(), tokenOfAddress((*l)->address()));
  REQUIRE(addr.isOk());
  auto c = Endpoint::connect(*w, *addr);
  REQUIRE(c.isOk());
  std::unique_ptr<Endpoint> srv;
  until([&] { return srv && (*c)->connectProgress().code() != Code::kInProgress; },
        [&] {
          if (!srv) {
            auto a = (*l)->accept();
            if (a) srv = std::move(a).value();
          }
          (void)w->progress();
        });
  CHECK((*c)->connectProgress().isOk());
}
