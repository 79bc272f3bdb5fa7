// perf/session.cc — the connection of one tool run and the waits on its requests.
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "perf_common.h"

namespace braid::perf {

// ------------------------------------------------------------------ session

namespace {

// BRAID_LOG_LEVEL asks for debug output: the tools' own debug lines follow braid's knob.
bool toolDebug() {
  auto p = paramInForce("BRAID_LOG_LEVEL");
  return p && (p->value == "debug" || p->value == "trace");
}

// The client's final connect error: the address it tried, for how long, the cause, and,
// when nothing answered there, what to check.
Status connectFailed(const ToolSpec& spec, const Options& o, const Address& addr,
                     const Status& cause, int attempts, uint64_t elapsedNs, bool notListening) {
  std::string text =
      fmt::format("cannot connect to server {} port {} (tried {}, {} attempt{} in {:.1f} s): {}",
                  o.host, o.port, addr.toString(), attempts, attempts > 1 ? "s" : "",
                  static_cast<double>(elapsedNs) * 1e-9, cause.message());
  // A server that answered and refused said why (token, version): that is the advice.
  if (notListening) {
    const char last = text.empty() ? '.' : text.back();
    text += (last == '.' || last == '?' || last == '!') ? " " : ". ";
    text += fmt::format(
        "Check that the server runs ('{}' without a host, on {}) with the same -p {}, that {} "
        "is an address of that host reachable from here (the server takes control connections "
        "on its local addresses), and that no firewall drops TCP port {}",
        spec.name, o.host, o.port, o.host, o.port);
  }
  return Status(cause.code(), std::move(text));
}

}  // namespace

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::open(const ToolSpec& spec, const Options& o) {
  std::unique_ptr<Session> s(new Session());
  s->isServer_ = o.isServer();
  s->poll_ = o.poll;
  if (!o.timelineFile.empty()) {
    // Created before the connection, so that a path that cannot be written fails at once.
    auto t = Timeline::open(o.timelineFile, spec.name);
    if (!t) return t.status();
    s->timeline_ = std::move(t).value();
  }
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
    auto t = paramInForce("BRAID_JOB_TOKEN");
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
  // A request may wait through a rail failover: the rail's failure takes up to
  // BRAID_TIMEOUT_MS to show, and its chunks then go again over the others. A run fails
  // on a request that waited twice that and a second more.
  s->timeoutMs_ = 2 * s->ctx_->timeoutMs() + 1000;
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
  // few seconds, backing off. Each refusal is expected here, so this side reports it only
  // at debug level; a listener that answers and refuses (token, version) is final at once.
  const bool debug = toolDebug();
  const uint64_t t0 = nowNs();
  const uint64_t retryUntil = t0 + 5'000'000'000ull;
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
      return connectFailed(spec, o, *addr, st, attempt, nowNs() - t0, notListening);
    if (debug)
      std::fprintf(stderr, "%s: [debug] connect to %s: attempt %d refused, retrying in %d ms\n",
                   spec.name, addr->toString().c_str(), attempt, backoffMs);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoffMs));
    backoffMs = std::min(backoffMs * 2, 1000);
  }
  s->peer_ = fmt::format("{} ({})", o.host, s->ep_->peerName());
  s->probeDataTransport();
  return s;
}

void Session::probeDataTransport() {
  dataTransport_ = ep_->transport();
}

Status Session::wait(Request& req, std::string_view what) {
  Status st;
  if (poll_ == PollMode::kEvent) {
    st = timelineNextNs_ == UINT64_MAX ? req.wait(std::chrono::milliseconds(timeoutMs_))
                                       : waitSampling(req);
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
        timelineTick(now);
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

Status Session::waitWatching(Request& req, Request& watch, uint64_t& watchNs,
                             std::string_view what) {
  // Only while `watch` is pending (braid_send_bw: until the warm-up is acknowledged), so
  // the clock read and the second test per poll cost nothing in the timed steady state.
  const uint64_t limitNs = static_cast<uint64_t>(timeoutMs_) * 1'000'000ull;
  const uint64_t start = nowNs();
  for (;;) {
    if (watchNs == 0) {
      Status ws = watch.test();
      if (ws.isOk()) {
        watchNs = nowNs();
      } else if (ws.code() != Code::kInProgress) {
        return ws.withContext(fmt::format("{} (peer {})", what, peer_));
      }
    }
    if (watchNs != 0) return wait(req, what);
    Status st = poll_ == PollMode::kEvent ? req.wait(std::chrono::milliseconds(1)) : req.test();
    if (st.isOk()) return Status();
    if (st.code() != Code::kInProgress && st.code() != Code::kTimedOut)
      return st.withContext(fmt::format("{} (peer {})", what, peer_));
    if (poll_ == PollMode::kYield) sched_yield();
    const uint64_t now = nowNs();
    timelineTick(now);
    if (now - start > limitNs)
      return Status(Code::kTimedOut, fmt::format("not finished within {} ms", timeoutMs_))
          .withContext(fmt::format("{} (peer {})", what, peer_));
  }
}

Status Session::waitIdle(Request& req, std::string_view what) {
  for (;;) {
    uint64_t sliceMs = 1000;
    if (timelineNextNs_ != UINT64_MAX) {  // --timeline: woken in time for each sample
      const uint64_t now = nowNs();
      timelineTick(now);
      if (timelineNextNs_ > now)
        sliceMs = std::min<uint64_t>(sliceMs, (timelineNextNs_ - now) / 1'000'000ull + 1);
    }
    Status st = req.wait(std::chrono::milliseconds(sliceMs));
    if (st.code() == Code::kTimedOut) {
      Status e = ep_->error();
      if (e.isOk()) continue;
      st = e;
    }
    if (st.isOk()) return st;
    return st.withContext(fmt::format("{} (peer {})", what, peer_));
  }
}

Status Session::waitSampling(Request& req) {
  const uint64_t deadline = nowNs() + static_cast<uint64_t>(timeoutMs_) * 1'000'000ull;
  for (;;) {
    const uint64_t now = nowNs();
    timelineTick(now);
    if (now >= deadline)
      return Status(Code::kTimedOut, fmt::format("not finished within {} ms", timeoutMs_));
    // Until the next sample is due (UINT64_MAX once the timeline stopped), at most the rest
    // of the timeout; a millisecond more so the slice never ends just before it.
    const uint64_t until = std::min(timelineNextNs_, deadline);
    const auto ms = std::chrono::milliseconds((until - now) / 1'000'000ull + 1);
    Status st = req.wait(ms);
    // kTimedOut of the slice, not of the request (a request's own kTimedOut finished it).
    if (st.code() != Code::kTimedOut || req.finished()) return st;
  }
}

void Session::timelineStart(uint64_t ns) {
  if (!timeline_ || timeline_->started()) return;
  timeline_->start(ns, ep_->stats());
  timelineNextNs_ = timeline_->nextNs();
}

void Session::timelineSample(uint64_t ns) {
  timeline_->sample(ns, ep_->stats());
  timelineNextNs_ = timeline_->nextNs();
}

void Session::timelineFinish() {
  if (!timeline_ || !ep_) return;
  timeline_->finish(nowNs(), ep_->stats());
  timelineNextNs_ = UINT64_MAX;
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

Status Session::recv(void* buf, size_t len, uint64_t tag, std::string_view what, size_t& got) {
  BRAID_ASSIGN_OR_RETURN(Request r, irecv(buf, len, tag, what));
  BRAID_RETURN_IF_ERROR(wait(r, what));
  got = r.size();
  return Status::ok();
}

}  // namespace braid::perf
