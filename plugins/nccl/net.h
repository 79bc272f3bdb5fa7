// plugins/nccl/net.h — what the NCCL net plugin's entry points do, in C++ over braid's
// public API (Context, Worker, Listener, Endpoint, Request, MemoryRegion). plugin.cc holds
// the ABI tables and adapts each NCCL version onto these functions; nothing here knows a
// table layout, and no transport work happens here (it is all in lib/).
//
// Threads: NCCL calls from its init, "NCCL Service" and "NCCL Progress" threads, for
// several communicators at once. The device table has one mutex; each (communicator,
// device) pair has one braid Worker behind one mutex, taken by every call that drives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "braid/status.h"
#include "braid/transport.h"
#include "gpu/gpu.h"

namespace braid::nccl {

constexpr int kMaxRecvs = 8;              ///< grouped receives (NCCL's IB transport: 8)
constexpr int kMaxRequests = 32;          ///< NCCL_NET_MAX_REQUESTS
constexpr int kPoolSize = kMaxRequests * kMaxRecvs;  ///< requests in flight per comm
constexpr size_t kMaxP2pBytes = size_t{1} << 30;     ///< test() reports sizes as int
constexpr size_t kHandleSize = 128;                  ///< NCCL_NET_HANDLE_MAXSIZE
/// NCCL_PTR_* bits (checked against the ABI header in plugin.cc).
constexpr int kPtrHost = 0x1, kPtrCuda = 0x2, kPtrDmabuf = 0x4;

/// One device as NCCL sees it: a verbs port (or, without RDMA, a TCP interface), or a
/// virtual device fusing several (makeVDevice, BRAID_NCCL_MERGE_ALL).
struct NetDevice {
  std::string name;      ///< unique: "rxe0", "mlx5_0:2", "eth0", "rxe0+rxe1"
  std::string pciPath;   ///< "" unknown (reported as NULL)
  uint64_t guid = 0;
  int port = 0;
  int speedMbps = 0;
  int maxComms = 0;
  Transport transport = Transport::kTcp;
  std::vector<int> children;  ///< physical devices fused (itself for a physical one)
  ContextOptions options;     ///< what a Context over exactly these rails needs
  std::string rails;          ///< the rails, for log lines: "rxe0:1 gid ..."
  int ptrSupport = kPtrHost;  ///< NCCL_PTR_* bits: HOST, and CUDA/DMABUF with GPUDirect RDMA
  std::string gpuPath = "host";  ///< how GPU buffers move: "dma-buf", "peer memory", "host"
};

/// Process-wide, discovered on the first init and kept for the process's life (NCCL asks
/// for devices once per load and numbers virtual devices after the physical ones).
class DeviceTable {
 public:
  static DeviceTable& get();
  /// Discovers on the first call. kNotFound when there is no usable rail.
  Status discover();
  int count() const;
  /// A copy of device `dev` (kInvalidArgument when out of range).
  Result<NetDevice> device(int dev) const;
  /// The device's strings stay valid for the process's life (getProperties hands out
  /// pointers to them).
  const NetDevice* stable(int dev) const;
  /// makeVDevice: a new device over `devs` (physical indices, 1..4, one transport).
  Result<int> makeVirtual(const std::vector<int>& devs);
  /// The CUDA driver (nullptr without one), for telling pointers apart and dma-buf export.
  const gpu::Driver* gpuDriver() const { return driver_; }

 private:
  mutable std::mutex m_;
  bool discovered_ = false;
  int physical_ = 0;
  bool flushNeeded_ = false;  // GPUs before sm_90, or NCCL_NET_FORCE_FLUSH=1
  std::string socketIfname_;  // BRAID_SOCKET_IFNAME, else NCCL_SOCKET_IFNAME
  /// GPU buffers of a device over `rails` NICs go through host memory where NCCL flushes.
  void hostOnlyWhereFlushSpansNics(NetDevice& d, size_t rails) const;
  std::vector<std::unique_ptr<NetDevice>> devs_;
  const gpu::Driver* driver_ = nullptr;
};

struct DevWorker;
struct PluginCtx;
struct Comm;
struct NetRequest;

/// The per-communicator context (init/finalize).
Result<PluginCtx*> createCtx(uint64_t commId, int trafficClass);
void destroyCtx(PluginCtx* ctx);

struct ListenComm;
/// listen: a braid Listener on the device's rails; its address and a connect-state word
/// go into NCCL's 128-byte handle.
Result<ListenComm*> listen(PluginCtx* ctx, int dev, void* handle);
/// connect: non-blocking; nullptr until connected (the state is found again through the
/// handle NCCL passes back).
Result<Comm*> connect(PluginCtx* ctx, int dev, void* handle);
/// accept: non-blocking; nullptr until a peer has connected.
Result<Comm*> accept(ListenComm* lc);
Status closeListen(ListenComm* lc);
Status closeComm(Comm* c);

struct MrHandle;
Result<MrHandle*> regMr(Comm* c, void* data, size_t size, int type);
Result<MrHandle*> regMrDmaBuf(Comm* c, void* data, size_t size, int type, uint64_t offset,
                              int fd);
Status deregMr(Comm* c, MrHandle* mh);

/// isend/irecv: nullptr request = "retry later" (pool full or the transport is busy).
Result<NetRequest*> isend(Comm* c, void* data, size_t size, int tag, MrHandle* mh);
Result<NetRequest*> irecv(Comm* c, int n, void** data, const size_t* sizes, const int* tags,
                          MrHandle** mhs);
/// iflush: nullptr = nothing to wait for (host memory needs no flush).
Result<NetRequest*> iflush(Comm* c, int n, void** data, const int* sizes, MrHandle** mhs);
/// test: *done = 1 and sizes filled once finished; the request is recycled then.
Status test(NetRequest* r, int* done, int* sizes);

/// The NCCL result for a braid status (one place), as an int (ncclResult_t's values).
int toNcclResult(const Status& s);

/// The pointer kinds the devices support (NCCL_PTR_* bits).
int ptrSupport(const NetDevice& d);

}  // namespace braid::nccl
