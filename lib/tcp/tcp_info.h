// lib/tcp/tcp_info.h — what the kernel knows of a TCP connection's path (TCP_INFO), for
// the striping scheduler's congestion signal and the per-rail stats.
#pragma once

#include <cstdint>

#include "braid/status.h"

namespace braid::tcp {

struct TcpInfo {
  uint64_t segsOut = 0;   ///< segments sent (retransmits included)
  uint64_t retrans = 0;   ///< segments retransmitted, all time
  uint32_t rttUs = 0;     ///< smoothed round-trip time
  uint32_t minRttUs = 0;  ///< the lowest round-trip time seen (0: unknown)
  uint32_t cwnd = 0;      ///< congestion window, segments
  uint32_t unacked = 0;   ///< segments sent and not acknowledged
};

/// getsockopt(TCP_INFO). kSystemError when the socket is not TCP or closed.
Result<TcpInfo> tcpInfo(int fd);

}  // namespace braid::tcp
