// braid/status.h — error values returned by every fallible braid call.
//
// braid never throws across its public API. Every call that can fail returns a
// [[nodiscard]] Status or Result<T>. The Code says what the caller should do next;
// the message carries the observed cause (device, peer, errno, ...) and a hint.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace braid {

/// What went wrong, grouped by what the caller should do about it.
enum class Code : uint8_t {
  kOk = 0,
  kInProgress,         ///< not finished yet: call again (test/poll/accept/connect)
  kAgain,              ///< a queue is full: retry later, nothing was posted
  kInvalidArgument,    ///< the caller passed something wrong; nothing changed
  kUnsupported,        ///< feature/transport not available on this host or build
  kNotFound,           ///< no such device/interface/key
  kNoMemory,           ///< allocation or registration failed for lack of memory
  kTimedOut,           ///< a bound was reached (BRAID_TIMEOUT_MS or the caller's timeout)
  kCanceled,           ///< the request or endpoint was closed before it finished
  kSystemError,        ///< a system call failed (errno in the message)
  kCompletionError,    ///< a work completion failed (ibv_wc_status, vendor_err, qp)
  kConnectionRefused,  ///< the peer refused us (bad magic/version/token, or nothing listening)
  kConnectionReset,    ///< the peer closed or reset the connection
  kTruncated,          ///< a message was larger than the posted receive buffer
  kProtocolError,      ///< the peer sent something malformed
  kRailFailed,         ///< one rail is down; the endpoint may go on over the others
  kEndpointFailed,     ///< the endpoint is unusable; close it
  kInternal,           ///< a bug in braid: please report it with the log
};

/// Stable lower-case name of a code, e.g. "timed-out".
std::string_view codeName(Code c) noexcept;

/// A code plus a human message. Cheap to return when ok (no allocation).
class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  /// A code without a message (kInProgress on a poll path: no string is built).
  explicit Status(Code code) noexcept : code_(code) {}

  static Status ok() noexcept { return Status(); }

  bool isOk() const noexcept { return code_ == Code::kOk; }
  explicit operator bool() const noexcept { return isOk(); }
  Code code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  /// "code-name: message" (or "ok").
  std::string toString() const;

  /// Returns a copy whose message is prefixed with `context: `.
  Status withContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

/// Either a value or an error Status (never an ok Status without a value).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).isOk()) {
      v_ = Status(Code::kInternal, "Result constructed from an ok Status without a value");
    }
  }

  bool isOk() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return isOk(); }

  /// The error, or ok() when a value is held.
  Status status() const { return isOk() ? Status::ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace braid

/// Propagate a non-ok Status from `expr` without logging again.
#define BRAID_RETURN_IF_ERROR(expr)            \
  do {                                         \
    ::braid::Status braid_st_ = (expr);        \
    if (!braid_st_.isOk()) return braid_st_;   \
  } while (0)

#define BRAID_CONCAT_INNER_(a, b) a##b
#define BRAID_CONCAT_(a, b) BRAID_CONCAT_INNER_(a, b)

/// `BRAID_ASSIGN_OR_RETURN(auto x, f());` — assign the value or return the error.
#define BRAID_ASSIGN_OR_RETURN(lhs, expr)                                       \
  auto BRAID_CONCAT_(braid_res_, __LINE__) = (expr);                            \
  if (!BRAID_CONCAT_(braid_res_, __LINE__).isOk())                              \
    return BRAID_CONCAT_(braid_res_, __LINE__).status();                        \
  lhs = std::move(BRAID_CONCAT_(braid_res_, __LINE__)).value()
