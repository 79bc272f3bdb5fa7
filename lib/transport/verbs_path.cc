// The verbs data path of one endpoint (see verbs_path.h for the protocol).
#include "transport/verbs_path.h"

#include <fcntl.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"
#include "transport/verbs_lane.h"
#include "verbs/gid.h"

namespace braid {

std::string VerbsRail::name() const { return fmt::format("{}:{}", port.device, port.port); }

MemoryRegionImpl::~MemoryRegionImpl() {
  perRail.clear();
  for (auto& c : caches)
    if (c) c->invalidate(reinterpret_cast<const void*>(base), length);
}

RemoteKey encodeRemoteKey(const MemoryRegionImpl& m) {
  RemoteKey k;
  uint64_t addr = m.base, len = m.length;
  uint32_t n = static_cast<uint32_t>(std::min<size_t>(m.perRail.size(), wire::kMaxRails));
  std::memcpy(k.bytes, &addr, 8);
  std::memcpy(k.bytes + 8, &len, 8);
  for (uint32_t i = 0; i < n; ++i) std::memcpy(k.bytes + 16 + 4 * i, &m.perRail[i].rkey, 4);
  std::memcpy(k.bytes + 80, &n, 4);
  return k;
}

Result<DecodedRemoteKey> decodeRemoteKey(const RemoteKey& k) {
  DecodedRemoteKey d;
  std::memcpy(&d.addr, k.bytes, 8);
  std::memcpy(&d.length, k.bytes + 8, 8);
  std::memcpy(d.rkeys, k.bytes + 16, sizeof d.rkeys);
  std::memcpy(&d.rails, k.bytes + 80, 4);
  if (d.rails == 0 || d.rails > wire::kMaxRails || d.addr == 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("not a braid remote key ({} rails, address 0x{:x}): pass the bytes "
                              "of the peer's MemoryRegion::remoteKey()",
                              d.rails, d.addr));
  if (d.length == 0 || d.addr + d.length < d.addr)
    return Status(Code::kInvalidArgument,
                  fmt::format("not a braid remote key (a region of {} bytes at 0x{:x}): pass the "
                              "bytes of the peer's MemoryRegion::remoteKey()",
                              d.length, d.addr));
  return d;
}


bool parseEagerSend(const uint8_t* p, size_t bytes, uint64_t eagerMax, size_t lane,
                    ReceivedSend* out, size_t ctlLane) {
  return parseEagerSendInline(p, bytes, eagerMax, lane, out, ctlLane);
}

Status parseSend(const uint8_t* p, size_t bytes, uint64_t eagerMax, size_t lane,
                 ReceivedSend* out, size_t ctlLane) {
  wire::FrameHeader& h = out->hdr;
  h = {};
  if (bytes < wire::kEagerHeaderBytes)
    return Status(Code::kProtocolError,
                  fmt::format("{}-byte message: shorter than a frame header", bytes));
  std::memcpy(&h, p, wire::kEagerHeaderBytes);
  size_t hdrBytes = wire::kEagerHeaderBytes;
  if (h.type == static_cast<uint8_t>(wire::FrameType::kEager)) {
    h.offset = 0;
    h.total = h.length;
  } else {
    hdrBytes = sizeof h;
    if (bytes < hdrBytes)
      return Status(Code::kProtocolError,
                    fmt::format("{}-byte message of type {}: shorter than its header", bytes,
                                h.type));
    std::memcpy(&h, p, sizeof h);
  }
  // CTS entries riding after the payload: how many, and in which form.
  const uint32_t piggy = h.flags & wire::kPiggyCountMask;
  const bool full = (h.flags & wire::kPiggyFull) != 0;
  const size_t entryBytes = full ? sizeof(wire::CtsEntry) : sizeof(wire::CompactCts);
  h.flags = 0;
  BRAID_RETURN_IF_ERROR(wire::checkFrame(h, eagerMax, wire::Path::kVerbsSend));
  // The control lane (0, unless lane 0 failed: ctlLane) carries everything that is
  // ordered per tag (EAGER, RTS, TRUNCATED, cancel frames); a chunk's FIN travels on the
  // lane its RDMA writes took.
  if (lane != ctlLane && h.type != static_cast<uint8_t>(wire::FrameType::kFin))
    return Status(Code::kProtocolError,
                  fmt::format("a SEND of type {} on lane {}: only FIN travels on lanes other "
                              "than the control lane ({})",
                              h.type, lane, ctlLane));
  if (piggy > kMaxPiggyback || (piggy > 0 && lane != ctlLane))
    return Status(Code::kProtocolError,
                  fmt::format("a SEND carries {} clear-to-send entries (at most {}, on the "
                              "control lane only)",
                              piggy, kMaxPiggyback));
  if (hdrBytes + h.length + piggy * entryBytes != bytes)
    return Status(Code::kProtocolError,
                  fmt::format("frame says {} payload bytes and {} CTS entries, the SEND carried "
                              "{} bytes",
                              h.length, piggy, bytes));
  out->headerBytes = static_cast<uint32_t>(hdrBytes);
  out->riding = piggy;
  out->ridingFull = full;
  return Status::ok();
}

#if BRAID_HAVE_VERBS


namespace {
Result<AlignedBuf> allocAligned(size_t bytes) {
  size_t n = (bytes + 4095) & ~size_t{4095};
  void* p = std::aligned_alloc(4096, n);
  if (!p) return Status(Code::kNoMemory, fmt::format("cannot allocate {} bytes", n));
  std::memset(p, 0, n);
  return AlignedBuf(static_cast<uint8_t*>(p));
}


}  // namespace

Result<std::shared_ptr<const MemoryRegionImpl>> registerOnRails(const std::vector<VerbsRail>& rails,
                                                                const void* base, size_t len,
                                                                bool cached) {
  auto m = std::make_shared<MemoryRegionImpl>();
  m->base = reinterpret_cast<uintptr_t>(base);
  m->length = len;
  const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  for (const VerbsRail& r : rails) {
    MemoryRegionImpl::Keys k;
    if (cached) {
      Result<verbs::MrRef> ref = r.cache->get(base, len, access);
      if (!ref)
        return ref.status().withContext(
            fmt::format("registering {} bytes at {} on {}", len, base, r.name()));
      k.lkey = ref->lkey();
      k.rkey = ref->rkey();
      k.hold = std::make_shared<verbs::MrRef>(std::move(ref).value());
      m->caches.push_back(r.cache);
    } else {
      // Not cached: a request's buffer may be freed and its address reused by another
      // allocation once the request ends, and nothing tells braid (no memory hooks).
      Result<verbs::Mr> mr = r.pd->regMr(const_cast<void*>(base), len, access);
      if (!mr)
        return mr.status().withContext(
            fmt::format("registering {} bytes at {} on {}", len, base, r.name()));
      k.lkey = mr->lkey();
      k.rkey = mr->rkey();
      k.hold = std::make_shared<verbs::Mr>(std::move(mr).value());
    }
    m->perRail.push_back(std::move(k));
  }
  return std::shared_ptr<const MemoryRegionImpl>(std::move(m));
}

Result<std::shared_ptr<const MemoryRegionImpl>> registerDmabufOnRails(
    const std::vector<VerbsRail>& rails, const void* base, size_t len, int fd, uint64_t offset) {
  auto m = std::make_shared<MemoryRegionImpl>();
  m->base = reinterpret_cast<uintptr_t>(base);
  m->length = len;
  const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  for (const VerbsRail& r : rails) {
    Result<verbs::Mr> mr = r.pd->regDmabufMr(offset, len, reinterpret_cast<uint64_t>(base), fd,
                                             access);
    if (!mr)
      return mr.status().withContext(fmt::format(
          "registering dma-buf fd {} ({} bytes at offset {}, mapped at {}) on {}", fd, len,
          offset, base, r.name()));
    MemoryRegionImpl::Keys k;
    k.lkey = mr->lkey();
    k.rkey = mr->rkey();
    k.hold = std::make_shared<verbs::Mr>(std::move(mr).value());
    m->perRail.push_back(std::move(k));
  }
  return std::shared_ptr<const MemoryRegionImpl>(std::move(m));
}

bool dmabufOnRails(const std::vector<VerbsRail>& rails, std::string* why) {
  if (rails.empty()) {
    *why = "no verbs rails";
    return false;
  }
  for (const VerbsRail& r : rails) {
    if (r.lib->regDmabufMr == nullptr) {
      *why = "ibv_reg_dmabuf_mr is not in this libibverbs (rdma-core >= 34 needed)";
      return false;
    }
    errno = 0;
    ibv_mr* mr = r.lib->regDmabufMr(r.pd->get(), 0, 0, 0, -1, 0);
    int err = errno;
    if (mr != nullptr) {
      r.lib->deregMr(mr);  // not expected with fd -1; released all the same
      continue;
    }
    if (err == EOPNOTSUPP || err == EPROTONOSUPPORT) {
      *why = fmt::format("{} cannot register dma-bufs (ibv_reg_dmabuf_mr: {})", r.name(),
                         std::strerror(err));
      return false;
    }
  }
  *why = "ibv_reg_dmabuf_mr works on every rail";
  return true;
}

VerbsPath::VerbsPath(EndpointImpl* ep) : ep_(ep) {}

VerbsPath::~VerbsPath() {
  shutdown();
  // A later QP may get the same number: its rail must not inherit this one's events.
  for (auto& l : lanes_)
    if (l->rail->watcher && l->qp) l->rail->watcher->forgetQp(l->qpn());
  lanes_.clear();
  std::free(cb_);
}

std::string VerbsPath::laneName(size_t i) const {
  const Lane& l = *lanes_[i];
  return fmt::format("{} gid[{}] {} qpn 0x{:x}", l.rail->name(), l.rail->gidIndex,
                     verbs::gidToString(l.rail->gid), l.qpn());
}

const VerbsRail* VerbsPath::laneRail(size_t i) const { return lanes_[i]->rail; }

double VerbsPath::laneNominalBps(size_t i) const {
  const Lane& l = *lanes_[i];
  const double q = std::max(1, ep_->ctx->qpsPerRail);
  return l.rail->port.speedMbps * 1e6 / 8 / q;
}

Status VerbsPath::buildLane(Lane& l) {
  // Completion channel, CQ and QP (INIT) of a lane: at creation, and again for a rejoin
  // (the old ones are gone by then).
  const VerbsRail& r = *l.rail;
  Lane* lp = &l;
  const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  BRAID_ASSIGN_OR_RETURN(verbs::CompChannel ch, verbs::CompChannel::create(*r.dev));
  lp->channel.emplace(std::move(ch));
  int fl = ::fcntl(lp->channel->fd(), F_GETFL);
  if (fl < 0 || ::fcntl(lp->channel->fd(), F_SETFL, fl | O_NONBLOCK) != 0)
    return Status(Code::kSystemError,
                  fmt::format("making the completion channel of {} non-blocking: {}", r.name(),
                              verbs::errnoText(errno)));
  BRAID_ASSIGN_OR_RETURN(verbs::Cq cq, verbs::Cq::create(*r.dev, kMaxSendWr + kRecvSlots + 16,
                                                         &*lp->channel));
  lp->cq.emplace(std::move(cq));
  lp->waker.lane = lp;
  BRAID_RETURN_IF_ERROR(ep_->worker->poller.add(lp->channel->fd(), EPOLLIN, &lp->waker)
                            .withContext("watching the completion channel of " + r.name()));
  lp->inPoller = true;
  verbs::QpCaps caps{};
  caps.maxSendWr = kMaxSendWr;
  caps.maxRecvWr = kRecvSlots;
  caps.maxSendSge = 1;
  caps.maxRecvSge = 1;
  // Small SENDs (a header, a few bytes, a CTS or two) go inline: the provider copies them
  // into the work request and needs no MR lookup or DMA read (ibv_post_send(3),
  // IBV_SEND_INLINE). A device that cannot do it gets a QP without.
  caps.maxInlineData = kWantInline;
  auto qpOr = verbs::Qp::createRc(*r.pd, *lp->cq, *lp->cq, caps);
  if (!qpOr) {
    caps.maxInlineData = 0;
    qpOr = verbs::Qp::createRc(*r.pd, *lp->cq, *lp->cq, caps);
  }
  BRAID_ASSIGN_OR_RETURN(verbs::Qp qp, std::move(qpOr));
  lp->maxInline = qp.caps().maxInlineData;
  lp->qp.emplace(std::move(qp));
  BRAID_RETURN_IF_ERROR(verbs::toInit(*lp->qp, r.port.port, access));
  return Status::ok();
}

Result<std::unique_ptr<VerbsPath>> VerbsPath::create(EndpointImpl* ep,
                                                     const std::vector<VerbsRail>& rails) {
  std::unique_ptr<VerbsPath> p(new VerbsPath(ep));
  void* cb = std::aligned_alloc(4096, (sizeof(ControlBlock) + 4095) & ~size_t{4095});
  if (!cb) return Status(Code::kNoMemory, "cannot allocate the verbs control block");
  std::memset(cb, 0, sizeof(ControlBlock));
  p->cb_ = static_cast<ControlBlock*>(cb);
  p->ctsSlots_ = kCtsSlots;
  const size_t q = static_cast<size_t>(std::max(1, ep->ctx->qpsPerRail));
  for (size_t i = 0; i < rails.size() * q && i < wire::kMaxRails; ++i) {
    const VerbsRail& r = rails[i / q];
    Lane* l = p->lanes_.emplace_back(std::make_unique<Lane>()).get();
    l->index = i;
    l->railIndex = i / q;
    l->rail = &r;
    l->psn = verbs::randomPsn();
    BRAID_RETURN_IF_ERROR(p->buildLane(*l));
    BRAID_ASSIGN_OR_RETURN(verbs::Mr cbMr, r.pd->regMr(cb, sizeof(ControlBlock),
                                                       IBV_ACCESS_LOCAL_WRITE |
                                                           IBV_ACCESS_REMOTE_WRITE));
    l->cbMr.emplace(std::move(cbMr));
  }
  if (p->lanes_.empty()) return Status(Code::kNotFound, "no verbs rail to create a QP on");
  return p;
}

wire::VerbsRailDesc VerbsPath::descOf(const Lane& l) const {
  const verbs::PortInfo& pi = l.rail->port;
  wire::VerbsRailDesc d{};
  const int gi = l.rail->gidIndex;
  std::memcpy(d.gid, l.rail->gid.data(), 16);
  d.qpn = l.qpn();
  d.psn = l.psn;
  d.lid = pi.lid;
  d.linkLayer = static_cast<uint8_t>(pi.linkLayer);
  d.mtu = static_cast<uint8_t>(pi.activeMtu);
  d.recvSlots = kRecvSlots;
  d.ctsRingAddr = reinterpret_cast<uint64_t>(&cb_->ring[0]);
  d.ctsRingRkey = l.cbMr->rkey();
  d.ctsSlots = ctsSlots_;
  d.flowAddr = reinterpret_cast<uint64_t>(&cb_->flowIn);
  d.flowRkey = l.cbMr->rkey();
  d.port = static_cast<uint8_t>(pi.port);
  d.gidIndex = static_cast<uint8_t>(std::max(0, gi));
  d.railIndex = static_cast<uint16_t>(l.railIndex);
  std::memcpy(d.device, pi.device.data(), std::min(pi.device.size(), sizeof d.device - 1));
  return d;
}

std::vector<wire::VerbsRailDesc> VerbsPath::localDescs() const {
  std::vector<wire::VerbsRailDesc> out;
  for (const auto& lp : lanes_) out.push_back(descOf(*lp));
  return out;
}

Status VerbsPath::connectLane(Lane& l, const wire::VerbsRailDesc& peer) {
  // Receive slots posted (the peer's initial credits, not returns: the count of returns
  // goes on where it stood), then RTR and RTS against the peer's QP.
  l.peer = peer;
  const uint64_t returned = l.recvReposted;

  // A SEND is a frame header, up to eagerMax bytes of payload, and up to kMaxPiggyback
  // CTS entries riding along (lane 0).
  // A FIN's ranges take the payload's place (both sides size slots alike).
  const uint64_t payloadMax =
      std::max<uint64_t>(eagerMax_, wire::kFinRanges * sizeof(wire::FinRange));
  l.slotSize = static_cast<uint32_t>(
      (sizeof(wire::FrameHeader) + payloadMax + kMaxPiggyback * sizeof(wire::CtsEntry) + 63) &
      ~uint64_t{63});
  if (!l.slots) {  // a rejoin keeps the lane's slots and their registration
    BRAID_ASSIGN_OR_RETURN(l.slots, allocAligned(static_cast<size_t>(kRecvSlots + kSendSlots) *
                                                 l.slotSize));
    BRAID_ASSIGN_OR_RETURN(verbs::Mr mr,
                           l.rail->pd->regMr(l.slots.get(),
                                             static_cast<size_t>(kRecvSlots + kSendSlots) *
                                                 l.slotSize,
                                             IBV_ACCESS_LOCAL_WRITE));
    l.slotsMr.emplace(std::move(mr));
  }
  l.sendSge.lkey = l.slotsMr->lkey();
  l.sendWr.sg_list = &l.sendSge;
  l.sendWr.num_sge = 1;
  l.sendWr.opcode = IBV_WR_SEND;
  l.freeSendSlots.clear();
  for (uint32_t s = kSendSlots; s > 0; --s) l.freeSendSlots.push_back(s - 1);
  l.repostCount = 0;
  for (uint32_t s = 0; s < kRecvSlots; ++s) {  // not repostRecv: a rejoining lane is down
    l.repostSlots[l.repostCount++] = s;
    if (l.repostCount == kRepostBatch) BRAID_RETURN_IF_ERROR(flushReposts(l));
  }
  BRAID_RETURN_IF_ERROR(flushReposts(l));
  l.recvReposted = returned;  // the initial posts are the peer's initial credits, not returns
  verbs::QpEndpointInfo remote{};
  remote.qpn = l.peer.qpn;
  remote.psn = l.peer.psn;
  std::memcpy(remote.gid.data(), l.peer.gid, 16);
  remote.lid = l.peer.lid;
  remote.linkLayer = l.peer.linkLayer;
  remote.mtu = l.peer.mtu;
  Status st = verbs::toRtr(*l.qp, l.rail->tuning, static_cast<uint8_t>(l.rail->port.activeMtu),
                           remote);
  if (st.isOk()) st = verbs::toRts(*l.qp, l.rail->tuning, l.psn);
  if (!st.isOk())
    return st.withContext(fmt::format("connecting {} to peer rail {}", laneName(l.index),
                                      wire::verbsRailName(l.peer)));
  return Status::ok();
}

Status VerbsPath::connect(const std::vector<wire::VerbsRailDesc>& peer, size_t n,
                          uint64_t eagerMax) {
  if (n == 0 || n > lanes_.size() || n > peer.size())
    return Status(Code::kProtocolError,
                  fmt::format("{} verbs rails agreed, {} local and {} offered by the peer", n,
                              lanes_.size(), peer.size()));
  for (size_t i = n; i < lanes_.size(); ++i) unwatch(*lanes_[i]);  // unused lanes first
  lanes_.resize(n);
  eagerMax_ = eagerMax;
  for (size_t i = 0; i < n; ++i) {
    Lane& l = *lanes_[i];
    BRAID_RETURN_IF_ERROR(connectLane(l, peer[i]));
    l.connected = true;
  }
  return Status::ok();
}

uint64_t VerbsPath::bytesSentOnLane(size_t i) const {
  return i < lanes_.size() ? lanes_[i]->bytesSent : 0;
}

bool VerbsPath::sendsRetired() const {
  for (const auto& l : lanes_)
    if (l->connected && l->sqRetired < l->sqPosted) return false;
  return true;
}

bool VerbsPath::completionsAwaited() const {
  for (const auto& l : lanes_) {
    if (!l->connected) continue;
    for (uint64_t i = l->sqRetired; i < l->sqPosted; ++i) {
      const Lane::WrInfo& w = l->wrs[i % kMaxSendWr];
      if ((w.kind == kWrFin || w.kind == kWrRmaLast) && w.op != nullptr) return true;
    }
  }
  return false;
}

void VerbsPath::requestRetirement() {
  // An unsignaled SEND retires with the next signaled request on its QP (RC completes a
  // send queue in order): a flow-counter write, which is signaled, goes behind them.
  if (lanes_.empty()) return;
  Lane& l0 = *lanes_[ctl_];
  if (l0.sqRetired < l0.sqPosted && !flowInFlight_ && l0.backlog.empty() &&
      l0.ctlBacklog.empty())
    maybeWriteFlow(/*force=*/true);
}

void VerbsPath::shutdown() noexcept {
  for (auto& l : lanes_) {
    if (l->qp && l->connected) (void)verbs::toError(*l->qp);
    l->connected = false;
    // Out of the worker's epoll set now: the worker may be gone by the time this object
    // is (a Request can keep its endpoint alive).
    unwatch(*l);
  }
  pendingCts_.clear();
}

void VerbsPath::unwatch(Lane& l) noexcept {
  if (l.inPoller) ep_->worker->poller.remove(l.channel->fd());
  l.inPoller = false;
}

bool VerbsPath::armForSleep() {
  bool ok = true;
  for (auto& lp : lanes_) {
    Lane& l = *lp;
    if ((!l.connected && !l.down) || !l.inPoller) {
      ok = false;
      continue;
    }
    if (l.armed) continue;
    if (l.cq->reqNotify().isOk())
      l.armed = true;
    else
      ok = false;  // cannot sleep on it: poll as before
  }
  // What raises no completion here: a CTS written into our ring (a rendezvous send waits
  // for it), credits and ring space returned through the flow block (a backlog, a CTS
  // waiting for ring space).
  return ok && !backlogged_ && pendingCts_.empty() && (ep_->verbsGone || ep_->awaitingCts == 0);
}

// ---------------------------------------------------------------- posting

Status VerbsPath::repostRecv(Lane& l, uint32_t slot) {
  // A lane in the error state never uses the slot again (a rejoin posts them all anew);
  // one waiting for the connector's word after a rejoin takes SENDs already.
  if (l.down && l.join != Lane::Join::kAwaitUp) return Status::ok();
  l.repostSlots[l.repostCount++] = slot;
  if (l.repostCount == kRepostBatch) return flushReposts(l);
  return Status::ok();
}

Status VerbsPath::flushReposts(Lane& l) {
  const uint32_t n = l.repostCount;
  if (n == 0) return Status::ok();
  ibv_sge sge[kRepostBatch];
  ibv_recv_wr wr[kRepostBatch];
  for (uint32_t i = 0; i < n; ++i) {
    sge[i].addr = reinterpret_cast<uint64_t>(l.recvSlot(l.repostSlots[i]));
    sge[i].length = l.slotSize;
    sge[i].lkey = l.slotsMr->lkey();
    wr[i].wr_id = kRecvWrFlag | l.repostSlots[i];
    wr[i].sg_list = &sge[i];
    wr[i].num_sge = 1;
    wr[i].next = i + 1 < n ? &wr[i + 1] : nullptr;
  }
  l.repostCount = 0;
  ibv_recv_wr* bad = nullptr;
  int rc = verbs::postRecv(*l.rail->lib, l.qp->get(), wr, &bad);
  if (rc != 0)
    return Status(Code::kSystemError,
                  fmt::format("ibv_post_recv of {} receive buffers on {}: {}", n,
                              laneName(l.index), verbs::errnoText(rc)));
  l.recvReposted += n;
  flowDirty_ = true;
  return Status::ok();
}

void VerbsPath::post(size_t lane, const SendItem& item) {
  Lane& l = *lanes_[lane];
  core::Ring<SendItem>& q =
      item.kind == kWrCts || item.kind == kWrFlow ? l.ctlBacklog : l.backlog;
  if (q.empty() && tryPost(l, item)) return;
  q.push_back(item);
  backlogged_ = true;
}

bool VerbsPath::tryPost(Lane& l, const SendItem& item) {
  if (isSend(item.kind)) {
    // A FIN's payload is its batch's ranges (the batch lives until the FIN completes).
    const uint8_t* payload =
        item.kind == kWrFin
            ? reinterpret_cast<const uint8_t*>(l.batches[item.laddr - l.batchesDone].ranges)
            : item.payload;
    return trySend(l, item.kind, item.op, item.kind == kWrEager ? nullptr : &item.hdr, payload);
  }
  if (!l.connected) return false;
  if (l.sqPosted - l.sqRetired >= kMaxSendWr) return false;
  ibv_sge sge{};
  ibv_send_wr wr{};
  wr.sg_list = &sge;
  wr.num_sge = 1;
  bool signaled = true;
  sge.addr = item.laddr;
  sge.length = item.len;
  sge.lkey = item.lkey;
  wr.opcode = item.read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
  wr.wr.rdma.remote_addr = item.raddr;
  wr.wr.rdma.rkey = item.rkey;
  if (item.kind == kWrRmaLast) l.bytesInFlight += item.len;
  if (item.kind == kWrChunk) {
    // Unsignaled payload writes: the FIN that follows on this QP is signaled, and RC
    // completes a send queue in order (ibv_post_send(3): IBV_SEND_SIGNALED). Every
    // kSignalEvery-th is signaled anyway so a long run cannot fill the send queue.
    signaled = ++l.sinceSignal >= kSignalEvery;
    l.bytesInFlight += item.len;
  }
  if (signaled) wr.send_flags |= IBV_SEND_SIGNALED;
  return postWr(l, wr, item.kind, item.op, -1, item.len);
}

[[gnu::always_inline]] inline bool VerbsPath::trySend(Lane& l, uint8_t kind, OpState* op,
                                                      const wire::FrameHeader* frame,
                                                      const uint8_t* payload) {
  if (!l.connected) return false;
  if (l.sqPosted - l.sqRetired >= kMaxSendWr) return false;
  uint64_t reposted = __atomic_load_n(&cb_->flowIn.recvReposted[l.index], __ATOMIC_ACQUIRE);
  // Returns before a rejoin were for the old QP's slots (a late, smaller value counts 0).
  reposted = reposted > l.creditBase ? reposted - l.creditBase : 0;
  if (l.sendsPosted >= l.peer.recvSlots + reposted) return false;  // no credit
  if (l.freeSendSlots.empty()) return false;
  uint32_t slot = l.freeSendSlots.back();
  l.freeSendSlots.pop_back();
  uint8_t* p = l.sendSlot(slot);
  // An eager frame's header is made from its op (frame == nullptr) and goes short.
  wire::FrameHeader hdr;
  size_t hdrBytes;
  if (frame == nullptr) {
    hdr.magic = wire::kFrameMagic;
    hdr.type = static_cast<uint8_t>(wire::FrameType::kEager);
    hdr.length = static_cast<uint32_t>(op->len);
    hdr.tag = op->tag;
    hdr.seq = op->seq;
    hdr.offset = 0;  // not sent
    hdr.total = 0;
    hdrBytes = wire::kEagerHeaderBytes;
  } else {
    hdr = *frame;
    hdrBytes = sizeof hdr;
  }
  uint32_t piggy = 0;
  bool full = false;
  if (l.index == ctl_ && !pendingCts_.empty()) {
    full = pendingCts_.front().addr != 0;
    while (piggy < kMaxPiggyback && piggy < pendingCts_.size() &&
           (pendingCts_[piggy].addr != 0) == full)
      ++piggy;
  }
  hdr.flags = static_cast<uint8_t>(piggy | (full ? wire::kPiggyFull : 0));
  // Fixed-size copies (a few register moves), not a memcpy of a computed length.
  if (frame == nullptr)
    std::memcpy(p, &hdr, wire::kEagerHeaderBytes);
  else
    std::memcpy(p, &hdr, sizeof hdr);
  core::copyBytes(p + hdrBytes, payload, hdr.length);
  // Receives whose CTS has not gone out yet ride along on lane 0's SENDs instead of
  // costing an RDMA WRITE each (a ping carries the CTS of its pong). The peer sorts each
  // tag's CTS by seq, so they may overtake ring entries.
  // A run of entries of one form goes: compact ones for eager-only receives (24 bytes),
  // full ones for receives that can take a rendezvous (addresses and rkeys).
  uint8_t* dst = p + hdrBytes + hdr.length;
  for (uint32_t k = 0; k < piggy; ++k) {
    const wire::CtsEntry& e = pendingCts_.front();
    if (full) {
      std::memcpy(dst, &e, sizeof e);
      dst += sizeof e;
    } else {
      const wire::CompactCts c{e.tag, e.seq, e.capacity};
      std::memcpy(dst, &c, sizeof c);
      dst += sizeof c;
    }
    pendingCts_.pop_front();
  }
  l.sendSge.addr = reinterpret_cast<uint64_t>(p);
  l.sendSge.length = static_cast<uint32_t>(dst - p);
  // An eager SEND is a copy: the user's buffer is free once it is posted, so the send
  // completes now (when its CTS is in) and its work request needs no completion of its
  // own; every kSignalEvery-th is signaled so that the send slots and queue entries
  // before it retire (RC completes a send queue in order). FINs and notices are signaled.
  const bool eager = kind == kWrEager;
  const bool signaled = !eager || ++l.sinceSignal >= kSignalEvery;
  l.sendWr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
  if (l.sendSge.length <= l.maxInline) l.sendWr.send_flags |= IBV_SEND_INLINE;
  ++l.sendsPosted;
  postWr(l, l.sendWr, kind, eager ? nullptr : op, static_cast<int32_t>(slot),
         kind == kWrFin ? static_cast<uint32_t>(hdr.offset) : 0);
  if (eager) {
    --op->pendingFrames;
    if (op->finished)
      ep_->maybeRecycle(op);
    else if (op->pendingFrames == 0)  // an eager send needs no CTS: done once posted
      ep_->finishOk(op);
  }
  return true;
}

[[gnu::always_inline]] inline bool VerbsPath::postWr(Lane& l, ibv_send_wr& wr, uint8_t kind,
                                                     OpState* op, int32_t sendSlot,
                                                     uint32_t bytes) {
  if (wr.send_flags & IBV_SEND_SIGNALED) l.sinceSignal = 0;
  Lane::WrInfo info;
  info.kind = kind;
  info.op = op;
  info.sendSlot = sendSlot;
  info.bytes = bytes;
  wr.wr_id = l.sqPosted;
  l.wrs[l.sqPosted % kMaxSendWr] = info;
  ++l.sqPosted;
  ibv_send_wr* bad = nullptr;
  int rc = verbs::postSend(*l.rail->lib, l.qp->get(), &wr, &bad);
  if (rc != 0) {
    --l.sqPosted;
    if (info.sendSlot >= 0) {
      l.freeSendSlots.push_back(static_cast<uint32_t>(info.sendSlot));
      --l.sendsPosted;
    }
    ep_->fail(Status(Code::kSystemError,
                     fmt::format("ibv_post_send ({}) on {} to {}: {}", wrKindName(info.kind),
                                 laneName(l.index), wire::verbsRailName(l.peer),
                                 verbs::errnoText(rc))));
  }
  return true;  // consumed (on failure the endpoint is failed)
}

void VerbsPath::drainBacklogs() {
  bool left = false;
  for (auto& lp : lanes_) {
    Lane& l = *lp;
    for (core::Ring<SendItem>* q : {&l.ctlBacklog, &l.backlog}) {
      while (!q->empty() && ep_->state != EpState::kFailed && tryPost(l, q->front()))
        q->pop_front();
      left = left || !q->empty();
    }
  }
  backlogged_ = left;
}

void VerbsPath::sendEager(OpState* op) {
  ++op->pendingFrames;
  // Straight to the wire when nothing waits ahead of it on lane 0 (the common case): no
  // SendItem is built, the header is written into the send slot from the op.
  Lane& l = *lanes_[ctl_];
  if (l.backlog.empty() && trySend(l, kWrEager, op, nullptr, op->buf)) return;
  SendItem it;
  it.kind = kWrEager;
  it.op = op;
  it.payload = op->buf;
  l.backlog.push_back(it);
  backlogged_ = true;
}

void VerbsPath::sendTruncated(uint64_t tag, uint64_t seq, uint64_t total) {
  SendItem it;
  it.kind = kWrNotice;
  it.hdr = wire::makeFrame(wire::FrameType::kTruncated, tag, seq, total);
  post(ctl_, it);
}

void VerbsPath::sendRts(uint64_t tag, uint64_t seq, uint64_t total) {
  SendItem it;
  it.kind = kWrNotice;
  it.hdr = wire::makeFrame(wire::FrameType::kRts, tag, seq, total);
  post(ctl_, it);
}

void VerbsPath::sendNotice(const wire::FrameHeader& h) {
  SendItem it;
  it.kind = kWrNotice;
  it.hdr = h;
  post(ctl_, it);
}

std::vector<RailSnapshot>& VerbsPath::snapshotLanes(const uint32_t* rkeys, uint32_t keyRails) {
  // The monitor's estimates (rates, completion times, health), with what the lanes know
  // better: bytes posted and not retired, and which lanes the buffer has an rkey for.
  std::vector<RailSnapshot>& snaps = ep_->snaps;
  ep_->monitor.snapshot(snaps);
  snaps.resize(lanes_.size());
  for (size_t i = 0; i < lanes_.size(); ++i) {
    const Lane& l = *lanes_[i];
    RailSnapshot& s = snaps[i];
    s.rail = static_cast<uint32_t>(i);
    s.bytesInFlight = l.bytesInFlight;
    if (!l.connected || l.peer.railIndex >= keyRails || rkeys[l.peer.railIndex] == 0)
      s.health = transport::RailHealth::kDown;
  }
  return snaps;
}

void VerbsPath::startRendezvous(OpState* op, const wire::CtsEntry& cts,
                                const MemoryRegionImpl* mr) {
  if (!mr || mr->perRail.size() <= lanes_.back()->railIndex) {
    ep_->fail(Status(Code::kInvalidArgument,
                     fmt::format("message {} of tag {}: its MemoryRegion was deregistered while "
                                 "the send was in flight",
                                 op->seq, op->tag)));
    return;
  }
  op->raddr = cts.addr;
  std::memcpy(op->rkeys, cts.rkeys, sizeof op->rkeys);
  std::vector<RailSnapshot>& snaps = snapshotLanes(cts.rkeys, wire::kMaxRails);
  ep_->scheduler.plan(op->len, snaps, ep_->plan);
  if (ep_->plan.empty()) {
    ep_->fail(Status(Code::kProtocolError,
                     fmt::format("clear-to-send for tag {} seq {} gives no rkey for any rail",
                                 cts.tag, cts.seq)));
    return;
  }
  postPlan(op, ep_->plan, /*rma=*/false);
}

bool VerbsPath::prepareRma(OpState* op, const DecodedRemoteKey& remote, uint64_t offset) {
  if (!op->reg || op->reg->perRail.size() <= lanes_.back()->railIndex) {
    ep_->finish(op, Status(Code::kInvalidArgument, "the local MemoryRegion was deregistered"));
    return false;
  }
  op->raddr = remote.addr + offset;
  std::memset(op->rkeys, 0, sizeof op->rkeys);
  std::memcpy(op->rkeys, remote.rkeys, std::min<size_t>(remote.rails, wire::kMaxRails) * 4);
  return true;
}

void VerbsPath::startRma(OpState* op, const DecodedRemoteKey& remote, uint64_t offset) {
  if (!prepareRma(op, remote, offset)) return;
  std::vector<RailSnapshot>& snaps = snapshotLanes(remote.rkeys, remote.rails);
  ep_->scheduler.plan(op->len, snaps, ep_->plan);
  if (ep_->plan.empty()) {
    ep_->finish(op, Status(Code::kInvalidArgument,
                           "the remote key has no rkey for any rail of this endpoint"));
    return;
  }
  postPlan(op, ep_->plan, /*rma=*/true);
}

void VerbsPath::postPlan(OpState* op, const std::vector<Chunk>& plan, bool rma) {
  // Which chunks close their lane's batch: a lane's last, and one after which the lane's
  // next chunk would open a (kFinRanges + 1)-th range.
  batchEnd_.assign(plan.size(), 0);
  size_t prev[wire::kMaxRails];
  uint32_t ranges[wire::kMaxRails] = {};
  uint64_t end[wire::kMaxRails] = {};
  std::fill(std::begin(prev), std::end(prev), SIZE_MAX);
  for (size_t k = 0; k < plan.size(); ++k) {
    const Chunk& c = plan[k];
    const uint32_t i = c.rail;
    if (prev[i] == SIZE_MAX || end[i] != c.offset) {
      if (ranges[i] == wire::kFinRanges) {
        batchEnd_[prev[i]] = 1;
        ranges[i] = 0;
      }
      ++ranges[i];
    }
    end[i] = c.offset + c.length;
    prev[i] = k;
  }
  for (size_t i = 0; i < wire::kMaxRails; ++i)
    if (prev[i] != SIZE_MAX) batchEnd_[prev[i]] = 1;
  const uint64_t now = core::nowNs();
  bool open[wire::kMaxRails] = {};
  for (size_t k = 0; k < plan.size() && ep_->state != EpState::kFailed; ++k) {
    const Chunk& c = plan[k];
    Lane& l = *lanes_[c.rail];
    if (!open[c.rail]) {
      Lane::Batch& nb = l.batches.emplace_back();
      nb.postedNs = now;
      nb.bytes = 0;
      nb.op = op;
      nb.kind = rma ? kWrRmaLast : kWrFin;
      nb.nranges = 0;
      open[c.rail] = true;
    }
    Lane::Batch& b = l.batches.back();
    if (b.nranges > 0 && b.ranges[b.nranges - 1].offset + b.ranges[b.nranges - 1].length == c.offset)
      b.ranges[b.nranges - 1].length += c.length;
    else
      b.ranges[b.nranges++] = {c.offset, c.length};
    b.bytes += c.length;
    SendItem it;
    it.kind = rma && batchEnd_[k] ? kWrRmaLast : kWrChunk;
    it.op = op;
    it.read = op->kind == OpState::Kind::kRead;
    it.laddr = reinterpret_cast<uint64_t>(op->buf) + c.offset;
    it.len = static_cast<uint32_t>(c.length);
    it.lkey = op->reg->perRail[l.railIndex].lkey;
    it.raddr = op->raddr + c.offset;
    it.rkey = op->rkeys[l.peer.railIndex];
    if (it.kind == kWrRmaLast) ++op->pendingFrames;
    const uint64_t batchBytes = b.bytes;
    const auto batchNo = static_cast<uint64_t>(l.batchesDone + l.batches.size() - 1);
    const uint32_t finLength = b.nranges * static_cast<uint32_t>(sizeof(wire::FinRange));
    post(c.rail, it);
    if (!batchEnd_[k]) continue;
    open[c.rail] = false;
    ep_->monitor.chunkPosted(c.rail, batchBytes, now);
    if (rma) continue;
    // RC delivers a QP's operations in order: the FIN lands after the writes before it.
    SendItem fin;
    fin.kind = kWrFin;
    fin.op = op;
    fin.hdr = wire::makeFrame(wire::FrameType::kFin, op->tag, op->seq, op->len, finLength,
                              batchBytes);
    fin.laddr = batchNo;
    ++op->pendingFrames;
    post(c.rail, fin);
  }
}

// ---------------------------------------------------------------- CTS and flow

Status VerbsPath::postReceive(OpState* op, const MemoryRegionImpl* mr) {
  // The entry is built now: the op may finish and be recycled before ring space frees.
  // Written at the next progress, not now: a send posted right after this receive (a
  // ping-pong) then goes first on the wire instead of queueing behind the CTS.
  // Built in place; an eager-only receive (answering an RTS) fills only what its compact
  // form carries (addr 0: the peer reads no rkeys).
  wire::CtsEntry& e = pendingCts_.emplace_back();
  e.tag = op->tag;
  e.seq = op->seq;
  e.capacity = op->len;
  e.addr = 0;
  if (op->len > eagerMax_) {
    e = wire::CtsEntry{};
    e.tag = op->tag;
    e.seq = op->seq;
    e.capacity = op->len;
    e.addr = reinterpret_cast<uint64_t>(op->buf);
    for (const auto& l : lanes_) e.rkeys[l->railIndex] = mr->perRail[l->railIndex].rkey;
  }
  return Status::ok();
}

void VerbsPath::writeWaitingCts() {
  while (!pendingCts_.empty()) {
    uint64_t consumed = __atomic_load_n(&cb_->flowIn.ctsConsumed, __ATOMIC_ACQUIRE);
    if (ctsWritten_ - consumed >= ctsSlots_) return;
    wire::CtsEntry e = pendingCts_.front();
    pendingCts_.pop_front();
    if (e.addr == 0) {  // an eager-only entry was built with its three fields only
      std::memset(e.rkeys, 0, sizeof e.rkeys);
      std::memset(e.reserved, 0, sizeof e.reserved);
    }
    uint32_t slot = static_cast<uint32_t>(ctsWritten_ & (ctsSlots_ - 1));
    e.ordinal = e.ordinalHead = ++ctsWritten_;
    cb_->ctsOut[slot] = e;
    Lane& l = *lanes_[ctl_];
    SendItem it;
    it.kind = kWrCts;
    it.laddr = reinterpret_cast<uint64_t>(&cb_->ctsOut[slot]);
    it.len = sizeof(wire::CtsEntry);
    it.lkey = l.cbMr->lkey();
    it.raddr = l.peer.ctsRingAddr + static_cast<uint64_t>(slot) * sizeof(wire::CtsEntry);
    it.rkey = l.peer.ctsRingRkey;
    post(ctl_, it);
  }
}

void VerbsPath::pollCtsRing() {
  for (;;) {
    wire::CtsEntry& slot = cb_->ring[ctsConsumed_ & (ctsSlots_ - 1)];
    uint64_t ord = __atomic_load_n(&slot.ordinal, __ATOMIC_ACQUIRE);
    if (ord != ctsConsumed_ + 1) return;
    if (__atomic_load_n(&slot.ordinalHead, __ATOMIC_ACQUIRE) != ord) return;  // still landing
    wire::CtsEntry e;
    std::memcpy(&e, &slot, sizeof e);
    ++ctsConsumed_;
    cb_->flowOut.ctsConsumed = ctsConsumed_;
    flowDirty_ = true;
    ++rxEvents_;
    ep_->onCts(e);
    if (ep_->state == EpState::kFailed) return;
  }
}

void VerbsPath::maybeWriteFlow(bool force) {
  // flowDirty_ stays set while a write cannot go (one in flight, lane 0 not up): its
  // completion sets it again anyway.
  if (flowInFlight_ || lanes_.empty() || !lanes_[ctl_]->connected) return;
  flowDirty_ = false;
  // Lazily: only once half of a ring or of a lane's receive slots is owed to the peer.
  // Never a deadlock: a peer blocked on credit (or ring space) has used them all, so more
  // than half are owed, and this side reports them at its next progress.
  bool due = ctsConsumed_ - cb_->flowSend.ctsConsumed >= kCtsSlots / 2;
  for (size_t i = 0; i < lanes_.size(); ++i) {
    cb_->flowOut.recvReposted[i] = lanes_[i]->recvReposted;
    due = due || lanes_[i]->recvReposted - cb_->flowSend.recvReposted[i] >= kRecvSlots / 2;
  }
  if (!due && !force) return;
  Lane& l = *lanes_[ctl_];
  cb_->flowSend = cb_->flowOut;
  SendItem it;
  it.kind = kWrFlow;
  it.laddr = reinterpret_cast<uint64_t>(&cb_->flowSend);
  it.len = sizeof(wire::FlowBlock);
  it.lkey = l.cbMr->lkey();
  it.raddr = l.peer.flowAddr;
  it.rkey = l.peer.flowRkey;
  flowInFlight_ = true;
  post(ctl_, it);
}

#else  // BRAID_HAVE_VERBS: built without verbs; Lib::load() fails, so no VerbsPath is ever made.

struct VerbsPath::Lane {};
struct VerbsPath::ControlBlock {};

Result<std::shared_ptr<const MemoryRegionImpl>> registerDmabufOnRails(
    const std::vector<VerbsRail>&, const void*, size_t, int, uint64_t) {
  return verbs::builtWithoutVerbs("dma-buf registration");
}

bool dmabufOnRails(const std::vector<VerbsRail>&, std::string* why) {
  *why = "built without verbs";
  return false;
}

Result<std::shared_ptr<const MemoryRegionImpl>> registerOnRails(const std::vector<VerbsRail>&,
                                                                const void*, size_t, bool) {
  return verbs::builtWithoutVerbs("memory registration");
}
VerbsPath::VerbsPath(EndpointImpl* ep) : ep_(ep) {}
VerbsPath::~VerbsPath() = default;
Result<std::unique_ptr<VerbsPath>> VerbsPath::create(EndpointImpl*, const std::vector<VerbsRail>&) {
  return verbs::builtWithoutVerbs("the verbs transport");
}
std::vector<wire::VerbsRailDesc> VerbsPath::localDescs() const { return {}; }
void VerbsPath::onLaneJoin(const wire::FrameHeader&, const uint8_t*) {}
void VerbsPath::onLaneJoinAck(const wire::FrameHeader&, const uint8_t*) {}
void VerbsPath::onLaneUp(const wire::FrameHeader&) {}
Status VerbsPath::connect(const std::vector<wire::VerbsRailDesc>&, size_t, uint64_t) {
  return verbs::builtWithoutVerbs("the verbs transport");
}
std::string VerbsPath::laneName(size_t) const { return "?"; }
double VerbsPath::laneNominalBps(size_t) const { return 0; }
const VerbsRail* VerbsPath::laneRail(size_t) const { return nullptr; }
Status VerbsPath::postReceive(OpState*, const MemoryRegionImpl*) {
  return verbs::builtWithoutVerbs("the verbs transport");
}
void VerbsPath::sendEager(OpState*) {}
void VerbsPath::startRendezvous(OpState*, const wire::CtsEntry&, const MemoryRegionImpl*) {}
void VerbsPath::startRma(OpState*, const DecodedRemoteKey&, uint64_t) {}
void VerbsPath::sendTruncated(uint64_t, uint64_t, uint64_t) {}
void VerbsPath::sendRts(uint64_t, uint64_t, uint64_t) {}
void VerbsPath::sendNotice(const wire::FrameHeader&) {}
void VerbsPath::writeWaitingCts() {}
size_t VerbsPath::progress() { return 0; }
void VerbsPath::tick(uint64_t) {}
void VerbsPath::shutdown() noexcept {}
bool VerbsPath::armForSleep() { return false; }
bool VerbsPath::sendsRetired() const { return true; }
bool VerbsPath::completionsAwaited() const { return false; }
void VerbsPath::requestRetirement() {}
Status VerbsPath::railFailure() const { return Status::ok(); }
uint64_t VerbsPath::bytesSentOnLane(size_t) const { return 0; }
void VerbsPath::peerLaneDown(uint64_t) {}
void VerbsPath::onRecheck(const wire::FrameHeader&) {}
void VerbsPath::onRecheckReply(const wire::FrameHeader&) {}
bool VerbsPath::laneDown(size_t) const { return false; }

#endif  // BRAID_HAVE_VERBS

}  // namespace braid
