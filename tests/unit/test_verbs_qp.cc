// The RC QP state machine over a fake libibverbs: the attributes and masks each
// transition hands to ibv_modify_qp, MTU negotiation, and the errors.
#include <catch2/catch.hpp>
#include <map>

#include "core/params.h"
#include "fake_verbs.h"
#include "verbs/qp.h"

using namespace braid;
using namespace braid::verbs;

namespace {

struct Rig {
  Lib lib;
  Context ctx;
  Pd pd;
  Cq cq;
  Qp qp;
  explicit Rig(int linkLayer) {
    fakeverbs::reset();
    fakeverbs::addDevice("fake0", 1, linkLayer);
    lib = fakeverbs::makeLib();
    ctx = std::move(*Context::open(lib, "fake0"));
    pd = std::move(*Pd::alloc(ctx));
    cq = std::move(*Cq::create(ctx, 16, nullptr));
    qp = std::move(*Qp::createRc(pd, cq, cq, QpCaps{8, 8}));
  }
};

QpEndpointInfo remoteRoce() {
  QpEndpointInfo r;
  r.qpn = 0x1234;
  r.psn = 0xabcdef;
  r.gid[10] = 0xff;
  r.gid[11] = 0xff;
  r.gid[12] = 10;
  r.gid[13] = 77;
  r.gid[15] = 2;
  r.linkLayer = IBV_LINK_LAYER_ETHERNET;
  r.mtu = IBV_MTU_4096;
  return r;
}

}  // namespace

TEST_CASE("path MTU is the smaller of both sides and mismatched link layers are refused") {
  CHECK(*negotiateMtu(IBV_MTU_4096, IBV_MTU_1024, 2, 2) == IBV_MTU_1024);
  CHECK(*negotiateMtu(IBV_MTU_2048, IBV_MTU_4096, 1, 1) == IBV_MTU_2048);
  CHECK(*negotiateMtu(IBV_MTU_2048, IBV_MTU_4096, 0, 1) == IBV_MTU_2048);  // unspecified = IB
  auto bad =
      negotiateMtu(IBV_MTU_1024, IBV_MTU_1024, IBV_LINK_LAYER_INFINIBAND, IBV_LINK_LAYER_ETHERNET);
  REQUIRE_FALSE(bad.isOk());
  CHECK_THAT(bad.status().message(), Catch::Contains("InfiniBand"));
  CHECK_THAT(bad.status().message(), Catch::Contains("Ethernet"));
  CHECK_FALSE(negotiateMtu(0, IBV_MTU_1024, 2, 2).isOk());
  CHECK_FALSE(negotiateMtu(IBV_MTU_1024, 6, 2, 2).isOk());
}

TEST_CASE("tuning comes from the BRAID_IB_* knobs") {
  std::map<std::string, std::string> env = {{"BRAID_IB_TIMEOUT", "14"},
                                            {"BRAID_IB_RETRY_CNT", "3"},
                                            {"BRAID_IB_TC", "106"},
                                            {"BRAID_IB_SL", "5"}};
  auto p = core::parseParams([&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
  REQUIRE(p.isOk());
  QpTuning t = QpTuning::fromParams(*p, 2, 3);
  CHECK(t.port == 2);
  CHECK(t.gidIndex == 3);
  CHECK(t.timeout == 14);
  CHECK(t.retryCnt == 3);
  CHECK(t.tc == 106);
  CHECK(t.sl == 5);
  CHECK(t.rnrRetry == 7);
}

TEST_CASE("a RoCE QP goes INIT, RTR with a global route, then RTS with capped read depth") {
  Rig r(IBV_LINK_LAYER_ETHERNET);
  auto& w = fakeverbs::world();
  int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  REQUIRE(toInit(r.qp, 1, access).isOk());
  CHECK(w.modifyMasks.back() ==
        (IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS));
  CHECK(w.modifyAttrs.back().qp_state == IBV_QPS_INIT);
  CHECK(w.modifyAttrs.back().port_num == 1);
  CHECK(w.modifyAttrs.back().qp_access_flags == static_cast<unsigned>(access));

  QpTuning t;
  t.port = 1;
  t.gidIndex = 1;
  t.tc = 106;
  t.maxRdAtomic = 16;  // the fake device allows 8 as target, 4 as initiator
  QpEndpointInfo remote = remoteRoce();
  REQUIRE(toRtr(r.qp, t, IBV_MTU_1024, remote).isOk());
  const ibv_qp_attr& rtr = w.modifyAttrs.back();
  CHECK(w.modifyMasks.back() == (IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                 IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER));
  CHECK(rtr.qp_state == IBV_QPS_RTR);
  CHECK(rtr.path_mtu == IBV_MTU_1024);
  CHECK(rtr.dest_qp_num == 0x1234);
  CHECK(rtr.rq_psn == 0xabcdef);
  CHECK(rtr.max_dest_rd_atomic == 8);
  CHECK(rtr.ah_attr.is_global == 1);
  CHECK(rtr.ah_attr.grh.sgid_index == 1);
  CHECK(rtr.ah_attr.grh.traffic_class == 106);
  CHECK(std::memcmp(rtr.ah_attr.grh.dgid.raw, remote.gid.data(), 16) == 0);
  CHECK(rtr.ah_attr.port_num == 1);

  REQUIRE(toRts(r.qp, t, 0x1000001).isOk());
  const ibv_qp_attr& rts = w.modifyAttrs.back();
  CHECK(rts.qp_state == IBV_QPS_RTS);
  CHECK(rts.sq_psn == 0x000001);  // 24 bits
  CHECK(rts.max_rd_atomic == 4);
  CHECK(rts.timeout == t.timeout);
  CHECK(rts.retry_cnt == t.retryCnt);
  CHECK(rts.rnr_retry == 7);
  CHECK(r.qp.get()->state == IBV_QPS_RTS);

  REQUIRE(toError(r.qp).isOk());
  CHECK(w.modifyMasks.back() == IBV_QP_STATE);
  CHECK(w.modifyAttrs.back().qp_state == IBV_QPS_ERR);
}

TEST_CASE("an InfiniBand QP goes to RTR with the remote LID and no global route") {
  Rig r(IBV_LINK_LAYER_INFINIBAND);
  REQUIRE(toInit(r.qp, 1, IBV_ACCESS_LOCAL_WRITE).isOk());
  QpEndpointInfo remote;
  remote.qpn = 77;
  remote.lid = 9;
  remote.linkLayer = IBV_LINK_LAYER_INFINIBAND;
  remote.mtu = IBV_MTU_4096;
  QpTuning t;
  t.sl = 3;
  REQUIRE(toRtr(r.qp, t, IBV_MTU_2048, remote).isOk());
  const ibv_qp_attr& rtr = fakeverbs::world().modifyAttrs.back();
  CHECK(rtr.ah_attr.is_global == 0);
  CHECK(rtr.ah_attr.dlid == 9);
  CHECK(rtr.ah_attr.sl == 3);
  CHECK(rtr.path_mtu == IBV_MTU_2048);
}

TEST_CASE("RTR towards a peer on another link layer is refused before verbs is asked") {
  Rig r(IBV_LINK_LAYER_INFINIBAND);
  REQUIRE(toInit(r.qp, 1, 0).isOk());
  size_t before = fakeverbs::world().modifyAttrs.size();
  Status s = toRtr(r.qp, QpTuning{}, IBV_MTU_1024, remoteRoce());
  REQUIRE_FALSE(s.isOk());
  CHECK_THAT(s.message(), Catch::Contains("link layers differ"));
  CHECK_THAT(s.message(), Catch::Contains("QP 100"));
  CHECK(fakeverbs::world().modifyAttrs.size() == before);
}

TEST_CASE("a failed transition names the device, port, QP, target state, remote and errno") {
  Rig r(IBV_LINK_LAYER_ETHERNET);
  REQUIRE(toInit(r.qp, 1, 0).isOk());
  fakeverbs::world().modifyRc = EINVAL;
  QpTuning t;
  t.gidIndex = 1;
  Status s = toRtr(r.qp, t, IBV_MTU_1024, remoteRoce());
  REQUIRE_FALSE(s.isOk());
  CHECK(s.code() == Code::kSystemError);
  for (const char* part : {"fake0", "port 1", "QP 100", "RTR", "remote QP 4660", "::ffff:10.77.0.2",
                           "Invalid argument"})
    CHECK_THAT(s.message(), Catch::Contains(part));
  Status rts = toRts(r.qp, t, 1);
  CHECK_THAT(rts.message(), Catch::Contains("RTS"));
}

TEST_CASE("RTR refuses a remote endpoint without a QPN or a RoCE GID") {
  Rig r(IBV_LINK_LAYER_ETHERNET);
  QpEndpointInfo remote = remoteRoce();
  remote.gid = {};
  Status s = toRtr(r.qp, QpTuning{}, IBV_MTU_1024, remote);
  CHECK(s.code() == Code::kInvalidArgument);
  remote = remoteRoce();
  remote.qpn = 0;
  CHECK(toRtr(r.qp, QpTuning{}, IBV_MTU_1024, remote).code() == Code::kInvalidArgument);
}

TEST_CASE("random PSNs fit in 24 bits and vary") {
  uint32_t a = randomPsn(), b = randomPsn(), c = randomPsn();
  CHECK(a <= 0xffffffu);
  CHECK(b <= 0xffffffu);
  CHECK((a != b || b != c));
  CHECK(std::string(qpStateName(IBV_QPS_RTS)) == "RTS");
}
