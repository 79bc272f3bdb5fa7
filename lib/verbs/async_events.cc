#include "verbs/async_events.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <vector>
#include <system_error>

#include "core/log.h"

namespace braid::verbs {

const char* asyncEventName(int type) {
  // enum ibv_event_type, in verbs.h order.
  static const char* const kNames[] = {
      "IBV_EVENT_CQ_ERR",
      "IBV_EVENT_QP_FATAL",
      "IBV_EVENT_QP_REQ_ERR",
      "IBV_EVENT_QP_ACCESS_ERR",
      "IBV_EVENT_COMM_EST",
      "IBV_EVENT_SQ_DRAINED",
      "IBV_EVENT_PATH_MIG",
      "IBV_EVENT_PATH_MIG_ERR",
      "IBV_EVENT_DEVICE_FATAL",
      "IBV_EVENT_PORT_ACTIVE",
      "IBV_EVENT_PORT_ERR",
      "IBV_EVENT_LID_CHANGE",
      "IBV_EVENT_PKEY_CHANGE",
      "IBV_EVENT_SM_CHANGE",
      "IBV_EVENT_SRQ_ERR",
      "IBV_EVENT_SRQ_LIMIT_REACHED",
      "IBV_EVENT_QP_LAST_WQE_REACHED",
      "IBV_EVENT_CLIENT_REREGISTER",
      "IBV_EVENT_GID_CHANGE",
      "IBV_EVENT_WQ_FATAL",
  };
  if (type >= 0 && type < static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) return kNames[type];
  return "IBV_EVENT_UNKNOWN";
}

Status AsyncWatcher::portStatus(int port) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!deviceFailed_.isOk()) return deviceFailed_;
  auto it = portsFailed_.find(port);
  return it == portsFailed_.end() ? Status::ok() : it->second;
}

Status AsyncWatcher::qpStatus(uint32_t qpn) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!deviceFailed_.isOk()) return deviceFailed_;
  auto it = qpsFailed_.find(qpn);
  return it == qpsFailed_.end() ? Status::ok() : it->second;
}

Status AsyncWatcher::cqStatus(const ibv_cq* cq) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!deviceFailed_.isOk()) return deviceFailed_;
  auto it = cqsFailed_.find(cq);
  return it == cqsFailed_.end() ? Status::ok() : it->second;
}

Status AsyncWatcher::deviceStatus() const {
  std::lock_guard<std::mutex> lk(mu_);
  return deviceFailed_;
}

void AsyncWatcher::forgetQp(uint32_t qpn) {
  std::lock_guard<std::mutex> lk(mu_);
  qpsFailed_.erase(qpn);
}

AsyncWatcher::CounterSamples AsyncWatcher::counterSamples(int port) {
  std::lock_guard<std::mutex> lk(mu_);
  return counters_[port].s;
}

void AsyncWatcher::sampleCounters() noexcept {
  try {
    std::vector<int> ports;
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& [port, x] : counters_) ports.push_back(port);
    }
    for (int port : ports) {
      auto c = readPortCounters(device_, port);  // sysfs reads: outside the lock
      if (!c) continue;
      std::lock_guard<std::mutex> lk(mu_);
      Sampled& x = counters_[port];
      if (x.taken++ == 0) x.s.first = x.s.cur = *c;
      x.s.prev = std::move(x.s.cur);
      x.s.cur = std::move(c).value();
      x.s.valid = x.taken >= 2;
    }
  } catch (...) {  // an allocation failure costs a sample, never the thread
  }
}

AsyncWatcher::~AsyncWatcher() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

#if BRAID_HAVE_VERBS

static_assert(IBV_EVENT_CQ_ERR == 0 && IBV_EVENT_DEVICE_FATAL == 8 && IBV_EVENT_PORT_ERR == 10 &&
                  IBV_EVENT_WQ_FATAL == 19,
              "asyncEventName's table follows enum ibv_event_type");

void AsyncWatcher::run() noexcept {
  while (!stop_.load(std::memory_order_acquire)) {
    const uint64_t now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now().time_since_epoch())
            .count());
    if (now - lastSampleNs_ >= 100'000'000ull) {
      lastSampleNs_ = now;
      sampleCounters();
    }
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, 100);  // bounded, so the destructor's stop is seen promptly
    if (rc < 0) {
      if (errno == EINTR) continue;
      try {
        BRAID_LOG_ERROR(kVerbs,
                        "{}: poll on the async event fd failed: {}; async events are "
                        "no longer watched",
                        device_, errnoText(errno));
      } catch (...) {
      }
      return;
    }
    if (rc == 0) continue;
    if ((pfd.revents & (POLLERR | POLLNVAL)) != 0 && (pfd.revents & POLLIN) == 0) {
      try {
        BRAID_LOG_ERROR(kVerbs,
                        "{}: the async event fd reports an error; async events are no "
                        "longer watched",
                        device_);
      } catch (...) {
      }
      return;
    }
    // The descriptor is non-blocking: drain every queued event, stop at EAGAIN.
    for (;;) {
      if (stop_.load(std::memory_order_acquire)) break;
      ibv_async_event event{};
      if (lib_->getAsyncEvent(context_, &event) != 0) break;
      try {
        handle(event);
      } catch (...) {
        // Out of memory while logging or recording: the event is still acknowledged.
      }
      // ibv_get_async_event(3): every event must be acknowledged, or destroying the QP/CQ
      // it names waits for ever. Its element pointer is not used after this.
      lib_->ackAsyncEvent(&event);
      events_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

void AsyncWatcher::handle(ibv_async_event& event) {
  int type = event.event_type;
  const char* name = asyncEventName(type);
  const char* text = lib_->eventTypeStr != nullptr ? lib_->eventTypeStr(event.event_type) : "";
  auto railFailed = [&](const std::string& where) {
    return Status(Code::kRailFailed,
                  fmt::format("{}: {} ({})", where, name, text != nullptr ? text : ""));
  };
  switch (event.event_type) {
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_QP_REQ_ERR:
    case IBV_EVENT_QP_ACCESS_ERR: {
      uint32_t qpn = event.element.qp != nullptr ? event.element.qp->qp_num : 0;
      Status st = railFailed(fmt::format("{} QP {}", device_, qpn));
      BRAID_LOG_ERROR(kVerbs, "async event: {}", st.message());
      std::lock_guard<std::mutex> lk(mu_);
      qpsFailed_[qpn] = std::move(st);
      break;
    }
    case IBV_EVENT_CQ_ERR: {
      Status st =
          railFailed(fmt::format("{} CQ {}", device_, static_cast<const void*>(event.element.cq)));
      BRAID_LOG_ERROR(kVerbs, "async event: {} (a CQ overran: its QPs are unusable)", st.message());
      std::lock_guard<std::mutex> lk(mu_);
      cqsFailed_[event.element.cq] = std::move(st);
      break;
    }
    case IBV_EVENT_PORT_ERR: {
      Status st = railFailed(fmt::format("{} port {}", device_, event.element.port_num));
      BRAID_LOG_ERROR(kVerbs, "async event: {}", st.message());
      std::lock_guard<std::mutex> lk(mu_);
      portsFailed_[event.element.port_num] = std::move(st);
      break;
    }
    case IBV_EVENT_PORT_ACTIVE: {
      BRAID_LOG_WARN(kVerbs, "async event: {} port {}: {} ({})", device_, event.element.port_num,
                     name, text != nullptr ? text : "");
      std::lock_guard<std::mutex> lk(mu_);
      portsFailed_.erase(event.element.port_num);
      break;
    }
    case IBV_EVENT_DEVICE_FATAL: {
      Status st = railFailed(fmt::format("{} (every port and QP)", device_));
      BRAID_LOG_ERROR(kVerbs, "async event: {}", st.message());
      std::lock_guard<std::mutex> lk(mu_);
      deviceFailed_ = std::move(st);
      break;
    }
    case IBV_EVENT_LID_CHANGE:
    case IBV_EVENT_PKEY_CHANGE:
    case IBV_EVENT_SM_CHANGE:
    case IBV_EVENT_CLIENT_REREGISTER:
    case IBV_EVENT_GID_CHANGE:
      BRAID_LOG_INFO(kVerbs, "async event: {} port {}: {} ({})", device_, event.element.port_num,
                     name, text != nullptr ? text : "");
      break;
    case IBV_EVENT_COMM_EST:
    case IBV_EVENT_SQ_DRAINED:
    case IBV_EVENT_PATH_MIG:
    case IBV_EVENT_PATH_MIG_ERR:
    case IBV_EVENT_QP_LAST_WQE_REACHED:
      BRAID_LOG_INFO(kVerbs, "async event: {} QP {}: {} ({})", device_,
                     event.element.qp != nullptr ? event.element.qp->qp_num : 0, name,
                     text != nullptr ? text : "");
      break;
    default:
      BRAID_LOG_WARN(kVerbs, "async event: {}: {} ({})", device_, name,
                     text != nullptr ? text : "");
      break;
  }
}

Result<std::unique_ptr<AsyncWatcher>> AsyncWatcher::start(const Lib& lib, Context& context) {
  if (!context) return Status(Code::kInvalidArgument, "AsyncWatcher::start on an empty Context");
  int fd = context.asyncFd();
  // ibv_get_async_event(3) blocks by default; made non-blocking (as the man page shows,
  // with fcntl) so the thread can wait in poll() with a timeout and stop when asked.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return Status(Code::kSystemError,
                  fmt::format("{}: cannot make the async event fd {} non-blocking: {}",
                              context.name(), fd, errnoText(errno)));
  std::unique_ptr<AsyncWatcher> w(new AsyncWatcher(lib, context.get(), context.name(), fd));
  try {
    w->thread_ = std::thread([p = w.get()] { p->run(); });
  } catch (const std::system_error& e) {
    return Status(Code::kSystemError, fmt::format("{}: cannot start the async event thread: {}",
                                                  context.name(), e.what()));
  }
  return w;
}

#else  // !BRAID_HAVE_VERBS

Result<std::unique_ptr<AsyncWatcher>> AsyncWatcher::start(const Lib&, Context&) {
  return builtWithoutVerbs("AsyncWatcher::start");
}

#endif  // BRAID_HAVE_VERBS

}  // namespace braid::verbs
