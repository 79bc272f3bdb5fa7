// braid/transport.h — point-to-point transport: Context, Worker, Listener, Endpoint, Request.
//
// Threading: a Context may be shared by threads. A Worker and every Listener, Endpoint
// and Request created on it are NOT thread-safe: drive them from one thread at a time
// (e.g. NCCL's proxy thread). Different Workers may run in different threads at once.
// With BRAID_THREAD_CHECKS (on in Debug and sanitizer builds) a call made while another
// thread is inside the same Worker fails with kInvalidArgument saying so, and changes
// nothing; handing a Worker from one thread to another between calls is fine.
//
// Progress is caller-driven: Request::test(), Endpoint::connectProgress(),
// Listener::accept() and Worker::progress() move data; nothing moves between calls.
//
// Blocking: only calls named wait*() block, and each takes a timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "braid/status.h"

namespace braid {

class Worker;
class Endpoint;
class Request;
struct WorkerImpl;
struct EndpointImpl;
struct ListenerImpl;
struct OpState;
struct MemoryRegionImpl;
class MemoryRegion;

/// Which transport an endpoint uses.
enum class Transport : uint8_t { kAuto = 0, kTcp = 1, kVerbs = 2 };

/// Hints for Endpoint::isend.
enum class SendFlags : uint32_t {
  kNone = 0,
  /// More sends to the same endpoint follow at once (as MSG_MORE): over TCP an eager message
  /// may wait for them, so that several go out in one system call. It goes out with the
  /// next send without kMore on that endpoint, or at the worker's next progress (any
  /// progress, test or wait call), whichever comes first. No effect over verbs, nor on a
  /// message above the eager limit (it waits for its receive anyway).
  kMore = 1,
};

/// Options of a Context. Unset fields come from the BRAID_* environment knobs.
struct ContextOptions {
  std::optional<Transport> transport;     ///< BRAID_TRANSPORT
  std::optional<std::string> socketIfname;  ///< BRAID_SOCKET_IFNAME (NCCL_SOCKET_IFNAME syntax)
  std::optional<int> socketsPerRail;      ///< BRAID_SOCKET_NSOCKS
  std::optional<uint64_t> jobToken;       ///< BRAID_JOB_TOKEN
  std::optional<int> timeoutMs;           ///< BRAID_TIMEOUT_MS
  std::optional<size_t> eagerMax;         ///< BRAID_EAGER_MAX
  std::optional<size_t> chunkSize;        ///< BRAID_CHUNK_SIZE
  std::optional<uint64_t> unexpectedMax;  ///< BRAID_UNEXPECTED_MAX
  /// BRAID_STRIPE_POLICY: adaptive (default), weighted, roundrobin or single.
  std::optional<std::string> stripePolicy;
  std::optional<std::string> ibHca;       ///< BRAID_IB_HCA (NCCL_IB_HCA syntax)
  std::optional<int> ibGidIndex;          ///< BRAID_IB_GID_INDEX (-1: automatic)
  std::optional<int> ibQpsPerRail;        ///< BRAID_IB_QPS_PER_RAIL (perftest -q)
  std::optional<bool> threadChecks;       ///< BRAID_THREAD_CHECKS (auto: Debug/sanitizer builds)
  /// What the context's endpoints will carry. It picks defaults for the knobs that neither
  /// an option above nor the environment sets. kCollective (a communicator: every rank
  /// exchanges many messages with several peers at once): when every rail is TCP, messages
  /// up to kCollectiveTcpEagerMax go eagerly, sparing each one a clear-to-send round trip.
  /// Verbs keeps the transport's eager limit: its slots are registered per QP at that size.
  enum class Usage : uint8_t { kPointToPoint, kCollective };
  Usage usage = Usage::kPointToPoint;
};

/// The eager limit of a kCollective context whose rails are all TCP (BRAID_EAGER_MAX or
/// ContextOptions::eagerMax still win).
inline constexpr size_t kCollectiveTcpEagerMax = 128 * 1024;

/// One rail this host would use.
struct RailInfo {
  Transport transport = Transport::kTcp;
  std::string name;     ///< interface (tcp) or device:port (verbs)
  std::string address;  ///< IP address (tcp) or GID (verbs)
  int sockets = 0;      ///< tcp: data sockets per endpoint on this rail
  // Verbs rails only:
  int gidIndex = -1;        ///< the GID table index in use (RoCE; -1 for tcp)
  std::string linkLayer;    ///< "InfiniBand" or "Ethernet"
  int mtuBytes = 0;         ///< the port's active MTU (a QP uses the smaller of both ends')
  int speedMbps = 0;        ///< the port's active speed x width; 0 unknown
  int numaNode = -1;        ///< NUMA node of the device; -1 unknown
  // Where the rail sits (topology placement, e.g. the NCCL plugin's device properties):
  std::string pciPath;      ///< sysfs path of its PCI function (rxe: the netdev's); "" unknown
  uint64_t guid = 0;        ///< verbs: the adapter's system image GUID; 0 for tcp
  int port = 0;             ///< verbs: the device port (1-based); 0 for tcp
  int maxQp = 0;            ///< verbs: the device's QP limit; 0 for tcp
};

/// Process-level state: params snapshot and rail list. Thread-safe, shared.
class Context {
 public:
  /// Resolves options and env knobs and discovers rails. Fails with kInvalidArgument on
  /// a bad knob and kNotFound when BRAID_SOCKET_IFNAME matches no interface.
  static Result<std::shared_ptr<Context>> create(const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const std::vector<RailInfo>& rails() const;
  /// kVerbs when verbs rails were found (endpoints then move data over verbs when their
  /// peer has verbs rails too), else kTcp.
  Transport transport() const;
  int timeoutMs() const;

  /// Registers [base, base+length) for zero-copy transfers on every verbs rail (one MR per
  /// rail). Registering a buffer that is already registered (and still held) reuses that
  /// registration (the registration cache counts a hit). The registration lives as long as
  /// the returned MemoryRegion and every request using it. On a TCP-only context this
  /// costs nothing. Thread-safe. Errors: kNoMemory (pinning refused: check `ulimit -l`),
  /// kInvalidArgument.
  Result<MemoryRegion> registerMemory(void* base, size_t length) const;
  /// Registers a dma-buf (e.g. GPU memory exported by cuMemGetHandleForAddressRange):
  /// bytes [offset, offset+length) of `fd`, which the caller maps at `base`, on every verbs
  /// rail (ibv_reg_dmabuf_mr). Not cached. The fd may be closed once this returns.
  /// kUnsupported on a TCP-only context or where the device or kernel cannot register
  /// dma-bufs (dmabufSupported() says which).
  Result<MemoryRegion> registerDmabuf(void* base, size_t length, int fd, uint64_t offset) const;
  /// Whether registerDmabuf can work here (every verbs rail's device takes dma-bufs); `why`
  /// gets the reason either way.
  bool dmabufSupported(std::string* why = nullptr) const;
  /// Hits and misses of the registration cache, summed over devices.
  struct RegistrationStats {
    uint64_t hits = 0, misses = 0, registered = 0, deregistered = 0;
  };
  RegistrationStats registrationStats() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Context(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// A buffer registered for zero-copy transfers, one registration per rail
/// (Context::registerMemory). Passing one to isend/irecv is optional: without it, a
/// request larger than the eager limit on a verbs endpoint registers its buffer for its
/// own duration (correct, but a registration per request). Copyable; copies share the
/// registration. A MemoryRegion made from (base, length) alone is an unregistered view.
class MemoryRegion {
 public:
  MemoryRegion() = default;
  MemoryRegion(void* base, size_t length) : base_(base), length_(length) {}
  void* base() const { return base_; }
  size_t length() const { return length_; }
  bool contains(const void* p, size_t len) const {
    auto b = reinterpret_cast<uintptr_t>(base_), q = reinterpret_cast<uintptr_t>(p);
    return q >= b && len <= length_ && q - b <= length_ - len;
  }
  /// True when it holds registrations (a verbs context registered it).
  bool registered() const { return impl_ != nullptr; }
  /// What a peer needs to iwrite()/iread() this region: send it the bytes. kUnsupported
  /// when the region is not registered on verbs rails.
  Result<struct RemoteKey> remoteKey() const;
  /// Deregisters now, like ibv_dereg_mr: requests still using the region fail (a peer
  /// writing into it gets a remote access error). Copies of this MemoryRegion see it too.
  /// Registrations shared with another live MemoryRegion of the same buffer stay.
  void deregister();

  // Internal.
  const MemoryRegionImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<const MemoryRegionImpl>& shared() const { return impl_; }

 private:
  friend class Context;
  void* base_ = nullptr;
  size_t length_ = 0;
  std::shared_ptr<const MemoryRegionImpl> impl_;
};

/// A registered region as seen by a peer: address, length and one rkey per verbs rail.
/// Plain bytes: copy them into a message.
struct RemoteKey {
  static constexpr size_t kSize = 96;
  uint8_t bytes[kSize] = {};
};

/// A listener's address handle: what a peer needs to connect (IP, port, job token).
/// Fixed size, copyable as bytes (fits NCCL's 128-byte handle).
struct Address {
  static constexpr size_t kSize = 64;
  uint8_t bytes[kSize] = {};

  /// "host:port" plus token -> address (for tools that know the server's host and port).
  static Result<Address> fromHostPort(const std::string& host, uint16_t port, uint64_t token);
  /// Printable form "braid://ip:port?token=0x..." and back.
  std::string toString() const;
  static Result<Address> parse(const std::string& text);
};

/// Per-endpoint counters.
/// What one rail (a TCP rail, or a verbs lane: one QP on a device port) of an endpoint did,
/// as the striping scheduler sees it (docs/protocol.md, "Striping").
/// A rail's change of state: "down" (with its cause) or "up" (it rejoined).
struct RailEvent {
  int64_t unixMs = 0;  ///< wall-clock time of the change, ms since the Unix epoch
  std::string state;   ///< the state entered: "down" or "up"
  std::string cause;   ///< why (down: the error seen, or the peer's report)
};

struct RailStats {
  std::string name;            ///< "eth0 10.0.0.1 -> 10.0.0.2" or the lane's device, GID, QPN
  std::string state;           ///< "up", "probing" (recovering: a small share) or "down";
                               ///< "standby": a TCP rail of a verbs endpoint, after it
                               ///< carried the data while the verbs lanes were gone
  uint64_t bytesSent = 0;      ///< payload bytes it carried (as bytesSentPerRail)
  uint64_t chunks = 0;         ///< chunks it carried (TCP frames, or verbs chunk writes)
  uint64_t failures = 0;       ///< times it went down
  std::vector<RailEvent> events;  ///< its last state changes (at most 32), oldest first
  /// The congestion signal the scheduler sees, 0 (none) .. 1 (heavy): TCP retransmits per
  /// segment, or a RoCE port's CNPs, ECN marks and retries per packet (lib/transport/
  /// congestion.h), sampled every 100 ms.
  double congestion = 0;
  /// The counters behind it, since the endpoint connected: TCP "retransmits", "rtt_us",
  /// "min_rtt_us", "cwnd" (segments, all sockets of the rail); RoCE the port's congestion
  /// and retry hw_counters that rose (e.g. "np_cnp_sent", "out_of_sequence"; the port's,
  /// shared by every endpoint on it). Empty where the host has none.
  std::map<std::string, uint64_t> counters;
  double share = 0;            ///< its part of all rails' bytesSent, 0..1
  double throughputBps = 0;    ///< delivered bytes/s while busy (EWMA; 0 not measured yet)
  double completionUs = 0;     ///< a chunk's post-to-acknowledgement time (EWMA)
  double latencyUs = 0;        ///< the fixed part of it (0 unknown)
};

struct EndpointStats {
  uint64_t bytesSent = 0;
  uint64_t bytesReceived = 0;
  uint64_t messagesSent = 0;
  uint64_t messagesReceived = 0;
  /// Payload bytes each rail carried: rendezvous sends, and one-sided writes and reads
  /// (eager messages ride the control path and count on no rail).
  std::vector<uint64_t> bytesSentPerRail;
  /// The same rails with the scheduler's estimates (empty until connected). A verbs
  /// endpoint that moved to TCP lists the TCP rails, then its lanes as they ended (state
  /// "down"); once back on RDMA, the lanes, then the TCP rails' record ("standby"); the
  /// per-rail bytes follow the same order.
  std::vector<RailStats> rails;
};

/// An outstanding isend/irecv. Move-only. Destroying an unfinished Request does not
/// cancel it: the operation goes on and its buffer must stay valid until the endpoint is
/// closed or the operation finishes.
class Request {
 public:
  Request() = default;
  // Inline: requests are made, moved and dropped on every message.
  ~Request() {
    if (op_) release();
  }
  Request(Request&& other) noexcept
      : ep_(std::move(other.ep_)), op_(std::exchange(other.op_, nullptr)) {}
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      if (op_) release();
      ep_ = std::move(other.ep_);
      op_ = std::exchange(other.op_, nullptr);
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  /// Non-blocking: drives progress once. ok when finished, kInProgress when not, else the
  /// error (kTruncated, kConnectionReset, kTimedOut, ...). Requests with the same tag on
  /// the same endpoint finish in posting order.
  Status test();
  /// Blocks until finished, an error, or `timeout` (kTimedOut; the request stays valid).
  Status wait(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  /// Asks to cancel. Non-blocking. Returns ok when the request has finished (canceled
  /// now, or it had finished before: test() tells which), kInProgress while the outcome
  /// is not known yet or the transfer cannot be stopped (test()/wait() then report
  /// kCanceled, or the normal result when the message came first), kUnsupported for
  /// one-sided iwrite/iread.
  /// - A receive is withdrawn with the peer's consent (one round trip): the peer's send
  ///   that would have matched it, if not posted yet, skips it, so the next message of
  ///   the tag goes to the next receive; if posted and waiting for this receive's
  ///   clear-to-send (above the eager limit) it ends with kCanceled; if already sent, the
  ///   message completes this receive normally.
  /// - A send is canceled only while it waits for its clear-to-send (above the eager
  ///   limit; eager sends finish when posted): it ends at once with kCanceled, and the
  ///   peer's receive it matches ends with kCanceled. A transferring send completes.
  Status cancel();
  /// True once the request has finished (and every earlier one of its tag): result()
  /// then holds its outcome. Drives nothing.
  bool finished() const;
  /// The outcome without driving progress: ok, the error, or kInProgress.
  Status result() const;
  /// Bytes transferred: for a receive, the size of the message that arrived.
  size_t size() const;
  bool valid() const { return op_ != nullptr; }
  // Internal.
  const std::shared_ptr<EndpointImpl>& endpoint() const { return ep_; }

 private:
  friend struct EndpointImpl;
  Request(std::shared_ptr<EndpointImpl> ep, OpState* op);
  /// Drops this handle on the operation (recycled once it is also finished).
  void release() noexcept;
  std::shared_ptr<EndpointImpl> ep_;
  OpState* op_ = nullptr;
};

/// Blocks until every valid request in `requests` has finished, or `timeout` (kTimedOut;
/// the requests stay valid). ok when all succeeded, else the first error in order. The
/// requests must belong to endpoints of one Worker (kInvalidArgument otherwise); empty
/// handles are skipped. Spins BRAID_SPIN_US, then sleeps in the worker like wait().
Status waitAll(std::vector<Request>& requests,
               std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
/// Blocks until at least one valid request in `requests` has finished and returns the
/// index of the first finished one (its outcome: result()), or kTimedOut. Same rules as
/// waitAll.
Result<size_t> waitAny(std::vector<Request>& requests,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

/// Progress engine: one epoll set serving listeners and endpoints. Not thread-safe.
/// Listeners, endpoints and requests keep what they need of their Worker (and Context)
/// alive: they may be destroyed before or after it, in any order.
class Worker {
 public:
  static Result<std::unique_ptr<Worker>> create(std::shared_ptr<Context> context);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Non-blocking: moves whatever data is ready. Returns the number of events handled.
  Result<size_t> progress();
  /// Blocks until some socket is ready or `timeout` passes, then progresses.
  Result<size_t> waitAndProgress(std::chrono::milliseconds timeout);

  Context& context() const;
  WorkerImpl& impl() { return *impl_; }

 private:
  explicit Worker(std::shared_ptr<WorkerImpl> impl);
  std::shared_ptr<WorkerImpl> impl_;
};

/// Options of a listener.
struct ListenOptions {
  uint16_t port = 0;                  ///< control port on the first rail; 0 picks one
  std::optional<uint64_t> jobToken;   ///< default: BRAID_JOB_TOKEN, else a random token
  /// The control port listens on every local address (as perftest's servers do), so a
  /// peer may connect to any address of this host, 127.0.0.1 included; the address handle
  /// names the first rail's. false: only on the first rail's address.
  bool controlOnAnyAddress = true;
};

/// Accepts peers on every rail. Not thread-safe (belongs to its Worker).
class Listener {
 public:
  /// Binds one listening socket per rail (the first carries the control port). Errors:
  /// kSystemError when the port is already in use (the message names port and host; pick
  /// another port, or 0) or bind fails otherwise (errno in the message), kNotFound when a
  /// rail's address is no longer on this host.
  static Result<std::unique_ptr<Listener>> create(Worker& worker, const ListenOptions& options = {});
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  /// What peers pass to Endpoint::connect.
  const Address& address() const;
  uint16_t port() const;

  /// Non-blocking: returns a connected Endpoint once a peer has completed the handshake
  /// and joined every data socket; kInProgress otherwise. Bad peers (wrong magic, version
  /// or token, garbage, truncated or oversized frames, silence past BRAID_TIMEOUT_MS) are
  /// refused with a logged error and a reject frame; they never fail this call.
  Result<std::unique_ptr<Endpoint>> accept();
  /// Blocking accept with a timeout (kTimedOut).
  Result<std::unique_ptr<Endpoint>> waitAccept(std::chrono::milliseconds timeout);

  /// Peers refused so far (for tests and tools).
  uint64_t refusedCount() const;

 private:
  explicit Listener(std::unique_ptr<ListenerImpl> impl);
  std::unique_ptr<ListenerImpl> impl_;
};

/// One peer over 1..N rails. Not thread-safe (belongs to its Worker).
class Endpoint {
 public:
  /// Starts a non-blocking connect; the handshake advances in connectProgress().
  static Result<std::unique_ptr<Endpoint>> connect(Worker& worker, const Address& address);
  /// Closes: unfinished requests end with kCanceled and the peer is told. Small messages
  /// whose send already finished reach the peer first (over verbs their SENDs are
  /// acknowledged before the queue pairs go down: microseconds, at most 1 s for a peer
  /// that stopped answering).
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  /// Non-blocking: ok once connected, kInProgress while the handshake runs, else the error
  /// (kConnectionRefused with the listener's reason, kTimedOut, ...).
  Status connectProgress();
  /// Blocking connect with a timeout.
  Status waitConnected(std::chrono::milliseconds timeout);

  /// Non-blocking send of `len` bytes (0 to 2^64-1) under `tag`. The buffer must stay
  /// valid and unchanged until the request finishes. `mr` is optional. A message up to
  /// the eager limit (BRAID_EAGER_MAX) is copied out at once and its request finishes when
  /// handed to the transport, whether or not the receive is posted yet (as MPI's eager
  /// sends); a larger one waits for its receive and lands in it without a copy.
  /// `flags`: SendFlags::kMore lets an eager message wait for the sends that follow.
  Result<Request> isend(const void* buf, size_t len, uint64_t tag,
                        const MemoryRegion* mr = nullptr, SendFlags flags = SendFlags::kNone);
  /// Non-blocking receive into `buf` of capacity `len`. The n-th receive posted for a tag
  /// matches the n-th message sent with that tag. A message larger than `len` fails the
  /// receive with kTruncated and writes nothing past `len`; the send fails with kTruncated
  /// too when the message is above the eager limit (an eager send has finished already).
  /// Messages that arrived before the endpoint failed or the peer closed it are still
  /// delivered to the receives posted for them.
  Result<Request> irecv(void* buf, size_t len, uint64_t tag, const MemoryRegion* mr = nullptr);

  /// One-sided RDMA WRITE of `len` bytes from `src` (inside `local`, a registered
  /// MemoryRegion) to `remoteOffset` bytes into the peer's region `remote`, striped over
  /// the verbs rails. Finishes when every byte is written (acknowledged by the peer's
  /// NIC); the peer is not notified: tell it with a message. Non-blocking.
  /// kUnsupported on a TCP endpoint; kInvalidArgument when outside either region.
  Result<Request> iwrite(const void* src, size_t len, const MemoryRegion& local,
                         const RemoteKey& remote, uint64_t remoteOffset);
  /// One-sided RDMA READ of `len` bytes at `remoteOffset` of the peer's region into
  /// `dst` (inside `local`). Same rules as iwrite.
  Result<Request> iread(void* dst, size_t len, const MemoryRegion& local,
                        const RemoteKey& remote, uint64_t remoteOffset);

  /// The peer's address and rails, for messages.
  std::string peerName() const;
  /// Number of rails in use (verbs: QPs, BRAID_IB_QPS_PER_RAIL per rail; TCP: interfaces).
  size_t railCount() const;
  /// Where the data moves: kVerbs when both sides had verbs rails, else kTcp.
  Transport transport() const;
  EndpointStats stats() const;
  /// The error that failed the endpoint, or ok.
  Status error() const;

 private:
  friend class Listener;
  explicit Endpoint(std::shared_ptr<EndpointImpl> impl);
  std::shared_ptr<EndpointImpl> impl_;
};

}  // namespace braid
