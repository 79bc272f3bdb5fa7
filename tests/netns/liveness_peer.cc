// A peer process for tests/netns/dead_host.sh: `liveness_peer server PORT` or
// `liveness_peer client HOST PORT`. Liveness is the kernel's (docs/protocol.md, "Liveness"):
//  1. a peer that stops calling braid (here: blocked reading stdin, and SIGSTOPped by the
//     script) for several BRAID_TIMEOUT_MS stays connected, and its late message arrives;
//  2. once the link to the peer host is cut, a receive that is waiting fails on both sides
//     within a few BRAID_TIMEOUT_MS, with an error, instead of hanging until the caller's
//     own (long) timeout.
// Each side prints "<side>: ..." lines the script checks and exits 0 when both held.
#include <braid/transport.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {
constexpr uint64_t kToken = 0x6c697665;

int fail(const char* side, const char* what, const braid::Status& st) {
  std::printf("%s: FAIL: %s: %s\n", side, what, st.toString().c_str());
  std::fflush(stdout);
  return 1;
}

long long msSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Waits for a receive that never gets its message: the endpoint must fail it once the link is
// cut. Returns 0 when it failed (not by the 120 s wait bound) and prints how long it took.
int awaitDeath(const char* side, braid::Endpoint& ep) {
  uint64_t never = 0;
  auto r = ep.irecv(&never, sizeof never, 99);
  if (!r) return fail(side, "irecv", r.status());
  auto t0 = Clock::now();
  braid::Status st = r->wait(120s);
  long long ms = msSince(t0);
  if (st.isOk()) return fail(side, "a message arrived over a cut link", st);
  if (ms >= 110000) return fail(side, "the receive was not failed before the wait's own bound", st);
  std::printf("%s: receive failed after %lld ms: %s\n", side, ms, st.toString().c_str());
  std::printf("%s: endpoint %s\n", side, ep.error().isOk() ? "still reports ok" : "failed");
  std::fflush(stdout);
  return ep.error().isOk() ? 1 : 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return std::fprintf(stderr, "usage: liveness_peer server PORT | client HOST PORT\n"), 2;
  const bool server = std::strcmp(argv[1], "server") == 0;
  const char* side = server ? "server" : "client";
  auto ctx = braid::Context::create();
  if (!ctx) return fail(side, "context", ctx.status());
  auto w = braid::Worker::create(*ctx);
  if (!w) return fail(side, "worker", w.status());
  std::printf("%s: BRAID_TIMEOUT_MS %d\n", side, (*ctx)->timeoutMs());

  if (server) {
    braid::ListenOptions lo;
    lo.port = static_cast<uint16_t>(std::atoi(argv[2]));
    lo.jobToken = kToken;
    auto l = braid::Listener::create(**w, lo);
    if (!l) return fail(side, "listen", l.status());
    auto ep = (*l)->waitAccept(60s);
    if (!ep) return fail(side, "accept", ep.status());
    // Both sides fully connected before the client goes quiet.
    uint64_t hello = 0;
    auto h = (*ep)->irecv(&hello, sizeof hello, 1);
    if (!h || !h->wait(60s).isOk()) return fail(side, "hello", h ? h->wait(0ms) : h.status());
    auto a = (*ep)->isend(&hello, sizeof hello, 1);
    if (!a || !a->wait(60s).isOk()) return fail(side, "hello reply", a ? a->wait(0ms) : a.status());
    // 1. The client now computes (is stopped) for several timeouts, then sends.
    uint64_t late = 0;
    auto r = (*ep)->irecv(&late, sizeof late, 2);
    if (!r) return fail(side, "irecv", r.status());
    auto t0 = Clock::now();
    braid::Status st = r->wait(120s);
    if (!st.isOk()) return fail(side, "the quiet peer's message", st);
    if (late != 0x600d) return fail(side, "the quiet peer's message is wrong", braid::Status::ok());
    std::printf("server: the quiet peer's message arrived after %lld ms; endpoint ok\n", msSince(t0));
    std::fflush(stdout);
    // 2. The script cuts the link now.
    return awaitDeath(side, **ep);
  }

  if (argc < 4) return 2;
  auto addr = braid::Address::fromHostPort(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), kToken);
  if (!addr) return fail(side, "address", addr.status());
  std::unique_ptr<braid::Endpoint> ep;
  for (int attempt = 0; attempt < 100 && !ep; ++attempt) {  // the server may not be up yet
    auto c = braid::Endpoint::connect(**w, *addr);
    if (c && (*c)->waitConnected(10s).isOk()) ep = std::move(c).value();
    else std::this_thread::sleep_for(100ms);
  }
  if (!ep) return std::printf("client: FAIL: could not connect\n"), 1;
  uint64_t hello = 1;
  auto h = ep->isend(&hello, sizeof hello, 1);
  if (!h || !h->wait(60s).isOk()) return fail(side, "hello", h ? h->wait(0ms) : h.status());
  auto a = ep->irecv(&hello, sizeof hello, 1);
  if (!a || !a->wait(60s).isOk()) return fail(side, "hello reply", a ? a->wait(0ms) : a.status());
  std::printf("client: ready\n");
  std::fflush(stdout);
  // Quiet: no braid call until the script says go (it also SIGSTOPs this process meanwhile).
  char line[16];
  if (!std::fgets(line, sizeof line, stdin)) return std::printf("client: FAIL: no go\n"), 1;
  uint64_t late = 0x600d;
  auto s = ep->isend(&late, sizeof late, 2);
  if (!s || !s->wait(60s).isOk()) return fail(side, "late send", s ? s->wait(0ms) : s.status());
  std::printf("client: sent after being quiet; endpoint %s\n", ep->error().isOk() ? "ok" : "failed");
  std::fflush(stdout);
  return awaitDeath(side, *ep);
}
