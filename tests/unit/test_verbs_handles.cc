// RAII handles over a fake libibverbs: creation, errors, and teardown order.
#include <catch2/catch.hpp>

#include "fake_verbs.h"
#include "verbs/handles.h"

using namespace braid;
using namespace braid::verbs;

namespace {

std::vector<std::string> callsAfter(const std::string& marker) {
  auto& c = fakeverbs::world().calls;
  auto it = std::find(c.begin(), c.end(), marker);
  return std::vector<std::string>(it == c.end() ? c.begin() : it + 1, c.end());
}

// Declared in creation order, as the header asks owners to do.
struct Stack {
  Context ctx;
  Pd pd;
  CompChannel ch;
  Cq cq;
  Qp qp;
  Mr mr;
};

}  // namespace

TEST_CASE("a context opens a device by name and closes it once") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  fakeverbs::addDevice("fake1", 2, IBV_LINK_LAYER_INFINIBAND);
  Lib lib = fakeverbs::makeLib();
  {
    auto ctx = Context::open(lib, "fake1");
    REQUIRE(ctx.isOk());
    CHECK(ctx->name() == "fake1");
    CHECK(ctx->caps().physPortCnt == 2);
    CHECK(ctx->caps().maxCqe == 8192);
    Context moved = std::move(*ctx);
    CHECK_FALSE(*ctx);
    CHECK(moved.get() == &fakeverbs::world().devices[1].ctx);
  }
  auto& calls = fakeverbs::world().calls;
  CHECK(std::count(calls.begin(), calls.end(), "closeDevice fake1") == 1);
  // ibv_get_device_list(3): the list is freed after the device is opened.
  auto open = std::find(calls.begin(), calls.end(), "openDevice fake1");
  auto freed = std::find(calls.begin(), calls.end(), "freeDeviceList");
  CHECK(open < freed);
}

TEST_CASE("opening an unknown device is not-found and lists the devices that exist") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  fakeverbs::addDevice("fake1", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  auto ctx = Context::open(lib, "mlx5_9");
  REQUIRE_FALSE(ctx.isOk());
  CHECK(ctx.status().code() == Code::kNotFound);
  CHECK_THAT(ctx.status().message(), Catch::Contains("mlx5_9"));
  CHECK_THAT(ctx.status().message(), Catch::Contains("fake0, fake1"));

  fakeverbs::world().listFails = true;
  auto none = Context::open(lib, "fake0");
  REQUIRE_FALSE(none.isOk());
  CHECK(none.status().code() == Code::kUnsupported);
  CHECK_THAT(none.status().message(), Catch::Contains("ibv_get_device_list"));
}

TEST_CASE("handles are torn down in the reverse order of their creation") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  static char buf[4096];
  {
    Stack s;
    s.ctx = std::move(*Context::open(lib, "fake0"));
    s.pd = std::move(*Pd::alloc(s.ctx));
    s.ch = std::move(*CompChannel::create(s.ctx));
    CHECK(s.ch.fd() == 42);
    auto cq = Cq::create(s.ctx, 64, &s.ch);
    REQUIRE(cq.isOk());
    CHECK(cq->depth() >= 64);
    s.cq = std::move(*cq);
    auto qp = Qp::createRc(s.pd, s.cq, s.cq, QpCaps{16, 16, 1, 1, 0});
    REQUIRE(qp.isOk());
    CHECK(qp->qpn() == 100);
    CHECK(qp->caps().maxInlineData == 64);  // what the device granted is kept
    s.qp = std::move(*qp);
    auto mr = s.pd.regMr(buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
    REQUIRE(mr.isOk());
    CHECK(mr->addr() == buf);
    CHECK(mr->length() == sizeof(buf));
    CHECK(mr->lkey() != mr->rkey());
    s.mr = std::move(*mr);
    fakeverbs::world().calls.push_back("-- teardown --");
  }
  CHECK(callsAfter("-- teardown --") == std::vector<std::string>{"deregMr", "destroyQp",
                                                                 "destroyCq", "destroyCompChannel",
                                                                 "deallocPd", "closeDevice fake0"});
}

TEST_CASE("a failing release is logged and teardown goes on without throwing") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  fakeverbs::world().deallocPdRc = EBUSY;
  fakeverbs::world().closeRc = EIO;
  {
    auto ctx = Context::open(lib, "fake0");
    REQUIRE(ctx.isOk());
    auto pd = Pd::alloc(*ctx);
    REQUIRE(pd.isOk());
    fakeverbs::world().calls.push_back("-- teardown --");
  }
  CHECK(callsAfter("-- teardown --") == std::vector<std::string>{"deallocPd", "closeDevice fake0"});
}

TEST_CASE("a move-assigned handle releases what it held before") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  auto ctx = Context::open(lib, "fake0");
  REQUIRE(ctx.isOk());
  Pd a = std::move(*Pd::alloc(*ctx));
  Pd b = std::move(*Pd::alloc(*ctx));
  fakeverbs::world().calls.push_back("-- assign --");
  a = std::move(b);
  CHECK(callsAfter("-- assign --") == std::vector<std::string>{"deallocPd"});
  CHECK(a);
  CHECK_FALSE(b);  // NOLINT: moved-from handles are empty by contract
}

TEST_CASE("registration and QP errors name the device, the sizes and the errno text") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  auto ctx = Context::open(lib, "fake0");
  REQUIRE(ctx.isOk());
  auto pd = Pd::alloc(*ctx);
  REQUIRE(pd.isOk());
  static char buf[64];
  fakeverbs::world().regMrErrno = ENOMEM;
  auto mr = pd->regMr(buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
  REQUIRE_FALSE(mr.isOk());
  CHECK(mr.status().code() == Code::kNoMemory);
  CHECK_THAT(mr.status().message(), Catch::Contains("fake0"));
  CHECK_THAT(mr.status().message(), Catch::Contains("64 bytes"));
  CHECK_THAT(mr.status().message(), Catch::Contains("Cannot allocate memory"));
  CHECK_THAT(mr.status().message(), Catch::Contains("ulimit -l"));

  auto dmabuf = pd->regDmabufMr(0, 4096, 0, 3, 0);
  REQUIRE_FALSE(dmabuf.isOk());
  CHECK(dmabuf.status().code() == Code::kUnsupported);

  auto cq = Cq::create(*ctx, 16, nullptr);
  REQUIRE(cq.isOk());
  auto big = Qp::createRc(*pd, *cq, *cq, QpCaps{100000, 16, 1, 1, 0});
  REQUIRE_FALSE(big.isOk());
  CHECK(big.status().code() == Code::kInvalidArgument);
  CHECK_THAT(big.status().message(), Catch::Contains("fake0"));
  CHECK_THAT(big.status().message(), Catch::Contains("100000"));

  auto deep = Cq::create(*ctx, 1 << 20, nullptr);
  REQUIRE_FALSE(deep.isOk());
  CHECK_THAT(deep.status().message(), Catch::Contains("max_cqe"));
}

TEST_CASE("posting to a full queue is again, other post errors name the QP") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  Lib lib = fakeverbs::makeLib();
  lib.postSend = [](ibv_qp*, ibv_send_wr* wr, ibv_send_wr** bad) {
    *bad = wr;
    return ENOMEM;
  };
  lib.postRecv = [](ibv_qp*, ibv_recv_wr* wr, ibv_recv_wr** bad) {
    *bad = wr;
    return EINVAL;
  };
  auto ctx = Context::open(lib, "fake0");
  auto pd = Pd::alloc(*ctx);
  auto cq = Cq::create(*ctx, 16, nullptr);
  auto qp = Qp::createRc(*pd, *cq, *cq, QpCaps{4, 4});
  REQUIRE(qp.isOk());
  ibv_send_wr swr{};
  ibv_send_wr* bad = nullptr;
  Status s = qp->postSend(&swr, &bad);
  CHECK(s.code() == Code::kAgain);
  CHECK(bad == &swr);
  ibv_recv_wr rwr{};
  Status r = qp->postRecv(&rwr);
  CHECK(r.code() == Code::kSystemError);
  CHECK_THAT(r.message(), Catch::Contains("QP 100"));
  CHECK_THAT(r.message(), Catch::Contains("fake0"));
}
