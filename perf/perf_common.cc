#include "perf_common.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sched.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "braid/info.h"

namespace braid::perf {

namespace {

constexpr const char* kResultLine =
    "---------------------------------------------------------------------------------------\n";

// The value in force of a BRAID_* knob, through the public params list (no raw getenv).
std::optional<ParamInfo> param(const std::string& name) {
  for (auto& p : listParams())
    if (p.name == name) return p;
  return std::nullopt;
}

std::string transportName(Transport t) {
  switch (t) {
    case Transport::kAuto:
      return "auto";
    case Transport::kTcp:
      return "tcp";
    case Transport::kVerbs:
      return "verbs";
  }
  return "?";
}

}  // namespace

const char* toolName(uint8_t kind) {
  switch (static_cast<ToolKind>(kind)) {
    case ToolKind::kSendBw:
      return "braid_send_bw";
    case ToolKind::kSendLat:
      return "braid_send_lat";
    case ToolKind::kWriteBw:
      return "braid_write_bw";
    case ToolKind::kReadBw:
      return "braid_read_bw";
    case ToolKind::kWriteLat:
      return "braid_write_lat";
  }
  return "another tool";
}

const char* pollModeName(PollMode m) {
  switch (m) {
    case PollMode::kBusy:
      return "busy";
    case PollMode::kYield:
      return "yield";
    case PollMode::kEvent:
      return "epoll";
  }
  return "?";
}

std::string Options::ibHca() const {
  if (ibDev.empty()) return {};
  return fmt::format("={}:{}", ibDev, ibPort > 0 ? ibPort : 1);
}

// ------------------------------------------------------------------ command line

std::optional<uint64_t> parseSize(std::string_view text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit;
  for (; i < text.size(); ++i)
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  int shift = 0;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    shift = 10;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    shift = 20;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    shift = 30;
  else
    return std::nullopt;
  if (shift > 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::optional<int> parseCommandLine(const ToolSpec& spec, int argc, char** argv, Options& o) {
  CLI::App app{spec.description, spec.name};
  app.failure_message(CLI::FailureMessage::help);  // usage on stderr with the error
  app.set_version_flag("-V,--version", std::string(spec.name) + " (braid " + versionString() + ")");
  app.get_formatter()->column_width(30);

  std::string sizeArg;
  app.add_option("host", o.host,
                 "server to connect to; without it this process is the server and waits for "
                 "one client");

  auto* conn = app.add_option_group("Connection");
  conn->add_option("-p,--port", o.port, "control port of the server")->capture_default_str();
  conn->add_option("--transport", o.transport,
                   "verbs, tcp or auto (auto: verbs when both sides have a verbs rail, else "
                   "tcp; default: verbs with -d, else BRAID_TRANSPORT)")
      ->check(CLI::IsMember({"tcp", "auto", "verbs"}));
  conn->add_option("--rails", o.rails,
                   "TCP rails: interfaces in BRAID_SOCKET_IFNAME syntax, e.g. lo, eth0,eth1, "
                   "^docker, =eth0 (default: BRAID_SOCKET_IFNAME)");
  conn->add_option("--socks", o.socks, "TCP data sockets per rail (default: BRAID_SOCKET_NSOCKS)")
      ->check(CLI::Range(1, 64));
  conn->add_option("--timeout", o.timeoutMs,
                   "ms: a peer or request silent this long fails the run (default: "
                   "BRAID_TIMEOUT_MS)")
      ->check(CLI::Range(1, 24 * 3600 * 1000));

  auto* ib = app.add_option_group("Verbs (perftest's names)");
  auto* devOpt =
      ib->add_option("-d,--ib-dev", o.ibDev,
                     "RDMA device (rxe0, mlx5_0): the only verbs rail, BRAID_IB_HCA =DEV:PORT; "
                     "implies --transport verbs unless that is given");
  ib->add_option("-i,--ib-port", o.ibPort, "port of the -d device [default: 1]")
      ->check(CLI::Range(1, 255))
      ->needs(devOpt);
  ib->add_option("-x,--gid-index", o.gidIndex,
                 "RoCE GID index (default: BRAID_IB_GID_INDEX; -1: automatic, RoCE v2 IPv4)")
      ->check(CLI::Range(-1, 65535));
  ib->add_option("-q,--qp", o.qps, "RC QPs per verbs rail (default: BRAID_IB_QPS_PER_RAIL)")
      ->check(CLI::Range(1, 16));

  auto* test = app.add_option_group("Test");
  test->add_option("-s,--size", sizeArg,
                   fmt::format("message size in bytes; K, M, G suffixes (64K = 65536) "
                               "[default: {}]",
                               spec.defaultSize))
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            auto v = parseSize(s);
            if (!v || *v == 0) return "'" + s + "' is not a size (examples: 8, 64K, 1M)";
            return {};
          },
          "SIZE"));
  test->add_flag("-a,--all", o.all, "run every size 2, 4, 8, ... 8M (the server follows)");
  test->add_option("-n,--iters", o.iters,
                   fmt::format("iterations per size [default: {}, fewer for large sizes unless "
                               "given]",
                               spec.defaultIters))
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}));
  if (spec.isBw)
    test->add_option("-t,--tx-depth", o.txDepth,
                     spec.oneSided ? "operations in flight"
                                   : "messages in flight (sends, and receives posted)")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
  test->add_flag("--validate", o.validate,
                 "every message carries a pattern of (iteration, size) checked byte for byte");

  auto* pollGroup = app.add_option_group(
      "Polling", fmt::format("how a side waits [default: {}]", pollModeName(spec.defaultPoll)));
  bool busy = false;
  auto* ev = pollGroup->add_flag(
      "-e,--use_event,--use-event", o.useEvent,
      "Request::wait: spin BRAID_SPIN_US, then sleep in epoll until an event (verbs: on the "
      "CQs' completion channels)");
  auto* yl = pollGroup->add_flag("--yield", o.useYield,
                                 "poll, with sched_yield() between polls (leaves the core to "
                                 "Soft-RoCE's kernel work and to the peer on small machines)");
  auto* bz = pollGroup->add_flag("--busy", busy, "poll without yielding (perftest's default)");
  ev->excludes(yl)->excludes(bz);
  yl->excludes(bz);

  auto* rep = app.add_option_group("Report");
  app.add_option("--inject-error", o.injectError,
                 "test the validation: corrupt message N on the client")
      ->group("");  // hidden
  rep->add_flag("--report_gbits,--report-gbits", o.reportGbits, "bandwidth in Gb/sec, not MB/sec");
  rep->add_option("--json", o.jsonFile, "write the configuration, every row and the verdict here");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  o.size = sizeArg.empty() ? spec.defaultSize : *parseSize(sizeArg);
  o.itersGiven = o.iters != 0;
  if (!o.itersGiven) o.iters = spec.defaultIters;
  o.poll = o.useEvent   ? PollMode::kEvent
           : o.useYield ? PollMode::kYield
           : busy       ? PollMode::kBusy
                        : spec.defaultPoll;
  if (!o.ibDev.empty() && o.ibDev.find_first_of(",:^=") != std::string::npos) {
    std::fprintf(stderr, "%s: -d takes one device name (got '%s'); for a list use BRAID_IB_HCA\n",
                 spec.name, o.ibDev.c_str());
    return kExitUsage;
  }
  if (!o.ibDev.empty() && o.transport == "tcp") {
    std::fprintf(stderr, "%s: -d %s asks for a verbs rail but --transport is tcp\n", spec.name,
                 o.ibDev.c_str());
    return kExitUsage;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ test plan

std::vector<uint64_t> sizeList(const Options& o) {
  if (!o.all) return {o.size};
  std::vector<uint64_t> v;
  for (uint64_t s = 2; s <= kMaxAllSize; s *= 2) v.push_back(s);
  return v;
}

uint64_t itersFor(const ToolSpec& spec, const Options& o, uint64_t size) {
  if (o.itersGiven) return o.iters;
  // About 2 GiB moved per size for bw, 1 GiB of round trips for lat.
  uint64_t budget = spec.isBw ? (2ull << 30) : (1ull << 30) / 2;
  uint64_t n = std::max<uint64_t>(100, budget / std::max<uint64_t>(size, 1));
  return std::min(o.iters, n);
}

// ------------------------------------------------------------------ validation

namespace {

inline uint64_t seedOf(uint64_t iter, uint64_t size) {
  // splitmix64 of (iter, size): neighbouring iterations get unrelated patterns.
  uint64_t z = iter * 0x9E3779B97F4A7C15ull + size * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kStride = 0x9E3779B97F4A7C15ull;  // odd: word k is unique within 2^64 words

}  // namespace

void fillPattern(void* buf, size_t len, uint64_t iter, uint64_t size) {
  auto* p = static_cast<uint8_t*>(buf);
  uint64_t w = seedOf(iter, size);
  size_t words = len / 8;
  for (size_t k = 0; k < words; ++k, w += kStride) std::memcpy(p + 8 * k, &w, 8);
  if (len % 8) std::memcpy(p + 8 * words, &w, len % 8);
}

std::optional<Mismatch> checkPattern(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  const auto* p = static_cast<const uint8_t*>(buf);
  uint64_t w = seedOf(iter, size);
  size_t words = len / 8;
  auto first = [&](size_t base, uint64_t expect, size_t n) -> std::optional<Mismatch> {
    uint8_t e[8];
    std::memcpy(e, &expect, 8);
    for (size_t b = 0; b < n; ++b)
      if (p[base + b] != e[b]) return Mismatch{base + b, e[b], p[base + b]};
    return std::nullopt;
  };
  for (size_t k = 0; k < words; ++k, w += kStride) {
    uint64_t got;
    std::memcpy(&got, p + 8 * k, 8);
    if (got != w) return first(8 * k, w, 8);
  }
  if (len % 8) return first(8 * words, w, len % 8);
  return std::nullopt;
}

void maybeInjectError(const Options& o, uint8_t* buf, size_t len, uint64_t iter) {
  if (iter == o.injectError && len > 0) buf[len / 2] ^= 0x5a;
}

void Verdict::record(const std::optional<Mismatch>& m, uint64_t iter, uint64_t size) {
  if (!m) return;
  if (!hasBad) {
    hasBad = true;
    badSize = size;
    badIter = iter;
    badOffset = m->offset;
    badExpected = m->expected;
    badActual = m->actual;
  }
  ++badMessages;
}

void Verdict::check(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  ++messages;
  bytes += len;
  auto m = checkPattern(buf, len, iter, size);
  record(m, iter, size);
}

void Verdict::checkMarked(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  if (len == 0) return;
  ++messages;
  bytes += len;
  const auto* p = static_cast<const uint8_t*>(buf);
  auto m = checkPattern(p, len - 1, iter, size);
  if (!m && p[len - 1] != markerOf(iter)) m = Mismatch{len - 1, markerOf(iter), p[len - 1]};
  record(m, iter, size);
}

void Verdict::merge(const Verdict& v) {
  enabled = enabled || v.enabled;
  messages += v.messages;
  bytes += v.bytes;
  badMessages += v.badMessages;
  if (!hasBad && v.hasBad) {
    hasBad = true;
    badSize = v.badSize;
    badIter = v.badIter;
    badOffset = v.badOffset;
    badExpected = v.badExpected;
    badActual = v.badActual;
  }
}

void Verdict::mergeReply(const ReplyMsg& r, uint64_t size) {
  Verdict v;
  v.enabled = true;
  v.messages = r.messagesChecked;
  v.bytes = r.bytesChecked;
  v.badMessages = r.badMessages;
  if (r.badValid) {
    v.hasBad = true;
    v.badSize = size;
    v.badIter = r.badIter;
    v.badOffset = r.badOffset;
    v.badExpected = r.badExpected;
    v.badActual = r.badActual;
  }
  merge(v);
}

void Verdict::toReply(ReplyMsg& r) const {
  r.messagesChecked = messages;
  r.bytesChecked = bytes;
  r.badMessages = badMessages;
  r.badValid = hasBad ? 1 : 0;
  r.badIter = badIter;
  r.badOffset = badOffset;
  r.badExpected = badExpected;
  r.badActual = badActual;
}

std::string Verdict::line() const {
  if (passed())
    return fmt::format("validation: PASSED ({} messages, {} bytes checked)", messages, bytes);
  return fmt::format(
      "validation: FAILED ({} of {} messages bad; first bad byte at offset {} of message {} "
      "of size {}: expected 0x{:02x}, got 0x{:02x})",
      badMessages, messages, badOffset, badIter, badSize, badExpected, badActual);
}

// ------------------------------------------------------------------ buffers

void Buffer::Free::operator()(uint8_t* p) const {
  std::free(p);
}

Result<Buffer> Buffer::allocate(size_t bytes) {
  size_t n = std::max<size_t>(bytes, 1);
  size_t rounded = (n + 4095) / 4096 * 4096;
  void* p = std::aligned_alloc(4096, rounded);
  if (!p)
    return Status(Code::kNoMemory, fmt::format("cannot allocate {} bytes of message buffers", n));
  std::memset(p, 0, rounded);  // fault every page in now, not in the timed loop
  Buffer b;
  b.p_.reset(static_cast<uint8_t*>(p));
  b.n_ = n;
  return b;
}

// ------------------------------------------------------------------ statistics

BwRow computeBw(uint64_t size, const std::vector<uint64_t>& marks, uint64_t endNs, size_t window) {
  BwRow r;
  r.bytes = size;
  r.iters = marks.empty() ? 0 : marks.size() - 1;
  if (r.iters == 0) return r;
  uint64_t span = std::max<uint64_t>(endNs - marks.front(), 1);
  double total = static_cast<double>(span) * 1e-9;
  r.avgBps = static_cast<double>(size) * static_cast<double>(r.iters) / total;
  r.msgRate = static_cast<double>(r.iters) / total;
  // Peak: the best rate over at least `window` consecutive completions that also span at
  // least a tenth of the run (100 us or more). Shorter windows measure buffering, not the
  // transport: completions reaped in one batch look infinitely fast, and a TCP sender
  // completes a message once the kernel has it, tens of MB ahead of the receiver.
  const size_t w = std::clamp<size_t>(window, 1, r.iters);
  const uint64_t minSpan = std::max<uint64_t>(100'000, span / 10);
  size_t k = 0;
  for (size_t j = w; j < marks.size(); ++j) {
    while (k + 1 + w <= j && marks[j] - marks[k + 1] >= minSpan) ++k;
    uint64_t dt = marks[j] - marks[k];
    if (dt < minSpan || dt == 0) continue;
    double bps =
        static_cast<double>(size) * static_cast<double>(j - k) / (static_cast<double>(dt) * 1e-9);
    r.peakBps = std::max(r.peakBps, bps);
  }
  // A short run has no window that long: its peak is its average.
  r.peakBps = std::max(r.peakBps, r.avgBps);
  return r;
}

LatRow computeLat(uint64_t size, std::vector<double> us) {
  LatRow r;
  r.bytes = size;
  r.iters = us.size();
  if (us.empty()) return r;
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) {
    // Nearest rank, as perftest does: the ceil(q*n)-th sample.
    size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    return us[std::clamp<size_t>(k, 1, us.size()) - 1];
  };
  r.min = us.front();
  r.max = us.back();
  r.typical = us.size() % 2 ? us[us.size() / 2] : (us[us.size() / 2 - 1] + us[us.size() / 2]) / 2;
  double sum = 0;
  for (double v : us) sum += v;
  r.avg = sum / static_cast<double>(us.size());
  double sq = 0;
  for (double v : us) sq += (v - r.avg) * (v - r.avg);
  r.stdev = us.size() > 1 ? std::sqrt(sq / static_cast<double>(us.size() - 1)) : 0.0;
  r.p99 = rank(0.99);
  r.p999 = rank(0.999);
  return r;
}

// ------------------------------------------------------------------ session

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::open(const Options& o) {
  std::unique_ptr<Session> s(new Session());
  s->isServer_ = o.isServer();
  s->poll_ = o.poll;
  ContextOptions co;
  if (o.transport == "tcp") co.transport = Transport::kTcp;
  if (o.transport == "auto") co.transport = Transport::kAuto;
  if (o.transport == "verbs" || (o.transport.empty() && !o.ibDev.empty()))
    co.transport = Transport::kVerbs;
  if (!o.ibDev.empty()) co.ibHca = o.ibHca();
  if (o.gidIndex >= -1) co.ibGidIndex = o.gidIndex;
  if (o.qps > 0) co.ibQpsPerRail = o.qps;
  if (!o.rails.empty()) co.socketIfname = o.rails;
  if (o.socks > 0) co.socketsPerRail = o.socks;
  if (o.timeoutMs > 0) co.timeoutMs = o.timeoutMs;

  // Job token: BRAID_JOB_TOKEN when set, else the tools' fixed default; the listener and
  // the client's address both carry it.
  s->token_ = kDefaultToken;
  {
    auto t = param("BRAID_JOB_TOKEN");
    if (t && t->isSet && !t->value.empty()) {
      char* end = nullptr;
      errno = 0;
      unsigned long long v = std::strtoull(t->value.c_str(), &end, 0);
      if (errno != 0 || end == t->value.c_str() || *end != '\0')
        return Status(Code::kInvalidArgument,
                      fmt::format("BRAID_JOB_TOKEN='{}' is not a 64-bit number", t->value));
      s->token_ = v;
    }
  }
  co.jobToken = s->token_;

  auto ctx = Context::create(co);
  if (!ctx) return ctx.status().withContext("cannot create the braid context");
  s->ctx_ = std::move(ctx).value();
  s->timeoutMs_ = s->ctx_->timeoutMs();
  auto w = Worker::create(s->ctx_);
  if (!w) return w.status().withContext("cannot create the braid worker");
  s->worker_ = std::move(w).value();

  if (s->isServer_) {
    ListenOptions lo;
    lo.port = o.port;
    lo.jobToken = s->token_;
    auto l = Listener::create(*s->worker_, lo);
    if (!l) return l.status().withContext(fmt::format("cannot listen on port {}", o.port));
    s->listener_ = std::move(l).value();
    std::printf(
        "\n************************************\n"
        "* Waiting for client to connect... *\n"
        "************************************\n");
    std::printf(" listening at %s\n", s->listener_->address().toString().c_str());
    std::fflush(stdout);
    // Like perftest, the server waits for its client as long as it takes.
    for (;;) {
      auto ep = s->listener_->waitAccept(std::chrono::milliseconds(1000));
      if (ep) {
        s->ep_ = std::move(ep).value();
        break;
      }
      if (ep.status().code() != Code::kTimedOut)
        return ep.status().withContext("accepting a client");
    }
    s->peer_ = s->ep_->peerName();
    s->probeDataTransport();
    return s;
  }

  auto addr = Address::fromHostPort(o.host, o.port, s->token_);
  if (!addr) return addr.status().withContext(fmt::format("server address {}:{}", o.host, o.port));
  s->peer_ = fmt::format("{}:{}", o.host, o.port);
  // The server may not be up yet (perftest's classic pitfall): retry a refused connect for a
  // few seconds, backing off (braid logs every refused attempt). A listener that answers
  // and refuses (token, version) is final at once.
  const uint64_t retryUntil = nowNs() + 5'000'000'000ull;
  int backoffMs = 50;
  for (int attempt = 1;; ++attempt) {
    Status st;
    auto ep = Endpoint::connect(*s->worker_, *addr);
    if (ep) {
      st = (*ep)->waitConnected(std::chrono::milliseconds(s->timeoutMs_));
      if (st.isOk()) {
        s->ep_ = std::move(ep).value();
        break;
      }
    } else {
      st = ep.status();
    }
    bool notListening = st.code() == Code::kConnectionRefused &&
                        st.message().find("refused the connection") == std::string::npos;
    if (!notListening || nowNs() > retryUntil)
      return st.withContext(fmt::format("cannot connect to server {} ({} attempt{})",
                                        addr->toString(), attempt, attempt > 1 ? "s" : ""));
    if (attempt == 1) {
      std::printf(" server %s not listening yet: retrying for a few seconds\n", s->peer_.c_str());
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(backoffMs));
    backoffMs = std::min(backoffMs * 2, 1000);
  }
  s->peer_ = fmt::format("{} ({})", o.host, s->ep_->peerName());
  s->probeDataTransport();
  return s;
}

void Session::probeDataTransport() { dataTransport_ = ep_->transport(); }

Status Session::wait(Request& req, std::string_view what) {
  Status st;
  if (poll_ == PollMode::kEvent) {
    st = req.wait(std::chrono::milliseconds(timeoutMs_));
  } else {
    const bool yield = poll_ == PollMode::kYield;
    const uint64_t limitNs = static_cast<uint64_t>(timeoutMs_) * 1'000'000ull;
    uint64_t start = 0;
    for (uint32_t spins = 0;; ++spins) {
      st = req.test();
      if (st.code() != Code::kInProgress) break;
      if (yield) sched_yield();
      if ((spins & 255) == 255) {  // the clock only now and then: test() is the hot path
        uint64_t now = nowNs();
        if (start == 0) {
          start = now;
        } else if (now - start > limitNs) {
          st = Status(Code::kTimedOut, fmt::format("not finished within {} ms", timeoutMs_));
          break;
        }
      }
    }
  }
  if (st.isOk()) return Status();  // not `return st`: that copied the message string
  return st.withContext(fmt::format("{} (peer {})", what, peer_));
}

Status Session::waitIdle(Request& req, std::string_view what) {
  for (;;) {
    Status st = req.wait(std::chrono::milliseconds(1000));
    if (st.code() == Code::kTimedOut) {
      Status e = ep_->error();
      if (e.isOk()) continue;
      st = e;
    }
    if (st.isOk()) return st;
    return st.withContext(fmt::format("{} (peer {})", what, peer_));
  }
}

Status Session::progress() {
  auto r = worker_->progress();
  if (!r) return r.status().withContext(fmt::format("progress (peer {})", peer_));
  Status e = ep_->error();
  if (!e.isOk()) return e.withContext(fmt::format("peer {}", peer_));
  if (poll_ != PollMode::kBusy) sched_yield();
  return Status::ok();
}

Result<MemoryRegion> Session::registerMemory(void* base, size_t len, std::string_view what) {
  auto r = ctx_->registerMemory(base, len);
  if (!r) return r.status().withContext(fmt::format("registering {} ({} bytes)", what, len));
  return r;
}

Status Session::postingFailed(const Status& st, std::string_view what) const {
  return st.withContext(fmt::format("posting {} (peer {})", what, peer_));
}

Result<Request> Session::iwrite(const void* src, size_t len, const MemoryRegion& local,
                                const RemoteKey& remote, uint64_t remoteOffset,
                                std::string_view what) {
  auto r = ep_->iwrite(src, len, local, remote, remoteOffset);
  if (!r) return r.status().withContext(fmt::format("posting {} (peer {})", what, peer_));
  return r;
}

Result<Request> Session::iread(void* dst, size_t len, const MemoryRegion& local,
                               const RemoteKey& remote, uint64_t remoteOffset,
                               std::string_view what) {
  auto r = ep_->iread(dst, len, local, remote, remoteOffset);
  if (!r) return r.status().withContext(fmt::format("posting {} (peer {})", what, peer_));
  return r;
}

Status Session::send(const void* buf, size_t len, uint64_t tag, std::string_view what) {
  BRAID_ASSIGN_OR_RETURN(Request r, isend(buf, len, tag, what));
  return wait(r, what);
}

Status Session::recv(void* buf, size_t len, uint64_t tag, std::string_view what) {
  BRAID_ASSIGN_OR_RETURN(Request r, irecv(buf, len, tag, what));
  BRAID_RETURN_IF_ERROR(wait(r, what));
  if (r.size() != len)
    return Status(Code::kProtocolError,
                  fmt::format("{} (peer {}): {} bytes instead of {}", what, peer_, r.size(), len));
  return Status::ok();
}

Status checkTestMsg(const TestMsg& m, const ToolSpec& spec) {
  if (m.magic != kCtlMagic || m.version != kCtlVersion)
    return Status(Code::kProtocolError,
                  fmt::format("the client is not a compatible braid perf tool (magic 0x{:08x}, "
                              "version {})",
                              m.magic, m.version));
  if (m.command == static_cast<uint8_t>(TestCommand::kEnd)) return Status::ok();
  if (m.command != static_cast<uint8_t>(TestCommand::kRun))
    return Status(Code::kProtocolError, fmt::format("unknown test command {}", m.command));
  if (m.tool != static_cast<uint8_t>(spec.kind))
    return Status(Code::kInvalidArgument,
                  fmt::format("the client runs {} but this server is {}: run the same tool on "
                              "both sides",
                              toolName(m.tool), spec.name));
  if (m.size == 0 || m.iters == 0 || m.txDepth == 0 || m.txDepth > 4096)
    return Status(Code::kInvalidArgument,
                  fmt::format("bad test parameters: size {} iterations {} tx depth {}", m.size,
                              m.iters, m.txDepth));
  return Status::ok();
}

Status checkReply(const ReplyMsg& m, ReplyType expected) {
  if (m.magic != kCtlMagic || m.version != kCtlVersion)
    return Status(Code::kProtocolError,
                  fmt::format("the server is not a compatible braid perf tool (magic 0x{:08x}, "
                              "version {})",
                              m.magic, m.version));
  if (m.type == static_cast<uint8_t>(ReplyType::kRefuse)) {
    std::string why(m.text, strnlen(m.text, sizeof m.text));
    return Status(Code::kInvalidArgument, "the server refused the test: " + why);
  }
  if (m.type != static_cast<uint8_t>(expected))
    return Status(Code::kProtocolError, fmt::format("the server answered {} where {} was expected",
                                                    m.type, static_cast<int>(expected)));
  return Status::ok();
}

uint64_t warmupFor(const ToolSpec& spec, uint64_t txDepth, uint64_t iters) {
  // bw: one window, so the timed interval starts with the pipeline full. lat: a tenth of
  // the round trips, at most 100, so caches and the scheduler have settled.
  if (spec.isBw) return std::min(txDepth, iters);
  return std::min<uint64_t>(100, iters / 10);
}

Status sendReady(Session& s) {
  ReplyMsg r;
  r.type = static_cast<uint8_t>(ReplyType::kReady);
  return s.send(&r, sizeof r, kTagReply, "sending ready");
}

Status sendKey(Session& s, const MemoryRegion& mr) {
  KeyMsg k;
  k.length = mr.length();
  auto key = mr.remoteKey();
  if (key) {
    k.valid = 1;
    k.key = *key;
  } else {
    std::snprintf(k.text, sizeof k.text, "%s", key.status().message().c_str());
  }
  return s.send(&k, sizeof k, kTagKey, "sending the remote key");
}

Result<KeyMsg> recvKey(Session& s) {
  KeyMsg k;
  BRAID_RETURN_IF_ERROR(s.recv(&k, sizeof k, kTagKey, "the peer's remote key"));
  if (k.magic != kCtlMagic || k.version != kCtlVersion)
    return Status(Code::kProtocolError, "the peer's remote key message is not a braid perf one");
  return k;
}

Status explainMissingKey(const Status& error, const KeyMsg& key) {
  if (error.isOk() || error.code() == Code::kUnsupported) return error;
  return Status(error.code(),
                fmt::format("{} (the server sent no remote key: {})", error.message(),
                            std::string(key.text, strnlen(key.text, sizeof key.text))));
}

Status sendRmaEnd(Session& s, const BwRow* row, const std::vector<uint64_t>& slots,
                  const Status& error) {
  std::vector<uint8_t> buf(sizeof(RmaEndMsg) + slots.size() * sizeof(uint64_t));
  RmaEndMsg m;
  if (!error.isOk()) {
    m.code = static_cast<uint8_t>(error.code());
    std::snprintf(m.text, sizeof m.text, "%s", error.message().c_str());
  } else {
    m.slots = static_cast<uint32_t>(slots.size());
    if (row) {
      m.iters = row->iters;
      m.peakBps = static_cast<uint64_t>(std::llround(row->peakBps));
      m.avgBps = static_cast<uint64_t>(std::llround(row->avgBps));
      m.msgRateMilli = static_cast<uint64_t>(std::llround(row->msgRate * 1000.0));
    }
  }
  std::memcpy(buf.data(), &m, sizeof m);
  if (m.slots) std::memcpy(buf.data() + sizeof m, slots.data(), slots.size() * sizeof(uint64_t));
  const size_t len = error.isOk() ? buf.size() : sizeof m;
  Status st = s.send(buf.data(), len, kTagRmaEnd, "sending the end of size");
  // The error that stopped the size wins over a failure to report it.
  if (!error.isOk()) return error;
  return st;
}

Status RmaEnd::post(Session& s) {
  buf.assign(sizeof(RmaEndMsg) + kMaxSlots * sizeof(uint64_t), 0);
  BRAID_ASSIGN_OR_RETURN(req, s.irecv(buf.data(), buf.size(), kTagRmaEnd, "the end of size"));
  return Status::ok();
}

Status RmaEnd::wait(Session& s) {
  BRAID_RETURN_IF_ERROR(s.waitIdle(req, "waiting for the client's end of size"));
  const RmaEndMsg& m = msg();
  if (req.size() < sizeof m || m.magic != kCtlMagic || m.version != kCtlVersion ||
      m.slots > kMaxSlots || req.size() != sizeof m + (m.code ? 0 : m.slots * sizeof(uint64_t)))
    return Status(Code::kProtocolError,
                  fmt::format("malformed end of size from the client ({} bytes)", req.size()));
  if (m.code != 0) {
    std::string why(m.text, strnlen(m.text, sizeof m.text));
    Code code = m.code <= static_cast<uint8_t>(Code::kInternal) ? static_cast<Code>(m.code)
                                                                : Code::kProtocolError;
    return Status(code, "the client stopped: " + why);
  }
  return Status::ok();
}

std::vector<uint64_t> RmaEnd::slots() const {
  std::vector<uint64_t> v(msg().slots);
  if (!v.empty())
    std::memcpy(v.data(), buf.data() + sizeof(RmaEndMsg), v.size() * sizeof(uint64_t));
  return v;
}

BwRow RmaEnd::row(uint64_t size) const {
  BwRow r;
  r.bytes = size;
  r.iters = msg().iters;
  r.peakBps = static_cast<double>(msg().peakBps);
  r.avgBps = static_cast<double>(msg().avgBps);
  r.msgRate = static_cast<double>(msg().msgRateMilli) / 1000.0;
  return r;
}

Status ClientRound::waitDone() {
  BRAID_RETURN_IF_ERROR(session.wait(doneReq, "waiting for the server's end of size"));
  if (doneReq.size() != sizeof done)
    return Status(Code::kProtocolError, fmt::format("server reply of {} bytes", doneReq.size()));
  return checkReply(done, ReplyType::kDone);
}

// ------------------------------------------------------------------ reports

struct Report::Rows {
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json rows = nlohmann::json::array();
};

Report::Report(const ToolSpec& spec, const Options& o)
    : spec_(spec), o_(o), rows_(std::make_shared<Rows>()) {}

namespace {

// What perftest prints about a verbs port and the public API does not carry: read from
// the kernel's sysfs view of the device (empty when unavailable).
std::string readSysfs(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  if (!f || !std::getline(f, v)) return {};
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

struct VerbsRailView {
  std::string name;       ///< "rxe0:1"
  std::string gid;        ///< as RailInfo::address
  std::string linkLayer;  ///< "Ethernet", "InfiniBand" or "?"
  int gidIndex = -1;      ///< -1: not found
};

VerbsRailView viewOf(const RailInfo& r, int gidIndexGiven) {
  VerbsRailView v;
  v.name = r.name;
  v.gid = r.address;
  std::string dev = r.name, port = "1";
  if (auto c = r.name.rfind(':'); c != std::string::npos) {
    dev = r.name.substr(0, c);
    port = r.name.substr(c + 1);
  }
  const std::string base = "/sys/class/infiniband/" + dev + "/ports/" + port;
  v.linkLayer = readSysfs(base + "/link_layer");
  if (v.linkLayer.empty()) v.linkLayer = "?";
  // The GID index in use: the one asked for, else the table entry holding this GID.
  v.gidIndex = gidIndexGiven;
  in6_addr want{};
  if (v.gidIndex < 0 && inet_pton(AF_INET6, r.address.c_str(), &want) == 1) {
    for (int i = 0; i < 256; ++i) {
      std::string g = readSysfs(base + "/gids/" + std::to_string(i));
      if (g.empty()) break;
      in6_addr have{};
      if (inet_pton(AF_INET6, g.c_str(), &have) == 1 && std::memcmp(&have, &want, 16) == 0) {
        v.gidIndex = i;
        break;
      }
    }
  }
  return v;
}

}  // namespace

void Report::note(const std::string& text) {
  if (notes_.count(text)) return;
  notes_.insert(text);
  std::printf(" (%s)\n", text.c_str());
  std::fflush(stdout);
  rows_->config["notes"].push_back(text);
}

void Report::printHeader(const Session& s, const TestMsg& t, bool allSizes) {
  const Context& c = s.context();
  const auto& rails = c.rails();
  const bool verbs = s.dataTransport() == Transport::kVerbs;
  std::vector<VerbsRailView> vr;
  std::vector<const RailInfo*> tr;
  int gidGiven = o_.gidIndex;
  if (gidGiven < -1) {
    auto g = param("BRAID_IB_GID_INDEX");
    gidGiven = g ? std::atoi(g->value.c_str()) : -1;
  }
  for (auto& r : rails) {
    if (r.transport == Transport::kVerbs)
      vr.push_back(viewOf(r, gidGiven));
    else
      tr.push_back(&r);
  }
  int qps = o_.qps;
  if (qps <= 0) {
    auto q = param("BRAID_IB_QPS_PER_RAIL");
    qps = q ? std::atoi(q->value.c_str()) : 1;
  }
  int socks = tr.empty() ? 0 : tr.front()->sockets;
  std::string railNames, verbsNames;
  for (auto* r : tr) railNames += (railNames.empty() ? "" : ",") + r->name;
  for (auto& v : vr) verbsNames += (verbsNames.empty() ? "" : ",") + v.name;
  auto eager = param("BRAID_EAGER_MAX");
  auto chunk = param("BRAID_CHUNK_SIZE");
  std::string eagerText = eager ? eager->value : "?";
  std::string chunkText = chunk ? chunk->value : "?";
  bool validate = (t.flags & kFlagValidate) != 0;
  std::string sizeCol =
      allSizes ? fmt::format("2..{}[B] (-a)", kMaxAllSize) : fmt::format("{}[B]", t.size);
  std::string itersCol = fmt::format("{}", t.iters);
  if (allSizes && !o_.itersGiven && !s.isServer()) itersCol += " (fewer for large sizes)";
  const size_t inUse = s.endpoint().railCount();
  std::string transportText = transportName(s.dataTransport());
  if (!verbs && c.transport() == Transport::kVerbs) transportText += " (peer: no verbs)";
  const char* role = s.isServer() ? "server" : "client";

  std::printf("%s", kResultLine);
  std::printf("                    %s\n", spec_.title);
  if (verbs) {
    std::printf(" Transport       : %-14s\tVerbs rails    : %zu (%s)\n", transportText.c_str(),
                vr.size(), verbsNames.c_str());
    std::printf(" QPs per rail    : %-14s\tConnection     : %s (RC)\n",
                fmt::format("{} (local)", qps).c_str(), role);
  } else {
    std::printf(" Transport       : %-14s\tRails          : %zu (%s)\n", transportText.c_str(),
                tr.size(), railNames.c_str());
    std::printf(" Sockets per rail: %-14s\tConnection     : %s\n",
                fmt::format("{} (local)", socks).c_str(), role);
  }
  if (spec_.isBw)
    std::printf(" TX depth        : %-14u\tValidation     : %s\n", t.txDepth,
                validate ? "ON" : "OFF");
  // The server of a one-sided bw test only waits for the client's end of size, asleep.
  const bool idle = spec_.oneSided && spec_.isBw && s.isServer();
  std::printf(" Polling         : %-14s\t%s\n", idle ? "epoll (idle)" : pollModeName(s.pollMode()),
              spec_.isBw ? "Buffers        : registered once per size"
                         : fmt::format("Validation     : {}", validate ? "ON" : "OFF").c_str());
  std::printf(" Message size    : %-14s\tIterations     : %s\n", sizeCol.c_str(), itersCol.c_str());
  std::printf(" Eager max       : %-14s\tChunk size     : %s\n", eagerText.c_str(),
              chunkText.c_str());
  std::printf(" Timeout         : %-14s\tJob token      : 0x%" PRIx64 "\n",
              fmt::format("{}[ms]", c.timeoutMs()).c_str(), s.token());
  std::printf("%s", kResultLine);
  for (auto& v : vr)
    std::printf(" verbs rail  : %s  link %s  GID index %s  GID %s\n", v.name.c_str(),
                v.linkLayer.c_str(), v.gidIndex >= 0 ? std::to_string(v.gidIndex).c_str() : "?",
                v.gid.c_str());
  for (auto* r : tr)
    std::printf(" %s : %s %s, %d sockets%s\n", verbs ? "tcp rail   " : "local rail ",
                r->name.c_str(), r->address.c_str(), r->sockets, verbs ? " (control only)" : "");
  if (verbs)
    std::printf(" remote      : %s, %zu QP%s in use (%zu per rail)\n", s.peer().c_str(), inUse,
                inUse == 1 ? "" : "s", vr.empty() ? inUse : (inUse + vr.size() - 1) / vr.size());
  else
    std::printf(" remote      : %s, %zu rail%s in use\n", s.peer().c_str(), inUse,
                inUse == 1 ? "" : "s");
  std::printf("%s", kResultLine);
  if (spec_.oneSided && spec_.isBw && s.isServer())
    std::printf(" (one-sided: the client measures; its figures are shown here too)\n");
  else if (s.isServer() && spec_.isBw)
    std::printf(" (receive side: figures measured where the data lands)\n");
  if (spec_.isBw)
    std::printf("%s\n", o_.reportGbits ? " #bytes     #iterations    BW peak[Gb/sec]    BW "
                                         "average[Gb/sec]   MsgRate[Mpps]"
                                       : " #bytes     #iterations    BW peak[MB/sec]    BW "
                                         "average[MB/sec]   MsgRate[Mpps]");
  else
    std::printf(
        " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    "
        "t_avg[usec]    t_stdev[usec]   99%% percentile[usec]   99.9%% percentile[usec] \n");
  std::fflush(stdout);
  tableOpen_ = true;

  auto& cfg = rows_->config;
  cfg["transport"] = transportName(s.dataTransport());
  cfg["context_transport"] = transportName(c.transport());
  cfg["rails"] = nlohmann::json::array();
  for (auto* r : tr)
    cfg["rails"].push_back({{"name", r->name}, {"address", r->address}, {"sockets", r->sockets}});
  cfg["verbs_rails"] = nlohmann::json::array();
  for (auto& v : vr) {
    nlohmann::json j = {{"name", v.name}, {"gid", v.gid}, {"link_layer", v.linkLayer}};
    if (v.gidIndex >= 0) j["gid_index"] = v.gidIndex;
    cfg["verbs_rails"].push_back(j);
  }
  cfg["rails_in_use"] = inUse;
  cfg["sockets_per_rail"] = socks;
  cfg["qps_per_rail"] = qps;
  if (!o_.ibDev.empty()) cfg["ib_hca"] = o_.ibHca();
  cfg["port"] = o_.port;
  cfg["peer"] = s.peer();
  cfg["all_sizes"] = allSizes;
  cfg["size"] = t.size;
  cfg["iterations"] = t.iters;
  cfg["iterations_given"] = o_.itersGiven;
  cfg["warmup"] = t.warmup;
  if (spec_.isBw) cfg["tx_depth"] = t.txDepth;
  cfg["validate"] = validate;
  cfg["report_gbits"] = o_.reportGbits;
  cfg["polling"] = idle ? "epoll (idle)" : pollModeName(s.pollMode());
  cfg["timeout_ms"] = c.timeoutMs();
  cfg["eager_max"] = eagerText;
  cfg["chunk_size"] = chunkText;
  cfg["job_token"] = fmt::format("0x{:x}", s.token());
}

void Report::addBw(const BwRow& r) {
  double scale = o_.reportGbits ? 8.0 / 1e9 : 1.0 / 1048576.0;
  std::printf(" %-7" PRIu64 "    %-10" PRIu64 "       %-7.2lf            %-7.2lf\t\t   %-7.6lf\n",
              r.bytes, r.iters, r.peakBps * scale, r.avgBps * scale, r.msgRate / 1e6);
  std::fflush(stdout);
  rows_->rows.push_back({{"bytes", r.bytes},
                         {"iterations", r.iters},
                         {"bw_peak_mb_per_sec", r.peakBps / 1048576.0},
                         {"bw_average_mb_per_sec", r.avgBps / 1048576.0},
                         {"bw_peak_gbit_per_sec", r.peakBps * 8 / 1e9},
                         {"bw_average_gbit_per_sec", r.avgBps * 8 / 1e9},
                         {"msg_rate_mpps", r.msgRate / 1e6}});
  if (!r.bytesPerRail.empty()) rows_->rows.back()["bytes_sent_per_rail"] = r.bytesPerRail;
}

void Report::addLat(const LatRow& r) {
  std::printf(" %-7" PRIu64 " %" PRIu64
              "          %-7.2f        %-7.2f      %-7.2f  \t       %-7.2f     \t%-7.2f\t\t%-7.2f "
              "\t\t%-7.2f\n",
              r.bytes, r.iters, r.min, r.max, r.typical, r.avg, r.stdev, r.p99, r.p999);
  std::fflush(stdout);
  rows_->rows.push_back({{"bytes", r.bytes},
                         {"iterations", r.iters},
                         {"t_min_usec", r.min},
                         {"t_max_usec", r.max},
                         {"t_typical_usec", r.typical},
                         {"t_avg_usec", r.avg},
                         {"t_stdev_usec", r.stdev},
                         {"p99_usec", r.p99},
                         {"p99_9_usec", r.p999}});
}

void Report::endTable() {
  if (!tableOpen_) return;
  std::printf("%s", kResultLine);
  std::fflush(stdout);
  tableOpen_ = false;
}

bool Report::finish(const Verdict& v, const std::string& error) {
  endTable();
  if (v.enabled && error.empty()) {
    std::printf("%s\n", v.line().c_str());
    std::fflush(stdout);
  }
  if (o_.jsonFile.empty()) return true;
  nlohmann::json j;
  j["tool"] = spec_.name;
  j["braid_version"] = versionString();
  j["role"] = o_.isServer() ? "server" : "client";
  j["config"] = rows_->config;
  j["results"] = rows_->rows;
  nlohmann::json val;
  val["enabled"] = v.enabled;
  if (v.enabled) {
    val["passed"] = v.passed() && error.empty();
    val["messages"] = v.messages;
    val["bytes"] = v.bytes;
    val["bad_messages"] = v.badMessages;
    if (v.hasBad)
      val["first_bad"] = {{"size", v.badSize},
                          {"message", v.badIter},
                          {"offset", v.badOffset},
                          {"expected", v.badExpected},
                          {"actual", v.badActual}};
    val["verdict"] = v.line();
  }
  j["validation"] = val;
  j["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) j["error"] = error;
  std::ofstream f(o_.jsonFile);
  f << j.dump(2) << "\n";
  f.close();
  if (!f) {
    printError(spec_, fmt::format("cannot write the JSON report {}: {}", o_.jsonFile,
                                  std::strerror(errno)));
    return false;
  }
  return true;
}

void printError(const ToolSpec& spec, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: %s\n", spec.name, message.c_str());
  std::fflush(stderr);
}

// ------------------------------------------------------------------ driver

namespace {

Status runClient(const ToolSpec& spec, const Options& o, Session& s, ClientFn fn, Report& report,
                 Verdict& verdict) {
  bool first = true;
  for (uint64_t size : sizeList(o)) {
    TestMsg t;
    t.tool = static_cast<uint8_t>(spec.kind);
    t.command = static_cast<uint8_t>(TestCommand::kRun);
    t.flags = (o.validate ? kFlagValidate : 0u) | (o.all ? kFlagAllSizes : 0u);
    t.txDepth = static_cast<uint32_t>(spec.isBw ? o.txDepth : 1);
    t.size = size;
    t.iters = itersFor(spec, o, size);
    t.warmup = warmupFor(spec, t.txDepth, t.iters);
    if (first) report.printHeader(s, t, o.all);
    first = false;
    // Both replies are posted before the test goes out, so they never wait for a CTS.
    ReplyMsg ready;
    ClientRound round{s, o, Request(), ReplyMsg()};
    BRAID_ASSIGN_OR_RETURN(Request readyReq, s.irecv(&ready, sizeof ready, kTagReply, "ready"));
    BRAID_ASSIGN_OR_RETURN(round.doneReq,
                           s.irecv(&round.done, sizeof round.done, kTagReply, "end of size"));
    BRAID_RETURN_IF_ERROR(s.send(&t, sizeof t, kTagTest, "sending the test parameters"));
    BRAID_RETURN_IF_ERROR(s.wait(readyReq, "waiting for the server to post its receives"));
    BRAID_RETURN_IF_ERROR(checkReply(ready, ReplyType::kReady));
    Status st = fn(s, t, round, report, verdict);
    if (!st.isOk()) return st.withContext(fmt::format("size {}", size));
    // The server's tally: every message (bw) or every ping (lat) it checked.
    if (o.validate) verdict.mergeReply(round.done, size);
  }
  report.endTable();
  TestMsg end;
  end.command = static_cast<uint8_t>(TestCommand::kEnd);
  // The server closes once it has read kEnd; nothing is outstanding on either side then, so
  // each side's braid takes the other's close frame as an orderly close.
  BRAID_RETURN_IF_ERROR(s.send(&end, sizeof end, kTagTest, "sending the end of the test"));
  return Status::ok();
}

Status runServer(const ToolSpec& spec, Session& s, ServerFn fn, Report& report, Verdict& verdict) {
  TestMsg t;
  BRAID_ASSIGN_OR_RETURN(Request tq, s.irecv(&t, sizeof t, kTagTest, "test parameters"));
  bool first = true;
  for (;;) {
    BRAID_RETURN_IF_ERROR(s.wait(tq, "waiting for the client's next test"));
    Status chk =
        tq.size() == sizeof t
            ? checkTestMsg(t, spec)
            : Status(Code::kProtocolError, fmt::format("test parameters of {} bytes", tq.size()));
    if (!chk.isOk()) {
      ReplyMsg refuse;
      refuse.type = static_cast<uint8_t>(ReplyType::kRefuse);
      std::snprintf(refuse.text, sizeof refuse.text, "%s", chk.message().c_str());
      (void)s.send(&refuse, sizeof refuse, kTagReply, "refusing the test");
      return chk.withContext("the client's test parameters");
    }
    if (t.command == static_cast<uint8_t>(TestCommand::kEnd)) break;
    const TestMsg cur = t;
    // The next test's receive goes out now, so the client never waits for its CTS.
    BRAID_ASSIGN_OR_RETURN(tq, s.irecv(&t, sizeof t, kTagTest, "test parameters"));
    if (first) report.printHeader(s, cur, (cur.flags & kFlagAllSizes) != 0);
    first = false;
    Verdict v;
    v.enabled = (cur.flags & kFlagValidate) != 0;
    ReplyMsg done;
    done.type = static_cast<uint8_t>(ReplyType::kDone);
    Status st = fn(s, cur, report, v, done);
    if (!st.isOk()) return st.withContext(fmt::format("size {}", cur.size));
    v.toReply(done);
    verdict.merge(v);
    BRAID_RETURN_IF_ERROR(s.send(&done, sizeof done, kTagReply, "sending the end of size"));
  }
  report.endTable();
  return Status::ok();
}

}  // namespace

void reportServerLat(const TestMsg& t, const std::vector<uint64_t>& sent, Report& report,
                     ReplyMsg& done) {
  const uint64_t total = t.warmup + t.iters;
  std::vector<double> samples;
  for (uint64_t i = t.warmup; i + 1 < total && i + 1 < sent.size(); ++i)
    samples.push_back(static_cast<double>(sent[i + 1] - sent[i]) / 2000.0);
  report.addLat(computeLat(t.size, std::move(samples)));
  done.elapsedNs =
      sent.empty() ? 0 : sent.back() - sent[std::min<uint64_t>(t.warmup, sent.size() - 1)];
  done.bytes = 2 * t.iters * t.size;
}

int toolMain(const ToolSpec& spec, int argc, char** argv, ClientFn client, ServerFn server) {
  Options o;
  if (auto rc = parseCommandLine(spec, argc, argv, o)) return *rc;
  return runTool(spec, o, client, server);
}

int runTool(const ToolSpec& spec, const Options& o, ClientFn client, ServerFn server) {
  Report report(spec, o);
  Verdict verdict;
  verdict.enabled = o.validate;
  auto s = Session::open(o);
  if (!s) {
    printError(spec, s.status().toString());
    report.finish(verdict, s.status().toString());
    return kExitFailure;
  }
  Status st = o.isServer() ? runServer(spec, **s, server, report, verdict)
                           : runClient(spec, o, **s, client, report, verdict);
  if (!st.isOk()) {
    report.endTable();
    printError(spec, st.toString());
    report.finish(verdict, st.toString());
    return kExitFailure;
  }
  bool jsonOk = report.finish(verdict, "");
  if (verdict.enabled && !verdict.passed()) return kExitFailure;
  return jsonOk ? kExitOk : kExitFailure;
}

std::vector<uint64_t> railBytesSince(Session& s, const std::vector<uint64_t>& before) {
  std::vector<uint64_t> now = s.endpoint().stats().bytesSentPerRail;
  for (size_t r = 0; r < now.size() && r < before.size(); ++r) now[r] -= before[r];
  return now;
}

}  // namespace braid::perf
