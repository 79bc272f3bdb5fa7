// lib/verbs/async_events.h — one thread per device context that reads its asynchronous
// events (port up/down, QP and CQ errors, device fatal), acknowledges them, logs them and
// records what failed, so that the rail owning a port or QP learns it on its next call.
//
// Why a thread: async events arrive on the context's async_fd whether or not anyone
// polls, and every event must be acknowledged (ibv_ack_async_event) or destroying its
// QP/CQ blocks forever (ibv_get_async_event(3)). The thread polls the descriptor with a
// 100 ms timeout so it stops promptly. Internal header.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "braid/status.h"
#include "verbs/handles.h"
#include "verbs/hw_counters.h"
#include "verbs/lib.h"

namespace braid::verbs {

/// "IBV_EVENT_PORT_ERR", ... for enum ibv_event_type.
const char* asyncEventName(int type);

class AsyncWatcher {
 public:
  /// Starts the thread on `context`'s async_fd (switched to non-blocking). The Context
  /// must outlive the watcher. Errors: kInvalidArgument for an empty Context,
  /// kSystemError when the descriptor or the thread cannot be set up.
  [[nodiscard]] static Result<std::unique_ptr<AsyncWatcher>> start(const Lib& lib,
                                                                   Context& context);
  /// Stops and joins the thread (within about 100 ms).
  ~AsyncWatcher();
  AsyncWatcher(const AsyncWatcher&) = delete;
  AsyncWatcher& operator=(const AsyncWatcher&) = delete;

  /// ok, or kRailFailed naming the device, port and event: after IBV_EVENT_PORT_ERR
  /// (until IBV_EVENT_PORT_ACTIVE) or IBV_EVENT_DEVICE_FATAL. Thread-safe.
  [[nodiscard]] Status portStatus(int port) const;
  /// ok, or kRailFailed after IBV_EVENT_QP_FATAL / QP_REQ_ERR / QP_ACCESS_ERR on that QP
  /// (or DEVICE_FATAL). Thread-safe.
  [[nodiscard]] Status qpStatus(uint32_t qpn) const;
  /// ok, or kRailFailed after IBV_EVENT_CQ_ERR on that CQ (or DEVICE_FATAL).
  [[nodiscard]] Status cqStatus(const ibv_cq* cq) const;
  /// ok, or kRailFailed after IBV_EVENT_DEVICE_FATAL. Thread-safe.
  [[nodiscard]] Status deviceStatus() const;
  /// Forgets a QP's failure (call when the QP is destroyed: its number may be reused).
  void forgetQp(uint32_t qpn);

  /// A port's counters (hw_counters and packet counts, verbs/hw_counters.h) as the thread
  /// samples them every 100 ms once asked for: the first sample and the last two.
  struct CounterSamples {
    CounterMap first, prev, cur;
    bool valid = false;  ///< two samples taken at least (prev and cur are meaningful)
  };
  /// The samples of `port` so far; the first call starts sampling it. Thread-safe.
  CounterSamples counterSamples(int port);

  /// Events read and acknowledged so far (lets a caller notice that something happened
  /// without taking the lock).
  uint64_t eventCount() const { return events_.load(std::memory_order_acquire); }

 private:
  AsyncWatcher(const Lib& lib, ibv_context* context, std::string device, int fd)
      : lib_(&lib), context_(context), device_(std::move(device)), fd_(fd) {}
  void run() noexcept;
  void handle(ibv_async_event& event);
  void sampleCounters() noexcept;  ///< the thread, every 100 ms

  const Lib* lib_;
  ibv_context* context_;
  std::string device_;
  int fd_;
  mutable std::mutex mu_;
  Status deviceFailed_;                        // guarded by mu_
  std::map<int, Status> portsFailed_;          // guarded by mu_
  std::map<uint32_t, Status> qpsFailed_;       // guarded by mu_
  std::map<const ibv_cq*, Status> cqsFailed_;  // guarded by mu_
  struct Sampled {
    CounterSamples s;
    int taken = 0;
  };
  std::map<int, Sampled> counters_;  // guarded by mu_
  uint64_t lastSampleNs_ = 0;        // the thread's
  std::atomic<uint64_t> events_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: started after every member above exists
};

}  // namespace braid::verbs
