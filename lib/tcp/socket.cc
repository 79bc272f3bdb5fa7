#include "tcp/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"

namespace braid::tcp {
namespace {

Status sysError(const std::string& what, int err) {
  return Status(Code::kSystemError, fmt::format("{}: {} (errno {})", what, std::strerror(err), err));
}

// bind(2) failed: the code says what the caller can do about it, the message what to try.
// EADDRINUSE used to come back as invalid-argument, which blamed the caller's arguments.
Status bindError(const SockAddr& addr, int err) {
  std::string where = addr.toString();
  std::string host = where.substr(0, where.rfind(':'));
  std::string cause = fmt::format("bind {}: {} (errno {})", where, std::strerror(err), err);
  switch (err) {
    case EADDRINUSE:
      return Status(Code::kSystemError,
                    fmt::format("port {} on {} is already in use (another braid_* server?): pick "
                                "another port or stop that process ({})",
                                addr.port(), host, cause));
    case EADDRNOTAVAIL:
      return Status(Code::kNotFound,
                    fmt::format("{} is not an address of this host (its interface is down or "
                                "was renumbered?): check BRAID_SOCKET_IFNAME and `ip addr` ({})",
                                host, cause));
    case EACCES:
      return Status(Code::kSystemError,
                    fmt::format("port {} on {} is privileged: use a port from 1024 up, or run "
                                "with CAP_NET_BIND_SERVICE ({})",
                                addr.port(), host, cause));
    default:
      return sysError(fmt::format("bind {}", where), err);
  }
}

}  // namespace

void Fd::reset() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);  // close(2): errors other than EBADF leave the fd closed on Linux
    fd_ = -1;
  }
}

uint16_t SockAddr::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void SockAddr::setPort(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

std::string SockAddr::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
              sizeof buf);
    return fmt::format("[{}]:{}", buf, port());
  }
  return "<no address>";
}

void SockAddr::toBytes(uint8_t out[16]) const {
  std::memset(out, 0, 16);
  if (family() == AF_INET)
    std::memcpy(out, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, 4);
  if (family() == AF_INET6)
    std::memcpy(out, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, 16);
}

SockAddr SockAddr::fromBytes(int family, const uint8_t bytes[16], uint16_t port) {
  SockAddr a;
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
    s->sin_family = AF_INET;
    std::memcpy(&s->sin_addr, bytes, 4);
    a.len = sizeof(sockaddr_in);
  } else if (family == AF_INET6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
    s->sin6_family = AF_INET6;
    std::memcpy(&s->sin6_addr, bytes, 16);
    a.len = sizeof(sockaddr_in6);
  }
  a.setPort(port);
  return a;
}

Result<SockAddr> SockAddr::resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr)
    return Status(Code::kNotFound, fmt::format("cannot resolve host '{}': {}; give an IP address "
                                               "or a name in /etc/hosts",
                                               host, gai_strerror(rc)));
  SockAddr a;
  std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  a.setPort(port);
  return a;
}

SockAddr SockAddr::any(int family) {
  uint8_t zero[16] = {};
  return fromBytes(family, zero, 0);
}

Status tune(int fd, const SocketTuning& t) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    return sysError("setsockopt(TCP_NODELAY)", errno);
  (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  if (t.bufSize > 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &t.bufSize, sizeof t.bufSize);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &t.bufSize, sizeof t.bufSize);
  }
  if (t.userTimeoutMs > 0) {
    unsigned int ms = static_cast<unsigned int>(t.userTimeoutMs);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    // Liveness is the kernel's, not the application's (docs/protocol.md, "Liveness"): a
    // peer host that stops answering is found by keepalive probes, which its kernel
    // answers even while the process computes for hours without calling braid; with
    // TCP_USER_TIMEOUT set, the connection is dropped once probes or data went
    // unacknowledged for that long, so a dead host is seen about BRAID_TIMEOUT_MS after
    // the last thing heard from it.
    int idle = std::max(1, t.userTimeoutMs / 3000), intvl = std::max(1, t.userTimeoutMs / 6000),
        cnt = 3;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  }
  return Status::ok();
}

Result<Fd> listenOn(const SockAddr& addr, int backlog) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return sysError("socket()", errno);
  int one = 1;
  (void)setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.storage), addr.len) < 0)
    return bindError(addr, errno);
  if (::listen(fd.get(), backlog) < 0) return sysError("listen(" + addr.toString() + ")", errno);
  return fd;
}

Result<Fd> startConnect(const SockAddr& local, const SockAddr& remote, const SocketTuning& t) {
  Fd fd(::socket(remote.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return sysError("socket()", errno);
  BRAID_RETURN_IF_ERROR(tune(fd.get(), t));
  if (local.len != 0 && local.family() == remote.family()) {
    SockAddr l = local;
    l.setPort(0);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&l.storage), l.len) < 0)
      return sysError(fmt::format("bind to rail address {}", l.toString()), errno);
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&remote.storage), remote.len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS) {
    int e = errno;
    return Status(e == ECONNREFUSED ? Code::kConnectionRefused : Code::kSystemError,
                  fmt::format("connect to {}: {}; is the peer listening there?", remote.toString(),
                              std::strerror(e)));
  }
  return fd;
}

Status finishConnect(int fd, const SockAddr& remote) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return sysError("getsockopt", errno);
  if (err == 0) {
    // SO_ERROR is 0 both when connected and while still connecting: ask the peer name.
    sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) return Status::ok();
    return Status(Code::kInProgress, "connecting");
  }
  if (err == EINPROGRESS || err == EALREADY) return Status(Code::kInProgress, "connecting");
  return Status(err == ECONNREFUSED ? Code::kConnectionRefused : Code::kSystemError,
                fmt::format("connect to {}: {}; is the peer listening there?", remote.toString(),
                            std::strerror(err)));
}

Result<Fd> acceptOne(int listenFd, SockAddr* peer, const SocketTuning& t) {
  SockAddr a;
  a.len = sizeof a.storage;
  int fd = ::accept4(listenFd, reinterpret_cast<sockaddr*>(&a.storage), &a.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
      return Status(Code::kInProgress, "no pending connection");
    return sysError("accept", errno);
  }
  Fd owned(fd);
  BRAID_RETURN_IF_ERROR(tune(fd, t));
  if (peer) *peer = a;
  return owned;
}

Result<SockAddr> localAddress(int fd) {
  SockAddr a;
  a.len = sizeof a.storage;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.len) < 0)
    return sysError("getsockname", errno);
  return a;
}

namespace {
Status ioError(const char* op, int e, const std::string& peer) {
  if (e == ECONNRESET || e == EPIPE)
    return Status(Code::kConnectionReset,
                  fmt::format("{} with {}: {} (the peer process died or closed the connection)",
                              op, peer, std::strerror(e)));
  if (e == ETIMEDOUT)
    return Status(Code::kTimedOut,
                  fmt::format("{} with {}: unacknowledged data timed out (TCP_USER_TIMEOUT); the "
                              "peer host or the path to it is down",
                              op, peer));
  return Status(Code::kSystemError, fmt::format("{} with {}: {} (errno {})", op, peer,
                                                std::strerror(e), e));
}
}  // namespace

Result<IoResult> readSome(int fd, void* buf, size_t len, const std::string& peer) {
  IoResult r;
  for (;;) {
    ssize_t n = ::recv(fd, buf, len, 0);
    if (n > 0) {
      r.bytes = static_cast<size_t>(n);
      return r;
    }
    if (n == 0) {
      r.eof = len > 0;
      return r;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.wouldBlock = true;
      return r;
    }
    return ioError("recv", errno, peer);
  }
}

Result<IoResult> writeSomeV(int fd, const iovec* iov, int iovcnt, const std::string& peer) {
  IoResult r;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      r.bytes = static_cast<size_t>(n);
      return r;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.wouldBlock = true;
      return r;
    }
    return ioError("send", errno, peer);
  }
}

}  // namespace braid::tcp
