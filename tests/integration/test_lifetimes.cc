// Teardown in any order and one thread per worker: objects keep what they need alive,
// misuse is refused with an error that says so. CI runs these under ASan and TSan.
#include <atomic>
#include <thread>

#include "support.h"

using namespace braid;
using namespace braid::test;

TEST_CASE("destroying the Worker before its endpoints leaves them usable and their teardown "
          "safe") {
  auto p = connectLocal();
  std::weak_ptr<Context> weakCtx = p.ctx;
  p.worker.reset();
  p.listener.reset();
  p.ctx.reset();
  CHECK_FALSE(weakCtx.expired());  // the endpoints hold it
  uint64_t v = 11, got = 0;
  auto r = p.server->irecv(&got, 8, 1);
  auto s = p.client->isend(&v, 8, 1);
  REQUIRE(s.isOk());
  CHECK(s->wait(5s).isOk());
  CHECK(r->wait(5s).isOk());
  CHECK(got == 11);
  p.client.reset();
  p.server.reset();
  *s = Request();  // the last handles go
  *r = Request();
  CHECK(weakCtx.expired());  // the last holder gone, everything went with it
}

TEST_CASE("a Request outliving its Endpoint, Worker and Context still answers") {
  Request r;
  {
    auto p = connectLocal();
    static uint64_t sink = 0;
    auto q = p.server->irecv(&sink, 8, 1);
    REQUIRE(q.isOk());
    r = std::move(q).value();
  }  // endpoints, listener, worker and the test's context reference all gone
  Status st = r.wait(1s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  CHECK(r.test().code() == Code::kCanceled);
  CHECK(r.cancel().isOk());
}

TEST_CASE("destroying an endpoint while a chunk is landing in its receive cancels the receive "
          "cleanly") {
  // A data socket in the middle of a chunk's payload when the Endpoint goes: the receive
  // must end canceled (not as a protocol error), and no byte may land after the handle
  // says it ended. Tried at several points of the transfer, so that one of them is
  // mid-chunk whatever the machine's speed.
  constexpr size_t kBytes = 32u << 20;
  std::vector<uint8_t> src(kBytes, 0x5a);
  for (int polls = 1; polls <= 24; polls += 3) {
    auto p = connectLocal();
    std::vector<uint8_t> dst(kBytes, 0);
    auto r = p.server->irecv(dst.data(), dst.size(), 1);
    auto s = p.client->isend(src.data(), src.size(), 1);
    REQUIRE(r.isOk());
    REQUIRE(s.isOk());
    for (int i = 0; i < polls; ++i) (void)p.worker->progress();
    p.server.reset();
    Status st = r->wait(5s);
    INFO("after " << polls << " polls: " << st.toString());
    CHECK((st.isOk() || st.code() == Code::kCanceled));
    const std::vector<uint8_t> snapshot = dst;
    for (int i = 0; i < 50; ++i) (void)p.worker->progress();  // the client goes on
    CHECK(dst == snapshot);
    (void)s->wait(2s);
  }
}

TEST_CASE("a Listener outliving its Worker is destroyed safely, and one destroyed first stops "
          "accepting") {
  auto ctx = makeContext();
  auto w = makeWorker(ctx);
  auto l = Listener::create(*w);
  REQUIRE(l.isOk());
  Address a = (*l)->address();
  w.reset();
  auto r = (*l)->accept();
  CHECK(r.status().code() == Code::kInProgress);
  l->reset();
  // Nothing listens now: a connect is refused.
  auto w2 = makeWorker(ctx);
  auto c = Endpoint::connect(*w2, a);
  REQUIRE(c.isOk());
  CHECK((*c)->waitConnected(5s).code() == Code::kConnectionRefused);
}

TEST_CASE("two threads on one endpoint: with thread checks one call is refused with an error "
          "that says so, and nothing hangs or breaks") {
  ContextOptions o;
  o.threadChecks = true;
  auto p = connectLocal(o);
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::string message;
  std::mutex mu;
  auto hammer = [&](uint64_t tag) {
    uint64_t v = tag;
    while (!stop.load()) {
      auto s = p.client->isend(&v, 8, tag);
      Status st = s ? s->test() : s.status();
      if (!s || st.code() == Code::kInvalidArgument) {
        Status e = s ? st : s.status();
        if (e.code() == Code::kInvalidArgument) {
          std::lock_guard<std::mutex> g(mu);
          message = e.message();
          ++refused;
        }
      }
    }
  };
  std::thread t1(hammer, 1), t2(hammer, 2);
  auto end = std::chrono::steady_clock::now() + 5s;
  while (refused.load() == 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(1ms);
  stop = true;
  t1.join();
  t2.join();
  CHECK(refused.load() > 0);
  CHECK_THAT(message, Catch::Contains("one thread at a time"));
  CHECK_THAT(message, Catch::Contains("changed nothing"));
  // The endpoints are intact: every message the threads sent arrives in order per tag.
  for (int i = 0; i < 1000; ++i) (void)p.worker->progress();
  CHECK(p.client->error().isOk());
  CHECK(p.server->error().isOk());
}

TEST_CASE("handing a worker from one thread to another between calls is allowed") {
  ContextOptions o;
  o.threadChecks = true;
  auto p = connectLocal(o);
  uint64_t v = 3, got = 0;
  auto r = p.server->irecv(&got, 8, 1);
  std::thread([&] {
    auto s = p.client->isend(&v, 8, 1);
    REQUIRE(s.isOk());
    CHECK(s->wait(5s).isOk());
  }).join();
  CHECK(r->wait(5s).isOk());
  CHECK(got == 3);
}
