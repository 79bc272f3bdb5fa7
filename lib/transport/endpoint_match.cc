// Endpoint: the message protocol: posting, matching sends with their clear-to-send,
// eager messages, chunks, truncation and completion in posting order.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- posting

std::vector<Channel*> EndpointImpl::allChannels() const {
  std::vector<Channel*> v;
  if (control) v.push_back(control.get());
  for (auto& d : data)
    if (d) v.push_back(d.get());
  return v;
}

Result<std::shared_ptr<const MemoryRegionImpl>> EndpointImpl::registrationFor(
    uint8_t* buf, uint64_t len, std::shared_ptr<const MemoryRegionImpl> given) {
  // Verbs: a buffer that may move by RDMA needs its registration on every rail first
  // (the caller's MemoryRegion, or one made for this request).
  if (!verbs || len <= eagerMax) return std::shared_ptr<const MemoryRegionImpl>();
  if (given && given->perRail.size() == ctx->verbsRails.size()) return given;
  auto r = registerOnRails(ctx->verbsRails, buf, len, /*cached=*/false);
  if (!r) return r.status();
  return std::shared_ptr<const MemoryRegionImpl>(std::move(r).value());
}

Result<Request> EndpointImpl::post(const std::shared_ptr<EndpointImpl>& self, OpState::Kind kind,
                                   uint8_t* buf, uint64_t len, uint64_t tag,
                                   const MemoryRegion* mr, bool more) {
  // An eager message finishes at its sender when handed over, so a peer may send and
  // close before this side posts the receive: messages that arrived whole before the
  // endpoint failed or closed are still delivered to the receives that match them.
  const bool buffered =
      state == EpState::kFailed && kind == OpState::Kind::kRecv && hasBuffered(tag);
  if (state == EpState::kFailed && !buffered) return error;
  if (buf == nullptr && len > 0)
    return Status(Code::kInvalidArgument, "null buffer with a non-zero length");
  // While the handshake runs the request waits in order (as UCX's do) and starts when
  // the endpoint connects; a failed connection fails it.
  // So does one posted while the connector offers the return to verbs (`returning`).
  const bool connecting = (state != EpState::kConnected || returning) && !buffered;
  std::shared_ptr<const MemoryRegionImpl> reg = mr != nullptr ? mr->shared() : nullptr;
  if (!connecting && !buffered) {
    BRAID_ASSIGN_OR_RETURN(reg, registrationFor(buf, len, std::move(reg)));
  } else if (buffered) {
    reg.reset();
  }
  OpState* op = ops.get();  // clean: new, or reset by maybeRecycle before it went back
  op->kind = kind;
  op->tag = tag;
  op->buf = buf;
  op->len = len;
  op->hasHandle = true;
  op->more = more;
  op->reg = std::move(reg);
  ++outstanding;
  if (connecting) {
    queued.push_back(op);
    return Request(self, op);
  }
  Status st = start(op);
  if (!st.isOk()) {
    finish(op, st);
    dropHandle(op);
    return st;
  }
  return Request(self, op);  // a copy: one increment, no weak_ptr lock
}

void EndpointImpl::startQueued() {
  std::vector<OpState*> q;
  q.swap(queued);
  for (OpState* op : q) {
    if (state != EpState::kConnected) {
      finishQueued(op, error);
      continue;
    }
    auto reg = registrationFor(op->buf, op->len, std::move(op->reg));
    Status st = reg ? start((op->reg = std::move(reg).value(), op)) : reg.status();
    if (!st.isOk()) finish(op, st);
  }
}

void EndpointImpl::finishQueued(OpState* op, const Status& st) {
  // Never started: in no tag's queues, so it is released here.
  op->finished = op->released = true;
  op->status = st;
  op->reg.reset();
  --outstanding;
  maybeRecycle(op);
}

Status EndpointImpl::start(OpState* op) {
  const uint64_t tag = op->tag, len = op->len;
  uint8_t* const buf = op->buf;
  TagState& ts = tagState(tag);
  if (op->kind == OpState::Kind::kSend) {
    op->seq = ts.skipSeqs.empty() ? ts.nextSendSeq++ : takeSendSeq(ts);
    ts.sends.push_back(op);
    if (len <= eagerMax) {
      // Eager: the payload goes now and the send finishes once it is handed over (posted,
      // or written to the socket). It needs no CTS: a receive too small for it fails at
      // the receiver. A CTS that arrives for it anyway (a rendezvous-sized receive) is
      // dropped by matchSends.
      op->matched = true;
      ++msgsCommitted;
      if (onVerbs()) {
        verbs->sendEager(op);
      } else {
        OutFrame f;
        f.hdr =
            wire::makeFrame(wire::FrameType::kEager, tag, op->seq, len, static_cast<uint32_t>(len));
        f.payload = buf;
        f.op = op;
        // kMore: the frame waits for the next send's write, or the worker's next progress.
        control->queue(f, !op->more);
        controlDirty = control->hasOutput();
      }
      if (!ts.cts.empty()) matchSends(ts);
    } else {
      ts.unmatchedSends.push_back(op);
      ++awaitingCts;
      matchSends(ts);
      // Over verbs an eager-only receive sends no CTS: tell the receiver a rendezvous
      // message is coming, so that a receive too small for it answers with its CTS (and
      // the truncation is seen by both sides). A receive that can take it ignores this.
      if (onVerbs() && state == EpState::kConnected && !op->matched)
        verbs->sendRts(tag, op->seq, len);
    }
  } else {
    op->seq = ts.nextRecvSeq++;
    ts.recvs.push_back(op);
    if (!ts.canceledSends.empty() && ts.canceledSends.front() == op->seq) {
      // The peer gave up the send this receive matches before posting it: nothing comes.
      ts.canceledSends.pop_front();
      if (!ts.rts.empty() && ts.rts.front() == op->seq) ts.rts.pop_front();
      op->matched = true;
      finish(op, Status(Code::kCanceled,
                        fmt::format("peer {} canceled its send {} of tag {}", peer, op->seq, tag)));
    } else if (state == EpState::kFailed) {
      // Only a buffered message is received on a failed endpoint (post() checked).
      // Nothing to tell the peer: the message is here.
    } else if (onVerbs()) {
      // A CTS only for a receive that can take a rendezvous message, or one whose sender
      // announced a message too large for it (RTS, arrived before this receive).
      // Its message may be here already (an eager one, sent before this receive was
      // posted): then it is taken below, and no CTS goes.
      bool announced = !ts.rts.empty() && ts.rts.front() == op->seq;
      if (announced) ts.rts.pop_front();
      const bool here = !ts.unexpected.empty() && ts.unexpected.front().seq == op->seq;
      if (!here && (len > eagerMax || announced))
        return verbs->postReceive(op, op->reg.get());
    } else {
      OutFrame f;
      f.hdr = wire::makeFrame(wire::FrameType::kCts, tag, op->seq, len);
      control->queue(f, false);  // goes out with the next send or progress()
      // Any message up to the eager limit comes without waiting for it: the CTS of a
      // receive no larger can wait for a write to share (lazyCts).
      if (len > eagerMax)
        controlDirty = true;
      else
        lazyCts = true;
    }
    // An eager message may already be here.
    if (!ts.unexpected.empty() && ts.unexpected.front().seq == op->seq) {
      auto& u = ts.unexpected.front();
      op->matched = true;
      op->size = u.size;
      if (u.size > len) {
        finish(op, Status(Code::kTruncated,
                          fmt::format("message {} of tag {} from {} has {} bytes but the receive "
                                      "buffer holds {}: post a larger buffer",
                                      op->seq, tag, peer, u.size, len)));
      } else {
        if (u.size) std::memcpy(buf, u.data.data(), u.size);
        op->bytesDone = u.size;
        stats.bytesReceived += u.size;
        finish(op, Status::ok());
      }
      unexpectedBytes -= u.size;
      ts.unexpected.erase(ts.unexpected.begin());
      ++stats.messagesReceived;
    }
  }
  return Status::ok();
}


Result<Request> EndpointImpl::postRma(const std::shared_ptr<EndpointImpl>& self, OpState::Kind kind,
                                      uint8_t* buf, uint64_t len, const MemoryRegion& local,
                                      const RemoteKey& remote, uint64_t offset) {
  const char* what = kind == OpState::Kind::kWrite ? "iwrite" : "iread";
  if (state == EpState::kFailed) return error;
  if (state != EpState::kConnected)
    return Status(Code::kInvalidArgument, fmt::format("{}: {} is not connected yet", what,
                                                      describe()));
  if (!verbs)
    return Status(Code::kUnsupported,
                  fmt::format("{}: {} moves data over TCP; one-sided writes and reads need "
                              "verbs rails on both sides",
                              what, describe()));
  if (!local.contains(buf, len) || !local.impl() ||
      local.impl()->perRail.size() != ctx->verbsRails.size())
    return Status(Code::kInvalidArgument,
                  fmt::format("{}: the local buffer must lie inside a MemoryRegion registered by "
                              "this endpoint's Context (Context::registerMemory)",
                              what));
  BRAID_ASSIGN_OR_RETURN(DecodedRemoteKey rk, decodeRemoteKey(remote));
  if (offset > rk.length || rk.length - offset < len)
    return Status(Code::kInvalidArgument,
                  fmt::format("{}: {} bytes at offset {} do not fit the {}-byte remote region",
                              what, len, offset, rk.length));
  if (len == 0) return Status(Code::kInvalidArgument, fmt::format("{}: zero length", what));
  OpState* op = ops.get();  // clean: new, or reset by maybeRecycle before it went back
  op->kind = kind;
  op->buf = buf;
  op->len = len;
  op->hasHandle = true;
  op->matched = true;
  op->reg = local.shared();
  ++outstanding;
  rmaOps.push_back(op);
  if (onVerbs()) {
    verbs->startRma(op, rk, offset);
  } else if (verbs->prepareRma(op, rk, offset)) {
    // Moved to TCP: it waits for the return to RDMA (BRAID_TIMEOUT_MS at most).
    ++op->pendingFrames;
    holdRma({op, 0, len});
  }
  return Request(self, op);  // a copy: one increment, no weak_ptr lock
}

void EndpointImpl::flushControl() {
  controlDirty = false;
  lazyCts = false;
  if (control && control->fd() >= 0) control->flush();
}

// ---------------------------------------------------------------- send side

void EndpointImpl::matchSends(TagState& ts) {
  // ts.cts is sorted by seq (over verbs, ring entries and CTS riding on SENDs may arrive
  // in either order); ts.unmatchedSends holds the rendezvous sends waiting, in order.
  // While a return to verbs is offered nothing starts: the CTS wait (rail_degrade.cc).
  if (returning) return;
  while (!ts.cts.empty()) {
    const wire::CtsEntry& front = ts.cts.front();
    if (front.seq >= ts.nextSendSeq) return;  // for a send not posted yet
    if (ts.unmatchedSends.empty() || ts.unmatchedSends.front()->seq > front.seq) {
      // Its send is posted and waits for no CTS: an eager message, which went without
      // one (the receive could also take a rendezvous message, hence its CTS).
      ts.cts.pop_front();
      continue;
    }
    OpState* op = ts.unmatchedSends.front();
    if (op->seq < front.seq) return;  // the CTS of an earlier send is still on its way
    ts.unmatchedSends.pop_front();
    --awaitingCts;
    wire::CtsEntry cts = front;
    ts.cts.pop_front();
    startSend(op, cts);
    if (state == EpState::kFailed) return;
  }
}

void EndpointImpl::startSend(OpState* op, const wire::CtsEntry& cts) {
  // A rendezvous send (eager ones need no CTS) met its CTS.
  op->matched = true;
  ++msgsCommitted;
  if (op->len > cts.capacity) {
    Status st(Code::kTruncated,
              fmt::format("message {} of tag {} to {} has {} bytes but the peer posted a receive "
                          "of {}: the peer must post a larger buffer",
                          op->seq, op->tag, peer, op->len, cts.capacity));
    if (onVerbs()) {
      verbs->sendTruncated(op->tag, op->seq, op->len);
    } else {
      OutFrame f;
      f.hdr = wire::makeFrame(wire::FrameType::kTruncated, op->tag, op->seq, op->len);
      control->queue(f, true);
    }
    finish(op, st);
    return;
  }
  if (onVerbs()) {
    if (cts.addr == 0) {
      fail(Status(Code::kProtocolError,
                  fmt::format("clear-to-send for tag {} seq {} of {} bytes has no buffer address",
                              cts.tag, cts.seq, cts.capacity)));
      return;
    }
    verbs->startRendezvous(op, cts, op->reg.get());
    return;
  }
  stripeTcp(op);
}

void EndpointImpl::onFrameSent(OutFrame& f) {
  OpState* op = f.op;
  if (!op) return;
  // A TCP chunk counts when acknowledged (onChunkAcked), not when written: written bytes
  // may still be lost with their rail.
  if (f.postedNs != 0) return;
  --op->pendingFrames;
  if (!op->finished) {
    op->bytesDone += f.hdr.length;
    if (op->matched && op->bytesDone == op->len) finish(op, Status::ok());
  } else {
    maybeRecycle(op);
  }
}

// ---------------------------------------------------------------- receive side

void EndpointImpl::onCts(const wire::CtsEntry& cts, bool again) {
  TagState& ts = tagState(cts.tag);
  if (!admitCts(ts, cts.tag, cts.seq, again)) return;
  ts.cts.push_back(cts);
  sortLastCts(ts.cts);
  matchSends(ts);
}

bool EndpointImpl::admitCts(TagState& ts, uint64_t tag, uint64_t seq, bool again) {
  // Each receive has one CTS; a peer that sends two, or runs without bound ahead of this
  // side's sends, is broken or hostile (each one held is memory). One sent again after the
  // verbs lanes went may be here already, or be for a send that started: dropped.
  if (again) {
    for (size_t i = 0; i < ts.unmatchedSends.size(); ++i)
      if (ts.unmatchedSends[i]->seq == seq) return true;  // its send waits for it
    if (seq < ts.nextSendSeq) return false;                // its send went (eager or started)
  }
  for (size_t i = ts.cts.size(); i > 0; --i) {
    if (ts.cts[i - 1].seq < seq) break;
    if (ts.cts[i - 1].seq == seq) {
      if (again) return false;
      fail(Status(Code::kProtocolError,
                  fmt::format("a second clear-to-send for tag {} seq {}", tag, seq)));
      return false;
    }
  }
  if (ts.cts.size() >= kMaxPendingCts) {
    fail(Status(Code::kProtocolError,
                fmt::format("the peer posted more than {} receives of tag {} ahead of this "
                            "side's sends",
                            kMaxPendingCts, tag)));
    return false;
  }
  return true;
}

void EndpointImpl::onFrame(const wire::FrameHeader& f, const uint8_t* payload) {
  if ((f.flags & wire::kAgain) != 0 && f.type != static_cast<uint8_t>(wire::FrameType::kCts) &&
      f.type != static_cast<uint8_t>(wire::FrameType::kRecheckReply)) {
    if (!verbs)
      return fail(Status(Code::kProtocolError,
                         "a frame sent again after verbs lanes failed, on an endpoint without "
                         "verbs lanes"));
    return onFrameAgain(f, payload);
  }
  switch (static_cast<wire::FrameType>(f.type)) {
    case wire::FrameType::kCts: {
      wire::CtsEntry e{};
      e.tag = f.tag;
      e.seq = f.seq;
      e.capacity = f.total;
      onCts(e, (f.flags & wire::kAgain) != 0);
      return;
    }
    case wire::FrameType::kEager:
      onEager(f.tag, f.seq, payload, f.length);  // checkFrame: total == length
      return;
    case wire::FrameType::kTruncated:
      onTruncated(f);
      return;
    case wire::FrameType::kHeartbeat:
      return;
    case wire::FrameType::kRailDown:
      return onRailDownFrame(f);
    case wire::FrameType::kRailUp:
      return onRailUpFrame(f);
    case wire::FrameType::kLaneJoin:
    case wire::FrameType::kLaneJoinAck:
      if (!verbs)
        return fail(Status(Code::kProtocolError,
                           "a lane join on an endpoint without a verbs data path"));
      if (f.type == static_cast<uint8_t>(wire::FrameType::kLaneJoin))
        return verbs->onLaneJoin(f, payload);
      return verbs->onLaneJoinAck(f, payload);
    case wire::FrameType::kVerbsBack:
      return onVerbsBack(f);
    case wire::FrameType::kVerbsBackAck:
      return onVerbsBackAck(f);
    case wire::FrameType::kRecheck:
    case wire::FrameType::kRecheckReply:
      if (!verbs)
        return fail(Status(Code::kProtocolError,
                           "a recheck frame on an endpoint without a verbs data path"));
      if (f.type == static_cast<uint8_t>(wire::FrameType::kRecheck))
        return verbs->onRecheck(f);
      return verbs->onRecheckReply(f);
    case wire::FrameType::kCancelRecv:
      return onCancelRecv(f);
    case wire::FrameType::kCancelReply:
      return onCancelReply(f);
    case wire::FrameType::kCancelSend:
      return onCancelSend(f);
    case wire::FrameType::kClose:
      // Whatever the peer sent over verbs before closing is in our completion queues by
      // now (its close waits for its SENDs to be acknowledged): take all of it (a poll
      // takes at most one batch per lane) before failing what is left.
      //
      // Our own rendezvous sends finish on the completion of their FINs. One the peer has
      // received (its receive finished before it closed) was acknowledged before this
      // CLOSE left, but the acknowledgement may come over another rail and trail the
      // control socket: wait for it, bounded (1 s, or BRAID_TIMEOUT_MS if shorter), so a
      // delivered message does not end as connection-reset.
      if (verbs) {
        const uint64_t deadline =
            core::nowNs() + std::min<uint64_t>(1000, static_cast<uint64_t>(ctx->timeoutMs)) *
                                1000000ull;
        for (;;) {
          while (state == EpState::kConnected && verbs->progress() > 0) {
          }
          if (state != EpState::kConnected || !verbs->completionsAwaited() ||
              core::nowNs() >= deadline)
            break;
        }
      }
      if (state == EpState::kFailed) return;
      // Chunks the peer's kernel acknowledged finish their sends before the rest fails.
      if (!onVerbs()) pollAcks(core::nowNs());
      if (state == EpState::kFailed) return;
      fail(Status(Code::kConnectionReset, fmt::format("peer {} closed the endpoint", peer)),
           /*orderly=*/true);
      return;
    case wire::FrameType::kChunk:
    case wire::FrameType::kFin:
    case wire::FrameType::kRts:
      fail(Status(Code::kProtocolError,
                  fmt::format("frame type {} does not belong on the control path", f.type)));
      return;
  }
}

void EndpointImpl::onEagerSlow(TagState& ts, OpState* op, uint64_t tag, uint64_t seq,
                               const uint8_t* payload, uint32_t length) {
  if (op != nullptr && (op->matched || op->finished)) {
    // Its message arrived already (eager, or chunks landing now): a second one for the
    // same receive would overwrite a buffer the caller may own again.
    fail(Status(Code::kProtocolError,
                fmt::format("a second message for tag {} seq {} (an eager one of {} bytes), "
                            "whose receive already has its message",
                            tag, seq, length)));
    return;
  }
  if (op == nullptr) {
    if (seq < ts.nextRecvSeq) {
      fail(Status(Code::kProtocolError,
                  fmt::format("eager message for tag {} seq {} that was already received", tag,
                              seq)));
      return;
    }
    // Messages of one tag arrive in seq order: anything else is a duplicate or a forgery.
    if (!ts.unexpected.empty() && ts.unexpected.back().seq >= seq) {
      fail(Status(Code::kProtocolError,
                  fmt::format("eager message for tag {} seq {} after seq {} (duplicate or out of "
                              "order)",
                              tag, seq, ts.unexpected.back().seq)));
      return;
    }
    if (unexpectedBytes + length > ctx->unexpectedMax) {
      fail(Status(Code::kProtocolError,
                  fmt::format("the peer sent {} bytes of eager messages no receive was posted "
                              "for (BRAID_UNEXPECTED_MAX {}): post receives before the peer "
                              "sends, raise the limit, or the peer is sending on tags this side "
                              "never receives",
                              unexpectedBytes + length, ctx->unexpectedMax)));
      return;
    }
    unexpectedBytes += length;
    ts.unexpected.push_back({seq, std::vector<uint8_t>(payload, payload + length), length});
    return;
  }
  // Posted but too small.
  ++stats.messagesReceived;
  op->matched = true;
  op->size = length;
  finish(op, Status(Code::kTruncated,
                    fmt::format("message {} of tag {} from {} has {} bytes but the receive "
                                "buffer holds {}: post a larger buffer",
                                seq, tag, peer, length, op->len)));
}

void EndpointImpl::onTruncated(const wire::FrameHeader& f) {
  // The sender decides a truncation before any byte moves, and only after this side's
  // CTS: the receive is posted, its message not started, and too small for `total`.
  TagState* ts = findTagState(f.tag);
  OpState* op = ts != nullptr ? recvAt(*ts, f.seq) : nullptr;
  if (op == nullptr) {
    if (ts != nullptr && f.seq < ts->nextRecvSeq) return;  // finished (canceled) already
    return fail(Status(Code::kProtocolError,
                       fmt::format("truncation notice for tag {} seq {}, a receive not posted",
                                   f.tag, f.seq)));
  }
  if (op->finished && !op->matched) return;  // canceled here while the notice was on its way
  if (op->matched || op->finished || f.total <= op->len)
    return fail(Status(Code::kProtocolError,
                       fmt::format("truncation notice for tag {} seq {} ({} bytes for a {}-byte "
                                   "receive{})",
                                   f.tag, f.seq, f.total, op->len,
                                   op->matched ? " whose message already arrived" : "")));
  op->matched = true;
  op->size = f.total;
  ++msgsArrived;
  finish(op, Status(Code::kTruncated,
                    fmt::format("message {} of tag {} from {} has {} bytes but the receive "
                                "buffer holds {}: post a larger buffer",
                                f.seq, f.tag, peer, f.total, op->len)));
}

OpState* EndpointImpl::findRecv(uint64_t tag, uint64_t seq) {
  TagState* ts = findTagState(tag);
  OpState* op = ts != nullptr ? recvAt(*ts, seq) : nullptr;
  return op != nullptr && !op->finished ? op : nullptr;
}

void EndpointImpl::onFin(const wire::FrameHeader& f, const uint8_t* payload) {
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr || f.total > op->len || (op->matched && op->size != f.total)) {
    fail(Status(Code::kProtocolError,
                fmt::format("end of rail transfer for tag {} seq {} ({} of {} bytes) that matches "
                            "no posted receive",
                            f.tag, f.seq, f.offset, f.total)));
    return;
  }
  wire::FinRange r[wire::kFinRanges];
  uint32_t n = 0;
  Status st = wire::parseFinRanges(f, payload, r, &n);
  if (!st.isOk()) return fail(st);
  op->matched = true;
  op->size = f.total;
  // A range written again after a lane failed (kRecheck) counts once.
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t added = core::addRange(op->landed, r[i].offset, r[i].offset + r[i].length);
    op->bytesDone += added;
    stats.bytesReceived += added;
  }
  if (op->bytesDone == op->size) {
    ++stats.messagesReceived;
    ++msgsArrived;
    finish(op, Status::ok());
  }
}

void EndpointImpl::onRts(const wire::FrameHeader& f) {
  TagState& ts = tagState(f.tag);
  if (f.seq >= ts.nextRecvSeq) {
    // Its receive is not posted yet: post() sends its CTS. Announcements come in seq order
    // (lane 0's SENDs arrive in order).
    if (!ts.rts.empty() && ts.rts.back() >= f.seq) {
      fail(Status(Code::kProtocolError,
                  fmt::format("announcement of tag {} seq {} after seq {} (out of order)", f.tag,
                              f.seq, ts.rts.back())));
      return;
    }
    if (ts.rts.size() >= kMaxPendingCts) {
      fail(Status(Code::kProtocolError,
                  fmt::format("the peer announced more than {} messages of tag {} ahead of this "
                              "side's receives",
                              kMaxPendingCts, f.tag)));
      return;
    }
    ts.rts.push_back(f.seq);
    return;
  }
  // A receive that can take a rendezvous message has sent its CTS already; one that
  // finished (failed) needs nothing.
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr || op->len > eagerMax) return;
  Status st = verbs->postReceive(op, nullptr);
  if (!st.isOk()) fail(st);
}

uint8_t* EndpointImpl::chunkDest(const wire::FrameHeader& f, OpState** out) {
  *out = nullptr;
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr) {
    fail(Status(Code::kProtocolError,
                fmt::format("chunk for tag {} seq {} that has no posted receive", f.tag, f.seq)));
    return nullptr;
  }
  if (f.total > op->len) {
    fail(Status(Code::kProtocolError,
                fmt::format("chunk of a {}-byte message for a {}-byte receive (tag {} seq {})",
                            f.total, op->len, f.tag, f.seq)));
    return nullptr;
  }
  if (op->matched && op->size != f.total) {
    fail(Status(Code::kProtocolError,
                fmt::format("chunk of tag {} seq {} says the message has {} bytes, an earlier "
                            "frame said {}",
                            f.tag, f.seq, f.total, op->size)));
    return nullptr;
  }
  op->matched = true;
  op->size = f.total;
  ++op->landing;
  *out = op;
  return op->buf + f.offset;
}

void EndpointImpl::onChunkLanded(OpState* op, uint64_t offset, uint64_t bytes) {
  --op->landing;
  // A chunk sent twice (a failover resend, or a broken peer) lands the same bytes again:
  // count what is new, so the receive finishes only once every byte has arrived.
  const uint64_t added = core::addRange(op->landed, offset, offset + bytes);
  op->bytesDone += added;
  stats.bytesReceived += added;
  if (op->bytesDone == op->size && op->landing == 0 && !op->finished) {
    ++stats.messagesReceived;
    ++msgsArrived;
    finish(op, Status::ok());
  }
}

// ---------------------------------------------------------------- cancel
//
// A receive is withdrawn with the peer's consent, because the peer's n-th send of the tag
// would otherwise land in it: CancelRecv(tag, seq) -> the sender skips that seq when its
// send is not posted yet (the next message goes to the next receive), cancels its send
// when it waits unmatched for that CTS, and answers yes; a send already on its way makes
// it answer no, and the message completes the receive. A send is withdrawn only while it
// waits for its CTS (nothing moved): it ends at once, and CancelSend tells the receiver,
// whose matching receive ends with kCanceled.

void EndpointImpl::sendNotice(const wire::FrameHeader& h) {
  if (state != EpState::kConnected) return;
  if (onVerbs()) {
    verbs->sendNotice(h);
    return;
  }
  controlNotice(h);
}

void EndpointImpl::controlNotice(const wire::FrameHeader& h) {
  if (state != EpState::kConnected || !control) return;
  OutFrame f;
  f.hdr = h;
  control->queue(f, true);
  controlDirty = control->hasOutput();
}

Status EndpointImpl::cancel(OpState* op) {
  if (op->finished) return Status::ok();
  for (size_t i = 0; i < queued.size() && state == EpState::kConnected; ++i) {
    if (queued[i] != op) continue;  // held while a return to verbs is offered: never started
    queued.erase(queued.begin() + static_cast<std::ptrdiff_t>(i));
    finishQueued(op, Status(Code::kCanceled, "canceled before it started"));
    return Status::ok();
  }
  if (op->kind == OpState::Kind::kWrite || op->kind == OpState::Kind::kRead)
    return Status(Code::kUnsupported,
                  "one-sided writes and reads cannot be canceled: the NIC is moving the data");
  if (state != EpState::kConnected)
    return Status(Code::kInProgress, "the endpoint is not connected; the request ends with it");
  if (op->kind == OpState::Kind::kSend) {
    if (op->matched)
      return Status(Code::kInProgress, fmt::format("send {} of tag {} is already transferring: it "
                                                   "completes",
                                                   op->seq, op->tag));
    TagState& ts = tagState(op->tag);
    for (size_t i = 0; i < ts.unmatchedSends.size(); ++i) {
      if (ts.unmatchedSends[i] != op) continue;
      ts.unmatchedSends.erase(i);  // later unmatched sends keep their order
      break;
    }
    --awaitingCts;
    op->matched = true;
    sendNotice(wire::makeFrame(wire::FrameType::kCancelSend, op->tag, op->seq, op->len));
    finish(op, Status(Code::kCanceled, fmt::format("send {} of tag {} canceled", op->seq, op->tag)));
    return Status::ok();
  }
  if (op->matched)
    return Status(Code::kInProgress, fmt::format("the message of receive {} of tag {} is "
                                                 "arriving: it completes",
                                                 op->seq, op->tag));
  if (!op->cancelPending) {
    op->cancelPending = true;
    sendNotice(wire::makeFrame(wire::FrameType::kCancelRecv, op->tag, op->seq, op->len));
  }
  return Status(Code::kInProgress, "cancel asked of the peer: test() or wait() tells the outcome");
}

void EndpointImpl::onCancelRecv(const wire::FrameHeader& f) {
  TagState& ts = tagState(f.tag);
  bool withdrawn = false;
  if (f.seq >= ts.nextSendSeq) {
    // Not sent yet: that seq is skipped (kept sorted: receives cancel in any order).
    bool known = false;
    for (size_t i = 0; i < ts.skipSeqs.size(); ++i) known |= ts.skipSeqs[i] == f.seq;
    if (known)
      return fail(Status(Code::kProtocolError,
                         fmt::format("receive {} of tag {} withdrawn twice", f.seq, f.tag)));
    if (ts.skipSeqs.size() >= kMaxPendingCts)
      return fail(Status(Code::kProtocolError,
                         fmt::format("the peer withdrew more than {} receives of tag {} ahead "
                                     "of this side's sends",
                                     kMaxPendingCts, f.tag)));
    ts.skipSeqs.push_back(f.seq);
    for (size_t i = ts.skipSeqs.size() - 1; i > 0 && ts.skipSeqs[i - 1] > ts.skipSeqs[i]; --i)
      std::swap(ts.skipSeqs[i - 1], ts.skipSeqs[i]);
    withdrawn = true;
  } else {
    for (size_t i = 0; i < ts.unmatchedSends.size(); ++i) {
      OpState* op = ts.unmatchedSends[i];
      if (op->seq != f.seq) continue;
      ts.unmatchedSends.erase(i);
      --awaitingCts;
      op->matched = true;
      finish(op, Status(Code::kCanceled,
                        fmt::format("peer {} canceled receive {} of tag {}, which this send "
                                    "matches",
                                    peer, f.seq, f.tag)));
      withdrawn = true;
      break;
    }
  }
  // A CTS already here for that seq will never be used.
  for (size_t i = 0; withdrawn && i < ts.cts.size(); ++i) {
    if (ts.cts[i].seq != f.seq) continue;
    ts.cts.erase(i);
    break;
  }
  sendNotice(wire::makeFrame(wire::FrameType::kCancelReply, f.tag, f.seq, 0, 0, withdrawn ? 1 : 0));
}

void EndpointImpl::onCancelReply(const wire::FrameHeader& f) {
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr || !op->cancelPending) {
    // Finished since (its message came first): the answer is moot. Anything else was
    // never asked.
    TagState* ts = findTagState(f.tag);
    if (ts != nullptr && f.seq < ts->nextRecvSeq && op == nullptr) return;
    return fail(Status(Code::kProtocolError,
                       fmt::format("cancel reply for receive {} of tag {}, which asked none",
                                   f.seq, f.tag)));
  }
  op->cancelPending = false;
  if (f.offset == 0) return;  // too late: its message is on its way
  if (op->matched)
    return fail(Status(Code::kProtocolError,
                       fmt::format("the peer withdrew receive {} of tag {} while its message "
                                   "was arriving",
                                   f.seq, f.tag)));
  op->matched = true;
  finish(op, Status(Code::kCanceled,
                    fmt::format("receive {} of tag {} canceled", op->seq, op->tag)));
}

void EndpointImpl::onCancelSend(const wire::FrameHeader& f) {
  TagState& ts = tagState(f.tag);
  if (f.seq >= ts.nextRecvSeq) {
    if (!ts.canceledSends.empty() && ts.canceledSends.back() >= f.seq)
      return fail(Status(Code::kProtocolError,
                         fmt::format("send {} of tag {} canceled twice or out of order", f.seq,
                                     f.tag)));
    if (ts.canceledSends.size() >= kMaxPendingCts)
      return fail(Status(Code::kProtocolError,
                         fmt::format("the peer canceled more than {} sends of tag {} ahead of "
                                     "this side's receives",
                                     kMaxPendingCts, f.tag)));
    ts.canceledSends.push_back(f.seq);
    return;
  }
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr) return;  // the receive finished already (canceled or failed)
  if (op->matched)
    return fail(Status(Code::kProtocolError,
                       fmt::format("the peer canceled send {} of tag {} after its message "
                                   "started",
                                   f.seq, f.tag)));
  op->matched = true;
  op->cancelPending = false;
  finish(op, Status(Code::kCanceled,
                    fmt::format("peer {} canceled its send {} of tag {}", peer, f.seq, f.tag)));
}

// ---------------------------------------------------------------- completion

void EndpointImpl::finish(OpState* op, Status st) {
  if (op->finished) return;
  if (op->landing > 0 && state != EpState::kFailed) {
    // A socket is writing into this receive's buffer right now: ending the request would
    // hand the buffer back while bytes still land in it. Only a frame that contradicts
    // the transfer gets here; failing the endpoint closes the sockets first.
    fail(Status(Code::kProtocolError,
                fmt::format("tag {} seq {} would end ({}) while its chunks are still landing",
                            op->tag, op->seq, st.toString())));
    return;
  }
  if (st.isOk()) return finishOk(op);
  if (st.code() == Code::kTruncated) BRAID_LOG_WARN(kTransport, "{}", st.message());
  op->status = std::move(st);
  retire(op);
}

void EndpointImpl::retireRma(OpState* op) {
  // One-sided operations have no tag order: visible as soon as they finish.
  rmaOps.erase(std::find(rmaOps.begin(), rmaOps.end(), op));
  op->released = true;
  maybeRecycle(op);
}

void EndpointImpl::recycle(OpState* op) {
  op->reset();
  ops.put(op);
}

}  // namespace braid
