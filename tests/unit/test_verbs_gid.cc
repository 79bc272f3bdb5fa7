// RoCE GID selection over fake GID tables (pure: no device involved).
#include <catch2/catch.hpp>
#include <map>

#include "core/params.h"
#include "verbs/gid.h"

using namespace braid;
using namespace braid::verbs;

namespace {

Gid linkLocal(uint8_t last) {
  Gid g{};
  g[0] = 0xfe;
  g[1] = 0x80;
  g[8] = 0x52;
  g[15] = last;
  return g;
}

Gid v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  Gid g{};
  g[10] = 0xff;
  g[11] = 0xff;
  g[12] = a;
  g[13] = b;
  g[14] = c;
  g[15] = d;
  return g;
}

Gid v6global(uint8_t last) {
  Gid g{};
  g[0] = 0xfd;
  g[1] = 0x00;
  g[15] = last;
  return g;
}

GidEntry entry(int index, Gid gid, GidType type) {
  return GidEntry{index, gid, type};
}

// Real rxe (Linux 6.1): RoCE v2 only, link-local at 0, the IPv4-mapped address at 1.
const std::vector<GidEntry> kRxe = {entry(0, linkLocal(1), GidType::kRoceV2),
                                    entry(1, v4(10, 77, 0, 1), GidType::kRoceV2)};

// Typical mlx5 port with one IPv4 address: each address once per RoCE version.
const std::vector<GidEntry> kMlx5 = {
    entry(0, linkLocal(1), GidType::kRoceV1), entry(1, linkLocal(1), GidType::kRoceV2),
    entry(2, v4(192, 168, 1, 5), GidType::kRoceV1), entry(3, v4(192, 168, 1, 5), GidType::kRoceV2)};

GidPolicy policy() {
  return GidPolicy{};
}

}  // namespace

TEST_CASE("an InfiniBand port uses GID index 0 for LID routing") {
  auto c = selectGid({entry(0, linkLocal(1), GidType::kIb)}, kLinkLayerInfiniband, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 0);
  CHECK(c->type == GidType::kIb);
  CHECK_THAT(c->reason, Catch::Contains("LID"));
}

TEST_CASE("on rxe the IPv4-mapped RoCE v2 GID at index 1 is chosen over the link-local one") {
  auto c = selectGid(kRxe, kLinkLayerEthernet, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 1);
  CHECK(c->type == GidType::kRoceV2);
  CHECK_THAT(c->reason, Catch::Contains("::ffff:10.77.0.1"));
  CHECK_THAT(c->reason, Catch::Contains("preferred"));
}

TEST_CASE("on a typical mlx5 table the IPv4 RoCE v2 GID at index 3 is chosen") {
  auto c = selectGid(kMlx5, kLinkLayerEthernet, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 3);
  CHECK(c->type == GidType::kRoceV2);
}

TEST_CASE("asking for RoCE v1 picks the IPv4 RoCE v1 GID") {
  GidPolicy p;
  p.roceVersion = 1;
  auto c = selectGid(kMlx5, kLinkLayerEthernet, p);
  REQUIRE(c.isOk());
  CHECK(c->index == 2);
  CHECK(c->type == GidType::kRoceV1);
}

TEST_CASE("an all-IPv6 table falls back to an IPv6 RoCE v2 GID and says so") {
  std::vector<GidEntry> t = {
      entry(0, linkLocal(1), GidType::kRoceV1), entry(1, linkLocal(1), GidType::kRoceV2),
      entry(2, v6global(7), GidType::kRoceV1), entry(3, v6global(7), GidType::kRoceV2)};
  auto c = selectGid(t, kLinkLayerEthernet, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 3);
  CHECK_THAT(c->reason, Catch::Contains("fallback"));
  CHECK_THAT(c->reason, Catch::Contains("no AF_INET GID"));
}

TEST_CASE("asking for AF_INET6 prefers an IPv6 GID over an IPv4 one of the same version") {
  std::vector<GidEntry> t = {entry(2, v4(10, 0, 0, 1), GidType::kRoceV2),
                             entry(5, v6global(9), GidType::kRoceV2)};
  GidPolicy p;
  p.addrFamily = AF_INET6;
  auto c = selectGid(t, kLinkLayerEthernet, p);
  REQUIRE(c.isOk());
  CHECK(c->index == 5);
}

TEST_CASE("a table without RoCE v2 falls back to RoCE v1 and says so") {
  std::vector<GidEntry> t = {entry(0, linkLocal(1), GidType::kRoceV1),
                             entry(1, v4(10, 1, 2, 3), GidType::kRoceV1)};
  auto c = selectGid(t, kLinkLayerEthernet, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 1);
  CHECK(c->type == GidType::kRoceV1);
  CHECK_THAT(c->reason, Catch::Contains("no RoCE v2 GID"));
}

TEST_CASE("the requested RoCE version outranks the requested address family") {
  std::vector<GidEntry> t = {entry(1, v4(10, 1, 2, 3), GidType::kRoceV1),
                             entry(2, v6global(3), GidType::kRoceV2)};
  auto c = selectGid(t, kLinkLayerEthernet, policy());
  REQUIRE(c.isOk());
  CHECK(c->index == 2);
}

TEST_CASE("a forced GID index is used as is when the entry exists") {
  GidPolicy p;
  p.forcedIndex = 2;
  auto c = selectGid(kMlx5, kLinkLayerEthernet, p);
  REQUIRE(c.isOk());
  CHECK(c->index == 2);
  CHECK(c->type == GidType::kRoceV1);
  CHECK_THAT(c->reason, Catch::Contains("BRAID_IB_GID_INDEX=2"));
}

TEST_CASE("a forced GID index outside the table is an error listing the table") {
  GidPolicy p;
  p.forcedIndex = 7;
  auto c = selectGid(kRxe, kLinkLayerEthernet, p);
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().code() == Code::kNotFound);
  CHECK_THAT(c.status().message(), Catch::Contains("BRAID_IB_GID_INDEX=7"));
  CHECK_THAT(c.status().message(), Catch::Contains("[1] ::ffff:10.77.0.1 RoCE v2"));
}

TEST_CASE("a forced GID index naming an all-zero entry is an error") {
  GidPolicy p;
  p.forcedIndex = 2;
  std::vector<GidEntry> t = kRxe;
  t.push_back(entry(2, Gid{}, GidType::kRoceV2));
  auto c = selectGid(t, kLinkLayerEthernet, p);
  REQUIRE_FALSE(c.isOk());
  CHECK_THAT(c.status().message(), Catch::Contains("all-zero"));
}

TEST_CASE("an address range keeps only the GIDs inside it") {
  std::vector<GidEntry> t = {entry(1, v4(10, 77, 0, 1), GidType::kRoceV2),
                             entry(3, v4(192, 168, 7, 1), GidType::kRoceV2)};
  GidPolicy p;
  p.range = *Cidr::parse("192.168.0.0/16");
  auto c = selectGid(t, kLinkLayerEthernet, p);
  REQUIRE(c.isOk());
  CHECK(c->index == 3);
  CHECK_THAT(c->reason, Catch::Contains("192.168.0.0/16"));

  p.range = *Cidr::parse("172.16.0.0/12");
  auto none = selectGid(t, kLinkLayerEthernet, p);
  REQUIRE_FALSE(none.isOk());
  CHECK_THAT(none.status().message(), Catch::Contains("inside 172.16.0.0/12"));
  CHECK_THAT(none.status().message(), Catch::Contains("outside BRAID_IB_ADDR_RANGE"));
}

TEST_CASE("an IPv6 address range matches IPv6 GIDs only") {
  std::vector<GidEntry> t = {entry(1, v4(10, 77, 0, 1), GidType::kRoceV2),
                             entry(4, v6global(4), GidType::kRoceV2)};
  GidPolicy p;
  p.range = *Cidr::parse("fd00::/8");
  auto c = selectGid(t, kLinkLayerEthernet, p);
  REQUIRE(c.isOk());
  CHECK(c->index == 4);
}

TEST_CASE("a table of zero and link-local GIDs has no usable GID and the error lists it") {
  std::vector<GidEntry> t = {entry(0, linkLocal(1), GidType::kRoceV2),
                             entry(1, Gid{}, GidType::kRoceV2)};
  auto c = selectGid(t, kLinkLayerEthernet, policy());
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().code() == Code::kNotFound);
  CHECK_THAT(c.status().message(), Catch::Contains("link-local"));
  CHECK_THAT(c.status().message(), Catch::Contains("IP address"));
}

TEST_CASE("an all-zero GID table has no usable GID") {
  std::vector<GidEntry> t = {entry(0, Gid{}, GidType::kRoceV2), entry(1, Gid{}, GidType::kRoceV2)};
  auto c = selectGid(t, kLinkLayerEthernet, policy());
  REQUIRE_FALSE(c.isOk());
  CHECK_THAT(c.status().message(), Catch::Contains("all-zero"));
  CHECK_FALSE(selectGid({}, kLinkLayerEthernet, policy()).isOk());
}

TEST_CASE("GIDs print as IPv4-mapped or IPv6 text") {
  CHECK(gidToString(v4(10, 77, 0, 1)) == "::ffff:10.77.0.1");
  CHECK(gidToString(linkLocal(1)) == "fe80::5200:0:0:1");
  CHECK(gidToString(Gid{}) == "::");
  CHECK(isIpv4MappedGid(v4(1, 2, 3, 4)));
  CHECK(isLinkLocalGid(linkLocal(3)));
  CHECK_FALSE(isLinkLocalGid(v6global(3)));
}

TEST_CASE("address ranges parse IPv4 and IPv6 CIDRs and refuse junk") {
  auto a = Cidr::parse("10.77.0.0/16");
  REQUIRE(a.isOk());
  CHECK(a->contains(v4(10, 77, 3, 4)));
  CHECK_FALSE(a->contains(v4(10, 78, 0, 1)));
  CHECK_FALSE(a->contains(v6global(1)));
  CHECK(a->toString() == "10.77.0.0/16");
  auto host = Cidr::parse("10.77.0.1");
  REQUIRE(host.isOk());
  CHECK(host->prefixLen == 32);
  CHECK(Cidr::parse("0.0.0.0/0")->contains(v4(1, 2, 3, 4)));
  CHECK(Cidr::parse("fd00::/8").isOk());
  CHECK_FALSE(Cidr::parse("10.0.0.0/33").isOk());
  CHECK_FALSE(Cidr::parse("fd00::/129").isOk());
  CHECK_FALSE(Cidr::parse("10.0.0/8").isOk());
  CHECK_FALSE(Cidr::parse("10.0.0.0/x").isOk());
  CHECK_FALSE(Cidr::parse("").isOk());
}

TEST_CASE("the GID policy comes from the BRAID_IB_* knobs") {
  std::map<std::string, std::string> env = {{"BRAID_IB_GID_INDEX", "3"},
                                            {"BRAID_IB_ROCE_VERSION", "1"},
                                            {"BRAID_IB_ADDR_FAMILY", "AF_INET6"},
                                            {"BRAID_IB_ADDR_RANGE", "fd00::/8"}};
  auto lookup = [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto params = core::parseParams(lookup);
  REQUIRE(params.isOk());
  auto p = GidPolicy::fromParams(*params);
  REQUIRE(p.isOk());
  CHECK(p->forcedIndex == 3);
  CHECK(p->roceVersion == 1);
  CHECK(p->addrFamily == AF_INET6);
  REQUIRE(p->range.has_value());
  CHECK(p->range->family == AF_INET6);

  env = {{"BRAID_IB_ADDR_RANGE", "10.0.0.0/40"}};
  auto bad = core::parseParams(lookup);
  REQUIRE(bad.isOk());
  auto pb = GidPolicy::fromParams(*bad);
  REQUIRE_FALSE(pb.isOk());
  CHECK_THAT(pb.status().message(), Catch::Contains("BRAID_IB_ADDR_RANGE"));

  env.clear();
  auto def = GidPolicy::fromParams(*core::parseParams(lookup));
  REQUIRE(def.isOk());
  CHECK(def->forcedIndex == -1);
  CHECK(def->roceVersion == 2);
  CHECK(def->addrFamily == AF_INET);
  CHECK_FALSE(def->range.has_value());
}
