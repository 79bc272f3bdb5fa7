// Verbs lane failure (docs/protocol.md, "Verbs lane failure").
//
// A lane fails on a work-completion error, a fatal async event of its device, port or QP,
// or the peer's word (kRailDown on the TCP control socket). Lane 0 carries the CTS ring,
// the credits and the eager messages: its failure, or the last lane's, fails the endpoint
// as before. Any other lane is given up (moved to the error state, never used again; the
// scheduler plans around it) and what it left in doubt goes again:
// - one-sided batches are written (read) again on a live lane: the target's memory is the
//   initiator's until the op completes, so writing it twice is harmless;
// - rendezvous batches are not: a FIN may have arrived (its acknowledgement lost), the
//   receive finished and its buffer gone back to the user. The sender asks instead
//   (kRecheck, per range, on the control socket after its kRailDown); the receiver
//   answers once every failed lane's receive queue has flushed (so every FIN that lane
//   delivered is counted and nothing more comes through it) with the sub-ranges its open
//   receive misses (kRecheckReply). Those cannot complete the receive by any other way,
//   so writing them again cannot land in a buffer the user has back.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"
#include "transport/verbs_lane.h"

#if BRAID_HAVE_VERBS
namespace braid {

namespace {
constexpr size_t kMaxPendingRechecks = 4096;      // receiver: more is a hostile peer
constexpr uint64_t kRecvFlushWaitNs = 1'000'000'000;  // a failed lane's queue that never flushes
}  // namespace

void VerbsPath::laneFailed(Lane& l, const Status& why, bool tellPeer) {
  if (l.down || ep_->state != EpState::kConnected) return;
  if (ep_->verbsGone) {
    // On TCP, a lane that had rejoined fails again before the return: it carried nothing.
    std::vector<Lane::Batch> none;
    giveUp(l, why, core::nowNs(), none, nullptr);
    if (tellPeer)
      ep_->controlNotice(wire::makeFrame(wire::FrameType::kRailDown, wire::kRailDownVerbsLane, 0,
                                         0, 0, static_cast<uint32_t>(l.index)));
    BRAID_LOG_INFO(kTransport, "{}: lane {} ({}), back before the return to RDMA, is down "
                               "again: {}",
                   ep_->describe(), l.index, laneName(l.index), why.toString());
    return;
  }
  size_t live = 0;
  for (const auto& x : lanes_) live += x.get() != &l && !x->down && x->connected ? 1 : 0;
  if (l.index == ctl_ || live == 0) {
    if (ep_->canDegrade()) return degrade(l, why, tellPeer);
    ep_->fail(l.index == ctl_ && live > 0
                  ? why.withContext(fmt::format(
                        "lane {} carries the clear-to-send ring, the credits and the eager "
                        "messages, and this endpoint has no TCP data sockets to go on with",
                        ctl_))
                  : why);
    return;
  }
  const uint64_t now = core::nowNs();
  std::vector<Lane::Batch> doubt;
  giveUp(l, why, now, doubt, nullptr);
  // Before the rechecks, on the same socket: the peer gives the lane up (and flushes its
  // receive queue) before it answers them.
  if (tellPeer)
    ep_->controlNotice(wire::makeFrame(wire::FrameType::kRailDown, wire::kRailDownVerbsLane, 0,
                                       0, 0, static_cast<uint32_t>(l.index)));
  size_t rewrites = 0, rechecks = 0;
  uint64_t bytes = 0;
  redo(doubt, why, &rewrites, &rechecks, &bytes);
  BRAID_LOG_WARN(kTransport,
                 "{}: lane {} ({}) is down: {}; {} batch(es), {} bytes were in doubt: {} "
                 "one-sided batch(es) go again on the {} live lane(s), {} range(s) are "
                 "rechecked with the receiver",
                 ep_->describe(), l.index, laneName(l.index), why.toString(), doubt.size(),
                 bytes, rewrites, live, rechecks);
  if (!tellPeer) answerRechecks();  // the peer's rechecks may wait for this lane
}

void VerbsPath::giveUp(Lane& l, const Status& why, uint64_t now, std::vector<Lane::Batch>& doubt,
                       std::vector<Resend>* sends) {
  l.down = true;
  l.connected = false;
  l.downNs = now;
  l.join = Lane::Join::kNone;
  l.backoffMs = 0;
  l.nextTryNs = now + 100'000'000;  // the connector tries it again from then (verbs_rejoin.cc)
  if (l.qp) (void)verbs::toError(*l.qp);
  // SENDs that may not have arrived (the control lane on a move to TCP): eager messages (finished
  // when posted; the bytes are in their send slot) and notices, then the backlog's.
  if (sends != nullptr) {
    for (uint64_t i = l.sqRetired; i < l.sqPosted; ++i) {
      const Lane::WrInfo& w = l.wrs[i % kMaxSendWr];
      if (w.sendSlot < 0 || (w.kind != kWrEager && w.kind != kWrNotice)) continue;
      const uint8_t* p = l.sendSlot(static_cast<uint32_t>(w.sendSlot));
      Resend r{};
      std::memcpy(&r.hdr, p, w.kind == kWrEager ? wire::kEagerHeaderBytes : sizeof r.hdr);
      r.hdr.flags = 0;
      if (w.kind == kWrEager) {
        r.hdr.offset = 0;
        r.hdr.total = r.hdr.length;
        r.payload = p + wire::kEagerHeaderBytes;
      }
      sends->push_back(r);
    }
    for (size_t i = 0; i < l.backlog.size(); ++i) {
      const SendItem& it = l.backlog[i];
      if (it.kind != kWrEager && it.kind != kWrNotice) continue;
      Resend r{};
      if (it.kind == kWrEager) {
        r.hdr = wire::makeFrame(wire::FrameType::kEager, it.op->tag, it.op->seq, it.op->len,
                                static_cast<uint32_t>(it.op->len));
        r.payload = it.payload;
        r.op = it.op;  // not finished yet: it holds its op
      } else {
        r.hdr = it.hdr;
      }
      sends->push_back(r);
    }
  }
  // Whatever completes from here on (flushed, or done before the failure and polled late)
  // retires its work request and nothing else: the batches below go again.
  for (uint64_t i = l.sqRetired; i < l.sqPosted; ++i) {
    Lane::WrInfo& w = l.wrs[i % kMaxSendWr];
    w.op = nullptr;
    w.bytes = 0;
  }
  l.bytesInFlight = 0;
  l.backlog.clear();
  l.ctlBacklog.clear();
  l.repostCount = 0;
  const auto r = static_cast<uint32_t>(l.index);
  if (ep_->verbsGone) {  // a lane that rejoined while on TCP: the lanes' record is kept aside
    if (r < ep_->laneLinks.size()) {
      EndpointImpl::RailLink& link = ep_->laneLinks[r];
      link.alive = false;
      ++link.failures;
      link.downNs = now;
      EndpointImpl::addRailEvent(link, "down", why.toString());
    }
  } else {
    if (r < ep_->links.size()) {
      EndpointImpl::RailLink& link = ep_->links[r];
      link.alive = false;
      ++link.failures;
      link.downNs = now;
    }
    ep_->monitor.railFailed(r, now);
    ep_->railEvent(r, "down", why.toString());
  }
  for (size_t i = 0; i < l.batches.size(); ++i) doubt.push_back(l.batches[i]);
  l.batchesDone += l.batches.size();
  l.batches.clear();
}

void VerbsPath::redo(const std::vector<Lane::Batch>& doubt, const Status& why, size_t* rewrites,
                     size_t* rechecks, uint64_t* bytes) {
  std::vector<Chunk> again;
  for (const Lane::Batch& b : doubt) {
    OpState* op = b.op;
    if (op == nullptr || ep_->state != EpState::kConnected) continue;
    *bytes += b.bytes;
    if (op->finished) {  // failed or closed meanwhile: only its hold goes
      --op->pendingFrames;
      ep_->maybeRecycle(op);
      continue;
    }
    if (b.kind == kWrRmaLast) {
      if (ep_->verbsGone) {
        // Moved to TCP: the sockets cannot reach the peer's memory. The ranges wait for
        // the return to RDMA (BRAID_TIMEOUT_MS at most), each with a hold of the batch's.
        op->pendingFrames += b.nranges - 1u;
        for (uint32_t k = 0; k < b.nranges; ++k)
          ep_->holdRma({op, b.ranges[k].offset, b.ranges[k].length});
        ++*rewrites;
        continue;
      }
      const int t = liveLaneFor(op);
      --op->pendingFrames;  // the failed batch's hold; a new one holds its own
      if (t < 0) {
        ep_->finish(op, Status(Code::kRailFailed,
                               fmt::format("one-sided {} of {} bytes: no live verbs lane is left "
                                           "to finish it ({})",
                                           op->kind == OpState::Kind::kRead ? "read" : "write",
                                           op->len, why.toString())));
        continue;
      }
      again.clear();
      for (uint32_t k = 0; k < b.nranges; ++k)
        rangeToPlan(b.ranges[k].offset, b.ranges[k].length, static_cast<size_t>(t), again);
      postPlan(op, again, /*rma=*/true);
      ++*rewrites;
      continue;
    }
    // The FIN's hold becomes one per range asked about.
    op->pendingFrames += b.nranges - 1u;
    for (uint32_t k = 0; k < b.nranges; ++k) {
      rechecks_.push_back({op, op->tag, op->seq, b.ranges[k].offset, b.ranges[k].length});
      ep_->controlNotice(wire::makeFrame(wire::FrameType::kRecheck, op->tag, op->seq,
                                         b.ranges[k].length, 0, b.ranges[k].offset));
      ++*rechecks;
    }
  }
}

void VerbsPath::degrade(Lane& first, const Status& why, bool tellPeer) {
  const uint64_t now = core::nowNs();
  const Status moved(Code::kRailFailed,
                     fmt::format("given up with the other lanes when {} failed: the endpoint "
                                 "moved to TCP",
                                 laneName(first.index)));
  std::vector<Lane::Batch> doubt;
  std::vector<Resend> sends;
  for (auto& lp : lanes_) {
    Lane& l = *lp;
    if (l.down) continue;
    giveUp(l, &l == &first ? why : moved, now, doubt, l.index == ctl_ ? &sends : nullptr);
  }
  pendingCts_.clear();
  backlogged_ = false;
  ep_->degradeToTcp(why, first.index == ctl_
                              ? fmt::format("lane {}, the control lane, failed", first.index)
                              : fmt::format("lane {}, the last one, failed", first.index));
  if (tellPeer)
    ep_->controlNotice(wire::makeFrame(wire::FrameType::kRailDown, wire::kRailDownVerbsLane, 0,
                                       0, 0, static_cast<uint32_t>(first.index)));
  // What the control lane may not have delivered goes again over the control socket, in order; the
  // receiver drops what it has (wire::kAgain).
  for (const Resend& r : sends) {
    if (ep_->state != EpState::kConnected) return;
    if (r.hdr.type == static_cast<uint8_t>(wire::FrameType::kRts)) continue;  // CTS come anyway
    OutFrame f;
    f.hdr = r.hdr;
    f.hdr.flags = wire::kAgain;
    f.payload = r.payload;
    f.op = r.op;
    ep_->control->queue(f, true);
    if (r.op) {  // the verbs backlog's hold; the queued frame holds its own
      --r.op->pendingFrames;
      ep_->maybeRecycle(r.op);
    }
  }
  ep_->controlDirty = ep_->control->hasOutput();
  size_t rewrites = 0, rechecks = 0;
  uint64_t bytes = 0;
  redo(doubt, why, &rewrites, &rechecks, &bytes);
  if (ep_->state != EpState::kConnected) return;
  ep_->ctsAgain();
  BRAID_LOG_WARN(kTransport,
                 "{}: {} SEND(s) of the control lane go again over TCP; {} range(s) of {} bytes are "
                 "rechecked with the receiver and written again over TCP where missing",
                 ep_->describe(), sends.size(), rechecks, bytes);
  if (!tellPeer) answerRechecks();
}

void VerbsPath::controlLaneLost(const Status& why) {
  if (ep_->canDegrade()) return degrade(*lanes_[ctl_], why, /*tellPeer=*/false);
  ep_->fail(why);
}

bool VerbsPath::laneDown(size_t i) const { return i < lanes_.size() && lanes_[i]->down; }

void VerbsPath::peerLaneDown(uint64_t lane) {
  if (lane >= lanes_.size())
    return ep_->fail(Status(Code::kProtocolError,
                            fmt::format("peer {} reports lane {} down; the endpoint has {}",
                                        ep_->peer, lane, lanes_.size())));
  Lane& l = *lanes_[lane];
  laneFailed(l,
             railFailedStatus(l, Status(Code::kRailFailed,
                                        fmt::format("the peer gave the lane up"))),
             /*tellPeer=*/false);
}

int VerbsPath::liveLaneFor(const OpState* op) const {
  int best = -1;
  for (const auto& lp : lanes_) {
    const Lane& l = *lp;
    if (l.down || !l.connected || l.peer.railIndex >= wire::kMaxRails ||
        op->rkeys[l.peer.railIndex] == 0 || !op->reg || op->reg->perRail.size() <= l.railIndex)
      continue;
    if (best < 0 || l.bytesInFlight < lanes_[static_cast<size_t>(best)]->bytesInFlight)
      best = static_cast<int>(l.index);
  }
  return best;
}

void VerbsPath::rangeToPlan(uint64_t offset, uint64_t length, size_t lane,
                            std::vector<Chunk>& out) const {
  const uint64_t piece = std::max<uint64_t>(ep_->scheduler.config().chunkSize, 4096);
  while (length > 0) {
    Chunk c;
    c.rail = static_cast<uint32_t>(lane);
    c.offset = offset;
    c.length = std::min(length, piece);
    out.push_back(c);
    offset += c.length;
    length -= c.length;
  }
}

void VerbsPath::onRecheck(const wire::FrameHeader& f) {
  if (pendingRechecks_.size() >= kMaxPendingRechecks)
    return ep_->fail(Status(Code::kProtocolError,
                            fmt::format("peer {} asked more than {} rechecks at once", ep_->peer,
                                        kMaxPendingRechecks)));
  pendingRechecks_.push_back(f);
  answerRechecks();
}

void VerbsPath::answerRechecks() {
  // Only once every failed lane's receive queue has flushed: a FIN it delivered before it
  // failed is counted by then, and nothing more arrives through it.
  const uint64_t now = core::nowNs();
  for (auto& lp : lanes_) {
    Lane& l = *lp;
    if (!l.down || l.rqFlushed) continue;
    if (now < l.downNs + kRecvFlushWaitNs) return;
    BRAID_LOG_WARN(kTransport, "{}: lane {} ({}): its receive queue did not flush within 1 s of "
                               "its failure; answering the peer's rechecks anyway",
                   ep_->describe(), l.index, laneName(l.index));
    l.rqFlushed = true;
  }
  while (!pendingRechecks_.empty() && ep_->state == EpState::kConnected) {
    const wire::FrameHeader q = pendingRechecks_.front();
    pendingRechecks_.pop_front();
    const uint64_t begin = q.offset, end = q.offset + q.total;  // checkFrame: no overflow
    OpState* op = ep_->findRecv(q.tag, q.seq);
    if (op == nullptr) {
      TagState* ts = ep_->findTagState(q.tag);
      if (ts == nullptr || q.seq >= ts->nextRecvSeq)
        return ep_->fail(Status(Code::kProtocolError,
                                fmt::format("recheck of tag {} seq {}: no such receive was posted",
                                            q.tag, q.seq)));
      // Finished: every byte arrived (or it ended otherwise); nothing is written again.
    } else if (end > op->len) {
      return ep_->fail(Status(Code::kProtocolError,
                              fmt::format("recheck of bytes [{}, {}) of tag {} seq {}, a {}-byte "
                                          "receive",
                                          begin, end, q.tag, q.seq, op->len)));
    } else {
      // The gaps of [begin, end) in what has landed.
      uint64_t at = begin;
      for (const auto& [lo, hi] : op->landed) {
        if (hi <= at) continue;
        if (lo >= end) break;
        if (lo > at)
          ep_->controlNotice(wire::makeFrame(wire::FrameType::kRecheckReply, q.tag, q.seq,
                                             lo - at, 0, at));
        at = std::max(at, hi);
      }
      if (at < end)
        ep_->controlNotice(
            wire::makeFrame(wire::FrameType::kRecheckReply, q.tag, q.seq, end - at, 0, at));
    }
    wire::FrameHeader last = wire::makeFrame(wire::FrameType::kRecheckReply, q.tag, q.seq, 0, 0, begin);
    last.flags = wire::kRecheckLast;
    ep_->controlNotice(last);
  }
}

void VerbsPath::onRecheckReply(const wire::FrameHeader& f) {
  const bool last = (f.flags & wire::kRecheckLast) != 0;
  size_t j = 0;
  for (; j < rechecks_.size(); ++j) {
    const Recheck& q = rechecks_[j];
    if (q.tag != f.tag || q.seq != f.seq) continue;
    if (last ? f.offset == q.offset
             : f.offset >= q.offset && f.total > 0 && f.offset + f.total <= q.offset + q.length)
      break;
  }
  if (j == rechecks_.size())
    return ep_->fail(Status(Code::kProtocolError,
                            fmt::format("recheck answer for bytes [{}, +{}) of tag {} seq {}: "
                                        "nothing of it was asked",
                                        f.offset, f.total, f.tag, f.seq)));
  OpState* op = rechecks_[j].op;
  if (last) {
    rechecks_.erase(rechecks_.begin() + static_cast<std::ptrdiff_t>(j));
    --op->pendingFrames;
    if (op->finished)
      ep_->maybeRecycle(op);
    else if (op->pendingFrames == 0)
      ep_->finishOk(op);
    return;
  }
  if (op->finished) return;
  if (ep_->verbsGone) {  // over the TCP data sockets: chunks land only in an open receive
    op->resent = true;
    ep_->stripeRange(op, f.offset, f.total, core::nowNs());
    return;
  }
  const int t = liveLaneFor(op);
  if (t < 0)
    return ep_->fail(Status(Code::kRailFailed,
                            fmt::format("tag {} seq {}: no live lane left to write bytes [{}, +{}) "
                                        "again",
                                        f.tag, f.seq, f.offset, f.total)));
  std::vector<Chunk> again;
  rangeToPlan(f.offset, f.total, static_cast<size_t>(t), again);
  postPlan(op, again, /*rma=*/false);
}

}  // namespace braid
#endif  // BRAID_HAVE_VERBS
