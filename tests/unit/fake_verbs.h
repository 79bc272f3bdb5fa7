// tests/unit/fake_verbs.h — a fake libibverbs behind verbs::Lib, for unit tests on hosts
// without RDMA. Devices, ports and GID tables are plain data; every call is recorded in
// order; failures are injected by setting fields. One World at a time (tests are serial);
// the async-event queue is the only part touched from another thread (the watcher's).
#pragma once

#include <infiniband/verbs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "verbs/gid.h"
#include "verbs/lib.h"

namespace fakeverbs {

struct Port {
  ibv_port_attr attr{};
  std::vector<braid::verbs::GidEntry> gids;  // index, gid, (type unused: sysfs or gidType)
};

struct Device {
  std::string name;
  ibv_device dev{};
  ibv_context ctx{};
  ibv_device_attr attr{};
  std::vector<Port> ports;
};

struct World {
  std::deque<Device> devices;  // deque: addresses stay put as devices are added
  std::vector<ibv_device*> list;
  std::vector<std::string> calls;
  bool listFails = false;  // getDeviceList returns NULL with ENOSYS
  int closeRc = 0, deallocPdRc = 0, destroyCqRc = 0, destroyQpRc = 0, deregMrRc = 0;
  int regMrErrno = 0;  // non-zero: regMr fails with it
  int modifyRc = 0;    // returned by modifyQp
  std::deque<ibv_pd> pds;
  std::deque<ibv_comp_channel> channels;
  std::deque<ibv_cq> cqs;
  std::deque<ibv_qp> qps;
  std::deque<ibv_mr> mrs;
  std::vector<ibv_qp_attr> modifyAttrs;
  std::vector<int> modifyMasks;
  uint32_t nextQpn = 100;
  uint32_t nextKey = 1;
  // async events
  std::mutex eventMu;
  std::deque<ibv_async_event> events;  // guarded by eventMu
  std::atomic<int> acked{0};
};

inline World*& worldPtr() {
  static World* w = nullptr;
  return w;
}
inline World& world() {
  return *worldPtr();
}

/// Installs a fresh World for one test; the previous one is dropped.
inline World& reset() {
  delete worldPtr();
  worldPtr() = new World();
  return world();
}

inline Device& addDevice(const std::string& name, int ports, int linkLayer) {
  World& w = world();
  w.devices.emplace_back();
  Device& d = w.devices.back();
  d.name = name;
  d.ctx.device = &d.dev;
  d.ctx.async_fd = -1;
  d.attr.phys_port_cnt = static_cast<uint8_t>(ports);
  d.attr.max_qp_wr = 4096;
  d.attr.max_sge = 8;
  d.attr.max_cqe = 8192;
  d.attr.max_qp_rd_atom = 8;
  d.attr.max_qp_init_rd_atom = 4;
  d.attr.max_mr_size = ~0ull;
  for (int p = 0; p < ports; ++p) {
    Port port;
    port.attr.state = IBV_PORT_ACTIVE;
    port.attr.link_layer = static_cast<uint8_t>(linkLayer);
    port.attr.active_mtu = IBV_MTU_1024;
    port.attr.active_speed = 32;  // EDR
    port.attr.active_width = 2;   // 4x
    port.attr.gid_tbl_len = 16;
    port.attr.lid = linkLayer == IBV_LINK_LAYER_INFINIBAND ? static_cast<uint16_t>(7 + p) : 0;
    d.ports.push_back(port);
  }
  w.list.clear();
  for (auto& dev : w.devices) w.list.push_back(&dev.dev);
  return d;
}

inline Device* deviceOf(ibv_context* ctx) {
  for (auto& d : world().devices)
    if (&d.ctx == ctx) return &d;
  return nullptr;
}

inline void pushEvent(const ibv_async_event& e, int writeFd) {
  {
    std::lock_guard<std::mutex> lk(world().eventMu);
    world().events.push_back(e);
  }
  char c = 1;
  (void)!::write(writeFd, &c, 1);
}

inline braid::verbs::Lib makeLib() {
  braid::verbs::Lib lib;
  lib.getDeviceList = [](int* n) -> ibv_device** {
    World& w = world();
    w.calls.push_back("getDeviceList");
    if (w.listFails) {
      errno = ENOSYS;
      return nullptr;
    }
    *n = static_cast<int>(w.list.size());
    // NULL-terminated copy, as libibverbs returns.
    auto* out = new ibv_device*[w.list.size() + 1];
    for (size_t i = 0; i < w.list.size(); ++i) out[i] = w.list[i];
    out[w.list.size()] = nullptr;
    return out;
  };
  lib.freeDeviceList = [](ibv_device** l) {
    world().calls.push_back("freeDeviceList");
    delete[] l;
  };
  lib.getDeviceName = [](ibv_device* dev) -> const char* {
    for (auto& d : world().devices)
      if (&d.dev == dev) return d.name.c_str();
    return nullptr;
  };
  lib.openDevice = [](ibv_device* dev) -> ibv_context* {
    for (auto& d : world().devices)
      if (&d.dev == dev) {
        world().calls.push_back("openDevice " + d.name);
        return &d.ctx;
      }
    errno = ENODEV;
    return nullptr;
  };
  lib.closeDevice = [](ibv_context* ctx) -> int {
    world().calls.push_back("closeDevice " + deviceOf(ctx)->name);
    return world().closeRc;
  };
  lib.queryDevice = [](ibv_context* ctx, ibv_device_attr* attr) -> int {
    *attr = deviceOf(ctx)->attr;
    return 0;
  };
  lib.queryPort = [](ibv_context* ctx, uint8_t port, ibv_port_attr* attr) -> int {
    Device* d = deviceOf(ctx);
    if (port < 1 || port > d->ports.size()) return EINVAL;
    *attr = d->ports[port - 1].attr;
    return 0;
  };
  lib.queryGid = [](ibv_context* ctx, uint8_t port, int index, ibv_gid* gid) -> int {
    Device* d = deviceOf(ctx);
    std::memset(gid, 0, sizeof(*gid));
    if (port < 1 || port > d->ports.size()) return EINVAL;
    for (auto& e : d->ports[port - 1].gids)
      if (e.index == index) std::memcpy(gid->raw, e.gid.data(), 16);
    return 0;
  };
  lib.allocPd = [](ibv_context* ctx) -> ibv_pd* {
    World& w = world();
    w.calls.push_back("allocPd");
    w.pds.emplace_back();
    w.pds.back().context = ctx;
    return &w.pds.back();
  };
  lib.deallocPd = [](ibv_pd*) -> int {
    world().calls.push_back("deallocPd");
    return world().deallocPdRc;
  };
  lib.regMr = [](ibv_pd* pd, void* addr, size_t len, int access) -> ibv_mr* {
    World& w = world();
    w.calls.push_back("regMr");
    if (w.regMrErrno != 0) {
      errno = w.regMrErrno;
      return nullptr;
    }
    (void)access;
    w.mrs.emplace_back();
    ibv_mr& mr = w.mrs.back();
    mr.context = pd->context;
    mr.pd = pd;
    mr.addr = addr;
    mr.length = len;
    mr.lkey = w.nextKey++;
    mr.rkey = w.nextKey++;
    return &mr;
  };
  lib.deregMr = [](ibv_mr*) -> int {
    world().calls.push_back("deregMr");
    return world().deregMrRc;
  };
  lib.createCompChannel = [](ibv_context* ctx) -> ibv_comp_channel* {
    World& w = world();
    w.calls.push_back("createCompChannel");
    w.channels.emplace_back();
    w.channels.back().context = ctx;
    w.channels.back().fd = 42;
    return &w.channels.back();
  };
  lib.destroyCompChannel = [](ibv_comp_channel*) -> int {
    world().calls.push_back("destroyCompChannel");
    return 0;
  };
  lib.createCq = [](ibv_context* ctx, int cqe, void*, ibv_comp_channel* ch, int) -> ibv_cq* {
    World& w = world();
    w.calls.push_back(ch != nullptr ? "createCq+channel" : "createCq");
    w.cqs.emplace_back();
    w.cqs.back().context = ctx;
    w.cqs.back().cqe = cqe + 1;  // devices round up
    w.cqs.back().channel = ch;
    return &w.cqs.back();
  };
  lib.destroyCq = [](ibv_cq*) -> int {
    world().calls.push_back("destroyCq");
    return world().destroyCqRc;
  };
  lib.createQp = [](ibv_pd* pd, ibv_qp_init_attr* attr) -> ibv_qp* {
    World& w = world();
    w.calls.push_back("createQp");
    w.qps.emplace_back();
    ibv_qp& qp = w.qps.back();
    qp.context = pd->context;
    qp.pd = pd;
    qp.qp_num = w.nextQpn++;
    qp.qp_type = attr->qp_type;
    qp.state = IBV_QPS_RESET;
    attr->cap.max_inline_data = std::max<uint32_t>(attr->cap.max_inline_data, 64);
    return &qp;
  };
  lib.modifyQp = [](ibv_qp* qp, ibv_qp_attr* attr, int mask) -> int {
    World& w = world();
    w.calls.push_back("modifyQp");
    w.modifyAttrs.push_back(*attr);
    w.modifyMasks.push_back(mask);
    if (w.modifyRc == 0) qp->state = attr->qp_state;
    return w.modifyRc;
  };
  lib.destroyQp = [](ibv_qp*) -> int {
    world().calls.push_back("destroyQp");
    return world().destroyQpRc;
  };
  lib.getAsyncEvent = [](ibv_context* ctx, ibv_async_event* ev) -> int {
    char c;
    if (::read(ctx->async_fd, &c, 1) != 1) return -1;  // EAGAIN: nothing queued
    std::lock_guard<std::mutex> lk(world().eventMu);
    if (world().events.empty()) return -1;
    *ev = world().events.front();
    world().events.pop_front();
    return 0;
  };
  lib.ackAsyncEvent = [](ibv_async_event*) { world().acked.fetch_add(1); };
  lib.eventTypeStr = [](ibv_event_type t) -> const char* {
    return t == IBV_EVENT_PORT_ERR ? "port error" : "some event";
  };
  return lib;
}

}  // namespace fakeverbs
