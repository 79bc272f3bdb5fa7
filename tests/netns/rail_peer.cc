// A peer process for the network-namespace tests: `rail_peer server PORT` or
// `rail_peer client HOST PORT [MESSAGES] [MIB] [DEPTH]`. The client sends validated
// messages (DEPTH of them in flight, 1 by default); the server checks them and answers a
// verdict; the client prints bytes sent per rail as "rail <i> bytes <n>" lines, then
// "stats rail <i> ..." lines (each rail's state, failures, chunks, bytes since it last
// rejoined after a failure, "since-rejoin", and its events), and exits 0 only when all
// arrived. RAIL_PEER_PAUSE=EVERY:MS makes the client stop after every EVERY messages until
// all it sent has finished, and progress MS milliseconds with nothing in flight (a pause
// between transfers, which a return from TCP to RDMA waits for).
#include <braid/transport.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
uint8_t pat(uint64_t i, uint64_t seed) { return static_cast<uint8_t>((i * 131u) ^ (i >> 9) ^ (seed * 71u + 17u)); }

int fail(const char* what, const braid::Status& st) {
  std::fprintf(stderr, "rail_peer: %s: %s\n", what, st.toString().c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3)
    return std::fprintf(stderr, "usage: rail_peer server PORT | client HOST PORT [N] [MIB] [DEPTH]\n"), 2;
  bool server = std::strcmp(argv[1], "server") == 0;
  auto ctx = braid::Context::create();
  if (!ctx) return fail("context", ctx.status());
  auto w = braid::Worker::create(*ctx);
  if (!w) return fail("worker", w.status());
  const uint64_t token = 0x7261696c;
  if (server) {
    braid::ListenOptions lo;
    lo.port = static_cast<uint16_t>(std::atoi(argv[2]));
    lo.jobToken = token;
    auto l = braid::Listener::create(**w, lo);
    if (!l) return fail("listen", l.status());
    auto ep = (*l)->waitAccept(60s);
    if (!ep) return fail("accept", ep.status());
    uint64_t hdr[3];
    auto h = (*ep)->irecv(hdr, sizeof hdr, 1);
    if (!h || !h->wait(60s).isOk()) return fail("header", h ? h->wait(0ms) : h.status());
    const uint64_t depth = hdr[2];
    std::vector<std::vector<uint8_t>> bufs(depth, std::vector<uint8_t>(hdr[1]));
    std::vector<braid::Request> reqs(depth);
    uint8_t ok = 1;
    // Up to `depth` receives posted; message m lands in buffer m % depth.
    for (uint64_t m = 0; m < hdr[0] + depth; ++m) {
      std::vector<uint8_t>& buf = bufs[m % depth];
      if (m >= depth) {
        const uint64_t done = m - depth;
        braid::Status st = reqs[m % depth].wait(30s);
        if (!st.isOk()) return fail("receive", st);
        for (uint64_t i = 0; i < buf.size(); ++i)
          if (buf[i] != pat(i, done)) { ok = 0; break; }
      }
      if (m >= hdr[0]) continue;
      auto r = (*ep)->irecv(buf.data(), buf.size(), 2);
      if (!r) return fail("irecv", r.status());
      reqs[m % depth] = std::move(r).value();
    }
    auto v = (*ep)->isend(&ok, 1, 3);
    if (!v || !v->wait(60s).isOk()) return fail("verdict", v ? v->wait(0ms) : v.status());
    std::printf("server: %s\n", ok ? "all messages intact" : "CORRUPTED data");
    return ok ? 0 : 1;
  }
  if (argc < 4) return 2;
  uint64_t n = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 8;
  uint64_t mib = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 16;
  uint64_t depth = argc > 6 ? std::max<uint64_t>(1, std::strtoull(argv[6], nullptr, 10)) : 1;
  auto a = braid::Address::fromHostPort(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), token);
  if (!a) return fail("address", a.status());
  std::unique_ptr<braid::Endpoint> ep;
  for (int attempt = 0; attempt < 100 && !ep; ++attempt) {  // the server may not be up yet
    auto c = braid::Endpoint::connect(**w, *a);
    if (c && (*c)->waitConnected(10s).isOk()) ep = std::move(c).value();
    else std::this_thread::sleep_for(100ms);
  }
  if (!ep) return std::fprintf(stderr, "rail_peer: could not connect\n"), 1;
  std::printf("client: %zu rails\n", ep->railCount());
  uint64_t hdr[3] = {n, mib << 20, depth};
  auto h = ep->isend(hdr, sizeof hdr, 1);
  std::vector<std::vector<uint8_t>> bufs(depth, std::vector<uint8_t>(hdr[1]));
  std::vector<braid::Request> sends(depth);
  // Per rail: the bytes it had sent when it last came back after a failure (-1: never).
  std::vector<int64_t> atRejoin;
  std::vector<uint64_t> failures;
  uint64_t pauseEvery = 0, pauseMs = 0;
  if (const char* p = std::getenv("RAIL_PEER_PAUSE"); p != nullptr && std::strchr(p, ':')) {
    pauseEvery = std::strtoull(p, nullptr, 10);
    pauseMs = std::strtoull(std::strchr(p, ':') + 1, nullptr, 10);
  }
  // Up to `depth` sends in flight; message m goes from buffer m % depth.
  for (uint64_t m = 0; m < n + depth; ++m) {
    if (m >= depth) {
      braid::Status st = sends[m % depth].wait(30s);
      if (!st.isOk()) return fail("send", st);
    }
    if (pauseEvery > 0 && m > 0 && m < n && m % pauseEvery == 0) {
      for (uint64_t j = m > depth ? m - depth + 1 : 0; j < m; ++j) {
        braid::Status st = sends[j % depth].wait(30s);
        if (!st.isOk()) return fail("send", st);
      }
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(pauseMs);
      while (std::chrono::steady_clock::now() < end) {
        auto r = (*w)->waitAndProgress(10ms);
        if (!r) return fail("progress", r.status());
      }
    }
    if (m < n) {
      std::vector<uint8_t>& buf = bufs[m % depth];
      for (uint64_t i = 0; i < buf.size(); ++i) buf[i] = pat(i, m);
      auto s = ep->isend(buf.data(), buf.size(), 2);
      if (!s) return fail("isend", s.status());
      sends[m % depth] = std::move(s).value();
    }
    const braid::EndpointStats es = ep->stats();
    atRejoin.resize(es.rails.size(), -1);
    failures.resize(es.rails.size(), 0);
    for (size_t r = 0; r < es.rails.size(); ++r) {
      const braid::RailStats& rs = es.rails[r];
      if (rs.failures > failures[r] && rs.state != "down") {  // it came back
        failures[r] = rs.failures;
        atRejoin[r] = static_cast<int64_t>(rs.bytesSent);
        std::printf("client: message %llu: rail %zu is %s again\n",
                    static_cast<unsigned long long>(m), r, rs.state.c_str());
        std::fflush(stdout);
      }
    }
  }
  uint8_t ok = 0;
  auto v = ep->irecv(&ok, 1, 3);
  if (!v || !v->wait(60s).isOk()) return fail("verdict", v ? v->wait(0ms) : v.status());
  auto stats = ep->stats();
  for (size_t r = 0; r < stats.bytesSentPerRail.size(); ++r)
    std::printf("rail %zu bytes %llu\n", r, static_cast<unsigned long long>(stats.bytesSentPerRail[r]));
  for (size_t r = 0; r < stats.rails.size(); ++r) {
    const braid::RailStats& rs = stats.rails[r];
    std::printf("stats rail %zu state %s failures %llu chunks %llu", r, rs.state.c_str(),
                static_cast<unsigned long long>(rs.failures),
                static_cast<unsigned long long>(rs.chunks));
    if (r < atRejoin.size() && atRejoin[r] >= 0)
      std::printf(" since-rejoin %llu",
                  static_cast<unsigned long long>(rs.bytesSent - static_cast<uint64_t>(atRejoin[r])));
    std::printf("\n");
    for (const braid::RailEvent& e : rs.events)
      std::printf("stats rail %zu event %lld %s: %s\n", r, static_cast<long long>(e.unixMs),
                  e.state.c_str(), e.cause.c_str());
  }
  std::printf("client: server says %s\n", ok ? "intact" : "CORRUPTED");
  return ok ? 0 : 1;
}
