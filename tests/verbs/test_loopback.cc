// Real verbs objects on rxe0: open and tear down every handle, then an RC QP pair in one
// process (INIT -> RTR -> RTS through verbs/qp.h) moving data by RDMA WRITE, WRITE with
// immediate and SEND/RECV, with buffers registered through the MR cache.
#include <arpa/inet.h>

#include <cstring>
#include <memory>
#include <vector>

#include "support.h"
#include "verbs/async_events.h"
#include "verbs/device.h"
#include "verbs/mr_cache.h"
#include "verbs/qp.h"

using namespace braid;
using namespace braid::verbs;
using namespace braid::verbs::test;

namespace {

constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

PortInfo portOf(const std::string& dev) {
  auto ports = discoverPorts(lib(), params());
  REQUIRE(ports.isOk());
  for (const PortInfo& p : *ports)
    if (p.device == dev && p.port == 1) {
      REQUIRE(p.gid.has_value());
      return p;
    }
  FAIL(dev << " port 1 not found");
  return {};
}

// One side of the loopback pair; members in creation order (teardown in reverse).
struct Side {
  Cq cq;
  Qp qp;
  uint32_t psn = randomPsn();
};

QpEndpointInfo endpointOf(const Side& s, const PortInfo& port) {
  QpEndpointInfo e;
  e.qpn = s.qp.qpn();
  e.psn = s.psn;
  for (const GidEntry& g : port.gids)
    if (g.index == port.gid->index) e.gid = g.gid;
  e.lid = port.lid;
  e.linkLayer = static_cast<uint8_t>(port.linkLayer);
  e.mtu = static_cast<uint8_t>(port.activeMtu);
  return e;
}

void connect(Side& a, Side& b, const PortInfo& port) {
  QpTuning t = QpTuning::fromParams(params(), port.port, port.gid->index);
  for (Side* s : {&a, &b}) REQUIRE(toInit(s->qp, port.port, kAccess).isOk());
  Status ab = toRtr(a.qp, t, static_cast<uint8_t>(port.activeMtu), endpointOf(b, port));
  INFO(ab.toString());
  REQUIRE(ab.isOk());
  Status ba = toRtr(b.qp, t, static_cast<uint8_t>(port.activeMtu), endpointOf(a, port));
  INFO(ba.toString());
  REQUIRE(ba.isOk());
  REQUIRE(toRts(a.qp, t, a.psn).isOk());
  REQUIRE(toRts(b.qp, t, b.psn).isOk());
}

void fill(std::vector<uint8_t>& v, uint8_t seed) {
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
}

}  // namespace

TEST_CASE("a context, PD, channel, CQ, QP and MR open on rxe0 and tear down cleanly") {
  struct Stack {
    Context ctx;
    Pd pd;
    CompChannel ch;
    Cq cq;
    Qp qp;
    Mr mr;
  } s;
  auto ctx = Context::open(lib(), "rxe0");
  REQUIRE(ctx.isOk());
  s.ctx = std::move(*ctx);
  CHECK(s.ctx.caps().physPortCnt == 1);
  CHECK(s.ctx.caps().maxQpWr > 0);
  CHECK(s.ctx.asyncFd() >= 0);
  auto pd = Pd::alloc(s.ctx);
  REQUIRE(pd.isOk());
  s.pd = std::move(*pd);
  auto ch = CompChannel::create(s.ctx);
  REQUIRE(ch.isOk());
  s.ch = std::move(*ch);
  CHECK(s.ch.fd() >= 0);
  auto cq = Cq::create(s.ctx, 128, &s.ch);
  REQUIRE(cq.isOk());
  s.cq = std::move(*cq);
  CHECK(s.cq.depth() >= 128);
  CHECK(s.cq.reqNotify().isOk());
  auto qp = Qp::createRc(s.pd, s.cq, s.cq, QpCaps{64, 64, 2, 2, 64});
  REQUIRE(qp.isOk());
  s.qp = std::move(*qp);
  CHECK(s.qp.qpn() != 0);
  CHECK(s.qp.caps().maxSendWr >= 64);
  static std::vector<uint8_t> buf(1 << 16);
  auto mr = s.pd.regMr(buf.data(), buf.size(), kAccess);
  REQUIRE(mr.isOk());
  s.mr = std::move(*mr);
  CHECK(s.mr.length() == buf.size());

  // The async-event thread starts on the real async fd and stops promptly.
  auto w = AsyncWatcher::start(lib(), s.ctx);
  REQUIRE(w.isOk());
  CHECK((*w)->portStatus(1).isOk());
  CHECK((*w)->deviceStatus().isOk());
  w->reset();

  auto missing = Context::open(lib(), "mlx5_0");
  REQUIRE_FALSE(missing.isOk());
  CHECK(missing.status().code() == Code::kNotFound);
  CHECK_THAT(missing.status().message(), Catch::Contains("rxe0"));
}

TEST_CASE("an RC QP pair on rxe0 moves data by RDMA WRITE, WRITE with immediate and SEND") {
  PortInfo port = portOf("rxe0");
  // Buffers first: they must outlive their registrations (the cache deregisters last).
  constexpr size_t kSize = 256 * 1024;
  std::vector<uint8_t> src(kSize), dst(kSize, 0), msg(4096), inbox(8192, 0);
  fill(src, 3);
  fill(msg, 11);
  auto ctx = Context::open(lib(), "rxe0");
  REQUIRE(ctx.isOk());
  auto pd = Pd::alloc(*ctx);
  REQUIRE(pd.isOk());
  MrCache cache(std::make_unique<PdRegistrar>(*pd));
  Side a, b;
  for (Side* s : {&a, &b}) {
    auto cq = Cq::create(*ctx, 64, nullptr);
    REQUIRE(cq.isOk());
    s->cq = std::move(*cq);
    auto qp = Qp::createRc(*pd, s->cq, s->cq, QpCaps{16, 16, 1, 1, 0});
    REQUIRE(qp.isOk());
    s->qp = std::move(*qp);
  }
  connect(a, b, port);

  auto srcMr = cache.get(src.data(), src.size(), kAccess);
  auto dstMr = cache.get(dst.data(), dst.size(), kAccess);
  auto msgMr = cache.get(msg.data(), msg.size(), kAccess);
  auto inboxMr = cache.get(inbox.data(), inbox.size(), kAccess);
  REQUIRE((srcMr.isOk() && dstMr.isOk() && msgMr.isOk() && inboxMr.isOk()));

  SECTION("RDMA WRITE lands in the remote buffer byte for byte") {
    ibv_sge sge{reinterpret_cast<uintptr_t>(src.data()), static_cast<uint32_t>(kSize),
                srcMr->lkey()};
    ibv_send_wr wr{};
    wr.wr_id = 1;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = reinterpret_cast<uintptr_t>(dst.data());
    wr.wr.rdma.rkey = dstMr->rkey();
    REQUIRE(a.qp.postSend(&wr).isOk());
    ibv_wc wc = pollOne(a.cq);
    INFO(lib().wcStatusStr(wc.status));
    CHECK(wc.status == IBV_WC_SUCCESS);
    CHECK(wc.wr_id == 1);
    CHECK(wc.opcode == IBV_WC_RDMA_WRITE);
    CHECK(std::memcmp(src.data(), dst.data(), kSize) == 0);
  }

  SECTION("RDMA WRITE with immediate consumes a receive and carries the immediate") {
    ibv_recv_wr rwr{};
    rwr.wr_id = 7;
    REQUIRE(b.qp.postRecv(&rwr).isOk());
    ibv_sge sge{reinterpret_cast<uintptr_t>(src.data()), 65536, srcMr->lkey()};
    ibv_send_wr wr{};
    wr.wr_id = 2;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(0xb4a1d);
    wr.wr.rdma.remote_addr = reinterpret_cast<uintptr_t>(dst.data()) + 4096;
    wr.wr.rdma.rkey = dstMr->rkey();
    REQUIRE(a.qp.postSend(&wr).isOk());
    ibv_wc sent = pollOne(a.cq);
    CHECK(sent.status == IBV_WC_SUCCESS);
    ibv_wc got = pollOne(b.cq);
    INFO(lib().wcStatusStr(got.status));
    CHECK(got.status == IBV_WC_SUCCESS);
    CHECK(got.opcode == IBV_WC_RECV_RDMA_WITH_IMM);
    CHECK(got.wr_id == 7);
    CHECK((got.wc_flags & IBV_WC_WITH_IMM) != 0);
    CHECK(ntohl(got.imm_data) == 0xb4a1du);
    CHECK(got.byte_len == 65536);
    CHECK(std::memcmp(src.data(), dst.data() + 4096, 65536) == 0);
  }

  SECTION("SEND lands in the posted receive with its length") {
    ibv_sge rsge{reinterpret_cast<uintptr_t>(inbox.data()), static_cast<uint32_t>(inbox.size()),
                 inboxMr->lkey()};
    ibv_recv_wr rwr{};
    rwr.wr_id = 9;
    rwr.sg_list = &rsge;
    rwr.num_sge = 1;
    REQUIRE(b.qp.postRecv(&rwr).isOk());
    ibv_sge sge{reinterpret_cast<uintptr_t>(msg.data()), static_cast<uint32_t>(msg.size()),
                msgMr->lkey()};
    ibv_send_wr wr{};
    wr.wr_id = 3;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    REQUIRE(a.qp.postSend(&wr).isOk());
    CHECK(pollOne(a.cq).status == IBV_WC_SUCCESS);
    ibv_wc got = pollOne(b.cq);
    CHECK(got.status == IBV_WC_SUCCESS);
    CHECK(got.opcode == IBV_WC_RECV);
    CHECK(got.wr_id == 9);
    CHECK(got.byte_len == msg.size());
    CHECK(std::memcmp(inbox.data(), msg.data(), msg.size()) == 0);
  }

  SECTION("toError flushes posted receives with IBV_WC_WR_FLUSH_ERR") {
    ibv_recv_wr rwr{};
    rwr.wr_id = 42;
    REQUIRE(b.qp.postRecv(&rwr).isOk());
    REQUIRE(toError(b.qp).isOk());
    ibv_wc wc = pollOne(b.cq);
    CHECK(wc.status == IBV_WC_WR_FLUSH_ERR);
    CHECK(wc.wr_id == 42);
  }

  // Four buffers, four misses; the same buffers again are hits.
  CHECK(cache.stats().misses == 4);
  REQUIRE(cache.get(src.data() + 100, 1000, kAccess).isOk());
  CHECK(cache.stats().hits >= 1);
}

TEST_CASE("the MR cache over a real PD registers once, hits after, and deregisters on invalidate") {
  std::vector<uint8_t> buf(1 << 20);
  auto ctx = Context::open(lib(), "rxe0");
  REQUIRE(ctx.isOk());
  auto pd = Pd::alloc(*ctx);
  REQUIRE(pd.isOk());
  MrCache cache(std::make_unique<PdRegistrar>(*pd));
  {
    auto first = cache.get(buf.data(), buf.size(), kAccess);
    REQUIRE(first.isOk());
    for (int i = 0; i < 10; ++i) {
      auto again = cache.get(buf.data() + i * 4096, 4096, IBV_ACCESS_LOCAL_WRITE);
      REQUIRE(again.isOk());
      CHECK(again->lkey() == first->lkey());
    }
  }
  auto s = cache.stats();
  CHECK(s.misses == 1);
  CHECK(s.hits == 10);
  CHECK(s.registered == 1);
  cache.invalidate(buf.data(), buf.size());
  s = cache.stats();
  CHECK(s.invalidations == 1);
  CHECK(s.deregistered == 1);
  REQUIRE(cache.get(buf.data(), 64, kAccess).isOk());
  CHECK(cache.stats().registered == 2);
}
