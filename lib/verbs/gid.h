// lib/verbs/gid.h — GID table entries and RoCE GID selection, as pure functions.
//
// A RoCE port has one GID per (address, RoCE version) of its netdev; which one a QP uses
// decides whether its packets are routable (v2 = UDP/IP) and over which address family.
// selectGid() makes that choice from the table alone, so it is tested without hardware.
// Everything here is pure and thread-safe. Internal header.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "braid/status.h"
#include "core/params.h"

namespace braid::verbs {

/// IBV_LINK_LAYER_* values (verbs.h), usable in a build without verbs.
constexpr int kLinkLayerUnspecified = 0;  ///< old providers: means InfiniBand
constexpr int kLinkLayerInfiniband = 1;
constexpr int kLinkLayerEthernet = 2;

/// "InfiniBand", "Ethernet", "unspecified".
std::string linkLayerName(int linkLayer);

using Gid = std::array<uint8_t, 16>;

enum class GidType { kIb, kRoceV1, kRoceV2 };

/// "IB", "RoCE v1", "RoCE v2".
std::string gidTypeName(GidType t);

struct GidEntry {
  int index = 0;
  Gid gid{};
  GidType type = GidType::kIb;
};

/// The GID a QP of this port will use, and why (for logs and braid_info).
struct GidChoice {
  int index = 0;
  GidType type = GidType::kIb;
  std::string reason;
};

/// An address range: an IPv4 range matches IPv4-mapped GIDs (::ffff:a.b.c.d), an IPv6
/// range matches the GID as an IPv6 address.
struct Cidr {
  int family = AF_INET;  ///< AF_INET or AF_INET6
  Gid addr{};            ///< network address as a GID (IPv4 ranges stored IPv4-mapped)
  int prefixLen = 0;     ///< bits of the address (0..32 for IPv4, 0..128 for IPv6)

  /// "10.0.0.0/8", "fd00::/8", "10.77.0.1" (a host: /32 or /128).
  static Result<Cidr> parse(const std::string& text);
  bool contains(const Gid& gid) const;
  std::string toString() const;
};

/// What automatic selection prefers. Defaults match the BRAID_IB_* defaults.
struct GidPolicy {
  int forcedIndex = -1;       ///< >= 0: use exactly this index (BRAID_IB_GID_INDEX)
  int roceVersion = 2;        ///< preferred RoCE version, 1 or 2 (BRAID_IB_ROCE_VERSION)
  int addrFamily = AF_INET;   ///< preferred family (BRAID_IB_ADDR_FAMILY)
  std::optional<Cidr> range;  ///< only GIDs inside (BRAID_IB_ADDR_RANGE)

  /// From BRAID_IB_GID_INDEX, BRAID_IB_ROCE_VERSION, BRAID_IB_ADDR_FAMILY and
  /// BRAID_IB_ADDR_RANGE. A bad range is an error naming the variable.
  static Result<GidPolicy> fromParams(const core::Params& p);
};

/// Chooses the GID of a port from its table (entries in any order; zero entries may be
/// present). InfiniBand link layer: index 0 (LID routing, no GRH needed inside a subnet).
/// Ethernet (RoCE): the forced index when set (error if absent or all-zero); otherwise the
/// lowest-index usable GID, preferring the requested RoCE version first and the family
/// second, inside the range if one is given. Zero GIDs and link-local fe80::/10 GIDs are
/// never chosen automatically (not routable). Falling back to another version or family
/// is said in the reason. No usable GID: kNotFound listing the table.
Result<GidChoice> selectGid(const std::vector<GidEntry>& table, int linkLayer,
                            const GidPolicy& policy);

/// "::ffff:10.77.0.1", "fe80::5054:ff:fe77:1".
std::string gidToString(const Gid& gid);

bool isZeroGid(const Gid& gid);
bool isIpv4MappedGid(const Gid& gid);
bool isLinkLocalGid(const Gid& gid);

}  // namespace braid::verbs
