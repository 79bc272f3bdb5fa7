// plugins/nccl/plugin.cc — the NCCL net plugin's ABI: the exported tables ncclNetPlugin_v11
// (what NCCL 2.28.9 uses) and _v10, _v9, _v8 (older NCCLs), each entry adapted onto net.h.
// The export list is plugins/nccl/exports.map; nothing else leaves the library.
//
// No C++ exception crosses into NCCL: every entry point catches, logs and returns an error.
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "core/log.h"
#include "nccl_net_abi.h"
#include "net.h"

namespace braid::nccl {
static_assert(kPtrHost == BRAID_NCCL_PTR_HOST && kPtrCuda == BRAID_NCCL_PTR_CUDA &&
                  kPtrDmabuf == BRAID_NCCL_PTR_DMABUF,
              "net.h's pointer bits are NCCL's");
namespace {

using Res = braid_ncclResult_t;

std::mutex gLogMutex;
braid_ncclDebugLogger_t gLogger = nullptr;  // guarded by gLogMutex

/// braid's log lines go to NCCL's logger (NCCL_DEBUG=INFO shows them). Unless
/// BRAID_LOG_LEVEL says otherwise, braid logs at the level NCCL_DEBUG asks for.
void attachLogger(braid_ncclDebugLogger_t fn) {
  if (fn == nullptr) return;
  std::lock_guard<std::mutex> lk(gLogMutex);
  if (gLogger == fn) return;
  gLogger = fn;
  if (std::getenv("BRAID_LOG_LEVEL") == nullptr) {
    const char* d = std::getenv("NCCL_DEBUG");
    std::string lv = d != nullptr ? d : "";
    for (char& ch : lv) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    core::setLogLevel(lv == "TRACE" ? spdlog::level::debug
                      : lv == "INFO" ? spdlog::level::info
                                     : spdlog::level::warn);
  }
  core::setLogFunction([fn](spdlog::level::level_enum level, std::string_view subsys,
                            std::string_view message) {
    braid_ncclDebugLogLevel l = level >= spdlog::level::warn   ? BRAID_NCCL_LOG_WARN
                                : level >= spdlog::level::info ? BRAID_NCCL_LOG_INFO
                                                               : BRAID_NCCL_LOG_TRACE;
    std::string line(message);
    if (line.rfind("NET/braid", 0) != 0)
      line = "NET/braid/" + std::string(subsys) + ": " + line;
    fn(l, BRAID_NCCL_NET | BRAID_NCCL_INIT, "braid", 0, "%s", line.c_str());
  });
}

Res fail(const char* what, const Status& st) {
  BRAID_LOG_WARN(kPlugin, "NET/braid: {} failed: {}", what, st.toString());
  return static_cast<Res>(toNcclResult(st));
}

/// Runs `f` (returning a Status) with exceptions turned into ncclInternalError.
template <class F>
Res guarded(const char* what, F&& f) {
  try {
    Status st = f();
    return st.isOk() ? braid_ncclSuccess : fail(what, st);
  } catch (const std::exception& e) {
    return fail(what, Status(Code::kInternal, std::string("exception: ") + e.what()));
  } catch (...) {
    return fail(what, Status(Code::kInternal, "unknown exception"));
  }
}

/// Stores a Result's value (nullptr included) through `out`, or fails.
template <class T, class U>
Status store(Result<T> r, U** out) {
  if (!r) {
    if (out != nullptr) *out = nullptr;
    return r.status();
  }
  if (out != nullptr) *out = reinterpret_cast<U*>(*r);
  return Status::ok();
}

// ---- v11 entry points

Res initCtx(void** ctx, uint64_t commId, int trafficClass, braid_ncclDebugLogger_t log) {
  attachLogger(log);
  return guarded("init", [&] {
    if (ctx != nullptr) *ctx = nullptr;
    BRAID_RETURN_IF_ERROR(DeviceTable::get().discover());
    return store(createCtx(commId, trafficClass), ctx);
  });
}

Res init(void** ctx, uint64_t commId, braid_ncclNetCommConfig_t* config,
         braid_ncclDebugLogger_t log, braid_ncclProfilerCallback_t) {
  return initCtx(ctx, commId, config != nullptr ? config->trafficClass : -1, log);
}

Res devices(int* ndev) {
  return guarded("devices", [&] {
    if (ndev == nullptr) return Status(Code::kInvalidArgument, "devices: null count");
    *ndev = DeviceTable::get().count();
    return Status::ok();
  });
}

/// Fills the fields every version shares.
template <class P>
Status fillCommon(int dev, P* props) {
  if (props == nullptr) return Status(Code::kInvalidArgument, "getProperties: null props");
  const NetDevice* d = DeviceTable::get().stable(dev);
  if (d == nullptr)
    return Status(Code::kInvalidArgument, "getProperties: device " + std::to_string(dev) +
                                              " does not exist");
  std::memset(props, 0, sizeof *props);
  props->name = const_cast<char*>(d->name.c_str());
  props->pciPath = d->pciPath.empty() ? nullptr : const_cast<char*>(d->pciPath.c_str());
  props->guid = d->guid;
  props->ptrSupport = ptrSupport(*d);
  props->regIsGlobal = 1;  // the registration cache makes re-registration cheap
  props->speed = d->speedMbps;
  props->port = d->port;
  props->latency = 0;  // NCCL's defaults
  props->maxComms = d->maxComms;
  props->maxRecvs = kMaxRecvs;
  props->netDeviceType = BRAID_NCCL_NET_DEVICE_HOST;
  props->netDeviceVersion = BRAID_NCCL_NET_DEVICE_INVALID_VERSION;
  return Status::ok();
}

template <class P>
Status fillV10(int dev, P* props) {
  BRAID_RETURN_IF_ERROR(fillCommon(dev, props));
  const NetDevice* d = DeviceTable::get().stable(dev);
  props->forceFlush = 0;
  props->vProps.ndevs = 0;
  for (int c : d->children) {
    if (props->vProps.ndevs == BRAID_NCCL_NET_MAX_DEVS_PER_NIC) break;
    props->vProps.devs[props->vProps.ndevs++] = d->children.size() == 1 ? dev : c;
  }
  props->maxP2pBytes = kMaxP2pBytes;
  props->maxCollBytes = kMaxP2pBytes;
  return Status::ok();
}

Res getProperties(int dev, braid_ncclNetProperties_v11_t* props) {
  return guarded("getProperties", [&] {
    BRAID_RETURN_IF_ERROR(fillV10(dev, props));
    props->maxMultiRequestSize = 1;
    return Status::ok();
  });
}

Res listenCtx(void* ctx, int dev, void* handle, void** listenComm) {
  return guarded("listen", [&] {
    return store(listen(static_cast<PluginCtx*>(ctx), dev, handle), listenComm);
  });
}

Res connectCtx(void* ctx, int dev, void* handle, void** sendComm,
               braid_ncclNetDeviceHandle_t** devComm) {
  if (devComm != nullptr) *devComm = nullptr;  // a host plugin: no device offload
  return guarded("connect", [&] {
    return store(connect(static_cast<PluginCtx*>(ctx), dev, handle), sendComm);
  });
}

Res acceptComm(void* listenComm, void** recvComm, braid_ncclNetDeviceHandle_t** devComm) {
  if (devComm != nullptr) *devComm = nullptr;
  return guarded("accept", [&] {
    return store(accept(static_cast<ListenComm*>(listenComm)), recvComm);
  });
}

Res regMrSz(void* comm, void* data, size_t size, int type, void** mhandle) {
  return guarded("regMr", [&] {
    return store(regMr(static_cast<Comm*>(comm), data, size, type), mhandle);
  });
}

Res regMrDmaBufEntry(void* comm, void* data, size_t size, int type, uint64_t offset, int fd,
                     void** mhandle) {
  return guarded("regMrDmaBuf", [&] {
    return store(regMrDmaBuf(static_cast<Comm*>(comm), data, size, type, offset, fd), mhandle);
  });
}

Res deregMrEntry(void* comm, void* mhandle) {
  return guarded("deregMr", [&] {
    return deregMr(static_cast<Comm*>(comm), static_cast<MrHandle*>(mhandle));
  });
}

Res isendSz(void* sendComm, void* data, size_t size, int tag, void* mhandle, void* /*phandle*/,
            void** request) {
  return guarded("isend", [&] {
    return store(isend(static_cast<Comm*>(sendComm), data, size, tag,
                       static_cast<MrHandle*>(mhandle)),
                 request);
  });
}

Res irecvSz(void* recvComm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
            void** /*phandles*/, void** request) {
  // *request may hold NCCL's hint (NCCL_NET_OPTIONAL_RECV_COMPLETION) on entry: it is
  // always overwritten.
  return guarded("irecv", [&] {
    return store(irecv(static_cast<Comm*>(recvComm), n, data, sizes, tags,
                       reinterpret_cast<MrHandle**>(mhandles)),
                 request);
  });
}

Res iflushEntry(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                void** request) {
  return guarded("iflush", [&] {
    return store(iflush(static_cast<Comm*>(recvComm), n, data, sizes,
                        reinterpret_cast<MrHandle**>(mhandles)),
                 request);
  });
}

Res testEntry(void* request, int* done, int* sizes) {
  return guarded("test", [&] { return test(static_cast<NetRequest*>(request), done, sizes); });
}

Res closeSendRecv(void* comm) {
  return guarded("close", [&] { return closeComm(static_cast<Comm*>(comm)); });
}

Res closeListenEntry(void* listenComm) {
  return guarded("closeListen", [&] { return closeListen(static_cast<ListenComm*>(listenComm)); });
}

Res makeVDevice(int* d, braid_ncclNetVDeviceProps_t* props) {
  return guarded("makeVDevice", [&] {
    if (d == nullptr || props == nullptr)
      return Status(Code::kInvalidArgument, "makeVDevice: null argument");
    if (props->ndevs < 1 || props->ndevs > BRAID_NCCL_NET_MAX_DEVS_PER_NIC)
      return Status(Code::kInvalidArgument,
                    "makeVDevice: ndevs " + std::to_string(props->ndevs) + " outside 1..4");
    std::vector<int> devs(props->devs, props->devs + props->ndevs);
    BRAID_ASSIGN_OR_RETURN(*d, DeviceTable::get().makeVirtual(devs));
    return Status::ok();
  });
}

Res finalize(void* ctx) {
  return guarded("finalize", [&] {
    destroyCtx(static_cast<PluginCtx*>(ctx));  // NULL after a failed init: nothing to do
    return Status::ok();
  });
}

Res setNetAttr(void*, braid_ncclNetAttr_v11_t*) {
  return braid_ncclSuccess;  // a tuning hint; braid's scheduler adapts by itself
}

// ---- v10, v9, v8: NCCL calls their init once per process and has no finalize, so they
// share one context for the process's life.

std::mutex gOldMutex;
PluginCtx* gOldCtx = nullptr;

Res initOld(braid_ncclDebugLogger_t log) {
  std::lock_guard<std::mutex> lk(gOldMutex);
  if (gOldCtx != nullptr) return braid_ncclSuccess;
  void* ctx = nullptr;
  Res r = initCtx(&ctx, 0, -1, log);
  if (r == braid_ncclSuccess) gOldCtx = static_cast<PluginCtx*>(ctx);
  return r;
}

PluginCtx* oldCtx() {
  std::lock_guard<std::mutex> lk(gOldMutex);
  return gOldCtx;
}

Res initV10(braid_ncclDebugLogger_t log, braid_ncclProfilerCallback_t) { return initOld(log); }
Res initV9(braid_ncclDebugLogger_t log) { return initOld(log); }

Res getPropertiesV10(int dev, braid_ncclNetProperties_v10_t* props) {
  return guarded("getProperties", [&] { return fillV10(dev, props); });
}

Res getPropertiesV8(int dev, braid_ncclNetProperties_v8_t* props) {
  return guarded("getProperties", [&] { return fillCommon(dev, props); });
}

Res listenV10(int dev, void* handle, void** listenComm) {
  return listenCtx(oldCtx(), dev, handle, listenComm);
}

Res connectV10(int dev, braid_ncclNetCommConfig_t*, void* handle, void** sendComm,
               braid_ncclNetDeviceHandle_t** devComm) {
  return connectCtx(oldCtx(), dev, handle, sendComm, devComm);
}

Res connectV9(int dev, void* handle, void** sendComm, braid_ncclNetDeviceHandle_t** devComm) {
  return connectCtx(oldCtx(), dev, handle, sendComm, devComm);
}

Res isendV9(void* sendComm, void* data, size_t size, int tag, void* mhandle, void** request) {
  return isendSz(sendComm, data, size, tag, mhandle, nullptr, request);
}

Res irecvV9(void* recvComm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
            void** request) {
  return irecvSz(recvComm, n, data, sizes, tags, mhandles, nullptr, request);
}

Res regMrV8(void* comm, void* data, int size, int type, void** mhandle) {
  if (size < 0) {
    if (mhandle != nullptr) *mhandle = nullptr;
    return fail("regMr", Status(Code::kInvalidArgument, "regMr: negative size"));
  }
  return regMrSz(comm, data, static_cast<size_t>(size), type, mhandle);
}

Res isendV8(void* sendComm, void* data, int size, int tag, void* mhandle, void** request) {
  if (size < 0) {
    if (request != nullptr) *request = nullptr;
    return fail("isend", Status(Code::kInvalidArgument, "isend: negative size"));
  }
  return isendSz(sendComm, data, static_cast<size_t>(size), tag, mhandle, nullptr, request);
}

Res irecvV8(void* recvComm, int n, void** data, int* sizes, int* tags, void** mhandles,
            void** request) {
  size_t wide[kMaxRecvs] = {};
  if (n < 1 || n > kMaxRecvs || sizes == nullptr) {
    if (request != nullptr) *request = nullptr;
    return fail("irecv", Status(Code::kInvalidArgument,
                                "irecv: " + std::to_string(n) + " buffers (1 to 8)"));
  }
  for (int i = 0; i < n; ++i) {
    if (sizes[i] < 0) {
      if (request != nullptr) *request = nullptr;
      return fail("irecv", Status(Code::kInvalidArgument, "irecv: negative size"));
    }
    wide[i] = static_cast<size_t>(sizes[i]);
  }
  return irecvSz(recvComm, n, data, wide, tags, mhandles, nullptr, request);
}

}  // namespace
}  // namespace braid::nccl

using namespace braid::nccl;  // NOLINT: the tables below name the entry points

#define BRAID_EXPORT __attribute__((visibility("default")))

extern "C" {

BRAID_EXPORT extern const braid_ncclNet_v11_t ncclNetPlugin_v11;
BRAID_EXPORT extern const braid_ncclNet_v10_t ncclNetPlugin_v10;
BRAID_EXPORT extern const braid_ncclNet_v9_t ncclNetPlugin_v9;
BRAID_EXPORT extern const braid_ncclNet_v8_t ncclNetPlugin_v8;

const braid_ncclNet_v11_t ncclNetPlugin_v11 = {
    "braid",       init,           devices,         getProperties,    listenCtx,
    connectCtx,    acceptComm,     regMrSz,         regMrDmaBufEntry, deregMrEntry,
    isendSz,       irecvSz,        iflushEntry,     testEntry,        closeSendRecv,
    closeSendRecv, closeListenEntry, nullptr /* getDeviceMr */, nullptr /* irecvConsumed */,
    makeVDevice,   finalize,       setNetAttr,
};

const braid_ncclNet_v10_t ncclNetPlugin_v10 = {
    "braid",       initV10,       devices,          getPropertiesV10, listenV10,
    connectV10,    acceptComm,    regMrSz,          regMrDmaBufEntry, deregMrEntry,
    isendSz,       irecvSz,       iflushEntry,      testEntry,        closeSendRecv,
    closeSendRecv, closeListenEntry, nullptr, nullptr, makeVDevice,
};

const braid_ncclNet_v9_t ncclNetPlugin_v9 = {
    "braid",       initV9,        devices,          getPropertiesV10, listenV10,
    connectV9,     acceptComm,    regMrSz,          regMrDmaBufEntry, deregMrEntry,
    isendV9,       irecvV9,       iflushEntry,      testEntry,        closeSendRecv,
    closeSendRecv, closeListenEntry, nullptr, nullptr, makeVDevice,
};

const braid_ncclNet_v8_t ncclNetPlugin_v8 = {
    "braid",       initV9,        devices,          getPropertiesV8,  listenV10,
    connectV9,     acceptComm,    regMrV8,          regMrDmaBufEntry, deregMrEntry,
    isendV8,       irecvV8,       iflushEntry,      testEntry,        closeSendRecv,
    closeSendRecv, closeListenEntry, nullptr, nullptr,
};

}  // extern "C"
