// Request: a handle on one operation of an endpoint; test() and wait() drive the worker.
#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- Request

Request::Request(std::shared_ptr<EndpointImpl> ep, OpState* op) : ep_(std::move(ep)), op_(op) {}

void Request::release() noexcept {
  WorkerImpl* w = ep_->worker;
  if (w->threadChecks) {
    // A destructor cannot refuse: it waits for the other thread to leave the worker.
    for (bool told = false;;) {
      WorkerEntry entry(w, "~Request");
      if (entry.ok()) {
        ep_->dropHandle(op_);
        break;
      }
      if (!told) BRAID_LOG_ERROR(kTransport, "{}", entry.misuse().message());
      told = true;
      std::this_thread::yield();
    }
  } else {
    ep_->dropHandle(op_);
  }
  op_ = nullptr;
  ep_.reset();
}

Status Request::test() {
  if (!op_) return Status(Code::kInvalidArgument, "test() on an empty Request");
  BRAID_WORKER_ENTRY(ep_->worker, "Request::test");
  // An ok status is returned without copying op_->status (a string): test() is polled.
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  auto r = ep_->worker->progress(0);
  if (!r) return r.status();
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  return Status(Code::kInProgress);
}

Status Request::wait(std::chrono::milliseconds timeout) {
  if (!op_) return Status(Code::kInvalidArgument, "wait() on an empty Request");
  BRAID_WORKER_ENTRY(ep_->worker, "Request::wait");
  uint64_t start = core::nowNs();
  uint64_t limit =
      timeout.count() >= INT64_MAX / 2000000
          ? UINT64_MAX
          : start + static_cast<uint64_t>(std::max<int64_t>(0, timeout.count())) * 1000000ull;
  uint64_t spinEnd = start + static_cast<uint64_t>(ep_->ctx->spinUs) * 1000ull;
  for (;;) {
    Status st = test();
    if (st.code() != Code::kInProgress) return st;
    uint64_t now = core::nowNs();
    if (now >= limit)
      return Status(Code::kTimedOut, fmt::format("request (tag {}) not finished within {} ms",
                                                 op_->tag, timeout.count()));
    if (now >= spinEnd) {
      uint64_t left = (limit - now) / 1000000ull;
      auto r = ep_->worker->progress(static_cast<int>(std::clamp<uint64_t>(left, 1, 100)));
      if (!r) return r.status();
    }
  }
}

Status Request::cancel() {
  if (!op_) return Status(Code::kInvalidArgument, "cancel() on an empty Request");
  BRAID_WORKER_ENTRY(ep_->worker, "Request::cancel");
  return ep_->cancel(op_);
}

namespace {

/// Waits until all (or any) of `reqs` finished. Returns the index of a finished one (any),
/// or reqs.size() (all); errors: kInvalidArgument, kTimedOut.
Result<size_t> waitMany(std::vector<Request>& reqs, std::chrono::milliseconds timeout, bool all,
                        const char* what) {
  WorkerImpl* w = nullptr;
  for (const Request& r : reqs) {
    if (!r.valid()) continue;
    WorkerImpl* rw = r.endpoint()->worker;
    if (w != nullptr && rw != w)
      return Status(Code::kInvalidArgument,
                    fmt::format("{}: the requests belong to endpoints of different Workers; wait "
                                "on each Worker's requests separately",
                                what));
    w = rw;
  }
  if (w == nullptr)
    return Status(Code::kInvalidArgument, fmt::format("{}: no valid request to wait on", what));
  BRAID_WORKER_ENTRY(w, what);
  const uint64_t start = core::nowNs();
  const uint64_t limit =
      timeout.count() >= INT64_MAX / 2000000
          ? UINT64_MAX
          : start + static_cast<uint64_t>(std::max<int64_t>(0, timeout.count())) * 1000000ull;
  const uint64_t spinEnd = start + static_cast<uint64_t>(w->ctx->spinUs) * 1000ull;
  for (;;) {
    size_t done = 0, valid = 0, first = reqs.size();
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (!reqs[i].valid()) continue;
      ++valid;
      if (reqs[i].finished()) {
        ++done;
        if (first == reqs.size()) first = i;
      }
    }
    if (all ? done == valid : done > 0) return all ? reqs.size() : first;
    const uint64_t now = core::nowNs();
    if (now >= limit)
      return Status(Code::kTimedOut,
                    fmt::format("{}: {} of {} requests finished within {} ms", what, done, valid,
                                timeout.count()));
    int sleepMs = 0;
    if (now >= spinEnd) sleepMs = static_cast<int>(std::clamp<uint64_t>((limit - now) / 1000000ull, 1, 100));
    auto r = w->progress(sleepMs);
    if (!r) return r.status();
  }
}

}  // namespace

Status waitAll(std::vector<Request>& requests, std::chrono::milliseconds timeout) {
  auto r = waitMany(requests, timeout, true, "waitAll");
  if (!r) return r.status();
  for (Request& q : requests) {
    if (!q.valid()) continue;
    Status st = q.result();
    if (!st.isOk()) return st;
  }
  return Status::ok();
}

Result<size_t> waitAny(std::vector<Request>& requests, std::chrono::milliseconds timeout) {
  return waitMany(requests, timeout, false, "waitAny");
}

bool Request::finished() const { return op_ != nullptr && op_->released; }

Status Request::result() const {
  if (!op_) return Status(Code::kInvalidArgument, "result() of an empty Request");
  if (!op_->released) return Status(Code::kInProgress);
  return op_->status;
}

size_t Request::size() const {
  if (!op_) return 0;
  return op_->kind == OpState::Kind::kSend ? op_->len : op_->size;
}

}  // namespace braid

