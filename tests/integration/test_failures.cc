// Dead, stalled, busy and closing peers: a dead one fails the endpoint at once, a busy or
// stalled one never does (the waiting operation's own timeout speaks).
#include <signal.h>

#include <cstring>
#include <vector>

#include "support.h"

using namespace braid;
using namespace braid::test;

TEST_CASE("a receiver killed mid-transfer fails the sender's request quickly") {
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd);
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(64u << 20);
    auto r = ep->irecv(buf.data(), buf.size(), 1);
    // Receive a little, then stop reading (the sender's 64 MiB can never fit in the
    // socket buffers), tell the parent, and wait to be killed.
    while (ep->stats().bytesReceived == 0) (void)peer.worker->waitAndProgress(1ms);
    char stalled = 's';
    writeAll(pipeFd, &stalled, 1);
    for (;;) ::pause();
  });
  ContextOptions o;
  o.timeoutMs = 15000;
  auto ctx = makeContext(o);
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  std::vector<uint8_t> big(64u << 20, 1);
  auto s = ep->isend(big.data(), big.size(), 1);
  REQUIRE(s.isOk());
  // Drive the send until the receiver has stalled; it cannot finish before.
  for (;;) {
    REQUIRE(s->test().code() == Code::kInProgress);
    pollfd pfd{child->readFd, POLLIN, 0};
    if (::poll(&pfd, 1, 0) == 1) break;
  }
  ::kill(child->pid, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  Status st = s->wait(20s);
  auto took = std::chrono::steady_clock::now() - t0;
  INFO(st.toString());
  CHECK((st.code() == Code::kConnectionReset || st.code() == Code::kEndpointFailed));
  CHECK(took < 5s);
  CHECK(ep->error().code() == st.code());
  // Later calls on the dead endpoint return the same error at once.
  char b = 0;
  CHECK(ep->isend(&b, 1, 2).status().code() == st.code());
}

TEST_CASE("a sender killed mid-transfer fails the receiver's request quickly") {
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd);
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(256u << 20, 2);
    auto s = ep->isend(buf.data(), buf.size(), 1);
    peer.spin();
  });
  ContextOptions o;
  o.timeoutMs = 15000;
  auto ctx = makeContext(o);
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  std::vector<uint8_t> in(256u << 20);
  auto r = ep->irecv(in.data(), in.size(), 1);
  REQUIRE(r.isOk());
  // Wait until some payload has landed, then kill the sender.
  auto end = std::chrono::steady_clock::now() + 20s;
  while (ep->stats().bytesReceived == 0) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    REQUIRE(r->test().code() == Code::kInProgress);
  }
  ::kill(child->pid, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  Status st = r->wait(20s);
  INFO(st.toString());
  CHECK(st.code() == Code::kConnectionReset);
  CHECK_THAT(st.message(), Catch::Contains("died"));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("a stopped peer is never declared dead: the wait times out, the request stays valid "
          "and completes once the peer resumes") {
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, loOptions(500));
    auto& ep = peer.ep;
    if (!ep) return 11;
    ::raise(SIGSTOP);  // stalled: the kernel still acks, braid is never called
    uint64_t v = 42;
    auto s = ep->isend(&v, 8, 1);
    if (!s || !s->wait(10s).isOk()) return 12;
    uint64_t back = 0;
    auto r = ep->irecv(&back, 8, 2);
    return r && r->wait(10s).isOk() && back == 43 ? 0 : 13;
  });
  ContextOptions o;
  o.timeoutMs = 500;
  auto ctx = makeContext(o);
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  uint64_t v = 0;
  auto r = ep->irecv(&v, 8, 1);
  REQUIRE(r.isOk());
  // Six times BRAID_TIMEOUT_MS of silence: the operation's own timeout speaks, the
  // endpoint stays up.
  auto t0 = std::chrono::steady_clock::now();
  Status st = r->wait(3s);
  INFO(st.toString());
  CHECK(st.code() == Code::kTimedOut);
  CHECK(std::chrono::steady_clock::now() - t0 >= 2900ms);
  CHECK(ep->error().isOk());
  ::kill(child->pid, SIGCONT);
  st = r->wait(10s);
  INFO(st.toString());
  REQUIRE(st.isOk());
  CHECK(v == 42);
  uint64_t reply = 43;
  auto s = ep->isend(&reply, 8, 2);
  REQUIRE(s.isOk());
  CHECK(s->wait(10s).isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("a peer that computes for longer than the timeout without calling braid is alive, "
          "and its next eager send arrives") {
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, loOptions(300));
    auto& ep = peer.ep;
    if (!ep) return 11;
    // "Training step": ten times BRAID_TIMEOUT_MS without a braid call.
    auto end = std::chrono::steady_clock::now() + 3s;
    volatile uint64_t x = 0;
    while (std::chrono::steady_clock::now() < end) x = x + 1;
    uint64_t v = 99, ack = 0;
    auto s = ep->isend(&v, 8, 1);  // eager: finishes when handed over
    if (!s || !s->wait(10s).isOk()) return 12;
    // Stay until the parent has looked at its endpoint (exiting closes this one).
    auto a = ep->irecv(&ack, 8, 2);
    return a && a->wait(10s).isOk() ? 0 : 13;
  });
  ContextOptions o;
  o.timeoutMs = 300;
  auto ctx = makeContext(o);
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  uint64_t v = 0;
  auto r = ep->irecv(&v, 8, 1);
  Status st = r->wait(15s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(v == 99);
  CHECK(ep->error().isOk());
  uint64_t ack = 1;
  auto s = ep->isend(&ack, 8, 2);
  REQUIRE(s.isOk());
  CHECK(s->wait(5s).isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("closing an endpoint fails the peer's waiting requests with a clear reason") {
  auto p = connectLocal();
  uint64_t v = 0;
  auto r = p.client->irecv(&v, 8, 1);
  REQUIRE(r.isOk());
  p.server.reset();
  Status st = r->wait(5s);
  CHECK(st.code() == Code::kConnectionReset);
  CHECK_THAT(st.message(), Catch::Contains("closed the endpoint"));
}

TEST_CASE("messages sent before the peer closed reach receives posted after the close") {
  // An eager send finishes when handed over: its sender may close before the receive is
  // posted. What arrived whole is delivered; the receive after it sees the close.
  auto p = connectLocal();
  uint64_t a = 0xA1, b = 0xB2;
  auto s1 = p.client->isend(&a, 8, 5);
  auto s2 = p.client->isend(&b, 8, 5);
  REQUIRE(s1.isOk());
  REQUIRE(s2.isOk());
  REQUIRE(s1->wait(5s).isOk());
  REQUIRE(s2->wait(5s).isOk());
  p.client.reset();
  uint8_t x = 0;
  auto probe = p.server->irecv(&x, 1, 99);
  REQUIRE(probe.isOk());
  CHECK(probe->wait(5s).code() == Code::kConnectionReset);  // the close has been seen
  uint64_t got1 = 0, got2 = 0, got3 = 0;
  auto r1 = p.server->irecv(&got1, 8, 5);
  auto r2 = p.server->irecv(&got2, 8, 5);
  REQUIRE(r1.isOk());
  REQUIRE(r2.isOk());
  REQUIRE(r1->wait(1s).isOk());
  REQUIRE(r2->wait(1s).isOk());
  CHECK(got1 == a);
  CHECK(got2 == b);
  auto r3 = p.server->irecv(&got3, 8, 5);
  REQUIRE_FALSE(r3.isOk());
  CHECK(r3.status().code() == Code::kConnectionReset);
}

TEST_CASE("a write that finds the peer gone does not lose what the peer sent before it went") {
  // Seen in the collectives: a rank that detected a mismatch told its peers why and left;
  // a peer's next write got EPIPE and failed the endpoint before it read the message that
  // explained it, so its call reported "Broken pipe" instead of the mismatch. The peer's
  // last messages are still in the socket: they are read first, then the endpoint fails.
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd);
    if (!peer.ep) return 11;
    static const char kLast[8] = {'L', 'A', 'S', 'T', 'W', 'O', 'R', 'D'};
    auto s = peer.ep->isend(kLast, sizeof kLast, 4);
    if (!s || !s->finished()) return 12;  // eager: written inside isend
    return 0;  // exits without closing: the kernel closes the sockets
  });
  auto ctx = makeContext(loOptions());
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  REQUIRE(child->wait(30s) == 0);
  // No progress from here on until the receive: the child's message stays unread. The
  // first write reaches the closed socket (whose kernel answers with a reset), a later
  // one fails with EPIPE or ECONNRESET.
  uint64_t v = 7;
  bool failedWrite = false;
  std::vector<Request> sends;
  for (int i = 0; i < 50 && !failedWrite; ++i) {
    auto s = ep->isend(&v, 8, 5);
    if (!s) {
      failedWrite = true;
      break;
    }
    failedWrite = s->finished() && !s->result().isOk();
    sends.push_back(std::move(s).value());
    ::usleep(1000);
  }
  char got[8] = {};
  auto r = ep->irecv(got, sizeof got, 4);
  // Posted on a failed endpoint, a receive still gets a message that arrived before the
  // failure; the buggy order failed the endpoint with the message unread.
  REQUIRE(r.isOk());
  Status st = r->wait(5s);
  INFO(st.toString());
  REQUIRE(st.isOk());
  CHECK(std::memcmp(got, "LASTWORD", 8) == 0);
  // The endpoint does fail, saying the peer is gone.
  auto after = ep->isend(&v, 8, 5);
  Status fst = after ? after->wait(5s) : after.status();
  CHECK(fst.code() == Code::kConnectionReset);
}

TEST_CASE("requests outstanding when their endpoint is closed end as canceled") {
  auto p = connectLocal();
  uint64_t v = 0;
  auto r = p.client->irecv(&v, 8, 1);
  REQUIRE(r.isOk());
  p.client.reset();
  CHECK(r->test().code() == Code::kCanceled);
}
