/* plugins/nccl/nccl_net_abi.h: the NCCL net plugin ABI as NCCL 2.28.9 loads it (versions 11,
 * 10, 9 and 8), declared by braid from the layouts in ../shared/docs/nccl-net-abi.md (section 2),
 * not copied from NCCL's headers. C and C++. Every size and offset the reference gives is
 * checked at compile time below: a wrong layout does not build.
 *
 * The names carry a braid_ prefix so that this header can sit next to NCCL's own in one
 * translation unit; NCCL sees only the exported data symbols (ncclNetPlugin_v11 ... _v8).
 */
#ifndef BRAID_PLUGINS_NCCL_NET_ABI_H_
#define BRAID_PLUGINS_NCCL_NET_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define BRAID_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define BRAID_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* ---- constants (section 2.1) */
#define BRAID_NCCL_NET_HANDLE_MAXSIZE 128
#define BRAID_NCCL_NET_MAX_REQUESTS 32
#define BRAID_NCCL_PTR_HOST 0x1
#define BRAID_NCCL_PTR_CUDA 0x2
#define BRAID_NCCL_PTR_DMABUF 0x4
#define BRAID_NCCL_NET_OPTIONAL_RECV_COMPLETION 0x1
#define BRAID_NCCL_MAX_NET_SIZE_BYTES (1024LL * 1024 * 1024 * 1024) /* 1 TiB: maxP2pBytes bound */
#define BRAID_NCCL_NET_MAX_DEVS_PER_NIC 4
#define BRAID_NCCL_NET_TRAFFIC_CLASS_UNDEF (-1)
#define BRAID_NCCL_NET_DEVICE_INVALID_VERSION 0x0

/* ---- common types (section 2.2) */
typedef enum {
  braid_ncclSuccess = 0,
  braid_ncclUnhandledCudaError = 1,
  braid_ncclSystemError = 2,
  braid_ncclInternalError = 3,
  braid_ncclInvalidArgument = 4,
  braid_ncclInvalidUsage = 5,
  braid_ncclRemoteError = 6,
  braid_ncclInProgress = 7
} braid_ncclResult_t;

typedef enum {
  BRAID_NCCL_LOG_NONE = 0,
  BRAID_NCCL_LOG_VERSION = 1,
  BRAID_NCCL_LOG_WARN = 2,
  BRAID_NCCL_LOG_INFO = 3,
  BRAID_NCCL_LOG_ABORT = 4,
  BRAID_NCCL_LOG_TRACE = 5
} braid_ncclDebugLogLevel;

#define BRAID_NCCL_INIT 0x1
#define BRAID_NCCL_NET 0x10

typedef void (*braid_ncclDebugLogger_t)(braid_ncclDebugLogLevel level, unsigned long flags,
                                        const char* file, int line, const char* fmt, ...);
typedef braid_ncclResult_t (*braid_ncclProfilerCallback_t)(void** eHandle, int type,
                                                           void* pHandle, int64_t pluginId,
                                                           void* extData);

typedef enum {
  BRAID_NCCL_NET_DEVICE_HOST = 0,
  BRAID_NCCL_NET_DEVICE_UNPACK = 1,
  BRAID_NCCL_NET_DEVICE_GIN_PROXY = 2,
  BRAID_NCCL_NET_DEVICE_GIN_GDAKI = 3
} braid_ncclNetDeviceType;

/* The same struct in v7..v11 (32 bytes). */
typedef struct {
  braid_ncclNetDeviceType netDeviceType;
  int netDeviceVersion;
  void* handle;
  size_t size;
  int needsProxyProgress;
} braid_ncclNetDeviceHandle_t;

/* ---- small structs (section 2.3; v10 has the same device props and comm config) */
typedef struct {
  int ndevs;
  int devs[BRAID_NCCL_NET_MAX_DEVS_PER_NIC];
} braid_ncclNetVDeviceProps_t;

typedef struct {
  int trafficClass;
} braid_ncclNetCommConfig_t;

typedef struct {
  int32_t maxConcurrentPeers;
  int32_t minConcurrentPeers;
  int32_t maxFlowsPerPeer;
  int32_t minFlowsPerPeer;
} braid_ncclNetCommAttr_v11_t;

typedef struct {
  braid_ncclNetCommAttr_v11_t sendCommAttr;
  braid_ncclNetCommAttr_v11_t recvCommAttr;
  uint32_t op;
  uint32_t algo;
  uint32_t proto;
} braid_ncclNetAttr_v11_t;

/* ---- device properties (section 2.4) */
typedef struct {
  char* name;
  char* pciPath;
  uint64_t guid;
  int ptrSupport;
  int regIsGlobal;
  int forceFlush;
  int speed; /* Mbit/s */
  int port;
  float latency; /* us */
  int maxComms;
  int maxRecvs;
  braid_ncclNetDeviceType netDeviceType;
  int netDeviceVersion;
  braid_ncclNetVDeviceProps_t vProps;
  size_t maxP2pBytes;
  size_t maxCollBytes;
  int maxMultiRequestSize; /* v11 only */
} braid_ncclNetProperties_v11_t;

/* v10 and v9: v11 without maxMultiRequestSize. */
typedef struct {
  char* name;
  char* pciPath;
  uint64_t guid;
  int ptrSupport;
  int regIsGlobal;
  int forceFlush;
  int speed;
  int port;
  float latency;
  int maxComms;
  int maxRecvs;
  braid_ncclNetDeviceType netDeviceType;
  int netDeviceVersion;
  braid_ncclNetVDeviceProps_t vProps;
  size_t maxP2pBytes;
  size_t maxCollBytes;
} braid_ncclNetProperties_v10_t;

/* v8: no forceFlush, vProps, maxP2pBytes, maxCollBytes. */
typedef struct {
  char* name;
  char* pciPath;
  uint64_t guid;
  int ptrSupport;
  int regIsGlobal;
  int speed;
  int port;
  float latency;
  int maxComms;
  int maxRecvs;
  braid_ncclNetDeviceType netDeviceType;
  int netDeviceVersion;
} braid_ncclNetProperties_v8_t;

/* ---- the plugin tables (sections 2.5 and 2.6) */
typedef struct {
  const char* name;
  braid_ncclResult_t (*init)(void** ctx, uint64_t commId, braid_ncclNetCommConfig_t* config,
                             braid_ncclDebugLogger_t logFunction,
                             braid_ncclProfilerCallback_t profFunction);
  braid_ncclResult_t (*devices)(int* ndev);
  braid_ncclResult_t (*getProperties)(int dev, braid_ncclNetProperties_v11_t* props);
  braid_ncclResult_t (*listen)(void* ctx, int dev, void* handle, void** listenComm);
  braid_ncclResult_t (*connect)(void* ctx, int dev, void* handle, void** sendComm,
                                braid_ncclNetDeviceHandle_t** sendDevComm);
  braid_ncclResult_t (*accept)(void* listenComm, void** recvComm,
                               braid_ncclNetDeviceHandle_t** recvDevComm);
  braid_ncclResult_t (*regMr)(void* comm, void* data, size_t size, int type, void** mhandle);
  braid_ncclResult_t (*regMrDmaBuf)(void* comm, void* data, size_t size, int type,
                                    uint64_t offset, int fd, void** mhandle);
  braid_ncclResult_t (*deregMr)(void* comm, void* mhandle);
  braid_ncclResult_t (*isend)(void* sendComm, void* data, size_t size, int tag, void* mhandle,
                              void* phandle, void** request);
  braid_ncclResult_t (*irecv)(void* recvComm, int n, void** data, size_t* sizes, int* tags,
                              void** mhandles, void** phandles, void** request);
  braid_ncclResult_t (*iflush)(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                               void** request);
  braid_ncclResult_t (*test)(void* request, int* done, int* sizes);
  braid_ncclResult_t (*closeSend)(void* sendComm);
  braid_ncclResult_t (*closeRecv)(void* recvComm);
  braid_ncclResult_t (*closeListen)(void* listenComm);
  braid_ncclResult_t (*getDeviceMr)(void* comm, void* mhandle, void** dptr_mhandle);
  braid_ncclResult_t (*irecvConsumed)(void* recvComm, int n, void* request);
  braid_ncclResult_t (*makeVDevice)(int* d, braid_ncclNetVDeviceProps_t* props);
  braid_ncclResult_t (*finalize)(void* ctx);
  braid_ncclResult_t (*setNetAttr)(void* ctx, braid_ncclNetAttr_v11_t* netAttr);
} braid_ncclNet_v11_t;

typedef struct {
  const char* name;
  braid_ncclResult_t (*init)(braid_ncclDebugLogger_t logFunction,
                             braid_ncclProfilerCallback_t profFunction);
  braid_ncclResult_t (*devices)(int* ndev);
  braid_ncclResult_t (*getProperties)(int dev, braid_ncclNetProperties_v10_t* props);
  braid_ncclResult_t (*listen)(int dev, void* handle, void** listenComm);
  braid_ncclResult_t (*connect)(int dev, braid_ncclNetCommConfig_t* config, void* handle,
                                void** sendComm, braid_ncclNetDeviceHandle_t** sendDevComm);
  braid_ncclResult_t (*accept)(void* listenComm, void** recvComm,
                               braid_ncclNetDeviceHandle_t** recvDevComm);
  braid_ncclResult_t (*regMr)(void* comm, void* data, size_t size, int type, void** mhandle);
  braid_ncclResult_t (*regMrDmaBuf)(void* comm, void* data, size_t size, int type,
                                    uint64_t offset, int fd, void** mhandle);
  braid_ncclResult_t (*deregMr)(void* comm, void* mhandle);
  braid_ncclResult_t (*isend)(void* sendComm, void* data, size_t size, int tag, void* mhandle,
                              void* phandle, void** request);
  braid_ncclResult_t (*irecv)(void* recvComm, int n, void** data, size_t* sizes, int* tags,
                              void** mhandles, void** phandles, void** request);
  braid_ncclResult_t (*iflush)(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                               void** request);
  braid_ncclResult_t (*test)(void* request, int* done, int* sizes);
  braid_ncclResult_t (*closeSend)(void* sendComm);
  braid_ncclResult_t (*closeRecv)(void* recvComm);
  braid_ncclResult_t (*closeListen)(void* listenComm);
  braid_ncclResult_t (*getDeviceMr)(void* comm, void* mhandle, void** dptr_mhandle);
  braid_ncclResult_t (*irecvConsumed)(void* recvComm, int n, void* request);
  braid_ncclResult_t (*makeVDevice)(int* d, braid_ncclNetVDeviceProps_t* props);
} braid_ncclNet_v10_t;

typedef struct {
  const char* name;
  braid_ncclResult_t (*init)(braid_ncclDebugLogger_t logFunction);
  braid_ncclResult_t (*devices)(int* ndev);
  braid_ncclResult_t (*getProperties)(int dev, braid_ncclNetProperties_v10_t* props);
  braid_ncclResult_t (*listen)(int dev, void* handle, void** listenComm);
  braid_ncclResult_t (*connect)(int dev, void* handle, void** sendComm,
                                braid_ncclNetDeviceHandle_t** sendDevComm);
  braid_ncclResult_t (*accept)(void* listenComm, void** recvComm,
                               braid_ncclNetDeviceHandle_t** recvDevComm);
  braid_ncclResult_t (*regMr)(void* comm, void* data, size_t size, int type, void** mhandle);
  braid_ncclResult_t (*regMrDmaBuf)(void* comm, void* data, size_t size, int type,
                                    uint64_t offset, int fd, void** mhandle);
  braid_ncclResult_t (*deregMr)(void* comm, void* mhandle);
  braid_ncclResult_t (*isend)(void* sendComm, void* data, size_t size, int tag, void* mhandle,
                              void** request);
  braid_ncclResult_t (*irecv)(void* recvComm, int n, void** data, size_t* sizes, int* tags,
                              void** mhandles, void** request);
  braid_ncclResult_t (*iflush)(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                               void** request);
  braid_ncclResult_t (*test)(void* request, int* done, int* sizes);
  braid_ncclResult_t (*closeSend)(void* sendComm);
  braid_ncclResult_t (*closeRecv)(void* recvComm);
  braid_ncclResult_t (*closeListen)(void* listenComm);
  braid_ncclResult_t (*getDeviceMr)(void* comm, void* mhandle, void** dptr_mhandle);
  braid_ncclResult_t (*irecvConsumed)(void* recvComm, int n, void* request);
  braid_ncclResult_t (*makeVDevice)(int* d, braid_ncclNetVDeviceProps_t* props);
} braid_ncclNet_v9_t;

typedef struct {
  const char* name;
  braid_ncclResult_t (*init)(braid_ncclDebugLogger_t logFunction);
  braid_ncclResult_t (*devices)(int* ndev);
  braid_ncclResult_t (*getProperties)(int dev, braid_ncclNetProperties_v8_t* props);
  braid_ncclResult_t (*listen)(int dev, void* handle, void** listenComm);
  braid_ncclResult_t (*connect)(int dev, void* handle, void** sendComm,
                                braid_ncclNetDeviceHandle_t** sendDevComm);
  braid_ncclResult_t (*accept)(void* listenComm, void** recvComm,
                               braid_ncclNetDeviceHandle_t** recvDevComm);
  braid_ncclResult_t (*regMr)(void* comm, void* data, int size, int type, void** mhandle);
  braid_ncclResult_t (*regMrDmaBuf)(void* comm, void* data, size_t size, int type,
                                    uint64_t offset, int fd, void** mhandle);
  braid_ncclResult_t (*deregMr)(void* comm, void* mhandle);
  braid_ncclResult_t (*isend)(void* sendComm, void* data, int size, int tag, void* mhandle,
                              void** request);
  braid_ncclResult_t (*irecv)(void* recvComm, int n, void** data, int* sizes, int* tags,
                              void** mhandles, void** request);
  braid_ncclResult_t (*iflush)(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                               void** request);
  braid_ncclResult_t (*test)(void* request, int* done, int* sizes);
  braid_ncclResult_t (*closeSend)(void* sendComm);
  braid_ncclResult_t (*closeRecv)(void* recvComm);
  braid_ncclResult_t (*closeListen)(void* listenComm);
  braid_ncclResult_t (*getDeviceMr)(void* comm, void* mhandle, void** dptr_mhandle);
  braid_ncclResult_t (*irecvConsumed)(void* recvComm, int n, void* request);
} braid_ncclNet_v8_t;

/* ---- the reference's sizes and offsets (x86-64, confirmed there with gdb on libnccl.so.2) */
BRAID_ABI_ASSERT(sizeof(braid_ncclNetDeviceHandle_t) == 32, "device handle: 32 bytes");
BRAID_ABI_ASSERT(sizeof(braid_ncclNetVDeviceProps_t) == 20, "vProps: 20 bytes");
BRAID_ABI_ASSERT(sizeof(braid_ncclNetCommConfig_t) == 4, "comm config: 4 bytes");
BRAID_ABI_ASSERT(sizeof(braid_ncclNetAttr_v11_t) == 44, "net attr: 44 bytes");

BRAID_ABI_ASSERT(sizeof(braid_ncclNetProperties_v11_t) == 112, "v11 properties: 112 bytes");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, name) == 0, "name");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, pciPath) == 8, "pciPath");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, guid) == 16, "guid");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, ptrSupport) == 24, "ptrSupport");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, regIsGlobal) == 28, "regIsGlobal");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, forceFlush) == 32, "forceFlush");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, speed) == 36, "speed");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, port) == 40, "port");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, latency) == 44, "latency");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, maxComms) == 48, "maxComms");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, maxRecvs) == 52, "maxRecvs");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, netDeviceType) == 56, "netDeviceType");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, netDeviceVersion) == 60, "netDeviceVersion");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, vProps) == 64, "vProps");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, maxP2pBytes) == 88, "maxP2pBytes");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, maxCollBytes) == 96, "maxCollBytes");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v11_t, maxMultiRequestSize) == 104,
                 "maxMultiRequestSize");
BRAID_ABI_ASSERT(sizeof(braid_ncclNetProperties_v10_t) == 104, "v10/v9 properties: 104 bytes");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v10_t, maxCollBytes) == 96, "v10 maxCollBytes");
BRAID_ABI_ASSERT(sizeof(braid_ncclNetProperties_v8_t) == 64, "v8 properties: 64 bytes");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v8_t, speed) == 32, "v8 speed");
BRAID_ABI_ASSERT(offsetof(braid_ncclNetProperties_v8_t, netDeviceVersion) == 56,
                 "v8 netDeviceVersion");

BRAID_ABI_ASSERT(sizeof(braid_ncclNet_v11_t) == 176, "v11 table: 22 pointers");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, init) == 8, "v11 init");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, regMr) == 56, "v11 regMr");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, isend) == 80, "v11 isend");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, irecv) == 88, "v11 irecv");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, test) == 104, "v11 test");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, closeListen) == 128, "v11 closeListen");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, makeVDevice) == 152, "v11 makeVDevice");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, finalize) == 160, "v11 finalize");
BRAID_ABI_ASSERT(offsetof(braid_ncclNet_v11_t, setNetAttr) == 168, "v11 setNetAttr");
BRAID_ABI_ASSERT(sizeof(braid_ncclNet_v10_t) == 160, "v10 table: 20 pointers");
BRAID_ABI_ASSERT(sizeof(braid_ncclNet_v9_t) == 160, "v9 table: 20 pointers");
BRAID_ABI_ASSERT(sizeof(braid_ncclNet_v8_t) == 152, "v8 table: 19 pointers");

#ifdef __cplusplus
}
#endif

#endif /* BRAID_PLUGINS_NCCL_NET_ABI_H_ */
