// <linux/tcp.h> (for tcpi_segs_out and tcpi_min_rtt, which glibc's struct lacks) cannot
// be included with <netinet/tcp.h>: this file includes only the former.
#include "tcp/tcp_info.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace braid::tcp {

Result<TcpInfo> tcpInfo(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
    return Status(Code::kSystemError, fmt::format("getsockopt(TCP_INFO): {}", std::strerror(errno)));
  TcpInfo out;
  out.retrans = ti.tcpi_total_retrans;
  out.rttUs = ti.tcpi_rtt;
  out.cwnd = ti.tcpi_snd_cwnd;
  out.unacked = ti.tcpi_unacked;
  // Older kernels fill a shorter struct: the fields past what they wrote stay 0.
  if (len >= offsetof(tcp_info, tcpi_segs_out) + sizeof ti.tcpi_segs_out)
    out.segsOut = ti.tcpi_segs_out;
  if (len >= offsetof(tcp_info, tcpi_min_rtt) + sizeof ti.tcpi_min_rtt)
    out.minRttUs = ti.tcpi_min_rtt;
  return out;
}

}  // namespace braid::tcp
