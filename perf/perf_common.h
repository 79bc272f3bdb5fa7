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
#include <set>
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

/// The command line, after parsing. Unset transport knobs fall back to BRAID_* env knobs.
struct Options {
  std::string host;  ///< empty: this process is the server
  uint16_t port = kDefaultPort;
  uint64_t size = 0;
  bool all = false;  ///< sizes 2, 4, ..., 8 MiB
  uint64_t iters = 0;
  bool itersGiven = false;  ///< -n given: never scaled down for large sizes
  std::string transport;    ///< "", "tcp", "auto", "verbs" ("": verbs when -d is given)
  std::string ibDev;        ///< -d: with ibPort, ContextOptions::ibHca "=dev:port"
  int ibPort = 0;           ///< -i: 0 = not given (1 with -d, as perftest)
  int gidIndex = -2;        ///< -x: ContextOptions::ibGidIndex; -2 = not given
  int qps = 0;              ///< -q: ContextOptions::ibQpsPerRail; 0 = not given
  std::string rails;        ///< BRAID_SOCKET_IFNAME syntax; "" = env knob
  int socks = 0;            ///< sockets per rail; 0 = env knob
  bool validate = false;
  bool reportGbits = false;
  std::string jsonFile;
  int txDepth = 16;
  int timeoutMs = 0;                ///< 0 = BRAID_TIMEOUT_MS
  bool useEvent = false;            ///< -e: sleep in epoll instead of busy polling
  bool useYield = false;            ///< --yield: sched_yield() between polls
  PollMode poll = PollMode::kBusy;  ///< resolved from -e / --yield / the tool's default
  /// Hidden --inject-error N: the client flips the middle byte of message N after filling
  /// it (with --validate), to show that a corruption is caught. UINT64_MAX: off.
  uint64_t injectError = UINT64_MAX;

  bool isServer() const { return host.empty(); }
  /// The ContextOptions::ibHca the verbs flags ask for ("" when -d is not given).
  std::string ibHca() const;
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

constexpr uint64_t kTagTest = 0x7065726600000001ull;    ///< client -> server: TestMsg
constexpr uint64_t kTagReply = 0x7065726600000002ull;   ///< server -> client: ReplyMsg
constexpr uint64_t kTagData = 0x7065726600000003ull;    ///< the measured messages
constexpr uint64_t kTagKey = 0x7065726600000004ull;     ///< one-sided: KeyMsg, both ways
constexpr uint64_t kTagRmaEnd = 0x7065726600000005ull;  ///< one-sided: client -> server RmaEndMsg
constexpr uint32_t kCtlMagic = 0x42505246;              ///< "FRPB"
/// 2: one-sided tools (KeyMsg, RmaEndMsg, tool kinds 3..5).
constexpr uint16_t kCtlVersion = 2;

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
  uint64_t iters = 0;         ///< the client's row: timed messages
  uint64_t peakBps = 0;       ///< bytes per second, rounded
  uint64_t avgBps = 0;        ///< bytes per second, rounded
  uint64_t msgRateMilli = 0;  ///< messages per 1000 seconds
  char text[256] = {};        ///< code != 0: the client's error
};
static_assert(sizeof(RmaEndMsg) == 304, "RmaEndMsg is a wire struct");
/// Largest slot table a client sends (tx depth is at most 4096).
constexpr uint32_t kMaxSlots = 4096;

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

/// braid_write_lat's marker: the value of a message's last byte, never 0 (fresh buffers
/// are zeroed) and different for any two iterations less than 255 apart.
inline uint8_t markerOf(uint64_t iter) {
  return static_cast<uint8_t>(iter % 255 + 1);
}

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
  /// Same, for a message whose last byte is markerOf(iter) instead of the pattern.
  void checkMarked(const void* buf, size_t len, uint64_t iter, uint64_t size);
  /// Counts a checked message as bad when `m` is set; the first bad one is kept.
  void record(const std::optional<Mismatch>& m, uint64_t iter, uint64_t size);
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
  /// What the endpoint moves data over: kVerbs or kTcp (an endpoint of a verbs Context
  /// falls back to TCP when its peer has no verbs rail in common).
  Transport dataTransport() const { return dataTransport_; }
  PollMode pollMode() const { return poll_; }
  bool isServer() const { return isServer_; }
  const std::string& peer() const { return peer_; }
  uint64_t token() const { return token_; }
  int timeoutMs() const { return timeoutMs_; }

  /// Drives progress until `req` finishes: busy polling (perftest's default), polling
  /// with sched_yield() (--yield) or sleeping in epoll (--use_event). Fails with kTimedOut
  /// when nothing finishes for the timeout. Errors carry `what` and the peer.
  Status wait(Request& req, std::string_view what);
  /// Waits for `req` sleeping in epoll whatever the polling mode, with no bound while the
  /// endpoint is healthy: for a side with nothing to do while its peer works (the server
  /// of a one-sided bandwidth test, whose wait spans the whole size). A polling waiter
  /// there would take a core from the peer and from Soft-RoCE's kernel work.
  Status waitIdle(Request& req, std::string_view what);
  /// One round of progress without a request (braid_write_lat polls its buffer), then
  /// sched_yield() unless the mode is kBusy. Fails when the endpoint has failed.
  Status progress();
  /// Registers a tool buffer once (Context::registerMemory); pass the result to every
  /// request on it. Free on TCP (an unregistered view).
  Result<MemoryRegion> registerMemory(void* base, size_t len, std::string_view what);
  /// isend + wait of a small control message.
  Status send(const void* buf, size_t len, uint64_t tag, std::string_view what);
  /// irecv + wait of a small control message that must fill `len` bytes exactly.
  Status recv(void* buf, size_t len, uint64_t tag, std::string_view what);
  /// Posting with the peer in the error; `mr` as in Endpoint::isend/irecv.
  /// Inline: these are on the tools' timed path; only the error path is out of line.
  Result<Request> isend(const void* buf, size_t len, uint64_t tag, std::string_view what,
                        const MemoryRegion* mr = nullptr) {
    Result<Request> r = ep_->isend(buf, len, tag, mr);
    if (!r) r = postingFailed(r.status(), what);
    return r;  // one object returned on every path: no move of the Result
  }
  Result<Request> irecv(void* buf, size_t len, uint64_t tag, std::string_view what,
                        const MemoryRegion* mr = nullptr) {
    Result<Request> r = ep_->irecv(buf, len, tag, mr);
    if (!r) r = postingFailed(r.status(), what);
    return r;  // one object returned on every path: no move of the Result
  }
  Result<Request> iwrite(const void* src, size_t len, const MemoryRegion& local,
                         const RemoteKey& remote, uint64_t remoteOffset, std::string_view what);
  Result<Request> iread(void* dst, size_t len, const MemoryRegion& local, const RemoteKey& remote,
                        uint64_t remoteOffset, std::string_view what);

 private:
  Session() = default;
  void probeDataTransport();
  Status postingFailed(const Status& st, std::string_view what) const;
  // Creation order; members are destroyed bottom-up.
  std::shared_ptr<Context> ctx_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<Endpoint> ep_;
  bool isServer_ = false;
  PollMode poll_ = PollMode::kBusy;
  Transport dataTransport_ = Transport::kTcp;
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

// One-sided helpers (both sides of braid_write_bw, braid_read_bw, braid_write_lat).
/// Sends the RemoteKey of `mr` (or, when it has none, why) on kTagKey.
Status sendKey(Session& s, const MemoryRegion& mr);
/// Receives the peer's KeyMsg. A KeyMsg without a key is not an error here: iwrite/iread
/// with it fails with the API's own error (kUnsupported on a TCP endpoint).
Result<KeyMsg> recvKey(Session& s);
/// The client's error when the server sent no key: the API's own error as it is when it
/// is kUnsupported (a TCP endpoint), else with the server's reason appended.
Status explainMissingKey(const Status& error, const KeyMsg& key);
/// Client: sends the end of a size (`row`, the slot table) or, when `error` is not ok,
/// the error that stopped it; returns `error` (so a failed size fails both sides).
Status sendRmaEnd(Session& s, const BwRow* row, const std::vector<uint64_t>& slots,
                  const Status& error);
/// Server: the receive of the client's RmaEndMsg (header + up to kMaxSlots entries).
struct RmaEnd {
  std::vector<uint8_t> buf;
  Request req;
  /// Posts the receive (before sendReady, so it never waits for a clear-to-send).
  Status post(Session& s);
  /// Waits for it (sleeping: Session::waitIdle); the client's error as a Status when it
  /// sent one.
  Status wait(Session& s);
  const RmaEndMsg& msg() const { return *reinterpret_cast<const RmaEndMsg*>(buf.data()); }
  /// The slot table (msg().slots entries).
  std::vector<uint64_t> slots() const;
  /// The client's row.
  BwRow row(uint64_t size) const;
};

// ------------------------------------------------------------------ reports

/// Prints perftest's header block and result tables, and writes the --json file.
class Report {
 public:
  Report(const ToolSpec& spec, const Options& o);

  /// The header block; `test` holds the parameters in force (the client's, on the server).
  void printHeader(const Session& s, const TestMsg& test, bool allSizes);
  /// A one-line note under the header (printed once per run).
  void note(const std::string& text);
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
  std::set<std::string> notes_;
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
/// Server side of a latency test: one sample per period between consecutive answers
/// `sent` (perftest's server view: a round trip, halved), the figures into `done`.
void reportServerLat(const TestMsg& t, const std::vector<uint64_t>& sent, Report& report,
                     ReplyMsg& done);
/// A tool's main(): parses the command line, then runTool.
int toolMain(const ToolSpec& spec, int argc, char** argv, ClientFn client, ServerFn server);

/// Buffer slots of a bandwidth run: one without --validate (perftest's footprint, so it
/// stays cache-sized), one per operation in flight with it (each has its own bytes).
inline uint64_t slotCount(const TestMsg& t, uint64_t window) {
  return (t.flags & kFlagValidate) ? window : 1;
}

/// The bandwidth clients' pipeline: reqs.size() operations in flight; operation i+window
/// is posted once operation i finished (operations of one tag, and of one QP, finish in
/// posting order, so the oldest is the one to wait for). The timed interval starts at the
/// post of operation `warmup` (perftest: first post to last completion; a run of -n near
/// the window must not time only the tail of a pipeline filled during the warmup), and
/// every timed completion adds a mark. `post(i)` fills reqs[i % window]; `done(i)` runs
/// once operation i finished.
template <typename Post, typename Done>
Status runPipeline(Session& s, std::string_view what, uint64_t total, uint64_t warmup,
                   std::vector<Request>& reqs, std::vector<uint64_t>& marks, Post post,
                   Done done) {
  const uint64_t w = reqs.size();
  auto postOne = [&](uint64_t i) -> Status {
    if (i == warmup) marks.push_back(nowNs());
    return post(i);
  };
  for (uint64_t i = 0; i < w && i < total; ++i) BRAID_RETURN_IF_ERROR(postOne(i));
  for (uint64_t i = 0; i < total; ++i) {
    Status st = s.wait(reqs[i % w], what);
    if (!st.isOk())
      return st.withContext(std::string(what) + " " + std::to_string(i) + " of " +
                            std::to_string(total));
    if (i >= warmup) marks.push_back(nowNs());
    BRAID_RETURN_IF_ERROR(done(i));
    if (i + w < total) BRAID_RETURN_IF_ERROR(postOne(i + w));
  }
  return Status::ok();
}

/// Bytes each rail carried since `before` (a stats().bytesSentPerRail snapshot).
std::vector<uint64_t> railBytesSince(Session& s, const std::vector<uint64_t>& before);


}  // namespace braid::perf
