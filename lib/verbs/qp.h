// lib/verbs/qp.h — the RC queue-pair state machine as named functions:
// RESET -> toInit -> INIT -> toRtr -> RTR -> toRts -> RTS, and toError from any state.
//
// The attributes each transition must carry are those ibv_modify_qp(3) lists for RC QPs.
// Each function is blocking (one ibv_modify_qp system call), not synchronised (one
// thread per QP), and returns an error naming the device, port, QPN, target state, the
// remote QPN/GID where relevant, and the errno text. Internal header.
#pragma once

#include <array>
#include <cstdint>

#include "braid/status.h"
#include "core/params.h"
#include "verbs/handles.h"

namespace braid::verbs {

/// What one side tells the other about its QP (carried by the handshake).
struct QpEndpointInfo {
  uint32_t qpn = 0;               ///< 24-bit QP number
  uint32_t psn = 0;               ///< 24-bit first packet sequence number it will send
  std::array<uint8_t, 16> gid{};  ///< its GID (RoCE: routes the packets; IB: unused in-subnet)
  uint16_t lid = 0;               ///< its port LID (InfiniBand)
  uint8_t linkLayer = 0;          ///< IBV_LINK_LAYER_* of its port
  uint8_t mtu = 0;                ///< its active MTU (enum ibv_mtu)
};

/// Per-connection knobs of the transitions.
struct QpTuning {
  int port = 1;              ///< local port number
  int gidIndex = 0;          ///< local GID index (RoCE)
  uint8_t timeout = 20;      ///< local ACK timeout exponent: 4.096 us * 2^timeout
  uint8_t retryCnt = 7;      ///< transport retries before a completion error
  uint8_t rnrRetry = 7;      ///< receiver-not-ready retries (7 = infinite)
  uint8_t tc = 0;            ///< traffic class (RoCE: DSCP/ECN byte)
  uint8_t sl = 0;            ///< service level
  uint8_t maxRdAtomic = 16;  ///< outstanding RDMA reads/atomics; capped by device attrs
  uint8_t minRnrTimer = 12;  ///< receiver-not-ready NAK delay code (12 = 0.64 ms)
  uint8_t hopLimit = 255;    ///< GRH hop limit (RoCE v2: IP TTL)

  /// BRAID_IB_TIMEOUT, BRAID_IB_RETRY_CNT, BRAID_IB_TC, BRAID_IB_SL; defaults otherwise.
  static QpTuning fromParams(const core::Params& p, int port, int gidIndex);
};

/// RESET -> INIT on `port`, allowing the remote side `accessFlags` (IBV_ACCESS_REMOTE_*).
[[nodiscard]] Status toInit(Qp& qp, int port, int accessFlags);

/// INIT -> RTR towards `remote`: path MTU = negotiateMtu(localMtu, remote.mtu, ...); on
/// RoCE a global route (GRH) from GID `tuning.gidIndex` to remote.gid with the traffic
/// class; on InfiniBand the remote LID. Queries the local port's link layer.
[[nodiscard]] Status toRtr(Qp& qp, const QpTuning& tuning, uint8_t localMtu,
                           const QpEndpointInfo& remote);

/// RTR -> RTS, sending from `localPsn` (24 bits).
[[nodiscard]] Status toRts(Qp& qp, const QpTuning& tuning, uint32_t localPsn);

/// Any state -> ERR: outstanding work requests complete with IBV_WC_WR_FLUSH_ERR, which
/// is how a QP is drained before it is destroyed.
[[nodiscard]] Status toError(Qp& qp);

/// The path MTU both sides can use: min(local, remote), both enum ibv_mtu (1..5). Error
/// when the link layers differ (an InfiniBand port cannot reach a RoCE port) or an MTU is
/// not an ibv_mtu value. Unspecified link layer counts as InfiniBand. Pure.
[[nodiscard]] Result<uint8_t> negotiateMtu(uint8_t local, uint8_t remote, uint8_t localLinkLayer,
                                           uint8_t remoteLinkLayer);

/// A random 24-bit PSN (thread-safe). Random start PSNs keep stale packets of an earlier
/// connection with the same QPN from being accepted.
uint32_t randomPsn();

/// "RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR" for enum ibv_qp_state.
const char* qpStateName(int state);

}  // namespace braid::verbs
