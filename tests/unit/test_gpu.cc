// lib/gpu over a fake CUDA driver table (no GPU needed): pointer kinds, dma-buf export with
// page widening, peer-memory detection from a fake sysfs tree, and what detect() concludes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "gpu/gpu.h"

using namespace braid;
using namespace braid::gpu;

namespace {

// The fake driver's state: which address ranges are device or managed memory, what each
// GPU says, and what the last export asked for.
struct FakeState {
  std::map<uint64_t, std::pair<uint64_t, unsigned>> ranges;  // base -> (length, type)
  int devices = 2;
  bool dmabufAttr = true;
  CuResult pointerError = kCudaSuccess;  // forced error for any CUDA pointer query
  uint64_t exportBase = 0, exportLen = 0;
  int exportType = -1;
  CuResult exportResult = kCudaSuccess;
};
FakeState g;

CuResult fakePointerAttr(void* data, int attr, CuDevicePtr ptr) {
  if (g.pointerError != kCudaSuccess) return g.pointerError;
  for (auto& [base, r] : g.ranges)
    if (ptr >= base && ptr < base + r.first) {
      if (attr == kPointerAttributeMemoryType) *static_cast<unsigned*>(data) = r.second;
      else if (attr == kPointerAttributeDeviceOrdinal) *static_cast<int*>(data) = 1;
      else return kCudaErrorInvalidValue;
      return kCudaSuccess;
    }
  return kCudaErrorInvalidValue;  // what the driver says of a pointer it does not know
}

Driver fake() {
  g = FakeState{};
  Driver d;
  d.init = [](unsigned) { return kCudaSuccess; };
  d.driverGetVersion = [](int* v) {
    *v = 12040;
    return kCudaSuccess;
  };
  d.deviceGetCount = [](int* n) {
    *n = g.devices;
    return kCudaSuccess;
  };
  d.deviceGet = [](CuDevice* dev, int i) {
    *dev = i;
    return kCudaSuccess;
  };
  d.deviceGetAttribute = [](int* v, int attr, CuDevice) {
    *v = attr == kDeviceAttributeDmaBuf         ? (g.dmabufAttr ? 1 : 0)
         : attr == kDeviceAttributeComputeMajor ? 9
                                                : 1;
    return kCudaSuccess;
  };
  d.pointerGetAttribute = fakePointerAttr;
  d.memGetHandleForAddressRange = [](void* handle, CuDevicePtr base, size_t len, int type,
                                     unsigned long long) {
    g.exportBase = base;
    g.exportLen = len;
    g.exportType = type;
    if (g.exportResult != kCudaSuccess) return g.exportResult;
    *static_cast<int*>(handle) = ::dup(0);
    return kCudaSuccess;
  };
  d.getErrorString = [](CuResult r, const char** s) {
    *s = r == 999 ? "CUDA_ERROR_UNKNOWN" : "CUDA_ERROR_SOMETHING";
    return kCudaSuccess;
  };
  return d;
}

}  // namespace

TEST_CASE("gpu: pointers are told apart: host, device, managed, and pinned host memory") {
  Driver d = fake();
  g.ranges[0x7000'0000'0000] = {1 << 20, kMemoryTypeDevice};
  g.ranges[0x7100'0000'0000] = {1 << 20, kMemoryTypeUnified};
  g.ranges[0x7200'0000'0000] = {1 << 20, kMemoryTypeHost};  // cudaHostAlloc
  int local = 0;
  auto at = [](uint64_t a) { return reinterpret_cast<const void*>(a); };
  CHECK(classify(&d, &local)->kind == MemoryKind::kHost);
  auto dev = classify(&d, at(0x7000'0000'0010));
  REQUIRE(dev.isOk());
  CHECK(dev->kind == MemoryKind::kDevice);
  CHECK(dev->device == 1);
  CHECK(classify(&d, at(0x7100'0000'0000))->kind == MemoryKind::kManaged);
  CHECK(classify(&d, at(0x7200'0000'0000))->kind == MemoryKind::kHost);
  // Without a driver everything is host memory; a driver failure is an error, named.
  CHECK(classify(nullptr, at(0x7000'0000'0010))->kind == MemoryKind::kHost);
  g.pointerError = 999;
  auto bad = classify(&d, at(0x7000'0000'0010));
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kSystemError);
  CHECK_THAT(bad.status().message(), Catch::Contains("cuPointerGetAttribute") &&
                                         Catch::Contains("CUDA_ERROR_UNKNOWN"));
}

TEST_CASE("gpu: a dma-buf export covers the range widened to pages, with the offset of the "
          "pointer in it") {
  Driver d = fake();
  auto r = exportDmabuf(d, reinterpret_cast<const void*>(0x7000'0000'1234), 10000, 4096);
  REQUIRE(r.isOk());
  CHECK(g.exportType == kMemRangeHandleTypeDmaBufFd);
  CHECK(g.exportBase == 0x7000'0000'1000);
  CHECK(r->alignedBase == 0x7000'0000'1000);
  CHECK(r->offset == 0x234);
  CHECK(r->alignedLength % 4096 == 0);
  CHECK(r->alignedLength >= 0x234 + 10000);
  CHECK(g.exportLen == r->alignedLength);
  CHECK(r->fd >= 0);
  ::close(r->fd);
  // Failures name the call and the driver's error; a driver without the call is
  // kUnsupported; bad arguments never reach the driver.
  g.exportResult = 999;
  auto bad = exportDmabuf(d, reinterpret_cast<const void*>(0x7000'0000'0000), 4096);
  REQUIRE_FALSE(bad.isOk());
  CHECK_THAT(bad.status().message(), Catch::Contains("cuMemGetHandleForAddressRange"));
  CHECK(exportDmabuf(d, nullptr, 10).status().code() == Code::kInvalidArgument);
  CHECK(exportDmabuf(d, &g, 0).status().code() == Code::kInvalidArgument);
  d.memGetHandleForAddressRange = nullptr;
  CHECK(exportDmabuf(d, &g, 10).status().code() == Code::kUnsupported);
}

TEST_CASE("gpu: detect() reports dma-buf only when every GPU and the driver support it, and a "
          "loaded peer-memory module from sysfs") {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("braid_gpu_sysfs_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  Driver d = fake();
  Support s = detect(&d, "", root.string());
  CHECK(s.driver);
  CHECK(s.devices == 2);
  CHECK(s.dmabufDevices);
  CHECK_FALSE(s.peerMemory);
  CHECK(s.minComputeMajor == 9);
  CHECK_THAT(s.summary, Catch::Contains("12.4") && Catch::Contains("2 GPU(s)") &&
                            Catch::Contains("no peer memory module"));
  g.dmabufAttr = false;
  s = detect(&d, "", root.string());
  CHECK_FALSE(s.dmabufDevices);
  CHECK_THAT(s.summary, Catch::Contains("has no dma-buf support"));
  g.dmabufAttr = true;
  d.memGetHandleForAddressRange = nullptr;
  CHECK_FALSE(detect(&d, "", root.string()).dmabufDevices);
  // nvidia_peermem, as NCCL's IB transport looks for it.
  fs::create_directories(root / "sys/module/nvidia_peermem");
  std::ofstream(root / "sys/module/nvidia_peermem/version") << "1.0\n";
  CHECK(peerMemoryLoaded(root.string()));
  s = detect(nullptr, "no CUDA driver: dlopen failed", root.string());
  CHECK_FALSE(s.driver);
  CHECK(s.peerMemory);
  CHECK_THAT(s.summary, Catch::Contains("dlopen failed") && Catch::Contains("peer memory module loaded"));
  fs::remove_all(root);
  // No GPU and no driver on a plain host: detect() says so and nothing is claimed.
  g.devices = 0;
  d = fake();
  g.devices = 0;
  s = detect(&d, "", root.string());
  CHECK(s.devices == 0);
  CHECK_FALSE(s.dmabufDevices);
}

TEST_CASE("gpu: Driver::load gives a working driver table, or fails cleanly without one") {
  auto r = Driver::load();
  if (r.isOk()) {
    // A host with a CUDA driver: the table is complete and answers.
    const Driver* d = *r;
    REQUIRE(d->driverGetVersion != nullptr);
    int version = 0;
    CHECK(d->driverGetVersion(&version) == kCudaSuccess);
    CHECK(version > 0);
    Support s = detect(d);
    CHECK(s.driver);
    CHECK(s.driverVersion == version);
    int local = 0;
    CHECK(classify(d, &local)->kind == MemoryKind::kHost);
  } else {
    CHECK(r.status().code() == Code::kUnsupported);
    CHECK_THAT(r.status().message(), Catch::Contains("libcuda.so.1") || Catch::Contains("cuInit"));
    // A second call gives the same answer (loaded once per process).
    CHECK(Driver::load().status().message() == r.status().message());
  }
}
