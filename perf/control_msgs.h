// perf/control_msgs.h — the small control messages the two sides of a perf tool exchange,
// their limits, and the checks every received one goes through.
//
// The client decides what runs: before each size it sends a TestMsg; the server answers
// kReady once its receives are posted and kDone with its figures and validation verdict
// when the size is over. A TestMsg with kEnd closes the run. Every message is far below
// any eager limit, so it never waits for a clear-to-send round trip.
//
// Nothing a peer sends is trusted: a size, a count or an index from the wire decides
// allocations, loop bounds and buffer offsets, so each field is checked against the limits
// below (and against the test in force) before it is used, and a bad one fails the run
// with an error naming the peer and the field. Pure functions: no connection needed, so
// tests can check them directly. Public API only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "braid/status.h"
#include "braid/transport.h"
#include "tool_spec.h"

namespace braid::perf {

constexpr uint64_t kTagTest = 0x7065726600000001ull;    ///< client -> server: TestMsg
constexpr uint64_t kTagReply = 0x7065726600000002ull;   ///< server -> client: ReplyMsg
constexpr uint64_t kTagData = 0x7065726600000003ull;    ///< the measured messages
constexpr uint64_t kTagKey = 0x7065726600000004ull;     ///< one-sided: KeyMsg, both ways
constexpr uint64_t kTagRmaEnd = 0x7065726600000005ull;  ///< one-sided: client -> server RmaEndMsg
constexpr uint32_t kCtlMagic = 0x42505246;              ///< "FRPB"
/// 2: one-sided tools (KeyMsg, RmaEndMsg, tool kinds 3..5). 3: kWarmedUp, the server's
/// peak in ReplyMsg, the client's interval instead of its average in RmaEndMsg.
constexpr uint16_t kCtlVersion = 3;

// ------------------------------------------------------------------ limits

/// Largest message: RDMA's largest (2^31 bytes, `-s 2G`).
constexpr uint64_t kMaxMessageSize = 1ull << 31;
/// Most iterations per size (`-n`).
constexpr uint64_t kMaxIters = 100'000'000;
/// Most operations in flight (`-t`).
constexpr uint32_t kMaxTxDepth = 4096;
/// Most bytes of message buffers one side allocates for a size (bufferSlots x size).
constexpr uint64_t kMaxBufferBytes = 16ull << 30;
/// Largest slot table a client sends (tx depth is at most kMaxTxDepth).
constexpr uint32_t kMaxSlots = kMaxTxDepth;
/// Longest timed interval a peer may report (a week): bounds the figures derived from it.
constexpr uint64_t kMaxElapsedNs = 7ull * 24 * 3600 * 1'000'000'000ull;

// ------------------------------------------------------------------ messages

enum class TestCommand : uint8_t { kRun = 1, kEnd = 2 };
constexpr uint32_t kFlagValidate = 1u << 0;
constexpr uint32_t kFlagAllSizes = 1u << 1;  ///< -a run (for the server's header)
constexpr uint32_t kKnownFlags = kFlagValidate | kFlagAllSizes;

struct TestMsg {
  uint32_t magic = kCtlMagic;
  uint16_t version = kCtlVersion;
  uint8_t tool = 0;      ///< ToolKind of the client
  uint8_t command = 0;   ///< TestCommand
  uint32_t flags = 0;    ///< kFlag*
  uint32_t txDepth = 0;  ///< messages in flight (bw); 1 for the latency tools
  uint64_t size = 0;     ///< bytes per message
  uint64_t iters = 0;    ///< timed messages (bw) or round trips (lat)
  uint64_t warmup = 0;   ///< untimed ones first: always warmupFor(tool, txDepth, iters)
};
static_assert(sizeof(TestMsg) == 40, "TestMsg is a wire struct");

enum class ReplyType : uint8_t {
  kReady = 1,     ///< the server's receives of this size are posted
  kDone = 2,      ///< the size is over: the server's figures and validation tally
  kRefuse = 3,    ///< the server refuses the test (`text` says why) and exits
  kWarmedUp = 4,  ///< braid_send_bw: the last warm-up message arrived (the sender's start)
};

struct ReplyMsg {
  uint32_t magic = kCtlMagic;
  uint16_t version = kCtlVersion;
  uint8_t type = 0;      ///< ReplyType
  uint8_t badValid = 0;  ///< 1: the bad* fields describe the first bad byte
  uint64_t messagesChecked = 0;
  uint64_t bytesChecked = 0;
  uint64_t badMessages = 0;
  uint64_t badIter = 0;    ///< message index (warmup included) of the first bad byte
  uint64_t badOffset = 0;  ///< offset of the first bad byte in that message
  uint8_t badExpected = 0;
  uint8_t badActual = 0;
  uint8_t pad[6] = {};
  uint64_t elapsedNs = 0;  ///< the server's timed interval
  uint64_t bytes = 0;      ///< bytes the server counted in that interval
  uint64_t peakBps = 0;    ///< the server's BW peak (braid_send_bw: the receiver's), B/s
  char text[128] = {};     ///< kRefuse: why
};
static_assert(sizeof(ReplyMsg) == 208, "ReplyMsg is a wire struct");

// One-sided tools. After kReady the server sends a KeyMsg with the RemoteKey of the buffer
// the client writes into or reads from (braid_write_lat: the client answers with its own).
// When the size is over the client sends an RmaEndMsg: its figures (the server's CPU sees
// nothing of one-sided traffic), for braid_write_bw the iteration that last wrote each
// slot (`slots` uint64_t follow the struct; UINT64_MAX = never written), or the error that
// stopped it, so both sides fail with the same cause.

struct KeyMsg {
  uint32_t magic = kCtlMagic;
  uint16_t version = kCtlVersion;
  uint8_t valid = 0;  ///< 1: `key` holds MemoryRegion::remoteKey(); 0: none (see `text`)
  uint8_t pad = 0;
  uint64_t length = 0;  ///< bytes of the region
  RemoteKey key;        ///< 96 opaque bytes
  char text[128] = {};  ///< valid == 0: why (a TCP-only context has no remote keys)
};
static_assert(sizeof(KeyMsg) == 240, "KeyMsg is a wire struct");

struct RmaEndMsg {
  uint32_t magic = kCtlMagic;
  uint16_t version = kCtlVersion;
  uint8_t code = 0;  ///< braid::Code of the client's failure; 0 (kOk): the size ran
  uint8_t pad = 0;
  uint32_t slots = 0;  ///< uint64_t entries after the struct (write_bw --validate)
  uint32_t pad2 = 0;
  uint64_t iters = 0;      ///< bw: the client's timed operations (the test's iters); lat: 0
  uint64_t elapsedNs = 0;  ///< bw: the client's timed interval
  uint64_t peakBps = 0;    ///< bw: the client's BW peak, bytes per second
  uint64_t reserved = 0;
  char text[256] = {};  ///< code != 0: the client's error
};
static_assert(sizeof(RmaEndMsg) == 304, "RmaEndMsg is a wire struct");

// ------------------------------------------------------------------ the test plan

/// Messages excluded from timing before the `iters` timed ones.
uint64_t warmupFor(const ToolSpec& spec, uint64_t txDepth, uint64_t iters);
/// Message buffers (each `t.size` bytes) the side of `spec` that needs more allocates for
/// test `t`: tx-depth slots with --validate for the bw tools (else one), three for
/// braid_send_lat's client, 2 or 4 for braid_write_lat.
uint64_t bufferSlots(const ToolSpec& spec, const TestMsg& t);

/// Checks a test's parameters against the limits above: what a server does with a
/// client's TestMsg, and a client with its own command line before it connects. `who`
/// starts the error ("client 10.0.0.2:41234", "the command line"): "client 10.0.0.2:41234
/// asked for a 18446744073709551615-byte message; the limit is 2147483648 bytes (2 GiB)".
Status checkTestParams(const TestMsg& m, const ToolSpec& spec, std::string_view who);

// ------------------------------------------------------------------ checks on receipt
//
// Each takes the bytes that arrived (`len`) and the peer's name; kProtocolError for a
// malformed or out-of-range message, kInvalidArgument for a well-formed test this tool
// does not run (another tool, a bad parameter).

/// Server: the client's TestMsg (kRun or kEnd).
Status checkTestMsg(const TestMsg& m, size_t len, const ToolSpec& spec, std::string_view peer);
/// Client: the server's reply of type `expected` to test `t`; kRefuse is the server's error.
Status checkReply(const ReplyMsg& m, size_t len, ReplyType expected, const TestMsg& t,
                  std::string_view peer);
/// The peer's KeyMsg; with a key, the region must hold `needBytes`.
Status checkKey(const KeyMsg& k, size_t len, uint64_t needBytes, std::string_view peer);
/// Server: the client's RmaEndMsg (`len` bytes, slot table included) for test `t`, from a
/// bw tool when `isBw`; `expectSlots` entries in the slot table when the size ran. A
/// well-formed report of the client's own failure is that failure, as a Status.
Status checkRmaEnd(const RmaEndMsg& m, size_t len, const TestMsg& t, bool isBw,
                   uint32_t expectSlots, std::string_view peer);

/// A peer's text field, up to its first NUL or `cap` bytes, control bytes replaced by '?'
/// (it goes to a terminal).
std::string textOf(const char* text, size_t cap);

}  // namespace braid::perf
