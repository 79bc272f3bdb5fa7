#include "verbs/qp.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "core/log.h"
#include "verbs/gid.h"

namespace braid::verbs {

QpTuning QpTuning::fromParams(const core::Params& p, int port, int gidIndex) {
  QpTuning t;
  t.port = port;
  t.gidIndex = gidIndex;
  // The registry bounds every value (params.cc), so the narrowing below cannot truncate.
  t.timeout = static_cast<uint8_t>(p.ibTimeout);
  t.retryCnt = static_cast<uint8_t>(p.ibRetryCnt);
  t.tc = static_cast<uint8_t>(p.ibTc);
  t.sl = static_cast<uint8_t>(p.ibSl);
  return t;
}

Result<uint8_t> negotiateMtu(uint8_t local, uint8_t remote, uint8_t localLinkLayer,
                             uint8_t remoteLinkLayer) {
  auto norm = [](uint8_t ll) { return ll == kLinkLayerUnspecified ? kLinkLayerInfiniband : ll; };
  if (norm(localLinkLayer) != norm(remoteLinkLayer))
    return Status(Code::kInvalidArgument,
                  fmt::format("link layers differ: local {}, remote {}; an InfiniBand port and "
                              "a RoCE (Ethernet) port cannot form a connection",
                              linkLayerName(localLinkLayer), linkLayerName(remoteLinkLayer)));
  if (local < 1 || local > 5 || remote < 1 || remote > 5)
    return Status(Code::kInvalidArgument,
                  fmt::format("MTU out of range: local {}, remote {} (ibv_mtu 1..5 = 256..4096)",
                              local, remote));
  return std::min(local, remote);
}

uint32_t randomPsn() {
  thread_local std::mt19937 gen{std::random_device{}()};
  return gen() & 0xffffffu;
}

const char* qpStateName(int state) {
  static const char* const kNames[] = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};
  if (state >= 0 && state < 7) return kNames[state];
  return "UNKNOWN";
}

#if BRAID_HAVE_VERBS

static_assert(IBV_QPS_RESET == 0 && IBV_QPS_RTS == 3 && IBV_QPS_ERR == 6,
              "qpStateName's table follows enum ibv_qp_state");

namespace {

// ibv_modify_qp(3) returns 0 or the errno value.
int errOf(int rc) {
  return rc > 0 ? rc : (errno != 0 ? errno : EIO);
}

Status modifyError(const Qp& qp, int port, ibv_qp_state target, int rc, const std::string& extra) {
  return Status(
      Code::kSystemError,
      fmt::format("ibv_modify_qp to {} on {} port {} QP {}{} failed: {}", qpStateName(target),
                  qp.deviceName(), port, qp.qpn(), extra, errnoText(errOf(rc))));
}

uint8_t capAtomic(uint8_t wanted, int deviceMax) {
  if (deviceMax <= 0) return wanted;  // unknown: trust the caller
  return static_cast<uint8_t>(std::min<int>(wanted, deviceMax));
}

}  // namespace

Status toInit(Qp& qp, int port, int accessFlags) {
  if (!qp) return Status(Code::kInvalidArgument, "toInit on an empty Qp");
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = static_cast<uint8_t>(port);
  attr.qp_access_flags = static_cast<unsigned int>(accessFlags);
  // ibv_modify_qp(3), RC RESET->INIT: STATE, PKEY_INDEX, PORT and ACCESS_FLAGS are required.
  int mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  errno = 0;
  int rc = qp.lib().modifyQp(qp.get(), &attr, mask);
  if (rc != 0) return modifyError(qp, port, IBV_QPS_INIT, rc, "");
  return Status::ok();
}

Status toRtr(Qp& qp, const QpTuning& tuning, uint8_t localMtu, const QpEndpointInfo& remote) {
  if (!qp) return Status(Code::kInvalidArgument, "toRtr on an empty Qp");
  std::string towards = fmt::format(" towards remote QP {} (GID {}, LID {})", remote.qpn,
                                    gidToString(remote.gid), remote.lid);
  ibv_port_attr pattr{};
  errno = 0;
  int prc = qp.lib().queryPort(qp.context(), static_cast<uint8_t>(tuning.port), &pattr);
  if (prc != 0)
    return Status(Code::kSystemError,
                  fmt::format("ibv_query_port({} port {}) for QP {}: {}", qp.deviceName(),
                              tuning.port, qp.qpn(), errnoText(errOf(prc))));
  uint8_t localLl = pattr.link_layer;
  auto mtu = negotiateMtu(localMtu, remote.mtu, localLl, remote.linkLayer);
  if (!mtu)
    return mtu.status().withContext(
        fmt::format("QP {} on {} port {}{}", qp.qpn(), qp.deviceName(), tuning.port, towards));
  bool roce = localLl == kLinkLayerEthernet;
  if (remote.qpn == 0 || remote.qpn > 0xffffff || (roce && isZeroGid(remote.gid)) ||
      (!roce && remote.lid == 0))
    return Status(Code::kInvalidArgument,
                  fmt::format("QP {} on {} port {}: bad remote endpoint{} ({} needs a remote {})",
                              qp.qpn(), qp.deviceName(), tuning.port, towards,
                              roce ? "RoCE" : "InfiniBand", roce ? "GID" : "LID"));

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = static_cast<ibv_mtu>(*mtu);
  attr.dest_qp_num = remote.qpn;
  attr.rq_psn = remote.psn & 0xffffffu;
  attr.max_dest_rd_atomic = capAtomic(tuning.maxRdAtomic, qp.deviceCaps().maxQpRdAtom);
  attr.min_rnr_timer = tuning.minRnrTimer;
  attr.ah_attr.port_num = static_cast<uint8_t>(tuning.port);
  attr.ah_attr.sl = tuning.sl;
  attr.ah_attr.src_path_bits = 0;
  if (roce) {
    // RoCE has no LIDs: every packet carries a GRH (RoCE v2: an IP/UDP header) built from
    // the source GID index and the destination GID (ibv_modify_qp(3), ah_attr.grh).
    attr.ah_attr.is_global = 1;
    std::memcpy(attr.ah_attr.grh.dgid.raw, remote.gid.data(), 16);
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(tuning.gidIndex);
    attr.ah_attr.grh.hop_limit = tuning.hopLimit;
    attr.ah_attr.grh.traffic_class = tuning.tc;
    attr.ah_attr.grh.flow_label = 0;
    attr.ah_attr.dlid = 0;
  } else {
    attr.ah_attr.is_global = 0;
    attr.ah_attr.dlid = remote.lid;
  }
  // ibv_modify_qp(3), RC INIT->RTR: STATE, AV, PATH_MTU, DEST_QPN, RQ_PSN,
  // MAX_DEST_RD_ATOMIC and MIN_RNR_TIMER are required.
  int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
  errno = 0;
  int rc = qp.lib().modifyQp(qp.get(), &attr, mask);
  if (rc != 0) {
    std::string extra =
        towards + fmt::format(", mtu {}, sgid_index {}", 128 << *mtu, tuning.gidIndex);
    return modifyError(qp, tuning.port, IBV_QPS_RTR, rc, extra);
  }
  BRAID_LOG_DEBUG(kVerbs, "{} port {} QP {} RTR{} mtu {}", qp.deviceName(), tuning.port, qp.qpn(),
                  towards, 128 << *mtu);
  return Status::ok();
}

Status toRts(Qp& qp, const QpTuning& tuning, uint32_t localPsn) {
  if (!qp) return Status(Code::kInvalidArgument, "toRts on an empty Qp");
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = tuning.timeout;
  attr.retry_cnt = tuning.retryCnt;
  attr.rnr_retry = tuning.rnrRetry;
  attr.sq_psn = localPsn & 0xffffffu;
  attr.max_rd_atomic = capAtomic(tuning.maxRdAtomic, qp.deviceCaps().maxQpInitRdAtom);
  // ibv_modify_qp(3), RC RTR->RTS: STATE, TIMEOUT, RETRY_CNT, RNR_RETRY, SQ_PSN and
  // MAX_QP_RD_ATOMIC are required.
  int mask = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
             IBV_QP_MAX_QP_RD_ATOMIC;
  errno = 0;
  int rc = qp.lib().modifyQp(qp.get(), &attr, mask);
  if (rc != 0)
    return modifyError(qp, tuning.port, IBV_QPS_RTS, rc,
                       fmt::format(" (timeout {}, retry_cnt {}, sq_psn {})", tuning.timeout,
                                   tuning.retryCnt, attr.sq_psn));
  return Status::ok();
}

Status toError(Qp& qp) {
  if (!qp) return Status(Code::kInvalidArgument, "toError on an empty Qp");
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  errno = 0;
  int rc = qp.lib().modifyQp(qp.get(), &attr, IBV_QP_STATE);
  if (rc != 0) {
    return Status(Code::kSystemError, fmt::format("ibv_modify_qp to ERR on {} QP {} failed: {}",
                                                  qp.deviceName(), qp.qpn(), errnoText(errOf(rc))));
  }
  return Status::ok();
}

#else  // !BRAID_HAVE_VERBS

Status toInit(Qp&, int, int) {
  return builtWithoutVerbs("toInit");
}
Status toRtr(Qp&, const QpTuning&, uint8_t, const QpEndpointInfo&) {
  return builtWithoutVerbs("toRtr");
}
Status toRts(Qp&, const QpTuning&, uint32_t) {
  return builtWithoutVerbs("toRts");
}
Status toError(Qp&) {
  return builtWithoutVerbs("toError");
}

#endif  // BRAID_HAVE_VERBS

}  // namespace braid::verbs
