// libFuzzer target: wire::checkFrame, the data-phase frame header, on each path: the TCP
// control socket (Channel::handleControlBuffer: a stream of headers and their payloads),
// a TCP data socket (Channel::readData: one header at a time) and a verbs SEND (the
// header alone; the SEND around it: fuzz_verbs_send). docs/fuzzing.md.
//
// Input: the agreed eager limit (8 bytes, at most BRAID_EAGER_MAX's 1 MiB), then the bytes
// of the stream.
#include <algorithm>

#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;
using wire::FrameType;
using wire::Path;

namespace {

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    auto stream = [](uint64_t eagerMax, std::initializer_list<wire::FrameHeader> frames) {
      Bytes b = bytesOf(eagerMax);
      for (const wire::FrameHeader& f : frames) {
        Bytes h = bytesOf(f);
        b.insert(b.end(), h.begin(), h.end());
        b.insert(b.end(), f.type == static_cast<uint8_t>(FrameType::kEager) || f.type == static_cast<uint8_t>(FrameType::kFin) ? f.length : 0, 0x5a);
      }
      return b;
    };
    s.push_back(stream(16384, {wire::makeFrame(FrameType::kCts, 7, 0, 1 << 20),
                               wire::makeFrame(FrameType::kEager, 7, 1, 100, 100),
                               wire::makeFrame(FrameType::kHeartbeat, 0, 0, 0),
                               wire::makeFrame(FrameType::kTruncated, 7, 2, 1 << 21),
                               wire::makeFrame(FrameType::kCancelRecv, 7, 3, 0),
                               wire::makeFrame(FrameType::kCancelReply, 7, 3, 0, 0, 1),
                               wire::makeFrame(FrameType::kCancelSend, 7, 4, 0),
                               wire::makeFrame(FrameType::kRailDown, 0, 0, 2, 0, 1),
                               wire::makeFrame(FrameType::kRailUp, 0, 0, 3, 0, 1),
                               wire::makeFrame(FrameType::kRecheck, 7, 5, 4096, 0, 8192),
                               wire::makeFrame(FrameType::kRecheckReply, 7, 5, 1024, 0, 8192),
                               wire::makeFrame(FrameType::kVerbsBack, 0, 3, 2, 0, 1),
                               wire::makeFrame(FrameType::kVerbsBackAck, 0, 3, 1, 0, 2),
                               wire::makeFrame(FrameType::kClose, 0, 0, 0)}));
    s.push_back(stream(16384, {wire::makeFrame(FrameType::kChunk, 7, 3, 1 << 20, 65536, 65536),
                               wire::makeFrame(FrameType::kChunk, 7, 3, 1 << 20, 65536, 0)}));
    s.push_back(stream(0, {wire::makeFrame(FrameType::kEager, 1, 0, 0, 0),
                           wire::makeFrame(FrameType::kFin, 1, 1, 4096, 16, 4096),
                           wire::makeFrame(FrameType::kRts, 1, 2, 1)}));
    return s;
  }();
  return all;
}

/// The frame types each path carries (docs/protocol.md, "Data phase" and "Messages").
bool belongs(Path path, uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kCts:
    case FrameType::kHeartbeat:  // accepted and ignored (version 4 sends none)
    case FrameType::kClose:
    case FrameType::kRailDown:
    case FrameType::kRailUp:
    case FrameType::kRecheck:
    case FrameType::kRecheckReply:
    case FrameType::kLaneJoin:
    case FrameType::kLaneJoinAck:
    case FrameType::kVerbsBack:
    case FrameType::kVerbsBackAck:
      return path == Path::kControlSocket;
    case FrameType::kEager:
    case FrameType::kTruncated:
    case FrameType::kCancelRecv:
    case FrameType::kCancelReply:
    case FrameType::kCancelSend:
      return path == Path::kControlSocket || path == Path::kVerbsSend;
    case FrameType::kChunk:
      return path == Path::kDataSocket;
    case FrameType::kFin:
    case FrameType::kRts:
      return path == Path::kVerbsSend;
  }
  return false;
}

/// checkFrame on `path`: an accepted header belongs there and promises what the code
/// acting on it relies on; a refused one is a protocol error that says why.
bool accepted(const wire::FrameHeader& f, uint64_t eagerMax, Path path) {
  Status st = wire::checkFrame(f, eagerMax, path);
  if (!st.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(st, Code::kProtocolError);
    return false;
  }
  BRAID_FUZZ_CHECK(f.magic == wire::kFrameMagic);
  BRAID_FUZZ_CHECK_MSG(belongs(path, f.type),
                       "type " + std::to_string(f.type) + " on " + wire::pathName(path));
  switch (static_cast<FrameType>(f.type)) {
    case FrameType::kEager:
      // onEager copies `length` bytes: the whole message, within the agreed limit.
      BRAID_FUZZ_CHECK(f.length <= eagerMax && f.total == f.length && f.offset == 0);
      break;
    case FrameType::kChunk: {
      // The receive writes [offset, offset + length) of a `total`-byte message.
      BRAID_FUZZ_CHECK(f.length >= 1 && f.length <= wire::kMaxFrameLength);
      const unsigned __int128 end = static_cast<unsigned __int128>(f.offset) + f.length;
      BRAID_FUZZ_CHECK(end <= f.total);
      break;
    }
    case FrameType::kFin:
      // onFin reads length / 16 ranges (at most kFinRanges) and counts `offset` bytes.
      BRAID_FUZZ_CHECK(f.length >= sizeof(wire::FinRange) &&
                       f.length <= wire::kFinRanges * sizeof(wire::FinRange) &&
                       f.length % sizeof(wire::FinRange) == 0 && f.offset >= 1 &&
                       f.offset <= f.total);
      break;
    case FrameType::kLaneJoin:
    case FrameType::kLaneJoinAck:
      // The lane indexes the endpoint's lanes; the payload is one QP description, or none
      // for a refusal.
      BRAID_FUZZ_CHECK(f.offset < wire::kMaxRails && f.total >= 1 && f.total <= UINT32_MAX);
      BRAID_FUZZ_CHECK(f.length == sizeof(wire::VerbsRailDesc) ||
                       (f.length == 0 && f.type == static_cast<uint8_t>(FrameType::kLaneJoinAck) &&
                        f.flags == wire::kJoinRefused));
      break;
    case FrameType::kRecheck:
    case FrameType::kRecheckReply: {
      // The range [offset, offset + total) is computed without overflow.
      const unsigned __int128 end = static_cast<unsigned __int128>(f.offset) + f.total;
      BRAID_FUZZ_CHECK(f.length == 0 && end <= UINT64_MAX);
      break;
    }
    case FrameType::kRts:
      BRAID_FUZZ_CHECK(f.length == 0 && f.total > eagerMax);
      break;
    case FrameType::kVerbsBack:
    case FrameType::kVerbsBackAck:
      // Counts only: no payload, a lane that exists, and a refusal only in an answer.
      BRAID_FUZZ_CHECK(f.length == 0 && f.tag < wire::kMaxRails &&
                       (f.flags == 0 || (f.flags == wire::kJoinRefused &&
                                         f.type == static_cast<uint8_t>(FrameType::kVerbsBackAck))));
      break;
    case FrameType::kCancelReply:
      BRAID_FUZZ_CHECK(f.length == 0 && f.offset <= 1);  // 1 withdrawn, 0 too late
      break;
    case FrameType::kRailDown:
    case FrameType::kRailUp:
      // The endpoint indexes its rails with `offset` and compares `total` with an epoch.
      BRAID_FUZZ_CHECK(f.length == 0 && f.offset < wire::kMaxRails && f.total <= UINT32_MAX);
      break;
    default:
      BRAID_FUZZ_CHECK(f.length == 0);  // control frames carry no payload
      break;
  }
  return true;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t eagerMax;
  if (size < sizeof eagerMax) return 0;
  std::memcpy(&eagerMax, data, sizeof eagerMax);
  eagerMax = std::min(eagerMax, kMaxEagerLimit);
  data += sizeof eagerMax;
  size -= sizeof eagerMax;
  // The control socket: header after header, each payload taken whole once it is in. Each
  // header is also checked as a data socket's and a verbs SEND's would be.
  size_t at = 0;
  while (size - at >= sizeof(wire::FrameHeader)) {
    wire::FrameHeader f;
    std::memcpy(&f, data + at, sizeof f);
    accepted(f, eagerMax, Path::kDataSocket);
    accepted(f, eagerMax, Path::kVerbsSend);
    if (!accepted(f, eagerMax, Path::kControlSocket)) break;  // the endpoint fails
    // The control buffer holds two of the largest frames (tcp_channel.cc): any accepted
    // frame fits.
    BRAID_FUZZ_CHECK(sizeof f + f.length <= 2 * (eagerMax + 64));
    if (size - at - sizeof f < f.length) break;  // waits for the rest of the payload
    // The payload as onFrame gets it: exactly `length` bytes (ASan sees a read past it).
    Bytes payload(data + at + sizeof f, data + at + sizeof f + f.length);
    BRAID_FUZZ_CHECK(f.type != static_cast<uint8_t>(FrameType::kEager) ||
                     payload.size() == f.total);
    at += sizeof f + f.length;
  }
  return 0;
}
