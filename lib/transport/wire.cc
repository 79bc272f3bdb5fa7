#include "transport/wire.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace braid::wire {

const char* rejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kBadMagic: return "bad magic";
    case RejectReason::kBadVersion: return "protocol version mismatch";
    case RejectReason::kBadToken: return "wrong job token";
    case RejectReason::kMalformed: return "malformed handshake";
    case RejectReason::kUnknownEndpoint: return "unknown endpoint";
    case RejectReason::kTimeout: return "handshake timed out";
    case RejectReason::kNoRails: return "no common rails";
    case RejectReason::kInternal: return "internal error";
  }
  return "unknown reason";
}

std::vector<uint8_t> encodeFrame(HsType type, const void* body, size_t len, uint32_t magic,
                                 uint16_t version) {
  HsHeader h{magic, version, static_cast<uint16_t>(type), static_cast<uint32_t>(len), 0};
  std::vector<uint8_t> out(sizeof h + len);
  std::memcpy(out.data(), &h, sizeof h);
  if (len) std::memcpy(out.data() + sizeof h, body, len);
  return out;
}

namespace {
template <typename Body>
std::vector<uint8_t> encodeWithRails(HsType type, const Body& body,
                                     const std::vector<RailDesc>& rails,
                                     const std::vector<VerbsRailDesc>& verbs) {
  const size_t tcpBytes = rails.size() * sizeof(RailDesc);
  std::vector<uint8_t> b(sizeof body + tcpBytes + verbs.size() * sizeof(VerbsRailDesc));
  std::memcpy(b.data(), &body, sizeof body);
  if (!rails.empty()) std::memcpy(b.data() + sizeof body, rails.data(), tcpBytes);
  if (!verbs.empty())
    std::memcpy(b.data() + sizeof body + tcpBytes, verbs.data(),
                verbs.size() * sizeof(VerbsRailDesc));
  return encodeFrame(type, b.data(), b.size());
}

Status malformed(const std::string& what) {
  return Status(Code::kProtocolError, "malformed handshake: " + what);
}

Status checkRails(const uint8_t* p, size_t len, uint32_t count, std::vector<RailDesc>& out) {
  if (count == 0 || count > kMaxRails)
    return malformed(fmt::format("rail count {} outside 1..{}", count, kMaxRails));
  if (len != count * sizeof(RailDesc))
    return malformed(fmt::format("{} bytes of rail data for {} rails (expected {})", len, count,
                                 count * sizeof(RailDesc)));
  out.resize(count);
  std::memcpy(out.data(), p, len);
  for (uint32_t i = 0; i < count; ++i) {
    if (out[i].family != AF_INET && out[i].family != AF_INET6)
      return malformed(fmt::format("rail {} has address family {}", i, out[i].family));
    out[i].ifname[sizeof out[i].ifname - 1] = '\0';
  }
  return Status::ok();
}
}  // namespace

std::vector<uint8_t> encodeHello(const HelloBody& body, const std::vector<RailDesc>& rails,
                                 const std::vector<VerbsRailDesc>& verbs) {
  return encodeWithRails(HsType::kHello, body, rails, verbs);
}

std::vector<uint8_t> encodeHelloAck(const HelloAckBody& body, const std::vector<RailDesc>& rails,
                                    const std::vector<VerbsRailDesc>& verbs) {
  return encodeWithRails(HsType::kHelloAck, body, rails, verbs);
}

std::vector<uint8_t> encodeJoin(const JoinBody& body) {
  return encodeFrame(HsType::kJoin, &body, sizeof body);
}

std::vector<uint8_t> encodeRejoin(const RejoinBody& body) {
  return encodeFrame(HsType::kRejoin, &body, sizeof body);
}

std::vector<uint8_t> encodeReject(RejectReason reason, const std::string& message) {
  std::string m = message;
  if (m.size() > kMaxRejectMessage) {
    // Cut at a word boundary: a reason ending mid-word reads as a different instruction.
    size_t cut = m.rfind(' ', kMaxRejectMessage - 3);
    m = m.substr(0, cut == std::string::npos ? kMaxRejectMessage - 3 : cut) + "...";
  }
  RejectBody b{};
  b.reason = static_cast<uint32_t>(reason);
  b.length = static_cast<uint32_t>(m.size());
  std::vector<uint8_t> body(sizeof b + m.size());
  std::memcpy(body.data(), &b, sizeof b);
  std::memcpy(body.data() + sizeof b, m.data(), m.size());
  return encodeFrame(HsType::kReject, body.data(), body.size());
}

HeaderCheck checkHeader(const HsHeader& h) {
  if (h.magic != kMagic)
    return {Status(Code::kProtocolError,
                   fmt::format("bad magic 0x{:08x} (expected 0x{:08x}): the peer is not braid", 
                               h.magic, kMagic)),
            RejectReason::kBadMagic};
  if (h.version != kVersion)
    return {Status(Code::kProtocolError,
                   fmt::format("protocol version {} (this side speaks {}): run the same braid "
                               "release on both ends",
                               h.version, kVersion)),
            RejectReason::kBadVersion};
  if (h.type < static_cast<uint16_t>(HsType::kHello) ||
      h.type > static_cast<uint16_t>(HsType::kRejoin))
    return {malformed(fmt::format("unknown frame type {}", h.type)), RejectReason::kMalformed};
  if (h.length > kMaxHandshakeBody)
    return {malformed(fmt::format("absurd length {} (limit {})", h.length, kMaxHandshakeBody)),
            RejectReason::kMalformed};
  return {Status::ok(), RejectReason::kMalformed};
}

namespace {
// Hello and HelloAck share a layout: a fixed body with socketsPerRail and railCount, then
// railCount RailDesc.
Status checkVerbsRails(const uint8_t* p, size_t len, uint32_t count,
                       std::vector<VerbsRailDesc>& out) {
  if (count > kMaxRails)
    return malformed(fmt::format("verbs rail count {} above {}", count, kMaxRails));
  if (len != count * sizeof(VerbsRailDesc))
    return malformed(fmt::format("{} bytes of verbs rail data for {} rails (expected {})", len,
                                 count, count * sizeof(VerbsRailDesc)));
  out.resize(count);
  if (count) std::memcpy(out.data(), p, len);
  for (uint32_t i = 0; i < count; ++i) {
    VerbsRailDesc& v = out[i];
    v.device[sizeof v.device - 1] = '\0';
    auto bad = [&](const std::string& why) {
      return malformed(fmt::format("verbs rail {} ({}): {}", i, v.device, why));
    };
    if (v.linkLayer != 1 && v.linkLayer != 2) return bad(fmt::format("link layer {}", v.linkLayer));
    if (v.mtu < 1 || v.mtu > 5) return bad(fmt::format("MTU enum {} outside 1..5", v.mtu));
    if (v.qpn == 0 || v.qpn > 0xFFFFFF) return bad(fmt::format("QP number {}", v.qpn));
    if (v.psn > 0xFFFFFF) return bad(fmt::format("PSN {} above 24 bits", v.psn));
    if (v.recvSlots == 0 || v.recvSlots > 65536)
      return bad(fmt::format("{} receive slots (1..65536)", v.recvSlots));
    if (v.ctsSlots == 0 || v.ctsSlots > 65536 || (v.ctsSlots & (v.ctsSlots - 1)) != 0)
      return bad(fmt::format("{} CTS slots (a power of two up to 65536)", v.ctsSlots));
    if (v.ctsRingAddr == 0 || v.flowAddr == 0) return bad("null CTS ring or flow block address");
    if (v.railIndex >= kMaxRails) return bad(fmt::format("rail index {}", v.railIndex));
  }
  return Status::ok();
}

// Hello and HelloAck share a layout: a fixed body with socketsPerRail, railCount and
// verbsRailCount, then railCount RailDesc, then verbsRailCount VerbsRailDesc.
template <typename Msg>
Result<Msg> decodeWithRails(const char* what, const uint8_t* body, size_t len) {
  Msg m;
  if (len < sizeof m.body)
    return malformed(fmt::format("{} of {} bytes (at least {})", what, len, sizeof m.body));
  std::memcpy(&m.body, body, sizeof m.body);
  if (m.body.socketsPerRail == 0 || m.body.socketsPerRail > kMaxSocketsPerRail)
    return malformed(fmt::format("{} sockets per rail outside 1..{}", m.body.socketsPerRail,
                                 kMaxSocketsPerRail));
  if (m.body.eagerMax > kMaxEagerLimit)
    return malformed(fmt::format("{} with eager limit {} above {}", what, m.body.eagerMax,
                                 kMaxEagerLimit));
  if (m.body.verbsRailCount > kMaxRails)
    return malformed(fmt::format("verbs rail count {} above {}", m.body.verbsRailCount, kMaxRails));
  const size_t verbsBytes = m.body.verbsRailCount * sizeof(VerbsRailDesc);
  if (len - sizeof m.body < verbsBytes)
    return malformed(fmt::format("{} of {} bytes cannot hold {} verbs rails", what, len,
                                 m.body.verbsRailCount));
  const size_t tcpBytes = len - sizeof m.body - verbsBytes;
  BRAID_RETURN_IF_ERROR(checkRails(body + sizeof m.body, tcpBytes, m.body.railCount, m.rails));
  BRAID_RETURN_IF_ERROR(checkVerbsRails(body + sizeof m.body + tcpBytes, verbsBytes,
                                        m.body.verbsRailCount, m.verbsRails));
  return m;
}
}  // namespace

Result<Hello> decodeHello(const uint8_t* body, size_t len) {
  return decodeWithRails<Hello>("hello", body, len);
}

Result<HelloAck> decodeHelloAck(const uint8_t* body, size_t len) {
  return decodeWithRails<HelloAck>("hello-ack", body, len);
}

Result<JoinBody> decodeJoin(const uint8_t* body, size_t len) {
  JoinBody j{};
  if (len != sizeof j) return malformed(fmt::format("join of {} bytes (expected {})", len, sizeof j));
  std::memcpy(&j, body, sizeof j);
  if (j.rail >= kMaxRails || j.socket >= kMaxSocketsPerRail)
    return malformed(fmt::format("join for rail {} socket {} out of range", j.rail, j.socket));
  return j;
}

Result<RejoinBody> decodeRejoin(const uint8_t* body, size_t len) {
  RejoinBody j{};
  if (len != sizeof j)
    return malformed(fmt::format("rejoin of {} bytes (expected {})", len, sizeof j));
  std::memcpy(&j, body, sizeof j);
  if (j.rail >= kMaxRails || j.socket >= kMaxSocketsPerRail || j.epoch == 0)
    return malformed(fmt::format("rejoin for rail {} socket {} epoch {} out of range", j.rail,
                                 j.socket, j.epoch));
  return j;
}

Status decodeReject(const uint8_t* body, size_t len) {
  RejectBody r{};
  if (len < sizeof r)
    return Status(Code::kConnectionRefused,
                  fmt::format("the peer refused the connection (a {}-byte reject, unreadable)", len));
  std::memcpy(&r, body, sizeof r);
  if (r.length > kMaxRejectMessage || len != sizeof r + r.length)
    return Status(Code::kConnectionRefused,
                  fmt::format("the peer refused the connection ({}: reject of {} bytes says its "
                              "message has {})",
                              rejectReasonName(static_cast<RejectReason>(r.reason)), len,
                              r.length));
  // Printable bytes only: the message goes into logs and terminals.
  std::string m(reinterpret_cast<const char*>(body) + sizeof r, r.length);
  for (char& c : m)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return Status(Code::kConnectionRefused,
                fmt::format("the peer refused the connection: {}: {}",
                            rejectReasonName(static_cast<RejectReason>(r.reason)), m));
}

const char* pathName(Path p) {
  switch (p) {
    case Path::kControlSocket: return "control socket";
    case Path::kDataSocket: return "data socket";
    case Path::kVerbsSend: return "verbs SEND";
  }
  return "?";
}

Status checkFrame(const FrameHeader& f, uint64_t eagerMax, Path path) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kProtocolError,
                  fmt::format("bad data frame on the {} (type {}, tag {}, seq {}, length {}): {}",
                              pathName(path), f.type, f.tag, f.seq, f.length, why));
  };
  if (f.magic != kFrameMagic) return bad(fmt::format("magic 0x{:04x}: stream out of sync", f.magic));
  const auto type = static_cast<FrameType>(f.type);
  bool allowed = false;
  switch (path) {
    case Path::kControlSocket:
      allowed = type == FrameType::kCts || type == FrameType::kEager ||
                type == FrameType::kTruncated || type == FrameType::kHeartbeat ||
                type == FrameType::kClose || type == FrameType::kCancelRecv ||
                type == FrameType::kCancelReply || type == FrameType::kCancelSend ||
                type == FrameType::kRailDown || type == FrameType::kRailUp ||
                type == FrameType::kRecheck || type == FrameType::kRecheckReply ||
                type == FrameType::kLaneJoin || type == FrameType::kLaneJoinAck ||
                type == FrameType::kVerbsBack || type == FrameType::kVerbsBackAck;
      break;
    case Path::kDataSocket:
      allowed = type == FrameType::kChunk;
      break;
    case Path::kVerbsSend:
      allowed = type == FrameType::kEager || type == FrameType::kTruncated ||
                type == FrameType::kFin || type == FrameType::kRts ||
                type == FrameType::kCancelRecv || type == FrameType::kCancelReply ||
                type == FrameType::kCancelSend;
      break;
  }
  if (!allowed && f.type >= 1 && f.type <= static_cast<uint8_t>(FrameType::kVerbsBackAck))
    return bad("this frame type does not belong on this path");
  switch (type) {
    case FrameType::kFin:
      if (f.length == 0 || f.length % sizeof(FinRange) != 0 ||
          f.length > kFinRanges * sizeof(FinRange))
        return bad(fmt::format("a FIN carries 1 to {} byte ranges of {} bytes each", kFinRanges,
                               sizeof(FinRange)));
      if (f.offset == 0 || f.offset > f.total) return bad("FIN for no bytes, or more than the message");
      return Status::ok();
    case FrameType::kLaneJoin:
    case FrameType::kLaneJoinAck:
      if (f.offset >= kMaxRails || f.total == 0 || f.total > UINT32_MAX)
        return bad("lane or epoch out of range");
      if (f.type == static_cast<uint8_t>(FrameType::kLaneJoinAck) && f.flags == kJoinRefused) {
        if (f.length != 0) return bad("a refused join with a payload");
        return Status::ok();
      }
      if (f.flags != 0 || f.length != sizeof(VerbsRailDesc))
        return bad(fmt::format("a lane join carries one {}-byte queue pair description",
                               sizeof(VerbsRailDesc)));
      return Status::ok();
    case FrameType::kVerbsBack:
    case FrameType::kVerbsBackAck:
      if (f.length != 0) return bad("control frame with a payload");
      if (f.tag >= kMaxRails) return bad("a return to RDMA names a lane out of range");
      if (f.flags != 0 &&
          !(f.type == static_cast<uint8_t>(FrameType::kVerbsBackAck) && f.flags == kJoinRefused))
        return bad("unknown flags");
      return Status::ok();
    case FrameType::kRecheck:
    case FrameType::kRecheckReply:
      if (f.length != 0) return bad("control frame with a payload");
      if (f.offset > UINT64_MAX - f.total) return bad("byte range past 2^64");
      if (f.type == static_cast<uint8_t>(FrameType::kRecheck) && f.total == 0)
        return bad("recheck of no bytes");
      if (f.flags > kRecheckLast) return bad("unknown flags");
      return Status::ok();
    case FrameType::kRts:
      if (f.length != 0) return bad("control frame with a payload");
      if (f.total <= eagerMax)
        return bad(fmt::format("announces a {}-byte message, within the eager limit {}", f.total,
                               eagerMax));
      return Status::ok();
    case FrameType::kCancelReply:
      if (f.length != 0) return bad("control frame with a payload");
      if (f.offset > 1) return bad("cancel reply that is neither yes nor no");
      return Status::ok();
    case FrameType::kRailDown:
    case FrameType::kRailUp:
      if (f.length != 0) return bad("control frame with a payload");
      if (f.offset >= kMaxRails || f.total > UINT32_MAX) return bad("rail or epoch out of range");
      return Status::ok();
    case FrameType::kCts:
    case FrameType::kTruncated:
    case FrameType::kHeartbeat:
    case FrameType::kClose:
    case FrameType::kCancelRecv:
    case FrameType::kCancelSend:
      if (f.length != 0) return bad("control frame with a payload");
      return Status::ok();
    case FrameType::kEager:
      if (f.length > eagerMax || f.total != f.length || f.offset != 0)
        return bad(fmt::format("eager payload over the agreed limit {}", eagerMax));
      return Status::ok();
    case FrameType::kChunk:
      if (f.length == 0 || f.length > kMaxFrameLength) return bad("absurd chunk length");
      if (f.offset > f.total || f.total - f.offset < f.length) return bad("chunk beyond message");
      return Status::ok();
  }
  return bad("unknown type");
}

Result<VerbsRailDesc> decodeVerbsRailDesc(const uint8_t* p, size_t len) {
  std::vector<VerbsRailDesc> v;
  BRAID_RETURN_IF_ERROR(checkVerbsRails(p, len, 1, v));
  return v[0];
}

Status parseFinRanges(const FrameHeader& f, const uint8_t* payload, FinRange* out, uint32_t* n) {
  *n = 0;
  const uint32_t count = f.length / sizeof(FinRange);
  if (count == 0 || count > kFinRanges || count * sizeof(FinRange) != f.length)
    return Status(Code::kProtocolError,
                  fmt::format("FIN of tag {} seq {} with {} payload bytes: not 1 to {} ranges",
                              f.tag, f.seq, f.length, kFinRanges));
  uint64_t sum = 0;
  for (uint32_t i = 0; i < count; ++i) {
    std::memcpy(&out[i], payload + i * sizeof(FinRange), sizeof(FinRange));
    const FinRange& r = out[i];
    if (r.length == 0 || r.offset > f.total || f.total - r.offset < r.length)
      return Status(Code::kProtocolError,
                    fmt::format("FIN of tag {} seq {}: range [{}, +{}) outside the {}-byte "
                                "message",
                                f.tag, f.seq, r.offset, r.length, f.total));
    sum += r.length;  // each <= total <= 2^64 / kFinRanges is not promised: check as we go
    if (sum < r.length || sum > f.offset)
      return Status(Code::kProtocolError,
                    fmt::format("FIN of tag {} seq {}: its ranges add up to more than the {} "
                                "bytes it announces",
                                f.tag, f.seq, f.offset));
  }
  if (sum != f.offset)
    return Status(Code::kProtocolError,
                  fmt::format("FIN of tag {} seq {}: its ranges add up to {} bytes, it announces "
                              "{}",
                              f.tag, f.seq, sum, f.offset));
  *n = count;
  return Status::ok();
}

RailDesc makeRailDesc(const std::string& ifname, int family, const uint8_t addr[16], uint16_t port) {
  RailDesc d{};
  d.family = static_cast<uint16_t>(family);
  d.port = port;
  std::memcpy(d.addr, addr, 16);
  std::memcpy(d.ifname, ifname.data(), std::min(ifname.size(), sizeof d.ifname - 1));
  return d;
}

std::string railName(const RailDesc& r) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(r.family, r.addr, buf, sizeof buf);
  char ifn[17] = {};
  std::memcpy(ifn, r.ifname, 16);
  return fmt::format("{}({}:{})", ifn, buf, r.port);
}

std::string verbsRailName(const VerbsRailDesc& r) {
  char dev[17] = {};
  std::memcpy(dev, r.device, 16);
  char gid[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, r.gid, gid, sizeof gid);
  return fmt::format("{}:{} gid[{}] {} qpn 0x{:x}", dev, r.port, r.gidIndex, gid, r.qpn);
}

}  // namespace braid::wire
