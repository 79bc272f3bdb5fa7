// lib/transport/verbs_path.h — the verbs data path of one endpoint: one RC QP per rail.
//
// Protocol (docs/protocol.md, "Verbs data path"):
// - A receive that can take a rendezvous message RDMA-writes a CtsEntry (tag, seq,
//   capacity, buffer address and one rkey per rail) into the sender's CTS ring (rail 0),
//   or sends it riding on a SEND. The sender polls the ring in memory. An eager-only
//   receive sends one only when its sender announced a larger message (RTS).
// - Small messages (<= eager limit) are SENT at once into the peer's pre-posted receive
//   slots (FrameHeader + payload, copied through a registered send slot), no CTS needed.
// - Large ones wait for their CTS, are cut by the Scheduler into chunks RDMA-written
//   straight into the receive buffer (zero copy) on every rail, and each rail used ends
//   with a FIN SEND saying how many bytes it carried: RC delivers a QP's operations in
//   order, so the FIN's arrival means that rail's bytes have landed. The receive finishes
//   when the FINs add up to the message size.
// - Flow control: SENDs consume the peer's receive slots; the peer returns them by
//   RDMA-writing cumulative counters into this side's FlowBlock, together with how many
//   of this side's CTS entries it has read (which frees ring slots).
//
// Not thread-safe: driven by the endpoint's Worker like the TCP channels.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "braid/status.h"
#include "braid/transport.h"
#include "core/freelist.h"
#include "tcp/poller.h"
#include "transport/scheduler.h"
#include "transport/wire.h"
#include "verbs/async_events.h"
#include "verbs/device.h"
#include "verbs/handles.h"
#include "verbs/lib.h"
#include "verbs/mr_cache.h"
#include "verbs/qp.h"

namespace braid {

struct EndpointImpl;
struct OpState;

/// One verbs rail of a Context: a device port with its GID choice, the device's PD and
/// registration cache (shared by the ports of one device), and its async-event watcher.
struct VerbsRail {
  const verbs::Lib* lib = nullptr;
  verbs::PortInfo port;
  int gidIndex = 0;
  verbs::Gid gid{};  ///< the GID at gidIndex
  std::shared_ptr<verbs::Context> dev;
  std::shared_ptr<verbs::Pd> pd;
  std::shared_ptr<verbs::MrCache> cache;
  std::shared_ptr<verbs::AsyncWatcher> watcher;
  verbs::QpTuning tuning{};
  std::string name() const;  ///< "rxe0:1"
};

/// Registrations of one buffer, one per verbs rail of the Context (index = rail index).
struct MemoryRegionImpl {
  struct Keys {
    uint32_t lkey = 0, rkey = 0;
    std::shared_ptr<const void> hold;  ///< the MrRef (cached) or the Mr (implicit)
  };
  uintptr_t base = 0;
  size_t length = 0;
  mutable std::vector<Keys> perRail;  ///< emptied by MemoryRegion::deregister()
  /// Set for explicit registrations: the range is dropped from the cache when the last
  /// holder goes, so a later buffer at the same address never hits a stale entry.
  std::vector<std::shared_ptr<verbs::MrCache>> caches;
  ~MemoryRegionImpl();
};

/// RemoteKey layout: [0,8) address, [8,16) length, [16,80) rkey per rail, [80,84) rail
/// count, rest 0.
RemoteKey encodeRemoteKey(const MemoryRegionImpl& m);
struct DecodedRemoteKey {
  uint64_t addr = 0, length = 0;
  uint32_t rails = 0;
  uint32_t rkeys[wire::kMaxRails] = {};
};
Result<DecodedRemoteKey> decodeRemoteKey(const RemoteKey& k);

/// Bytes [offset, offset + length) of a one-sided op that wait for the lanes (the endpoint
/// is on TCP): each holds its op (OpState::pendingFrames) until it goes or the op fails.
struct RmaRange {
  OpState* op;
  uint64_t offset, length;
};

/// CTS entries a SEND on lane 0 may carry after its payload.
constexpr uint32_t kMaxPiggyback = 4;

/// A SEND received on a verbs lane, parsed (docs/protocol.md, "Messages"). Set by a
/// successful parse only (left uninitialized: it lives on the receive path).
struct ReceivedSend {
  wire::FrameHeader hdr;  ///< flags cleared; EAGER: offset 0 and total = length (implied)
  uint32_t headerBytes;   ///< header bytes on the wire: wire::kEagerHeaderBytes for EAGER,
                          ///< else sizeof(wire::FrameHeader); `hdr.length` payload bytes
                          ///< follow, then the riding CTS
  uint32_t riding;        ///< CTS entries riding after the payload (at most kMaxPiggyback)
  bool ridingFull;        ///< they are wire::CtsEntry, else wire::CompactCts
};
/// onRecv's fast path (pure): true when the `bytes` at `p` are a well-formed EAGER frame,
/// with or without riding CTS, for a receiver whose eager limit is `eagerMax`, received on
/// lane `lane` (`ctlLane`: the one that carries eager messages and notices, 0 unless lane 0
/// failed). False says nothing more: parseSend then names what is wrong, if anything.
bool parseEagerSend(const uint8_t* p, size_t bytes, uint64_t eagerMax, size_t lane,
                    ReceivedSend* out, size_t ctlLane = 0);
/// Every check of a received SEND of any frame type (pure): the header (wire::checkFrame),
/// the riding CTS (count, control lane only) and that header, payload and riding entries add up
/// to `bytes`. Whether the verbs path takes that frame type is its caller's business.
Status parseSend(const uint8_t* p, size_t bytes, uint64_t eagerMax, size_t lane,
                 ReceivedSend* out, size_t ctlLane = 0);

/// Registers [base, base+len) on every rail. Explicit ones go through the cache (a buffer
/// registered twice while alive shares one MR); implicit ones (a request without a
/// MemoryRegion) are registered for the request only.
Result<std::shared_ptr<const MemoryRegionImpl>> registerOnRails(
    const std::vector<VerbsRail>& rails, const void* base, size_t len, bool cached);
/// Registers the dma-buf `fd` ([offset, offset+len) of it, mapped at `base`) on every rail
/// (ibv_reg_dmabuf_mr; never cached: the fd's pages are not the address's).
Result<std::shared_ptr<const MemoryRegionImpl>> registerDmabufOnRails(
    const std::vector<VerbsRail>& rails, const void* base, size_t len, int fd, uint64_t offset);
/// Whether every rail's device registers dma-bufs: NCCL's probe, ibv_reg_dmabuf_mr with
/// fd -1, which fails with EOPNOTSUPP or EPROTONOSUPPORT where the kernel or provider lacks
/// it (and with EBADF where it has it).
bool dmabufOnRails(const std::vector<VerbsRail>& rails, std::string* why);

class VerbsPath {
 public:
  /// Creates the lanes, BRAID_IB_QPS_PER_RAIL RC QPs (INIT) per rail in `rails` (at most
  /// wire::kMaxRails in all), and the control block. Nothing is sent.
  static Result<std::unique_ptr<VerbsPath>> create(EndpointImpl* ep,
                                                   const std::vector<VerbsRail>& rails);
  ~VerbsPath();
  VerbsPath(const VerbsPath&) = delete;
  VerbsPath& operator=(const VerbsPath&) = delete;

  /// What the peer needs for every lane (QPN, PSN, GID, ring and flow block keys).
  std::vector<wire::VerbsRailDesc> localDescs() const;
  /// Keeps the first `n` lanes, posts the receive slots (sized for `eagerMax`) and moves
  /// every QP to RTR and RTS against the peer's descriptors.
  Status connect(const std::vector<wire::VerbsRailDesc>& peer, size_t n, uint64_t eagerMax);
  size_t laneCount() const { return lanes_.size(); }
  std::string laneName(size_t i) const;
  /// The lane's share of its port's active speed, bytes/s (0 unknown).
  double laneNominalBps(size_t i) const;
  /// The verbs rail (device port) lane `i` runs on.
  const VerbsRail* laneRail(size_t i) const;

  // --- data path (called by EndpointImpl)
  /// The CTS of a posted receive that can take a rendezvous message (`mr`: its buffer's
  /// registration), or of an eager-only one whose sender announced a larger message
  /// (`mr` unused): written into the peer's ring at the next progress, or riding on a
  /// SEND before that.
  Status postReceive(OpState* op, const MemoryRegionImpl* mr);
  /// An eager send was posted: SENDs header + payload on lane 0.
  void sendEager(OpState* op);
  /// A large send met its CTS: RDMA-writes the chunks and the FINs.
  void startRendezvous(OpState* op, const wire::CtsEntry& cts, const MemoryRegionImpl* mr);
  /// One-sided write or read of op->len bytes between op->buf and remote + offset.
  void startRma(OpState* op, const DecodedRemoteKey& remote, uint64_t offset);
  /// The part of startRma that needs no lane: the op learns its remote address and keys.
  /// False (and the op finished) when its local registration is gone.
  bool prepareRma(OpState* op, const DecodedRemoteKey& remote, uint64_t offset);
  /// After the return to RDMA: each held range goes on a live lane its op has keys for
  /// (or fails the op), and its hold is released.
  void replayRma(std::vector<RmaRange>& held);
  /// Tells the receiver its message (tag, seq) of `total` bytes does not fit.
  void sendTruncated(uint64_t tag, uint64_t seq, uint64_t total);
  /// Announces the rendezvous message (tag, seq) of `total` bytes whose CTS is not in: an
  /// eager-only receive sends no CTS unless asked.
  void sendRts(uint64_t tag, uint64_t seq, uint64_t total);
  /// SENDs a payload-less frame (cancel requests and replies) on lane 0, in order with
  /// the eager messages and notices before it.
  void sendNotice(const wire::FrameHeader& h);
  /// Polls the CQs, the CTS ring and the flow block; posts what waited. Returns events.
  size_t progress();
  /// Liveness and async events (port down, QP fatal); fails the endpoint on a bad one.
  void tick(uint64_t now);
  /// kRailFailed naming the lane and the async event when a lane's device, port or QP
  /// failed; ok otherwise.
  Status railFailure() const;
  /// Moves every QP to the error state: nothing more lands in user buffers.
  void shutdown() noexcept;
  /// Before a blocking wait: arms every lane's CQ for a completion event (its channel is
  /// in the worker's epoll set). True when every lane is armed and nothing waits for
  /// what raises no completion (a CTS in the ring, returned credits or ring space), so
  /// the worker may sleep until an event; false: sleep 1 ms at most. The caller polls
  /// again after arming (a completion just before it raised no event).
  bool armForSleep();
  /// Orderly close: true once every posted send request has completed (acknowledged by
  /// the peer). Eager SENDs finish when posted, so the endpoint waits for this first.
  bool sendsRetired() const;
  /// True while a posted work request whose completion finishes a request (a FIN, the
  /// last chunk of a one-sided operation) has not completed.
  bool completionsAwaited() const;
  /// Makes unsignaled requests on lane 0 retire: posts a signaled request behind them.
  void requestRetirement();
  uint64_t bytesSentOnLane(size_t i) const;

  // --- lane failure (docs/protocol.md, "Verbs lane failure")
  /// The peer gave lane `lane` up (kRailDown on the control socket).
  void peerLaneDown(uint64_t lane);
  /// Receiver: the sender asks which bytes of a range it wrote through a failed lane are
  /// missing. Answered once every failed lane's receive queue is flushed.
  void onRecheck(const wire::FrameHeader& f);
  /// Sender: a range the receiver misses (written again on a live lane), or the end of
  /// one recheck's answer.
  void onRecheckReply(const wire::FrameHeader& f);
  bool laneDown(size_t i) const;
  // --- lane rejoin (docs/protocol.md, "Verbs lane rejoin"; verbs_rejoin.cc)
  /// Listener: the connector offers a new QP for a lane that is down.
  void onLaneJoin(const wire::FrameHeader& f, const uint8_t* payload);
  /// Connector: the listener's QP for the lane (or a refusal).
  void onLaneJoinAck(const wire::FrameHeader& f, const uint8_t* payload);
  /// Listener: the connector's probe crossed the new QPs: the lane carries data again.
  void onLaneUp(const wire::FrameHeader& f);
  // --- back to RDMA after a move to TCP (docs/protocol.md "Back to RDMA")
  /// The lane to return on (lane 0 when it is back, else the first lane that is), or -1.
  int returnLane() const;
  /// Lane `i` exists, is up and connected.
  bool laneUsable(size_t i) const;
  /// The lane that carries the CTS ring, the flow block, eager messages and notices: 0
  /// until a return to RDMA had to take another.
  size_t controlLane() const { return ctl_; }
  /// Nothing rechecked (as sender or receiver).
  bool quietForReturn() const;
  /// The control lane is down already (it failed while the return to RDMA on it was
  /// agreed): the endpoint moves to TCP again without telling the peer (it learns it from
  /// this side's RAIL_DOWN sent when the lane failed).
  void controlLaneLost(const Status& why);
  /// CTS entries written into the peer's ring so far.
  uint64_t ctsWritten() const { return ctsWritten_; }
  /// Data moves over the lanes again, with `ctlLane` as the control lane: the CTS ring's
  /// counters meet the peer's (`peerCtsWritten`: entries the peer wrote into this side's
  /// ring).
  void resume(uint64_t peerCtsWritten, size_t ctlLane);

 private:
  struct Lane;
  struct LaneBatch;
  struct SendItem;
  explicit VerbsPath(EndpointImpl* ep);
  wire::VerbsRailDesc descOf(const Lane& l) const;
  /// Connector: dials lanes that are down, with back-off; gives up attempts that stall.
  void rejoinTick(uint64_t now);
  /// A new completion channel, CQ and QP (INIT) for a lane that is down; the lane's
  /// counters start again (its slots and registrations stay).
  Status restartLane(Lane& l);
  void joinFailed(Lane& l, const Status& why, uint64_t now);
  /// Both sides: the lane carries data again (probing).
  void laneUp(Lane& l, uint64_t now);
  /// Connector: the rejoin probe completed (`ok`) or failed (`why`).
  void onProbeDone(Lane& l, bool ok, const std::string& why);
  /// The lane's completion channel (watched by the worker), CQ and QP, in INIT.
  Status buildLane(Lane& l);
  /// Posts the lane's receive slots and moves its QP to RTR and RTS against `peer`.
  Status connectLane(Lane& l, const wire::VerbsRailDesc& peer);
  void post(size_t lane, const SendItem& item);
  bool tryPost(Lane& l, const SendItem& item);
  /// A SEND (eager, FIN, truncation notice) into a send slot with the CTS that wait to ride
  /// along; `frame` nullptr: an eager frame made from `op`. False when it must wait
  /// (credit, send slot or send queue room).
  bool trySend(Lane& l, uint8_t kind, OpState* op, const wire::FrameHeader* frame,
               const uint8_t* payload);
  /// Posts one work request and records what its completion retires; fails the endpoint
  /// when the post fails. Always true (the request is consumed).
  bool postWr(Lane& l, ibv_send_wr& wr, uint8_t kind, OpState* op, int32_t sendSlot,
              uint32_t bytes);
  void drainBacklogs();
  bool pollLane(Lane& l);
  void onSendCompletion(Lane& l, uint64_t wrId);
  void batchDone(Lane& l);  // a lane finished its oldest batch: tell the RailMonitor
  /// The scheduler's view of the lanes for a buffer with `rkeys` (indexed by the peer's rail).
  std::vector<transport::RailSnapshot>& snapshotLanes(const uint32_t* rkeys, uint32_t keyRails);
  void onRecv(Lane& l, uint32_t slot, uint32_t bytes);
  /// onRecv's full path: every frame type, every check with its message.
  void onRecvFrame(Lane& l, uint32_t slot, uint32_t bytes);
  /// The `count` CTS entries riding after a SEND's payload at `src`; false when the
  /// endpoint failed on one.
  bool takeRidingCts(const uint8_t* src, uint32_t count, bool full);
  /// Queues a consumed receive slot for re-posting (posted in batches: flushReposts).
  Status repostRecv(Lane& l, uint32_t slot);
  Status flushReposts(Lane& l);
  void pollCtsRing();
  void writeWaitingCts();
  /// Writes the flow counters when enough are owed (or `force`: also to make every
  /// earlier request on lane 0 retire, as it is signaled).
  void maybeWriteFlow(bool force = false);
  std::string describeWc(const Lane& l, int status, uint32_t vendorErr, int opcode) const;
  /// What the async-event thread knows of the lane's device, port and QP.
  Status railStatus(const Lane& l) const;
  void failRail(const Lane& l, const Status& cause);
  /// kRailFailed naming the lane, its peer and `cause`.
  Status railFailedStatus(const Lane& l, const Status& cause) const;
  /// A lane failed (`why` fails the endpoint when no failover is possible: lane 0, which
  /// carries the CTS, credits and eager messages, or the last lane). Otherwise the lane is
  /// given up and what it left in doubt goes again: one-sided batches on a live lane,
  /// rendezvous batches after the receiver says which bytes it misses (kRecheck).
  void laneFailed(Lane& l, const Status& why, bool tellPeer);
  /// Posts `plan`'s chunks of `op` on their lanes in batches, each closed by a FIN
  /// (rendezvous) or a signaled last write (`rma`).
  void postPlan(OpState* op, const std::vector<transport::Chunk>& plan, bool rma);
  /// A live lane `op`'s buffers have keys for (the least loaded), or -1.
  int liveLaneFor(const OpState* op) const;
  /// [offset, offset + length) as chunks on `lane`, appended to `out`.
  void rangeToPlan(uint64_t offset, uint64_t length, size_t lane,
                   std::vector<transport::Chunk>& out) const;
  void answerRechecks();
  /// A SEND of lane 0 to go again over TCP after the move (header, and an eager payload).
  struct Resend {
    wire::FrameHeader hdr;
    const uint8_t* payload;
    OpState* op;  ///< a backlogged eager send (not finished yet), else nullptr
  };
  /// Gives `l` up: error state, its work requests retire without effect, its batches
  /// appended to `doubt`, lane 0's unsure SENDs to `sends` (when not nullptr).
  void giveUp(Lane& l, const Status& why, uint64_t now, std::vector<LaneBatch>& doubt,
              std::vector<Resend>* sends);
  /// The batches a failure left in doubt go again (one-sided: rewritten; rendezvous:
  /// rechecked).
  void redo(const std::vector<LaneBatch>& doubt, const Status& why, size_t* rewrites,
            size_t* rechecks, uint64_t* bytes);
  /// Lane 0 or the last lane failed and the TCP data sockets exist: every lane is given
  /// up, the endpoint moves to TCP, and what the lanes left in doubt goes again there.
  void degrade(Lane& first, const Status& why, bool tellPeer);
  /// A SEND polled from a lane that is down (it arrived before the failure): handled as a
  /// frame that may be a duplicate.
  void onRecvLate(Lane& l, uint32_t slot, uint32_t bytes);
  /// Takes the lane's completion channel out of the worker's epoll set (idempotent).
  void unwatch(Lane& l) noexcept;

  EndpointImpl* ep_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  // Control block: [ring: ctsSlots CtsEntry][flowIn][ctsOut: ctsSlots CtsEntry][flowOut]
  // [flowSend]. Registered on every lane's PD. ring/flowIn are written by the peer.
  struct ControlBlock;
  ControlBlock* cb_ = nullptr;
  uint32_t ctsSlots_ = 0;
  size_t ctl_ = 0;  ///< the control lane (controlLane())
  uint64_t eagerMax_ = 0;
  uint64_t ctsConsumed_ = 0;  ///< entries of our ring read (as sender)
  uint64_t ctsWritten_ = 0;   ///< entries written into the peer's ring (as receiver)
  core::Ring<wire::CtsEntry> pendingCts_;  ///< CTS waiting for space in the peer's ring
  bool flowInFlight_ = false;
  bool flowDirty_ = false;   ///< slots reposted or ring entries read since the last check
  bool backlogged_ = false;  ///< a lane's backlog may hold work requests
  uint64_t rxEvents_ = 0;      ///< completions and ring entries seen (liveness)
  uint64_t rxEventsSeen_ = 0;  ///< rxEvents_ at the last tick
  std::vector<uint8_t> batchEnd_;  ///< postPlan: chunk k ends its lane's batch
  /// Sender: ranges asked about after a lane failed, each holding its op.
  struct Recheck {
    OpState* op;
    uint64_t tag, seq, offset, length;
  };
  std::vector<Recheck> rechecks_;
  /// Receiver: rechecks waiting for the failed lanes' receive queues to flush.
  core::Ring<wire::FrameHeader> pendingRechecks_;
};

}  // namespace braid
