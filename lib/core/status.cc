#include "braid/status.h"

#include <string>

namespace braid {

std::string_view codeName(Code c) noexcept {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInProgress: return "in-progress";
    case Code::kAgain: return "again";
    case Code::kInvalidArgument: return "invalid-argument";
    case Code::kUnsupported: return "unsupported";
    case Code::kNotFound: return "not-found";
    case Code::kNoMemory: return "no-memory";
    case Code::kTimedOut: return "timed-out";
    case Code::kCanceled: return "canceled";
    case Code::kSystemError: return "system-error";
    case Code::kCompletionError: return "completion-error";
    case Code::kConnectionRefused: return "connection-refused";
    case Code::kConnectionReset: return "connection-reset";
    case Code::kTruncated: return "truncated";
    case Code::kProtocolError: return "protocol-error";
    case Code::kRailFailed: return "rail-failed";
    case Code::kEndpointFailed: return "endpoint-failed";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::toString() const {
  if (isOk()) return "ok";
  std::string s(codeName(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

Status Status::withContext(std::string_view context) const {
  if (isOk()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

}  // namespace braid
