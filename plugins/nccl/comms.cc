// plugins/nccl/comms.cc — listen/connect/accept, registration and the data path of the NCCL
// net plugin, over braid Listeners and Endpoints. A send comm and a receive comm are one
// braid endpoint each (NCCL connections are one-way); NCCL's tags are braid tags, which
// match in posting order per tag, as NCCL requires.
#include <array>
#include <climits>
#include <cstring>
#include <map>

#include <unistd.h>

#include <fmt/format.h>

#include "core/log.h"
#include "net.h"

namespace braid::nccl {

/// One braid Context and Worker per (communicator, device). Every call that drives the
/// Worker (or anything made on it) holds `m`: NCCL's service and progress threads take
/// turns, never both inside.
struct DevWorker {
  std::mutex m;
  NetDevice dev;
  int index = 0;
  std::shared_ptr<Context> context;
  std::unique_ptr<Worker> worker;
  // The flush path (iflush): a loopback connection on this device's rails. An RDMA READ of
  // a received buffer through it makes the NIC's earlier writes there visible to the GPU
  // (what NCCL's IB transport does with its flush QP). Made on first need; declared after
  // the worker so that it goes first.
  std::unique_ptr<Listener> flushListener;
  std::unique_ptr<Endpoint> flushEp, flushPeer;
  std::vector<uint8_t> flushScratch = std::vector<uint8_t>(64);
  MemoryRegion flushMr;
};

struct Comm;

struct PluginCtx {
  uint64_t commId = 0;
  int trafficClass = -1;
  std::mutex m;  // guards the two maps
  std::map<int, std::shared_ptr<DevWorker>> workers;
  std::map<uint64_t, Comm*> connecting;  // connects in progress, by the id in their handle
  uint64_t nextConnectId = 0;
};

struct NetRequest {
  enum class Kind : uint8_t { kFree, kSend, kRecv };
  Comm* comm = nullptr;
  Kind kind = Kind::kFree;
  int n = 0;
  int index = 0;
  std::array<Request, kMaxRecvs> reqs;
};

struct Comm {
  std::shared_ptr<DevWorker> dw;
  std::unique_ptr<Endpoint> ep;
  bool sender = false;
  std::string what;  // "send comm to <peer>" for messages
  std::vector<NetRequest> pool = std::vector<NetRequest>(kPoolSize);
  std::vector<int> freeList;
  Comm() {
    freeList.reserve(kPoolSize);
    for (int i = kPoolSize - 1; i >= 0; --i) {
      pool[static_cast<size_t>(i)].comm = this;
      pool[static_cast<size_t>(i)].index = i;
      freeList.push_back(i);
    }
  }
};

struct ListenComm {
  std::shared_ptr<DevWorker> dw;
  std::unique_ptr<Listener> listener;
};

struct MrHandle {
  MemoryRegion mr;
};

namespace {

/// NCCL's 128-byte handle: the listener's address, then the connect state NCCL keeps for
/// us between connect() retries (it passes the same buffer back each time).
struct Handle {
  uint8_t address[Address::kSize];
  uint64_t magic;
  uint32_t version;
  uint32_t device;      // the listener's device index (for messages)
  uint64_t connectId;   // 0: not started; else the key of a connect in progress
  uint8_t reserved[kHandleSize - Address::kSize - 24];
};
static_assert(sizeof(Handle) == kHandleSize, "NCCL_NET_HANDLE_MAXSIZE");
constexpr uint64_t kHandleMagic = 0x4c43434e44494152ULL;  // "RAIDNCCL"
constexpr uint32_t kHandleVersion = 1;

uint64_t braidTag(int tag) { return static_cast<uint32_t>(tag); }

Result<std::shared_ptr<DevWorker>> workerFor(PluginCtx* ctx, int dev) {
  {
    std::lock_guard<std::mutex> lk(ctx->m);
    auto it = ctx->workers.find(dev);
    if (it != ctx->workers.end()) return it->second;
  }
  BRAID_ASSIGN_OR_RETURN(NetDevice d, DeviceTable::get().device(dev));
  auto dw = std::make_shared<DevWorker>();
  auto c = Context::create(d.options);
  if (!c)
    return c.status().withContext(
        fmt::format("braid NCCL plugin: device {} ({}): opening {}", dev, d.name, d.rails));
  dw->context = std::move(c).value();
  BRAID_ASSIGN_OR_RETURN(dw->worker, Worker::create(dw->context));
  dw->dev = std::move(d);
  dw->index = dev;
  std::lock_guard<std::mutex> lk(ctx->m);
  auto [it, inserted] = ctx->workers.emplace(dev, dw);
  return it->second;  // another thread may have made one first: use that
}

const MemoryRegion* regionFor(MrHandle* mh, const void* data, size_t size) {
  return mh != nullptr && mh->mr.contains(data, size) ? &mh->mr : nullptr;
}

/// The comm's request slot, or nullptr when all kPoolSize are in flight. Holds dw->m.
NetRequest* take(Comm* c) {
  if (c->freeList.empty()) return nullptr;
  NetRequest* r = &c->pool[static_cast<size_t>(c->freeList.back())];
  c->freeList.pop_back();
  return r;
}

void giveBack(NetRequest* r) {
  for (Request& q : r->reqs) q = Request();
  r->kind = NetRequest::Kind::kFree;
  r->n = 0;
  r->comm->freeList.push_back(r->index);
}

std::string describe(const Endpoint& ep) {
  EndpointStats s = ep.stats();
  std::string rails;
  for (const RailStats& r : s.rails) rails += (rails.empty() ? "" : "; ") + r.name;
  return fmt::format("{} over {} rail(s): {}", ep.transport() == Transport::kVerbs ? "RDMA verbs" : "TCP",
                     ep.railCount(), rails);
}

/// Connects the device's flush path (once; a loopback handshake of a few ms). Holds dw.m.
Status ensureFlushPath(DevWorker& dw) {
  if (dw.flushEp) return Status::ok();
  if (dw.context->transport() != Transport::kVerbs)
    return Status(Code::kUnsupported, "no verbs rails: nothing to flush");
  BRAID_ASSIGN_OR_RETURN(auto l, Listener::create(dw.worker.operator*()));
  BRAID_ASSIGN_OR_RETURN(auto e, Endpoint::connect(*dw.worker, l->address()));
  std::unique_ptr<Endpoint> peer;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(dw.context->timeoutMs());
  for (;;) {
    if (!peer) {
      auto a = l->accept();
      if (a) peer = std::move(a).value();
      else if (a.status().code() != Code::kInProgress) return a.status().withContext("flush path");
    }
    Status st = e->connectProgress();
    if (!st.isOk() && st.code() != Code::kInProgress) return st.withContext("flush path");
    if (st.isOk() && peer) break;
    if (std::chrono::steady_clock::now() > deadline)
      return Status(Code::kTimedOut, "flush path: the loopback connection did not complete");
  }
  if (e->transport() != Transport::kVerbs)
    return Status(Code::kUnsupported, "flush path: the loopback connection is not on verbs");
  BRAID_ASSIGN_OR_RETURN(dw.flushMr, dw.context->registerMemory(dw.flushScratch.data(),
                                                                dw.flushScratch.size()));
  BRAID_LOG_INFO(kPlugin, "NET/braid: device {} ({}): flush path up ({})", dw.index, dw.dev.name,
                 describe(*e));
  dw.flushListener = std::move(l);
  dw.flushEp = std::move(e);
  dw.flushPeer = std::move(peer);
  return Status::ok();
}

Comm* makeComm(std::shared_ptr<DevWorker> dw, std::unique_ptr<Endpoint> ep, bool sender) {
  auto* c = new Comm();
  c->dw = std::move(dw);
  c->ep = std::move(ep);
  c->sender = sender;
  return c;
}

/// Names a comm whose endpoint has connected, and logs its path.
Comm* announce(Comm* c) {
  // The endpoint's name and stats are the worker's: NCCL's other thread may be driving it
  // (a test() on another comm of this device) right now.
  std::lock_guard<std::mutex> lk(c->dw->m);
  c->what = fmt::format("{} comm {} {} on device {} ({})", c->sender ? "send" : "receive",
                        c->sender ? "to" : "from", c->ep->peerName(), c->dw->index,
                        c->dw->dev.name);
  BRAID_LOG_INFO(kPlugin, "NET/braid: {}: {}, GPU path {}", c->what, describe(*c->ep),
                 c->dw->dev.gpuPath == "host" ? "host (NCCL stages GPU buffers)"
                                              : "GPUDirect RDMA (" + c->dw->dev.gpuPath + ")");
  return c;
}

/// Tears a comm down under its worker's lock: the endpoint first (unfinished requests end
/// with kCanceled, the peer is told), then the request handles.
void destroyComm(Comm* c) {
  std::shared_ptr<DevWorker> dw = c->dw;
  {
    std::lock_guard<std::mutex> lk(dw->m);
    c->ep.reset();
    c->pool.clear();
  }
  delete c;
}

}  // namespace

Result<PluginCtx*> createCtx(uint64_t commId, int trafficClass) {
  auto* ctx = new PluginCtx();
  ctx->commId = commId;
  ctx->trafficClass = trafficClass;
  return ctx;
}

void destroyCtx(PluginCtx* ctx) {
  if (ctx == nullptr) return;
  std::map<uint64_t, Comm*> pending;
  {
    std::lock_guard<std::mutex> lk(ctx->m);
    pending.swap(ctx->connecting);
  }
  for (auto& [id, c] : pending) destroyComm(c);
  delete ctx;  // the workers live on in comms NCCL has not closed yet
}

Result<ListenComm*> listen(PluginCtx* ctx, int dev, void* handle) {
  if (ctx == nullptr || handle == nullptr)
    return Status(Code::kInvalidArgument, "listen: null context or handle");
  BRAID_ASSIGN_OR_RETURN(auto dw, workerFor(ctx, dev));
  auto lc = std::make_unique<ListenComm>();
  lc->dw = dw;
  {
    std::lock_guard<std::mutex> lk(dw->m);
    auto l = Listener::create(*dw->worker);
    if (!l)
      return l.status().withContext(
          fmt::format("braid NCCL plugin: listen on device {} ({})", dev, dw->dev.name));
    lc->listener = std::move(l).value();
  }
  Handle h{};
  std::memcpy(h.address, lc->listener->address().bytes, Address::kSize);
  h.magic = kHandleMagic;
  h.version = kHandleVersion;
  h.device = static_cast<uint32_t>(dev);
  h.connectId = 0;
  std::memcpy(handle, &h, sizeof h);
  BRAID_LOG_INFO(kPlugin, "NET/braid: listening on device {} ({}) at {}", dev, dw->dev.name,
                 lc->listener->address().toString());
  return lc.release();
}

Result<Comm*> connect(PluginCtx* ctx, int dev, void* handle) {
  if (ctx == nullptr || handle == nullptr)
    return Status(Code::kInvalidArgument, "connect: null context or handle");
  Handle h;
  std::memcpy(&h, handle, sizeof h);
  if (h.magic != kHandleMagic || h.version != kHandleVersion)
    return Status(Code::kInvalidArgument,
                  fmt::format("braid NCCL plugin: connect on device {}: the handle was not made "
                              "by braid's listen (magic {:#x}, version {}); every rank must load "
                              "the same plugin (NCCL_NET_PLUGIN=braid, NCCL_NET=braid)",
                              dev, h.magic, h.version));
  BRAID_ASSIGN_OR_RETURN(auto dw, workerFor(ctx, dev));
  Comm* c = nullptr;
  if (h.connectId == 0) {
    Address a;
    std::memcpy(a.bytes, h.address, Address::kSize);
    std::unique_ptr<Endpoint> ep;
    {
      std::lock_guard<std::mutex> lk(dw->m);
      auto e = Endpoint::connect(*dw->worker, a);
      if (!e)
        return e.status().withContext(
            fmt::format("braid NCCL plugin: connect from device {} ({}) to {}", dev,
                        dw->dev.name, a.toString()));
      ep = std::move(e).value();
    }
    c = makeComm(dw, std::move(ep), true);
    std::lock_guard<std::mutex> lk(ctx->m);
    h.connectId = ++ctx->nextConnectId;
    ctx->connecting[h.connectId] = c;
    std::memcpy(handle, &h, sizeof h);
  } else {
    std::lock_guard<std::mutex> lk(ctx->m);
    auto it = ctx->connecting.find(h.connectId);
    if (it == ctx->connecting.end())
      return Status(Code::kInvalidArgument,
                    fmt::format("braid NCCL plugin: connect on device {}: the handle names a "
                                "connect ({}) this communicator does not have",
                                dev, h.connectId));
    c = it->second;
  }
  Status st;
  {
    std::lock_guard<std::mutex> lk(dw->m);
    st = c->ep->connectProgress();
  }
  if (st.code() == Code::kInProgress) return static_cast<Comm*>(nullptr);
  {
    std::lock_guard<std::mutex> lk(ctx->m);
    ctx->connecting.erase(h.connectId);
  }
  h.connectId = 0;
  std::memcpy(handle, &h, sizeof h);
  if (!st.isOk()) {
    destroyComm(c);
    return st.withContext(fmt::format("braid NCCL plugin: connect from device {} ({})", dev,
                                      dw->dev.name));
  }
  return announce(c);
}

Result<Comm*> accept(ListenComm* lc) {
  if (lc == nullptr) return Status(Code::kInvalidArgument, "accept: null listen comm");
  std::unique_ptr<Endpoint> ep;
  {
    std::lock_guard<std::mutex> lk(lc->dw->m);
    auto e = lc->listener->accept();
    if (!e) {
      if (e.status().code() == Code::kInProgress) return static_cast<Comm*>(nullptr);
      return e.status().withContext(fmt::format("braid NCCL plugin: accept on device {} ({})",
                                                lc->dw->index, lc->dw->dev.name));
    }
    ep = std::move(e).value();
  }
  return announce(makeComm(lc->dw, std::move(ep), false));
}

Status closeListen(ListenComm* lc) {
  if (lc == nullptr) return Status::ok();
  std::shared_ptr<DevWorker> dw = lc->dw;
  {
    std::lock_guard<std::mutex> lk(dw->m);
    lc->listener.reset();
  }
  delete lc;
  return Status::ok();
}

Status closeComm(Comm* c) {
  if (c != nullptr) destroyComm(c);
  return Status::ok();
}

Result<MrHandle*> regMr(Comm* c, void* data, size_t size, int type) {
  if (c == nullptr) return Status(Code::kInvalidArgument, "regMr: null comm");
  const NetDevice& dev = c->dw->dev;
  if (type != kPtrHost && type != kPtrCuda)
    return Status(Code::kInvalidArgument,
                  fmt::format("braid NCCL plugin: regMr of {} bytes at {} with type {:#x} on {}",
                              size, data, type, c->what));
  if (type == kPtrCuda && (dev.ptrSupport & kPtrCuda) == 0)
    return Status(Code::kUnsupported,
                  fmt::format("braid NCCL plugin: regMr of {} bytes of GPU memory at {} on {}: "
                              "GPUDirect RDMA is not available here (NCCL_DEBUG=INFO shows why "
                              "at init), so braid did not advertise NCCL_PTR_CUDA and NCCL "
                              "should stage GPU buffers through host memory",
                              size, data, c->what));
  if (type == kPtrCuda && (dev.ptrSupport & kPtrDmabuf) != 0) {
    // dma-buf: export the range from the driver and register the fd on every rail.
    const gpu::Driver* drv = DeviceTable::get().gpuDriver();
    if (drv == nullptr) return Status(Code::kInternal, "regMr: dma-buf advertised without a driver");
    BRAID_ASSIGN_OR_RETURN(gpu::DmabufRange r, gpu::exportDmabuf(*drv, data, size));
    auto mr = c->dw->context->registerDmabuf(reinterpret_cast<void*>(r.alignedBase),
                                             r.alignedLength, r.fd, 0);
    ::close(r.fd);
    if (!mr)
      return mr.status().withContext(fmt::format("braid NCCL plugin: regMr of {} bytes of GPU "
                                                 "memory at {} on {}", size, data, c->what));
    return new MrHandle{std::move(mr).value()};
  }
  // Host memory, or GPU memory a peer memory module lets ibv_reg_mr pin.
  auto mr = c->dw->context->registerMemory(data, size);  // thread-safe: no worker lock
  if (!mr)
    return mr.status().withContext(fmt::format("braid NCCL plugin: regMr of {} bytes at {} on {}",
                                               size, data, c->what));
  return new MrHandle{std::move(mr).value()};
}

Result<MrHandle*> regMrDmaBuf(Comm* c, void* data, size_t size, int type, uint64_t offset,
                              int fd) {
  if (c == nullptr) return Status(Code::kInvalidArgument, "regMrDmaBuf: null comm");
  if ((c->dw->dev.ptrSupport & kPtrDmabuf) != 0) {
    // NCCL closes `fd` after this call: the registration holds the dma-buf itself.
    auto mr = c->dw->context->registerDmabuf(data, size, fd, offset);
    if (!mr)
      return mr.status().withContext(fmt::format("braid NCCL plugin: regMrDmaBuf on {}", c->what));
    return new MrHandle{std::move(mr).value()};
  }
  return Status(Code::kUnsupported,
                fmt::format("braid NCCL plugin: regMrDmaBuf of {} bytes at {} (type {:#x}, fd "
                            "{}, offset {}) on {}: dma-buf registration is not available on "
                            "this host (braid did not advertise NCCL_PTR_DMABUF)",
                            size, data, type, fd, offset, c->what));
}

Status deregMr(Comm*, MrHandle* mh) {
  if (mh == nullptr) return Status::ok();
  mh->mr.deregister();  // NCCL frees the buffer next: no registration may outlive it
  delete mh;
  return Status::ok();
}

Result<NetRequest*> isend(Comm* c, void* data, size_t size, int tag, MrHandle* mh) {
  if (c == nullptr || !c->sender) return Status(Code::kInvalidArgument, "isend: not a send comm");
  if (size > static_cast<size_t>(INT_MAX))
    return Status(Code::kInvalidArgument,
                  fmt::format("isend of {} bytes on {}: above maxP2pBytes ({})", size, c->what,
                              kMaxP2pBytes));
  std::lock_guard<std::mutex> lk(c->dw->m);
  NetRequest* r = take(c);
  if (r == nullptr) return r;  // all in flight: NCCL retries
  auto q = c->ep->isend(data, size, braidTag(tag), regionFor(mh, data, size));
  if (!q) {
    giveBack(r);
    if (q.status().code() == Code::kAgain) return static_cast<NetRequest*>(nullptr);
    return q.status().withContext(fmt::format("isend of {} bytes (tag {}) on {}", size, tag,
                                              c->what));
  }
  r->kind = NetRequest::Kind::kSend;
  r->n = 1;
  r->reqs[0] = std::move(q).value();
  return r;
}

Result<NetRequest*> irecv(Comm* c, int n, void** data, const size_t* sizes, const int* tags,
                          MrHandle** mhs) {
  if (c == nullptr || c->sender)
    return Status(Code::kInvalidArgument, "irecv: not a receive comm");
  if (n < 1 || n > kMaxRecvs)
    return Status(Code::kInvalidArgument,
                  fmt::format("irecv of {} buffers on {}: 1 to {} (maxRecvs)", n, c->what,
                              kMaxRecvs));
  std::lock_guard<std::mutex> lk(c->dw->m);
  NetRequest* r = take(c);
  if (r == nullptr) return r;
  r->kind = NetRequest::Kind::kRecv;
  for (int i = 0; i < n; ++i) {
    MrHandle* mh = mhs != nullptr ? mhs[i] : nullptr;
    auto q = c->ep->irecv(data[i], sizes[i], braidTag(tags[i]), regionFor(mh, data[i], sizes[i]));
    if (!q) {
      if (i == 0 && q.status().code() == Code::kAgain) {
        giveBack(r);
        return static_cast<NetRequest*>(nullptr);
      }
      giveBack(r);
      return q.status().withContext(fmt::format("irecv {} of {} ({} bytes, tag {}) on {}", i, n,
                                                sizes[i], tags[i], c->what));
    }
    r->reqs[static_cast<size_t>(i)] = std::move(q).value();
    r->n = i + 1;
  }
  return r;
}

Result<NetRequest*> iflush(Comm* c, int n, void** data, const int* sizes, MrHandle** mhs) {
  if (c == nullptr || c->sender) return Status(Code::kInvalidArgument, "iflush: not a receive comm");
  if (n < 1 || n > kMaxRecvs || data == nullptr || sizes == nullptr)
    return Status(Code::kInvalidArgument, fmt::format("iflush of {} buffers on {}", n, c->what));
  // NCCL asks only after GPUDirect receives that need it; one 1-byte READ of the last
  // non-empty buffer covers the writes before it (NCCL's IB transport does the same).
  int last = -1;
  for (int i = 0; i < n; ++i)
    if (sizes[i] > 0 && mhs != nullptr && mhs[i] != nullptr) last = i;
  if (last < 0) return static_cast<NetRequest*>(nullptr);  // nothing to wait for
  DevWorker& dw = *c->dw;
  std::lock_guard<std::mutex> lk(dw.m);
  if (dw.context->transport() != Transport::kVerbs)
    return static_cast<NetRequest*>(nullptr);  // TCP: the CPU copied it: nothing in flight
  BRAID_RETURN_IF_ERROR(ensureFlushPath(dw));
  MrHandle* mh = mhs[last];
  if (!mh->mr.contains(data[last], 1))
    return Status(Code::kInvalidArgument,
                  fmt::format("iflush on {}: buffer {} outside its registration", c->what, data[last]));
  BRAID_ASSIGN_OR_RETURN(RemoteKey rk, mh->mr.remoteKey());
  NetRequest* r = take(c);
  if (r == nullptr)
    return Status(Code::kInternal, fmt::format("iflush on {}: all {} requests in flight", c->what,
                                               kPoolSize));
  const uint64_t off = static_cast<uint64_t>(static_cast<uint8_t*>(data[last]) -
                                             static_cast<uint8_t*>(mh->mr.base()));
  auto q = dw.flushEp->iread(dw.flushScratch.data(), 1, dw.flushMr, rk, off);
  if (!q) {
    giveBack(r);
    return q.status().withContext(fmt::format("iflush on {}", c->what));
  }
  r->kind = NetRequest::Kind::kRecv;
  r->n = 1;
  r->reqs[0] = std::move(q).value();
  return r;
}

Status test(NetRequest* r, int* done, int* sizes) {
  if (r == nullptr || r->comm == nullptr || r->kind == NetRequest::Kind::kFree)
    return Status(Code::kInvalidArgument, "test: not a request in flight");
  Comm* c = r->comm;
  std::lock_guard<std::mutex> lk(c->dw->m);
  bool all = true, drove = false;
  for (int i = 0; i < r->n; ++i) {
    // The worker is driven once per call, by the first unfinished part; the other parts of
    // a grouped receive are only read.
    Request& q = r->reqs[static_cast<size_t>(i)];
    Status st = q.result();
    if (st.code() == Code::kInProgress && !drove) {
      st = q.test();
      drove = true;
    }
    if (st.code() == Code::kInProgress) {
      all = false;
      continue;
    }
    if (!st.isOk()) {
      std::string what = fmt::format("{} {} of {} on {}",
                                     r->kind == NetRequest::Kind::kSend ? "send" : "receive", i,
                                     r->n, c->what);
      giveBack(r);
      return st.withContext(what);
    }
  }
  if (done != nullptr) *done = all ? 1 : 0;
  if (!all) return Status::ok();
  if (sizes != nullptr)
    for (int i = 0; i < r->n; ++i)
      sizes[i] = static_cast<int>(r->reqs[static_cast<size_t>(i)].size());
  giveBack(r);
  return Status::ok();
}

int ptrSupport(const NetDevice& d) { return d.ptrSupport; }

int toNcclResult(const Status& s) {
  constexpr int kSuccess = 0, kSystem = 2, kInternal = 3, kUsage = 5, kRemote = 6;
  switch (s.code()) {
    case Code::kOk: return kSuccess;
    case Code::kInvalidArgument:  // NCCL passed something wrong: its "internal" class
    case Code::kInternal:
    case Code::kInProgress:
    case Code::kAgain: return kInternal;
    case Code::kUnsupported:  // configuration: a feature this host or build lacks
    case Code::kNotFound:
    case Code::kTruncated: return kUsage;  // a message larger than the receive
    case Code::kNoMemory:
    case Code::kSystemError:
    case Code::kCanceled: return kSystem;
    case Code::kTimedOut:
    case Code::kCompletionError:
    case Code::kConnectionRefused:
    case Code::kConnectionReset:
    case Code::kProtocolError:
    case Code::kRailFailed:
    case Code::kEndpointFailed: return kRemote;
  }
  return kInternal;
}

}  // namespace braid::nccl
