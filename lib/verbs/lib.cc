#include "verbs/lib.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace braid::verbs {

std::string errnoText(int err) {
  return fmt::format("{} (errno {})", std::strerror(err), err);
}

Status builtWithoutVerbs(const char* what) {
  return Status(Code::kUnsupported,
                fmt::format("{}: braid was built without verbs (BRAID_WITH_VERBS=OFF, or "
                            "infiniband/verbs.h was missing at build time); rebuild with "
                            "libibverbs-dev installed or use BRAID_TRANSPORT=tcp",
                            what));
}

#if BRAID_HAVE_VERBS

namespace detail {
int postSendDefault(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** badWr) {
  return ibv_post_send(qp, wr, badWr);
}
int postRecvDefault(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** badWr) {
  return ibv_post_recv(qp, wr, badWr);
}
int pollCqDefault(ibv_cq* cq, int numEntries, ibv_wc* wc) {
  return ibv_poll_cq(cq, numEntries, wc);
}
int reqNotifyCqDefault(ibv_cq* cq, int solicitedOnly) {
  return ibv_req_notify_cq(cq, solicitedOnly);
}
}  // namespace detail

namespace {

constexpr const char* kInstallHint =
    "install rdma-core (Debian/Ubuntu: libibverbs1; RHEL: libibverbs) or use BRAID_TRANSPORT=tcp";

// Exports that the verbs.h macros/inlines stand in for, set by open() before it hands out
// a table whose wrappers use them (a table built by a test never reaches them). Every
// libibverbs.so.1 in a process is the same library, so the first value is the only one.
using CompatQueryPortFn = int (*)(ibv_context*, uint8_t, _compat_ibv_port_attr*);
using RegMrIova2Fn = ibv_mr* (*)(ibv_pd*, void*, size_t, uint64_t, unsigned int);
using QueryGidExFn = int (*)(ibv_context*, uint32_t, uint32_t, ibv_gid_entry*, uint32_t, size_t);
std::atomic<CompatQueryPortFn> gCompatQueryPort{nullptr};
std::atomic<RegMrIova2Fn> gRegMrIova2{nullptr};
std::atomic<QueryGidExFn> gQueryGidEx{nullptr};

// ibv_query_port(3) is a macro over an inline that prefers the provider's extended
// query_port op (it fills every field of today's ibv_port_attr) and falls back to the
// exported IBVERBS_1.1 function, which knows only the older, shorter struct.
int queryPortViaOps(ibv_context* context, uint8_t port, ibv_port_attr* attr) {
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  if (vctx != nullptr) return vctx->query_port(context, port, attr, sizeof(*attr));
  std::memset(attr, 0, sizeof(*attr));
  return gCompatQueryPort.load(std::memory_order_acquire)(
      context, port, reinterpret_cast<_compat_ibv_port_attr*>(attr));
}

// ibv_reg_mr(3) is a macro too: access flags in IBV_ACCESS_OPTIONAL_RANGE (relaxed
// ordering) need ibv_reg_mr_iova2, which masks them off where the kernel lacks them.
// Access is never a compile-time constant here, so always take that path, as the macro does.
ibv_mr* regMrViaIova2(ibv_pd* pd, void* addr, size_t length, int access) {
  return gRegMrIova2.load(std::memory_order_acquire)(
      pd, addr, length, reinterpret_cast<uintptr_t>(addr), static_cast<unsigned int>(access));
}

// The public way to learn a GID's RoCE type (ibv_query_gid_ex(3), rdma-core >= 32); the
// older ibv_query_gid_type export is private ABI (IBVERBS_PRIVATE_*), so braid avoids it.
int queryGidTypeViaEx(ibv_context* context, uint8_t port, unsigned int index, ibv_gid_type* type) {
  ibv_gid_entry entry{};
  int rc =
      gQueryGidEx.load(std::memory_order_acquire)(context, port, index, &entry, 0, sizeof(entry));
  if (rc != 0) return rc;
  *type = static_cast<ibv_gid_type>(entry.gid_type);
  return 0;
}

template <typename Fn>
void resolve(void* handle, Fn& slot, const char* name, const char* version) {
  // dlvsym picks the exact ABI version: libibverbs exports IBVERBS_1.0 compatibility
  // variants of most calls next to the IBVERBS_1.1 ones that take today's structs.
  void* p = dlvsym(handle, name, version);
  slot = reinterpret_cast<Fn>(p);
}

}  // namespace

Result<Lib> Lib::open(const std::string& soname) {
  dlerror();
  // RTLD_LOCAL: the providers libibverbs loads must not see braid's symbols, nor the
  // application ours. The handle is never closed: providers keep state until exit.
  void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* err = dlerror();
    return Status(Code::kUnsupported,
                  fmt::format("libibverbs not found: dlopen({}) failed: {}; {}", soname,
                              err ? err : "unknown error", kInstallHint));
  }
  Lib lib;
  constexpr const char* v10 = "IBVERBS_1.0";
  constexpr const char* v11 = "IBVERBS_1.1";
  resolve(h, lib.getDeviceList, "ibv_get_device_list", v11);
  resolve(h, lib.freeDeviceList, "ibv_free_device_list", v11);
  resolve(h, lib.getDeviceName, "ibv_get_device_name", v11);
  resolve(h, lib.openDevice, "ibv_open_device", v11);
  resolve(h, lib.closeDevice, "ibv_close_device", v11);
  resolve(h, lib.queryDevice, "ibv_query_device", v11);
  CompatQueryPortFn compatQueryPort = nullptr;
  resolve(h, compatQueryPort, "ibv_query_port", v11);
  resolve(h, lib.queryGid, "ibv_query_gid", v11);
  QueryGidExFn queryGidEx = nullptr;
  resolve(h, queryGidEx, "_ibv_query_gid_ex", "IBVERBS_1.11");
  resolve(h, lib.queryGidTable, "_ibv_query_gid_table", "IBVERBS_1.11");
  resolve(h, lib.allocPd, "ibv_alloc_pd", v11);
  resolve(h, lib.deallocPd, "ibv_dealloc_pd", v11);
  resolve(h, lib.regMr, "ibv_reg_mr", v11);
  RegMrIova2Fn regMrIova2 = nullptr;
  resolve(h, regMrIova2, "ibv_reg_mr_iova2", "IBVERBS_1.8");
  resolve(h, lib.regDmabufMr, "ibv_reg_dmabuf_mr", "IBVERBS_1.12");
  resolve(h, lib.deregMr, "ibv_dereg_mr", v11);
  // The completion-channel calls never changed ABI: they only exist as IBVERBS_1.0.
  resolve(h, lib.createCompChannel, "ibv_create_comp_channel", v10);
  resolve(h, lib.destroyCompChannel, "ibv_destroy_comp_channel", v10);
  resolve(h, lib.createCq, "ibv_create_cq", v11);
  resolve(h, lib.destroyCq, "ibv_destroy_cq", v11);
  resolve(h, lib.getCqEvent, "ibv_get_cq_event", v11);
  resolve(h, lib.ackCqEvents, "ibv_ack_cq_events", v11);
  resolve(h, lib.createQp, "ibv_create_qp", v11);
  resolve(h, lib.modifyQp, "ibv_modify_qp", v11);
  resolve(h, lib.queryQp, "ibv_query_qp", v11);
  resolve(h, lib.destroyQp, "ibv_destroy_qp", v11);
  resolve(h, lib.getAsyncEvent, "ibv_get_async_event", v11);
  resolve(h, lib.ackAsyncEvent, "ibv_ack_async_event", v11);
  resolve(h, lib.wcStatusStr, "ibv_wc_status_str", v11);
  resolve(h, lib.eventTypeStr, "ibv_event_type_str", v11);
  resolve(h, lib.forkInit, "ibv_fork_init", v11);

  struct Required {
    const char* name;
    bool present;
  };
  const Required required[] = {
      {"ibv_get_device_list", lib.getDeviceList != nullptr},
      {"ibv_free_device_list", lib.freeDeviceList != nullptr},
      {"ibv_get_device_name", lib.getDeviceName != nullptr},
      {"ibv_open_device", lib.openDevice != nullptr},
      {"ibv_close_device", lib.closeDevice != nullptr},
      {"ibv_query_device", lib.queryDevice != nullptr},
      {"ibv_query_port", compatQueryPort != nullptr},
      {"ibv_query_gid", lib.queryGid != nullptr},
      {"ibv_alloc_pd", lib.allocPd != nullptr},
      {"ibv_dealloc_pd", lib.deallocPd != nullptr},
      {"ibv_reg_mr", lib.regMr != nullptr},
      {"ibv_dereg_mr", lib.deregMr != nullptr},
      {"ibv_create_comp_channel", lib.createCompChannel != nullptr},
      {"ibv_destroy_comp_channel", lib.destroyCompChannel != nullptr},
      {"ibv_create_cq", lib.createCq != nullptr},
      {"ibv_destroy_cq", lib.destroyCq != nullptr},
      {"ibv_get_cq_event", lib.getCqEvent != nullptr},
      {"ibv_ack_cq_events", lib.ackCqEvents != nullptr},
      {"ibv_create_qp", lib.createQp != nullptr},
      {"ibv_modify_qp", lib.modifyQp != nullptr},
      {"ibv_query_qp", lib.queryQp != nullptr},
      {"ibv_destroy_qp", lib.destroyQp != nullptr},
      {"ibv_get_async_event", lib.getAsyncEvent != nullptr},
      {"ibv_ack_async_event", lib.ackAsyncEvent != nullptr},
      {"ibv_wc_status_str", lib.wcStatusStr != nullptr},
      {"ibv_event_type_str", lib.eventTypeStr != nullptr},
      {"ibv_fork_init", lib.forkInit != nullptr},
  };
  for (const Required& r : required) {
    if (!r.present) {
      const char* err = dlerror();
      return Status(Code::kUnsupported,
                    fmt::format("libibverbs ({}) lacks {} ({}): it is too old for braid; {}",
                                soname, r.name, err ? err : "symbol not found", kInstallHint));
    }
  }

  gCompatQueryPort.store(compatQueryPort, std::memory_order_release);
  lib.queryPort = queryPortViaOps;
  if (regMrIova2 != nullptr) {
    gRegMrIova2.store(regMrIova2, std::memory_order_release);
    lib.regMr = regMrViaIova2;
  }
  lib.queryGidEx = queryGidEx;
  if (queryGidEx != nullptr) {
    gQueryGidEx.store(queryGidEx, std::memory_order_release);
    lib.queryGidType = queryGidTypeViaEx;
  }
  BRAID_LOG_DEBUG(kVerbs, "loaded {}: gid_ex={} gid_table={} dmabuf={}", soname,
                  lib.queryGidEx != nullptr, lib.queryGidTable != nullptr,
                  lib.regDmabufMr != nullptr);
  return lib;
}

Result<const Lib*> Lib::load() {
  // A function-local static is initialised once even when threads race here ([stmt.dcl]).
  static const Result<const Lib*> loaded = []() -> Result<const Lib*> {
    auto lib = open("libibverbs.so.1");
    if (!lib) {
      BRAID_LOG_INFO(kVerbs, "{}", lib.status().message());
      return lib.status();
    }
    return static_cast<const Lib*>(new Lib(std::move(lib).value()));  // lives until exit
  }();
  return loaded;
}

#else  // !BRAID_HAVE_VERBS

namespace detail {
int postSendDefault(ibv_qp*, ibv_send_wr*, ibv_send_wr**) {
  return ENOSYS;
}
int postRecvDefault(ibv_qp*, ibv_recv_wr*, ibv_recv_wr**) {
  return ENOSYS;
}
int pollCqDefault(ibv_cq*, int, ibv_wc*) {
  return -1;
}
int reqNotifyCqDefault(ibv_cq*, int) {
  return ENOSYS;
}
}  // namespace detail

Result<Lib> Lib::open(const std::string& soname) {
  return builtWithoutVerbs(soname.c_str());
}

Result<const Lib*> Lib::load() {
  return builtWithoutVerbs("libibverbs.so.1");
}

#endif  // BRAID_HAVE_VERBS

}  // namespace braid::verbs
