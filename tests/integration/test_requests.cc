// Cancel, wait-all / wait-any, posting while connecting, and the counters of messages that
// arrive before their receive: what an application does around the basic send and receive.
#include <thread>

#include "support.h"

using namespace braid;
using namespace braid::test;

TEST_CASE("a canceled receive gives up its place: the next message of its tag goes to the next "
          "receive") {
  auto p = connectLocal();
  uint64_t a = 0, b = 0;
  auto r1 = p.server->irecv(&a, 8, 4);
  REQUIRE(r1.isOk());
  CHECK(r1->wait(50ms).code() == Code::kTimedOut);
  Status c = r1->cancel();
  CHECK(c.code() == Code::kInProgress);  // needs the peer's word
  Status st = r1->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  // The sender had posted nothing: its first message now goes to the next receive.
  auto r2 = p.server->irecv(&b, 8, 4);
  uint64_t v = 1234;
  auto s = p.client->isend(&v, 8, 4);
  REQUIRE(s->wait(5s).isOk());
  st = r2->wait(5s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(b == 1234);
  CHECK(a == 0);
  CHECK(r1->cancel().isOk());  // finished: nothing more to do
}

TEST_CASE("canceling a receive whose message is already on its way completes it normally") {
  auto p = connectLocal();
  uint64_t a = 0;
  auto r = p.server->irecv(&a, 8, 4);
  uint64_t v = 77;
  auto s = p.client->isend(&v, 8, 4);  // eager: on its way before the cancel arrives
  REQUIRE(s->wait(5s).isOk());
  Status c = r->cancel();
  CHECK((c.code() == Code::kInProgress || c.isOk()));
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(a == 77);
  // The next exchange on the tag still pairs up.
  uint64_t b = 0, w = 78;
  auto r2 = p.server->irecv(&b, 8, 4);
  auto s2 = p.client->isend(&w, 8, 4);
  CHECK(s2->wait(5s).isOk());
  CHECK(r2->wait(5s).isOk());
  CHECK(b == 78);
}

TEST_CASE("a send waiting for its receive can be canceled; the peer's receive for it ends "
          "canceled and the next message pairs normally") {
  auto p = connectLocal();
  std::vector<uint8_t> big(1 << 20, 5), in(1 << 20);
  auto s = p.client->isend(big.data(), big.size(), 9);  // rendezvous: waits for a CTS
  REQUIRE(s.isOk());
  CHECK(s->wait(30ms).code() == Code::kTimedOut);
  CHECK(s->cancel().isOk());
  CHECK(s->test().code() == Code::kCanceled);
  for (int i = 0; i < 20; ++i) (void)p.worker->progress();
  auto r = p.server->irecv(in.data(), in.size(), 9);
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  CHECK_THAT(st.message(), Catch::Contains("canceled its send"));
  auto s2 = p.client->isend(big.data(), big.size(), 9);
  auto r2 = p.server->irecv(in.data(), in.size(), 9);
  std::vector<Request> both;
  both.push_back(std::move(*s2));
  both.push_back(std::move(*r2));
  CHECK(waitAll(both, 10s).isOk());
  CHECK(in == big);
}

TEST_CASE("waitAny returns the first request to finish and waitAll all of them, with a "
          "timeout") {
  auto p = connectLocal();
  uint64_t a = 0, b = 0;
  std::vector<Request> rs;
  rs.push_back(std::move(*p.server->irecv(&a, 8, 1)));
  rs.push_back(std::move(*p.server->irecv(&b, 8, 2)));
  auto t0 = std::chrono::steady_clock::now();
  auto none = waitAny(rs, 100ms);
  CHECK(none.status().code() == Code::kTimedOut);
  CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  uint64_t v = 5;
  auto s = p.client->isend(&v, 8, 2);
  auto any = waitAny(rs, 5s);
  REQUIRE(any.isOk());
  CHECK(*any == 1);
  CHECK(rs[1].result().isOk());
  CHECK(b == 5);
  CHECK(waitAll(rs, 50ms).code() == Code::kTimedOut);
  auto s2 = p.client->isend(&v, 8, 1);
  CHECK(waitAll(rs, 5s).isOk());
  CHECK(a == 5);
  // Requests of two workers cannot be waited on together.
  auto q = connectLocal();
  uint64_t c = 0;
  rs.push_back(std::move(*q.server->irecv(&c, 8, 1)));
  CHECK(waitAll(rs, 10ms).code() == Code::kInvalidArgument);
}

TEST_CASE("sends and receives posted while the endpoint connects are queued and start once it "
          "is connected") {
  auto ctx = makeContext();
  auto w = makeWorker(ctx);
  auto l = Listener::create(*w);
  REQUIRE(l.isOk());
  auto c = Endpoint::connect(*w, (*l)->address());
  REQUIRE(c.isOk());
  uint64_t v = 31, back = 0;
  std::vector<uint8_t> big(256 * 1024, 3);
  auto s = (*c)->isend(&v, 8, 1);              // before any handshake byte moved
  auto sb = (*c)->isend(big.data(), big.size(), 2);
  auto r = (*c)->irecv(&back, 8, 3);
  REQUIRE(s.isOk());
  REQUIRE(sb.isOk());
  REQUIRE(r.isOk());
  std::unique_ptr<Endpoint> srv;
  for (auto end = std::chrono::steady_clock::now() + 10s; !srv;) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    auto a = (*l)->accept();
    if (a) srv = std::move(a).value();
  }
  uint64_t got = 0, reply = 32;
  std::vector<uint8_t> in(big.size());
  auto r1 = srv->irecv(&got, 8, 1);
  auto r2 = srv->irecv(in.data(), in.size(), 2);
  auto s3 = srv->isend(&reply, 8, 3);
  std::vector<Request> all;
  for (auto* q : {&s, &sb, &r, &r1, &r2, &s3}) all.push_back(std::move(**q));
  Status st = waitAll(all, 10s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(got == 31);
  CHECK(back == 32);
  CHECK(in == big);
}

TEST_CASE("requests posted while connecting fail with the connection's error when it fails") {
  auto ctx = makeContext(loOptions(500));
  auto w = makeWorker(ctx);
  // A port where nothing listens.
  auto addr = Address::fromHostPort("127.0.0.1", 1, 1);
  REQUIRE(addr.isOk());
  auto c = Endpoint::connect(*w, *addr);
  REQUIRE(c.isOk());
  uint64_t v = 0;
  auto r = (*c)->irecv(&v, 8, 1);
  REQUIRE(r.isOk());
  Status st = r->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kConnectionRefused);
}

TEST_CASE("eager messages that arrive before their receive count in bytesReceived") {
  auto p = connectLocal();
  uint32_t v = 9, got = 0;
  auto s = p.client->isend(&v, 4, 1);
  REQUIRE(s->wait(5s).isOk());
  for (int i = 0; i < 50; ++i) (void)p.worker->waitAndProgress(1ms);
  auto r = p.server->irecv(&got, 4, 1);
  REQUIRE(r->wait(5s).isOk());
  CHECK(p.server->stats().bytesReceived == 4);
  CHECK(p.server->stats().messagesReceived == 1);
}

TEST_CASE("a collective context over TCP sends up to 128 KiB eagerly; a point-to-point one, or "
          "an explicit eager limit, makes the send wait for its receive") {
  // The collectives' communicators ask for ContextOptions::Usage::kCollective instead of
  // creating their context twice to raise the limit; the transport picks it for TCP rails.
  std::vector<uint8_t> out(100 * 1024), in(out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = patternByte(i, 3);
  struct Case {
    ContextOptions::Usage usage;
    std::optional<size_t> eagerMax;
    bool eager;
  };
  for (const Case& c : {Case{ContextOptions::Usage::kPointToPoint, std::nullopt, false},
                        Case{ContextOptions::Usage::kCollective, std::nullopt, true},
                        Case{ContextOptions::Usage::kCollective, size_t{16384}, false}}) {
    INFO("collective " << (c.usage == ContextOptions::Usage::kCollective) << " eagerMax "
                       << (c.eagerMax ? std::to_string(*c.eagerMax) : "unset"));
    ContextOptions o;
    o.usage = c.usage;
    o.eagerMax = c.eagerMax;
    auto p = connectLocal(o);
    auto s = p.client->isend(out.data(), out.size(), 5);
    REQUIRE(s.isOk());
    // No receive is posted: an eager send finishes when handed over, a rendezvous waits.
    Status early = s->wait(300ms);
    if (c.eager)
      CHECK(early.isOk());
    else
      CHECK(early.code() == Code::kTimedOut);
    std::fill(in.begin(), in.end(), 0);
    auto r = p.server->irecv(in.data(), in.size(), 5);
    REQUIRE(r.isOk());
    REQUIRE(r->wait(5s).isOk());
    CHECK(s->wait(5s).isOk());
    CHECK(in == out);
  }
}

TEST_CASE("an eager send with SendFlags::kMore waits for the next send and goes out in its "
          "write; progress alone sends it too; unknown flags are refused") {
  auto p = connectLocal();
  uint64_t a = 11, b = 22, c = 33, d = 44;
  uint64_t ra = 0, rb = 0, rc = 0, rd = 0;
  // Without the flag an eager send is written inside isend: finished at once.
  auto s0 = p.client->isend(&d, 8, 6);
  REQUIRE(s0.isOk());
  CHECK(s0->finished());
  // With it, the frame waits: no progress has run, so nothing is written yet.
  auto s1 = p.client->isend(&a, 8, 6, nullptr, SendFlags::kMore);
  REQUIRE(s1.isOk());
  CHECK_FALSE(s1->finished());
  // The next send without the flag writes both, still without any progress call.
  auto s2 = p.client->isend(&b, 8, 6);
  REQUIRE(s2.isOk());
  CHECK(s1->finished());
  CHECK(s2->finished());
  // A held send that nothing follows goes out with the worker's next progress (wait).
  auto s3 = p.client->isend(&c, 8, 6, nullptr, SendFlags::kMore);
  REQUIRE(s3.isOk());
  CHECK_FALSE(s3->finished());
  REQUIRE(s3->wait(5s).isOk());
  // In order, whole.
  auto r0 = p.server->irecv(&rd, 8, 6);
  auto r1 = p.server->irecv(&ra, 8, 6);
  auto r2 = p.server->irecv(&rb, 8, 6);
  auto r3 = p.server->irecv(&rc, 8, 6);
  for (auto* r : {&r0, &r1, &r2, &r3}) REQUIRE((*r)->wait(5s).isOk());
  CHECK(rd == 44);
  CHECK(ra == 11);
  CHECK(rb == 22);
  CHECK(rc == 33);
  auto bad = p.client->isend(&a, 8, 6, nullptr, static_cast<SendFlags>(6));
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK_THAT(bad.status().message(), Catch::Contains("unknown flags 0x6"));
}
