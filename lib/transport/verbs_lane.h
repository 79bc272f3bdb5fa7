// lib/transport/verbs_lane.h — private to the verbs data path (verbs_path.cc,
// verbs_completions.cc, verbs_failover.cc): the lanes, their work requests and the
// control block. Not an interface: nothing outside lib/transport/verbs_*.cc includes it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "core/freelist.h"
#include "transport/verbs_path.h"

#include <cstring>

#include "transport/wire.h"

namespace braid {
namespace verbs_detail {
// parseEagerSend, always inlined into onRecv's fast path.
[[gnu::always_inline]] inline bool parseEagerSendInline(const uint8_t* p, size_t bytes,
                                                        uint64_t eagerMax, size_t lane,
                                                        ReceivedSend* out, size_t ctlLane) {
  if (bytes < wire::kEagerHeaderBytes) return false;
  wire::FrameHeader& h = out->hdr;
  std::memcpy(&h, p, wire::kEagerHeaderBytes);
  const uint32_t piggy = h.flags & wire::kPiggyCountMask;
  const bool full = (h.flags & wire::kPiggyFull) != 0;
  const size_t entryBytes = full ? sizeof(wire::CtsEntry) : sizeof(wire::CompactCts);
  if (!(lane == ctlLane && h.type == static_cast<uint8_t>(wire::FrameType::kEager) &&
        h.magic == wire::kFrameMagic && h.length <= eagerMax &&
        (piggy == 0 || piggy <= kMaxPiggyback) &&
        wire::kEagerHeaderBytes + h.length + piggy * entryBytes == bytes))
    return false;
  h.flags = 0;
  h.offset = 0;
  h.total = h.length;
  out->headerBytes = wire::kEagerHeaderBytes;
  out->riding = piggy;
  out->ridingFull = full;
  return true;
}
}  // namespace verbs_detail
}  // namespace braid

#if BRAID_HAVE_VERBS
namespace braid {
namespace verbs_detail {

constexpr uint32_t kCtsSlots = 256;     // CTS ring entries (power of two)
constexpr uint32_t kRecvSlots = 128;    // receive buffers posted per QP
constexpr uint32_t kSendSlots = 128;    // registered send slots per QP (eager, FIN)
constexpr uint32_t kMaxSendWr = 512;    // send queue depth per QP
constexpr uint32_t kSignalEvery = 16;   // an unsignaled RDMA WRITE run is at most this long
constexpr uint64_t kRecvWrFlag = 1ull << 63;
constexpr int kPollBatch = 32;
constexpr uint32_t kRepostBatch = 16;  // receive slots re-posted with one ibv_post_recv
constexpr uint32_t kWantInline = 256;   // inline SEND size asked of the device

enum WrKind : uint8_t { kWrEager, kWrFin, kWrNotice, kWrCts, kWrFlow, kWrChunk, kWrRmaLast, kWrProbe };

inline bool isSend(uint8_t kind) { return kind == kWrEager || kind == kWrFin || kind == kWrNotice; }

inline const char* wrKindName(uint8_t kind) {
  switch (kind) {
    case kWrEager: return "eager SEND";
    case kWrFin: return "FIN SEND";
    case kWrNotice: return "notice SEND (truncation or RTS)";
    case kWrCts: return "clear-to-send RDMA WRITE";
    case kWrFlow: return "flow-control RDMA WRITE";
    case kWrChunk: return "payload RDMA WRITE/READ";
    case kWrRmaLast: return "one-sided RDMA WRITE/READ";
    case kWrProbe: return "rejoin probe (empty RDMA WRITE)";
  }
  return "work request";
}

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<uint8_t, AlignedFree>;

}  // namespace verbs_detail
using namespace verbs_detail;  // NOLINT: private header of three files


struct VerbsPath::ControlBlock {
  wire::CtsEntry ring[kCtsSlots];    // written by the peer (its receives' CTS)
  wire::FlowBlock flowIn;            // written by the peer
  uint8_t probe[8];                  // written by the peer's rejoin probes (never read)
  uint8_t pad0[48];
  wire::CtsEntry ctsOut[kCtsSlots];  // sources of our CTS writes
  wire::FlowBlock flowOut;           // counters as they stand
  uint8_t pad1[56];
  wire::FlowBlock flowSend;          // frozen copy being written (one write in flight)
};

struct VerbsPath::SendItem {
  uint8_t kind = kWrEager;
  OpState* op = nullptr;
  wire::FrameHeader hdr{};           // SENDs
  const uint8_t* payload = nullptr;  // eager payload (hdr.length bytes)
  uint64_t laddr = 0, raddr = 0;     // RDMA WRITE / READ
  uint32_t len = 0, lkey = 0, rkey = 0;
  bool read = false;                 // RDMA READ instead of WRITE
};

struct VerbsPath::LaneBatch {
  uint64_t postedNs;
  uint64_t bytes;
  OpState* op;
  uint8_t kind;     // kWrFin or kWrRmaLast
  uint8_t nranges;
  wire::FinRange ranges[wire::kFinRanges];
};

struct VerbsPath::Lane {
  struct WrInfo {
    OpState* op = nullptr;
    int32_t sendSlot = -1;
    uint8_t kind = 0;
    uint32_t bytes = 0;     // payload bytes (chunks) or FIN's lane bytes
  };

  size_t index = 0;
  size_t railIndex = 0;  // index of `rail` in the Context (and in MemoryRegionImpl::perRail)
  const VerbsRail* rail = nullptr;
  // What this lane carries of each large message or one-sided op, in post order: a
  // batch is up to kFinRanges byte ranges of one op, closed by a FIN (rendezvous) or a
  // signaled last write (one-sided), whose completion retires it; they complete in order.
  // The RailMonitor times them, and a lane failure leaves the ones still here in doubt.
  using Batch = LaneBatch;
  core::Ring<Batch> batches;
  uint64_t batchesDone = 0;  // batches retired: the front's number (a FIN's SendItem names its batch)
  bool down = false;         // failed: in the error state until a rejoin
  bool rqFlushed = false;    // down, and its receive queue flushed: nothing more arrives on it
  uint64_t downNs = 0;
  // Rejoin (verbs_rejoin.cc): the connector offers a new QP, the listener answers with its
  // own, the connector proves the path with an empty RDMA WRITE and says the lane is up.
  enum class Join : uint8_t { kNone, kAsked, kProbing, kAwaitUp };
  Join join = Join::kNone;
  uint32_t epoch = 0;        // 0 at connect, one more per rejoin attempt
  uint32_t backoffMs = 0;
  uint64_t nextTryNs = 0;
  uint64_t joinSentNs = 0;
  uint64_t creditBase = 0;   // the peer's slot returns counted before this QP
  wire::VerbsRailDesc joinDesc{};  // the join frame's payload (kept until written)
  uint32_t psn = 0;
  uint32_t slotSize = 0;
  // Declared in creation order; destroyed in reverse (MRs, QP, CQ, its channel, then
  // the memory).
  AlignedBuf slots;  // kRecvSlots receive slots, then kSendSlots send slots
  // The CQ's completion channel: a blocking wait (Request::wait past its spin,
  // Worker::waitAndProgress) arms the CQ and sleeps in epoll on this fd.
  std::optional<verbs::CompChannel> channel;
  std::optional<verbs::Cq> cq;
  std::optional<verbs::Qp> qp;
  std::optional<verbs::Mr> cbMr;
  std::optional<verbs::Mr> slotsMr;

  std::vector<uint32_t> freeSendSlots;
  // Receive slots consumed and not re-posted yet: re-posted in one chained ibv_post_recv
  // when the CQ is idle or kRepostBatch have gathered, off a message's critical path.
  uint32_t repostSlots[kRepostBatch] = {};
  uint32_t repostCount = 0;
  std::vector<WrInfo> wrs = std::vector<WrInfo>(kMaxSendWr);
  uint64_t sqPosted = 0, sqRetired = 0;
  uint64_t sendsPosted = 0;  // SENDs posted: credits used at the peer
  uint64_t recvReposted = 0;
  uint64_t bytesInFlight = 0;
  uint64_t bytesSent = 0;
  uint32_t sinceSignal = 0;
  uint32_t maxInline = 0;  // IBV_SEND_INLINE limit the QP was granted
  // SENDs are posted from this prebuilt request (lkey, opcode, one SGE), with only the
  // address, length, flags and wr_id changed per message.
  ibv_sge sendSge{};
  ibv_send_wr sendWr{};
  // Work requests that could not be posted yet, in order. Control writes (CTS, flow
  // counters) need only send-queue room and have their own FIFO: behind a SEND that waits
  // for credit they could deadlock two peers that each wait for the other's credit return.
  core::Ring<SendItem> backlog;
  core::Ring<SendItem> ctlBacklog;
  wire::VerbsRailDesc peer{};
  bool connected = false;
  bool armed = false;       // the CQ is armed for one event (ibv_req_notify_cq)
  bool inPoller = false;    // the channel's fd is in the worker's epoll set
  /// Takes the channel's events (the fd is non-blocking) and acknowledges them; the
  /// CQ itself is polled by the next progress.
  struct Waker final : tcp::Pollable {
    Lane* lane = nullptr;
    void onEvent(uint32_t) override { lane->takeEvents(); }
  } waker;
  void takeEvents() {
    ibv_cq* evCq = nullptr;
    void* evCtx = nullptr;
    unsigned n = 0;
    while (rail->lib->getCqEvent(channel->get(), &evCq, &evCtx) == 0) ++n;
    if (n > 0) rail->lib->ackCqEvents(cq->get(), n);
    armed = false;
  }

  uint8_t* recvSlot(uint32_t i) const { return slots.get() + static_cast<size_t>(i) * slotSize; }
  uint8_t* sendSlot(uint32_t i) const {
    return slots.get() + static_cast<size_t>(kRecvSlots + i) * slotSize;
  }
  uint32_t qpn() const { return qp ? qp->qpn() : 0; }
};

}  // namespace braid
#endif  // BRAID_HAVE_VERBS
