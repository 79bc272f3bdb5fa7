// Endpoint: the message protocol (matching, CTS, eager, chunking) and the client side
// of the connection handshake.
#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- lifecycle

EndpointImpl::EndpointImpl(WorkerImpl* w)
    : worker(w),
      ctx(w->ctx),
      scheduler(SchedulerConfig{w->ctx->chunkSize, std::min<uint64_t>(64 * 1024, w->ctx->chunkSize),
                                128}) {
  lastRxNs = lastTxNs = core::nowNs();
  worker->addEndpoint(this);
}

EndpointImpl::~EndpointImpl() { close(); }

void EndpointImpl::close() {
  if (closed) return;
  closed = true;
  // Eager messages posted over verbs finished when posted: they are acknowledged before
  // the peer hears of the close (its CLOSE handler then finds them in its CQ) and before
  // the QPs go down. A few round trips normally. The worker's progress also reads the
  // control socket: a peer that closed first (it wants nothing more) or died ends the
  // wait at once; at most 1 s otherwise.
  if (verbs && state == EpState::kConnected) {
    const uint64_t deadline = core::nowNs() + 1'000'000'000ull;
    while (state == EpState::kConnected && !verbs->sendsRetired() && core::nowNs() < deadline) {
      verbs->requestRetirement();
      if (!worker->progress(0)) break;
    }
  }
  worker->removeEndpoint(this);
  if (state == EpState::kConnected && control && control->fd() >= 0) {
    // Flush what is queued (a CTS the peer's eager send waits for) and tell the peer this
    // is a close, not a crash; best effort, never blocks.
    OutFrame f;
    f.hdr = wire::makeFrame(wire::FrameType::kClose, 0, 0, 0);
    control->queue(f, false);
    control->flush();
  }
  if (control) worker->linger(control->detach());
  for (auto& d : data)
    if (d) worker->linger(d->detach());
  if (verbs) verbs->shutdown();
  if (state != EpState::kFailed) {
    state = EpState::kFailed;
    error = Status(Code::kCanceled, "endpoint closed");
  }
}

std::string EndpointImpl::describe() const {
  return fmt::format("endpoint {:x} with {}", endpointId, peer.empty() ? "?" : peer);
}

void EndpointImpl::fail(Status st, bool orderly) {
  if (state == EpState::kFailed) return;
  // A verbs rail that failed here (port down, QP fatal) is the root cause even when the
  // peer's control connection dropped first: report what this side knows.
  if (verbs && st.code() != Code::kRailFailed) {
    Status rail = verbs->railFailure();
    if (!rail.isOk()) {
      st = std::move(rail);
      orderly = false;
    }
  }
  state = EpState::kFailed;
  error = st.code() == Code::kConnectionReset || st.code() == Code::kTimedOut ||
                  st.code() == Code::kConnectionRefused || st.code() == Code::kProtocolError
              ? st
              : Status(Code::kEndpointFailed, st.toString());
  // A peer's orderly close with nothing outstanding is news, not an error.
  if (orderly && outstanding == 0)
    BRAID_LOG_INFO(kTransport, "{}: {}", describe(), error.message());
  else
    BRAID_LOG_ERROR(kTransport, "{} failed: {}", describe(), error.toString());
  if (control) control->closeFd();
  for (auto& d : data)
    if (d) d->closeFd();
  // Nothing more may land in user buffers once their requests have failed.
  if (verbs) verbs->shutdown();
  finishAll(error);
}

void EndpointImpl::finishAll(const Status& st) {
  // Collect first: finishing releases (pops) ops from the per-tag queues. Only unfinished
  // ops are collected, and those cannot be recycled before they finish.
  std::vector<OpState*> open;
  for (auto& [tag, ts] : tags) {
    for (size_t i = 0; i < ts.sends.size(); ++i)
      if (!ts.sends[i]->finished) open.push_back(ts.sends[i]);
    for (size_t i = 0; i < ts.recvs.size(); ++i)
      if (!ts.recvs[i]->finished) open.push_back(ts.recvs[i]);
    ts.unmatchedSends.clear();
  }
  awaitingCts = 0;
  open.insert(open.end(), rmaOps.begin(), rmaOps.end());
  for (OpState* op : open) finish(op, st);
}

// ---------------------------------------------------------------- posting

std::vector<Channel*> EndpointImpl::allChannels() const {
  std::vector<Channel*> v;
  if (control) v.push_back(control.get());
  for (auto& d : data)
    if (d) v.push_back(d.get());
  return v;
}

Result<Request> EndpointImpl::post(const std::shared_ptr<EndpointImpl>& self, OpState::Kind kind,
                                   uint8_t* buf, uint64_t len, uint64_t tag,
                                   const MemoryRegion* mr) {
  // An eager message finishes at its sender when handed over, so a peer may send and
  // close before this side posts the receive: messages that arrived whole before the
  // endpoint failed or closed are still delivered to the receives that match them.
  const bool buffered =
      state == EpState::kFailed && kind == OpState::Kind::kRecv && hasBuffered(tag);
  if (state == EpState::kFailed && !buffered) return error;
  if (state != EpState::kConnected && !buffered)
    return Status(Code::kInvalidArgument,
                  fmt::format("{} is not connected yet: call connectProgress() until it returns ok",
                              describe()));
  if (buf == nullptr && len > 0)
    return Status(Code::kInvalidArgument, "null buffer with a non-zero length");
  // Verbs: a buffer that may move by RDMA needs its registration on every rail first
  // (the caller's MemoryRegion, or one made for this request).
  std::shared_ptr<const MemoryRegionImpl> reg;
  if (verbs && len > eagerMax && !buffered) {
    if (mr && mr->impl() && mr->impl()->perRail.size() == ctx->verbsRails.size()) {
      reg = mr->shared();
    } else {
      auto r = registerOnRails(ctx->verbsRails, buf, len, /*cached=*/false);
      if (!r) return r.status();
      reg = std::move(r).value();
    }
  }
  OpState* op = ops.get();  // clean: new, or reset by maybeRecycle before it went back
  op->kind = kind;
  op->tag = tag;
  op->buf = buf;
  op->len = len;
  op->hasHandle = true;
  op->reg = std::move(reg);
  ++outstanding;
  TagState& ts = tagState(tag);
  if (kind == OpState::Kind::kSend) {
    op->seq = ts.nextSendSeq++;
    ts.sends.push_back(op);
    if (len <= eagerMax) {
      // Eager: the payload goes now and the send finishes once it is handed over (posted,
      // or written to the socket). It needs no CTS: a receive too small for it fails at
      // the receiver. A CTS that arrives for it anyway (a rendezvous-sized receive) is
      // dropped by matchSends.
      op->matched = true;
      if (verbs) {
        verbs->sendEager(op);
      } else {
        OutFrame f;
        f.hdr =
            wire::makeFrame(wire::FrameType::kEager, tag, op->seq, len, static_cast<uint32_t>(len));
        f.payload = buf;
        f.op = op;
        control->queue(f, true);
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
      if (verbs && state == EpState::kConnected && !op->matched)
        verbs->sendRts(tag, op->seq, len);
    }
  } else {
    op->seq = ts.nextRecvSeq++;
    ts.recvs.push_back(op);
    if (buffered) {
      // Nothing to tell the peer: the message is here.
    } else if (verbs) {
      // A CTS only for a receive that can take a rendezvous message, or one whose sender
      // announced a message too large for it (RTS, arrived before this receive).
      bool announced = !ts.rts.empty() && ts.rts.front() == op->seq;
      if (announced) ts.rts.pop_front();
      if (len > eagerMax || announced)
        BRAID_RETURN_IF_ERROR(verbs->postReceive(op, op->reg.get()));
    } else {
      OutFrame f;
      f.hdr = wire::makeFrame(wire::FrameType::kCts, tag, op->seq, len);
      control->queue(f, false);  // goes out with the next send or progress()
      controlDirty = true;
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
        finish(op, Status::ok());
      }
      ts.unexpected.erase(ts.unexpected.begin());
      ++stats.messagesReceived;
    }
  }
  return Request(self, op);  // a copy: one increment, no weak_ptr lock
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
                  fmt::format("{}: {} moves data over TCP; one-sided writes and reads need verbs "
                              "rails on both sides",
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
  verbs->startRma(op, rk, offset);
  return Request(self, op);  // a copy: one increment, no weak_ptr lock
}

void EndpointImpl::flushControl() {
  controlDirty = false;
  if (control && control->fd() >= 0) control->flush();
}

// ---------------------------------------------------------------- send side

void EndpointImpl::matchSends(TagState& ts) {
  // ts.cts is sorted by seq (over verbs, ring entries and CTS riding on SENDs may arrive
  // in either order); ts.unmatchedSends holds the rendezvous sends waiting, in order.
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
  if (op->len > cts.capacity) {
    Status st(Code::kTruncated,
              fmt::format("message {} of tag {} to {} has {} bytes but the peer posted a receive "
                          "of {}: the peer must post a larger buffer",
                          op->seq, op->tag, peer, op->len, cts.capacity));
    if (verbs) {
      verbs->sendTruncated(op->tag, op->seq, op->len);
    } else {
      OutFrame f;
      f.hdr = wire::makeFrame(wire::FrameType::kTruncated, op->tag, op->seq, op->len);
      control->queue(f, true);
    }
    finish(op, st);
    return;
  }
  if (verbs) {
    if (cts.addr == 0) {
      fail(Status(Code::kProtocolError,
                  fmt::format("clear-to-send for tag {} seq {} of {} bytes has no buffer address",
                              cts.tag, cts.seq, cts.capacity)));
      return;
    }
    verbs->startRendezvous(op, cts, op->reg.get());
    return;
  }
  // Large: stripe over rails, each chunk to the least-loaded socket of its rail.
  snaps.resize(railCount);
  for (uint32_t r = 0; r < railCount; ++r) {
    uint64_t q = 0;
    for (uint32_t k = 0; k < socketsPerRail; ++k) q += data[r * socketsPerRail + k]->queuedBytes();
    snaps[r] = RailSnapshot{r, socketsPerRail, q, 0.0, true};
  }
  scheduler.plan(op->len, snaps, plan);
  for (const Chunk& c : plan) {
    Channel* best = nullptr;
    for (uint32_t k = 0; k < socketsPerRail; ++k) {
      Channel* ch = data[c.rail * socketsPerRail + k].get();
      if (!best || ch->queuedBytes() < best->queuedBytes()) best = ch;
    }
    OutFrame f;
    f.hdr = wire::makeFrame(wire::FrameType::kChunk, op->tag, op->seq, op->len,
                  static_cast<uint32_t>(c.length), c.offset);
    f.payload = op->buf + c.offset;
    f.op = op;
    best->queue(f, true);
    if (state == EpState::kFailed) return;
  }
}

void EndpointImpl::onFrameSent(OutFrame& f) {
  OpState* op = f.op;
  if (!op) return;
  --op->pendingFrames;
  if (!op->finished) {
    op->bytesDone += f.hdr.length;
    if (op->matched && op->bytesDone == op->len) finish(op, Status::ok());
  } else {
    maybeRecycle(op);
  }
}

// ---------------------------------------------------------------- receive side

void EndpointImpl::onCts(const wire::CtsEntry& cts) {
  TagState& ts = tagState(cts.tag);
  ts.cts.push_back(cts);
  sortLastCts(ts.cts);
  matchSends(ts);
}

void EndpointImpl::onFrame(const wire::FrameHeader& f, const uint8_t* payload) {
  switch (static_cast<wire::FrameType>(f.type)) {
    case wire::FrameType::kCts: {
      wire::CtsEntry e{};
      e.tag = f.tag;
      e.seq = f.seq;
      e.capacity = f.total;
      onCts(e);
      return;
    }
    case wire::FrameType::kEager:
      onEager(f.tag, f.seq, payload, f.length);  // checkFrame: total == length
      return;
    case wire::FrameType::kTruncated: {
      TagState& ts = tagState(f.tag);
      for (size_t i = 0; i < ts.recvs.size(); ++i) {
        OpState* op = ts.recvs[i];
        if (op->seq == f.seq && !op->finished) {
          op->size = f.total;
          finish(op, Status(Code::kTruncated,
                            fmt::format("message {} of tag {} from {} has {} bytes but the "
                                        "receive buffer holds {}: post a larger buffer",
                                        f.seq, f.tag, peer, f.total, op->len)));
        }
      }
      return;
    }
    case wire::FrameType::kHeartbeat:
      return;
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
  if (op == nullptr) {
    if (seq < ts.nextRecvSeq) {
      fail(Status(Code::kProtocolError,
                  fmt::format("eager message for tag {} seq {} that was already received", tag,
                              seq)));
      return;
    }
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

OpState* EndpointImpl::findRecv(uint64_t tag, uint64_t seq) {
  TagState* found = findTagState(tag);
  if (found == nullptr) return nullptr;
  TagState& ts = *found;
  if (ts.recvs.empty() || seq < ts.recvs.front()->seq ||
      seq - ts.recvs.front()->seq >= ts.recvs.size())
    return nullptr;
  OpState* op = ts.recvs[seq - ts.recvs.front()->seq];
  return op->finished ? nullptr : op;
}

void EndpointImpl::onFin(const wire::FrameHeader& f) {
  OpState* op = findRecv(f.tag, f.seq);
  if (op == nullptr || f.total > op->len || (op->matched && op->size != f.total)) {
    fail(Status(Code::kProtocolError,
                fmt::format("end of rail transfer for tag {} seq {} ({} of {} bytes) that matches "
                            "no posted receive",
                            f.tag, f.seq, f.offset, f.total)));
    return;
  }
  op->matched = true;
  op->size = f.total;
  op->bytesDone += f.offset;
  stats.bytesReceived += f.offset;
  if (op->bytesDone > op->size) {
    fail(Status(Code::kProtocolError,
                fmt::format("tag {} seq {}: rails reported {} bytes of a {}-byte message", f.tag,
                            f.seq, op->bytesDone, op->size)));
    return;
  }
  if (op->bytesDone == op->size) {
    ++stats.messagesReceived;
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
  op->matched = true;
  op->size = f.total;
  *out = op;
  return op->buf + f.offset;
}

void EndpointImpl::onChunkLanded(OpState* op, uint64_t bytes) {
  op->bytesDone += bytes;
  stats.bytesReceived += bytes;
  if (op->bytesDone == op->size && !op->finished) {
    ++stats.messagesReceived;
    finish(op, Status::ok());
  }
}

// ---------------------------------------------------------------- completion

void EndpointImpl::finish(OpState* op, Status st) {
  if (op->finished) return;
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

// ---------------------------------------------------------------- timers

void EndpointImpl::tick(uint64_t now) {
  if (state == EpState::kFailed) return;
  if (state != EpState::kConnected) {
    if (now > deadlineNs)
      fail(Status(Code::kTimedOut,
                  fmt::format("connection with {} not established within BRAID_TIMEOUT_MS={} "
                              "(state {}); check the address, firewall and that the peer accepts",
                              peer, ctx->timeoutMs, static_cast<int>(state))));
    return;
  }
  if (verbs) {
    verbs->tick(now);
    if (state == EpState::kFailed) return;
  }
  uint64_t timeoutNs = static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull;
  if (now - lastTxNs > timeoutNs / 3 && !control->hasOutput()) {
    OutFrame f;
    f.hdr = wire::makeFrame(wire::FrameType::kHeartbeat, 0, 0, 0);
    control->queue(f, true);
  }
  if (outstanding > 0 && now - lastRxNs > timeoutNs)
    fail(Status(Code::kTimedOut,
                fmt::format("nothing heard from peer {} for {} ms (BRAID_TIMEOUT_MS) while {} "
                            "requests wait: the peer is hung, stopped or unreachable",
                            peer, (now - lastRxNs) / 1000000, outstanding)));
}

// ---------------------------------------------------------------- client handshake

Status EndpointImpl::startConnect(const Address& addr) {
  // Address layout: see listener.cc (encodeAddress).
  uint32_t magic;
  std::memcpy(&magic, addr.bytes, 4);
  if (magic != wire::kMagic) return Status(Code::kInvalidArgument, "not a braid address");
  uint16_t family, port;
  std::memcpy(&family, addr.bytes + 6, 2);
  std::memcpy(&port, addr.bytes + 8, 2);
  std::memcpy(&token, addr.bytes + 16, 8);
  tcp::SockAddr remote = tcp::SockAddr::fromBytes(family, addr.bytes + 24, port);
  if (remote.len == 0) return Status(Code::kInvalidArgument, "address with unknown family");
  peer = remote.toString();
  ctrlAddr = remote;
  nonce = core::randomNonZero();
  deadlineNs = core::nowNs() + static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull;
  for (const auto& i : ctx->tcpRails) {
    uint8_t bytes[16];
    i.addr.toBytes(bytes);
    localRails.push_back(wire::makeRailDesc(i.name, i.addr.family(), bytes, 0));
  }
  if (!ctx->verbsRails.empty()) {
    auto vp = VerbsPath::create(this, ctx->verbsRails);
    if (vp) {
      verbs = std::move(vp).value();
    } else if (ctx->wantVerbsOnly) {
      return vp.status().withContext("creating the verbs queue pairs");
    } else {
      BRAID_LOG_WARN(kTransport, "connect to {}: verbs unavailable ({}); moving data over TCP",
                     peer, vp.status().toString());
    }
  }
  tcp::SockAddr local;  // control socket: let the kernel choose the source
  BRAID_ASSIGN_OR_RETURN(tcp::Fd fd,
                         tcp::startConnect(local, remote, {0, ctx->timeoutMs}));
  control = std::make_unique<Channel>(this, std::move(fd), -1, 0, true);
  BRAID_RETURN_IF_ERROR(worker->poller.add(control->fd(), EPOLLIN | EPOLLOUT, control.get()));
  wire::HelloBody hb{};
  hb.token = token;
  hb.nonce = nonce;
  hb.railCount = static_cast<uint32_t>(localRails.size());
  hb.socketsPerRail = static_cast<uint32_t>(ctx->socketsPerRail);
  hb.eagerMax = ctx->eagerMax;
  hb.transport = static_cast<uint32_t>(ctx->wantVerbsOnly ? Transport::kVerbs
                                       : verbs           ? Transport::kAuto
                                                         : Transport::kTcp);
  std::vector<wire::VerbsRailDesc> vdescs;
  if (verbs) vdescs = verbs->localDescs();
  hb.verbsRailCount = static_cast<uint32_t>(vdescs.size());
  hsOut = wire::encodeHello(hb, localRails, vdescs);
  hsSent = 0;
  hsBuf.assign(sizeof(wire::HsHeader), 0);
  hsGot = 0;
  state = EpState::kConnecting;
  return Status::ok();
}

void EndpointImpl::onHandshakeEvent(Channel& ch, uint32_t events) {
  (void)events;
  if (state == EpState::kFailed) return;
  Status st = progressHandshake(ch);
  if (!st.isOk() && st.code() != Code::kInProgress) fail(st);
}

Status EndpointImpl::progressHandshake(Channel& ch) {
  if (&ch == control.get()) {
    if (state == EpState::kConnecting) {
      Status c = tcp::finishConnect(ch.fd(), ctrlAddr);
      if (c.code() == Code::kInProgress) return c;
      if (!c.isOk())
        return Status(c.code(), fmt::format("connect to listener {}: {}", peer, c.message()));
      // Write the hello (small: normally one call).
      while (hsSent < hsOut.size()) {
        iovec iov{hsOut.data() + hsSent, hsOut.size() - hsSent};
        BRAID_ASSIGN_OR_RETURN(auto r, tcp::writeSomeV(ch.fd(), &iov, 1, peer));
        if (r.wouldBlock) return Status(Code::kInProgress);
        hsSent += r.bytes;
      }
      BRAID_RETURN_IF_ERROR(worker->poller.modify(ch.fd(), EPOLLIN, &ch));
      state = EpState::kAwaitAck;
    }
    if (state == EpState::kAwaitAck) {
      for (;;) {
        BRAID_ASSIGN_OR_RETURN(auto r, tcp::readSome(ch.fd(), hsBuf.data() + hsGot,
                                                     hsBuf.size() - hsGot, peer));
        if (r.eof)
          return Status(Code::kConnectionRefused,
                        fmt::format("listener {} closed the connection during the handshake "
                                    "(wrong job token or version, or not a braid listener?)",
                                    peer));
        if (r.wouldBlock) return Status(Code::kInProgress);
        hsGot += r.bytes;
        if (hsGot < hsBuf.size()) continue;
        wire::HsHeader h;
        std::memcpy(&h, hsBuf.data(), sizeof h);
        if (hsBuf.size() == sizeof h) {
          auto chk = wire::checkHeader(h);
          if (!chk.status.isOk()) return chk.status.withContext("reply from " + peer);
          hsBuf.resize(sizeof h + h.length);
          if (h.length > 0) continue;
        }
        const uint8_t* body = hsBuf.data() + sizeof h;
        if (h.type == static_cast<uint16_t>(wire::HsType::kReject))
          return wire::decodeReject(body, h.length).withContext(peer);
        if (h.type != static_cast<uint16_t>(wire::HsType::kHelloAck))
          return Status(Code::kProtocolError, fmt::format("{} answered the hello with frame "
                                                          "type {}", peer, h.type));
        BRAID_ASSIGN_OR_RETURN(wire::HelloAck ack, wire::decodeHelloAck(body, h.length));
        if (ack.body.nonce != nonce)
          return Status(Code::kProtocolError, fmt::format("{} acked another connection", peer));
        return startDataSockets(ack);
      }
    }
    return Status(Code::kInProgress);
  }
  // A data socket: finish the connect, then write its join.
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i].get() != &ch || dataReady[i]) continue;
    if (dataConnecting[i]) {
      const wire::RailDesc& pr = peerRails[i / socketsPerRail];
      Status c = tcp::finishConnect(ch.fd(), tcp::SockAddr::fromBytes(pr.family, pr.addr, pr.port));
      if (c.code() == Code::kInProgress) return c;
      if (!c.isOk())
        return Status(c.code(), fmt::format("data socket {} of rail {} to {}: {}",
                                            i % socketsPerRail, i / socketsPerRail,
                                            wire::railName(peerRails[i / socketsPerRail]),
                                            c.message()));
      dataConnecting[i] = false;
    }
    while (joinSent[i] < joinOut[i].size()) {
      iovec iov{joinOut[i].data() + joinSent[i], joinOut[i].size() - joinSent[i]};
      BRAID_ASSIGN_OR_RETURN(auto r, tcp::writeSomeV(ch.fd(), &iov, 1, peer));
      if (r.wouldBlock) return Status(Code::kInProgress);
      joinSent[i] += r.bytes;
    }
    dataReady[i] = true;
    BRAID_RETURN_IF_ERROR(worker->poller.modify(ch.fd(), EPOLLIN, &ch));
  }
  if (std::all_of(dataReady.begin(), dataReady.end(), [](bool b) { return b; })) onConnected();
  return Status::ok();
}

Status EndpointImpl::startDataSockets(const wire::HelloAck& ack) {
  endpointId = ack.body.endpointId;
  railCount = ack.body.railCount;
  socketsPerRail = ack.body.socketsPerRail;
  eagerMax = ack.body.eagerMax;
  peerRails = ack.rails;
  if (railCount > localRails.size() || railCount != peerRails.size())
    return Status(Code::kProtocolError, "listener acked more rails than offered");
  if (ack.body.verbsRailCount > 0) {
    if (!verbs || ack.body.verbsRailCount > verbs->laneCount())
      return Status(Code::kProtocolError,
                    fmt::format("listener {} acked {} verbs rails, {} were offered", peer,
                                ack.body.verbsRailCount, verbs ? verbs->laneCount() : 0));
    // Our QPs reach RTS before any data socket joins: the listener sends nothing over
    // verbs before every join has arrived.
    BRAID_RETURN_IF_ERROR(verbs->connect(ack.verbsRails, ack.body.verbsRailCount, eagerMax)
                              .withContext("listener " + peer));
  } else if (verbs) {
    if (ctx->wantVerbsOnly)
      return Status(Code::kUnsupported,
                    fmt::format("listener {} has no verbs rail in common with this side "
                                "(BRAID_TRANSPORT=verbs here): check `braid_info` on both "
                                "hosts, or use BRAID_TRANSPORT=auto",
                                peer));
    BRAID_LOG_INFO(kTransport, "listener {} has no verbs rails: moving data over TCP", peer);
    verbs.reset();
  }
  state = EpState::kJoining;
  size_t n = static_cast<size_t>(railCount) * socketsPerRail;
  data.resize(n);
  dataReady.assign(n, false);
  dataConnecting.assign(n, true);
  joinOut.resize(n);
  joinSent.assign(n, 0);
  for (uint32_t r = 0; r < railCount; ++r) {
    tcp::SockAddr local = tcp::SockAddr::fromBytes(localRails[r].family, localRails[r].addr, 0);
    tcp::SockAddr remote =
        tcp::SockAddr::fromBytes(peerRails[r].family, peerRails[r].addr, peerRails[r].port);
    for (uint32_t k = 0; k < socketsPerRail; ++k) {
      size_t i = r * socketsPerRail + k;
      tcp::SocketTuning t{static_cast<int>(ctx->params.socketBufSize), ctx->timeoutMs};
      BRAID_ASSIGN_OR_RETURN(tcp::Fd fd, tcp::startConnect(local, remote, t));
      data[i] = std::make_unique<Channel>(this, std::move(fd), static_cast<int>(r),
                                          static_cast<int>(k), false);
      BRAID_RETURN_IF_ERROR(worker->poller.add(data[i]->fd(), EPOLLOUT, data[i].get()));
      joinOut[i] = wire::encodeJoin({token, endpointId, r, k});
    }
  }
  BRAID_LOG_DEBUG(kTransport, "{}: hello acked, {} rails x {} sockets", describe(), railCount,
                  socketsPerRail);
  return Status(Code::kInProgress);
}

void EndpointImpl::onConnected() {
  state = EpState::kConnected;
  for (Channel* ch : allChannels()) {
    Status st = ch->arm(EPOLLIN);
    if (!st.isOk()) return fail(st);
  }
  stats.bytesSentPerRail.assign(verbs ? verbs->laneCount() : railCount, 0);
  lastRxNs = lastTxNs = core::nowNs();
  hsBuf.clear();
  hsBuf.shrink_to_fit();
  joinOut.clear();
  std::string rails;
  for (uint32_t r = 0; r < railCount; ++r)
    rails += fmt::format(" {}->{}", wire::railName(localRails[r]), wire::railName(peerRails[r]));
  if (verbs) {
    std::string lanes;
    for (size_t i = 0; i < verbs->laneCount(); ++i) lanes += " " + verbs->laneName(i);
    BRAID_LOG_INFO(kTransport, "{} connected ({}): {} verbs rails:{}; tcp (control):{}",
                   describe(), isServer ? "accepted" : "connected", verbs->laneCount(), lanes,
                   rails);
    return;
  }
  BRAID_LOG_INFO(kTransport, "{} connected ({}): {} rails x {} sockets:{}", describe(),
                 isServer ? "accepted" : "connected", railCount, socketsPerRail, rails);
}

Status EndpointImpl::connectProgress() {
  if (state == EpState::kConnected) return Status::ok();
  if (state == EpState::kFailed) return error;
  BRAID_ASSIGN_OR_RETURN(size_t n, worker->progress(0));
  (void)n;
  if (state == EpState::kConnected) return Status::ok();
  if (state == EpState::kFailed) return error;
  return Status(Code::kInProgress, "connecting to " + peer);
}

// ---------------------------------------------------------------- public wrappers

Endpoint::Endpoint(std::shared_ptr<EndpointImpl> impl) : impl_(std::move(impl)) {}

Endpoint::~Endpoint() {
  if (!impl_) return;
  if (impl_->state != EpState::kFailed && impl_->outstanding > 0)
    BRAID_LOG_WARN(kTransport, "{} closed with {} requests outstanding: they are canceled",
                   impl_->describe(), impl_->outstanding);
  // Cancel what is left so Request handles see a clean error; keep the impl alive for them.
  impl_->finishAll(Status(Code::kCanceled, "endpoint closed"));
  impl_->close();
}

Result<std::unique_ptr<Endpoint>> Endpoint::connect(Worker& worker, const Address& address) {
  auto impl = std::make_shared<EndpointImpl>(&worker.impl());
  Status st = impl->startConnect(address);
  if (!st.isOk()) {
    BRAID_LOG_ERROR(kTransport, "connect to {}: {}", address.toString(), st.toString());
    return st;
  }
  return std::unique_ptr<Endpoint>(new Endpoint(std::move(impl)));
}

Status Endpoint::connectProgress() { return impl_->connectProgress(); }

Status Endpoint::waitConnected(std::chrono::milliseconds timeout) {
  uint64_t end = core::nowNs() + static_cast<uint64_t>(std::min<int64_t>(
                                     timeout.count(), INT64_MAX / 2000000)) * 1000000ull;
  for (;;) {
    Status st = connectProgress();
    if (st.code() != Code::kInProgress) return st;
    if (core::nowNs() > end)
      return Status(Code::kTimedOut, fmt::format("not connected to {} within {} ms",
                                                 impl_->peer, timeout.count()));
    auto r = impl_->worker->progress(1);
    if (!r) return r.status();
  }
}

Result<Request> Endpoint::isend(const void* buf, size_t len, uint64_t tag, const MemoryRegion* mr) {
  if (mr && !mr->contains(buf, len))
    return Status(Code::kInvalidArgument, "isend: buffer outside its MemoryRegion");
  return impl_->post(impl_, OpState::Kind::kSend, static_cast<uint8_t*>(const_cast<void*>(buf)),
                     len, tag, mr);
}

Result<Request> Endpoint::irecv(void* buf, size_t len, uint64_t tag, const MemoryRegion* mr) {
  if (mr && !mr->contains(buf, len))
    return Status(Code::kInvalidArgument, "irecv: buffer outside its MemoryRegion");
  return impl_->post(impl_, OpState::Kind::kRecv, static_cast<uint8_t*>(buf), len, tag, mr);
}

Result<Request> Endpoint::iwrite(const void* src, size_t len, const MemoryRegion& local,
                                 const RemoteKey& remote, uint64_t remoteOffset) {
  return impl_->postRma(impl_, OpState::Kind::kWrite, static_cast<uint8_t*>(const_cast<void*>(src)),
                        len, local, remote, remoteOffset);
}

Result<Request> Endpoint::iread(void* dst, size_t len, const MemoryRegion& local,
                                const RemoteKey& remote, uint64_t remoteOffset) {
  return impl_->postRma(impl_, OpState::Kind::kRead, static_cast<uint8_t*>(dst), len, local, remote,
                        remoteOffset);
}

std::string Endpoint::peerName() const { return impl_->peer; }
Transport Endpoint::transport() const {
  return impl_->verbs ? Transport::kVerbs : Transport::kTcp;
}

size_t Endpoint::railCount() const {
  return impl_->verbs ? impl_->verbs->laneCount() : impl_->railCount;
}
EndpointStats Endpoint::stats() const { return impl_->stats; }
Status Endpoint::error() const {
  return impl_->state == EpState::kFailed ? impl_->error : Status();
}

// ---------------------------------------------------------------- Request

Request::Request(std::shared_ptr<EndpointImpl> ep, OpState* op) : ep_(std::move(ep)), op_(op) {}

void Request::release() noexcept {
  ep_->dropHandle(op_);
  op_ = nullptr;
  ep_.reset();
}

Status Request::test() {
  if (!op_) return Status(Code::kInvalidArgument, "test() on an empty Request");
  // An ok status is returned without copying op_->status (a string): test() is polled.
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  auto r = ep_->worker->progress(0);
  if (!r) return r.status();
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  return Status(Code::kInProgress);
}

Status Request::wait(std::chrono::milliseconds timeout) {
  if (!op_) return Status(Code::kInvalidArgument, "wait() on an empty Request");
  uint64_t start = core::nowNs();
  uint64_t limit =
      timeout.count() >= INT64_MAX / 2000000
          ? UINT64_MAX
          : start + static_cast<uint64_t>(std::max<int64_t>(0, timeout.count())) * 1000000ull;
  uint64_t spinEnd = start + static_cast<uint64_t>(ep_->ctx->spinUs) * 1000ull;
  for (;;) {
    Status st = test();
    if (st.code() != Code::kInProgress) return st;
    uint64_t now = core::nowNs();
    if (now >= limit)
      return Status(Code::kTimedOut, fmt::format("request (tag {}) not finished within {} ms",
                                                 op_->tag, timeout.count()));
    if (now >= spinEnd) {
      uint64_t left = (limit - now) / 1000000ull;
      auto r = ep_->worker->progress(static_cast<int>(std::clamp<uint64_t>(left, 1, 100)));
      if (!r) return r.status();
    }
  }
}

size_t Request::size() const {
  if (!op_) return 0;
  return op_->kind == OpState::Kind::kSend ? op_->len : op_->size;
}

}  // namespace braid
