// libFuzzer target: wire::checkFrame, the data-phase frame header, on a TCP control socket
// (Channel::handleControlBuffer: a stream of headers and their payloads) and on a data
// socket (Channel::readData: chunks only). docs/fuzzing.md.
//
// Input: the agreed eager limit (8 bytes, at most BRAID_EAGER_MAX's 1 MiB), then the bytes
// of the stream.
#include <algorithm>

#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    using wire::FrameType;
    std::vector<Bytes> s;
    auto stream = [](uint64_t eagerMax, std::initializer_list<wire::FrameHeader> frames) {
      Bytes b = bytesOf(eagerMax);
      for (const wire::FrameHeader& f : frames) {
        Bytes h = bytesOf(f);
        b.insert(b.end(), h.begin(), h.end());
        b.insert(b.end(), f.type == static_cast<uint8_t>(FrameType::kEager) ? f.length : 0, 0x5a);
      }
      return b;
    };
    s.push_back(stream(16384, {wire::makeFrame(FrameType::kCts, 7, 0, 1 << 20),
                               wire::makeFrame(FrameType::kEager, 7, 1, 100, 100),
                               wire::makeFrame(FrameType::kHeartbeat, 0, 0, 0),
                               wire::makeFrame(FrameType::kTruncated, 7, 2, 1 << 21),
                               wire::makeFrame(FrameType::kClose, 0, 0, 0)}));
    s.push_back(stream(16384, {wire::makeFrame(FrameType::kChunk, 7, 3, 1 << 20, 65536, 65536),
                               wire::makeFrame(FrameType::kChunk, 7, 3, 1 << 20, 65536, 0)}));
    s.push_back(stream(0, {wire::makeFrame(FrameType::kEager, 1, 0, 0, 0),
                           wire::makeFrame(FrameType::kFin, 1, 1, 4096, 0, 4096),
                           wire::makeFrame(FrameType::kRts, 1, 2, 1)}));
    return s;
  }();
  return all;
}

/// What an accepted header promises to the code that acts on it.
void checkAccepted(const wire::FrameHeader& f, uint64_t eagerMax) {
  BRAID_FUZZ_CHECK(f.magic == wire::kFrameMagic);
  switch (static_cast<wire::FrameType>(f.type)) {
    case wire::FrameType::kEager:
      // onEager copies `length` bytes: the whole message, within the agreed limit.
      BRAID_FUZZ_CHECK(f.length <= eagerMax && f.total == f.length && f.offset == 0);
      return;
    case wire::FrameType::kChunk: {
      // chunkDest writes [offset, offset + length) of a `total`-byte message.
      BRAID_FUZZ_CHECK(f.length >= 1 && f.length <= wire::kMaxFrameLength);
      const unsigned __int128 end = static_cast<unsigned __int128>(f.offset) + f.length;
      BRAID_FUZZ_CHECK(end <= f.total);
      return;
    }
    case wire::FrameType::kFin:
      BRAID_FUZZ_CHECK(f.length == 0 && f.offset <= f.total);
      return;
    case wire::FrameType::kRts:
      BRAID_FUZZ_CHECK(f.length == 0 && f.total > eagerMax);
      return;
    case wire::FrameType::kCancelReply:
      BRAID_FUZZ_CHECK(f.length == 0 && f.offset <= 1);
      return;
    case wire::FrameType::kCts:
    case wire::FrameType::kTruncated:
    case wire::FrameType::kHeartbeat:
    case wire::FrameType::kClose:
    case wire::FrameType::kCancelRecv:
    case wire::FrameType::kCancelSend:
      BRAID_FUZZ_CHECK(f.length == 0);
      return;
  }
  BRAID_FUZZ_CHECK_MSG(false, "unknown type " + std::to_string(f.type) + " accepted");
}

/// A data socket reads one header at a time and takes only chunks.
void asDataSocket(const wire::FrameHeader& f, uint64_t eagerMax) {
  Status st = wire::checkFrame(f, eagerMax, wire::Path::kDataSocket);
  if (!st.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(st, Code::kProtocolError);
    return;
  }
  checkAccepted(f, eagerMax);
  if (f.type != static_cast<uint8_t>(wire::FrameType::kChunk)) return;  // refused
  BRAID_FUZZ_CHECK(f.length > 0);  // the socket then reads exactly `length` payload bytes
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
  // The control socket: header after header, each payload taken whole once it is in.
  size_t at = 0;
  while (size - at >= sizeof(wire::FrameHeader)) {
    wire::FrameHeader f;
    std::memcpy(&f, data + at, sizeof f);
    asDataSocket(f, eagerMax);
    Status st = wire::checkFrame(f, eagerMax, wire::Path::kControlSocket);
    if (!st.isOk()) {
      BRAID_FUZZ_CHECK_ERROR(st, Code::kProtocolError);
      break;  // the endpoint fails
    }
    checkAccepted(f, eagerMax);
    if (size - at - sizeof f < f.length) break;  // waits for the rest of the payload
    // The payload as onFrame gets it: exactly `length` bytes (ASan sees a read past it).
    Bytes payload(data + at + sizeof f, data + at + sizeof f + f.length);
    if (f.type == static_cast<uint8_t>(wire::FrameType::kEager)) {
      BRAID_FUZZ_CHECK(payload.size() == f.total);
    }
    at += sizeof f + f.length;
  }
  return 0;
}
