// lib/transport/internal.h — implementation types behind include/braid/transport.h.
//
// Protocol (docs/protocol.md): a receive posts a clear-to-send (CTS) carrying its
// capacity (over verbs only one that can take a rendezvous message, or one whose sender
// announced such a message); the n-th send of a tag matches the n-th CTS of that tag.
// Small messages (<= eagerMax) go at once and finish when handed over, with no CTS: a
// receive too small for one fails at the receiver (kTruncated) and writes nothing. Large
// ones wait for the CTS, then are cut by the Scheduler into chunks (RDMA WRITEs, or
// frames on the data sockets of every rail) that land straight in the user's buffer; one
// larger than the CTS capacity fails both sides with kTruncated before any payload moves.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "braid/transport.h"
#include "core/bytes.h"
#include "core/freelist.h"
#include "core/params.h"
#include "core/ranges.h"
#include "tcp/interfaces.h"
#include "tcp/poller.h"
#include "tcp/socket.h"
#include "transport/congestion.h"
#include "transport/rail_monitor.h"
#include "transport/scheduler.h"
#include "transport/verbs_path.h"
#include "transport/wire.h"

namespace braid {
using transport::Chunk;
using transport::RailSnapshot;
using transport::Scheduler;
using transport::SchedulerConfig;

struct Context::Impl {
  core::Params params;
  Transport transport = Transport::kTcp;
  std::vector<tcp::Interface> tcpRails;
  std::vector<RailInfo> rails;
  int socketsPerRail = 2;
  std::optional<uint64_t> jobToken;
  int timeoutMs = 30000;
  uint64_t eagerMax = 16384;
  uint64_t chunkSize = 512 * 1024;
  uint64_t unexpectedMax = 256ull << 20;  ///< BRAID_UNEXPECTED_MAX
  transport::StripePolicy stripePolicy = transport::StripePolicy::kAdaptive;  ///< BRAID_STRIPE_POLICY
  int spinUs = 50;
  /// Verbs rails (device ports) in use; empty: TCP only. Pointers into this vector stay
  /// valid for the Context's life (it never changes after create()).
  std::vector<VerbsRail> verbsRails;
  int qpsPerRail = 1;          ///< BRAID_IB_QPS_PER_RAIL
  bool threadChecks = false;   ///< BRAID_THREAD_CHECKS
  bool wantVerbsOnly = false;  ///< BRAID_TRANSPORT=verbs: never fall back to TCP data
};

/// One isend or irecv.
struct OpState {
  enum class Kind : uint8_t { kSend, kRecv, kWrite, kRead };
  Kind kind = Kind::kSend;
  uint64_t tag = 0;
  uint64_t seq = 0;
  uint8_t* buf = nullptr;
  uint64_t len = 0;         ///< send: message size; recv: capacity
  uint64_t size = 0;        ///< recv: message size once known
  uint64_t bytesDone = 0;   ///< send: handed to the kernel; recv: landed
  bool matched = false;     ///< send: CTS seen; recv: size known
  bool finished = false;
  bool released = false;    ///< finished and every earlier op of its tag released
  bool hasHandle = false;   ///< a Request refers to it
  bool cancelPending = false;  ///< recv: the peer was asked to withdraw it (CancelRecv)
  uint32_t pendingFrames = 0;  ///< queued frames (TCP) or posted SENDs (verbs) using it
  /// TCP receive: data sockets in the middle of writing a chunk payload into `buf`. The
  /// request never finishes while this is non-zero (only a failed endpoint, whose sockets
  /// are closed first, ends it then), so no socket writes into a buffer the caller got back.
  uint32_t landing = 0;
  /// TCP receive: the byte ranges landed. A duplicate chunk counts once; the receive is
  /// complete when they cover the message.
  core::RangeSet landed;
  Status status;
  /// Verbs: the buffer's registration on every rail (the caller's MemoryRegion, or one
  /// made for this request and dropped when it finishes).
  std::shared_ptr<const MemoryRegionImpl> reg;
  /// Verbs rendezvous send and one-sided ops: the remote address of byte 0 of the op and
  /// the rkey of each of the peer's rails (a lane failure writes again through another).
  uint64_t raddr = 0;
  uint32_t rkeys[wire::kMaxRails];
  /// Verbs rendezvous send with ranges written again over TCP after the lanes went: it
  /// finishes when nothing holds it any more (its bytes are not counted from zero).
  bool resent = false;
  /// TCP eager send posted with SendFlags::kMore: its frame waits for the next send or
  /// progress to share their write (only read when it starts).
  bool more = false;
  /// Back to a fresh OpState, field by field: recycling is on every request's path, and
  /// the status and registration are nearly always empty already.
  void reset() {
    kind = Kind::kSend;
    tag = seq = len = size = bytesDone = 0;
    buf = nullptr;
    matched = finished = released = hasHandle = cancelPending = resent = more = false;
    pendingFrames = landing = 0;
    if (!landed.empty()) landed.clear();
    if (!status.isOk()) status = Status();
    if (reg) reg.reset();
  }
};

struct EndpointImpl;
struct WorkerImpl;

/// A frame waiting to be written: header plus an optional payload pointer.
struct OutFrame {
  wire::FrameHeader hdr{};
  const uint8_t* payload = nullptr;
  uint64_t sent = 0;  ///< bytes of header+payload written so far
  OpState* op = nullptr;
  uint64_t postedNs = 0;  ///< chunks: when the planner placed it (RailMonitor)
  uint64_t total() const { return sizeof hdr + hdr.length; }
};

/// One TCP socket of an endpoint: the control socket or a data socket of a rail.
class Channel final : public tcp::Pollable {
 public:
  Channel(EndpointImpl* ep, tcp::Fd fd, int rail, int index, bool control);
  ~Channel() override;
  void onEvent(uint32_t events) override;

  /// Queues a frame; writes at once when `flushNow` and nothing else is queued.
  void queue(const OutFrame& f, bool flushNow);
  /// Writes what the socket accepts. Errors fail the endpoint.
  void flush();
  void readAll();
  void closeFd() noexcept;
  uint64_t queuedBytes() const { return queuedBytes_; }
  bool hasOutput() const { return !out_.empty(); }
  /// Control socket: a write found the peer gone (EPIPE, ECONNRESET) at this time (0:
  /// never). The endpoint fails once the read side has delivered what the peer sent
  /// before it went, or kPeerGoneGraceNs later (EndpointImpl::tick).
  uint64_t peerGoneNs() const { return peerGoneNs_; }
  const Status& peerGoneError() const { return peerGone_; }
  int fd() const { return fd_.get(); }
  /// Drops queued frames and hands the socket over (to linger or to another owner).
  tcp::Fd detach();
  /// Re-homes the channel's socket in the poller with `events` (after a hand-over).
  Status arm(uint32_t events);
  int rail() const { return rail_; }
  /// Data sockets: reports to the endpoint's RailMonitor the chunks the peer's kernel has
  /// acknowledged (bytes written minus what the send queue still holds, SIOCOUTQ). A chunk
  /// handed to the kernel is not delivered yet: a large socket buffer would make a slow
  /// rail look fast.
  void pollAcks(uint64_t nowNs);
  /// A chunk this socket holds (queued, or written and not acknowledged) that a rail
  /// failure leaves undelivered: its send and byte range (the send keeps its hold).
  struct Lost {
    OpState* op;
    uint64_t offset;
    uint64_t length;
  };
  /// Rail failure: hands over the chunks not known delivered, lets go of a receive this
  /// socket was writing into, and closes the socket.
  void abandon(std::vector<Lost>& lost);
  /// Rail failure: reads what the kernel holds for this socket before it is closed. The
  /// peer counts a chunk delivered once this side's kernel acknowledged it, so bytes
  /// buffered here must reach their receives (a socket's data stays readable after a
  /// reset).
  void drain();
  /// Lets go of the receive this socket is writing a chunk into (its requests are ending):
  /// the rest of that payload is read and discarded, so the stream stays in step.
  void dropLanding();
  /// Rail rejoin: the channel takes a new socket (its old one is closed), fresh stream
  /// state. Connector: `preamble` (its kRejoin) is written once the connect completes
  /// (to `remote`); listener: the socket joined already, `preamble` is empty. The channel
  /// object stays: the poller may still hold events for it in the batch being dispatched.
  Status reopen(tcp::Fd fd, std::vector<uint8_t> preamble, const tcp::SockAddr& remote);
  /// "control socket" or "data socket K of rail R", for messages.
  std::string name() const;

  // Handshake-phase helpers (exact reads, so no data-phase byte is consumed early).
  tcp::Fd& fdRef() { return fd_; }

 private:
  void setWantOut(bool want);
  void progressRejoin();
  bool handleControlBuffer();
  void readData();

  EndpointImpl* ep_;
  tcp::Fd fd_;
  int rail_;
  int index_;
  bool control_;
  bool wantOut_ = false;
  uint64_t peerGoneNs_ = 0;
  Status peerGone_;
  core::Ring<OutFrame> out_;
  uint64_t queuedBytes_ = 0;
  // Connector rejoin: connecting to remote_, then writing preamble_ (the kRejoin).
  std::vector<uint8_t> preamble_;
  size_t preambleSent_ = 0;
  bool connecting_ = false;
  tcp::SockAddr remote_;
  // Data sockets: bytes written to the socket so far, and the chunks written but not yet
  // acknowledged by the peer's kernel (their end in that count), oldest first.
  struct Unacked {
    uint64_t end;
    uint64_t bytes;
    uint64_t postedNs;
    OpState* op;      ///< its send (held: pendingFrames) until the chunk is acknowledged
    uint64_t offset;  ///< of the chunk in the message
  };
  uint64_t written_ = 0;
  core::Ring<Unacked> unacked_;
  // Control inbound: buffered parse.
  std::vector<uint8_t> rx_;
  size_t rxHead_ = 0, rxTail_ = 0;
  // Data inbound: header then payload straight into the receive buffer.
  wire::FrameHeader hdr_{};
  size_t hdrGot_ = 0;
  bool inPayload_ = false;
  uint8_t* dest_ = nullptr;  // nullptr: discard
  uint64_t remaining_ = 0;
  OpState* rxOp_ = nullptr;
  std::vector<uint8_t> scratch_;
};

/// Per-tag matching state.
struct TagState {
  uint64_t nextSendSeq = 0;
  uint64_t nextRecvSeq = 0;
  core::Ring<OpState*> sends;            ///< posted, not released, in order
  core::Ring<OpState*> unmatchedSends;   ///< waiting for their CTS
  core::Ring<wire::CtsEntry> cts;        ///< CTS received before their send was posted
  core::Ring<uint64_t> rts;              ///< verbs: seqs announced (RTS) before their receive
  core::Ring<OpState*> recvs;            ///< posted, not released, in order
  core::Ring<uint64_t> skipSeqs;  ///< send side: seqs whose receive the peer withdrew (sorted)
  core::Ring<uint64_t> canceledSends;  ///< recv side: seqs the peer's sends gave up (sorted),
                                       ///< for receives not posted yet
  struct Unexpected {
    uint64_t seq;
    std::vector<uint8_t> data;
    uint64_t size;
  };
  std::vector<Unexpected> unexpected;    ///< eager messages before their receive
};

/// Connection state machine of an endpoint.
enum class EpState : uint8_t {
  kConnecting,     ///< client: control socket connecting
  kAwaitAck,       ///< client: hello sent, reading the ack
  kJoining,        ///< client: data sockets connecting; server: waiting for joins
  kConnected,
  kFailed,
};

struct EndpointImpl {
  explicit EndpointImpl(std::shared_ptr<WorkerImpl> w);
  ~EndpointImpl();

  // --- data path ---
  Result<Request> post(const std::shared_ptr<EndpointImpl>& self, OpState::Kind kind, uint8_t* buf,
                       uint64_t len, uint64_t tag, const MemoryRegion* mr, bool more = false);
  /// Starts a posted send or receive (seq, CTS, eager payload); the op holds its
  /// registration already. An error leaves the op for the caller to finish.
  Status start(OpState* op);
  /// The registration a request needs (verbs, above the eager limit): `given` when it
  /// covers every rail, else one made for this request; none otherwise.
  Result<std::shared_ptr<const MemoryRegionImpl>> registrationFor(
      uint8_t* buf, uint64_t len, std::shared_ptr<const MemoryRegionImpl> given);
  /// Starts the requests posted while connecting, in order (at connect, or fails them).
  void startQueued();
  void finishQueued(OpState* op, const Status& st);
  /// One-sided write or read (verbs only).
  Result<Request> postRma(const std::shared_ptr<EndpointImpl>& self, OpState::Kind kind,
                          uint8_t* buf, uint64_t len, const MemoryRegion& local,
                          const RemoteKey& remote, uint64_t offset);
  /// A control frame (TCP control socket, or a SEND on a verbs rail).
  void onFrame(const wire::FrameHeader& f, const uint8_t* payload);
  /// A receive's clear-to-send (from a CTS frame, or read from the verbs CTS ring).
  /// `again`: sent again after the verbs lanes went (wire::kAgain); one already here is
  /// dropped instead of refused.
  void onCts(const wire::CtsEntry& cts, bool again = false);
  /// A CTS in compact form: an eager-only receive (no address) answering the RTS of a
  /// rendezvous send too large for it.
  void onCtsCompact(uint64_t tag, uint64_t seq, uint64_t capacity) {
    TagState& ts = tagState(tag);
    if (!ts.cts.empty() && !admitCts(ts, tag, seq)) return;
    // Filled in place: only what an eager-only receive has (addr 0 means no rendezvous,
    // so the rkeys are never read).
    wire::CtsEntry& e = ts.cts.emplace_back();
    e.tag = tag;
    e.seq = seq;
    e.capacity = capacity;
    e.addr = 0;
    sortLastCts(ts.cts);
    // Usually the CTS of a send not posted yet: nothing to match.
    if (!ts.unmatchedSends.empty()) matchSends(ts);
  }
  /// Keeps a tag's CTS in seq order after a push_back: they nearly always arrive in
  /// order, so this is one comparison, and at worst a few swaps.
  static void sortLastCts(core::Ring<wire::CtsEntry>& q) {
    for (size_t i = q.size() - 1; i > 0 && q[i - 1].seq > q[i].seq; --i)
      std::swap(q[i - 1], q[i]);
  }
  /// Verbs: a rail finished writing its part of a message.
  /// Verbs: a FIN and its byte ranges (`payload`: f.length / 16 wire::FinRange).
  void onFin(const wire::FrameHeader& f, const uint8_t* payload);
  /// Verbs: the sender announced a rendezvous message (RTS): an eager-only receive for it
  /// answers with its CTS (now, or when posted), so that the sender sees the truncation.
  void onRts(const wire::FrameHeader& f);
  /// An eager message (the payload of a checked kEager frame). Inline fast path: its
  /// receive is posted and it fits; everything else in onEagerSlow.
  void onEager(uint64_t tag, uint64_t seq, const uint8_t* payload, uint32_t length) {
    ++msgsArrived;  // a broken one fails the endpoint
    TagState& ts = tagState(tag);
    OpState* op = recvAt(ts, seq);
    // A receive whose message is known already (a chunk, an earlier frame) is a protocol
    // error for the slow path to report.
    if (op == nullptr || length > op->len || op->matched)
      return onEagerSlow(ts, op, tag, seq, payload, length);
    ++stats.messagesReceived;
    op->matched = true;
    op->size = length;
    core::copyBytes(op->buf, payload, length);
    op->bytesDone = length;
    stats.bytesReceived += length;
    finishOk(op);
  }
  /// The eager message (tag, seq) with no posted receive (`op` nullptr: unexpected or a
  /// duplicate) or one too small for it (truncation).
  void onEagerSlow(TagState& ts, OpState* op, uint64_t tag, uint64_t seq,
                   const uint8_t* payload, uint32_t length);
  /// The next receive of `tag` would match an eager message that is here already.
  bool hasBuffered(uint64_t tag) {
    TagState* ts = findTagState(tag);
    return ts != nullptr && !ts->unexpected.empty() &&
           ts->unexpected.front().seq == ts->nextRecvSeq;
  }
  /// Request::cancel(): see include/braid/transport.h for what each side sees.
  Status cancel(OpState* op);
  void onCancelRecv(const wire::FrameHeader& f);
  void onCancelReply(const wire::FrameHeader& f);
  void onCancelSend(const wire::FrameHeader& f);
  /// A payload-less frame to the peer: control socket (TCP) or lane 0 (verbs).
  void sendNotice(const wire::FrameHeader& h);
  /// A payload-less frame on the TCP control socket, whatever the data path.
  void controlNotice(const wire::FrameHeader& h);
  /// The next send seq of `ts`, past the seqs whose receives the peer withdrew.
  static uint64_t takeSendSeq(TagState& ts) {
    while (!ts.skipSeqs.empty() && ts.skipSeqs.front() <= ts.nextSendSeq) {
      if (ts.skipSeqs.front() == ts.nextSendSeq) ++ts.nextSendSeq;
      ts.skipSeqs.pop_front();
    }
    return ts.nextSendSeq++;
  }
  /// A TRUNCATED frame: the peer's message (tag, seq) is larger than the receive.
  void onTruncated(const wire::FrameHeader& f);
  /// False (and the endpoint failed) when a CTS for (tag, seq) duplicates one held or
  /// exceeds kMaxPendingCts.
  bool admitCts(TagState& ts, uint64_t tag, uint64_t seq, bool again = false);
  /// The posted, not yet released receive `seq` of `ts` (finished or not), or nullptr.
  static OpState* recvAt(TagState& ts, uint64_t seq) {
    if (ts.recvs.empty()) return nullptr;
    const uint64_t first = ts.recvs.front()->seq;
    return seq >= first && seq - first < ts.recvs.size() ? ts.recvs[seq - first] : nullptr;
  }
  /// The receive op (tag, seq) still waiting for data, or nullptr.
  OpState* findRecv(uint64_t tag, uint64_t seq);
  /// Data channel: where the payload of chunk `f` goes (nullptr: discard). Sets *op.
  uint8_t* chunkDest(const wire::FrameHeader& f, OpState** op);
  /// Data channel: the payload of a chunk (`offset`, `bytes`) chunkDest placed has landed.
  void onChunkLanded(OpState* op, uint64_t offset, uint64_t bytes);
  void onFrameSent(OutFrame& f);
  /// TCP: the peer's kernel acknowledged `bytes` of a rendezvous send's chunk; the send
  /// finishes when all of it is acknowledged (a rail failure before then sends the rest
  /// again from the user's buffer).
  void onChunkAcked(OpState* op, uint64_t bytes);
  /// TCP: a data socket of `rail` failed with `cause`. When another rail lives, the rail is
  /// marked down, its undelivered chunks go again over the others, and true is returned;
  /// false: the caller fails the endpoint.
  bool railDown(int rail, const Status& cause, bool tellPeer = true);
  /// An error (or EOF) on a data socket of `rail`: a rejoin attempt fails, a live rail goes
  /// down (railDown). False: the caller fails the endpoint.
  bool railError(int rail, const Status& cause);
  /// kRailDown / kRailUp from the peer.
  void onRailDownFrame(const wire::FrameHeader& f);

  // --- verbs to TCP (rail_degrade.cc)
  /// Every verbs lane is gone: data moves over the TCP data sockets from now on.
  bool verbsGone = false;
  bool onVerbs() const { return verbs != nullptr && !verbsGone; }
  /// The verbs lanes' stats as they were when the endpoint moved to TCP (reported after
  /// the TCP rails).
  std::vector<RailStats> lanesGone;
  /// True when the TCP data sockets can take over from the verbs lanes.
  bool canDegrade() const;
  /// Switches the rail bookkeeping (monitor, links, per-rail bytes) to the TCP rails.
  /// `what`: which lane failed and why that moves the endpoint (for the log).
  void degradeToTcp(const Status& why, const std::string& what);
  /// After the switch: a CTS again over TCP for each posted receive whose message has not
  /// started (its verbs CTS may be lost).
  void ctsAgain();
  /// A frame that may have arrived before over verbs (flags wire::kAgain, or a late SEND
  /// polled from a lane that is down): a duplicate is dropped.
  void onFrameAgain(const wire::FrameHeader& f, const uint8_t* payload);

  // --- TCP back to verbs (rail_degrade.cc; docs/protocol.md "Back to RDMA")
  /// Messages this side has put on the wire to the peer (eager ones handed over,
  /// rendezvous ones started or refused as truncated), and the peer's messages that
  /// arrived here whole (or as a truncation): equal counts both ways mean nothing is in
  /// flight between the two sides.
  uint64_t msgsCommitted = 0, msgsArrived = 0;
  /// Connector: a kVerbsBack is out; new requests wait in `queued` and no send is matched
  /// until the answer.
  bool returning = false;
  uint64_t nextReturnNs = 0;   ///< connector: the next offer, after a refusal
  uint32_t returnBackoffMs = 0;
  uint64_t degradedNs = 0;     ///< when the endpoint moved to TCP
  /// Per-lane bytes as they were at the move to TCP (restored on the way back, with
  /// laneLinks).
  std::vector<uint64_t> laneBytes;
  /// One-sided ranges waiting for the return to RDMA (held by redo after the move to TCP,
  /// or posted while on TCP), since rmaHeldNs; they fail after BRAID_TIMEOUT_MS without
  /// a return.
  std::vector<RmaRange> rmaHeld;
  uint64_t rmaHeldNs = 0;
  /// Takes a range that holds its op (one OpState::pendingFrames).
  void holdRma(const RmaRange& r);
  /// Fails every held range's op with `st` (a return that does not come, the endpoint's
  /// failure) and lets the holds go.
  void failHeldRma(const Status& st);
  /// True when no transfer is open on this side (none matched and unfinished, no chunk
  /// unacknowledged, nothing rechecked or deferred, no one-sided op): what is left are
  /// receives and sends that wait for their peer, which survive a change of path.
  bool quietForReturn() const;
  /// Connector (VerbsPath::tick): the lanes are back; offers the return when quiet.
  void maybeOfferReturn(uint64_t now);
  void onVerbsBack(const wire::FrameHeader& f);
  void onVerbsBackAck(const wire::FrameHeader& f);
  /// Both sides: data moves over verbs again, `ctlLane` the control lane (VERBS_BACK.tag).
  /// `peerCtsWritten`: the peer's count of CTS entries written into this side's ring
  /// (entries lost with the old control lane are skipped).
  void returnToVerbs(uint64_t peerCtsWritten, size_t ctlLane);
  void onRailUpFrame(const wire::FrameHeader& f);
  /// Connector: re-dials the rails that are down, with back-off (from tick()).
  void rejoinTick(uint64_t now);
  void dialRail(uint32_t rail, uint64_t now);
  /// Connector: a rejoin socket wrote its kRejoin.
  void onRejoinWritten(int rail, int socket);
  /// The rejoin of `rail` failed: its sockets go; the connector dials again after the
  /// back-off.
  void rejoinFailed(int rail, const Status& cause);
  /// Lets the sockets of a rail's rejoin attempt go (both sides; rejoinFailed also
  /// schedules the connector's next dial).
  void dropRejoin(uint32_t rail);
  /// Abandons every data socket of `rail`, appending the chunks they held to `lost`.
  void abandonRail(uint32_t rail, std::vector<Channel::Lost>& lost);
  /// Listener: a kRejoin arrived for this endpoint (ListenerImpl::handle).
  Status acceptRejoin(const wire::RejoinBody& j, tcp::Fd fd);
  /// The rail works again (both sides): probing, logged, counted.
  void railUp(uint32_t rail, uint32_t epoch, uint64_t now);
  void railEvent(uint32_t rail, const char* state, std::string cause);
  /// "; before it: RAIL: CAUSE; ..." for every rail or lane that is down, with the cause
  /// of its last failure (empty when none is): a failed endpoint's error names each path
  /// it had.
  std::string railsDownSummary() const;
  /// Every 100 ms (tick): each rail's congestion signal into the monitor, its counters
  /// into the stats (rail_signals.cc).
  void sampleSignals(uint64_t now);
  uint64_t nextSignalNs = 0;
  std::string railLabel(uint32_t rail) const;
  // TCP striping (tcp_stripe.cc).
  void stripeTcp(OpState* op);   ///< now, or deferred while the sockets are full
  bool holdStripes();            ///< whether a new message must wait to be striped
  void stripeDeferred();         ///< stripes what waits, as far as the sockets allow
  void stripeNow(OpState* op);
  /// Reads every data socket's acknowledgements (Channel::pollAcks).
  void pollAcks(uint64_t now);
  /// Plans and queues bytes [offset, offset+length) of `op` over the live rails.
  void stripeRange(OpState* op, uint64_t offset, uint64_t length, uint64_t now);
  /// Queues `chunks` (a plan of bytes from `offset`) on their rails' sockets.
  void placePlan(OpState* op, uint64_t offset, uint64_t now, const std::vector<Chunk>& chunks);
  void traceStripe(const OpState* op) const;  // BRAID_LOG_LEVEL=trace: the plan and why
  void matchSends(TagState& ts);
  void startSend(OpState* op, const wire::CtsEntry& cts);
  void finish(OpState* op, Status st);
  /// finish(op, Status::ok()) without building a Status. Inline with retire and
  /// releaseInOrder: every request ends through them.
  void finishOk(OpState* op) {
    if (op->finished) return;
    // op->status is ok already: it is set only on finishing with an error.
    if (op->kind == OpState::Kind::kSend) {
      ++stats.messagesSent;
      stats.bytesSent += op->len;
    }
    retire(op);
  }
  /// The end of finish/finishOk: marks the op finished and releases what may go, in order.
  void retire(OpState* op) {
    op->finished = true;
    if (op->reg) op->reg.reset();  // a request's own registration ends with it
    --outstanding;
    if (op->kind == OpState::Kind::kWrite || op->kind == OpState::Kind::kRead)
      return retireRma(op);
    releaseInOrder(tagState(op->tag), op->kind == OpState::Kind::kSend);
  }
  void retireRma(OpState* op);
  /// Finishes every outstanding request with `st`.
  void finishAll(const Status& st);
  void releaseInOrder(TagState& ts, bool sends) {
    core::Ring<OpState*>& q = sends ? ts.sends : ts.recvs;
    while (!q.empty() && q.front()->finished) {
      OpState* op = q.front();
      q.pop_front();
      op->released = true;
      maybeRecycle(op);
    }
  }
  void dropHandle(OpState* op) {
    op->hasHandle = false;
    maybeRecycle(op);
  }
  /// Back to the freelist once released, without a handle and with nothing posted using
  /// it. Inline: checked on every completion and handle drop; recycle() is the rare part.
  void maybeRecycle(OpState* op) {
    if (op->released && !op->hasHandle && op->pendingFrames == 0) recycle(op);
  }
  void recycle(OpState* op);
  /// The state of `tag`, made on first use. The last one is cached: a stream of messages
  /// on one tag (the common case) skips the hash lookup. Elements of an unordered_map keep
  /// their address, and tags are never erased while the endpoint lives.
  TagState& tagState(uint64_t tag) {
    if (lastTagState != nullptr && lastTag == tag) return *lastTagState;
    TagState& ts = tags[tag];
    lastTag = tag;
    lastTagState = &ts;
    return ts;
  }
  /// The state of `tag` if it has any (through the same cache), else nullptr.
  TagState* findTagState(uint64_t tag) {
    if (lastTagState != nullptr && lastTag == tag) return lastTagState;
    auto it = tags.find(tag);
    return it == tags.end() ? nullptr : &it->second;
  }
  /// Fails the endpoint and every outstanding request. `orderly`: the peer closed on
  /// purpose (logged as info when nothing was outstanding).
  void fail(Status st, bool orderly = false);
  /// Sends a close frame, lingers the sockets, cancels what is left. Idempotent.
  void close();
  void tick(uint64_t nowNs);
  /// `stats` with the per-rail view of the scheduler (Endpoint::stats()).
  EndpointStats statsWithRails();
  void flushControl();

  // --- connection ---
  Status startConnect(const Address& addr);
  void onHandshakeEvent(Channel& ch, uint32_t events);
  Status progressHandshake(Channel& ch);
  Status startDataSockets(const wire::HelloAck& ack);
  Status connectProgress();
  void onConnected();
  std::string describe() const;
  std::vector<Channel*> allChannels() const;

  /// Keeps the worker (and through it the Context) alive as long as this endpoint or any
  /// of its requests: the caller may destroy the Worker first.
  std::shared_ptr<WorkerImpl> workerRef;
  WorkerImpl* worker;
  const Context::Impl* ctx;
  EpState state = EpState::kConnecting;
  bool isServer = false;
  Status error;
  std::string peer;  // "ip:port"
  tcp::SockAddr ctrlAddr;
  bool closed = false;
  uint64_t token = 0;
  uint64_t nonce = 0;
  uint64_t endpointId = 0;
  uint64_t eagerMax = 0;
  uint32_t railCount = 0;
  uint32_t socketsPerRail = 0;
  uint64_t deadlineNs = 0;
  std::vector<wire::RailDesc> localRails, peerRails;

  std::unique_ptr<Channel> control;
  /// Verbs lanes (one RC QP per verbs rail) when the endpoint moves data over verbs; the
  /// TCP sockets then carry only the handshake, heartbeats and close.
  std::unique_ptr<VerbsPath> verbs;
  std::vector<std::unique_ptr<Channel>> data;  ///< rail-major: rail*socketsPerRail + k
  std::vector<bool> dataReady;                  ///< client: join written; server: joined
  // Handshake scratch (client).
  std::vector<uint8_t> hsBuf;
  size_t hsGot = 0;
  std::vector<uint8_t> hsOut;
  size_t hsSent = 0;
  std::vector<std::vector<uint8_t>> joinOut;
  std::vector<size_t> joinSent;
  std::vector<bool> dataConnecting;

  /// Eager messages held for receives not posted yet, bytes (bounded by
  /// BRAID_UNEXPECTED_MAX: each is a copy).
  uint64_t unexpectedBytes = 0;
  /// CTS held per tag for sends not posted yet (each is 128 bytes).
  static constexpr size_t kMaxPendingCts = 65536;
  /// A write found the peer gone: how long the read side has to deliver what the peer
  /// sent before, and end the stream, before the endpoint fails with the write's error.
  static constexpr uint64_t kPeerGoneGraceNs = 200'000'000;
  std::unordered_map<uint64_t, TagState> tags;
  uint64_t lastTag = 0;
  TagState* lastTagState = nullptr;
  std::vector<OpState*> rmaOps;  ///< one-sided operations not finished yet
  std::vector<OpState*> queued;  ///< sends and receives posted while connecting, in order
  core::Freelist<OpState> ops;
  uint64_t outstanding = 0;
  uint64_t awaitingCts = 0;  ///< rendezvous sends waiting for their CTS (all tags)
  Scheduler scheduler;
  /// Per-rail estimates the scheduler plans from: TCP rails (acknowledged chunks), or
  /// verbs lanes (completed FINs and one-sided writes); indexed like `snaps`.
  transport::RailMonitor monitor;
  /// TCP: rendezvous sends that met their CTS and wait to be striped (tcp_stripe.cc).
  core::Ring<OpState*> deferred;
  bool stripingDeferred = false;
  /// Holds the striping of deferred messages while a plan is queued (a flush may fail a
  /// rail, whose chunks are planned at once: they must not go under the plan being
  /// queued). release() ends the hold and says whether it was the outermost one, whose
  /// caller then stripes what was deferred meanwhile.
  class DeferredHold {
   public:
    explicit DeferredHold(EndpointImpl& e) : e_(e), outer_(!e.stripingDeferred) {
      e_.stripingDeferred = true;
    }
    ~DeferredHold() { release(); }
    DeferredHold(const DeferredHold&) = delete;
    DeferredHold& operator=(const DeferredHold&) = delete;
    bool release() {
      if (!held_) return false;
      held_ = false;
      e_.stripingDeferred = !outer_;
      return outer_;
    }

   private:
    EndpointImpl& e_;
    bool outer_;
    bool held_ = true;
  };
  /// TCP: chunks written and not yet acknowledged by the peer's kernel (all data sockets).
  /// While there are any, the worker sleeps at most 1 ms so their acknowledgements are
  /// timed (and deferred messages striped) within a millisecond.
  uint64_t unackedChunks = 0;
  /// Each rail's life after connect (rail_failover.cc): TCP rails, or verbs lanes.
  struct RailLink {
    bool alive = true;
    uint32_t epoch = 0;         ///< generation in use: 0 at connect, one more per rejoin
    uint32_t pendingEpoch = 0;  ///< a rejoin being made (0: none)
    uint32_t lastTried = 0;     ///< connector: the highest epoch it has dialed
    uint64_t joinedMask = 0;    ///< sockets of pendingEpoch written (connector) or arrived
    uint64_t downNs = 0;        ///< when it failed last
    uint64_t nextDialNs = 0;    ///< connector: the next rejoin attempt
    uint64_t dialDeadlineNs = 0;
    uint32_t backoffMs = 0;
    uint64_t chunks = 0;
    uint64_t failures = 0;
    std::vector<RailEvent> events;  ///< at most kMaxRailEvents, oldest first
    // Congestion (rail_signals.cc): the last signal, its counters, the last TCP sample.
    double congestion = 0;
    std::map<std::string, uint64_t> counters;
    transport::TcpSample tcpPrev;
    bool tcpSampled = false;
    uint64_t retransTotal = 0;
  };
  static constexpr size_t kMaxRailEvents = 32;
  /// Appends an event to a rail's record (the oldest goes past kMaxRailEvents).
  static void addRailEvent(RailLink& link, const char* st, std::string cause);
  std::vector<RailLink> links;
  std::vector<RailLink> laneLinks;  ///< the verbs lanes' links while on TCP
  uint32_t railsDown = 0;  ///< links not alive
  /// Bytes queued in user space over all data sockets above which striping waits.
  static constexpr uint64_t kStripeWindow = 4ull << 20;
  /// Bytes the data sockets may write per progress call (reset there). A flush that empties
  /// its socket stripes the next deferred message and flushes again: without a bound, a
  /// peer that keeps up (no EAGAIN) kept one call writing every queued message (hundreds
  /// of MiB), and the caller saw nothing else (the peer's messages, its own completions)
  /// until the stream had gone. Over budget, a socket waits for EPOLLOUT, which the next
  /// progress call finds at once.
  static constexpr uint64_t kWriteBudget = 8ull << 20;
  uint64_t writeBudget = kWriteBudget;
  std::vector<RailSnapshot> snaps;
  std::vector<Chunk> plan;
  bool controlDirty = false;
  /// A CTS of a receive that only an eager message fits is queued on the control socket:
  /// it rides with the next write there, or goes before the worker sleeps or at the next
  /// tick (within a millisecond). Such a CTS only tells a larger (rendezvous) message that
  /// it does not fit, so writing it alone at once would cost a system call for nothing.
  bool lazyCts = false;
  uint64_t lastRxNs = 0, lastTxNs = 0, nextTickNs = 0;
  EndpointStats stats;
};

/// Marks a public call on a worker (BRAID_THREAD_CHECKS): while one thread is inside,
/// another one's call is refused (ok() false) and touches nothing. Without the checks it
/// costs one predictable branch.
class WorkerEntry {
 public:
  WorkerEntry(WorkerImpl* w, const char* call);
  ~WorkerEntry() {
    if (w_ != nullptr) leave();
  }
  WorkerEntry(const WorkerEntry&) = delete;
  WorkerEntry& operator=(const WorkerEntry&) = delete;
  bool ok() const { return other_ == 0; }
  /// The error for a refused call, naming both threads.
  Status misuse() const;

 private:
  void enter(WorkerImpl* w);
  void leave();
  WorkerImpl* w_ = nullptr;
  const char* call_;
  uint64_t other_ = 0;
};

/// Refuses the enclosing call (returns the error) when another thread is inside `w`.
#define BRAID_WORKER_ENTRY(w, call)              \
  ::braid::WorkerEntry braidEntry_((w), (call)); \
  if (!braidEntry_.ok()) return braidEntry_.misuse()

/// A socket being closed: drained until the peer's FIN so our close sends no RST that
/// would discard data the peer has not read yet.
struct Lingering {
  tcp::Fd fd;
  uint64_t deadlineNs;
};

struct ListenerImpl;
/// Reaps a listener's handshakes that ran past BRAID_TIMEOUT_MS and endpoints that failed
/// while joining (listener.cc); run by the worker's timers.
void sweepListener(ListenerImpl* l);

struct WorkerImpl : std::enable_shared_from_this<WorkerImpl> {
  std::shared_ptr<Context> context;
  const Context::Impl* ctx = nullptr;
  tcp::Poller poller;
  std::vector<EndpointImpl*> endpoints;
  /// Listeners whose pending handshakes the timers reap, whether or not accept() is called.
  std::vector<ListenerImpl*> listeners;
  std::vector<Lingering> lingering;
  static constexpr size_t kMaxLingering = 64;
  uint64_t nextTickNs = 0;
  uint64_t lastSocketPollNs = 0;
  uint64_t lastAckPollNs = 0;  ///< busy polling: TCP acknowledgements read every 20 us
  uint32_t busyPolls = 0;  ///< non-blocking polls of an all-verbs worker (clock every 16th)
  // Owner-thread check (BRAID_THREAD_CHECKS): the thread inside a public call, and how
  // deep (calls nest: wait -> test -> progress).
  bool threadChecks = false;
  std::atomic<uint64_t> owner{0};
  uint32_t depth = 0;

  Result<size_t> progress(int timeoutMs);
  void addEndpoint(EndpointImpl* e) { endpoints.push_back(e); }
  void removeEndpoint(EndpointImpl* e);
  void removeListener(ListenerImpl* l);
  void linger(tcp::Fd fd);
  void tick();
};

}  // namespace braid
