// lib/coll/schedule.h — a collective as a list of tasks with dependencies.
//
// An algorithm (algorithms.cc) builds, for one rank, the sends, receives, reductions and
// copies of one call, each naming the earlier tasks it must wait for (data it reads,
// buffers it overwrites). The executor (CommImpl::advance) posts every task whose
// dependencies are done, so segments of a pipelined algorithm overlap: one is on the wire
// while the previous one is being reduced.
//
// Matching: all messages of one call between two ranks share one tag, and braid matches
// the n-th send of a tag with the n-th receive. The executor therefore posts the sends to
// each peer, and the receives from each peer, in task-list order; both ranks build their
// lists from the same algorithm, so the n-th message each side expects is the same one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "braid/coll.h"

namespace braid::coll {

/// What a call is, as its first message to each peer announces it (the peer compares).
/// Wire format: 32 bytes, little-endian, fixed layout.
struct Descriptor {
  static constexpr uint32_t kMagic = 0x4c4f4342;  ///< "BCOL"
  uint32_t magic = kMagic;
  uint8_t kind = 0;       ///< CollKind
  uint8_t type = 0;       ///< DataType
  uint8_t op = 0;         ///< ReduceOp (0 where none)
  uint8_t algo = 0;       ///< Algo: ranks must pick the same one (BRAID_ALGO, sizes)
  uint64_t count = 0;     ///< elements, as the caller passed them
  int32_t root = 0;       ///< broadcast/reduce root, else 0
  uint32_t segmentKiB = 0;  ///< BRAID_COLL_SEGMENT in KiB: it shapes the messages
  uint64_t seq = 0;       ///< the call's number on the communicator
};
static_assert(sizeof(Descriptor) == 32, "the descriptor is 32 bytes on the wire");

enum class CollKind : uint8_t {
  kAllreduce, kAllgather, kReduceScatter, kBroadcast, kReduce, kAlltoall, kBarrier,
  kSend, kRecv,
};
std::string_view collName(CollKind k);

/// Algorithms (docs/collectives.md). Names as BRAID_ALGO spells them: algoName().
enum class Algo : uint8_t {
  kLocal,            ///< one rank: copies only
  kRing,             ///< allreduce (reduce-scatter + allgather), allgather, reduce_scatter
  kRecursiveDoubling,  ///< allreduce, allgather (small)
  kRabenseifner,     ///< allreduce: recursive halving reduce-scatter + doubling allgather
  kBinomial,         ///< broadcast, reduce (small)
  kChain,            ///< broadcast, reduce (large): pipelined
  kPairwise,         ///< alltoall
  kDissemination,    ///< barrier
  kDirect,           ///< send/recv
};
std::string_view algoName(Algo a);

struct Task {
  enum class Kind : uint8_t { kSend, kRecv, kReduce, kCopy, kDivide };
  Kind kind = Kind::kCopy;
  int peer = -1;                 ///< send/recv
  uint8_t* dst = nullptr;        ///< recv, reduce, copy, divide
  const uint8_t* src = nullptr;  ///< send, copy; reduce: the first operand
  const uint8_t* src2 = nullptr;  ///< reduce: the second operand
  size_t bytes = 0;
  std::vector<int32_t> deps;     ///< tasks that must be done first
  bool carriesDescriptor = false;  ///< the first message of the call with this peer
  // Run time.
  enum class State : uint8_t { kWaiting, kPosted, kDone } state = State::kWaiting;
};

/// One rank's tasks for one call, built by an algorithm.
class Schedule {
 public:
  int send(int peer, const void* src, size_t bytes, std::initializer_list<int> deps = {});
  int recv(int peer, void* dst, size_t bytes, std::initializer_list<int> deps = {});
  /// dst = a op b (element-wise; dst may be a or b).
  int reduce(void* dst, const void* a, const void* b, size_t bytes,
             std::initializer_list<int> deps = {});
  int copy(void* dst, const void* src, size_t bytes, std::initializer_list<int> deps = {});
  /// kAvg's division by the number of ranks.
  int divide(void* buf, size_t bytes, std::initializer_list<int> deps = {});
  /// Adds a dependency to task `id` (for lists built in a loop).
  void addDep(int id, int dep) {
    if (dep >= 0) tasks_[static_cast<size_t>(id)].deps.push_back(dep);
  }
  std::vector<Task>& tasks() { return tasks_; }
  const std::vector<Task>& tasks() const { return tasks_; }

 private:
  int add(Task t, std::initializer_list<int> deps);
  std::vector<Task> tasks_;
};

/// What an algorithm needs to know to build a call.
struct BuildArgs {
  CollKind kind = CollKind::kAllreduce;
  const uint8_t* send = nullptr;
  uint8_t* recv = nullptr;
  size_t count = 0;  ///< as passed by the caller (per rank for allgather/reduce_scatter/alltoall)
  DataType type = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  int rank = 0;
  int size = 1;
  size_t segmentBytes = 1024 * 1024;
  /// Scratch memory for the call, valid until it finishes (the communicator's pool).
  std::function<uint8_t*(size_t)> scratch;
};

/// Builds the schedule of `a` with algorithm `algo` (which must suit the collective).
Status buildSchedule(Algo algo, const BuildArgs& a, Schedule& out);

}  // namespace braid::coll
