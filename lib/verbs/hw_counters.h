// lib/verbs/hw_counters.h — a port's counters from sysfs: every file of
// /sys/class/infiniband/<device>/ports/<port>/hw_counters (CNPs, ECN marks, retries;
// which ones depends on the driver: mlx5 has dozens, rxe a few) plus
// counters/port_xmit_packets and port_rcv_packets. Read off the hot path (the async-event
// thread samples them every 100 ms). Works without libibverbs.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "braid/status.h"

namespace braid::verbs {

using CounterMap = std::map<std::string, uint64_t>;

/// The counters of `device` port `port` under `sysfsRoot` ("/sys"; tests pass a fake
/// tree). kNotFound when the port has no counters directory at all; files that cannot be
/// read or parsed are left out.
Result<CounterMap> readPortCounters(const std::string& device, int port,
                                    const std::string& sysfsRoot = "/sys");

}  // namespace braid::verbs
