#include "gpu/gpu.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <mutex>

#include <fmt/format.h>

#include "core/log.h"

namespace braid::gpu {

std::string Driver::errorText(CuResult r) const {
  const char* s = nullptr;
  if (getErrorString != nullptr && getErrorString(r, &s) == kCudaSuccess && s != nullptr)
    return fmt::format("{} ({})", s, r);
  return fmt::format("CUresult {}", r);
}

Result<const Driver*> Driver::load() {
  static std::once_flag once;
  static Driver driver;
  static Status failure;
  std::call_once(once, [] {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = dlerror();
      failure = Status(Code::kUnsupported,
                       fmt::format("no CUDA driver: dlopen(libcuda.so.1): {}", e ? e : "?"));
      return;
    }
    auto sym = [h](const char* name) { return dlsym(h, name); };
    Driver d;
    d.init = reinterpret_cast<decltype(d.init)>(sym("cuInit"));
    d.driverGetVersion = reinterpret_cast<decltype(d.driverGetVersion)>(sym("cuDriverGetVersion"));
    d.deviceGetCount = reinterpret_cast<decltype(d.deviceGetCount)>(sym("cuDeviceGetCount"));
    d.deviceGet = reinterpret_cast<decltype(d.deviceGet)>(sym("cuDeviceGet"));
    d.deviceGetAttribute =
        reinterpret_cast<decltype(d.deviceGetAttribute)>(sym("cuDeviceGetAttribute"));
    d.pointerGetAttribute =
        reinterpret_cast<decltype(d.pointerGetAttribute)>(sym("cuPointerGetAttribute"));
    d.memGetHandleForAddressRange = reinterpret_cast<decltype(d.memGetHandleForAddressRange)>(
        sym("cuMemGetHandleForAddressRange"));
    d.getErrorString = reinterpret_cast<decltype(d.getErrorString)>(sym("cuGetErrorString"));
    if (!d.init || !d.driverGetVersion || !d.deviceGetCount || !d.deviceGet ||
        !d.deviceGetAttribute || !d.pointerGetAttribute) {
      failure = Status(Code::kUnsupported, "libcuda.so.1 lacks a driver entry point braid uses");
      return;  // the handle stays open: harmless, and the library may be in use anyway
    }
    CuResult r = d.init(0);
    if (r != kCudaSuccess) {
      failure = Status(Code::kUnsupported, fmt::format("cuInit failed: {}", d.errorText(r)));
      return;
    }
    driver = d;
  });
  if (!failure.isOk()) return failure;
  return &driver;
}

const char* memoryKindName(MemoryKind k) {
  switch (k) {
    case MemoryKind::kHost: return "host";
    case MemoryKind::kDevice: return "device";
    case MemoryKind::kManaged: return "managed";
  }
  return "?";
}

Result<PointerInfo> classify(const Driver* d, const void* p) {
  PointerInfo info;
  if (d == nullptr || p == nullptr) return info;
  unsigned type = 0;
  CuResult r = d->pointerGetAttribute(&type, kPointerAttributeMemoryType,
                                      reinterpret_cast<CuDevicePtr>(p));
  if (r == kCudaErrorInvalidValue) return info;  // not CUDA's: plain host memory
  if (r != kCudaSuccess)
    return Status(Code::kSystemError,
                  fmt::format("cuPointerGetAttribute(MEMORY_TYPE, {}) failed: {}", p,
                              d->errorText(r)));
  if (type == kMemoryTypeHost) return info;  // cudaHostAlloc'ed: host memory to the NIC
  info.kind = type == kMemoryTypeUnified ? MemoryKind::kManaged : MemoryKind::kDevice;
  int ordinal = -1;
  if (d->pointerGetAttribute(&ordinal, kPointerAttributeDeviceOrdinal,
                             reinterpret_cast<CuDevicePtr>(p)) == kCudaSuccess)
    info.device = ordinal;
  return info;
}

Result<DmabufRange> exportDmabuf(const Driver& d, const void* p, size_t len, size_t pageSize) {
  if (d.memGetHandleForAddressRange == nullptr)
    return Status(Code::kUnsupported,
                  "cuMemGetHandleForAddressRange is not in this CUDA driver (11.7 or newer "
                  "needed for dma-buf)");
  if (p == nullptr || len == 0 || pageSize == 0 || (pageSize & (pageSize - 1)) != 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("exportDmabuf: pointer {}, length {}, page {}", p, len, pageSize));
  const uint64_t addr = reinterpret_cast<uint64_t>(p);
  DmabufRange out;
  out.alignedBase = addr & ~(static_cast<uint64_t>(pageSize) - 1);
  const uint64_t end = (addr + len + pageSize - 1) & ~(static_cast<uint64_t>(pageSize) - 1);
  out.alignedLength = static_cast<size_t>(end - out.alignedBase);
  out.offset = addr - out.alignedBase;
  int fd = -1;
  CuResult r = d.memGetHandleForAddressRange(&fd, out.alignedBase, out.alignedLength,
                                             kMemRangeHandleTypeDmaBufFd, 0);
  if (r != kCudaSuccess || fd < 0)
    return Status(Code::kSystemError,
                  fmt::format("cuMemGetHandleForAddressRange({:#x}, {} bytes, DMA_BUF_FD) for "
                              "{} bytes at {} failed: {}",
                              out.alignedBase, out.alignedLength, len, p,
                              r != kCudaSuccess ? d.errorText(r) : "no fd"));
  out.fd = fd;
  return out;
}

bool peerMemoryLoaded(const std::string& root) {
  for (const char* f : {"/sys/kernel/mm/memory_peers/nv_mem/version",
                        "/sys/kernel/mm/memory_peers/nv_mem_nc/version",
                        "/sys/module/nvidia_peermem/version"}) {
    struct stat st{};
    if (::stat((root + f).c_str(), &st) == 0) return true;
  }
  return false;
}

Support detect(const Driver* d, const std::string& why, const std::string& root) {
  Support s;
  s.peerMemory = peerMemoryLoaded(root);
  const std::string peer = s.peerMemory ? "peer memory module loaded" : "no peer memory module";
  if (d == nullptr) {
    s.summary = fmt::format("{}; {}", why.empty() ? "no CUDA driver" : why, peer);
    return s;
  }
  s.driver = true;
  d->driverGetVersion(&s.driverVersion);
  CuResult r = d->deviceGetCount(&s.devices);
  if (r != kCudaSuccess) s.devices = 0;
  bool dmabuf = s.devices > 0 && d->memGetHandleForAddressRange != nullptr;
  std::string notes;
  for (int i = 0; i < s.devices; ++i) {
    CuDevice dev = 0;
    int v = 0;
    if (d->deviceGet(&dev, i) != kCudaSuccess ||
        d->deviceGetAttribute(&v, kDeviceAttributeDmaBuf, dev) != kCudaSuccess || v == 0) {
      dmabuf = false;
      notes += fmt::format(", GPU {} has no dma-buf support", i);
    }
    int major = 0;
    if (d->deviceGetAttribute(&major, kDeviceAttributeComputeMajor, dev) == kCudaSuccess &&
        (s.minComputeMajor == 0 || major < s.minComputeMajor))
      s.minComputeMajor = major;
  }
  if (s.devices > 0 && d->memGetHandleForAddressRange == nullptr)
    notes += ", the driver has no cuMemGetHandleForAddressRange";
  s.dmabufDevices = dmabuf;
  s.summary = fmt::format("CUDA driver {}.{}, {} GPU(s) (oldest sm_{}x), dma-buf {}{}; {}",
                          s.driverVersion / 1000, (s.driverVersion % 1000) / 10, s.devices,
                          s.minComputeMajor, dmabuf ? "yes" : "no", notes, peer);
  return s;
}

}  // namespace braid::gpu
