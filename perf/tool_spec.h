// perf/tool_spec.h — what tells the perftest-style tools apart (kind, name, defaults), the
// polling modes and the exit codes they share. Public API only.
#pragma once

#include <cstdint>

namespace braid::perf {

/// Process exit codes of every tool.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  ///< a runtime failure: connection, transfer, validation
constexpr int kExitUsage = 2;    ///< a bad command line

/// Default control port (perftest's) and the job token used when BRAID_JOB_TOKEN is unset
/// ("braid" in ASCII), so that a server and a client started by hand find each other.
constexpr uint16_t kDefaultPort = 18515;
constexpr uint64_t kDefaultToken = 0x6272616964ull;

enum class ToolKind : uint8_t {
  kSendBw = 1,
  kSendLat = 2,
  kWriteBw = 3,   ///< one-sided: Endpoint::iwrite
  kReadBw = 4,    ///< one-sided: Endpoint::iread
  kWriteLat = 5,  ///< one-sided ping-pong by writes
};
/// "braid_write_bw" for a kind, "another tool" for an unknown value.
const char* toolName(uint8_t kind);

/// How a side waits for its requests (and, in braid_write_lat, for its buffer).
enum class PollMode : uint8_t {
  kBusy,   ///< spin on Request::test (perftest's default)
  kYield,  ///< Request::test, sched_yield() between polls (lets rxe's kernel work run)
  kEvent,  ///< Request::wait: spins BRAID_SPIN_US, then sleeps in epoll
};
const char* pollModeName(PollMode m);

/// What differs between the tools at option and report level.
struct ToolSpec {
  ToolKind kind;
  const char* name;         ///< "braid_send_bw"
  const char* title;        ///< "Send BW Test"
  const char* description;  ///< first line of --help
  uint64_t defaultSize;
  uint64_t defaultIters;
  bool isBw;      ///< bandwidth table and --tx-depth
  bool oneSided;  ///< iwrite/iread: needs verbs on both sides (kUnsupported over TCP)
  /// Polling mode when no flag chooses one (braid_write_lat: yield, see its header).
  PollMode defaultPoll = PollMode::kBusy;
};

}  // namespace braid::perf
