// braid/coll.h — collectives over braid's transport (Gloo/MPI-style, host memory).
//
// A Communicator is `size` processes ("ranks"), each holding an Endpoint to every other
// (full mesh, over verbs or TCP rails: striped and failed over like any braid endpoint).
// Ranks find each other through a Store: a TCP store served by rank 0, a file store in a
// shared directory, or the caller's own. Communicator::fromEnvironment() reads what the
// usual launchers set (BRAID_*, torchrun, Slurm, Open MPI); see docs/collectives.md.
//
// Semantics (as NCCL and MPI):
// - Every rank calls the same collectives in the same order, with matching counts, types,
//   ops and roots. A mismatch is detected and fails the call on the ranks that see it; a
//   failed call fails the communicator (every later call returns the same error) and every
//   other rank's call within about BRAID_TIMEOUT_MS, with an error naming the rank.
// - In-place: recv == send (allreduce, broadcast, reduce, alltoall);
//   send == recv + rank * sendcount elements (allgather);
//   recv == send + rank * recvcount elements (reduce_scatter).
// - Non-blocking calls (i*) return a Request; the buffers must stay valid until it is
//   finished. Progress is made by the caller's test()/wait() (or any blocking call on the
//   communicator), or by a progress thread (CommOptions::progressThread /
//   BRAID_COLL_THREAD=1).
// - Threading: a Communicator and its Requests are driven by one thread at a time, as a
//   braid Worker (the progress thread, when on, takes the same lock).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "braid/status.h"
#include "braid/transport.h"

namespace braid::coll {

/// Element types. fp16 and bf16 are reduced in fp32 and rounded to nearest even once per
/// reduction step.
enum class DataType : uint8_t {
  kInt8, kUint8, kInt32, kUint32, kInt64, kUint64, kFloat16, kBfloat16, kFloat32, kFloat64,
};
inline constexpr int kDataTypeCount = 10;
/// Reductions. kAvg is the sum divided by the number of ranks (integer division for
/// integer types).
enum class ReduceOp : uint8_t { kSum, kProd, kMin, kMax, kAvg };
inline constexpr int kReduceOpCount = 5;

size_t typeSize(DataType t);
/// nccl-tests' names: "int8", "uint8", "int32", "uint32", "int64", "uint64", "half",
/// "bfloat16", "float", "double".
std::string_view typeName(DataType t);
/// Accepts the names above and "fp16", "bf16", "fp32", "fp64", "float16", "float32",
/// "float64", "char", "int", "uint8" ...
Result<DataType> parseDataType(std::string_view name);
/// "sum", "prod", "min", "max", "avg".
std::string_view opName(ReduceOp op);
Result<ReduceOp> parseReduceOp(std::string_view name);

/// Key-value store the ranks meet through (as Gloo's and PyTorch's). Values are bytes.
/// Implementations must be thread-safe.
class Store {
 public:
  virtual ~Store() = default;
  virtual Status set(const std::string& key, const std::string& value) = 0;
  /// Waits until `key` is set (kTimedOut after `timeout`, naming the key).
  virtual Result<std::string> get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  /// Adds `delta` to the integer at `key` (0 when unset) and returns the new value.
  virtual Result<int64_t> add(const std::string& key, int64_t delta) = 0;
  /// Removes `key`; ok whether or not it was set.
  virtual Status erase(const std::string& key) = 0;
  /// Whether `key` is set, without waiting.
  virtual Result<bool> contains(const std::string& key) = 0;
};

/// The same store with `prefix` put before every key (one namespace per communicator).
std::shared_ptr<Store> prefixStore(std::shared_ptr<Store> inner, std::string prefix);

struct TcpStoreOptions {
  std::string host;        ///< the server's host name or address
  uint16_t port = 0;       ///< its port (the server: 0 picks one; see TcpStore::port())
  bool serve = false;      ///< this process serves the store (from a thread) and uses it
  /// Every client presents it and the server refuses a different one.
  uint64_t jobToken = 0;
  /// How long a client keeps trying to reach the server, and each request's bound.
  std::chrono::milliseconds timeout{30000};
};
/// A store served over TCP by one process (rank 0), the others connecting to it.
Result<std::shared_ptr<Store>> openTcpStore(const TcpStoreOptions& options);
/// The port a serving TCP store listens on (0 for any other store).
uint16_t servedPort(const Store& store);
/// A store in a directory every rank sees (a shared file system, or /tmp on one host):
/// one file per key, written and renamed atomically.
Result<std::shared_ptr<Store>> openFileStore(const std::string& directory);

/// Where this process sits in the job, read from the launcher's environment.
struct LaunchInfo {
  int rank = -1;
  int size = 0;
  int localRank = -1;          ///< -1 unknown
  std::string launcher;        ///< "braid", "torchrun", "slurm" or "openmpi"
  std::string store;           ///< "host:port" (TCP store) or "file:DIRECTORY"
  bool serveStore = false;     ///< this rank serves the TCP store (rank 0)
  std::string jobId;           ///< the launcher's job id ("" unknown)
  std::optional<uint64_t> jobToken;  ///< BRAID_JOB_TOKEN, else derived from the job id
  std::string describe() const;  ///< one line for the log
};
/// Looks a variable up (nullopt when unset): the process environment by default.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
/// Detects, in this order: BRAID_RANK/BRAID_WORLD_SIZE/BRAID_STORE; torchrun's RANK,
/// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (the store on MASTER_PORT+1: torchrun
/// and PyTorch use MASTER_PORT); Slurm's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (the
/// store on the first node of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST); Open MPI's
/// OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK. BRAID_STORE overrides the store of any of
/// them. kNotFound when no launcher is recognised, kInvalidArgument when one is
/// half-configured (the message names the variable).
Result<LaunchInfo> detectLaunch(const EnvLookup& env = {});
/// Expands a Slurm node list: "node[01-04,07],gpu3" -> node01 node02 node03 node04 node07 gpu3.
Result<std::vector<std::string>> expandNodeList(std::string_view list);

struct CommOptions {
  ContextOptions context;               ///< transport options of the ranks' endpoints
  std::optional<int> timeoutMs;         ///< BRAID_TIMEOUT_MS: bootstrap, and a stalled peer
  /// BRAID_ALGO, e.g. "allreduce:ring,broadcast:binomial" (docs/collectives.md).
  std::optional<std::string> algorithms;
  std::optional<size_t> segmentBytes;   ///< BRAID_COLL_SEGMENT: pipelining segment
  std::optional<bool> progressThread;   ///< BRAID_COLL_THREAD
};

struct CommImpl;
struct CollOp;

/// A non-blocking collective in flight. Move-only; dropping an unfinished one lets it
/// run on (its buffers must stay valid until the communicator has finished it).
class Request {
 public:
  Request() = default;
  ~Request();
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  /// Drives the communicator once: ok when finished, kInProgress, or the error.
  Status test();
  /// Blocks until finished, failed, or `timeout` (kTimedOut; the request stays valid).
  Status wait(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  bool valid() const { return op_ != nullptr; }

 private:
  friend class Communicator;
  Request(std::shared_ptr<CommImpl> comm, std::shared_ptr<CollOp> op);
  std::shared_ptr<CommImpl> comm_;
  std::shared_ptr<CollOp> op_;
};

class Communicator {
 public:
  /// Joins the communicator of `size` ranks through `store`: every rank calls it with its
  /// own rank and the same store (and, for a second communicator, in the same order).
  /// Blocks until every rank is connected or the timeout (an error naming the ranks that
  /// did not come).
  static Result<std::unique_ptr<Communicator>> create(int rank, int size,
                                                      std::shared_ptr<Store> store,
                                                      const CommOptions& options = {});
  /// detectLaunch(), then the store it names, then create().
  static Result<std::unique_ptr<Communicator>> fromEnvironment(const CommOptions& options = {});
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  /// "rank 3 (host node07, braid://10.0.0.7:4242)".
  std::string describeRank(int rank) const;
  /// The error that failed the communicator, or ok.
  Status error() const;
  /// The transport its endpoints use (kTcp, kVerbs; kAuto for a single rank).
  Transport transport() const;

  Result<Request> iallreduce(const void* send, void* recv, size_t count, DataType type,
                             ReduceOp op);
  /// recv holds size() * sendcount elements: rank i's block at i * sendcount.
  Result<Request> iallgather(const void* send, void* recv, size_t sendcount, DataType type);
  /// send holds size() * recvcount elements; rank i gets the reduction of block i.
  Result<Request> ireduceScatter(const void* send, void* recv, size_t recvcount,
                                 DataType type, ReduceOp op);
  /// root's send goes to every rank's recv (send is read on the root only).
  Result<Request> ibroadcast(const void* send, void* recv, size_t count, DataType type,
                             int root);
  /// The reduction lands in root's recv (recv is written on the root only).
  Result<Request> ireduce(const void* send, void* recv, size_t count, DataType type,
                          ReduceOp op, int root);
  /// send and recv hold size() * count elements: block j of send goes to rank j, and
  /// block i of recv comes from rank i.
  Result<Request> ialltoall(const void* send, void* recv, size_t count, DataType type);
  Result<Request> ibarrier();
  /// Point-to-point: the n-th send to a rank matches its n-th recv from this one.
  Result<Request> isend(const void* buf, size_t count, DataType type, int peer);
  Result<Request> irecv(void* buf, size_t count, DataType type, int peer);

  Status allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op);
  Status allgather(const void* send, void* recv, size_t sendcount, DataType type);
  Status reduceScatter(const void* send, void* recv, size_t recvcount, DataType type,
                       ReduceOp op);
  Status broadcast(const void* send, void* recv, size_t count, DataType type, int root);
  Status reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                int root);
  Status alltoall(const void* send, void* recv, size_t count, DataType type);
  Status barrier();
  Status send(const void* buf, size_t count, DataType type, int peer);
  Status recv(void* buf, size_t count, DataType type, int peer);

  /// The algorithm a collective of `bytes` bytes would use ("ring", "rabenseifner", ...).
  std::string algorithmFor(std::string_view collective, size_t bytes) const;

  CommImpl& impl() { return *impl_; }

 private:
  explicit Communicator(std::shared_ptr<CommImpl> impl);
  std::shared_ptr<CommImpl> impl_;
};

}  // namespace braid::coll
