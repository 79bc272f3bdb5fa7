// Real device discovery on Soft-RoCE: rxe0 and rxe1, their GIDs, and BRAID_IB_HCA.
#include "support.h"
#include "verbs/device.h"

using namespace braid;
using namespace braid::verbs;
using namespace braid::verbs::test;

namespace {

const PortInfo* find(const std::vector<PortInfo>& ports, const std::string& dev) {
  for (const PortInfo& p : ports)
    if (p.device == dev && p.port == 1) return &p;
  return nullptr;
}

}  // namespace

TEST_CASE("discovery finds rxe0 and rxe1 active on Ethernet with an IPv4-mapped RoCE v2 GID") {
  auto ports = discoverPorts(lib(), params());
  REQUIRE(ports.isOk());
  for (const auto& [dev, ip, netdev] : {std::tuple{"rxe0", "::ffff:10.77.0.1", "eth0"},
                                        std::tuple{"rxe1", "::ffff:10.78.0.1", "eth1"}}) {
    INFO(dev);
    const PortInfo* p = find(*ports, dev);
    REQUIRE(p != nullptr);
    CHECK(p->active);
    CHECK(p->state == "ACTIVE");
    CHECK(p->linkLayer == IBV_LINK_LAYER_ETHERNET);
    CHECK(p->activeMtuBytes >= 1024);
    CHECK(p->lid == 0);
    REQUIRE(p->gid.has_value());
    CHECK(p->gid->type == GidType::kRoceV2);
    // The IPv4-mapped RoCE v2 entry, wherever the kernel put it in the table.
    int expected = -1;
    for (const GidEntry& g : p->gids)
      if (g.type == GidType::kRoceV2 && gidToString(g.gid) == ip) expected = g.index;
    CHECK(p->gid->index == expected);
    bool found = false;
    for (const GidEntry& g : p->gids)
      if (g.index == p->gid->index) {
        CHECK(gidToString(g.gid) == ip);
        CHECK(isIpv4MappedGid(g.gid));
        found = true;
      }
    CHECK(found);
    CHECK(p->netdev == netdev);
    CHECK(p->selected);
    CHECK(p->usableAsRail());
    // rxe has no PCI function of its own: the path is its netdev's (virtio-net).
    CHECK_FALSE(p->pciPath.empty());
  }
}

TEST_CASE("BRAID_IB_HCA selects and excludes the real rxe ports") {
  auto only1 = discoverPorts(lib(), params({{"BRAID_IB_HCA", "rxe1"}}));
  REQUIRE(only1.isOk());
  CHECK_FALSE(find(*only1, "rxe0")->selected);
  CHECK(find(*only1, "rxe1")->selected);

  auto not0 = discoverPorts(lib(), params({{"BRAID_IB_HCA", "^rxe0"}}));
  REQUIRE(not0.isOk());
  CHECK_FALSE(find(*not0, "rxe0")->selected);
  CHECK(find(*not0, "rxe1")->selected);

  auto exact = discoverPorts(lib(), params({{"BRAID_IB_HCA", "=rxe"}}));
  REQUIRE(exact.isOk());
  CHECK_FALSE(find(*exact, "rxe0")->selected);
  CHECK_FALSE(find(*exact, "rxe1")->selected);

  auto port = discoverPorts(lib(), params({{"BRAID_IB_HCA", "rxe0:1,rxe1:2"}}));
  REQUIRE(port.isOk());
  CHECK(find(*port, "rxe0")->selected);
  CHECK_FALSE(find(*port, "rxe1")->selected);
}

TEST_CASE("a forced GID index and an address range steer the real GID choice") {
  auto forced = discoverPorts(lib(), params({{"BRAID_IB_GID_INDEX", "0"}}));
  REQUIRE(forced.isOk());
  REQUIRE(find(*forced, "rxe0")->gid.has_value());
  CHECK(find(*forced, "rxe0")->gid->index == 0);

  auto ranged = discoverPorts(lib(), params({{"BRAID_IB_ADDR_RANGE", "10.78.0.0/16"}}));
  REQUIRE(ranged.isOk());
  CHECK_FALSE(find(*ranged, "rxe0")->gid.has_value());
  CHECK_THAT(find(*ranged, "rxe0")->gidError, Catch::Contains("10.78.0.0/16"));
  const PortInfo* rxe1 = find(*ranged, "rxe1");
  REQUIRE(rxe1->gid.has_value());
  for (const GidEntry& g : rxe1->gids)
    if (g.index == rxe1->gid->index) CHECK(gidToString(g.gid) == "::ffff:10.78.0.1");
}

TEST_CASE("without the one-call GID table, per-index queries and sysfs types give the same GIDs") {
  auto reference = discoverPorts(lib(), params());
  REQUIRE(reference.isOk());
  Lib perIndex = lib();
  perIndex.queryGidTable = nullptr;  // per-index ibv_query_gid + ibv_query_gid_ex types
  Lib sysfsOnly = perIndex;
  sysfsOnly.queryGidType = nullptr;  // per-index ibv_query_gid + sysfs gid_attrs/types
  sysfsOnly.queryGidEx = nullptr;
  for (const Lib* l : {&perIndex, &sysfsOnly}) {
    auto ports = discoverPorts(*l, params());
    REQUIRE(ports.isOk());
    REQUIRE(ports->size() == reference->size());
    for (size_t i = 0; i < ports->size(); ++i) {
      const PortInfo& a = (*ports)[i];
      const PortInfo& b = (*reference)[i];
      INFO(a.device);
      REQUIRE(a.gids.size() == b.gids.size());
      for (size_t g = 0; g < a.gids.size(); ++g) {
        CHECK(a.gids[g].index == b.gids[g].index);
        CHECK(a.gids[g].gid == b.gids[g].gid);
        CHECK(a.gids[g].type == b.gids[g].type);
      }
      REQUIRE(a.gid.has_value());
      CHECK(a.gid->index == b.gid->index);
      CHECK(a.netdev == b.netdev);
    }
  }
}
