// Endpoint: lifecycle (close, failure), timers, and the public Endpoint calls. The
// message protocol is in endpoint_match.cc, the client handshake in endpoint_connect.cc,
// Request in request.cc.
#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- lifecycle

EndpointImpl::EndpointImpl(std::shared_ptr<WorkerImpl> w)
    : workerRef(std::move(w)),
      worker(workerRef.get()),
      ctx(worker->ctx),
      scheduler(SchedulerConfig{.chunkSize = ctx->chunkSize,
                                .minChunk = std::min<uint64_t>(64 * 1024, ctx->chunkSize),
                                .align = 128,
                                .policy = ctx->stripePolicy}) {
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
  const bool wasConnecting = state != EpState::kConnected;
  if (!rmaHeld.empty()) failHeldRma(st);
  // The paths that failed before this one, each with its cause (a peer's orderly close is
  // news, not an error to explain).
  if (!wasConnecting && !orderly) {
    std::string before = railsDownSummary();
    if (!before.empty()) st = Status(st.code(), st.message() + before);
  }
  state = EpState::kFailed;
  error = st.code() == Code::kConnectionReset || st.code() == Code::kTimedOut ||
                  st.code() == Code::kConnectionRefused || st.code() == Code::kProtocolError
              ? st
              : Status(Code::kEndpointFailed, st.toString());
  // A peer's orderly close with nothing outstanding is news, not an error.
  if (orderly && outstanding == 0)
    BRAID_LOG_INFO(kTransport, "{}: {}", describe(), error.message());
  else if (wasConnecting && !isServer)
    // connectProgress()/waitConnected() return it to the caller, who may retry (a tool
    // started before its server): not an error of its own.
    BRAID_LOG_DEBUG(kTransport, "{} failed: {}", describe(), error.toString());
  else
    BRAID_LOG_ERROR(kTransport, "{} failed: {}", describe(), error.toString());
  if (control) control->closeFd();
  for (auto& d : data)
    if (d) d->closeFd();
  // Nothing more may land in user buffers once their requests have failed.
  if (verbs) verbs->shutdown();
  while (!deferred.empty()) {  // sends waiting to be striped: finishAll fails them
    --deferred.front()->pendingFrames;
    deferred.pop_front();
  }
  finishAll(error);
}

void EndpointImpl::finishAll(const Status& st) {
  // A data socket in the middle of a chunk stops writing into its receive first: the
  // requests end now, and their buffers are the caller's again.
  for (auto& d : data)
    if (d) d->dropLanding();
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
  std::vector<OpState*> q;
  q.swap(queued);
  for (OpState* op : q) finishQueued(op, st);
}

// ---------------------------------------------------------------- timers

EndpointStats EndpointImpl::statsWithRails() {
  EndpointStats s = stats;
  if (state != EpState::kConnected && state != EpState::kFailed) return s;
  std::vector<RailSnapshot> snap;
  monitor.snapshot(snap);
  uint64_t total = 0;
  for (uint64_t b : s.bytesSentPerRail) total += b;
  for (size_t i = 0; i < snap.size() && i < s.bytesSentPerRail.size(); ++i) {
    RailStats r;
    if (onVerbs()) r.name = verbs->laneName(i);
    else if (i < localRails.size() && i < peerRails.size())
      r.name = wire::railName(localRails[i]) + " -> " + wire::railName(peerRails[i]);
    r.state = snap[i].health == transport::RailHealth::kUp        ? "up"
              : snap[i].health == transport::RailHealth::kProbing ? "probing"
                                                                  : "down";
    r.bytesSent = s.bytesSentPerRail[i];
    r.share = total ? static_cast<double>(r.bytesSent) / static_cast<double>(total) : 0;
    r.throughputBps = snap[i].throughputEwma;
    r.completionUs = snap[i].completionEwmaUs;
    r.latencyUs = snap[i].latencyUs;
    if (i < links.size()) {
      r.chunks = links[i].chunks;
      r.failures = links[i].failures;
      r.events = links[i].events;
      r.congestion = links[i].congestion;
      r.counters = links[i].counters;
    }
    s.rails.push_back(std::move(r));
  }
  // After a move to TCP: the verbs lanes as they ended, after the TCP rails.
  for (const RailStats& r : lanesGone) {
    s.rails.push_back(r);
    s.bytesSentPerRail.push_back(r.bytesSent);
  }
  return s;
}

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
  if (control && control->peerGoneNs() != 0 && now - control->peerGoneNs() > kPeerGoneGraceNs) {
    fail(control->peerGoneError());
    return;
  }
  sampleSignals(now);
  if (verbs) {
    verbs->tick(now);  // after a move to TCP too: the peer's rechecks wait on it
    if (state == EpState::kFailed) return;
  }
  if (!rmaHeld.empty() && now - rmaHeldNs > static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull) {
    failHeldRma(Status(Code::kRailFailed,
                       fmt::format("one-sided write or read: the endpoint moved to TCP {} ms ago "
                                   "and no verbs lane came back within BRAID_TIMEOUT_MS={} (the "
                                   "sockets cannot reach the peer's memory)",
                                   (now - degradedNs) / 1000000, ctx->timeoutMs)));
    if (state == EpState::kFailed) return;
  }
  if (!onVerbs()) {
    pollAcks(now);  // acknowledgements while nothing is sent
    if (!deferred.empty()) stripeDeferred();
    if (railsDown > 0) rejoinTick(now);
  }
  // No silence timer: a peer that computes for minutes without calling braid is alive.
  // Its kernel still answers TCP, so a killed process is seen at once (EOF/reset), a dead
  // host by keepalive within BRAID_TIMEOUT_MS (tcp::tune), and a stalled process by the
  // timeout of whatever waits on it (Request::wait), which leaves the request valid.
}

// ---------------------------------------------------------------- public wrappers

Endpoint::Endpoint(std::shared_ptr<EndpointImpl> impl) : impl_(std::move(impl)) {}

Endpoint::~Endpoint() {
  if (!impl_) return;
  // A destructor cannot refuse: on a misuse it says so and waits for the other thread to
  // leave the worker.
  std::optional<WorkerEntry> entry;
  for (bool told = false;; told = true) {
    entry.emplace(impl_->worker, "~Endpoint");
    if (entry->ok()) break;
    if (!told) BRAID_LOG_ERROR(kTransport, "{}", entry->misuse().message());
    entry.reset();
    std::this_thread::yield();
  }
  if (impl_->state != EpState::kFailed && impl_->outstanding > 0)
    BRAID_LOG_WARN(kTransport, "{} closed with {} requests outstanding: they are canceled",
                   impl_->describe(), impl_->outstanding);
  // Cancel what is left so Request handles see a clean error; keep the impl alive for them.
  impl_->finishAll(Status(Code::kCanceled, "endpoint closed"));
  impl_->close();
}

Result<std::unique_ptr<Endpoint>> Endpoint::connect(Worker& worker, const Address& address) {
  BRAID_WORKER_ENTRY(&worker.impl(), "Endpoint::connect");
  auto impl = std::make_shared<EndpointImpl>(worker.impl().shared_from_this());
  Status st = impl->startConnect(address);
  if (!st.isOk()) {
    // Returned to the caller, who decides what it means: logged at debug only.
    BRAID_LOG_DEBUG(kTransport, "connect to {}: {}", address.toString(), st.toString());
    return st;
  }
  return std::unique_ptr<Endpoint>(new Endpoint(std::move(impl)));
}

Status Endpoint::connectProgress() {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::connectProgress");
  return impl_->connectProgress();
}

Status Endpoint::waitConnected(std::chrono::milliseconds timeout) {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::waitConnected");
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

Result<Request> Endpoint::isend(const void* buf, size_t len, uint64_t tag, const MemoryRegion* mr,
                                SendFlags flags) {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::isend");
  if (mr && !mr->contains(buf, len))
    return Status(Code::kInvalidArgument, "isend: buffer outside its MemoryRegion");
  if ((static_cast<uint32_t>(flags) & ~static_cast<uint32_t>(SendFlags::kMore)) != 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("isend: unknown flags {:#x} (SendFlags::kMore is the only one)",
                              static_cast<uint32_t>(flags)));
  return impl_->post(impl_, OpState::Kind::kSend, static_cast<uint8_t*>(const_cast<void*>(buf)),
                     len, tag, mr, flags == SendFlags::kMore);
}

Result<Request> Endpoint::irecv(void* buf, size_t len, uint64_t tag, const MemoryRegion* mr) {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::irecv");
  if (mr && !mr->contains(buf, len))
    return Status(Code::kInvalidArgument, "irecv: buffer outside its MemoryRegion");
  return impl_->post(impl_, OpState::Kind::kRecv, static_cast<uint8_t*>(buf), len, tag, mr);
}

Result<Request> Endpoint::iwrite(const void* src, size_t len, const MemoryRegion& local,
                                 const RemoteKey& remote, uint64_t remoteOffset) {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::iwrite");
  return impl_->postRma(impl_, OpState::Kind::kWrite, static_cast<uint8_t*>(const_cast<void*>(src)),
                        len, local, remote, remoteOffset);
}

Result<Request> Endpoint::iread(void* dst, size_t len, const MemoryRegion& local,
                                const RemoteKey& remote, uint64_t remoteOffset) {
  BRAID_WORKER_ENTRY(impl_->worker, "Endpoint::iread");
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
EndpointStats Endpoint::stats() const { return impl_->statsWithRails(); }
Status Endpoint::error() const {
  return impl_->state == EpState::kFailed ? impl_->error : Status();
}

}  // namespace braid
