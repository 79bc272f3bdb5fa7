// Helpers for integration tests: nodes on loopback, endpoint pairs, child processes,
// data patterns.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <memory>
#include <string>

#include "braid/transport.h"

namespace braid::test {

using namespace std::chrono_literals;

/// Options for a context on loopback (child processes build their own from this).
inline ContextOptions loOptions(int timeoutMs = 0) {
  ContextOptions o;
  o.socketIfname = "lo";
  if (timeoutMs) o.timeoutMs = timeoutMs;
  return o;
}

inline std::shared_ptr<Context> makeContext(ContextOptions o = {}) {
  if (!o.socketIfname) o.socketIfname = "lo";
  auto c = Context::create(o);
  INFO(c.status().toString());
  REQUIRE(c.isOk());
  return std::move(c).value();
}

inline std::unique_ptr<Worker> makeWorker(std::shared_ptr<Context> c) {
  auto w = Worker::create(std::move(c));
  REQUIRE(w.isOk());
  return std::move(w).value();
}

/// A listener and a connected client, both on one Worker driven by this thread.
struct LocalPair {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Endpoint> server, client;
};

inline LocalPair connectLocal(ContextOptions o = {}) {
  LocalPair p;
  p.ctx = makeContext(o);
  p.worker = makeWorker(p.ctx);
  auto l = Listener::create(*p.worker);
  REQUIRE(l.isOk());
  p.listener = std::move(l).value();
  auto c = Endpoint::connect(*p.worker, p.listener->address());
  REQUIRE(c.isOk());
  p.client = std::move(c).value();
  auto end = std::chrono::steady_clock::now() + 10s;
  while (!p.server || p.client->connectProgress().code() == Code::kInProgress) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    if (!p.server) {
      auto a = p.listener->accept();
      if (a.isOk()) p.server = std::move(a).value();
      else REQUIRE(a.status().code() == Code::kInProgress);
    }
  }
  REQUIRE(p.client->connectProgress().isOk());
  return p;
}

/// Byte i of message `seed`: cheap, position- and message-dependent.
inline uint8_t patternByte(uint64_t i, uint64_t seed) {
  return static_cast<uint8_t>((i * 131u) ^ (i >> 9) ^ (seed * 71u + 17u));
}
inline void fillPattern(void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<uint8_t*>(buf);
  for (size_t i = 0; i < n; ++i) p[i] = patternByte(i, seed);
}
/// Index of the first wrong byte, or n when all match.
inline size_t checkPattern(const void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<const uint8_t*>(buf);
  for (size_t i = 0; i < n; ++i)
    if (p[i] != patternByte(i, seed)) return i;
  return n;
}

/// A forked child running `fn(pipeWriteFd)`; its return value is the exit code.
struct Child {
  pid_t pid = -1;
  int readFd = -1;
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (readFd >= 0) ::close(readFd);
  }
  /// Exit code, or -signal, or 999 on timeout.
  int wait(std::chrono::milliseconds timeout = 60s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      pid_t r = ::waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      }
      if (std::chrono::steady_clock::now() > end) return 999;
      ::usleep(2000);
    }
  }
};

inline std::unique_ptr<Child> spawn(const std::function<int(int)>& fn) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  auto c = std::make_unique<Child>();
  c->pid = ::fork();
  REQUIRE(c->pid >= 0);
  if (c->pid == 0) {
    ::close(fds[0]);
    int rc = 100;
    try {
      rc = fn(fds[1]);
    } catch (...) {
      rc = 101;
    }
    ::_exit(rc);
  }
  ::close(fds[1]);
  c->readFd = fds[0];
  return c;
}

inline void writeAll(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, b, n);
    if (w <= 0) return;
    b += w;
    n -= static_cast<size_t>(w);
  }
}

inline bool readAll(int fd, void* p, size_t n, int timeoutMs = 30000) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeoutMs) <= 0) return false;
    ssize_t r = ::read(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

/// Child side: a context on loopback, a listener whose address goes to the parent
/// through the pipe, and the one endpoint it accepts. Check `ep` before use.
struct ChildPeer {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Endpoint> ep;

  explicit ChildPeer(int pipeFd, ContextOptions o = loOptions()) {
    auto c = Context::create(o);
    if (!c) return;
    ctx = std::move(c).value();
    auto w = Worker::create(ctx);
    if (!w) return;
    worker = std::move(w).value();
    auto l = Listener::create(*worker);
    if (!l) return;
    listener = std::move(l).value();
    writeAll(pipeFd, listener->address().bytes, Address::kSize);
    auto e = listener->waitAccept(30s);
    if (e) ep = std::move(e).value();
  }
  /// Progresses forever (until the parent kills this process).
  [[noreturn]] void spin() {
    for (;;) (void)worker->waitAndProgress(std::chrono::milliseconds(1));
  }
};

/// Parent side: read the child's address and connect.
inline std::unique_ptr<Endpoint> connectToChild(Worker& w, Child& c) {
  Address a;
  REQUIRE(readAll(c.readFd, a.bytes, Address::kSize));
  auto ep = Endpoint::connect(w, a);
  REQUIRE(ep.isOk());
  Status st = (*ep)->waitConnected(30s);
  INFO(st.toString());
  REQUIRE(st.isOk());
  return std::move(ep).value();
}

inline size_t openFdCount() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

}  // namespace braid::test
