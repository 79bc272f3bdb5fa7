// perf/perf_common.h — what every perftest-style tool shares: the option groups, the
// connection (server when no host is given, client otherwise), the small control messages
// the two sides exchange, data patterns, statistics, and perftest-format / JSON reports.
//
// Each tool's main only runs its own measurement loop between these pieces. Everything
// here uses the public API (include/braid/) only. Not thread-safe: one tool, one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "braid/status.h"
#include "braid/transport.h"

namespace braid::perf {

/// Process exit codes of every tool.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  ///< a runtime failure: connection, transfer, validation
constexpr int kExitUsage = 2;    ///< a bad command line

/// Default control port (perftest's) and the job token used when BRAID_JOB_TOKEN is unset
/// ("braid" in ASCII), so that a server and a client started by hand find each other.
constexpr uint16_t kDefaultPort = 18515;
constexpr uint64_t kDefaultToken = 0x6272616964ull;

enum class ToolKind : uint8_t { kSendBw = 1, kSendLat = 2 };

/// What differs between the tools at option and report level.
struct ToolSpec {
  ToolKind kind;
  const char* name;         ///< "braid_send_bw"
  const char* title;        ///< "Send BW Test"
  const char* description;  ///< first line of --help
  uint64_t defaultSize;
  uint64_t defaultIters;
  bool isBw;  ///< bandwidth table and --tx-depth
};

/// The command line, after parsing. Unset transport knobs fall back to BRAID_* env knobs.
struct Options {
  std::string host;  ///< empty: this process is the server
  uint16_t port = kDefaultPort;
  uint64_t size = 0;
  bool all = false;  ///< sizes 2, 4, ..., 8 MiB
  uint64_t iters = 0;
  bool itersGiven = false;  ///< -n given: never scaled down for large sizes
  std::string transport;    ///< "", "tcp", "auto", "verbs"
  std::string rails;        ///< BRAID_SOCKET_IFNAME syntax; "" = env knob
  int socks = 0;            ///< sockets per rail; 0 = env knob
  bool validate = false;
  bool reportGbits = false;
  std::string jsonFile;
  int txDepth = 16;
  int timeoutMs = 0;      ///< 0 = BRAID_TIMEOUT_MS
  bool useEvent = false;  ///< sleep in epoll instead of busy polling
  /// Hidden --inject-error N: the client flips the middle byte of message N after filling
  /// it (with --validate), to show that a corruption is caught. UINT64_MAX: off.
  uint64_t injectError = UINT64_MAX;

  bool isServer() const { return host.empty(); }
};

/// Parses argv with the option groups every tool shares. Returns nullopt to go on, or the
/// exit code to leave with: 0 after --help/--version, kExitUsage (usage on stderr) on a
/// bad command line.
std::optional<int> parseCommandLine(const ToolSpec& spec, int argc, char** argv, Options& out);

/// Parses "65536", "64K", "1M", "2G", "1MiB", "64KB" (binary units). nullopt when bad.
std::optional<uint64_t> parseSize(std::string_view text);

// ------------------------------------------------------------------ test plan

constexpr uint64_t kMaxAllSize = 8ull << 20;

/// Message sizes to run: 2..8 MiB by powers of two with -a, else the one size.
std::vector<uint64_t> sizeList(const Options& o);
/// Iterations for `size`: -n when given, else the tool default, scaled down for large
/// messages so one size does not take forever (never below 100).
uint64_t itersFor(const ToolSpec& spec, const Options& o, uint64_t size);

// ------------------------------------------------------------------ control messages
//
// The client decides what runs: before each size it sends a TestMsg; the server answers
// kReady once its receives are posted and kDone with its figures and validation verdict
// when the size is over. A TestMsg with kEnd closes the run. Both messages are far below
// any eager limit, so they never wait for a clear-to-send round trip.

constexpr uint64_t kTagTest = 0x7065726600000001ull;   ///< client -> server: TestMsg
constexpr uint64_t kTagReply = 0x7065726600000002ull;  ///< server -> client: ReplyMsg
constexpr uint64_t kTagData = 0x7065726600000003ull;   ///< the measured messages
constexpr uint32_t kCtlMagic = 0x42505246;             ///< "FRPB"
constexpr uint16_t kCtlVersion = 1;

enum class TestCommand : uint8_t { kRun = 1, kEnd = 2 };
constexpr uint32_t kFlagValidate = 1u << 0;
constexpr uint32_t kFlagAllSizes = 1u << 1;  ///< -a run (for the server's header)

struct TestMsg {
  uint32_t magic = kCtlMagic;
  uint16_t version = kCtlVersion;
  uint8_t tool = 0;      ///< ToolKind of the client
  uint8_t command = 0;   ///< TestCommand
  uint32_t flags = 0;    ///< kFlag*
  uint32_t txDepth = 0;  ///< messages in flight (bw)
  uint64_t size = 0;     ///< bytes per message
  uint64_t iters = 0;    ///< timed messages (bw) or round trips (lat)
  uint64_t warmup = 0;   ///< untimed ones sent first
};
static_assert(sizeof(TestMsg) == 40, "TestMsg is a wire struct");

enum class ReplyType : uint8_t { kReady = 1, kDone = 2, kRefuse = 3 };

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
  char text[128] = {};     ///< kRefuse: why
};
static_assert(sizeof(ReplyMsg) == 200, "ReplyMsg is a wire struct");

// ------------------------------------------------------------------ validation

/// Fills `len` bytes with the pattern of message (`iter`, `size`): every 8-byte word
/// differs with its offset, the iteration and the size, so lost, duplicated, shifted or
/// stale data all show.
void fillPattern(void* buf, size_t len, uint64_t iter, uint64_t size);

struct Mismatch {
  uint64_t offset = 0;
  uint8_t expected = 0;
  uint8_t actual = 0;
};
/// The first byte that differs from fillPattern(iter, size), if any.
std::optional<Mismatch> checkPattern(const void* buf, size_t len, uint64_t iter, uint64_t size);

/// With --inject-error: corrupts message `iter` (`len` bytes at `buf`) if it is the one.
void maybeInjectError(const Options& o, uint8_t* buf, size_t len, uint64_t iter);

/// Validation tally of a run.
struct Verdict {
  bool enabled = false;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t badMessages = 0;
  bool hasBad = false;
  uint64_t badSize = 0, badIter = 0, badOffset = 0;
  uint8_t badExpected = 0, badActual = 0;

  /// Checks one message and counts it.
  void check(const void* buf, size_t len, uint64_t iter, uint64_t size);
  void merge(const Verdict& v);
  /// The server's tally of one size, from its kDone reply.
  void mergeReply(const ReplyMsg& r, uint64_t size);
  void toReply(ReplyMsg& r) const;
  bool passed() const { return badMessages == 0; }
  /// "validation: PASSED (N messages, B bytes checked)" or "validation: FAILED (...)".
  std::string line() const;
};

// ------------------------------------------------------------------ buffers

/// Page-aligned, pre-touched memory (so page faults stay out of the timed loop).
class Buffer {
 public:
  static Result<Buffer> allocate(size_t bytes);
  uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t n_ = 0;
};

// ------------------------------------------------------------------ clock and statistics

inline uint64_t nowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

struct BwRow {
  uint64_t bytes = 0;  ///< message size
  uint64_t iters = 0;
  double peakBps = 0;                  ///< bytes per second, best window
  double avgBps = 0;                   ///< bytes per second, whole timed interval
  double msgRate = 0;                  ///< messages per second
  std::vector<uint64_t> bytesPerRail;  ///< sender: payload bytes each rail carried (JSON)
};
/// `marks[0]` starts the timed interval, `marks[k]` is when message k finished (k >= 1);
/// `endNs` ends the interval (the last completion, or the receiver's acknowledgement). The
/// peak is the best rate over at least `window` consecutive completions spanning at least
/// a tenth of the interval.
BwRow computeBw(uint64_t size, const std::vector<uint64_t>& marks, uint64_t endNs, size_t window);

struct LatRow {
  uint64_t bytes = 0;
  uint64_t iters = 0;
  double min = 0, max = 0, typical = 0, avg = 0, stdev = 0, p99 = 0, p999 = 0;  ///< usec
};
/// Statistics of one-way latency samples in microseconds (t_typical is the median).
LatRow computeLat(uint64_t size, std::vector<double> usec);

// ------------------------------------------------------------------ session

/// Context, Worker, Listener (server) and Endpoint of one tool run; destroyed in the
/// reverse order of creation.
class Session {
 public:
  /// Server: listens on --port and waits for one client. Client: connects to host:port,
  /// retrying for a few seconds while nothing listens there yet.
  static Result<std::unique_ptr<Session>> open(const Options& o);
  ~Session();

  Endpoint& endpoint() const { return *ep_; }
  const Context& context() const { return *ctx_; }
  bool isServer() const { return isServer_; }
  const std::string& peer() const { return peer_; }
  uint64_t token() const { return token_; }
  int timeoutMs() const { return timeoutMs_; }

  /// Drives progress until `req` finishes: busy polling (perftest's default) or sleeping
  /// in epoll with --use_event. Fails with kTimedOut when nothing finishes for the
  /// timeout. Errors carry `what` and the peer.
  Status wait(Request& req, std::string_view what);
  /// isend + wait of a small control message.
  Status send(const void* buf, size_t len, uint64_t tag, std::string_view what);
  /// irecv + wait of a small control message that must fill `len` bytes exactly.
  Status recv(void* buf, size_t len, uint64_t tag, std::string_view what);
  /// Posting with the peer in the error.
  Result<Request> isend(const void* buf, size_t len, uint64_t tag, std::string_view what);
  Result<Request> irecv(void* buf, size_t len, uint64_t tag, std::string_view what);

 private:
  Session() = default;
  // Creation order; members are destroyed bottom-up.
  std::shared_ptr<Context> ctx_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<Endpoint> ep_;
  bool isServer_ = false;
  bool useEvent_ = false;
  std::string peer_;
  uint64_t token_ = 0;
  int timeoutMs_ = 30000;
};

/// Checks a control message received from the peer.
Status checkTestMsg(const TestMsg& m, const ToolSpec& spec);
Status checkReply(const ReplyMsg& m, ReplyType expected);

/// Messages excluded from timing before the `iters` timed ones.
uint64_t warmupFor(const ToolSpec& spec, uint64_t txDepth, uint64_t iters);

/// Server side: tells the client that the receives of this size are posted.
Status sendReady(Session& s);

// ------------------------------------------------------------------ reports

/// Prints perftest's header block and result tables, and writes the --json file.
class Report {
 public:
  Report(const ToolSpec& spec, const Options& o);

  /// The header block; `test` holds the parameters in force (the client's, on the server).
  void printHeader(const Session& s, const TestMsg& test, bool allSizes);
  /// A table row, printed (and flushed) at once so long -a runs show progress.
  void addBw(const BwRow& r);
  void addLat(const LatRow& r);
  /// The closing line of the table.
  void endTable();
  /// Verdict line (when validation ran) and the JSON file; `error` is empty on success.
  /// Returns false when the JSON file could not be written.
  bool finish(const Verdict& v, const std::string& error);

 private:
  struct Rows;
  const ToolSpec& spec_;
  const Options& o_;
  std::shared_ptr<Rows> rows_;
  bool tableOpen_ = false;
};

/// "braid_send_bw: error: ..." on stderr.
void printError(const ToolSpec& spec, const std::string& message);

// ------------------------------------------------------------------ driver

/// The client's view of one size: its kDone reply, posted before the test started.
struct ClientRound {
  Session& session;
  const Options& options;
  Request doneReq;
  ReplyMsg done;
  /// Waits for the server's kDone (its figures and validation tally of this size).
  Status waitDone();
};

/// Client: runs one size after the server said kReady; adds its row to the report and
/// must call round.waitDone(). Its own validation goes to `verdict`.
using ClientFn = Status (*)(Session& s, const TestMsg& test, ClientRound& round, Report& report,
                            Verdict& verdict);
/// Server: posts its receives, calls sendReady(), runs one size, adds its row; fills
/// `done` (figures; the driver adds the validation tally) and validates into `verdict`.
using ServerFn = Status (*)(Session& s, const TestMsg& test, Report& report, Verdict& verdict,
                            ReplyMsg& done);

/// The whole tool after option parsing: connection, the per-size exchange, report, exit
/// code (kExitOk, or kExitFailure on a runtime error or a failed validation).
int runTool(const ToolSpec& spec, const Options& o, ClientFn client, ServerFn server);

}  // namespace braid::perf
