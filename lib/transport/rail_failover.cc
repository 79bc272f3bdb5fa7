// TCP rail failure and rejoin (docs/protocol.md, "Rail failure and rejoin (TCP)").
//
// A rail goes down on either side when one of its data sockets fails (a reset, a timeout
// of unacknowledged data, an EOF that is not the peer's close), or when the peer reports
// it down (kRailDown). Its chunks not known delivered go again over the other rails, from
// the user's buffer; the receiver counts each byte range once. The connector then dials
// the rail again with back-off (100 ms doubling to 5 s), each attempt a new epoch: every
// socket of the rail presents itself with a kRejoin on the listener's port of that rail,
// and when all of one epoch have arrived the listener's endpoint takes the rail back and
// says so (kRailUp). The rail comes back probing: the scheduler gives it a small share
// until it has shown its rate again.
#include <bit>
#include <chrono>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

namespace {
constexpr uint32_t kFirstBackoffMs = 100;
constexpr uint32_t kMaxBackoffMs = 5000;

int64_t unixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string EndpointImpl::railLabel(uint32_t rail) const {
  if (onVerbs()) return verbs->laneName(rail);
  return rail < localRails.size() ? wire::railName(localRails[rail]) : std::string("?");
}

void EndpointImpl::railEvent(uint32_t rail, const char* st, std::string cause) {
  if (rail < links.size()) addRailEvent(links[rail], st, std::move(cause));
}

std::string EndpointImpl::railsDownSummary() const {
  auto lastDown = [](const std::vector<RailEvent>& ev) -> std::string {
    for (size_t i = ev.size(); i > 0; --i)
      if (ev[i - 1].state == "down") return ev[i - 1].cause;
    return "down";
  };
  std::string s;
  auto add = [&s](const std::string& part) { s += (s.empty() ? " (failed before it: " : "; ") + part; };
  for (uint32_t r = 0; r < links.size(); ++r)
    if (!links[r].alive)
      add(fmt::format("{} {} ({}): {}", onVerbs() ? "lane" : "rail", r, railLabel(r),
                      lastDown(links[r].events)));
  for (size_t i = 0; i < lanesGone.size(); ++i)  // on TCP: the lanes, as they ended
    if (lanesGone[i].state == "down")
      add(fmt::format("lane {} ({}): {}", i, lanesGone[i].name, lastDown(lanesGone[i].events)));
  return s.empty() ? s : s + ")";
}

void EndpointImpl::addRailEvent(RailLink& link, const char* st, std::string cause) {
  auto& ev = link.events;
  if (ev.size() >= kMaxRailEvents) ev.erase(ev.begin());
  ev.push_back({unixMs(), st, std::move(cause)});
}

bool EndpointImpl::railError(int rail, const Status& cause) {
  if (state != EpState::kConnected || onVerbs() || rail < 0 ||
      static_cast<size_t>(rail) >= links.size())
    return false;
  RailLink& l = links[static_cast<size_t>(rail)];
  if (!l.alive) {
    if (l.pendingEpoch != 0) rejoinFailed(rail, cause);
    return true;  // a socket of a rail given up already: nothing more to do
  }
  return railDown(rail, cause);
}

bool EndpointImpl::railDown(int rail, const Status& cause, bool tellPeer) {
  if (state != EpState::kConnected || onVerbs() || rail < 0 ||
      static_cast<size_t>(rail) >= links.size() || !links[static_cast<size_t>(rail)].alive)
    return false;
  const size_t alive = links.size() - railsDown;
  if (alive < 2) return false;  // the last rail: the endpoint fails
  const auto r = static_cast<uint32_t>(rail);
  RailLink& l = links[r];
  l.alive = false;
  ++railsDown;
  ++l.failures;
  const uint64_t now = core::nowNs();
  l.downNs = now;
  l.backoffMs = 0;
  l.nextDialNs = now + kFirstBackoffMs * 1000000ull;
  monitor.railFailed(r, now);
  railEvent(r, "down", cause.toString());
  // The peer learns it before the sockets close, so that it does not take their EOF for
  // its own failure (the control socket is read before an EOF on a data socket counts).
  if (tellPeer)
    sendNotice(wire::makeFrame(wire::FrameType::kRailDown, 0, 0, l.epoch, 0, r));
  // What the peer's chunks left in this side's socket buffers counts as delivered there
  // (its kernel saw the acknowledgement): read it before the sockets close.
  for (uint32_t k = 0; k < socketsPerRail && state == EpState::kConnected; ++k)
    data[r * socketsPerRail + k]->drain();
  if (state != EpState::kConnected) return true;
  std::vector<Channel::Lost> lost;
  abandonRail(r, lost);
  if (state != EpState::kConnected) return true;  // a receive it released failed the endpoint
  uint64_t bytes = 0;
  for (const Channel::Lost& x : lost) bytes += x.length;
  BRAID_LOG_WARN(kTransport,
                 "{}: rail {} ({}) is down: {}; {} chunk(s), {} bytes not known delivered go "
                 "again over the {} other rail(s){}",
                 describe(), rail, railLabel(r), cause.toString(), lost.size(), bytes, alive - 1,
                 isServer ? "; the connector will try to bring it back"
                          : "; it is tried again with back-off");
  // The lost chunks go first; messages waiting to be striped after them.
  DeferredHold hold(*this);
  for (const Channel::Lost& x : lost) {
    if (!x.op->finished && state == EpState::kConnected) stripeRange(x.op, x.offset, x.length, now);
    --x.op->pendingFrames;  // the hold of the lost chunk (the new ones hold their own)
    maybeRecycle(x.op);
  }
  if (hold.release() && !deferred.empty()) stripeDeferred();
  return true;
}

void EndpointImpl::onRailDownFrame(const wire::FrameHeader& f) {
  if (f.tag == wire::kRailDownVerbsLane) {  // a verbs lane (verbs_failover.cc)
    // On TCP too: a lane that rejoined may fail again before the return.
    if (verbs) verbs->peerLaneDown(f.offset);
    return;
  }
  if (onVerbs()) return;  // a TCP rail: a verbs endpoint's data sockets are idle
  const auto r = static_cast<uint32_t>(f.offset);
  if (r >= links.size()) return;
  RailLink& l = links[r];
  // A report about an older generation of the rail (the peer saw the sockets a rejoin
  // replaced fail) is stale.
  if (!l.alive || l.epoch != f.total) return;
  Status cause(Code::kConnectionReset,
               fmt::format("the peer {} reports it down", peer));
  if (!railDown(static_cast<int>(r), cause, /*tellPeer=*/false))
    fail(cause.withContext(fmt::format("rail {} ({}), the last one", r, railLabel(r))));
}

void EndpointImpl::rejoinTick(uint64_t now) {
  if (railsDown == 0 || isServer || verbs) return;
  for (uint32_t r = 0; r < links.size() && state == EpState::kConnected; ++r) {
    RailLink& l = links[r];
    if (l.alive) continue;
    if (l.pendingEpoch != 0) {
      if (now > l.dialDeadlineNs)
        rejoinFailed(static_cast<int>(r),
                     Status(Code::kTimedOut,
                            fmt::format("no answer to the rejoin within BRAID_TIMEOUT_MS={}",
                                        ctx->timeoutMs)));
      continue;
    }
    if (now >= l.nextDialNs) dialRail(r, now);
  }
}

void EndpointImpl::dialRail(uint32_t rail, uint64_t now) {
  RailLink& l = links[rail];
  l.lastTried = std::max(l.lastTried, l.epoch) + 1;
  l.pendingEpoch = l.lastTried;
  l.joinedMask = 0;
  l.dialDeadlineNs = now + static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull;
  const tcp::SockAddr local =
      tcp::SockAddr::fromBytes(localRails[rail].family, localRails[rail].addr, 0);
  const tcp::SockAddr remote = tcp::SockAddr::fromBytes(
      peerRails[rail].family, peerRails[rail].addr, peerRails[rail].port);
  BRAID_LOG_DEBUG(kTransport, "{}: rail {} ({}): rejoin attempt, epoch {}", describe(), rail,
                  railLabel(rail), l.pendingEpoch);
  for (uint32_t k = 0; k < socketsPerRail; ++k) {
    tcp::SocketTuning t{static_cast<int>(ctx->params.socketBufSize), ctx->timeoutMs};
    auto fd = tcp::startConnect(local, remote, t);
    Status st = fd ? data[rail * socketsPerRail + k]->reopen(
                         std::move(fd).value(),
                         wire::encodeRejoin({token, endpointId, rail, k, l.pendingEpoch, 0}),
                         remote)
                   : fd.status();
    if (!st.isOk()) return rejoinFailed(static_cast<int>(rail), st);
  }
}

void EndpointImpl::onRejoinWritten(int rail, int socket) {
  if (rail < 0 || static_cast<size_t>(rail) >= links.size()) return;
  links[static_cast<size_t>(rail)].joinedMask |= 1ull << socket;
}

void EndpointImpl::dropRejoin(uint32_t rail) {
  RailLink& l = links[rail];
  std::vector<Channel::Lost> none;  // a rail down has nothing queued
  abandonRail(rail, none);
  l.pendingEpoch = 0;
  l.joinedMask = 0;
}

void EndpointImpl::abandonRail(uint32_t rail, std::vector<Channel::Lost>& lost) {
  for (uint32_t k = 0; k < socketsPerRail; ++k) data[rail * socketsPerRail + k]->abandon(lost);
}

void EndpointImpl::rejoinFailed(int rail, const Status& cause) {
  RailLink& l = links[static_cast<size_t>(rail)];
  if (l.alive || l.pendingEpoch == 0) return;
  dropRejoin(static_cast<uint32_t>(rail));
  if (isServer) {  // the connector dials; this side only lets the attempt's sockets go
    BRAID_LOG_DEBUG(kTransport, "{}: rail {} ({}): the peer's rejoin failed here: {}",
                    describe(), rail, railLabel(static_cast<uint32_t>(rail)), cause.toString());
    return;
  }
  l.backoffMs = l.backoffMs == 0 ? kFirstBackoffMs : std::min(kMaxBackoffMs, l.backoffMs * 2);
  l.nextDialNs = core::nowNs() + l.backoffMs * 1000000ull;
  BRAID_LOG_DEBUG(kTransport, "{}: rail {} ({}) could not rejoin: {}; next try in {} ms",
                  describe(), rail, railLabel(static_cast<uint32_t>(rail)), cause.toString(),
                  l.backoffMs);
}

void EndpointImpl::onRailUpFrame(const wire::FrameHeader& f) {
  if (f.tag == wire::kRailDownVerbsLane) {  // a verbs lane's rejoin (verbs_rejoin.cc)
    if (verbs) verbs->onLaneUp(f);
    return;
  }
  const auto r = static_cast<uint32_t>(f.offset);
  if (verbs || isServer || r >= links.size()) return;
  RailLink& l = links[r];
  // Only the answer to the attempt in progress (an older one's sockets are closed).
  if (l.alive || l.pendingEpoch == 0 || l.pendingEpoch != f.total ||
      std::popcount(l.joinedMask) != static_cast<int>(socketsPerRail))
    return;
  railUp(r, l.pendingEpoch, core::nowNs());
}

void EndpointImpl::railUp(uint32_t rail, uint32_t epoch, uint64_t now) {
  RailLink& l = links[rail];
  l.alive = true;
  --railsDown;
  l.epoch = epoch;
  l.pendingEpoch = 0;
  l.joinedMask = 0;
  l.backoffMs = 0;
  monitor.railRecovered(rail, now);
  railEvent(rail, "up", fmt::format("rejoined (epoch {})", epoch));
  BRAID_LOG_INFO(kTransport, "{}: rail {} ({}) is back after {} ms; it carries traffic again", describe(),
                 rail, railLabel(rail), (now - l.downNs) / 1000000);
  // What waits for room on the sockets may go now, over every rail.
  if (!deferred.empty()) stripeDeferred();
}

Status EndpointImpl::acceptRejoin(const wire::RejoinBody& j, tcp::Fd fd) {
  if (state != EpState::kConnected || verbs)
    return Status(Code::kNotFound,
                  fmt::format("rejoin for endpoint {:x}, which is not connected over TCP rails",
                              endpointId));
  if (j.rail >= links.size() || j.socket >= socketsPerRail)
    return Status(Code::kProtocolError,
                  fmt::format("rejoin for rail {} socket {} (endpoint has {} x {})", j.rail,
                              j.socket, railCount, socketsPerRail));
  RailLink& l = links[j.rail];
  if (j.epoch <= l.epoch || j.epoch < l.pendingEpoch)
    return Status(Code::kProtocolError,
                  fmt::format("rejoin of rail {} with epoch {}, not above the {} in use", j.rail,
                              j.epoch, std::max(l.epoch, l.pendingEpoch)));
  if (l.alive) {
    // The connector saw the rail fail before this side did (its report may still be on
    // the way): the old sockets are done with.
    Status cause(Code::kConnectionReset, fmt::format("the peer {} brings it back", peer));
    if (!railDown(static_cast<int>(j.rail), cause, /*tellPeer=*/false))
      return Status(Code::kRailFailed,
                    fmt::format("rejoin of rail {}, the last one this side has", j.rail));
  }
  if (j.epoch != l.pendingEpoch) {  // a newer attempt: the sockets of an older one go
    dropRejoin(j.rail);
    l.pendingEpoch = j.epoch;
  }
  if (l.joinedMask & (1ull << j.socket))
    return Status(Code::kProtocolError,
                  fmt::format("rail {} socket {} rejoined twice in epoch {}", j.rail, j.socket,
                              j.epoch));
  BRAID_RETURN_IF_ERROR(
      data[j.rail * socketsPerRail + j.socket]->reopen(std::move(fd), {}, tcp::SockAddr()));
  l.joinedMask |= 1ull << j.socket;
  if (std::popcount(l.joinedMask) < static_cast<int>(socketsPerRail)) return Status::ok();
  const uint32_t epoch = l.pendingEpoch;
  sendNotice(wire::makeFrame(wire::FrameType::kRailUp, 0, 0, epoch, 0, j.rail));
  railUp(j.rail, epoch, core::nowNs());
  return Status::ok();
}

}  // namespace braid
