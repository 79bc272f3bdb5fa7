#include "verbs/gid.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <cstring>

namespace braid::verbs {

std::string linkLayerName(int linkLayer) {
  switch (linkLayer) {
    case kLinkLayerInfiniband:
      return "InfiniBand";
    case kLinkLayerEthernet:
      return "Ethernet";
    case kLinkLayerUnspecified:
      return "unspecified";
  }
  return fmt::format("unknown({})", linkLayer);
}

std::string gidTypeName(GidType t) {
  switch (t) {
    case GidType::kIb:
      return "IB";
    case GidType::kRoceV1:
      return "RoCE v1";
    case GidType::kRoceV2:
      return "RoCE v2";
  }
  return "?";
}

bool isZeroGid(const Gid& gid) {
  for (uint8_t b : gid)
    if (b != 0) return false;
  return true;
}

bool isIpv4MappedGid(const Gid& gid) {
  for (int i = 0; i < 10; ++i)
    if (gid[i] != 0) return false;
  return gid[10] == 0xff && gid[11] == 0xff;
}

bool isLinkLocalGid(const Gid& gid) {
  return gid[0] == 0xfe && (gid[1] & 0xc0) == 0x80;
}

std::string gidToString(const Gid& gid) {
  char buf[INET6_ADDRSTRLEN] = {};
  in6_addr a;
  std::memcpy(&a, gid.data(), sizeof(a));
  if (isIpv4MappedGid(gid)) {
    // glibc prints mapped addresses this way too; spelled out so it never depends on it.
    return fmt::format("::ffff:{}.{}.{}.{}", gid[12], gid[13], gid[14], gid[15]);
  }
  if (inet_ntop(AF_INET6, &a, buf, sizeof(buf)) == nullptr) return "?";
  return buf;
}

// ------------------------------------------------------------------ Cidr

Result<Cidr> Cidr::parse(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("'{}' is not an address range: {} (expected e.g. 10.0.0.0/8 or "
                              "fd00::/8)",
                              text, why));
  };
  std::string host = text;
  int prefix = -1;
  size_t slash = text.find('/');
  if (slash != std::string::npos) {
    host = text.substr(0, slash);
    std::string bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 ||
        bits.find_first_not_of("0123456789") != std::string::npos)
      return bad("the prefix length is not a number");
    prefix = std::stoi(bits);
  }
  Cidr c;
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    c.family = AF_INET;
    if (prefix < 0) prefix = 32;
    if (prefix > 32) return bad("an IPv4 prefix is at most 32 bits");
    c.addr[10] = 0xff;
    c.addr[11] = 0xff;
    std::memcpy(&c.addr[12], &a4, 4);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    c.family = AF_INET6;
    if (prefix < 0) prefix = 128;
    if (prefix > 128) return bad("an IPv6 prefix is at most 128 bits");
    std::memcpy(c.addr.data(), &a6, 16);
  } else {
    return bad("the address is neither IPv4 nor IPv6");
  }
  c.prefixLen = prefix;
  return c;
}

bool Cidr::contains(const Gid& gid) const {
  int first = 0;  // first bit of the GID compared
  int bits = prefixLen;
  if (family == AF_INET) {
    if (!isIpv4MappedGid(gid)) return false;
    first = 96;
  }
  for (int i = 0; i < bits; ++i) {
    int bit = first + i;
    uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((gid[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
  }
  return true;
}

std::string Cidr::toString() const {
  if (family == AF_INET)
    return fmt::format("{}.{}.{}.{}/{}", addr[12], addr[13], addr[14], addr[15], prefixLen);
  return fmt::format("{}/{}", gidToString(addr), prefixLen);
}

// ------------------------------------------------------------------ policy

Result<GidPolicy> GidPolicy::fromParams(const core::Params& p) {
  GidPolicy g;
  g.forcedIndex = static_cast<int>(p.ibGidIndex);
  g.roceVersion = p.ibRoceVersion == 1 ? 1 : 2;
  g.addrFamily = p.ibAddrFamily == "AF_INET6" ? AF_INET6 : AF_INET;
  if (!p.ibAddrRange.empty()) {
    auto c = Cidr::parse(p.ibAddrRange);
    if (!c) return c.status().withContext("BRAID_IB_ADDR_RANGE");
    g.range = *c;
  }
  return g;
}

// ------------------------------------------------------------------ selection

namespace {

const char* familyName(int family) {
  return family == AF_INET6 ? "AF_INET6" : "AF_INET";
}

int familyOf(const Gid& gid) {
  return isIpv4MappedGid(gid) ? AF_INET : AF_INET6;
}

bool versionMatches(GidType t, int roceVersion) {
  return (roceVersion == 1 && t == GidType::kRoceV1) || (roceVersion == 2 && t == GidType::kRoceV2);
}

std::string describeTable(const std::vector<GidEntry>& table, const GidPolicy& policy) {
  std::string out;
  int shown = 0;
  for (const GidEntry& e : table) {
    if (isZeroGid(e.gid)) continue;
    const char* note = "";
    if (isLinkLocalGid(e.gid))
      note = " (link-local: not routable)";
    else if (e.type == GidType::kIb)
      note = " (IB type on an Ethernet port)";
    else if (policy.range && !policy.range->contains(e.gid))
      note = " (outside BRAID_IB_ADDR_RANGE)";
    out += fmt::format("{}[{}] {} {}{}", shown ? "; " : "", e.index, gidToString(e.gid),
                       gidTypeName(e.type), note);
    ++shown;
  }
  if (shown == 0) return "every entry is empty (all-zero): does the netdev have an IP address?";
  return out;
}

}  // namespace

Result<GidChoice> selectGid(const std::vector<GidEntry>& table, int linkLayer,
                            const GidPolicy& policy) {
  if (linkLayer == kLinkLayerInfiniband || linkLayer == kLinkLayerUnspecified) {
    GidChoice c;
    c.index = 0;
    c.type = GidType::kIb;
    c.reason = "InfiniBand link layer: LID routing with the port GID (index 0)";
    if (policy.forcedIndex > 0) c.reason += "; BRAID_IB_GID_INDEX applies to RoCE only";
    return c;
  }
  if (linkLayer != kLinkLayerEthernet)
    return Status(Code::kUnsupported,
                  fmt::format("link layer {} is neither InfiniBand nor Ethernet", linkLayer));

  if (policy.forcedIndex >= 0) {
    for (const GidEntry& e : table) {
      if (e.index != policy.forcedIndex) continue;
      if (isZeroGid(e.gid))
        return Status(Code::kInvalidArgument,
                      fmt::format("BRAID_IB_GID_INDEX={} names an empty (all-zero) GID entry; "
                                  "table: {}",
                                  policy.forcedIndex, describeTable(table, policy)));
      GidChoice c;
      c.index = e.index;
      c.type = e.type;
      c.reason = fmt::format("BRAID_IB_GID_INDEX={}: {} {}", policy.forcedIndex,
                             gidTypeName(e.type), gidToString(e.gid));
      return c;
    }
    return Status(Code::kNotFound,
                  fmt::format("BRAID_IB_GID_INDEX={} is not in the GID table; table: {}",
                              policy.forcedIndex, describeTable(table, policy)));
  }

  // Rank: requested version beats requested family (a v1 GID cannot cross an IP router,
  // while either family of v2 can); among equals the lowest index, as the kernel lists
  // an address's GIDs in the order they were added.
  const GidEntry* best = nullptr;
  int bestRank = -1;
  for (const GidEntry& e : table) {
    if (isZeroGid(e.gid) || isLinkLocalGid(e.gid) || e.type == GidType::kIb) continue;
    if (policy.range && !policy.range->contains(e.gid)) continue;
    int rank = (versionMatches(e.type, policy.roceVersion) ? 2 : 0) +
               (familyOf(e.gid) == policy.addrFamily ? 1 : 0);
    if (rank > bestRank || (rank == bestRank && e.index < best->index)) {
      best = &e;
      bestRank = rank;
    }
  }
  if (best == nullptr) {
    std::string range = policy.range ? fmt::format(" inside {}", policy.range->toString()) : "";
    return Status(Code::kNotFound,
                  fmt::format("no usable RoCE GID{} (need a non-zero, non-link-local RoCE GID: "
                              "give the netdev an IP address, or set BRAID_IB_GID_INDEX); "
                              "table: {}",
                              range, describeTable(table, policy)));
  }
  GidChoice c;
  c.index = best->index;
  c.type = best->type;
  std::string what =
      fmt::format("{} {} {}", gidTypeName(best->type),
                  isIpv4MappedGid(best->gid) ? "IPv4-mapped" : "IPv6", gidToString(best->gid));
  std::string wanted =
      fmt::format("RoCE v{} {}", policy.roceVersion, familyName(policy.addrFamily));
  if (bestRank == 3) {
    c.reason = fmt::format("{} (preferred: {})", what, wanted);
  } else {
    std::string missing;
    if ((bestRank & 2) == 0) missing = fmt::format("no RoCE v{} GID", policy.roceVersion);
    if ((bestRank & 1) == 0)
      missing += fmt::format(
          "{}no {} GID{}", missing.empty() ? "" : " and ", familyName(policy.addrFamily),
          (bestRank & 2) ? fmt::format(" of RoCE v{}", policy.roceVersion) : std::string());
    c.reason = fmt::format("{} (fallback: {}; preferred {})", what, missing, wanted);
  }
  if (policy.range) c.reason += fmt::format(", inside {}", policy.range->toString());
  return c;
}

}  // namespace braid::verbs
