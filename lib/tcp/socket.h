// lib/tcp/socket.h — non-blocking TCP sockets: RAII fd, addresses, connect/listen/accept.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>

#include "braid/status.h"

namespace braid::tcp {

/// Owns a file descriptor; closes it on destruction. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

/// An IPv4 or IPv6 socket address.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  void setPort(uint16_t port);
  /// "1.2.3.4:5" or "[::1]:5".
  std::string toString() const;
  /// Address bytes (4 or 16) for the wire.
  void toBytes(uint8_t out[16]) const;
  static SockAddr fromBytes(int family, const uint8_t bytes[16], uint16_t port);
  /// Numeric IPv4/IPv6 or a host name (resolved with getaddrinfo, first result).
  static Result<SockAddr> resolve(const std::string& host, uint16_t port);
  /// The wildcard address of `family` (0.0.0.0 or ::), port 0.
  static SockAddr any(int family);
};

/// Socket tuning for data and control sockets.
struct SocketTuning {
  int bufSize = 0;          ///< SO_SNDBUF/SO_RCVBUF; 0 keeps autotuning
  int userTimeoutMs = 0;    ///< TCP_USER_TIMEOUT: unacknowledged data fails the socket
};

/// Creates a listening socket bound to `addr` (port 0 picks one). Non-blocking.
Result<Fd> listenOn(const SockAddr& addr, int backlog = 128);
/// Starts a non-blocking connect from `local` (port 0) to `remote`. The result is
/// connected or connecting (check with finishConnect once writable).
Result<Fd> startConnect(const SockAddr& local, const SockAddr& remote, const SocketTuning& t);
/// ok when the connect finished, kInProgress while it runs, else the error.
Status finishConnect(int fd, const SockAddr& remote);
/// Accepts one pending connection; kInProgress when none is pending.
Result<Fd> acceptOne(int listenFd, SockAddr* peer, const SocketTuning& t);
/// Applies NODELAY, keepalive, buffer sizes, user timeout.
Status tune(int fd, const SocketTuning& t);
/// Local address of a socket.
Result<SockAddr> localAddress(int fd);

/// Outcome of a non-blocking read/write.
struct IoResult {
  size_t bytes = 0;   ///< moved this call
  bool wouldBlock = false;
  bool eof = false;   ///< peer closed (reads only)
};
/// readv/writev that retry EINTR and map errno to a Status naming `peer`.
Result<IoResult> readSome(int fd, void* buf, size_t len, const std::string& peer);
Result<IoResult> writeSomeV(int fd, const iovec* iov, int iovcnt, const std::string& peer);

}  // namespace braid::tcp
