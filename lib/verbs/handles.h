// lib/verbs/handles.h — move-only owners of verbs objects: Context, Pd, CompChannel, Cq,
// Qp, Mr.
//
// Each holds the `const Lib*` it was made with and its raw pointer (get()); destruction
// releases the object through that table. Releasing never throws: a failure is logged
// with the device and errno, and teardown goes on. Factories return Result, with errors
// that name the device (and QP) and the errno text.
//
// Lifetime: verbs requires children to be destroyed before their parents (a PD with MRs
// or QPs cannot be deallocated, a CQ with QPs cannot be destroyed: ibv_dealloc_pd(3),
// ibv_destroy_cq(3) return EBUSY). Owners must therefore declare these members in
// creation order (Context, Pd, CompChannel, Cq, Qp, Mr), so that C++ destroys them in
// reverse. A handle keeps a shared, immutable description of its device (name, limits),
// so moving a Context never leaves its children pointing at a moved-from object.
//
// Thread-safety: a handle is not synchronised; verbs objects themselves may be used from
// several threads as libibverbs allows (ibv_post_send on one QP from two threads needs the
// caller's lock). Internal header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "braid/status.h"
#include "verbs/lib.h"

namespace braid::verbs {

/// Limits of a device, from ibv_query_device at open.
struct DeviceCaps {
  int physPortCnt = 0;
  int maxQpWr = 0;
  int maxSge = 0;
  int maxCqe = 0;
  int maxQpRdAtom = 0;      ///< RDMA reads/atomics a QP may serve as target
  int maxQpInitRdAtom = 0;  ///< RDMA reads/atomics a QP may have outstanding as initiator
  uint64_t maxMrSize = 0;
};

/// What every child handle needs to know about its device. Shared, immutable.
struct DeviceRef {
  const Lib* lib = nullptr;
  ibv_context* context = nullptr;  ///< valid while the owning Context lives
  std::string name;
  DeviceCaps caps;
};

class Pd;

/// An open device (ibv_open_device). Blocking.
class Context {
 public:
  /// Opens `device` by name. kNotFound lists the devices that exist; kUnsupported when
  /// the device list cannot be read.
  [[nodiscard]] static Result<Context> open(const Lib& lib, const std::string& device);

  Context() = default;  ///< empty; assign a Context::open result to it
  Context(Context&& o) noexcept;
  Context& operator=(Context&& o) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();

  ibv_context* get() const { return ref_ ? ref_->context : nullptr; }
  explicit operator bool() const { return get() != nullptr; }
  const Lib& lib() const { return *ref_->lib; }
  const std::string& name() const { return ref_->name; }
  const DeviceCaps& caps() const { return ref_->caps; }
  /// The async-event descriptor (ibv_context::async_fd); -1 when empty.
  int asyncFd() const { return asyncFd_; }
  const std::shared_ptr<const DeviceRef>& ref() const { return ref_; }

 private:
  Context(std::shared_ptr<const DeviceRef> ref, int asyncFd);
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  int asyncFd_ = -1;
};

/// A registered memory region (ibv_reg_mr). Deregistered on destruction.
class Mr {
 public:
  Mr() = default;
  Mr(Mr&& o) noexcept;
  Mr& operator=(Mr&& o) noexcept;
  Mr(const Mr&) = delete;
  Mr& operator=(const Mr&) = delete;
  ~Mr();

  ibv_mr* get() const { return mr_; }
  explicit operator bool() const { return mr_ != nullptr; }
  uint32_t lkey() const { return lkey_; }
  uint32_t rkey() const { return rkey_; }
  void* addr() const { return addr_; }
  size_t length() const { return length_; }
  const std::string& deviceName() const { return ref_->name; }

 private:
  friend class Pd;
  Mr(std::shared_ptr<const DeviceRef> ref, ibv_mr* mr);
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  ibv_mr* mr_ = nullptr;
  void* addr_ = nullptr;
  size_t length_ = 0;
  uint32_t lkey_ = 0;
  uint32_t rkey_ = 0;
};

/// A protection domain (ibv_alloc_pd).
class Pd {
 public:
  [[nodiscard]] static Result<Pd> alloc(Context& context);

  Pd() = default;
  Pd(Pd&& o) noexcept;
  Pd& operator=(Pd&& o) noexcept;
  Pd(const Pd&) = delete;
  Pd& operator=(const Pd&) = delete;
  ~Pd();

  /// Registers [addr, addr+len) with IBV_ACCESS_* flags (ibv_reg_mr(3)); pins the pages.
  /// Blocking (a system call; slow for large ranges). Thread-safe on one Pd.
  [[nodiscard]] Result<Mr> regMr(void* addr, size_t len, int access) const;
  /// Registers `len` bytes at `offset` of a dma-buf `fd`, mapped at `iova`
  /// (ibv_reg_dmabuf_mr(3)). kUnsupported when libibverbs lacks it.
  [[nodiscard]] Result<Mr> regDmabufMr(uint64_t offset, size_t len, uint64_t iova, int fd,
                                       int access) const;

  ibv_pd* get() const { return pd_; }
  explicit operator bool() const { return pd_ != nullptr; }
  const Lib& lib() const { return *ref_->lib; }
  const std::string& deviceName() const { return ref_->name; }
  const std::shared_ptr<const DeviceRef>& ref() const { return ref_; }

 private:
  Pd(std::shared_ptr<const DeviceRef> ref, ibv_pd* pd) : ref_(std::move(ref)), pd_(pd) {}
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  ibv_pd* pd_ = nullptr;
};

/// A completion channel (ibv_create_comp_channel): a file descriptor that becomes
/// readable when an armed CQ gets a completion.
class CompChannel {
 public:
  [[nodiscard]] static Result<CompChannel> create(Context& context);

  CompChannel() = default;
  CompChannel(CompChannel&& o) noexcept;
  CompChannel& operator=(CompChannel&& o) noexcept;
  CompChannel(const CompChannel&) = delete;
  CompChannel& operator=(const CompChannel&) = delete;
  ~CompChannel();

  ibv_comp_channel* get() const { return ch_; }
  explicit operator bool() const { return ch_ != nullptr; }
  int fd() const { return fd_; }

 private:
  CompChannel(std::shared_ptr<const DeviceRef> ref, ibv_comp_channel* ch, int fd)
      : ref_(std::move(ref)), ch_(ch), fd_(fd) {}
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  ibv_comp_channel* ch_ = nullptr;
  int fd_ = -1;
};

/// A completion queue (ibv_create_cq).
class Cq {
 public:
  /// At least `depth` entries (the device may give more: depth()). `channel` may be
  /// nullptr (polling only); when given it must outlive the CQ.
  [[nodiscard]] static Result<Cq> create(Context& context, int depth, CompChannel* channel);

  Cq() = default;
  Cq(Cq&& o) noexcept;
  Cq& operator=(Cq&& o) noexcept;
  Cq(const Cq&) = delete;
  Cq& operator=(const Cq&) = delete;
  ~Cq();

  /// ibv_poll_cq through the table: completions written to wc[0..n), or < 0 on error.
  /// Non-blocking, allocation-free.
  int poll(int maxEntries, ibv_wc* wc) const { return verbs::pollCq(*ref_->lib, cq_, maxEntries, wc); }
  /// Arms the CQ for one completion event on its channel (ibv_req_notify_cq(3)).
  [[nodiscard]] Status reqNotify(bool solicitedOnly = false) const;

  ibv_cq* get() const { return cq_; }
  explicit operator bool() const { return cq_ != nullptr; }
  int depth() const { return depth_; }
  const Lib& lib() const { return *ref_->lib; }
  const std::string& deviceName() const { return ref_->name; }
  const std::shared_ptr<const DeviceRef>& ref() const { return ref_; }

 private:
  Cq(std::shared_ptr<const DeviceRef> ref, ibv_cq* cq, int depth)
      : ref_(std::move(ref)), cq_(cq), depth_(depth) {}
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  ibv_cq* cq_ = nullptr;
  int depth_ = 0;
};

/// Queue sizes of a QP (ibv_qp_cap). After creation Qp::caps() holds what the device
/// granted, which may be more.
struct QpCaps {
  uint32_t maxSendWr = 0;
  uint32_t maxRecvWr = 0;
  uint32_t maxSendSge = 1;
  uint32_t maxRecvSge = 1;
  uint32_t maxInlineData = 0;
};

/// A queue pair (ibv_create_qp), in RESET state when created. State changes: verbs/qp.h.
class Qp {
 public:
  /// A reliable-connected QP. Errors name the device and the caps asked for; a cap above
  /// the device limit is kInvalidArgument before verbs is asked.
  [[nodiscard]] static Result<Qp> createRc(Pd& pd, Cq& sendCq, Cq& recvCq, const QpCaps& caps);

  Qp() = default;
  Qp(Qp&& o) noexcept;
  Qp& operator=(Qp&& o) noexcept;
  Qp(const Qp&) = delete;
  Qp& operator=(const Qp&) = delete;
  ~Qp();

  /// ibv_post_send / ibv_post_recv through the table. Non-blocking, allocation-free on
  /// success. kAgain when the queue is full (ENOMEM), else kSystemError naming the QP.
  [[nodiscard]] Status postSend(ibv_send_wr* wr, ibv_send_wr** badWr = nullptr) const;
  [[nodiscard]] Status postRecv(ibv_recv_wr* wr, ibv_recv_wr** badWr = nullptr) const;

  ibv_qp* get() const { return qp_; }
  explicit operator bool() const { return qp_ != nullptr; }
  uint32_t qpn() const { return qpn_; }
  const QpCaps& caps() const { return caps_; }
  const Lib& lib() const { return *ref_->lib; }
  const std::string& deviceName() const { return ref_->name; }
  const DeviceCaps& deviceCaps() const { return ref_->caps; }
  ibv_context* context() const { return ref_->context; }

 private:
  Qp(std::shared_ptr<const DeviceRef> ref, ibv_qp* qp, uint32_t qpn, const QpCaps& caps)
      : ref_(std::move(ref)), qp_(qp), qpn_(qpn), caps_(caps) {}
  void reset() noexcept;
  std::shared_ptr<const DeviceRef> ref_;
  ibv_qp* qp_ = nullptr;
  uint32_t qpn_ = 0;
  QpCaps caps_;
};

}  // namespace braid::verbs
