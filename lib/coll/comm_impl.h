// lib/coll/comm_impl.h — the communicator's state: the mesh of endpoints, the calls in
// flight and the executor that drives their schedules (executor.cc).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "braid/coll.h"
#include "braid/transport.h"
#include "coll/schedule.h"
#include "coll/scratch_pool.h"

namespace braid::coll {

/// Tags (64 bits): the top 4 bits say what a message is.
inline constexpr uint64_t kTagColl = 1ull << 60;   ///< | (seq % kSlots): one tag per call
inline constexpr uint64_t kTagP2p = 2ull << 60;    ///< send/recv between two ranks
inline constexpr uint64_t kTagAbort = 3ull << 60;  ///< "this communicator failed: why"
inline constexpr uint64_t kTagHello = 4ull << 60;  ///< bootstrap: who is connecting
/// Calls in flight use distinct tags; a call waits for the one kSlots before it (only a
/// caller with more than kSlots non-blocking calls outstanding notices). Bounded, because
/// braid keeps per-tag state for the endpoint's life.
inline constexpr uint64_t kSlots = 64;
/// A message this small carries the descriptor in front of its payload; a larger one is
/// preceded by a descriptor message of its own.
inline constexpr size_t kPiggybackMax = 8192;
inline constexpr size_t kAbortBytes = 2048;
inline constexpr uint32_t kAbortMagic = 0x54424142;  ///< "BABT", then int32 blamed rank, text

/// One call in flight.
struct CollOp {
  CollKind kind = CollKind::kAllreduce;
  Algo algo = Algo::kLocal;
  uint64_t seq = 0;
  Descriptor desc;
  Schedule sched;
  std::string what;  ///< "allreduce #12 (1048576 x float sum, ring)" for messages
  // Execution.
  std::vector<braid::Request> reqs;        ///< per task: the braid request (send/recv)
  std::vector<braid::Request> descReqs;    ///< per task: the separate descriptor message
  std::vector<std::vector<uint8_t>> staging;  ///< per task: descriptor + small payload
  std::vector<std::vector<int>> sendQ, recvQ;  ///< per peer: its send/recv tasks in order
  std::vector<size_t> sendNext, recvNext;
  std::vector<int> pendingCompute;  ///< compute tasks not run yet
  std::vector<int> posted;          ///< send/recv tasks posted and not finished
  size_t done = 0;
  bool started = false;
  bool finished = false;
  Status status;                    ///< the outcome once finished
  std::vector<uint8_t*> scratch;  ///< pool buffers to give back
  std::vector<MemoryRegion> regions;  ///< registrations of the caller's buffers (verbs)
  std::chrono::steady_clock::time_point lastProgress;
  int blame = -1;  ///< on a stall: the peer it waited for
};

struct Peer {
  std::unique_ptr<Endpoint> ep;
  std::string host;
  std::string address;
  braid::Request abortRecv;
  std::vector<uint8_t> abortBuf;
  Status failed;  ///< the endpoint's error once seen
};

struct CommImpl : std::enable_shared_from_this<CommImpl> {
  ~CommImpl();
  std::shared_ptr<Store> store;  ///< kept when this rank serves it (fromEnvironment)
  int rank = 0, size = 1;
  int timeoutMs = 30000;
  size_t segmentBytes = 1024 * 1024;
  int spinUs = 1000;  ///< BRAID_COLL_SPIN_US
  /// When progress() last ran: a caller away for long stalled nothing (checkStalled).
  std::chrono::steady_clock::time_point lastCall;
  std::map<CollKind, Algo> forced;  ///< BRAID_ALGO
  std::string hostName;
  std::shared_ptr<Context> context;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Listener> listener;
  std::vector<Peer> peers;  ///< by rank (this rank's entry unused)
  uint64_t nextSeq = 0;
  std::deque<std::shared_ptr<CollOp>> inflight;  ///< calls, oldest first (p2p included)
  Status failed;            ///< sticky: the first error that failed the communicator
  bool verbs = false;
  ScratchPool pool;  ///< scratch buffers (and, over verbs, their registrations)
  // Progress thread (BRAID_COLL_THREAD).
  std::mutex mu;
  std::condition_variable cv;
  std::thread progressThread;
  bool threadOn = false;
  bool stopping = false;

  std::string describeRank(int r) const;
  Algo choose(CollKind kind, size_t bytes) const;

  /// Builds and queues a call (it starts when its tag slot is free).
  Result<std::shared_ptr<CollOp>> submit(CollKind kind, const void* send, void* recv,
                                         size_t count, DataType type, ReduceOp op, int root,
                                         int peer);
  /// Drives the worker once and every call in flight as far as it goes. Non-blocking.
  void progress();
  /// Blocks until `op` finished or `timeout`.
  Status wait(CollOp& op, std::chrono::milliseconds timeout);
  /// Fails the communicator (and every call in flight) and tells the other ranks why.
  /// `blamed`: the rank this one waited for when it gave up (-1: none in particular).
  void fail(const Status& why, bool tellPeers, int blamed = -1);
  /// The peer the oldest unfinished call waits for (-1: none).
  int waitingFor() const;
  /// Waits (a little) for the blamed rank's own abort and takes its reason, hop by hop.
  Status followBlame(Status st, int blamed);
  bool failing = false;
  /// Looks at the peers' abort receives: an abort fails the communicator, a goodbye or a
  /// broken endpoint marks that peer gone. True when any finished.
  bool checkAborts();
  /// Tells every peer this rank leaves, and waits a little for theirs, so that endpoints
  /// close with nothing outstanding on either side (a quiet, orderly teardown).
  void sayGoodbye();

  uint8_t* acquireScratch(CollOp& op, size_t bytes);
  void releaseScratch(CollOp& op);
  const MemoryRegion* regionFor(const CollOp& op, const void* p, size_t len) const;

 private:
  void start(CollOp& op);
  bool advance(CollOp& op);
  Status post(CollOp& op, int id);
  Status complete(CollOp& op, int id);
  void finish(CollOp& op, Status st);
  Status checkStalled(CollOp& op);
};

}  // namespace braid::coll
