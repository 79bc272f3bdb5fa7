// Verbs to TCP (docs/protocol.md, "Verbs lane failure", step 6): when lane 0 or the last
// verbs lane fails and the endpoint has TCP data sockets (joined at connect, idle until
// now), the endpoint goes on over TCP instead of failing. VerbsPath gives every lane up and
// sends again what they left in doubt; this side of it switches the rail bookkeeping to
// the TCP rails and makes the frames that may now arrive twice harmless.
#include <algorithm>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "tcp/socket.h"
#include "transport/internal.h"

namespace braid {

bool EndpointImpl::canDegrade() const {
  if (!verbs || verbsGone || !control || control->fd() < 0 || railCount == 0) return false;
  for (const auto& ch : data)
    if (ch->fd() < 0) return false;
  return !data.empty();
}

void EndpointImpl::degradeToTcp(const Status& why, const std::string& what) {
  // The lanes' record as it stands (state down, bytes, events), then the TCP rails.
  lanesGone = statsWithRails().rails;
  laneLinks = links;
  laneBytes = stats.bytesSentPerRail;
  verbsGone = true;
  degradedNs = core::nowNs();
  returning = false;
  nextReturnNs = 0;
  returnBackoffMs = 0;
  monitor = transport::RailMonitor(railCount);
  links.assign(railCount, RailLink{});
  railsDown = 0;
  stats.bytesSentPerRail.assign(railCount, 0);
  for (uint32_t r = 0; r < railCount; ++r) {
    const std::string ifname(localRails[r].ifname,
                             strnlen(localRails[r].ifname, sizeof localRails[r].ifname));
    monitor.describe(r, socketsPerRail, tcp::linkSpeedMbps(ifname) * 1e6 / 8);
    railEvent(r, "up", "verbs lanes gone: " + why.message());
  }
  std::string rails;
  for (uint32_t r = 0; r < railCount; ++r)
    rails += fmt::format(" {}->{}", wire::railName(localRails[r]), wire::railName(peerRails[r]));
  BRAID_LOG_WARN(kTransport,
                 "{}: the verbs lanes are given up: {} ({}); the endpoint goes on over TCP: {} "
                 "rail(s) x {} socket(s):{}. One-sided writes and reads wait for the return to "
                 "RDMA (BRAID_TIMEOUT_MS at most)",
                 describe(), what, why.toString(), railCount, socketsPerRail, rails);
}

void EndpointImpl::ctsAgain() {
  for (auto& [tag, ts] : tags) {
    for (size_t i = 0; i < ts.recvs.size() && state == EpState::kConnected; ++i) {
      OpState* op = ts.recvs[i];
      if (op->finished || op->matched) continue;  // a matched one is rechecked by the sender
      wire::FrameHeader h = wire::makeFrame(wire::FrameType::kCts, tag, op->seq, op->len);
      h.flags = wire::kAgain;
      controlNotice(h);
    }
  }
}

void EndpointImpl::onFrameAgain(const wire::FrameHeader& f, const uint8_t* payload) {
  TagState& ts = tagState(f.tag);
  OpState* op = recvAt(ts, f.seq);
  wire::FrameHeader h = f;
  h.flags = 0;
  switch (static_cast<wire::FrameType>(f.type)) {
    case wire::FrameType::kEager: {
      // Here already: delivered to its receive, or waiting among the unexpected ones.
      if (op != nullptr && (op->matched || op->finished)) return;
      if (op == nullptr && f.seq < ts.nextRecvSeq) return;
      for (const auto& u : ts.unexpected)
        if (u.seq == f.seq) return;
      if (op == nullptr && !ts.unexpected.empty() && ts.unexpected.back().seq > f.seq) {
        // An earlier message sent again behind a later one that came through: keep the
        // unexpected messages in seq order.
        if (unexpectedBytes + f.length > ctx->unexpectedMax)
          return fail(Status(Code::kProtocolError,
                             fmt::format("the peer sent {} bytes of eager messages no receive "
                                         "was posted for (BRAID_UNEXPECTED_MAX {})",
                                         unexpectedBytes + f.length, ctx->unexpectedMax)));
        size_t at = ts.unexpected.size();
        while (at > 0 && ts.unexpected[at - 1].seq > f.seq) --at;
        unexpectedBytes += f.length;
        ++msgsArrived;
        ts.unexpected.insert(ts.unexpected.begin() + static_cast<std::ptrdiff_t>(at),
                             {f.seq, std::vector<uint8_t>(payload, payload + f.length), f.length});
        return;
      }
      return onEager(f.tag, f.seq, payload, f.length);
    }
    case wire::FrameType::kTruncated:
      if (op == nullptr || op->matched || op->finished) return;
      return onTruncated(h);
    case wire::FrameType::kCancelRecv: {
      for (size_t i = 0; i < ts.skipSeqs.size(); ++i)
        if (ts.skipSeqs[i] == f.seq) {  // withdrawn already: the answer may be what was lost
          controlNotice(wire::makeFrame(wire::FrameType::kCancelReply, f.tag, f.seq, 0, 0, 1));
          return;
        }
      return onCancelRecv(h);
    }
    case wire::FrameType::kCancelReply:
      if (op == nullptr || !op->cancelPending) return;
      return onCancelReply(h);
    case wire::FrameType::kCancelSend:
      for (size_t i = 0; i < ts.canceledSends.size(); ++i)
        if (ts.canceledSends[i] == f.seq) return;
      if (op != nullptr && (op->matched || op->finished)) return;
      if (op == nullptr && f.seq < ts.nextRecvSeq) return;
      return onCancelSend(h);
    case wire::FrameType::kRts:
      if (verbsGone) return;  // every receive sends its CTS over TCP now
      return onRts(h);
    case wire::FrameType::kFin:
      return onFin(h, payload);
    default:
      return fail(Status(Code::kProtocolError,
                         fmt::format("frame type {} sent again after the verbs lanes failed",
                                     f.type)));
  }
}


// ---------------------------------------------------------------- back to RDMA
//
// After a move to TCP the connector brings the lanes back (verbs_rejoin.cc, lane 0 too).
// Data returns to them when nothing is between the two sides: each side counts the
// messages it put on the wire and those that arrived whole, and a side with a transfer
// open (a message matched and not finished) is not quiet. The connector offers the
// return when it is quiet (kVerbsBack with its counts) and starts nothing until the
// answer; the listener returns when it is quiet too and the counts meet (each side has
// received all the other sent), and says so (kVerbsBackAck), or refuses (then the
// connector tries again later). What waits for the peer changes path: the CTS each side
// holds came over TCP and are dropped, the receives' CTS go again over verbs, the sends
// waiting for one announce themselves (RTS).

bool EndpointImpl::quietForReturn() const {
  // One-sided ops are not in the way: on TCP they all wait in rmaHeld.
  if (state != EpState::kConnected || !verbs || !queued.empty() || unackedChunks > 0 ||
      !deferred.empty() || !verbs->quietForReturn())
    return false;
  for (const auto& [tag, ts] : tags) {
    for (size_t i = 0; i < ts.sends.size(); ++i)
      if (ts.sends[i]->matched && !ts.sends[i]->finished) return false;
    for (size_t i = 0; i < ts.recvs.size(); ++i)
      if (ts.recvs[i]->matched && !ts.recvs[i]->finished) return false;
  }
  return true;
}

void EndpointImpl::maybeOfferReturn(uint64_t now) {
  if (isServer || !verbsGone || returning || now < nextReturnNs) return;
  const int lane = verbs->returnLane();
  if (lane < 0) return;
  if (!quietForReturn()) {
    nextReturnNs = now + 10'000'000;  // looked at every 10 ms (it walks every tag)
    return;
  }
  returning = true;
  controlNotice(wire::makeFrame(wire::FrameType::kVerbsBack, static_cast<uint64_t>(lane),
                                verbs->ctsWritten(), msgsArrived, 0, msgsCommitted));
}

void EndpointImpl::onVerbsBack(const wire::FrameHeader& f) {
  if (!isServer || !verbs)
    return fail(Status(Code::kProtocolError,
                       fmt::format("peer {} offers a return to RDMA, which this side does not "
                                   "take (it is the {}{})",
                                   peer, isServer ? "listener" : "connector",
                                   verbs ? "" : ", without verbs lanes")));
  const char* why = nullptr;
  if (!verbsGone) why = "this side is not on TCP";
  else if (!verbs->laneUsable(f.tag)) why = "the lane offered as control lane is not back here";
  else if (!quietForReturn()) why = "a transfer is open here";
  else if (f.offset != msgsArrived || f.total != msgsCommitted) why = "messages are in flight";
  if (why != nullptr) {
    BRAID_LOG_DEBUG(kTransport,
                    "{}: not returning to RDMA yet: {} (messages: the peer sent {}, {} arrived "
                    "here; this side sent {}, the peer has {})",
                    describe(), why, f.offset, msgsArrived, msgsCommitted, f.total);
    wire::FrameHeader h = wire::makeFrame(wire::FrameType::kVerbsBackAck, 0, 0, 0);
    h.flags = wire::kJoinRefused;
    return controlNotice(h);
  }
  controlNotice(wire::makeFrame(wire::FrameType::kVerbsBackAck, f.tag, verbs->ctsWritten(),
                                msgsArrived, 0, msgsCommitted));
  returnToVerbs(f.seq, f.tag);
}

void EndpointImpl::onVerbsBackAck(const wire::FrameHeader& f) {
  if (isServer || !verbs || !returning)
    return fail(Status(Code::kProtocolError,
                       fmt::format("peer {} answers a return to RDMA this side did not offer",
                                   peer)));
  returning = false;
  if (f.flags == wire::kJoinRefused) {
    returnBackoffMs = std::min<uint32_t>(2000, std::max<uint32_t>(100, returnBackoffMs * 2));
    nextReturnNs = core::nowNs() + static_cast<uint64_t>(returnBackoffMs) * 1000000ull;
  } else if (f.offset != msgsArrived || f.total != msgsCommitted || f.tag >= verbs->laneCount()) {
    return fail(Status(Code::kProtocolError,
                       fmt::format("peer {} returned to RDMA on lane {} with counts that do not "
                                   "meet this side's: it sent {} messages ({} arrived here), it "
                                   "has {} ({} sent from here)",
                                   peer, f.tag, f.offset, msgsArrived, f.total, msgsCommitted)));
  } else {
    returnToVerbs(f.seq, f.tag);
    // The offered lane failed here after the offer (its RAIL_DOWN is on its way, and the
    // peer leaves again on it): this side leaves again at once too.
    if (state == EpState::kConnected && !verbs->laneUsable(f.tag))
      verbs->controlLaneLost(Status(Code::kRailFailed,
                                    fmt::format("lane {} failed while the return to RDMA on it "
                                                "was being agreed",
                                                f.tag)));
    if (state != EpState::kConnected) return;
  }
  // What waited for the answer goes now, over the path the endpoint is on.
  for (auto& [tag, ts] : tags) {
    if (!ts.cts.empty()) matchSends(ts);
    if (state != EpState::kConnected) return;
  }
  if (!queued.empty()) startQueued();
}

void EndpointImpl::returnToVerbs(uint64_t peerCtsWritten, size_t ctlLane) {
  const uint64_t now = core::nowNs();
  // The TCP rails' record while they carried the data, kept after the lanes.
  std::vector<RailStats> tcp = statsWithRails().rails;
  tcp.resize(std::min<size_t>(tcp.size(), railCount));
  for (RailStats& r : tcp) r.state = "standby";
  verbsGone = false;
  verbs->resume(peerCtsWritten, ctlLane);
  const auto lanes = static_cast<uint32_t>(verbs->laneCount());
  monitor = transport::RailMonitor(lanes);
  links = std::move(laneLinks);
  laneLinks.clear();
  links.resize(lanes);
  stats.bytesSentPerRail = std::move(laneBytes);
  laneBytes.clear();
  stats.bytesSentPerRail.resize(lanes, 0);
  railsDown = 0;
  const uint64_t tcpMs = (now - degradedNs) / 1000000;
  std::string up;
  for (uint32_t r = 0; r < lanes; ++r) {
    monitor.describe(r, 1, verbs->laneNominalBps(r));
    if (verbs->laneDown(r)) {
      monitor.railFailed(r, now);
      links[r].alive = false;
      ++railsDown;
      continue;
    }
    links[r].alive = true;
    railEvent(r, "up", fmt::format("back on RDMA after {} ms over TCP", tcpMs));
    up += " " + verbs->laneName(r);
  }
  lanesGone = std::move(tcp);
  const size_t rma = rmaHeld.size();
  if (!rmaHeld.empty()) verbs->replayRma(rmaHeld);
  if (state != EpState::kConnected) return;
  // What waits for the peer takes the verbs path.
  size_t cts = 0, announced = 0;
  for (auto& [tag, ts] : tags) {
    ts.cts.clear();  // CTS that came over TCP: the peer sends them again over verbs
    ts.rts.clear();
    for (size_t i = 0; i < ts.recvs.size(); ++i) {
      OpState* op = ts.recvs[i];
      if (op->finished || op->matched || op->len <= eagerMax) continue;
      if (!op->reg) {  // registered when posted (Context has verbs rails); never left out
        auto reg = registrationFor(op->buf, op->len, nullptr);
        if (!reg) return fail(reg.status());
        op->reg = std::move(reg).value();
      }
      Status st = verbs->postReceive(op, op->reg.get());
      if (!st.isOk()) return fail(st);
      ++cts;
    }
    for (size_t i = 0; i < ts.unmatchedSends.size(); ++i) {
      OpState* op = ts.unmatchedSends[i];
      verbs->sendRts(tag, op->seq, op->len);
      ++announced;
    }
    if (state != EpState::kConnected) return;
  }
  BRAID_LOG_WARN(kTransport,
                 "{}: back on RDMA after {} ms over TCP: lanes{}, lane {} the control lane; {} "
                 "receive(s) send their clear-to-send again over verbs, {} send(s) waiting for "
                 "one announce themselves, {} one-sided range(s) that waited go",
                 describe(), tcpMs, up, ctlLane, cts, announced, rma);
}

void EndpointImpl::holdRma(const RmaRange& r) {
  if (rmaHeld.empty()) rmaHeldNs = core::nowNs();
  rmaHeld.push_back(r);
}

void EndpointImpl::failHeldRma(const Status& st) {
  std::vector<RmaRange> held;
  held.swap(rmaHeld);
  for (const RmaRange& h : held) {
    if (!h.op->finished) finish(h.op, st);
    --h.op->pendingFrames;
    maybeRecycle(h.op);
  }
}

}  // namespace braid
