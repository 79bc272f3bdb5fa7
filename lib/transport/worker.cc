#include <algorithm>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

Worker::Worker(std::shared_ptr<WorkerImpl> impl) : impl_(std::move(impl)) {}

// Endpoints, listeners and requests hold the WorkerImpl: it lives until the last of them.
Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::create(std::shared_ptr<Context> context) {
  if (!context) return Status(Code::kInvalidArgument, "Worker::create: null context");
  auto w = std::make_shared<WorkerImpl>();
  BRAID_ASSIGN_OR_RETURN(w->poller, tcp::Poller::create());
  w->ctx = &context->impl();
  w->threadChecks = w->ctx->threadChecks;
  w->context = std::move(context);
  return std::unique_ptr<Worker>(new Worker(std::move(w)));
}

Result<size_t> Worker::progress() {
  BRAID_WORKER_ENTRY(impl_.get(), "Worker::progress");
  return impl_->progress(0);
}

Result<size_t> Worker::waitAndProgress(std::chrono::milliseconds timeout) {
  BRAID_WORKER_ENTRY(impl_.get(), "Worker::waitAndProgress");
  auto ms = timeout.count();
  return impl_->progress(ms > INT32_MAX ? INT32_MAX : static_cast<int>(std::max<int64_t>(0, ms)));
}

Context& Worker::context() const { return *impl_->context; }

Result<size_t> WorkerImpl::progress(int timeoutMs) {
  // Control frames (CTS) posted since the last call go out in one write per endpoint.
  size_t verbsEvents = 0;
  bool anyVerbs = false, allVerbs = !endpoints.empty(), awaitingAcks = false, rejoining = false;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    EndpointImpl* e = endpoints[i];
    e->writeBudget = EndpointImpl::kWriteBudget;
    // A lazy CTS goes before a sleep (nothing else to do), and at the tick otherwise.
    if (e->controlDirty || (e->lazyCts && timeoutMs != 0)) e->flushControl();
    // An endpoint that moved from verbs to TCP still drains its lanes (the peer's
    // rechecks wait on them), and is a TCP endpoint otherwise.
    if (e->verbs && e->state == EpState::kConnected) verbsEvents += e->verbs->progress();
    if (e->onVerbs() && e->state == EpState::kConnected) {
      anyVerbs = true;
    } else {
      allVerbs = false;
      awaitingAcks = awaitingAcks || (e->state == EpState::kConnected &&
                                      (e->unackedChunks > 0 || !e->deferred.empty()));
      // A connector dials its failed rails again (and one moved from verbs to TCP its
      // lanes, and offers the return); a listener only answers.
      rejoining = rejoining || (e->state == EpState::kConnected && !e->isServer &&
                                (e->railsDown > 0 || e->verbsGone));
    }
  }
  // A rail to dial again (rejoin back-off, from the timers): wake every 50 ms at least.
  if (rejoining && (timeoutMs < 0 || timeoutMs > 50)) timeoutMs = 50;
  // TCP acknowledgements raise no event: the timers poll them (Channel::pollAcks).
  if (awaitingAcks && (timeoutMs < 0 || timeoutMs > 1)) timeoutMs = 1;
  // A blocking call over verbs arms the CQs, whose completion channels are in the epoll
  // set, and polls once more (a completion that came before the arming raises no event).
  // It sleeps until an event (100 ms at most) only when nothing waits for what raises no
  // completion (a CTS in the ring, credits in the flow block): 1 ms at most otherwise.
  if (verbsEvents == 0 && anyVerbs && timeoutMs > 0) {
    bool deepSleep = true;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      EndpointImpl* e = endpoints[i];
      if (!e->onVerbs() || e->state != EpState::kConnected) continue;
      if (!e->verbs->armForSleep()) deepSleep = false;
      verbsEvents += e->verbs->progress();
    }
    // Even a deep sleep wakes every 100 ms: the timers (liveness, the async-event
    // watcher's port and QP failures, heartbeats) run when the worker does.
    timeoutMs = std::min(timeoutMs, deepSleep ? 100 : 1);
  }
  if (verbsEvents > 0) timeoutMs = 0;
  // A busy poller over verbs only reads the clock (for the socket poll and the timers
  // below) every kClockEvery-th poll: the CQ polls above are the hot path, and a message
  // that just landed is the caller's to handle first.
  constexpr uint32_t kClockEvery = 16;
  if (allVerbs && timeoutMs == 0 && ++busyPolls % kClockEvery != 0) return verbsEvents;
  uint64_t now = core::nowNs();
  int n = 0;
  // When every endpoint moves data over verbs, their sockets carry only heartbeats and
  // CLOSE: a busy poller looks at them once a millisecond (as often as the timers run)
  // rather than paying an epoll_wait system call on every poll of the CQs; a system call
  // in the middle of a message's arrival is latency.
  constexpr uint64_t kSocketPollNs = 1'000'000;
  if (!(allVerbs && timeoutMs == 0 && now - lastSocketPollNs < kSocketPollNs)) {
    BRAID_ASSIGN_OR_RETURN(n, poller.wait(timeoutMs));
    lastSocketPollNs = now = core::nowNs();
  }
  // A busy poller sees TCP acknowledgements (which finish rendezvous sends) within 20 us.
  if (awaitingAcks && now - lastAckPollNs >= 20'000) {
    lastAckPollNs = now;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      EndpointImpl* e = endpoints[i];
      if (e->onVerbs() || e->state != EpState::kConnected || e->unackedChunks == 0) continue;
      e->pollAcks(now);
    }
  }
  n += static_cast<int>(verbsEvents);
  if (now >= nextTickNs) {
    nextTickNs = now + 1000000;  // timers run at most once per millisecond
    tick();
  }
  return static_cast<size_t>(n);
}

void WorkerImpl::tick() {
  uint64_t now = core::nowNs();
  // Copy: a tick may fail an endpoint, which does not remove it from the list.
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i]->lazyCts) endpoints[i]->flushControl();
    endpoints[i]->tick(now);
  }
  // Handshakes are bounded in time by the worker, not by the application calling accept().
  for (size_t i = 0; i < listeners.size(); ++i) sweepListener(listeners[i]);
  for (size_t i = 0; i < lingering.size();) {
    char buf[4096];
    bool done = now >= lingering[i].deadlineNs;
    while (!done) {
      auto r = tcp::readSome(lingering[i].fd.get(), buf, sizeof buf, "lingering");
      if (!r || r->eof) done = true;
      else if (r->wouldBlock) break;
    }
    if (done) {
      lingering[i] = std::move(lingering.back());
      lingering.pop_back();
    } else {
      ++i;
    }
  }
}

void WorkerImpl::removeEndpoint(EndpointImpl* e) {
  endpoints.erase(std::remove(endpoints.begin(), endpoints.end(), e), endpoints.end());
}

// ---------------------------------------------------------------- thread checks

namespace {
/// 1, 2, 3, ... in the order threads first ask (readable in messages, never 0).
uint64_t threadNumber() {
  static std::atomic<uint64_t> next{1};
  thread_local uint64_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}
}  // namespace

WorkerEntry::WorkerEntry(WorkerImpl* w, const char* call) : call_(call) {
  if (w->threadChecks) enter(w);
}

void WorkerEntry::enter(WorkerImpl* w) {
  const uint64_t me = threadNumber();
  uint64_t cur = w->owner.load(std::memory_order_acquire);
  if (cur == me) {
    ++w->depth;  // a nested call of the thread inside
  } else if (cur == 0 && w->owner.compare_exchange_strong(cur, me, std::memory_order_acquire)) {
    w->depth = 1;
  } else {
    other_ = cur != 0 ? cur : w->owner.load(std::memory_order_relaxed);
    if (other_ == 0) other_ = UINT64_MAX;  // it left in between; still a race
    return;
  }
  w_ = w;
}

void WorkerEntry::leave() {
  if (--w_->depth == 0) w_->owner.store(0, std::memory_order_release);
}

Status WorkerEntry::misuse() const {
  Status st(Code::kInvalidArgument,
            fmt::format("{} on thread #{} while thread #{} is inside the same Worker: a Worker "
                        "and its listeners, endpoints and requests belong to one thread at a "
                        "time (include/braid/transport.h); the call was refused and changed "
                        "nothing",
                        call_, threadNumber(), other_));
  // Returned to the caller (destructors, which cannot return it, log it themselves).
  BRAID_LOG_DEBUG(kTransport, "{}", st.message());
  return st;
}

void WorkerImpl::removeListener(ListenerImpl* l) {
  listeners.erase(std::remove(listeners.begin(), listeners.end(), l), listeners.end());
}

void WorkerImpl::linger(tcp::Fd fd) {
  if (!fd.valid()) return;
  poller.remove(fd.get());
  ::shutdown(fd.get(), SHUT_WR);
  // Bounded in number as in time: refused peers (a flood of idle connections) must not
  // turn into descriptors held for seconds. The oldest goes first (at worst its peer sees
  // a reset instead of the end of our last frame).
  if (lingering.size() >= kMaxLingering) lingering.erase(lingering.begin());
  lingering.push_back({std::move(fd), core::nowNs() + 2000000000ull});
}

}  // namespace braid
