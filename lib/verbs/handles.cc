#include "verbs/handles.h"

#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "core/log.h"

namespace braid::verbs {
namespace {

// ibv_destroy_*(3), ibv_dealloc_pd(3), ibv_dereg_mr(3), ibv_close_device(3): "0 on
// success, or the value of errno on failure"; some old providers return -1 and set errno.
int errOf(int rc) {
  return rc > 0 ? rc : (errno != 0 ? errno : EIO);
}

// Destructors never throw: a failed release is logged (it usually means a child is still
// alive, EBUSY, i.e. a teardown-order bug) and the handle forgets the object.
void logReleaseFailure(const char* what, const std::string& device, int err) noexcept {
  try {
    BRAID_LOG_ERROR(kVerbs, "{} on {} failed: {}; leaking it and going on", what, device,
                    errnoText(err));
  } catch (...) {
  }
}

}  // namespace

// ------------------------------------------------------------------ Context

Context::Context(std::shared_ptr<const DeviceRef> ref, int asyncFd)
    : ref_(std::move(ref)), asyncFd_(asyncFd) {}

Context::Context(Context&& o) noexcept
    : ref_(std::move(o.ref_)), asyncFd_(std::exchange(o.asyncFd_, -1)) {}

Context& Context::operator=(Context&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    asyncFd_ = std::exchange(o.asyncFd_, -1);
  }
  return *this;
}

Context::~Context() {
  reset();
}

void Context::reset() noexcept {
  if (ref_ && ref_->context != nullptr) {
    int rc = ref_->lib->closeDevice(ref_->context);
    if (rc != 0) logReleaseFailure("ibv_close_device", ref_->name, errOf(rc));
  }
  ref_.reset();
  asyncFd_ = -1;
}

// ------------------------------------------------------------------ Mr

Mr::Mr(Mr&& o) noexcept
    : ref_(std::move(o.ref_)),
      mr_(std::exchange(o.mr_, nullptr)),
      addr_(std::exchange(o.addr_, nullptr)),
      length_(std::exchange(o.length_, 0)),
      lkey_(std::exchange(o.lkey_, 0)),
      rkey_(std::exchange(o.rkey_, 0)) {}

Mr& Mr::operator=(Mr&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    mr_ = std::exchange(o.mr_, nullptr);
    addr_ = std::exchange(o.addr_, nullptr);
    length_ = std::exchange(o.length_, 0);
    lkey_ = std::exchange(o.lkey_, 0);
    rkey_ = std::exchange(o.rkey_, 0);
  }
  return *this;
}

Mr::~Mr() {
  reset();
}

void Mr::reset() noexcept {
  if (mr_ != nullptr) {
    int rc = ref_->lib->deregMr(mr_);
    if (rc != 0) logReleaseFailure("ibv_dereg_mr", ref_->name, errOf(rc));
    mr_ = nullptr;
  }
  ref_.reset();
  addr_ = nullptr;
  length_ = 0;
  lkey_ = rkey_ = 0;
}

// ------------------------------------------------------------------ Pd

Pd::Pd(Pd&& o) noexcept : ref_(std::move(o.ref_)), pd_(std::exchange(o.pd_, nullptr)) {}

Pd& Pd::operator=(Pd&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    pd_ = std::exchange(o.pd_, nullptr);
  }
  return *this;
}

Pd::~Pd() {
  reset();
}

void Pd::reset() noexcept {
  if (pd_ != nullptr) {
    int rc = ref_->lib->deallocPd(pd_);
    if (rc != 0) logReleaseFailure("ibv_dealloc_pd", ref_->name, errOf(rc));
    pd_ = nullptr;
  }
  ref_.reset();
}

// ------------------------------------------------------------------ CompChannel

CompChannel::CompChannel(CompChannel&& o) noexcept
    : ref_(std::move(o.ref_)), ch_(std::exchange(o.ch_, nullptr)), fd_(std::exchange(o.fd_, -1)) {}

CompChannel& CompChannel::operator=(CompChannel&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    ch_ = std::exchange(o.ch_, nullptr);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

CompChannel::~CompChannel() {
  reset();
}

void CompChannel::reset() noexcept {
  if (ch_ != nullptr) {
    int rc = ref_->lib->destroyCompChannel(ch_);
    if (rc != 0) logReleaseFailure("ibv_destroy_comp_channel", ref_->name, errOf(rc));
    ch_ = nullptr;
  }
  ref_.reset();
  fd_ = -1;
}

// ------------------------------------------------------------------ Cq

Cq::Cq(Cq&& o) noexcept
    : ref_(std::move(o.ref_)),
      cq_(std::exchange(o.cq_, nullptr)),
      depth_(std::exchange(o.depth_, 0)) {}

Cq& Cq::operator=(Cq&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    cq_ = std::exchange(o.cq_, nullptr);
    depth_ = std::exchange(o.depth_, 0);
  }
  return *this;
}

Cq::~Cq() {
  reset();
}

void Cq::reset() noexcept {
  if (cq_ != nullptr) {
    int rc = ref_->lib->destroyCq(cq_);
    if (rc != 0) logReleaseFailure("ibv_destroy_cq", ref_->name, errOf(rc));
    cq_ = nullptr;
  }
  ref_.reset();
  depth_ = 0;
}

Status Cq::reqNotify(bool solicitedOnly) const {
  int rc = ref_->lib->reqNotifyCq(cq_, solicitedOnly ? 1 : 0);
  if (rc == 0) return Status::ok();
  return Status(Code::kSystemError,
                fmt::format("ibv_req_notify_cq on {}: {}", ref_->name, errnoText(errOf(rc))));
}

// ------------------------------------------------------------------ Qp

Qp::Qp(Qp&& o) noexcept
    : ref_(std::move(o.ref_)),
      qp_(std::exchange(o.qp_, nullptr)),
      qpn_(std::exchange(o.qpn_, 0)),
      caps_(o.caps_) {}

Qp& Qp::operator=(Qp&& o) noexcept {
  if (this != &o) {
    reset();
    ref_ = std::move(o.ref_);
    qp_ = std::exchange(o.qp_, nullptr);
    qpn_ = std::exchange(o.qpn_, 0);
    caps_ = o.caps_;
  }
  return *this;
}

Qp::~Qp() {
  reset();
}

void Qp::reset() noexcept {
  if (qp_ != nullptr) {
    int rc = ref_->lib->destroyQp(qp_);
    if (rc != 0) {
      try {
        BRAID_LOG_ERROR(kVerbs, "ibv_destroy_qp of QP {} on {} failed: {}; leaking it", qpn_,
                        ref_->name, errnoText(errOf(rc)));
      } catch (...) {
      }
    }
    qp_ = nullptr;
  }
  ref_.reset();
  qpn_ = 0;
}

namespace {
Status postError(const char* what, const std::string& device, uint32_t qpn, int rc) {
  int err = errOf(rc);
  // ibv_post_send(3): ENOMEM = "Send Queue is full or not enough resources to complete
  // this operation": the caller may retry after reaping completions.
  if (err == ENOMEM)
    return Status(Code::kAgain, fmt::format("{} on {} QP {}: the queue is full ({})", what, device,
                                            qpn, errnoText(err)));
  return Status(Code::kSystemError,
                fmt::format("{} on {} QP {}: {}", what, device, qpn, errnoText(err)));
}
}  // namespace

Status Qp::postSend(ibv_send_wr* wr, ibv_send_wr** badWr) const {
  ibv_send_wr* bad = nullptr;
  int rc = verbs::postSend(*ref_->lib, qp_, wr, badWr != nullptr ? badWr : &bad);
  if (rc == 0) return Status::ok();
  return postError("ibv_post_send", ref_->name, qpn_, rc);
}

Status Qp::postRecv(ibv_recv_wr* wr, ibv_recv_wr** badWr) const {
  ibv_recv_wr* bad = nullptr;
  int rc = verbs::postRecv(*ref_->lib, qp_, wr, badWr != nullptr ? badWr : &bad);
  if (rc == 0) return Status::ok();
  return postError("ibv_post_recv", ref_->name, qpn_, rc);
}

#if BRAID_HAVE_VERBS

// ------------------------------------------------------------------ factories

Result<Context> Context::open(const Lib& lib, const std::string& device) {
  int n = 0;
  errno = 0;
  ibv_device** list = lib.getDeviceList(&n);
  if (list == nullptr) {
    return Status(Code::kUnsupported,
                  fmt::format("cannot open RDMA device '{}': ibv_get_device_list failed: {} "
                              "(no RDMA support in this kernel?)",
                              device, errnoText(errno != 0 ? errno : ENOSYS)));
  }
  ibv_device* found = nullptr;
  std::string names;
  for (int i = 0; i < n && list[i] != nullptr; ++i) {
    const char* name = lib.getDeviceName(list[i]);
    if (name == nullptr) continue;
    if (device == name) found = list[i];
    names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
  }
  if (found == nullptr) {
    lib.freeDeviceList(list);
    return Status(Code::kNotFound,
                  fmt::format("RDMA device '{}' not found ({})", device,
                              names.empty() ? "no RDMA devices" : "devices: " + names));
  }
  errno = 0;
  ibv_context* ctx = lib.openDevice(found);
  int openErr = errno;
  // ibv_get_device_list(3): open the devices you need before freeing the list; the
  // opened context stays valid after ibv_free_device_list.
  lib.freeDeviceList(list);
  if (ctx == nullptr) {
    return Status(
        Code::kSystemError,
        fmt::format("ibv_open_device({}) failed: {}{}", device,
                    errnoText(openErr != 0 ? openErr : EIO),
                    openErr == EACCES ? " (permissions of /dev/infiniband/uverbs*?)" : ""));
  }
  ibv_device_attr attr{};
  int rc = lib.queryDevice(ctx, &attr);
  if (rc != 0) {
    int err = errOf(rc);
    lib.closeDevice(ctx);
    return Status(Code::kSystemError,
                  fmt::format("ibv_query_device({}) failed: {}", device, errnoText(err)));
  }
  auto ref = std::make_shared<DeviceRef>();
  ref->lib = &lib;
  ref->context = ctx;
  ref->name = device;
  ref->caps.physPortCnt = attr.phys_port_cnt;
  ref->caps.maxQpWr = attr.max_qp_wr;
  ref->caps.maxSge = attr.max_sge;
  ref->caps.maxCqe = attr.max_cqe;
  ref->caps.maxQpRdAtom = attr.max_qp_rd_atom;
  ref->caps.maxQpInitRdAtom = attr.max_qp_init_rd_atom;
  ref->caps.maxMrSize = attr.max_mr_size;
  BRAID_LOG_DEBUG(kVerbs, "opened {}: {} port(s), max_qp_wr {}, max_cqe {}, max_sge {}", device,
                  attr.phys_port_cnt, attr.max_qp_wr, attr.max_cqe, attr.max_sge);
  return Context(std::move(ref), ctx->async_fd);
}

Result<Pd> Pd::alloc(Context& context) {
  if (!context) return Status(Code::kInvalidArgument, "Pd::alloc on an empty Context");
  errno = 0;
  ibv_pd* pd = context.lib().allocPd(context.get());
  if (pd == nullptr)
    return Status(Code::kNoMemory, fmt::format("ibv_alloc_pd on {} failed: {}", context.name(),
                                               errnoText(errno != 0 ? errno : ENOMEM)));
  return Pd(context.ref(), pd);
}

Mr::Mr(std::shared_ptr<const DeviceRef> ref, ibv_mr* mr)
    : ref_(std::move(ref)),
      mr_(mr),
      addr_(mr->addr),
      length_(mr->length),
      lkey_(mr->lkey),
      rkey_(mr->rkey) {}

namespace {
Status regError(const char* what, const std::string& device, const void* addr, size_t len,
                int access, int err) {
  // ibv_reg_mr(3): ENOMEM is also what a too-small RLIMIT_MEMLOCK looks like.
  Code code = err == ENOMEM                      ? Code::kNoMemory
              : (err == EINVAL || err == EFAULT) ? Code::kInvalidArgument
                                                 : Code::kSystemError;
  return Status(
      code, fmt::format("{} on {} of {} bytes at {} (access {:#x}) failed: {}{}", what, device, len,
                        addr, access, errnoText(err),
                        err == ENOMEM ? "; is `ulimit -l` (locked memory) too small?" : ""));
}
}  // namespace

Result<Mr> Pd::regMr(void* addr, size_t len, int access) const {
  if (pd_ == nullptr) return Status(Code::kInvalidArgument, "Pd::regMr on an empty Pd");
  errno = 0;
  ibv_mr* mr = ref_->lib->regMr(pd_, addr, len, access);
  if (mr == nullptr)
    return regError("ibv_reg_mr", ref_->name, addr, len, access, errno != 0 ? errno : ENOMEM);
  return Mr(ref_, mr);
}

Result<Mr> Pd::regDmabufMr(uint64_t offset, size_t len, uint64_t iova, int fd, int access) const {
  if (pd_ == nullptr) return Status(Code::kInvalidArgument, "Pd::regDmabufMr on an empty Pd");
  if (ref_->lib->regDmabufMr == nullptr)
    return Status(Code::kUnsupported,
                  fmt::format("ibv_reg_dmabuf_mr is not in this libibverbs (rdma-core >= 34 "
                              "needed) for {}",
                              ref_->name));
  errno = 0;
  ibv_mr* mr = ref_->lib->regDmabufMr(pd_, offset, len, iova, fd, access);
  if (mr == nullptr)
    return regError("ibv_reg_dmabuf_mr", ref_->name, reinterpret_cast<void*>(iova), len, access,
                    errno != 0 ? errno : ENOMEM);
  return Mr(ref_, mr);
}

Result<CompChannel> CompChannel::create(Context& context) {
  if (!context) return Status(Code::kInvalidArgument, "CompChannel::create on an empty Context");
  errno = 0;
  ibv_comp_channel* ch = context.lib().createCompChannel(context.get());
  if (ch == nullptr)
    return Status(Code::kSystemError,
                  fmt::format("ibv_create_comp_channel on {} failed: {}", context.name(),
                              errnoText(errno != 0 ? errno : ENOMEM)));
  return CompChannel(context.ref(), ch, ch->fd);
}

Result<Cq> Cq::create(Context& context, int depth, CompChannel* channel) {
  if (!context) return Status(Code::kInvalidArgument, "Cq::create on an empty Context");
  const DeviceCaps& caps = context.caps();
  if (depth < 1 || (caps.maxCqe > 0 && depth > caps.maxCqe))
    return Status(Code::kInvalidArgument,
                  fmt::format("CQ depth {} on {} is out of range [1, {}] (max_cqe)", depth,
                              context.name(), caps.maxCqe));
  errno = 0;
  ibv_cq* cq = context.lib().createCq(context.get(), depth, nullptr,
                                      channel != nullptr ? channel->get() : nullptr, 0);
  if (cq == nullptr)
    return Status(Code::kNoMemory,
                  fmt::format("ibv_create_cq of depth {} on {} failed: {}", depth, context.name(),
                              errnoText(errno != 0 ? errno : ENOMEM)));
  return Cq(context.ref(), cq, cq->cqe);
}

Result<Qp> Qp::createRc(Pd& pd, Cq& sendCq, Cq& recvCq, const QpCaps& caps) {
  if (!pd || !sendCq || !recvCq)
    return Status(Code::kInvalidArgument, "Qp::createRc needs a Pd and two CQs");
  const std::string& dev = pd.deviceName();
  if (sendCq.ref()->context != pd.ref()->context || recvCq.ref()->context != pd.ref()->context)
    return Status(Code::kInvalidArgument,
                  fmt::format("Qp::createRc on {}: the CQs belong to {} and {}", dev,
                              sendCq.deviceName(), recvCq.deviceName()));
  const DeviceCaps& dc = pd.ref()->caps;
  auto over = [](uint32_t v, int limit) { return limit > 0 && v > static_cast<uint32_t>(limit); };
  if (caps.maxSendWr == 0 || caps.maxRecvWr == 0 || over(caps.maxSendWr, dc.maxQpWr) ||
      over(caps.maxRecvWr, dc.maxQpWr) || over(caps.maxSendSge, dc.maxSge) ||
      over(caps.maxRecvSge, dc.maxSge))
    return Status(Code::kInvalidArgument,
                  fmt::format("RC QP on {}: send_wr {} recv_wr {} (1..{} each), send_sge {} "
                              "recv_sge {} (max {})",
                              dev, caps.maxSendWr, caps.maxRecvWr, dc.maxQpWr, caps.maxSendSge,
                              caps.maxRecvSge, dc.maxSge));
  ibv_qp_init_attr attr{};
  attr.send_cq = sendCq.get();
  attr.recv_cq = recvCq.get();
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;  // completions only for work requests flagged IBV_SEND_SIGNALED
  attr.cap.max_send_wr = caps.maxSendWr;
  attr.cap.max_recv_wr = caps.maxRecvWr;
  attr.cap.max_send_sge = caps.maxSendSge;
  attr.cap.max_recv_sge = caps.maxRecvSge;
  attr.cap.max_inline_data = caps.maxInlineData;
  errno = 0;
  ibv_qp* qp = pd.lib().createQp(pd.get(), &attr);
  if (qp == nullptr) {
    int err = errno != 0 ? errno : ENOMEM;
    return Status(err == ENOMEM ? Code::kNoMemory : Code::kSystemError,
                  fmt::format("ibv_create_qp (RC, send_wr {}, recv_wr {}, send_sge {}, recv_sge "
                              "{}, inline {}) on {} failed: {}",
                              caps.maxSendWr, caps.maxRecvWr, caps.maxSendSge, caps.maxRecvSge,
                              caps.maxInlineData, dev, errnoText(err)));
  }
  // ibv_create_qp(3) writes the granted sizes back into attr.cap (at least those asked).
  QpCaps granted;
  granted.maxSendWr = attr.cap.max_send_wr;
  granted.maxRecvWr = attr.cap.max_recv_wr;
  granted.maxSendSge = attr.cap.max_send_sge;
  granted.maxRecvSge = attr.cap.max_recv_sge;
  granted.maxInlineData = attr.cap.max_inline_data;
  BRAID_LOG_DEBUG(kVerbs, "created RC QP {} on {} (send_wr {}, recv_wr {}, inline {})", qp->qp_num,
                  dev, granted.maxSendWr, granted.maxRecvWr, granted.maxInlineData);
  return Qp(pd.ref(), qp, qp->qp_num, granted);
}

#else  // !BRAID_HAVE_VERBS

Result<Context> Context::open(const Lib&, const std::string& device) {
  return builtWithoutVerbs(device.c_str());
}
Result<Pd> Pd::alloc(Context&) {
  return builtWithoutVerbs("Pd::alloc");
}
Mr::Mr(std::shared_ptr<const DeviceRef> ref, ibv_mr* mr) : ref_(std::move(ref)), mr_(mr) {}
Result<Mr> Pd::regMr(void*, size_t, int) const {
  return builtWithoutVerbs("Pd::regMr");
}
Result<Mr> Pd::regDmabufMr(uint64_t, size_t, uint64_t, int, int) const {
  return builtWithoutVerbs("Pd::regDmabufMr");
}
Result<CompChannel> CompChannel::create(Context&) {
  return builtWithoutVerbs("CompChannel::create");
}
Result<Cq> Cq::create(Context&, int, CompChannel*) {
  return builtWithoutVerbs("Cq::create");
}
Result<Qp> Qp::createRc(Pd&, Cq&, Cq&, const QpCaps&) {
  return builtWithoutVerbs("Qp::createRc");
}

#endif  // BRAID_HAVE_VERBS

}  // namespace braid::verbs
