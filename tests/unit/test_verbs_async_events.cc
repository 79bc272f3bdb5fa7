// The async-event watcher over a fake libibverbs whose async fd is a pipe and whose
// ibv_get_async_event returns scripted events.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "core/clock.h"
#include "fake_verbs.h"
#include "verbs/async_events.h"

using namespace braid;
using namespace braid::verbs;

namespace {

struct Rig {
  int fds[2] = {-1, -1};
  Lib lib;
  Context ctx;
  Rig() {
    fakeverbs::reset();
    auto& d = fakeverbs::addDevice("fake0", 2, IBV_LINK_LAYER_ETHERNET);
    REQUIRE(::pipe(fds) == 0);
    d.ctx.async_fd = fds[0];
    lib = fakeverbs::makeLib();
    ctx = std::move(*Context::open(lib, "fake0"));
  }
  ~Rig() {
    ctx = Context();
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void push(ibv_event_type type, int port) {
    ibv_async_event e{};
    e.event_type = type;
    e.element.port_num = port;
    fakeverbs::pushEvent(e, fds[1]);
  }
  void pushQp(ibv_event_type type, ibv_qp* qp) {
    ibv_async_event e{};
    e.event_type = type;
    e.element.qp = qp;
    fakeverbs::pushEvent(e, fds[1]);
  }
};

// Waits (bounded) until the watcher has handled `n` events.
bool waitEvents(const AsyncWatcher& w, uint64_t n) {
  uint64_t deadline = core::nowMs() + 5000;
  while (w.eventCount() < n) {
    if (core::nowMs() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

TEST_CASE("a port error fails that port until the port is active again") {
  Rig r;
  auto w = AsyncWatcher::start(r.lib, r.ctx);
  REQUIRE(w.isOk());
  // ibv_get_async_event(3): the watcher switches the fd to non-blocking.
  CHECK((::fcntl(r.fds[0], F_GETFL) & O_NONBLOCK) != 0);
  CHECK((*w)->portStatus(1).isOk());
  r.push(IBV_EVENT_PORT_ERR, 2);
  REQUIRE(waitEvents(**w, 1));
  CHECK((*w)->portStatus(1).isOk());
  Status s = (*w)->portStatus(2);
  CHECK(s.code() == Code::kRailFailed);
  CHECK_THAT(s.message(), Catch::Contains("fake0 port 2"));
  CHECK_THAT(s.message(), Catch::Contains("IBV_EVENT_PORT_ERR"));
  CHECK_THAT(s.message(), Catch::Contains("port error"));
  r.push(IBV_EVENT_PORT_ACTIVE, 2);
  REQUIRE(waitEvents(**w, 2));
  CHECK((*w)->portStatus(2).isOk());
  CHECK(fakeverbs::world().acked.load() == 2);
}

TEST_CASE("QP errors fail only that QP, and a forgotten QP is healthy again") {
  Rig r;
  auto w = AsyncWatcher::start(r.lib, r.ctx);
  REQUIRE(w.isOk());
  ibv_qp qa{}, qb{}, qc{};
  qa.qp_num = 11;
  qb.qp_num = 12;
  qc.qp_num = 13;
  r.pushQp(IBV_EVENT_QP_FATAL, &qa);
  r.pushQp(IBV_EVENT_QP_ACCESS_ERR, &qb);
  r.pushQp(IBV_EVENT_COMM_EST, &qc);  // informational only
  REQUIRE(waitEvents(**w, 3));
  CHECK((*w)->qpStatus(11).code() == Code::kRailFailed);
  CHECK_THAT((*w)->qpStatus(11).message(), Catch::Contains("QP 11"));
  CHECK_THAT((*w)->qpStatus(12).message(), Catch::Contains("IBV_EVENT_QP_ACCESS_ERR"));
  CHECK((*w)->qpStatus(13).isOk());
  CHECK((*w)->portStatus(1).isOk());
  CHECK((*w)->deviceStatus().isOk());
  (*w)->forgetQp(11);
  CHECK((*w)->qpStatus(11).isOk());
}

TEST_CASE("a fatal device event fails the device, every port and every QP") {
  Rig r;
  auto w = AsyncWatcher::start(r.lib, r.ctx);
  REQUIRE(w.isOk());
  r.push(IBV_EVENT_DEVICE_FATAL, 0);
  REQUIRE(waitEvents(**w, 1));
  CHECK((*w)->deviceStatus().code() == Code::kRailFailed);
  CHECK_THAT((*w)->deviceStatus().message(), Catch::Contains("IBV_EVENT_DEVICE_FATAL"));
  CHECK((*w)->portStatus(1).code() == Code::kRailFailed);
  CHECK((*w)->qpStatus(99).code() == Code::kRailFailed);
  CHECK((*w)->cqStatus(nullptr).code() == Code::kRailFailed);
}

TEST_CASE("a CQ error fails that CQ") {
  Rig r;
  auto w = AsyncWatcher::start(r.lib, r.ctx);
  REQUIRE(w.isOk());
  ibv_cq cq{};
  ibv_async_event e{};
  e.event_type = IBV_EVENT_CQ_ERR;
  e.element.cq = &cq;
  fakeverbs::pushEvent(e, r.fds[1]);
  REQUIRE(waitEvents(**w, 1));
  CHECK((*w)->cqStatus(&cq).code() == Code::kRailFailed);
  ibv_cq other{};
  CHECK((*w)->cqStatus(&other).isOk());
}

TEST_CASE("the watcher stops promptly when destroyed while idle") {
  Rig r;
  auto w = AsyncWatcher::start(r.lib, r.ctx);
  REQUIRE(w.isOk());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  uint64_t t0 = core::nowMs();
  w->reset();
  CHECK(core::nowMs() - t0 < 1000);
}

TEST_CASE("starting a watcher on an empty context is an error") {
  Rig r;
  Context empty;
  auto w = AsyncWatcher::start(r.lib, empty);
  REQUIRE_FALSE(w.isOk());
  CHECK(w.status().code() == Code::kInvalidArgument);
  CHECK(std::string(asyncEventName(IBV_EVENT_GID_CHANGE)) == "IBV_EVENT_GID_CHANGE");
  CHECK(std::string(asyncEventName(999)) == "IBV_EVENT_UNKNOWN");
}
