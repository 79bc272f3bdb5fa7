// lib/gpu/gpu.h — what braid needs of the GPU: which memory a pointer is, a dma-buf of a
// device range, and whether GPUDirect RDMA can work here (peer memory or dma-buf).
//
// The CUDA driver API is reached through dlopen("libcuda.so.1") at run time, never linked,
// so braid loads on hosts without a GPU. `Driver` is the table of the entry points used,
// the one seam: tests fill one by value with fakes (tests/unit/test_gpu.cc), as lib/verbs is
// tested over a fake libibverbs. Internal header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "braid/status.h"

namespace braid::gpu {

// The driver API's values (cuda.h), so that building needs no CUDA toolkit.
using CuResult = int;
using CuDevice = int;
using CuDevicePtr = unsigned long long;
constexpr CuResult kCudaSuccess = 0;
constexpr CuResult kCudaErrorInvalidValue = 1;
constexpr CuResult kCudaErrorNotInitialized = 3;
constexpr CuResult kCudaErrorNoDevice = 100;
constexpr int kPointerAttributeMemoryType = 2;     // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kPointerAttributeDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
constexpr unsigned kMemoryTypeHost = 1, kMemoryTypeDevice = 2, kMemoryTypeArray = 3,
                   kMemoryTypeUnified = 4;         // CUmemorytype
constexpr int kDeviceAttributeGpuDirectRdma = 116;  // CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED
constexpr int kDeviceAttributeDmaBuf = 124;         // CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED
constexpr int kDeviceAttributeComputeMajor = 75;    // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kMemRangeHandleTypeDmaBufFd = 1;      // CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD

/// The driver entry points braid uses. Optional ones may be nullptr (older drivers).
struct Driver {
  CuResult (*init)(unsigned flags) = nullptr;                      // cuInit
  CuResult (*driverGetVersion)(int* version) = nullptr;            // cuDriverGetVersion
  CuResult (*deviceGetCount)(int* count) = nullptr;                // cuDeviceGetCount
  CuResult (*deviceGet)(CuDevice* dev, int ordinal) = nullptr;     // cuDeviceGet
  CuResult (*deviceGetAttribute)(int* value, int attrib, CuDevice dev) = nullptr;
  CuResult (*pointerGetAttribute)(void* data, int attribute, CuDevicePtr ptr) = nullptr;
  /// cuMemGetHandleForAddressRange (CUDA >= 11.7); optional.
  CuResult (*memGetHandleForAddressRange)(void* handle, CuDevicePtr dptr, size_t size,
                                          int handleType, unsigned long long flags) = nullptr;
  CuResult (*getErrorString)(CuResult error, const char** str) = nullptr;  // optional

  /// The process's driver table: dlopen("libcuda.so.1") once, cuInit(0). kUnsupported
  /// (naming dlerror or the cuInit error) where there is no driver or no GPU. Thread-safe.
  static Result<const Driver*> load();
  /// "CUDA_ERROR_... (code)" for messages.
  std::string errorText(CuResult r) const;
};

enum class MemoryKind { kHost, kDevice, kManaged };
const char* memoryKindName(MemoryKind k);

struct PointerInfo {
  MemoryKind kind = MemoryKind::kHost;
  int device = -1;  ///< the GPU ordinal of device or managed memory
};

/// Which memory `p` is. Without a driver (nullptr) every pointer is host memory; a pointer
/// the driver does not know (CUDA_ERROR_INVALID_VALUE) is plain host memory. Other driver
/// errors are errors (kSystemError naming the call and the code).
Result<PointerInfo> classify(const Driver* d, const void* p);

/// A dma-buf fd covering [p, p+len) of device memory, for ibv_reg_dmabuf_mr: the range is
/// widened to `pageSize` boundaries (the driver wants aligned ranges), `offset` is where `p`
/// lies in it. The caller owns and closes `fd`.
struct DmabufRange {
  int fd = -1;
  uint64_t offset = 0;      ///< p - alignedBase
  uint64_t alignedBase = 0;
  size_t alignedLength = 0;
};
Result<DmabufRange> exportDmabuf(const Driver& d, const void* p, size_t len,
                                 size_t pageSize = 4096);

/// Whether a peer-memory module is loaded (nvidia_peermem, or MLNX_OFED's nv_peer_mem),
/// which lets ibv_reg_mr pin GPU memory: the files NCCL's IB transport checks, under `root`
/// (tests point it at a fake tree).
bool peerMemoryLoaded(const std::string& root = "");

/// What GPUDirect RDMA can use on this host.
struct Support {
  bool driver = false;       ///< libcuda loaded and initialized
  int driverVersion = 0;     ///< e.g. 12040
  int devices = 0;           ///< GPUs
  bool dmabufDevices = false;  ///< every GPU says CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED and
                               ///< the driver exports ranges (cuMemGetHandleForAddressRange)
  bool peerMemory = false;     ///< peerMemoryLoaded()
  /// The oldest GPU's compute capability major (0: no GPU). Below 9, NCCL flushes GPUDirect
  /// receives (iflush) before a kernel reads them.
  int minComputeMajor = 0;
  std::string summary;         ///< one line for logs: what was found and why not
};
/// `d` nullptr: no driver (the summary says why: `why`). Pure apart from the driver calls
/// and the sysfs reads under `root`.
Support detect(const Driver* d, const std::string& why = "", const std::string& root = "");

}  // namespace braid::gpu
