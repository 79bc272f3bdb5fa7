// perf/perf_common.h — what every perftest-style tool shares: the option groups, the
// connection (server when no host is given, client otherwise), the exchange of control
// messages (control_msgs.h) between the two sides, data patterns, figures (stats.h), and
// perftest-format / JSON reports.
//
// Each tool's main only runs its own measurement loop between these pieces. Everything
// here uses the public API (include/braid/) only. Not thread-safe: one tool, one thread.
// Sources, by concern: options.cc (command line, test plan), control_msgs.cc (messages and
// their checks), session.cc (connection, waits), validation.cc (patterns, verdict),
// stats.cc (figures), report.cc (tables, JSON), perf_common.cc (the per-size driver).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "braid/info.h"
#include "braid/status.h"
#include "braid/transport.h"
#include "control_msgs.h"
#include "stats.h"
#include "timeline.h"
#include "tool_spec.h"

namespace braid::perf {

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
  bool railStats = false;   ///< --stats: the per-rail table after the run (and in --json)
  bool reportGbits = false;
  std::string jsonFile;
  std::string timelineFile;  ///< --timeline (bandwidth tools): per-rail samples, JSON Lines
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
/// The TestMsg a client sends for `size`.
TestMsg testFor(const ToolSpec& spec, const Options& o, uint64_t size);

/// The value in force of a BRAID_* knob, through the public params list (no raw getenv).
std::optional<ParamInfo> paramInForce(const std::string& name);

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

// ------------------------------------------------------------------ session

/// Context, Worker, Listener (server) and Endpoint of one tool run; destroyed in the
/// reverse order of creation.
class Session {
 public:
  /// Server: listens on --port and waits for one client. Client: connects to host:port,
  /// retrying for a few seconds while nothing listens there yet.
  /// The error of a client that found no server says which address it tried and what to
  /// check; its retries are logged only at BRAID_LOG_LEVEL=debug.
  static Result<std::unique_ptr<Session>> open(const ToolSpec& spec, const Options& o);
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
  /// wait() that also tests `watch` while `watchNs` is 0, and sets `watchNs` to the time
  /// it was first seen finished (an error of `watch` ends the wait).
  Status waitWatching(Request& req, Request& watch, uint64_t& watchNs, std::string_view what);
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
  /// irecv + wait of a small control message of at most `len` bytes; its size in `got`.
  Status recv(void* buf, size_t len, uint64_t tag, std::string_view what, size_t& got);
  /// --timeline: sets the time origin (the first timed message; later calls do nothing).
  /// Free without --timeline.
  void timelineStart(uint64_t ns);
  /// --timeline: samples the rails when 100 ms have passed since the last sample. For the
  /// places that read the clock anyway: one comparison when nothing is due (and always
  /// without --timeline).
  void timelineTick(uint64_t ns) {
    if (ns >= timelineNextNs_) timelineSample(ns);
  }
  /// --timeline: the last sample (the interval since the previous one); then no more.
  void timelineFinish();
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
  void timelineSample(uint64_t ns);
  /// Event-mode wait() with --timeline: sleeps in slices that end when a sample is due.
  Status waitSampling(Request& req);
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
  std::unique_ptr<Timeline> timeline_;
  uint64_t timelineNextNs_ = UINT64_MAX;  ///< timeline_->nextNs(), UINT64_MAX without one
};

// ------------------------------------------------------------------ control exchange

/// Server: tells the client that the receives of this size are posted.
Status sendReady(Session& s);
/// braid_send_bw's server: tells the client that the last warm-up message has arrived, so
/// the sender's timed interval starts where the receiver's does.
Status sendWarmedUp(Session& s);

// One-sided helpers (both sides of braid_write_bw, braid_read_bw, braid_write_lat).
/// Sends the RemoteKey of `mr` (or, when it has none, why) on kTagKey.
Status sendKey(Session& s, const MemoryRegion& mr);
/// Receives and checks the peer's KeyMsg; a key must cover `needBytes` (what this side
/// will write or read). A KeyMsg without a key is not an error here: iwrite/iread with it
/// fails with the API's own error (kUnsupported on a TCP endpoint).
Result<KeyMsg> recvKey(Session& s, uint64_t needBytes);
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
  /// Waits for it (sleeping: Session::waitIdle) and checks it (checkRmaEnd: test `t`, a
  /// bw tool's figures when `isBw`, `expectSlots` table entries); the client's error as a
  /// Status when it sent one.
  Status wait(Session& s, const TestMsg& t, bool isBw, uint32_t expectSlots);
  const RmaEndMsg& msg() const { return *reinterpret_cast<const RmaEndMsg*>(buf.data()); }
  /// The slot table (msg().slots entries).
  std::vector<uint64_t> slots() const;
  /// The client's row, measured on `side` (the client's: sender for writes, receiver for
  /// reads).
  BwRow row(uint64_t size, Side side) const;
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
  /// A table row, printed (and flushed) at once so long -a runs show progress. A bw row
  /// says in the JSON on which side it was measured; braid_send_bw's client row carries the
  /// receiver's figures too (a line under the row, and receiver_* keys).
  void addBw(const BwRow& r);
  void addLat(const LatRow& r);
  /// The closing line of the table.
  void endTable();
  /// --stats: what each rail carried and what the scheduler measured of it (this side's
  /// sends), as a table and in the JSON ("rails").
  void railTable(const EndpointStats& stats);
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
  std::string measuredAt_;  ///< "sender", "receiver", "client" or "server" (JSON rows)
};

/// "braid_send_bw: error: ..." on stderr.
void printError(const ToolSpec& spec, const std::string& message);

// ------------------------------------------------------------------ driver

/// The client's view of one size: the server's replies, posted before the test went out
/// (so none waits for a clear-to-send).
struct ClientRound {
  Session& session;
  const Options& options;
  const TestMsg& test;
  Request doneReq;
  ReplyMsg done;
  /// braid_send_bw: the receiver's acknowledgement of the warm-up, and when it was seen.
  Request warmedReq;
  ReplyMsg warmed;
  uint64_t warmedNs = 0;
  /// Waits for the server's kDone (its figures and validation tally of this size).
  Status waitDone();
  /// Waits for the warm-up acknowledgement unless already seen, and checks it.
  Status waitWarmedUp();
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
/// code (kExitOk, or kExitFailure on a runtime error or a failed validation). A server
/// serves one client, as perftest's: a client whose control message fails its check is
/// refused (told why), and the server exits 1 with the error.
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

/// What runPipeline records.
struct PipelineTimes {
  bool wantPosted = false;       ///< record `posted` (a sender that cannot see landings)
  uint64_t warmupEndNs = 0;      ///< the last warm-up operation finished
  std::vector<uint64_t> posted;  ///< timed operation k was posted
  std::vector<uint64_t> done;    ///< timed operation k finished
};

/// The bandwidth clients' pipeline: reqs.size() operations in flight; operation i+window
/// is posted once operation i finished (operations of one tag, and of one QP, finish in
/// posting order, so the oldest is the one to wait for). The first `warmup` operations
/// fill the pipeline and are not timed: the timed interval starts when the last of them
/// has finished (the warm-up's bytes have moved by then; timing from an earlier point
/// counted their transfer against the timed bytes). `post(i)` fills reqs[i % window];
/// `done(i)` runs once operation i finished. `watch`, when given, is a request whose
/// finishing time matters (braid_send_bw's warm-up acknowledgement): it is tested while
/// waiting, until it finishes, and its time goes to `watchNs`.
template <typename Post, typename Done>
Status runPipeline(Session& s, std::string_view what, uint64_t total, uint64_t warmup,
                   std::vector<Request>& reqs, PipelineTimes& times, Post post, Done done,
                   Request* watch = nullptr, uint64_t* watchNs = nullptr) {
  const uint64_t w = reqs.size();
  auto postOne = [&](uint64_t i) -> Status {
    if (i == warmup) s.timelineStart(nowNs());  // the first timed operation
    if (times.wantPosted && i >= warmup) times.posted.push_back(nowNs());
    return post(i);
  };
  for (uint64_t i = 0; i < w && i < total; ++i) BRAID_RETURN_IF_ERROR(postOne(i));
  for (uint64_t i = 0; i < total; ++i) {
    Status st = watch && *watchNs == 0 ? s.waitWatching(reqs[i % w], *watch, *watchNs, what)
                                       : s.wait(reqs[i % w], what);
    if (!st.isOk())
      return st.withContext(std::string(what) + " " + std::to_string(i) + " of " +
                            std::to_string(total));
    const uint64_t t = nowNs();
    s.timelineTick(t);
    if (i >= warmup)
      times.done.push_back(t);
    else if (i + 1 == warmup)
      times.warmupEndNs = t;
    BRAID_RETURN_IF_ERROR(done(i));
    if (i + w < total) BRAID_RETURN_IF_ERROR(postOne(i + w));
  }
  return Status::ok();
}

/// Bytes each rail carried since `before` (a stats().bytesSentPerRail snapshot).
std::vector<uint64_t> railBytesSince(Session& s, const std::vector<uint64_t>& before);

}  // namespace braid::perf
