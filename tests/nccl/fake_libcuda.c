/* tests/nccl/fake_libcuda.c: a stand-in libcuda.so.1 for testing the NCCL plugin's GPU path
 * on hosts without a GPU (the Soft-RoCE VM). It reports one GPU of compute capability
 * FAKE_CUDA_CC_MAJOR (default 8: a flush is needed after GPUDirect receives) without dma-buf
 * support, and knows no pointer (every buffer is host memory to it), so a plugin that
 * advertises NCCL_PTR_CUDA through a peer memory module registers "GPU" buffers as the NIC
 * would see them. Only the entry points lib/gpu resolves are here. Loaded by
 * LD_LIBRARY_PATH in that one test, never installed. */
#include <stddef.h>
#include <stdlib.h>

int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
int cuDriverGetVersion(int* v) { *v = 12040; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* dev, int ordinal) { *dev = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetAttribute(int* v, int attr, int dev) {
  (void)dev;
  if (attr == 75) { /* COMPUTE_CAPABILITY_MAJOR */
    const char* e = getenv("FAKE_CUDA_CC_MAJOR");
    *v = e ? atoi(e) : 8;
  } else if (attr == 124) { /* DMA_BUF_SUPPORTED */
    *v = 0;
  } else {
    *v = 1;
  }
  return 0;
}
int cuPointerGetAttribute(void* data, int attr, unsigned long long ptr) {
  (void)data; (void)attr; (void)ptr;
  return 1; /* CUDA_ERROR_INVALID_VALUE: not a pointer the driver knows */
}
int cuGetErrorString(int r, const char** s) {
  *s = r == 0 ? "CUDA_SUCCESS" : "CUDA_ERROR_FAKE";
  return 0;
}
