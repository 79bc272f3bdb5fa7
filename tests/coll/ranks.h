// tests/coll/ranks.h — runs a test body as N real processes (fork), each a rank of one
// communicator met through a store in a fresh directory, and collects what each says.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "braid/coll.h"

namespace braid::coll::test {

/// What one rank reported.
struct RankResult {
  int exitCode = -1;  ///< 0: the body returned ""; 1: it returned a failure; 128+n: signal n
  std::string text;   ///< the body's failure text (or the error that stopped it)
};

struct RunOptions {
  CommOptions comm;
  bool tcpStore = false;  ///< rank 0 serves a TCP store (else a file store)
  int timeoutS = 120;     ///< the parent kills ranks still running after this
  /// Called in the child before the communicator is made (e.g. to change its token).
  std::function<void(int rank, CommOptions&)> tweak;
  bool makeComm = true;   ///< false: the body makes its own (gets a null communicator)
};

inline std::string makeTempDir() {
  char tmpl[] = "/tmp/braid-coll-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  return d ? std::string(d) : std::string();
}

/// A port nothing listens on now (bound to 127.0.0.1:0 and released: rank 0's store binds
/// it again right after).
inline uint16_t freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

/// Runs `body(comm, rank, size)` in `size` processes. The body returns "" on success, else
/// what went wrong. Children that outlive RunOptions::timeoutS are killed.
inline std::vector<RankResult> runRanks(
    int size, const std::function<std::string(Communicator*, int, int, const std::string&)>& body,
    const RunOptions& opt = {}) {
  std::string dir = makeTempDir();
  uint16_t port = freePort();
  std::vector<pid_t> pids;
  std::vector<int> pipes;
  for (int r = 0; r < size; ++r) {
    int fds[2];
    if (pipe(fds) != 0) return {};
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      std::string text;
      {
        CommOptions co = opt.comm;
        if (opt.tweak) opt.tweak(r, co);
        std::shared_ptr<Store> store;
        if (opt.tcpStore) {
          TcpStoreOptions t;
          t.host = "127.0.0.1";
          t.port = port;
          t.serve = r == 0;
          t.jobToken = co.context.jobToken.value_or(0);
          t.timeout = std::chrono::milliseconds(co.timeoutMs.value_or(20000));
          auto s = openTcpStore(t);
          if (s) store = *s;
          else text = "store: " + s.status().toString();
        } else {
          auto s = openFileStore(dir);
          if (s) store = *s;
          else text = "store: " + s.status().toString();
        }
        if (text.empty()) {
          std::unique_ptr<Communicator> comm;
          if (opt.makeComm) {
            auto c = Communicator::create(r, size, store, co);
            if (c) comm = std::move(c).value();
            else text = "create: " + c.status().toString();
          }
          if (text.empty()) text = body(comm.get(), r, size, dir);
        }
      }
      ssize_t n = write(fds[1], text.data(), text.size());
      (void)n;
      close(fds[1]);
      _exit(text.empty() ? 0 : 1);
    }
    close(fds[1]);
    pids.push_back(pid);
    pipes.push_back(fds[0]);
  }
  std::vector<RankResult> out(static_cast<size_t>(size));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opt.timeoutS);
  std::vector<bool> done(static_cast<size_t>(size), false), stopped = done;
  size_t left = static_cast<size_t>(size);
  while (left > 0) {
    // Ranks a test stopped (SIGSTOP) are killed once every other rank is done.
    size_t nStopped = 0;
    for (int r = 0; r < size; ++r) nStopped += !done[static_cast<size_t>(r)] && stopped[static_cast<size_t>(r)];
    if (nStopped == left) {
      for (int r = 0; r < size; ++r) {
        if (!done[static_cast<size_t>(r)]) {
          kill(pids[static_cast<size_t>(r)], SIGKILL);
          kill(pids[static_cast<size_t>(r)], SIGCONT);
          stopped[static_cast<size_t>(r)] = false;
        }
      }
    }
    for (int r = 0; r < size; ++r) {
      if (done[static_cast<size_t>(r)]) continue;
      int status = 0;
      pid_t w = waitpid(pids[static_cast<size_t>(r)], &status, WNOHANG | WUNTRACED);
      if (w == 0) continue;
      if (w > 0 && WIFSTOPPED(status)) {
        stopped[static_cast<size_t>(r)] = true;
        continue;
      }
      done[static_cast<size_t>(r)] = true;
      --left;
      auto& res = out[static_cast<size_t>(r)];
      res.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      char buf[4096];
      ssize_t n;
      while ((n = read(pipes[static_cast<size_t>(r)], buf, sizeof(buf))) > 0) {
        res.text.append(buf, static_cast<size_t>(n));
      }
      close(pipes[static_cast<size_t>(r)]);
    }
    if (left > 0 && std::chrono::steady_clock::now() > deadline) {
      for (int r = 0; r < size; ++r) {
        if (!done[static_cast<size_t>(r)]) {
          kill(pids[static_cast<size_t>(r)], SIGCONT);
          kill(pids[static_cast<size_t>(r)], SIGKILL);
          out[static_cast<size_t>(r)].text = "killed by the test after " + std::to_string(opt.timeoutS) + " s";
        }
      }
      deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
    }
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string rm = "rm -rf " + dir;
  int rc = system(rm.c_str());
  (void)rc;
  return out;
}

/// "" when every rank succeeded, else each failing rank's report.
inline std::string failures(const std::vector<RankResult>& rs) {
  std::string s;
  for (size_t r = 0; r < rs.size(); ++r) {
    if (rs[r].exitCode != 0) {
      s += "rank " + std::to_string(r) + " (exit " + std::to_string(rs[r].exitCode) + "): " + rs[r].text + "\n";
    }
  }
  return s;
}

}  // namespace braid::coll::test
