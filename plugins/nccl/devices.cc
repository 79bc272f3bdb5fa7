// plugins/nccl/devices.cc — the devices the plugin offers NCCL: one per verbs port, or one
// per TCP interface on a host without RDMA; virtual devices fuse several (makeVDevice,
// BRAID_NCCL_MERGE_ALL=1), and braid's scheduler stripes and fails over across them.
#include <cstdlib>
#include <map>

#include <fmt/format.h>

#include "core/log.h"
#include "core/params.h"
#include "net.h"

namespace braid::nccl {
namespace {

/// braid's knob when set, else NCCL's (a job configured for NCCL's IB transport then picks
/// the same NICs and interfaces).
std::string orNccl(const std::string& braidValue, const char* ncclName) {
  if (!braidValue.empty()) return braidValue;
  const char* v = std::getenv(ncclName);
  return v != nullptr ? v : "";
}

std::string joined(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

/// A Context over exactly these rails: verbs ports by exact device:port, TCP interfaces by
/// exact name. Everything else (tokens, timeouts, striping policy) comes from BRAID_*.
ContextOptions optionsFor(Transport t, const std::vector<std::string>& rails,
                          const std::string& socketIfname) {
  ContextOptions o;
  if (t == Transport::kVerbs) {
    o.ibHca = "=" + joined(rails, ",");
    if (!socketIfname.empty()) o.socketIfname = socketIfname;
  } else {
    o.transport = Transport::kTcp;
    o.socketIfname = "=" + joined(rails, ",");
  }
  return o;
}

}  // namespace

DeviceTable& DeviceTable::get() {
  // Lives until the library is unloaded (NCCL dlclose()s it after the last finalize):
  // getProperties hands out pointers into it.
  static DeviceTable t;
  return t;
}

Status DeviceTable::discover() {
  std::lock_guard<std::mutex> lk(m_);
  if (discovered_) return Status::ok();
  BRAID_ASSIGN_OR_RETURN(core::Params params, core::params());
  ContextOptions probe;
  std::string hca = orNccl(params.ibHca, "NCCL_IB_HCA");
  socketIfname_ = orNccl(params.socketIfname, "NCCL_SOCKET_IFNAME");
  const std::string& ifname = socketIfname_;
  if (!hca.empty()) probe.ibHca = hca;
  if (!ifname.empty()) probe.socketIfname = ifname;
  auto ctx = Context::create(probe);
  if (!ctx) return ctx.status().withContext("braid NCCL plugin: device discovery");
  std::vector<RailInfo> verbs, tcp;
  for (const RailInfo& r : (*ctx)->rails())
    (r.transport == Transport::kVerbs ? verbs : tcp).push_back(r);
  const std::vector<RailInfo>& use = verbs.empty() ? tcp : verbs;
  const Transport t = verbs.empty() ? Transport::kTcp : Transport::kVerbs;
  if (use.empty())
    return Status(Code::kNotFound,
                  "braid NCCL plugin: no usable RDMA port or TCP interface (check braid_info, "
                  "BRAID_IB_HCA / NCCL_IB_HCA and BRAID_SOCKET_IFNAME / NCCL_SOCKET_IFNAME)");
  // A device with one usable port is named as the device; ports of a multi-port device
  // carry ":port" so that every name is unique (NCCL keys its topology on names).
  std::map<std::string, int> portsPerDevice;
  for (const RailInfo& r : use) portsPerDevice[r.name.substr(0, r.name.rfind(':'))]++;
  auto describe = [](const RailInfo& r) {
    return r.transport == Transport::kVerbs
               ? fmt::format("{} ({} gid[{}] {})", r.name, r.linkLayer, r.gidIndex, r.address)
               : fmt::format("{} ({})", r.name, r.address);
  };
  const bool mergeAll = params.ncclMergeAll;
  std::vector<std::unique_ptr<NetDevice>> out;
  if (mergeAll && use.size() > 1) {
    auto d = std::make_unique<NetDevice>();
    std::vector<std::string> names, shown;
    for (const RailInfo& r : use) {
      names.push_back(r.name);
      shown.push_back(describe(r));
      d->speedMbps += r.speedMbps > 0 ? r.speedMbps : 10000;
    }
    d->name = joined(names, "+");
    d->pciPath = use[0].pciPath;
    d->guid = t == Transport::kVerbs ? use[0].guid : 0;
    d->port = use[0].port;
    d->maxComms = t == Transport::kVerbs && use[0].maxQp > 0 ? use[0].maxQp : 65536;
    d->transport = t;
    d->children = {0};
    d->options = optionsFor(t, names, ifname);
    d->rails = joined(shown, ", ");
    out.push_back(std::move(d));
  } else {
    for (size_t i = 0; i < use.size(); ++i) {
      const RailInfo& r = use[i];
      auto d = std::make_unique<NetDevice>();
      std::string dev = r.name.substr(0, r.name.rfind(':'));
      d->name = t == Transport::kVerbs && portsPerDevice[dev] == 1 ? dev : r.name;
      d->pciPath = r.pciPath;
      d->guid = t == Transport::kVerbs ? r.guid : i;
      d->port = r.port;
      // Unknown speeds (veth, lo, some virtual NICs) are reported as NCCL's own default.
      d->speedMbps = r.speedMbps > 0 ? r.speedMbps : 10000;
      d->maxComms = t == Transport::kVerbs && r.maxQp > 0 ? r.maxQp : 65536;
      d->transport = t;
      d->children = {static_cast<int>(i)};
      d->options = optionsFor(t, {r.name}, ifname);
      d->rails = describe(r);
      out.push_back(std::move(d));
    }
  }
  // GPUDirect RDMA: advertised only where it works, so that NCCL stages GPU data through
  // host memory everywhere else.
  auto drv = gpu::Driver::load();
  driver_ = drv ? *drv : nullptr;
  gpu::Support gs = gpu::detect(driver_, drv ? "" : drv.status().message());
  std::string dmaWhy = "TCP devices: host memory only";
  const bool verbsDmabuf = t == Transport::kVerbs && (*ctx)->dmabufSupported(&dmaWhy);
  int ptr = kPtrHost;
  std::string path = "host", why;
  if (t != Transport::kVerbs || !gs.driver || gs.devices == 0) {
    why = t != Transport::kVerbs ? "no RDMA port" : "no GPU";
  } else if (gs.dmabufDevices && verbsDmabuf) {
    ptr |= kPtrCuda | kPtrDmabuf;
    path = "dma-buf";
  } else if (gs.peerMemory) {
    ptr |= kPtrCuda;
    path = "peer memory";
  } else {
    why = "neither dma-buf registration nor a peer memory module";
  }
  // NCCL flushes GPUDirect receives on GPUs before sm_90 (or when forced). braid's flush
  // reads through one NIC, which orders that NIC's writes only: a device over several rails
  // (BRAID_NCCL_MERGE_ALL, makeVDevice) stays on host memory then.
  const char* ff = std::getenv("NCCL_NET_FORCE_FLUSH");
  flushNeeded_ = gs.minComputeMajor < 9 || (ff != nullptr && std::string(ff) == "1");
  for (auto& d : out) {
    d->ptrSupport = ptr;
    d->gpuPath = path;
    hostOnlyWhereFlushSpansNics(*d, mergeAll ? use.size() : 1);
  }
  BRAID_LOG_INFO(kPlugin, "NET/braid: GPU: {}; verbs dma-buf: {}; GPU buffers {}{}", gs.summary,
                 dmaWhy, path == "host" ? "go through host memory (NCCL stages them)"
                                        : "move by GPUDirect RDMA (" + path + ")",
                 why.empty() ? "" : ": " + why);
  for (size_t i = 0; i < out.size(); ++i)
    BRAID_LOG_INFO(kPlugin, "NET/braid: device {} {}: {} over {}, pci {}, {} Mbit/s, GPU path {}{}",
                   i, out[i]->name, t == Transport::kVerbs ? "RDMA verbs" : "TCP (no RDMA port)",
                   out[i]->rails, out[i]->pciPath.empty() ? "unknown" : out[i]->pciPath,
                   out[i]->speedMbps, path, mergeAll ? " (BRAID_NCCL_MERGE_ALL=1)" : "");
  devs_ = std::move(out);
  physical_ = static_cast<int>(devs_.size());
  discovered_ = true;
  return Status::ok();
}

int DeviceTable::count() const {
  std::lock_guard<std::mutex> lk(m_);
  return static_cast<int>(devs_.size());
}

Result<NetDevice> DeviceTable::device(int dev) const {
  const NetDevice* d = stable(dev);
  if (d == nullptr)
    return Status(Code::kInvalidArgument,
                  fmt::format("braid NCCL plugin: device {} does not exist ({} devices)", dev,
                              count()));
  return *d;
}

const NetDevice* DeviceTable::stable(int dev) const {
  std::lock_guard<std::mutex> lk(m_);
  if (dev < 0 || dev >= static_cast<int>(devs_.size())) return nullptr;
  return devs_[static_cast<size_t>(dev)].get();
}

void DeviceTable::hostOnlyWhereFlushSpansNics(NetDevice& d, size_t rails) const {
  if (rails <= 1 || !flushNeeded_ || d.ptrSupport == kPtrHost) return;
  d.ptrSupport = kPtrHost;  // see discover(): one NIC's flush does not cover the others'
  d.gpuPath = "host";
  BRAID_LOG_INFO(kPlugin, "NET/braid: a fused device's GPU buffers go through host memory: its "
                          "GPUDirect receives would need a flush on every NIC, and braid "
                          "flushes through one");
}

Result<int> DeviceTable::makeVirtual(const std::vector<int>& devs) {
  std::lock_guard<std::mutex> lk(m_);
  if (devs.empty() || devs.size() > 4)
    return Status(Code::kInvalidArgument,
                  fmt::format("makeVDevice: {} devices (1 to 4 may be fused)", devs.size()));
  std::vector<std::string> rails, names, shown;
  auto d = std::make_unique<NetDevice>();
  for (int c : devs) {
    if (c < 0 || c >= physical_)
      return Status(Code::kInvalidArgument,
                    fmt::format("makeVDevice: device {} is not a physical device (0..{})", c,
                                physical_ - 1));
    const NetDevice& child = *devs_[static_cast<size_t>(c)];
    for (int seen : d->children)
      if (seen == c)
        return Status(Code::kInvalidArgument,
                      fmt::format("makeVDevice: device {} listed twice", c));
    if (!d->children.empty() && child.transport != d->transport)
      return Status(Code::kInvalidArgument,
                    "makeVDevice: RDMA and TCP devices cannot be fused");
    if (d->children.empty()) {
      d->pciPath = child.pciPath;
      d->guid = child.guid;
      d->port = child.port;
      d->maxComms = child.maxComms;
      d->transport = child.transport;
      d->ptrSupport = child.ptrSupport;
      d->gpuPath = child.gpuPath;
      hostOnlyWhereFlushSpansNics(*d, devs.size());
    }
    d->children.push_back(c);
    d->speedMbps += child.speedMbps;
    d->maxComms = std::min(d->maxComms, child.maxComms);
    names.push_back(child.name);
    shown.push_back(child.rails);
    // The child's rail, as its options name it ("=rxe0:1" or "=eth0").
    const std::string& spec = d->transport == Transport::kVerbs ? *child.options.ibHca
                                                                : *child.options.socketIfname;
    rails.push_back(spec.substr(1));
  }
  d->name = joined(names, "+");
  d->options = optionsFor(d->transport, rails, socketIfname_);
  d->rails = joined(shown, ", ");
  int index = static_cast<int>(devs_.size());
  BRAID_LOG_INFO(kPlugin, "NET/braid: virtual device {} {}: braid stripes over {} ({} Mbit/s)",
                 index, d->name, d->rails, d->speedMbps);
  devs_.push_back(std::move(d));
  return index;
}

}  // namespace braid::nccl
