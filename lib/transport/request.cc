// Request: a handle on one operation of an endpoint; test() and wait() drive the worker.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- Request

Request::Request(std::shared_ptr<EndpointImpl> ep, OpState* op) : ep_(std::move(ep)), op_(op) {}

void Request::release() noexcept {
  ep_->dropHandle(op_);
  op_ = nullptr;
  ep_.reset();
}

Status Request::test() {
  if (!op_) return Status(Code::kInvalidArgument, "test() on an empty Request");
  // An ok status is returned without copying op_->status (a string): test() is polled.
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  auto r = ep_->worker->progress(0);
  if (!r) return r.status();
  if (op_->released) return op_->status.isOk() ? Status() : op_->status;
  return Status(Code::kInProgress);
}

Status Request::wait(std::chrono::milliseconds timeout) {
  if (!op_) return Status(Code::kInvalidArgument, "wait() on an empty Request");
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
  return ep_->cancel(op_);
}

size_t Request::size() const {
  if (!op_) return 0;
  return op_->kind == OpState::Kind::kSend ? op_->len : op_->size;
}

}  // namespace braid

