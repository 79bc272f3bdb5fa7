// lib/tcp/poller.h — the epoll loop shared by every socket of a Worker.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "braid/status.h"
#include "tcp/socket.h"

namespace braid::tcp {

/// Something registered with a Poller. Its events arrive in onEvent().
class Pollable {
 public:
  virtual ~Pollable() = default;
  virtual void onEvent(uint32_t events) = 0;
};

/// Level-triggered epoll set. Not thread-safe.
class Poller {
 public:
  static Result<Poller> create();
  Status add(int fd, uint32_t events, Pollable* p);
  Status modify(int fd, uint32_t events, Pollable* p);
  void remove(int fd) noexcept;
  /// Waits up to timeoutMs (0: poll) and dispatches; returns events handled.
  Result<int> wait(int timeoutMs);

 private:
  Fd ep_;
};

}  // namespace braid::tcp
