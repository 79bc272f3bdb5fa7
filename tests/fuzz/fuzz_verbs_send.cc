// libFuzzer target: a SEND as the verbs receive path parses it (lib/transport/verbs_path.cc,
// VerbsPath::onRecv): parseEagerSend, the fast path, against parseSend, the full one, and
// the CTS entries riding after the payload. docs/fuzzing.md.
//
// Input: the bytes of the SEND. Each is parsed for a receiver with several eager limits,
// on lane 0 and on another lane.
#include "fuzz_support.h"
#include "transport/verbs_path.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

constexpr uint64_t kEagerLimits[] = {0, 64, 16384};

/// A SEND as VerbsPath::trySend lays it out (it has no pure encoder): the header (the
/// first kEagerHeaderBytes of it for EAGER), the payload, the riding CTS.
Bytes send(wire::FrameHeader h, uint32_t payload, const std::vector<wire::CtsEntry>& cts,
           bool full) {
  h.length = payload;
  h.flags = static_cast<uint8_t>(cts.size() | (full ? wire::kPiggyFull : 0));
  Bytes b = bytesOf(h);
  if (h.type == static_cast<uint8_t>(wire::FrameType::kEager)) b.resize(wire::kEagerHeaderBytes);
  b.insert(b.end(), payload, 0x5a);
  for (const wire::CtsEntry& e : cts) {
    Bytes c = full ? bytesOf(e) : bytesOf(wire::CompactCts{e.tag, e.seq, e.capacity});
    b.insert(b.end(), c.begin(), c.end());
  }
  return b;
}

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    using wire::FrameType;
    std::vector<Bytes> s;
    wire::CtsEntry e{};
    e.ordinalHead = e.ordinal = 3;
    e.tag = 7;
    e.seq = 1;
    e.capacity = 1 << 20;
    e.addr = 0x7f0000100000;
    e.rkeys[0] = 0x1234;
    const wire::FrameHeader eager = wire::makeFrame(FrameType::kEager, 7, 0, 0);
    s.push_back(send(eager, 8, {}, false));
    s.push_back(send(eager, 64, {e}, false));
    s.push_back(send(eager, 0, {e, e, e, e}, true));
    {
      // A FIN with two byte ranges of 32 KiB (its payload).
      Bytes fin = send(wire::makeFrame(FrameType::kFin, 7, 2, 1 << 20, 0, 65536), 32, {}, false);
      const wire::FinRange r[2] = {{0, 32768}, {65536, 32768}};
      std::memcpy(fin.data() + sizeof(wire::FrameHeader), r, sizeof r);
      s.push_back(fin);
    }
    s.push_back(send(wire::makeFrame(FrameType::kRts, 7, 3, 1 << 20), 0, {e, e}, true));
    s.push_back(send(wire::makeFrame(FrameType::kTruncated, 7, 4, 1 << 20), 0, {e}, false));
    s.push_back(send(wire::makeFrame(FrameType::kCancelRecv, 7, 5, 0), 0, {}, false));
    s.push_back(send(wire::makeFrame(FrameType::kCancelReply, 7, 5, 0, 0, 1), 0, {e}, true));
    s.push_back(send(wire::makeFrame(FrameType::kCancelSend, 7, 6, 0), 0, {}, false));
    return s;
  }();
  return all;
}

void parseAs(const uint8_t* data, size_t size, uint64_t eagerMax, size_t lane) {
  ReceivedSend fast;
  const bool isFast = parseEagerSend(data, size, eagerMax, lane, &fast);
  ReceivedSend s;
  Status st = parseSend(data, size, eagerMax, lane, &s);
  if (!st.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(st, Code::kProtocolError);
    BRAID_FUZZ_CHECK_MSG(!isFast,
                         "the fast path took a SEND the full path refuses: " + st.message());
    return;
  }
  const wire::FrameHeader& h = s.hdr;
  const bool eager = h.type == static_cast<uint8_t>(wire::FrameType::kEager);
  // The fast path takes every well-formed EAGER SEND, and reads it as the full path does.
  BRAID_FUZZ_CHECK(isFast == eager);
  if (isFast) {
    BRAID_FUZZ_CHECK(std::memcmp(&fast.hdr, &s.hdr, sizeof s.hdr) == 0);
    BRAID_FUZZ_CHECK(fast.headerBytes == s.headerBytes && fast.riding == s.riding &&
                     fast.ridingFull == s.ridingFull);
  }
  // The header is one checkFrame accepts on this path, as the handlers read it, and of a
  // type VerbsPath::onRecvFrame hands to one (its default case refuses the rest).
  Status chk = wire::checkFrame(h, eagerMax, wire::Path::kVerbsSend);
  BRAID_FUZZ_CHECK_MSG(chk.isOk(), chk.toString());
  switch (static_cast<wire::FrameType>(h.type)) {
    case wire::FrameType::kEager:
    case wire::FrameType::kTruncated:
    case wire::FrameType::kCancelRecv:
    case wire::FrameType::kCancelReply:
    case wire::FrameType::kCancelSend:
    case wire::FrameType::kFin:
    case wire::FrameType::kRts:
      break;
    default:
      BRAID_FUZZ_CHECK_MSG(false, "type " + std::to_string(h.type) + " accepted over verbs");
  }
  BRAID_FUZZ_CHECK(h.flags == 0);
  BRAID_FUZZ_CHECK(s.headerBytes == (eager ? wire::kEagerHeaderBytes : sizeof(wire::FrameHeader)));
  if (eager) BRAID_FUZZ_CHECK(h.offset == 0 && h.total == h.length && h.length <= eagerMax);
  // Riding CTS: at most kMaxPiggyback, on lane 0 only, and header + payload + entries are
  // exactly the SEND.
  BRAID_FUZZ_CHECK(s.riding <= kMaxPiggyback);
  BRAID_FUZZ_CHECK(s.riding == 0 || lane == 0);
  // Lanes other than 0 carry FIN only (everything ordered per tag goes on lane 0).
  BRAID_FUZZ_CHECK_MSG(lane == 0 || h.type == static_cast<uint8_t>(wire::FrameType::kFin),
                       "type " + std::to_string(h.type) + " accepted on lane " + std::to_string(lane));
  const size_t entry = s.ridingFull ? sizeof(wire::CtsEntry) : sizeof(wire::CompactCts);
  BRAID_FUZZ_CHECK(s.headerBytes + size_t{h.length} + s.riding * entry == size);
  // Read the payload and the entries as onEager and takeRidingCts do (ASan: in bounds).
  Bytes payload(data + s.headerBytes, data + s.headerBytes + h.length);
  const uint8_t* src = data + s.headerBytes + h.length;
  for (uint32_t k = 0; k < s.riding; ++k) {
    if (s.ridingFull) {
      wire::CtsEntry e;
      std::memcpy(&e, src, sizeof e);
    } else {
      wire::CompactCts c;
      std::memcpy(&c, src, sizeof c);
    }
    src += entry;
  }
  BRAID_FUZZ_CHECK(src == data + size);
  if (h.type == static_cast<uint8_t>(wire::FrameType::kFin)) {
    // onFin adds each range to the receive's landed set: within the message, summing to
    // what the FIN announces, or refused with a protocol error.
    wire::FinRange r[wire::kFinRanges];
    uint32_t n = 0;
    Status fr = wire::parseFinRanges(h, data + s.headerBytes, r, &n);
    if (!fr.isOk()) {
      BRAID_FUZZ_CHECK_ERROR(fr, Code::kProtocolError);
    } else {
      BRAID_FUZZ_CHECK(n >= 1 && n <= wire::kFinRanges && n * sizeof(wire::FinRange) == h.length);
      unsigned __int128 sum = 0;
      for (uint32_t k = 0; k < n; ++k) {
        BRAID_FUZZ_CHECK(r[k].length > 0);
        BRAID_FUZZ_CHECK(static_cast<unsigned __int128>(r[k].offset) + r[k].length <= h.total);
        sum += r[k].length;
      }
      BRAID_FUZZ_CHECK(sum == h.offset);
    }
  }
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (uint64_t eagerMax : kEagerLimits)
    for (size_t lane : {size_t{0}, size_t{1}}) parseAs(data, size, eagerMax, lane);
  return 0;
}
