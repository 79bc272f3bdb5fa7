// tcp_pingpong — the floor braid_send_lat is compared with: plain blocking TCP sockets,
// TCP_NODELAY, one write and one read per half round trip. Not installed; used by
// perf/bench_tcp.sh.
//
//   server:  tcp_pingpong [-p PORT] [-s SIZE] [-b]
//   client:  tcp_pingpong [-p PORT] [-s SIZE] [-n ITERS] [-b] HOST
// The client prints "median_us X avg_us Y min_us Z iters N size S" (half round trips).
// -b reads with MSG_DONTWAIT in a loop (busy polling, like braid_send_lat's default)
// instead of sleeping in recv(): on a VM an idle vCPU's wake-up can cost tens of us.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int die(const char* what) {
  std::fprintf(stderr, "tcp_pingpong: %s: %s\n", what, std::strerror(errno));
  return 1;
}

bool busy = false;

// Moves exactly n bytes (a message may arrive in pieces).
bool full(int fd, char* p, size_t n, bool write) {
  while (n > 0) {
    ssize_t r = write ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, busy ? MSG_DONTWAIT : 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 18600;
  size_t size = 8;
  long iters = 100000, warmup = 1000;
  std::string host;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-b") {
      busy = true;
    } else if ((a == "-p" || a == "-s" || a == "-n") && i + 1 < argc) {
      long v = std::strtol(argv[++i], nullptr, 0);
      if (v <= 0) return std::fprintf(stderr, "tcp_pingpong: bad value for %s\n", a.c_str()), 2;
      if (a == "-p") port = static_cast<int>(v);
      if (a == "-s") size = static_cast<size_t>(v);
      if (a == "-n") iters = v;
    } else if (!a.empty() && a[0] != '-' && host.empty()) {
      host = a;
    } else {
      std::fprintf(stderr, "usage: tcp_pingpong [-p PORT] [-s SIZE] [-n ITERS] [-b] [HOST]\n");
      return 2;
    }
  }
  int fd = -1;
  if (host.empty()) {
    int l = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return die("bind");
    if (::listen(l, 1) < 0) return die("listen");
    fd = ::accept(l, nullptr, nullptr);
    ::close(l);
    if (fd < 0) return die("accept");
  } else {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
      return std::fprintf(stderr, "tcp_pingpong: cannot resolve %s\n", host.c_str()), 1;
    for (int attempt = 0;; ++attempt) {  // the server may not be listening yet
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
      ::close(fd);
      if (attempt == 50) return die("connect");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    freeaddrinfo(res);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<char> buf(size);
  std::vector<double> us;
  us.reserve(static_cast<size_t>(iters));
  if (host.empty()) {  // server: echo until the client closes
    while (full(fd, buf.data(), size, false))
      if (!full(fd, buf.data(), size, true)) return die("echo");
    ::close(fd);
    return 0;
  }
  for (long i = 0; i < warmup + iters; ++i) {
    auto t1 = std::chrono::steady_clock::now();
    if (!full(fd, buf.data(), size, true) || !full(fd, buf.data(), size, false)) return die("ping");
    auto t2 = std::chrono::steady_clock::now();
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count() / 2);
  }
  ::close(fd);
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  std::printf("median_us %.3f avg_us %.3f min_us %.3f iters %ld size %zu\n", us[us.size() / 2],
              sum / static_cast<double>(us.size()), us.front(), iters, size);
  return 0;
}
