// Device discovery over a fake libibverbs and a fake sysfs tree; the BRAID_IB_HCA filter.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/params.h"
#include "fake_verbs.h"
#include "verbs/device.h"

using namespace braid;
using namespace braid::verbs;
namespace fs = std::filesystem;

namespace {

bool hca(const std::string& spec, const std::string& dev, int port) {
  auto f = HcaFilter::parse(spec);
  REQUIRE(f.isOk());
  return f->matches(dev, port);
}

core::Params params(std::map<std::string, std::string> env = {}) {
  auto p = core::parseParams([env](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
  REQUIRE(p.isOk());
  return *p;
}

void writeFile(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text << "\n";
}

Gid v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  Gid g{};
  g[10] = g[11] = 0xff;
  g[12] = a;
  g[13] = b;
  g[14] = c;
  g[15] = d;
  return g;
}

// A temporary sysfs: /class/infiniband/<dev>/... and /class/net/<if>/device, and a
// /devices tree with a PCI function carrying numa_node.
struct FakeSysfs {
  fs::path root;
  FakeSysfs() {
    char tmpl[] = "/tmp/braid-sysfs-XXXXXX";
    root = ::mkdtemp(tmpl);
  }
  ~FakeSysfs() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  fs::path ib() const { return root / "class/infiniband"; }
  fs::path net() const { return root / "class/net"; }
};

}  // namespace

TEST_CASE("the HCA filter matches device prefixes, ports, exact names and exclusions") {
  CHECK(hca("", "mlx5_0", 1));
  CHECK(hca("mlx5", "mlx5_0", 1));
  CHECK(hca("mlx5", "mlx5_1", 2));
  CHECK_FALSE(hca("mlx5", "rxe0", 1));
  CHECK(hca("mlx5_0:1", "mlx5_0", 1));
  CHECK_FALSE(hca("mlx5_0:1", "mlx5_0", 2));
  CHECK(hca("rxe0,rxe1:1", "rxe1", 1));
  CHECK_FALSE(hca("rxe0,rxe1:1", "rxe1", 2));
  CHECK(hca("=mlx5_1", "mlx5_1", 1));
  CHECK_FALSE(hca("=mlx5_1", "mlx5_10", 1));
  CHECK(hca("mlx5_1", "mlx5_10", 1));  // prefix by default, as NCCL_IB_HCA
  CHECK_FALSE(hca("^mlx5_0", "mlx5_0", 1));
  CHECK(hca("^mlx5_0", "mlx5_1", 1));
  CHECK_FALSE(hca("^mlx5_0", "mlx5_01", 1));
  CHECK(hca("^=mlx5_0", "mlx5_01", 1));
  CHECK_FALSE(hca("^=mlx5_0", "mlx5_0", 1));
  CHECK(hca("^rxe0:1", "rxe0", 2));
  CHECK(hca("^", "rxe0", 1));  // excluding nothing keeps everything
}

TEST_CASE("a malformed HCA spec is an error naming it") {
  for (const char* bad : {"mlx5_0:", "mlx5_0:x", ":1", "mlx5_0:0", "mlx5_0:1:2"}) {
    auto f = HcaFilter::parse(bad);
    CHECK_FALSE(f.isOk());
    if (!f.isOk()) CHECK_THAT(f.status().message(), Catch::Contains("BRAID_IB_HCA"));
  }
}

TEST_CASE("a '=' or '^' inside an HCA list is an error that shows where it belongs") {
  // BRAID_IB_HCA='=rxe0,=rxe1' selected rxe0 only: no device is named "=rxe1".
  for (const char* bad : {"=rxe0,=rxe1", "^mlx5_0,^mlx5_1", "mlx5_0,^mlx5_1:1"}) {
    auto f = HcaFilter::parse(bad);
    REQUIRE_FALSE(f.isOk());
    CHECK(f.status().code() == Code::kInvalidArgument);
    CHECK_THAT(f.status().message(), Catch::Contains("BRAID_IB_HCA"));
    CHECK_THAT(f.status().message(), Catch::Contains("at the start of the list"));
  }
  auto f = HcaFilter::parse("=rxe0,=rxe1");
  REQUIRE_FALSE(f.isOk());
  CHECK_THAT(f.status().message(), Catch::Contains("'=rxe0,rxe1'"));
  CHECK(HcaFilter::parse("^=rxe0,rxe1").isOk());
}

TEST_CASE("port speed, MTU and state helpers follow ibv_query_port's encodings") {
  CHECK(portSpeedMbps(1, 1) == 2500);      // SDR 1x, what rxe reports
  CHECK(portSpeedMbps(32, 2) == 100000);   // EDR 4x
  CHECK(portSpeedMbps(64, 2) == 200000);   // HDR 4x
  CHECK(portSpeedMbps(128, 2) == 400000);  // NDR 4x
  CHECK(portSpeedMbps(3, 2) == 0);
  CHECK(mtuToBytes(3) == 1024);
  CHECK(mtuToBytes(5) == 4096);
  CHECK(mtuToBytes(0) == 0);
  CHECK(portStateName(4) == "ACTIVE");
  CHECK(portStateName(1) == "DOWN");
}

TEST_CASE("discovery lists active ports with GIDs, chosen GID, netdev, PCI path and NUMA node") {
  FakeSysfs sys;
  // rxe0 is software: no device link of its own; its netdev eth0 sits on a PCI function.
  fs::path pci = sys.root / "devices/pci0000:00/0000:00:03.0";
  writeFile(pci / "numa_node", "1");
  fs::create_directories(pci / "virtio0");
  fs::create_directories(sys.net() / "eth0");
  fs::create_directory_symlink(pci / "virtio0", sys.net() / "eth0/device");
  fs::path port1 = sys.ib() / "rxe0/ports/1";
  writeFile(port1 / "gid_attrs/types/0", "RoCE v2");
  writeFile(port1 / "gid_attrs/types/1", "RoCE v2");
  writeFile(port1 / "gid_attrs/ndevs/0", "eth0");
  writeFile(port1 / "gid_attrs/ndevs/1", "eth0");
  // mlx5_0: an IB HCA with its own PCI device link.
  fs::path pci2 = sys.root / "devices/pci0000:00/0000:00:04.0";
  writeFile(pci2 / "numa_node", "0");
  fs::create_directories(sys.ib() / "mlx5_0");
  fs::create_directory_symlink(pci2, sys.ib() / "mlx5_0/device");

  fakeverbs::reset();
  auto& rxe = fakeverbs::addDevice("rxe0", 1, IBV_LINK_LAYER_ETHERNET);
  Gid ll{};
  ll[0] = 0xfe;
  ll[1] = 0x80;
  ll[15] = 1;
  rxe.ports[0].gids = {{0, ll, GidType::kRoceV2}, {1, v4(10, 77, 0, 1), GidType::kRoceV2}};
  rxe.ports[0].attr.active_speed = 1;
  rxe.ports[0].attr.active_width = 1;
  auto& ib = fakeverbs::addDevice("mlx5_0", 2, IBV_LINK_LAYER_INFINIBAND);
  ib.ports[0].gids = {{0, ll, GidType::kIb}};
  ib.ports[1].attr.state = IBV_PORT_DOWN;
  Lib lib = fakeverbs::makeLib();

  DiscoverOptions o;
  o.ibSysfsRoot = sys.ib().string();
  o.netSysfsRoot = sys.net().string();
  auto ports = discoverPorts(lib, params({{"BRAID_IB_HCA", "rxe"}}), o);
  REQUIRE(ports.isOk());
  REQUIRE(ports->size() == 2);  // mlx5_0 port 2 is DOWN
  const PortInfo& r = (*ports)[0];
  CHECK(r.device == "rxe0");
  CHECK(r.port == 1);
  CHECK(r.active);
  CHECK(r.state == "ACTIVE");
  CHECK(r.linkLayer == IBV_LINK_LAYER_ETHERNET);
  CHECK(r.activeMtuBytes == 1024);
  CHECK(r.speedMbps == 2500);
  REQUIRE(r.gids.size() == 2);
  CHECK(r.gids[1].type == GidType::kRoceV2);  // from sysfs: the fake has no queryGidType
  REQUIRE(r.gid.has_value());
  CHECK(r.gid->index == 1);
  CHECK(r.netdev == "eth0");
  CHECK(r.pciPath == fs::canonical(pci / "virtio0").string());
  CHECK(r.numaNode == 1);
  CHECK(r.selected);
  CHECK(r.usableAsRail());

  const PortInfo& m = (*ports)[1];
  CHECK(m.device == "mlx5_0");
  CHECK(m.linkLayer == IBV_LINK_LAYER_INFINIBAND);
  CHECK(m.lid == 7);
  REQUIRE(m.gid.has_value());
  CHECK(m.gid->index == 0);
  CHECK(m.netdev.empty());
  CHECK(m.pciPath == fs::canonical(pci2).string());
  CHECK(m.numaNode == 0);
  CHECK_FALSE(m.selected);  // BRAID_IB_HCA=rxe
  CHECK_FALSE(m.usableAsRail());

  o.includeInactive = true;
  auto all = discoverPorts(lib, params(), o);
  REQUIRE(all.isOk());
  REQUIRE(all->size() == 3);
  CHECK((*all)[2].state == "DOWN");
  CHECK_FALSE((*all)[2].active);
  CHECK((*all)[2].selected);  // empty BRAID_IB_HCA selects every port

  // Every device opened was closed again.
  auto& calls = fakeverbs::world().calls;
  CHECK(std::count(calls.begin(), calls.end(), "openDevice rxe0") ==
        std::count(calls.begin(), calls.end(), "closeDevice rxe0"));
}

TEST_CASE("discovery reports a port without a usable GID instead of failing") {
  fakeverbs::reset();
  fakeverbs::addDevice("rxe0", 1, IBV_LINK_LAYER_ETHERNET);  // empty GID table
  Lib lib = fakeverbs::makeLib();
  DiscoverOptions o;
  o.ibSysfsRoot = "/nonexistent";
  auto ports = discoverPorts(lib, params(), o);
  REQUIRE(ports.isOk());
  REQUIRE(ports->size() == 1);
  CHECK_FALSE((*ports)[0].gid.has_value());
  CHECK_THAT((*ports)[0].gidError, Catch::Contains("no usable RoCE GID"));
  CHECK_FALSE((*ports)[0].usableAsRail());
}

TEST_CASE("discovery with no devices is empty, and without kernel support an error") {
  fakeverbs::reset();
  Lib lib = fakeverbs::makeLib();
  auto none = discoverPorts(lib, params());
  REQUIRE(none.isOk());
  CHECK(none->empty());
  fakeverbs::world().listFails = true;
  auto err = discoverPorts(lib, params());
  REQUIRE_FALSE(err.isOk());
  CHECK(err.status().code() == Code::kUnsupported);
  CHECK_THAT(err.status().message(), Catch::Contains("ibv_get_device_list"));
}

TEST_CASE("discovery refuses a bad BRAID_IB_HCA or BRAID_IB_ADDR_RANGE") {
  fakeverbs::reset();
  Lib lib = fakeverbs::makeLib();
  CHECK_FALSE(discoverPorts(lib, params({{"BRAID_IB_HCA", "rxe0:x"}})).isOk());
  CHECK_FALSE(discoverPorts(lib, params({{"BRAID_IB_ADDR_RANGE", "10.0.0.0/99"}})).isOk());
}
