// lib/verbs/device.h — verbs device discovery and the BRAID_IB_HCA rail filter.
//
// discoverPorts() lists every port of every device (InfiniBand and RoCE), with the GID a
// QP would use, the PCI path and NUMA node (for rail choice by topology), the netdev,
// and whether BRAID_IB_HCA selects it. It opens each device briefly and closes it again:
// call it at setup, not on a data path. Thread-safe (no shared state). Internal header.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "braid/status.h"
#include "core/name_list.h"
#include "core/params.h"
#include "verbs/gid.h"
#include "verbs/lib.h"

namespace braid::verbs {

/// BRAID_IB_HCA (NCCL_IB_HCA syntax): a comma list of `device[:port]`. Device names match
/// as prefixes ("mlx5" matches mlx5_0 and mlx5_1) unless the list starts with '=' (exact
/// names); a leading '^' excludes what the list matches instead; "^=" does both. A port,
/// when given, must match exactly. The empty spec matches every port. Pure.
class HcaFilter {
 public:
  /// Errors (kInvalidArgument, naming the spec): a port that is not a positive number,
  /// an empty device name before ':'.
  static Result<HcaFilter> parse(const std::string& spec);

  bool matches(const std::string& device, int port) const;
  bool empty() const { return items_.empty(); }

 private:
  struct Item {
    std::string device;
    int port = -1;  ///< -1: any port
  };
  core::NameList names_;  ///< the '^', '=' flags and the raw items
  std::vector<Item> items_;
};

/// One port of one device, as discovered.
struct PortInfo {
  std::string device;  ///< "mlx5_0", "rxe0"
  int port = 0;        ///< 1-based
  std::string state;   ///< "ACTIVE", "DOWN", "INIT", "ARMED", ...
  bool active = false;
  int linkLayer = 0;             ///< IBV_LINK_LAYER_* (kLinkLayer* in gid.h)
  int activeMtu = 0;             ///< enum ibv_mtu (1 = 256 .. 5 = 4096)
  int activeMtuBytes = 0;        ///< 256 .. 4096
  uint16_t lid = 0;              ///< InfiniBand LID (0 on RoCE)
  int speedMbps = 0;             ///< active_speed x active_width; 0 if unknown
  int gidTableLen = 0;           ///< ibv_port_attr::gid_tbl_len
  std::vector<GidEntry> gids;    ///< non-zero entries, by index
  std::optional<GidChoice> gid;  ///< the GID a QP would use
  std::string gidError;          ///< why no GID was chosen (when gid is empty)
  uint64_t guid = 0;      ///< the adapter's system image GUID (host order); 0 unknown
  int maxQp = 0;          ///< ibv_device_attr::max_qp
  std::string pciPath;    ///< sysfs path of the PCI device (for rxe/siw: its netdev's); "" unknown
  int numaNode = -1;      ///< -1 unknown
  std::string netdev;     ///< Ethernet device of the chosen (else first) GID; "" for IB
  bool selected = false;  ///< passes BRAID_IB_HCA

  /// braid would open a rail on it: selected, ACTIVE and with a usable GID.
  bool usableAsRail() const { return selected && active && gid.has_value(); }
};

/// Where discovery reads sysfs, and what it lists. Tests point the roots at a fake tree.
struct DiscoverOptions {
  bool includeInactive = false;  ///< also ports that are not ACTIVE
  std::string ibSysfsRoot = "/sys/class/infiniband";
  std::string netSysfsRoot = "/sys/class/net";
};

/// Every port of every device (ACTIVE ones only unless includeInactive), in device-list
/// order. No devices: an empty vector. Errors: kUnsupported when the device list cannot
/// be read (no RDMA in the kernel), kInvalidArgument for a bad BRAID_IB_HCA or
/// BRAID_IB_ADDR_RANGE. A device that cannot be opened is logged and skipped.
Result<std::vector<PortInfo>> discoverPorts(const Lib& lib, const core::Params& params,
                                            bool includeInactive = false);
Result<std::vector<PortInfo>> discoverPorts(const Lib& lib, const core::Params& params,
                                            const DiscoverOptions& options);

/// ibv_mtu enum (1..5) to bytes (256..4096); 0 when out of range.
int mtuToBytes(int mtu);
/// Lane rate x lanes in Mb/s from ibv_port_attr active_speed / active_width; 0 if unknown.
int portSpeedMbps(int activeSpeed, int activeWidth);
/// "ACTIVE", "DOWN", ... from enum ibv_port_state.
std::string portStateName(int state);

}  // namespace braid::verbs
