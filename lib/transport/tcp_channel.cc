// One TCP socket of an endpoint: framed writes from user buffers, and reads that land
// chunk payloads straight in the receive buffer.
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

namespace {
constexpr int kMaxIov = 64;
constexpr size_t kMaxReadPerEvent = 8u << 20;  // fairness between sockets
}  // namespace

Channel::Channel(EndpointImpl* ep, tcp::Fd fd, int rail, int index, bool control)
    : ep_(ep), fd_(std::move(fd)), rail_(rail), index_(index), control_(control) {
  if (control_) rx_.resize(std::max<size_t>(256 * 1024, 2 * (ep->ctx->eagerMax + 64)));
}

Channel::~Channel() { closeFd(); }

void Channel::closeFd() noexcept {
  if (fd_.valid()) {
    ep_->worker->poller.remove(fd_.get());
    fd_.reset();
  }
  while (!out_.empty()) {
    if (out_.front().op) {
      --out_.front().op->pendingFrames;
      ep_->maybeRecycle(out_.front().op);
    }
    out_.pop_front();
  }
  queuedBytes_ = 0;
  while (!unacked_.empty()) {
    OpState* op = unacked_.front().op;
    unacked_.pop_front();
    --ep_->unackedChunks;
    --op->pendingFrames;
    ep_->maybeRecycle(op);
  }
}

void Channel::abandon(std::vector<Lost>& lost) {
  for (size_t i = 0; i < unacked_.size(); ++i)
    lost.push_back({unacked_[i].op, unacked_[i].offset, unacked_[i].bytes});
  ep_->unackedChunks -= unacked_.size();
  unacked_.clear();
  while (!out_.empty()) {
    const OutFrame& f = out_.front();
    if (f.op) lost.push_back({f.op, f.hdr.offset, f.hdr.length});
    out_.pop_front();
  }
  queuedBytes_ = 0;
  if (inPayload_ && rxOp_) {  // the rest of that chunk comes again over another rail
    OpState* op = std::exchange(rxOp_, nullptr);
    ep_->onChunkLanded(op, hdr_.offset, 0);
  }
  inPayload_ = false;
  closeFd();
}

void Channel::drain() {
  // readData stops at an empty socket, an error or EOF (all of which close nothing here:
  // the rail is down already) or its per-call budget.
  for (int i = 0; i < 16 && fd_.valid() && !control_ && preamble_.empty(); ++i) {
    int avail = 0;
    if (::ioctl(fd_.get(), FIONREAD, &avail) < 0 || avail <= 0) return;
    readData();
  }
}

void Channel::dropLanding() {
  if (!inPayload_ || rxOp_ == nullptr) return;
  OpState* op = std::exchange(rxOp_, nullptr);
  dest_ = nullptr;
  ep_->onChunkLanded(op, hdr_.offset, 0);
}

Status Channel::reopen(tcp::Fd fd, std::vector<uint8_t> preamble, const tcp::SockAddr& remote) {
  closeFd();
  fd_ = std::move(fd);
  written_ = 0;
  hdrGot_ = 0;
  inPayload_ = false;
  dest_ = nullptr;
  remaining_ = 0;
  rxOp_ = nullptr;
  preamble_ = std::move(preamble);
  preambleSent_ = 0;
  connecting_ = !preamble_.empty();
  remote_ = remote;
  wantOut_ = connecting_;
  return ep_->worker->poller.add(fd_.get(), connecting_ ? EPOLLOUT : EPOLLIN, this);
}

void Channel::progressRejoin() {
  Status st = Status::ok();
  if (connecting_) {
    st = tcp::finishConnect(fd_.get(), remote_);
    if (st.code() == Code::kInProgress) return;
    if (st.isOk()) connecting_ = false;
  }
  while (st.isOk() && preambleSent_ < preamble_.size()) {
    iovec iov{preamble_.data() + preambleSent_, preamble_.size() - preambleSent_};
    auto r = tcp::writeSomeV(fd_.get(), &iov, 1, ep_->peer);
    if (!r) {
      st = r.status();
    } else if (r->wouldBlock) {
      return;
    } else {
      preambleSent_ += r->bytes;
    }
  }
  if (st.isOk()) {
    preamble_.clear();
    preamble_.shrink_to_fit();
    st = arm(EPOLLIN);
  }
  if (!st.isOk()) return ep_->rejoinFailed(rail_, st.withContext("rejoin: " + name()));
  ep_->onRejoinWritten(rail_, index_);
}

tcp::Fd Channel::detach() {
  if (fd_.valid()) ep_->worker->poller.remove(fd_.get());
  tcp::Fd f = std::move(fd_);
  closeFd();
  return f;
}

Status Channel::arm(uint32_t events) {
  wantOut_ = (events & EPOLLOUT) != 0;
  return ep_->worker->poller.modify(fd_.get(), events, this);
}

void Channel::setWantOut(bool want) {
  if (want == wantOut_ || !fd_.valid()) return;
  wantOut_ = want;
  Status st = ep_->worker->poller.modify(fd_.get(), EPOLLIN | (want ? EPOLLOUT : 0u), this);
  if (!st.isOk()) ep_->fail(st);
}

std::string Channel::name() const {
  return control_ ? std::string("control socket")
                  : fmt::format("data socket {} of rail {}", index_, rail_);
}

void Channel::onEvent(uint32_t events) {
  if (!fd_.valid()) return;
  if (!preamble_.empty()) return progressRejoin();
  if (ep_->state != EpState::kConnected) {
    ep_->onHandshakeEvent(*this, events);
    return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readAll();
  if (fd_.valid() && (events & EPOLLOUT)) flush();
}

void Channel::queue(const OutFrame& f, bool flushNow) {
  out_.push_back(f);
  queuedBytes_ += f.total();
  if (f.op) ++f.op->pendingFrames;
  // Everything queued goes in one sendmsg (a pending CTS rides with this frame), unless
  // the socket is already full and EPOLLOUT will call flush().
  if (flushNow && !wantOut_) flush();
}

void Channel::flush() {
  if (peerGoneNs_ != 0) return;  // nothing more goes out: the read side finishes the endpoint
  while (!out_.empty() && fd_.valid()) {
    if (rail_ >= 0 && ep_->writeBudget == 0) {  // this progress call wrote its share
      setWantOut(true);
      return;
    }
    iovec iov[kMaxIov];
    int n = 0;
    for (size_t i = 0; i < out_.size() && n + 2 <= kMaxIov; ++i) {
      OutFrame& f = out_[i];
      uint64_t skip = f.sent;
      if (skip < sizeof f.hdr) {
        iov[n++] = {reinterpret_cast<uint8_t*>(&f.hdr) + skip, sizeof f.hdr - skip};
        skip = 0;
      } else {
        skip -= sizeof f.hdr;
      }
      if (f.hdr.length > skip)
        iov[n++] = {const_cast<uint8_t*>(f.payload) + skip, f.hdr.length - skip};
    }
    auto r = tcp::writeSomeV(fd_.get(), iov, n, ep_->peer);
    if (!r) {
      Status st = r.status().withContext(name());
      if (rail_ >= 0 && ep_->railError(rail_, st)) return;
      if (control_ && r.status().code() == Code::kConnectionReset) {
        // The peer went while this side wrote: what it sent before (its last messages,
        // a CLOSE) is still in the socket and says more than this error. The socket reads
        // as readable (data, then the end): readAll delivers it and fails the endpoint;
        // EndpointImpl::tick fails it with this error if that does not come.
        peerGone_ = st;
        peerGoneNs_ = core::nowNs();
        return;
      }
      ep_->fail(st);
      return;
    }
    if (r->wouldBlock) {
      setWantOut(true);
      return;
    }
    ep_->lastTxNs = core::nowNs();
    uint64_t moved = r->bytes;
    if (rail_ >= 0) ep_->writeBudget -= std::min(ep_->writeBudget, moved);
    queuedBytes_ -= moved;
    written_ += moved;
    while (moved > 0) {
      OutFrame& f = out_.front();
      uint64_t take = std::min(moved, f.total() - f.sent);
      f.sent += take;
      moved -= take;
      if (f.sent == f.total()) {
        if (f.hdr.type == static_cast<uint8_t>(wire::FrameType::kChunk) && rail_ >= 0) {
          ep_->stats.bytesSentPerRail[static_cast<size_t>(rail_)] += f.hdr.length;
          ++ep_->links[static_cast<size_t>(rail_)].chunks;
          if (f.postedNs != 0) {
            unacked_.push_back({written_ - moved, f.hdr.length, f.postedNs, f.op, f.hdr.offset});
            ++ep_->unackedChunks;
          }
        }
        ep_->onFrameSent(f);
        out_.pop_front();
      }
    }
  }
  if (out_.empty()) setWantOut(false);
  if (rail_ < 0) return;
  if (!unacked_.empty()) pollAcks(core::nowNs());
  if (!ep_->deferred.empty()) ep_->stripeDeferred();
}

void Channel::pollAcks(uint64_t nowNs) {
  if (unacked_.empty() || !fd_.valid()) return;
  int outq = 0;
  if (::ioctl(fd_.get(), SIOCOUTQ, &outq) < 0) return;
  const uint64_t acked = written_ - std::min<uint64_t>(written_, static_cast<uint64_t>(outq));
  bool any = false;
  while (!unacked_.empty() && unacked_.front().end <= acked) {
    const Unacked u = unacked_.front();
    unacked_.pop_front();
    --ep_->unackedChunks;
    ep_->monitor.chunkCompleted(static_cast<uint32_t>(rail_), u.bytes, u.postedNs, nowNs);
    ep_->onChunkAcked(u.op, u.bytes);
    if (ep_->state == EpState::kFailed) return;
    any = true;
  }
  if (any && !ep_->deferred.empty()) ep_->stripeDeferred();
}

void Channel::readAll() {
  if (control_) {
    size_t budget = kMaxReadPerEvent;
    while (fd_.valid() && budget > 0) {
      if (rxTail_ == rx_.size()) {
        // Compact: the unparsed tail moves to the front. The buffer holds two of the
        // largest frames this side accepts (checkFrame bounds each by the local eager
        // limit), so a full buffer always holds a whole frame; this is a safety net that
        // turns a bug there into an error instead of a zero-byte read spinning forever.
        if (rxHead_ == 0) {
          ep_->fail(Status(Code::kProtocolError,
                           fmt::format("control socket from {}: a frame larger than the {}-byte "
                                       "receive buffer",
                                       ep_->peer, rx_.size())));
          return;
        }
        std::memmove(rx_.data(), rx_.data() + rxHead_, rxTail_ - rxHead_);
        rxTail_ -= rxHead_;
        rxHead_ = 0;
      }
      auto r = tcp::readSome(fd_.get(), rx_.data() + rxTail_, rx_.size() - rxTail_, ep_->peer);
      if (!r) {
        ep_->fail(r.status().withContext("control socket"));
        return;
      }
      if (r->eof) {
        ep_->fail(Status(Code::kConnectionReset,
                         fmt::format("peer {} closed the control connection without a close "
                                     "frame: the peer process died or exited",
                                     ep_->peer)));
        return;
      }
      if (r->wouldBlock) return;
      ep_->lastRxNs = core::nowNs();
      bool drained = r->bytes < rx_.size() - rxTail_;  // a short read emptied the socket
      rxTail_ += r->bytes;
      budget -= std::min(budget, r->bytes);
      if (!handleControlBuffer() || drained) return;  // no extra recv() just to see EAGAIN
    }
    return;
  }
  readData();
}

bool Channel::handleControlBuffer() {
  while (rxTail_ - rxHead_ >= sizeof(wire::FrameHeader)) {
    wire::FrameHeader h;
    std::memcpy(&h, rx_.data() + rxHead_, sizeof h);
    Status st = wire::checkFrame(h, ep_->eagerMax, wire::Path::kControlSocket);
    if (st.isOk() && sizeof h + h.length > rx_.size())
      st = Status(Code::kProtocolError, fmt::format("a {}-byte frame does not fit the {}-byte "
                                                    "receive buffer",
                                                    sizeof h + h.length, rx_.size()));
    if (!st.isOk()) {
      ep_->fail(st.withContext(fmt::format("control socket from {}", ep_->peer)));
      return false;
    }
    if (rxTail_ - rxHead_ < sizeof h + h.length) break;
    rxHead_ += sizeof h;
    const uint8_t* payload = rx_.data() + rxHead_;
    rxHead_ += h.length;
    ep_->onFrame(h, payload);
    if (!fd_.valid()) return false;
  }
  if (rxHead_ == rxTail_) rxHead_ = rxTail_ = 0;
  return true;
}

void Channel::readData() {
  size_t budget = kMaxReadPerEvent;
  while (fd_.valid() && budget > 0) {
    if (!inPayload_) {
      auto r = tcp::readSome(fd_.get(), reinterpret_cast<uint8_t*>(&hdr_) + hdrGot_,
                             sizeof hdr_ - hdrGot_, ep_->peer);
      if (!r) {
        Status st = r.status().withContext(name());
        if (ep_->railError(rail_, st)) return;
        ep_->fail(st);
        return;
      }
      if (r->eof) {
        // Between frames this may be the peer's orderly close: its CLOSE frame, and the
        // messages sent before it, may still wait on the control socket. Read them first.
        // A rail the peer gave up on purpose is reported there too (kRailDown).
        if (ep_->control && ep_->control.get() != this) ep_->control->readAll();
        if (ep_->state == EpState::kFailed || !fd_.valid()) return;
        Status st(Code::kConnectionReset,
                  fmt::format("peer {} closed data socket {} of rail {}{}", ep_->peer, index_,
                              rail_, hdrGot_ == 0 ? "" : " in the middle of a frame header"));
        if (ep_->railError(rail_, st)) return;
        ep_->fail(Status(Code::kConnectionReset,
                         fmt::format("peer {} closed data socket {} of rail {}: the peer process "
                                     "died or exited",
                                     ep_->peer, index_, rail_)));
        return;
      }
      if (r->wouldBlock) return;
      ep_->lastRxNs = core::nowNs();
      hdrGot_ += r->bytes;
      if (hdrGot_ < sizeof hdr_) continue;
      hdrGot_ = 0;
      Status st = wire::checkFrame(hdr_, ep_->eagerMax, wire::Path::kDataSocket);
      if (!st.isOk() && ep_->links.size() > static_cast<size_t>(rail_) &&
          ep_->links[static_cast<size_t>(rail_)].pendingEpoch != 0) {
        // A rejoining socket the listener answered with a reject, not data.
        return ep_->rejoinFailed(rail_, Status(Code::kConnectionRefused,
                                               "the listener refused the rejoin"));
      }
      if (!st.isOk()) {
        ep_->fail(st.withContext(fmt::format("{} from {}", name(), ep_->peer)));
        return;
      }
      dest_ = ep_->chunkDest(hdr_, &rxOp_);
      if (!fd_.valid()) return;  // chunkDest may fail the endpoint
      remaining_ = hdr_.length;
      inPayload_ = true;
    }
    uint8_t* to = dest_;
    size_t want = static_cast<size_t>(std::min<uint64_t>(remaining_, budget));
    if (to == nullptr) {
      if (scratch_.empty()) scratch_.resize(64 * 1024);
      to = scratch_.data();
      want = std::min(want, scratch_.size());
    }
    auto r = tcp::readSome(fd_.get(), to, want, ep_->peer);
    if (!r) {
      Status st = r.status().withContext(name());
      if (ep_->railError(rail_, st)) return;
      ep_->fail(st);
      return;
    }
    if (r->eof) {
      if (ep_->control && ep_->control.get() != this) ep_->control->readAll();
      if (ep_->state == EpState::kFailed || !fd_.valid()) return;
      Status st(Code::kConnectionReset,
                fmt::format("peer {} closed data socket {} of rail {} in the middle of a chunk",
                            ep_->peer, index_, rail_));
      if (ep_->railError(rail_, st)) return;
      ep_->fail(Status(Code::kConnectionReset,
                       fmt::format("peer {} closed data socket {} of rail {} in the middle of a "
                                   "chunk: the peer process died",
                                   ep_->peer, index_, rail_)));
      return;
    }
    if (r->wouldBlock) return;
    ep_->lastRxNs = core::nowNs();
    budget -= std::min(budget, r->bytes);
    remaining_ -= r->bytes;
    if (dest_) dest_ += r->bytes;
    if (remaining_ == 0) {
      inPayload_ = false;
      // The sender's chunk finishes when our kernel acknowledges its last byte
      // (Channel::pollAcks). A chunk that ends on a small segment would wait for the
      // delayed-ACK timer (up to 40 ms on Linux): acknowledge it now. (tcp(7): TCP_QUICKACK
      // sends a pending ACK at once; it is not permanent, hence once per chunk.)
      int one = 1;
      (void)::setsockopt(fd_.get(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
      OpState* op = std::exchange(rxOp_, nullptr);
      if (op) ep_->onChunkLanded(op, hdr_.offset, hdr_.length);
    } else if (r->bytes < want) {
      return;  // short read: the socket is empty for now
    }
  }
}

}  // namespace braid
