// lib/verbs/lib.h — the one libibverbs symbol table, filled by dlopen() at run time.
//
// braid never links libibverbs: libbraid and the NCCL plugin must load on hosts without
// rdma-core, and the table is the single seam where tests inject faults. Every verbs call
// in braid goes through a `const Lib&`, including the data-path calls that verbs.h
// implements inline through `ctx->ops` (post_send, post_recv, poll_cq, req_notify_cq).
//
// Tests build a fake by value: `Lib fake; fake.openDevice = ...;` (members left nullptr
// are calls the code under test must not make). Internal header.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "braid/status.h"
#include "verbs/ibv.h"

namespace braid::verbs {

namespace detail {
// Defaults of the data-path members: they call the verbs.h inline functions, which jump
// through the provider's ops table (no libibverbs symbol is involved).
int postSendDefault(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** badWr);
int postRecvDefault(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** badWr);
int pollCqDefault(ibv_cq* cq, int numEntries, ibv_wc* wc);
int reqNotifyCqDefault(ibv_cq* cq, int solicitedOnly);
}  // namespace detail

/// Function pointers named after the verbs without `ibv_`. Signatures are those of the
/// man pages (ibv_query_port takes the full ibv_port_attr). Optional members are nullptr
/// when the loaded libibverbs is too old to have them. Immutable once loaded: share it
/// freely between threads.
struct Lib {
  // --- devices and contexts
  ibv_device** (*getDeviceList)(int* numDevices) = nullptr;
  void (*freeDeviceList)(ibv_device** list) = nullptr;
  const char* (*getDeviceName)(ibv_device* device) = nullptr;
  ibv_context* (*openDevice)(ibv_device* device) = nullptr;
  int (*closeDevice)(ibv_context* context) = nullptr;
  int (*queryDevice)(ibv_context* context, ibv_device_attr* attr) = nullptr;
  int (*queryPort)(ibv_context* context, uint8_t port, ibv_port_attr* attr) = nullptr;
  int (*queryGid)(ibv_context* context, uint8_t port, int index, ibv_gid* gid) = nullptr;
  /// Optional: the RoCE type of a GID entry (over ibv_query_gid_ex, rdma-core >= 32).
  /// When nullptr, device discovery reads sysfs gid_attrs/types instead.
  int (*queryGidType)(ibv_context* context, uint8_t port, unsigned int index,
                      ibv_gid_type* type) = nullptr;
  /// Optional: ibv_query_gid_ex (the `_ibv_query_gid_ex` export; last argument is
  /// sizeof(ibv_gid_entry)).
  int (*queryGidEx)(ibv_context* context, uint32_t port, uint32_t index, ibv_gid_entry* entry,
                    uint32_t flags, size_t entrySize) = nullptr;
  /// Optional: ibv_query_gid_table (the `_ibv_query_gid_table` export): every valid entry
  /// of every port in one call.
  ssize_t (*queryGidTable)(ibv_context* context, ibv_gid_entry* entries, size_t maxEntries,
                           uint32_t flags, size_t entrySize) = nullptr;

  // --- protection domains and memory
  ibv_pd* (*allocPd)(ibv_context* context) = nullptr;
  int (*deallocPd)(ibv_pd* pd) = nullptr;
  ibv_mr* (*regMr)(ibv_pd* pd, void* addr, size_t length, int access) = nullptr;
  /// Optional (rdma-core >= 34): registers a dma-buf (GPU memory without peermem).
  ibv_mr* (*regDmabufMr)(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd,
                         int access) = nullptr;
  int (*deregMr)(ibv_mr* mr) = nullptr;

  // --- completion channels and queues
  ibv_comp_channel* (*createCompChannel)(ibv_context* context) = nullptr;
  int (*destroyCompChannel)(ibv_comp_channel* channel) = nullptr;
  ibv_cq* (*createCq)(ibv_context* context, int cqe, void* cqContext, ibv_comp_channel* channel,
                      int compVector) = nullptr;
  int (*destroyCq)(ibv_cq* cq) = nullptr;
  int (*getCqEvent)(ibv_comp_channel* channel, ibv_cq** cq, void** cqContext) = nullptr;
  void (*ackCqEvents)(ibv_cq* cq, unsigned int nevents) = nullptr;

  // --- queue pairs
  ibv_qp* (*createQp)(ibv_pd* pd, ibv_qp_init_attr* attr) = nullptr;
  int (*modifyQp)(ibv_qp* qp, ibv_qp_attr* attr, int attrMask) = nullptr;
  int (*queryQp)(ibv_qp* qp, ibv_qp_attr* attr, int attrMask, ibv_qp_init_attr* initAttr) = nullptr;
  int (*destroyQp)(ibv_qp* qp) = nullptr;

  // --- asynchronous events and strings
  int (*getAsyncEvent)(ibv_context* context, ibv_async_event* event) = nullptr;
  void (*ackAsyncEvent)(ibv_async_event* event) = nullptr;
  const char* (*wcStatusStr)(ibv_wc_status status) = nullptr;
  const char* (*eventTypeStr)(ibv_event_type event) = nullptr;
  int (*forkInit)() = nullptr;

  // --- data path (inline in verbs.h; here so that tests can fault-inject them too)
  int (*postSend)(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** badWr) = detail::postSendDefault;
  int (*postRecv)(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** badWr) = detail::postRecvDefault;
  int (*pollCq)(ibv_cq* cq, int numEntries, ibv_wc* wc) = detail::pollCqDefault;
  int (*reqNotifyCq)(ibv_cq* cq, int solicitedOnly) = detail::reqNotifyCqDefault;

  /// The process-wide table over "libibverbs.so.1", loaded on the first call (thread-safe;
  /// later calls return the same pointer or the same error). The library stays loaded
  /// until exit. Errors: kUnsupported when the library or a required symbol is missing
  /// (the message names the library and dlerror(), and says what to install), or when
  /// braid was built without verbs.
  static Result<const Lib*> load();

  /// Loads a table from `soname` (not cached; the library is never unloaded). For tests
  /// and for load().
  static Result<Lib> open(const std::string& soname);
};

// Data-path calls: straight to the provider (the verbs.h inline function) when the table
// holds the defaults, else through the table (tests' fault injection). One indirect call
// fewer per poll or post matters on a busy-polling path.
inline int pollCq(const Lib& lib, ibv_cq* cq, int numEntries, ibv_wc* wc) {
#if BRAID_HAVE_VERBS
  if (lib.pollCq == detail::pollCqDefault) return ibv_poll_cq(cq, numEntries, wc);
#endif
  return lib.pollCq(cq, numEntries, wc);
}
inline int postSend(const Lib& lib, ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** badWr) {
#if BRAID_HAVE_VERBS
  if (lib.postSend == detail::postSendDefault) return ibv_post_send(qp, wr, badWr);
#endif
  return lib.postSend(qp, wr, badWr);
}
inline int postRecv(const Lib& lib, ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** badWr) {
#if BRAID_HAVE_VERBS
  if (lib.postRecv == detail::postRecvDefault) return ibv_post_recv(qp, wr, badWr);
#endif
  return lib.postRecv(qp, wr, badWr);
}

/// "Cannot allocate memory (errno 12)". For verbs calls that return an errno value
/// (ibv_modify_qp, ibv_destroy_*: "0 on success, errno on failure") or set errno.
std::string errnoText(int err);

/// The kUnsupported status of every verbs entry point in a build without verbs.
Status builtWithoutVerbs(const char* what);

}  // namespace braid::verbs
