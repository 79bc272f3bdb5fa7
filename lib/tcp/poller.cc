#include "tcp/poller.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace braid::tcp {

Result<Poller> Poller::create() {
  Poller p;
  p.ep_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  if (!p.ep_.valid())
    return Status(Code::kSystemError, fmt::format("epoll_create1: {}", std::strerror(errno)));
  return p;
}

Status Poller::add(int fd, uint32_t events, Pollable* p) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = p;
  if (epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    return Status(Code::kSystemError, fmt::format("epoll_ctl(ADD): {}", std::strerror(errno)));
  return Status::ok();
}

Status Poller::modify(int fd, uint32_t events, Pollable* p) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = p;
  if (epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev) < 0)
    return Status(Code::kSystemError, fmt::format("epoll_ctl(MOD): {}", std::strerror(errno)));
  return Status::ok();
}

void Poller::remove(int fd) noexcept {
  epoll_event ev{};
  (void)epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, &ev);
}

Result<int> Poller::wait(int timeoutMs) {
  epoll_event evs[64];
  int n = epoll_wait(ep_.get(), evs, 64, timeoutMs);
  if (n < 0) {
    if (errno == EINTR) return 0;
    return Status(Code::kSystemError, fmt::format("epoll_wait: {}", std::strerror(errno)));
  }
  for (int i = 0; i < n; ++i) static_cast<Pollable*>(evs[i].data.ptr)->onEvent(evs[i].events);
  return n;
}

}  // namespace braid::tcp
