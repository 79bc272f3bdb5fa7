// lib/verbs/ibv.h — the libibverbs types, or opaque declarations of them in a build
// without verbs (BRAID_WITH_VERBS=OFF, or no infiniband/verbs.h at build time).
//
// Only the header is used at build time: libibverbs itself is dlopen()ed (verbs/lib.h), so
// libbraid and the plugin load on hosts without rdma-core. Internal header.
#pragma once

#ifndef BRAID_HAVE_VERBS
#error "BRAID_HAVE_VERBS must be defined (0 or 1) by the build (lib/CMakeLists.txt)"
#endif

#if BRAID_HAVE_VERBS
#include <infiniband/verbs.h>
#else
// Enough for the declarations in lib/verbs/*.h to compile: pointers to these types are
// never dereferenced in a build without verbs (every factory reports kUnsupported).
extern "C" {
struct ibv_device;
struct ibv_context;
struct ibv_device_attr;
struct ibv_port_attr;
union ibv_gid;
struct ibv_gid_entry;
struct ibv_pd;
struct ibv_mr;
struct ibv_comp_channel;
struct ibv_cq;
struct ibv_qp;
struct ibv_qp_attr;
struct ibv_qp_init_attr;
struct ibv_send_wr;
struct ibv_recv_wr;
struct ibv_wc;
struct ibv_async_event;
enum ibv_wc_status : int;
enum ibv_event_type : int;
enum ibv_gid_type : int;
}
#endif
