// The verbs data path's completions: send and receive completions, the received SENDs,
// liveness and the lanes' failures (see verbs_path.h for the protocol).
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"
#include "transport/verbs_lane.h"

#if BRAID_HAVE_VERBS
namespace braid {

// ---------------------------------------------------------------- completions

std::string VerbsPath::describeWc(const Lane& l, int status, uint32_t vendorErr,
                                  int kind) const {
  const char* s = l.rail->lib->wcStatusStr
                      ? l.rail->lib->wcStatusStr(static_cast<ibv_wc_status>(status))
                      : "?";
  std::string hint;
  switch (status) {
    case IBV_WC_REM_ACCESS_ERR:
      hint = ": the peer's buffer was deregistered or is smaller than announced";
      break;
    case IBV_WC_RETRY_EXC_ERR:
      hint = ": the peer stopped answering (dead host, link down, or GID/MTU mismatch); "
             "check the link and BRAID_IB_GID_INDEX";
      break;
    case IBV_WC_RNR_RETRY_EXC_ERR:
      hint = ": the peer posted no receive buffer in time";
      break;
    default:
      break;
  }
  return fmt::format("{} on {} to peer {} ({}) failed: {} (status {}, vendor_err 0x{:x}){}",
                     kind >= 0 ? wrKindName(static_cast<uint8_t>(kind)) : "receive",
                     laneName(l.index), ep_->peer, wire::verbsRailName(l.peer), s, status,
                     vendorErr, hint);
}

void VerbsPath::batchDone(Lane& l) {
  if (l.batches.empty()) return;
  const Lane::Batch& b = l.batches.front();
  ep_->monitor.chunkCompleted(static_cast<uint32_t>(l.index), b.bytes, b.postedNs, core::nowNs());
  l.batches.pop_front();
  ++l.batchesDone;
}

void VerbsPath::onSendCompletion(Lane& l, uint64_t wrId) {
  // Retire every work request up to wrId: unsignaled ones before it completed with it.
  while (l.sqRetired <= wrId && l.sqRetired < l.sqPosted) {
    Lane::WrInfo info = l.wrs[l.sqRetired % kMaxSendWr];
    l.wrs[l.sqRetired % kMaxSendWr] = Lane::WrInfo();
    ++l.sqRetired;
    if (info.sendSlot >= 0) l.freeSendSlots.push_back(static_cast<uint32_t>(info.sendSlot));
    switch (info.kind) {
      case kWrChunk:
        l.bytesInFlight -= std::min<uint64_t>(l.bytesInFlight, info.bytes);
        l.bytesSent += info.bytes;
        if (l.index < ep_->links.size()) ++ep_->links[l.index].chunks;
        // A one-sided op's chunks count per rail here (a rendezvous counts at its FIN).
        // The op is alive: its last chunk on this lane retires after this one.
        if (info.op && info.op->kind != OpState::Kind::kSend && !info.op->finished &&
            l.index < ep_->stats.bytesSentPerRail.size())
          ep_->stats.bytesSentPerRail[l.index] += info.bytes;
        break;
      case kWrRmaLast: {
        batchDone(l);
        l.bytesInFlight -= std::min<uint64_t>(l.bytesInFlight, info.bytes);
        l.bytesSent += info.bytes;
        if (l.index < ep_->links.size()) ++ep_->links[l.index].chunks;
        OpState* op = info.op;
        if (!op) break;
        if (!op->finished && l.index < ep_->stats.bytesSentPerRail.size())
          ep_->stats.bytesSentPerRail[l.index] += info.bytes;
        --op->pendingFrames;
        if (!op->finished) {
          op->bytesDone += info.bytes;
          if (op->pendingFrames == 0) ep_->finishOk(op);
        } else {
          ep_->maybeRecycle(op);
        }
        break;
      }
      case kWrProbe:  // pollLane tells onProbeDone how it went
        break;
      case kWrFlow:
        flowInFlight_ = false;
        flowDirty_ = true;  // more may be owed by now
        break;
      case kWrFin: {  // an eager SEND's request finished when posted: it records no op
        batchDone(l);
        OpState* op = info.op;
        if (!op) break;
        --op->pendingFrames;
        if (!op->finished && l.index < ep_->stats.bytesSentPerRail.size())
          ep_->stats.bytesSentPerRail[l.index] += info.bytes;
        if (!op->finished) {
          if (op->pendingFrames == 0) ep_->finishOk(op);
        } else {
          ep_->maybeRecycle(op);
        }
        break;
      }
      default:
        break;
    }
  }
}

[[gnu::always_inline]] inline void VerbsPath::onRecv(Lane& l, uint32_t slot, uint32_t bytes) {
  const uint8_t* p = l.recvSlot(slot);
  // Fast path: a well-formed eager frame, maybe with CTS riding along (the common case).
  // Anything else, or anything off, takes the full path below, which names what is wrong.
  ReceivedSend s;
  if (parseEagerSendInline(p, bytes, eagerMax_, l.index, &s, ctl_)) {
    const uint8_t* payload = p + wire::kEagerHeaderBytes;
    if (s.riding > 0 && !takeRidingCts(payload + s.hdr.length, s.riding, s.ridingFull)) return;
    ep_->onEager(s.hdr.tag, s.hdr.seq, payload, s.hdr.length);
    if (ep_->state == EpState::kFailed) return;
    Status rs = repostRecv(l, slot);
    if (!rs.isOk()) ep_->fail(rs);
    return;
  }
  onRecvFrame(l, slot, bytes);
}

bool VerbsPath::takeRidingCts(const uint8_t* src, uint32_t count, bool full) {
  // Ring entries and entries riding on SENDs can be seen in either order (a ring entry
  // written after this SEND may land before its completion is polled): EndpointImpl
  // keeps each tag's CTS sorted by seq.
  for (uint32_t k = 0; k < count; ++k) {
    if (full) {
      wire::CtsEntry e;
      std::memcpy(&e, src, sizeof e);
      src += sizeof e;
      ep_->onCts(e);
    } else {
      wire::CompactCts c;
      std::memcpy(&c, src, sizeof c);
      src += sizeof c;
      ep_->onCtsCompact(c.tag, c.seq, c.capacity);
    }
    if (ep_->state == EpState::kFailed) return false;
  }
  return true;
}

void VerbsPath::onRecvLate(Lane& l, uint32_t slot, uint32_t bytes) {
  const uint8_t* p = l.recvSlot(slot);
  ReceivedSend s;
  // Checked as if it were the control lane: it may have been when the peer sent it (the
  // control lane moves with a return to RDMA), and what it carries may be a duplicate.
  Status st = parseSend(p, bytes, eagerMax_, l.index, &s, l.index);
  if (!st.isOk()) return ep_->fail(st.withContext(laneName(l.index)));
  // CTS ride only on the control lane, and a late SEND there means it failed: the endpoint
  // moved to TCP, where every receive's CTS goes again (and again over verbs on the
  // return). Riding ones are moot.
  ep_->onFrameAgain(s.hdr, p + s.headerBytes);
  // A lane that rejoined on this side and waits for the connector's word takes SENDs: its
  // slots go back as on a lane that is up.
  if (l.join == Lane::Join::kAwaitUp && ep_->state == EpState::kConnected) {
    Status rs = repostRecv(l, slot);
    if (!rs.isOk()) ep_->fail(rs);
  }
}

void VerbsPath::onRecvFrame(Lane& l, uint32_t slot, uint32_t bytes) {
  const uint8_t* p = l.recvSlot(slot);
  ReceivedSend s;
  Status st = parseSend(p, bytes, eagerMax_, l.index, &s, ctl_);
  if (!st.isOk()) return ep_->fail(st.withContext(laneName(l.index)));
  const wire::FrameHeader& h = s.hdr;
  const size_t hdrBytes = s.headerBytes;
  if (s.riding > 0 && !takeRidingCts(p + hdrBytes + h.length, s.riding, s.ridingFull)) return;
  switch (static_cast<wire::FrameType>(h.type)) {
    case wire::FrameType::kEager:
    case wire::FrameType::kTruncated:
    case wire::FrameType::kCancelRecv:
    case wire::FrameType::kCancelReply:
    case wire::FrameType::kCancelSend:
      ep_->onFrame(h, p + hdrBytes);
      break;
    case wire::FrameType::kFin:
      ep_->onFin(h, p + hdrBytes);
      break;
    case wire::FrameType::kRts:
      ep_->onRts(h);
      break;
    default:
      return ep_->fail(Status(Code::kProtocolError,
                              fmt::format("frame type {} over verbs on {}", h.type,
                                          laneName(l.index))));
  }
  if (ep_->state == EpState::kFailed) return;
  Status rs = repostRecv(l, slot);
  if (!rs.isOk()) return ep_->fail(rs);
}

bool VerbsPath::pollLane(Lane& l) {
  ibv_wc wc[kPollBatch];
  int n = verbs::pollCq(*l.rail->lib, l.cq->get(), kPollBatch, wc);
  if (n < 0) {
    ep_->fail(
        Status(Code::kSystemError, fmt::format("ibv_poll_cq on {} failed", laneName(l.index))));
    return false;
  }
  if (n == 0) {
    // Idle: the time to give the consumed receive slots back to the device.
    if (l.repostCount > 0 && ep_->state != EpState::kFailed) {
      Status rs = flushReposts(l);
      if (!rs.isOk()) ep_->fail(rs);
    }
    return false;
  }
  ++rxEvents_;
  for (int i = 0; i < n; ++i) {
    const ibv_wc& w = wc[i];
    const bool isRecv = (w.wr_id & kRecvWrFlag) != 0;
    if (w.status != IBV_WC_SUCCESS) {
      if (l.down) {  // given up: its queues flush
        if (isRecv) {
          l.rqFlushed = true;
        } else if (l.wrs[w.wr_id % kMaxSendWr].kind == kWrProbe) {
          onSendCompletion(l, w.wr_id);
          onProbeDone(l, false, describeWc(l, w.status, w.vendor_err, kWrProbe));
        } else {
          onSendCompletion(l, w.wr_id);
        }
        continue;
      }
      int kind = isRecv ? -1 : l.wrs[w.wr_id % kMaxSendWr].kind;
      if (ep_->state != EpState::kFailed) {
        Status root = railStatus(l);
        // The lane goes before this completion retires anything: a flushed FIN or write
        // must not count as done.
        if (!root.isOk()) {
          laneFailed(l, railFailedStatus(l, root), /*tellPeer=*/true);
        } else if (w.status == IBV_WC_WR_FLUSH_ERR || w.status == IBV_WC_RETRY_EXC_ERR ||
                   w.status == IBV_WC_FATAL_ERR || w.status == IBV_WC_RESP_TIMEOUT_ERR) {
          // The path failed (the peer's NIC stopped answering): the lane goes, the
          // endpoint goes on over the others.
          laneFailed(l, Status(Code::kCompletionError, describeWc(l, w.status, w.vendor_err, kind)),
                     /*tellPeer=*/true);
        } else {
          // A protection or protocol error (a buffer deregistered under a transfer, a
          // bad key or length): another lane would fail alike, and moving to TCP would
          // write into memory its owner withdrew.
          ep_->fail(Status(Code::kCompletionError, describeWc(l, w.status, w.vendor_err, kind)));
        }
      }
      if (isRecv) {
        if (l.down) l.rqFlushed = true;
      } else {
        onSendCompletion(l, w.wr_id);
      }
      continue;
    }
    if (isRecv) {
      if (ep_->state == EpState::kFailed) continue;
      if (l.down)  // arrived before the lane failed: maybe sent again since
        onRecvLate(l, static_cast<uint32_t>(w.wr_id & ~kRecvWrFlag), w.byte_len);
      else
        onRecv(l, static_cast<uint32_t>(w.wr_id & ~kRecvWrFlag), w.byte_len);
    } else {
      const bool probe = l.down && l.wrs[w.wr_id % kMaxSendWr].kind == kWrProbe;
      onSendCompletion(l, w.wr_id);
      if (probe) onProbeDone(l, true, {});
    }
  }
  return n > 0;
}

size_t VerbsPath::progress() {
  // Called on every poll of a busy-polling caller: each step is skipped unless it has
  // something to do (one load or flag each), so that a poll costs little more than the CQ
  // polls and a message is seen soon after it lands.
  size_t n = 0;
  if (ep_->verbsGone) {
    // Moved to TCP: the lanes that are down drain (the peer's rechecks wait on them) and
    // complete their rejoin probes; one that is back waits for the return to RDMA (what
    // the peer sends on it after returning is taken after this side returned).
    for (auto& l : lanes_)
      if (l->down && pollLane(*l)) ++n;
    if (ep_->state == EpState::kConnected && !pendingRechecks_.empty()) answerRechecks();
    return n;
  }
  for (auto& l : lanes_)
    if (pollLane(*l)) ++n;
  if (ep_->state == EpState::kFailed) return n;
  const wire::CtsEntry& next = cb_->ring[ctsConsumed_ & (ctsSlots_ - 1)];
  if (__atomic_load_n(&next.ordinal, __ATOMIC_ACQUIRE) == ctsConsumed_ + 1) {
    uint64_t before = ctsConsumed_;
    pollCtsRing();
    n += ctsConsumed_ - before;
    if (ep_->state == EpState::kFailed) return n;
  }
  if (!pendingCts_.empty()) writeWaitingCts();
  if (!pendingRechecks_.empty()) answerRechecks();
  if (backlogged_) drainBacklogs();
  if (flowDirty_) maybeWriteFlow();
  return n;
}

Status VerbsPath::railStatus(const Lane& l) const {
  if (!l.rail->watcher) return Status::ok();
  Status st = l.rail->watcher->deviceStatus();
  if (st.isOk()) st = l.rail->watcher->portStatus(l.rail->port.port);
  if (st.isOk()) st = l.rail->watcher->qpStatus(l.qpn());
  return st;
}

Status VerbsPath::railFailedStatus(const Lane& l, const Status& cause) const {
  return Status(Code::kRailFailed,
                fmt::format("{} to peer {}: {}", laneName(l.index), ep_->peer, cause.message()));
}

Status VerbsPath::railFailure() const {
  for (const auto& lp : lanes_) {
    if (lp->down) continue;
    Status st = railStatus(*lp);
    if (!st.isOk()) return railFailedStatus(*lp, st);
  }
  return Status::ok();
}

void VerbsPath::failRail(const Lane& l, const Status& cause) {
  ep_->fail(railFailedStatus(l, cause));
}

void VerbsPath::tick(uint64_t now) {
  // Liveness: completions or ring entries since the last tick count as hearing the peer
  // (counted on the data path, stamped here: no clock read per message).
  if (rxEvents_ != rxEventsSeen_) {
    rxEventsSeen_ = rxEvents_;
    ep_->lastRxNs = now;
  }
  for (auto& lp : lanes_) {
    if (lp->down) continue;
    Status st = railStatus(*lp);
    if (!st.isOk()) {
      laneFailed(*lp, railFailedStatus(*lp, st), /*tellPeer=*/true);
      if (ep_->state != EpState::kConnected) return;
    }
  }
  if (ep_->state == EpState::kConnected && !pendingRechecks_.empty()) answerRechecks();
  if (ep_->state == EpState::kConnected && !ep_->isServer) {
    rejoinTick(now);
    if (ep_->verbsGone && ep_->state == EpState::kConnected) ep_->maybeOfferReturn(now);
  }
}

}  // namespace braid
#endif  // BRAID_HAVE_VERBS
