// Verbs to TCP (docs/protocol.md, "Verbs lane failure", step 6): when lane 0 or the last
// verbs lane fails and the endpoint has TCP data sockets (joined at connect, idle until
// now), the endpoint goes on over TCP instead of failing. VerbsPath gives every lane up and
// sends again what they left in doubt; this side of it switches the rail bookkeeping to
// the TCP rails and makes the frames that may now arrive twice harmless.
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

void EndpointImpl::degradeToTcp(const Status& why) {
  // The lanes' record as it stands (state down, bytes, events), then the TCP rails.
  lanesGone = statsWithRails().rails;
  verbsGone = true;
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
                 "{}: every verbs lane is down ({}); the endpoint goes on over TCP: {} rail(s) "
                 "x {} socket(s):{}. One-sided writes and reads fail from now on",
                 describe(), why.toString(), railCount, socketsPerRail, rails);
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

}  // namespace braid
