#include "verbs/device.h"

#include <fmt/format.h>
#include <limits.h>
#include <net/if.h>
#include <endian.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>

#include "core/log.h"
#include "core/name_list.h"

namespace braid::verbs {

// ------------------------------------------------------------------ HcaFilter

Result<HcaFilter> HcaFilter::parse(const std::string& spec) {
  HcaFilter f;
  BRAID_ASSIGN_OR_RETURN(f.names_, core::NameList::parse(spec, "BRAID_IB_HCA"));
  for (const std::string& item : f.names_.items) {
    Item it;
    size_t colon = item.find(':');
    it.device = item.substr(0, colon);
    if (it.device.empty())
      return Status(
          Code::kInvalidArgument,
          fmt::format("BRAID_IB_HCA='{}': '{}' has no device name before ':'", spec, item));
    if (colon != std::string::npos) {
      std::string port = item.substr(colon + 1);
      if (port.empty() || port.size() > 3 ||
          port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1)
        return Status(Code::kInvalidArgument,
                      fmt::format("BRAID_IB_HCA='{}': port '{}' of {} is not a port number "
                                  "(1, 2, ...)",
                                  spec, port, it.device));
      it.port = std::stoi(port);
    }
    f.items_.push_back(std::move(it));
  }
  return f;
}

bool HcaFilter::matches(const std::string& device, int port) const {
  if (items_.empty()) return true;
  bool hit = false;
  for (const Item& it : items_) {
    bool name = names_.nameMatches(device, it.device);
    if (name && (it.port < 0 || it.port == port)) {
      hit = true;
      break;
    }
  }
  return names_.exclude ? !hit : hit;
}

// ------------------------------------------------------------------ helpers

int mtuToBytes(int mtu) {
  return mtu >= 1 && mtu <= 5 ? 128 << mtu : 0;
}

int portSpeedMbps(int activeSpeed, int activeWidth) {
  // ibv_query_port(3): active_speed is a per-lane rate code, active_width a lane-count
  // code; the port carries their product.
  struct Pair {
    int code;
    int value;
  };
  static constexpr Pair kLaneMbps[] = {
      {1, 2500},   {2, 5000},     {4, 10000},    // SDR, DDR, QDR
      {8, 10000},  {16, 14000},   {32, 25000},   // FDR10, FDR, EDR
      {64, 50000}, {128, 100000}, {256, 200000}  // HDR, NDR, XDR
  };
  static constexpr Pair kLanes[] = {{1, 1}, {2, 4}, {4, 8}, {8, 12}, {16, 2}};
  int lane = 0, lanes = 0;
  for (const Pair& c : kLaneMbps)
    if (c.code == activeSpeed) lane = c.value;
  for (const Pair& c : kLanes)
    if (c.code == activeWidth) lanes = c.value;
  return lane * lanes;
}

std::string portStateName(int state) {
  switch (state) {
    case 0:
      return "NOP";
    case 1:
      return "DOWN";
    case 2:
      return "INIT";
    case 3:
      return "ARMED";
    case 4:
      return "ACTIVE";
    case 5:
      return "ACTIVE_DEFER";
  }
  return fmt::format("UNKNOWN({})", state);
}

#if BRAID_HAVE_VERBS

static_assert(kLinkLayerUnspecified == IBV_LINK_LAYER_UNSPECIFIED &&
                  kLinkLayerInfiniband == IBV_LINK_LAYER_INFINIBAND &&
                  kLinkLayerEthernet == IBV_LINK_LAYER_ETHERNET,
              "gid.h mirrors the IBV_LINK_LAYER_* values");
static_assert(IBV_PORT_ACTIVE == 4 && IBV_PORT_ACTIVE_DEFER == 5, "portStateName's table");

namespace {

std::optional<std::string> readLine(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line)) return std::string();
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r'))
    line.pop_back();
  return line;
}

std::string realPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return "";
  return buf;
}

// NUMA node of a sysfs device: its own numa_node, else the nearest ancestor's (a virtio
// net device sits below the PCI function that has one). -1 when nothing says.
int numaNodeOf(std::string dir) {
  while (!dir.empty() && dir != "/" && dir.size() > std::strlen("/sys/devices")) {
    if (auto v = readLine(dir + "/numa_node")) {
      try {
        return std::stoi(*v);
      } catch (...) {
        return -1;
      }
    }
    size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    dir.erase(slash);
  }
  return -1;
}

// sysfs gid_attrs/types/<i> holds "IB/RoCE v1" or "RoCE v2" (the kernel's names).
GidType gidTypeFromSysfs(const std::string& portDir, int index, int linkLayer) {
  if (linkLayer != kLinkLayerEthernet) return GidType::kIb;
  auto t = readLine(fmt::format("{}/gid_attrs/types/{}", portDir, index));
  if (t && t->find("v2") != std::string::npos) return GidType::kRoceV2;
  return GidType::kRoceV1;
}

GidType gidTypeFromVerbs(uint32_t t, int linkLayer) {
  if (linkLayer != kLinkLayerEthernet) return GidType::kIb;
  if (t == IBV_GID_TYPE_ROCE_V2) return GidType::kRoceV2;
  return GidType::kRoceV1;
}

// Closes a briefly opened context on every path.
struct ContextCloser {
  const Lib& lib;
  ibv_context* ctx;
  ~ContextCloser() {
    if (ctx != nullptr) lib.closeDevice(ctx);
  }
};

// One port's GID table through per-index queries (the fallback when the one-call
// ibv_query_gid_table is missing or fails). gid_tbl_len can be large (rxe: 1024), so
// the scan is bounded.
std::vector<GidEntry> readGidsByIndex(const Lib& lib, ibv_context* ctx, int port, int tableLen,
                                      int linkLayer, const std::string& portDir) {
  std::vector<GidEntry> out;
  int n = std::min(tableLen, 4096);
  for (int i = 0; i < n; ++i) {
    ibv_gid gid{};
    if (lib.queryGid(ctx, static_cast<uint8_t>(port), i, &gid) != 0) continue;
    GidEntry e;
    e.index = i;
    std::memcpy(e.gid.data(), gid.raw, 16);
    if (isZeroGid(e.gid)) continue;
    ibv_gid_type t{};
    if (linkLayer == kLinkLayerEthernet && lib.queryGidType != nullptr &&
        lib.queryGidType(ctx, static_cast<uint8_t>(port), static_cast<unsigned>(i), &t) == 0)
      e.type = gidTypeFromVerbs(t, linkLayer);
    else
      e.type = gidTypeFromSysfs(portDir, i, linkLayer);
    out.push_back(e);
  }
  return out;
}

}  // namespace

Result<std::vector<PortInfo>> discoverPorts(const Lib& lib, const core::Params& params,
                                            const DiscoverOptions& options) {
  BRAID_ASSIGN_OR_RETURN(HcaFilter filter, HcaFilter::parse(params.ibHca));
  BRAID_ASSIGN_OR_RETURN(GidPolicy policy, GidPolicy::fromParams(params));

  int n = 0;
  errno = 0;
  ibv_device** list = lib.getDeviceList(&n);
  if (list == nullptr)
    return Status(Code::kUnsupported,
                  fmt::format("ibv_get_device_list failed: {} (no RDMA support in this kernel, "
                              "or no access to /sys/class/infiniband)",
                              errnoText(errno != 0 ? errno : ENOSYS)));
  std::vector<std::string> names;
  std::vector<ibv_device*> devices;
  for (int i = 0; i < n && list[i] != nullptr; ++i) {
    const char* name = lib.getDeviceName(list[i]);
    names.emplace_back(name != nullptr ? name : "?");
    devices.push_back(list[i]);
  }

  std::vector<PortInfo> out;
  for (size_t d = 0; d < devices.size(); ++d) {
    const std::string& dev = names[d];
    errno = 0;
    ContextCloser ctx{lib, lib.openDevice(devices[d])};
    if (ctx.ctx == nullptr) {
      BRAID_LOG_WARN(kVerbs, "skipping RDMA device {}: ibv_open_device failed: {}", dev,
                     errnoText(errno != 0 ? errno : EIO));
      continue;
    }
    ibv_device_attr dattr{};
    int rc = lib.queryDevice(ctx.ctx, &dattr);
    if (rc != 0) {
      BRAID_LOG_WARN(kVerbs, "skipping RDMA device {}: ibv_query_device failed: {}", dev,
                     errnoText(rc > 0 ? rc : errno));
      continue;
    }
    std::string devDir = options.ibSysfsRoot + "/" + dev;

    // Every port's attributes first: the one-call GID table needs the total size.
    std::vector<ibv_port_attr> pattrs(dattr.phys_port_cnt);
    std::vector<bool> portOk(dattr.phys_port_cnt, false);
    size_t gidTotal = 0;
    for (int p = 1; p <= dattr.phys_port_cnt; ++p) {
      ibv_port_attr& pa = pattrs[p - 1];
      int prc = lib.queryPort(ctx.ctx, static_cast<uint8_t>(p), &pa);
      if (prc != 0) {
        BRAID_LOG_WARN(kVerbs, "{} port {}: ibv_query_port failed: {}", dev, p,
                       errnoText(prc > 0 ? prc : errno));
        continue;
      }
      portOk[p - 1] = true;
      gidTotal += static_cast<size_t>(std::max(pa.gid_tbl_len, 0));
    }
    std::map<int, std::vector<GidEntry>> gidsByPort;
    std::map<std::pair<int, int>, int> ndevIfindex;  // (port, index) -> ifindex
    bool haveTable = false;
    if (lib.queryGidTable != nullptr && gidTotal > 0) {
      std::vector<ibv_gid_entry> entries(gidTotal);
      ssize_t got =
          lib.queryGidTable(ctx.ctx, entries.data(), entries.size(), 0, sizeof(ibv_gid_entry));
      if (got >= 0) {
        haveTable = true;
        for (ssize_t i = 0; i < got; ++i) {
          const ibv_gid_entry& ge = entries[i];
          int p = static_cast<int>(ge.port_num);
          if (p < 1 || p > dattr.phys_port_cnt) continue;
          GidEntry e;
          e.index = static_cast<int>(ge.gid_index);
          std::memcpy(e.gid.data(), ge.gid.raw, 16);
          if (isZeroGid(e.gid)) continue;
          e.type = gidTypeFromVerbs(ge.gid_type, pattrs[p - 1].link_layer);
          gidsByPort[p].push_back(e);
          ndevIfindex[{p, e.index}] = static_cast<int>(ge.ndev_ifindex);
        }
      } else {
        BRAID_LOG_DEBUG(kVerbs, "{}: ibv_query_gid_table failed ({}); reading GIDs one by one", dev,
                        errnoText(errno));
      }
    }

    for (int p = 1; p <= dattr.phys_port_cnt; ++p) {
      if (!portOk[p - 1]) continue;
      const ibv_port_attr& pa = pattrs[p - 1];
      PortInfo pi;
      pi.device = dev;
      pi.port = p;
      pi.state = portStateName(pa.state);
      pi.active = pa.state == IBV_PORT_ACTIVE;
      if (!pi.active && !options.includeInactive) continue;
      pi.linkLayer = pa.link_layer;
      pi.activeMtu = pa.active_mtu;
      pi.activeMtuBytes = mtuToBytes(pa.active_mtu);
      pi.lid = pa.lid;
      pi.speedMbps = portSpeedMbps(pa.active_speed, pa.active_width);
      pi.gidTableLen = pa.gid_tbl_len;
      pi.guid = be64toh(dattr.sys_image_guid);
      pi.maxQp = dattr.max_qp;
      std::string portDir = fmt::format("{}/ports/{}", devDir, p);
      if (haveTable) {
        pi.gids = std::move(gidsByPort[p]);
        std::sort(pi.gids.begin(), pi.gids.end(),
                  [](const GidEntry& a, const GidEntry& b) { return a.index < b.index; });
      } else {
        pi.gids = readGidsByIndex(lib, ctx.ctx, p, pa.gid_tbl_len, pa.link_layer, portDir);
      }
      auto choice = selectGid(pi.gids, pa.link_layer, policy);
      if (choice)
        pi.gid = *choice;
      else
        pi.gidError = choice.status().message();

      if (pa.link_layer == kLinkLayerEthernet) {
        int idx = pi.gid ? pi.gid->index : (pi.gids.empty() ? -1 : pi.gids.front().index);
        if (idx >= 0) {
          if (auto nd = readLine(fmt::format("{}/gid_attrs/ndevs/{}", portDir, idx)))
            pi.netdev = *nd;
          auto it = ndevIfindex.find({p, idx});
          if (pi.netdev.empty() && it != ndevIfindex.end() && it->second > 0) {
            char ifname[IF_NAMESIZE] = {};
            if (if_indextoname(static_cast<unsigned>(it->second), ifname) != nullptr)
              pi.netdev = ifname;
          }
        }
      }
      // The NIC's PCI function; software devices (rxe, siw) have none, so use the one of
      // the netdev they sit on: that is where their packets go.
      pi.pciPath = realPath(devDir + "/device");
      if (pi.pciPath.empty() && !pi.netdev.empty())
        pi.pciPath = realPath(fmt::format("{}/{}/device", options.netSysfsRoot, pi.netdev));
      pi.numaNode = pi.pciPath.empty() ? -1 : numaNodeOf(pi.pciPath);
      pi.selected = filter.matches(dev, p);
      out.push_back(std::move(pi));
    }
  }
  lib.freeDeviceList(list);
  return out;
}

#else  // !BRAID_HAVE_VERBS

Result<std::vector<PortInfo>> discoverPorts(const Lib&, const core::Params&,
                                            const DiscoverOptions&) {
  return builtWithoutVerbs("device discovery");
}

#endif  // BRAID_HAVE_VERBS

Result<std::vector<PortInfo>> discoverPorts(const Lib& lib, const core::Params& params,
                                            bool includeInactive) {
  DiscoverOptions o;
  o.includeInactive = includeInactive;
  return discoverPorts(lib, params, o);
}

}  // namespace braid::verbs
