// lib/tcp/interfaces.h — network interfaces and the NCCL_SOCKET_IFNAME-style rail filter.
#pragma once

#include <string>
#include <vector>

#include "braid/status.h"
#include "core/name_list.h"
#include "tcp/socket.h"

namespace braid::tcp {

struct Interface {
  std::string name;
  SockAddr addr;  ///< port 0
  bool loopback = false;
};

/// BRAID_SOCKET_IFNAME syntax (as NCCL_SOCKET_IFNAME): comma-separated names; each
/// matches as a prefix unless the list starts with '='; a leading '^' excludes instead.
/// "^=docker0", "eth,ib", "=eth0". A '^' or '=' anywhere but at the start is
/// kInvalidArgument.
class IfFilter {
 public:
  static Result<IfFilter> parse(const std::string& spec);
  bool empty() const { return list_.items.empty(); }
  bool matches(const std::string& ifname) const;

 private:
  core::NameList list_;
};

/// Up interfaces with an IPv4 or global IPv6 address, one entry per interface (IPv4
/// preferred), in the kernel's order.
Result<std::vector<Interface>> listInterfaces();

/// Applies `spec` to `all` (pure). Empty spec: every non-loopback interface except
/// docker*, or loopback when nothing else exists. Error kNotFound names the spec and
/// what exists.
Result<std::vector<Interface>> selectRails(const std::string& spec,
                                           const std::vector<Interface>& all);

/// The link speed the kernel reports for `ifname` (/sys/class/net/IF/speed), Mbit/s; 0
/// when unknown (virtual interfaces, link down).
int linkSpeedMbps(const std::string& ifname);

/// The PCI function behind `ifname` (realpath of /sys/class/net/IF/device); "" when it
/// has none (loopback, veth, bridges).
std::string interfacePciPath(const std::string& ifname);

}  // namespace braid::tcp
