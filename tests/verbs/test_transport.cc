// The verbs data path on real Soft-RoCE devices (run inside the VM by
// tests/softroce/verbs_transport.sh): two processes, each with a verbs Context over every
// rxe device, a TCP control connection on loopback. Inside the VM a missing device is a
// failure, never a skip.
#include <signal.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "../integration/support.h"

using namespace braid;
using namespace braid::test;

namespace {

constexpr uint64_t kVerdictTag = 0xFFFF0000;
constexpr uint64_t kEagerMax = 4096;

ContextOptions verbsOptions(int timeoutMs = 20000) {
  ContextOptions o = loOptions(timeoutMs);
  o.transport = Transport::kVerbs;
  o.eagerMax = kEagerMax;
  o.chunkSize = 256 * 1024;
  return o;
}

/// Parent side: a verbs context, a worker and an endpoint connected to the child.
struct Parent {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Endpoint> ep;
  explicit Parent(Child& child, ContextOptions o = verbsOptions()) {
    ctx = makeContext(o);
    REQUIRE(ctx->transport() == Transport::kVerbs);
    worker = makeWorker(ctx);
    ep = connectToChild(*worker, child);
    REQUIRE(ep->railCount() >= 1);
  }
};

}  // namespace

TEST_CASE("the verbs context finds every rxe device as a rail") {
  auto ctx = makeContext(verbsOptions());
  CHECK(ctx->transport() == Transport::kVerbs);
  int verbsRails = 0;
  for (const RailInfo& r : ctx->rails()) {
    if (r.transport != Transport::kVerbs) continue;
    ++verbsRails;
    INFO(r.name << " " << r.address);
    CHECK(r.name.rfind("rxe", 0) == 0);
    CHECK(r.address.rfind("::ffff:10.7", 0) == 0);  // RoCE v2, IPv4-mapped
    CHECK(r.gidIndex >= 1);                          // index 0 is the link-local GID
    CHECK(r.linkLayer == "Ethernet");
    CHECK(r.mtuBytes >= 1024);
  }
  CHECK(verbsRails == 2);
}

TEST_CASE("messages of 0 B to 8 MiB cross the verbs rails intact between two processes") {
  const std::vector<size_t> sizes = {0,         1,   kEagerMax - 1, kEagerMax, kEagerMax + 1,
                                     (1u << 20) + 13, 8u << 20};
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    if (ep->railCount() != 2) return 14;
    std::vector<uint8_t> buf((8u << 20) + 64);
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::memset(buf.data(), 0xEE, sizes[i] + 64);
      auto r = ep->irecv(buf.data(), buf.size(), 7);
      if (!r || !r->wait(60s).isOk()) return 12;
      uint8_t ok = r->size() == sizes[i] && checkPattern(buf.data(), sizes[i], i) == sizes[i];
      auto v = ep->isend(&ok, 1, kVerdictTag);
      if (!v || !v->wait(30s).isOk()) return 13;
    }
    return 0;
  });
  Parent p(*child);
  CHECK(p.ep->railCount() == 2);
  std::vector<uint8_t> msg(8u << 20);
  for (size_t i = 0; i < sizes.size(); ++i) {
    fillPattern(msg.data(), sizes[i], i);
    auto s = p.ep->isend(msg.data(), sizes[i], 7);
    REQUIRE(s.isOk());
    uint8_t verdict = 0;
    auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
    REQUIRE(v.isOk());
    Status st = s->wait(60s);
    INFO("size " << sizes[i] << ": " << st.toString());
    REQUIRE(st.isOk());
    REQUIRE(v->wait(60s).isOk());
    CHECK(verdict == 1);
  }
  // Large messages were striped: both rails carried payload.
  auto stats = p.ep->stats();
  REQUIRE(stats.bytesSentPerRail.size() == 2);
  CHECK(stats.bytesSentPerRail[0] > 0);
  CHECK(stats.bytesSentPerRail[1] > 0);
  CHECK(child->wait() == 0);
}

TEST_CASE("256 messages in flight over 16 tags match per tag over verbs") {
  constexpr int kTags = 16, kPerTag = 16;
  constexpr size_t kSize = 3 * kEagerMax;  // rendezvous: every one needs a CTS and a FIN
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(kTags * kPerTag * kSize);
    std::vector<Request> reqs;
    // Posted tag by tag, last tag first: not the order the sender uses.
    for (int t = kTags - 1; t >= 0; --t)
      for (int k = 0; k < kPerTag; ++k) {
        auto r = ep->irecv(buf.data() + (t * kPerTag + k) * kSize, kSize, 100 + t);
        if (!r) return 12;
        reqs.push_back(std::move(r).value());
      }
    for (auto& r : reqs)
      if (!r.wait(60s).isOk()) return 13;
    for (int t = 0; t < kTags; ++t)
      for (int k = 0; k < kPerTag; ++k)
        if (checkPattern(buf.data() + (t * kPerTag + k) * kSize, kSize, t * 1000 + k) != kSize)
          return 14;
    uint8_t ok = 1;
    auto v = ep->isend(&ok, 1, kVerdictTag);
    return v && v->wait(30s).isOk() ? 0 : 15;
  });
  Parent p(*child);
  std::vector<uint8_t> buf(kTags * kPerTag * kSize);
  std::vector<Request> reqs;
  for (int k = 0; k < kPerTag; ++k)
    for (int t = 0; t < kTags; ++t) {
      uint8_t* m = buf.data() + (t * kPerTag + k) * kSize;
      fillPattern(m, kSize, t * 1000 + k);
      auto s = p.ep->isend(m, kSize, 100 + t);
      REQUIRE(s.isOk());
      reqs.push_back(std::move(s).value());
    }
  for (auto& r : reqs) REQUIRE(r.wait(60s).isOk());
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v.isOk());
  REQUIRE(v->wait(60s).isOk());
  CHECK(verdict == 1);
  CHECK(child->wait() == 0);
}

TEST_CASE("a message larger than the posted receive fails the receive with truncation over "
          "verbs, and the send too when it is a rendezvous") {
  constexpr uint64_t kReadyTag = 0xFFFF0001;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> small(64 * 1024 + 64, 0xAB);
    auto untouched = [&](size_t from) {
      for (size_t i = from; i < small.size(); ++i)
        if (small[i] != 0xAB) return false;
      return true;
    };
    auto r = ep->irecv(small.data(), 64 * 1024, 1);  // rendezvous-sized, too small
    if (!r) return 12;
    Status st = r->wait(30s);
    if (st.code() != Code::kTruncated) return 13;
    if (!untouched(64 * 1024)) return 14;  // nothing written past the buffer
    // Eager-sized and too small: the receive fails, nothing lands past 100 bytes.
    auto r2 = ep->irecv(small.data(), 100, 2);
    if (!r2 || r2->wait(30s).code() != Code::kTruncated) return 15;
    if (!untouched(100)) return 16;
    // A rendezvous message meets an eager-only receive posted before its announcement.
    auto r3 = ep->irecv(small.data(), 100, 3);
    if (!r3) return 17;
    uint8_t one = 1;
    auto ready = ep->isend(&one, 1, kReadyTag);
    if (!ready || !ready->wait(30s).isOk()) return 18;
    if (r3->wait(30s).code() != Code::kTruncated || !untouched(100)) return 19;
    // ... and one posted after its announcement: the parent's "go" follows its
    // announcement on the same queue pair, so once it is in, the announcement is too.
    uint8_t go = 0;
    auto g = ep->irecv(&go, 1, kReadyTag);
    if (!g || !g->wait(30s).isOk()) return 20;
    auto r4 = ep->irecv(small.data(), 100, 4);
    if (!r4 || r4->wait(30s).code() != Code::kTruncated || !untouched(100)) return 21;
    uint8_t ok = 1;
    auto v = ep->isend(&ok, 1, kVerdictTag);
    return v && v->wait(30s).isOk() ? 0 : 22;
  });
  Parent p(*child);
  std::vector<uint8_t> big(256 * 1024, 1);
  auto s = p.ep->isend(big.data(), big.size(), 1);
  REQUIRE(s.isOk());
  Status st = s->wait(30s);
  CHECK(st.code() == Code::kTruncated);
  CHECK_THAT(st.message(), Catch::Contains("larger buffer"));
  // An eager message is handed over at once: its send finishes, the receive fails.
  auto s2 = p.ep->isend(big.data(), 200, 2);
  REQUIRE(s2.isOk());
  CHECK(s2->wait(30s).isOk());
  uint8_t ready = 0;
  auto rd = p.ep->irecv(&ready, 1, kReadyTag);
  REQUIRE(rd.isOk());
  REQUIRE(rd->wait(30s).isOk());
  auto s3 = p.ep->isend(big.data(), big.size(), 3);
  REQUIRE(s3.isOk());
  st = s3->wait(30s);
  CHECK(st.code() == Code::kTruncated);
  CHECK_THAT(st.message(), Catch::Contains("receive of 100"));
  auto s4 = p.ep->isend(big.data(), big.size(), 4);
  REQUIRE(s4.isOk());
  uint8_t one = 1;
  auto go = p.ep->isend(&one, 1, kReadyTag);
  REQUIRE(go.isOk());
  REQUIRE(go->wait(30s).isOk());
  CHECK(s4->wait(30s).code() == Code::kTruncated);
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v->wait(30s).isOk());
  CHECK(verdict == 1);
  CHECK(child->wait() == 0);
}

TEST_CASE("registering a buffer that is already registered reuses the registration") {
  auto ctx = makeContext(verbsOptions());
  std::vector<uint8_t> buf(1 << 20);
  auto before = ctx->registrationStats();
  auto a = ctx->registerMemory(buf.data(), buf.size());
  REQUIRE(a.isOk());
  CHECK(a->registered());
  auto b = ctx->registerMemory(buf.data() + 4096, 8192);  // inside a: a hit
  REQUIRE(b.isOk());
  auto c = ctx->registerMemory(buf.data(), buf.size());
  REQUIRE(c.isOk());
  auto after = ctx->registrationStats();
  // One miss per device for a, then hits for b and c on every device.
  CHECK(after.misses - before.misses == 2);
  CHECK(after.hits - before.hits == 4);
  CHECK(after.registered - before.registered == 2);
}

// Found by the NCCL plugin's harness: NCCL's receives are sized for the step (here 1 MiB),
// its sends for the data, and the sender runs ahead with eager messages while the receiver
// posts one receive at a time, each of which announces its large buffer (CTS).
TEST_CASE("eager and rendezvous messages sent back to back into large receives posted one at "
          "a time arrive intact, in order") {
  const std::vector<size_t> sizes = {0, 7, 100, kEagerMax - 1, kEagerMax, kEagerMax + 1, 1,
                                     65536, 3, (1u << 20) - 5, 0, 0, 2};
  constexpr size_t kCap = (1u << 20) + 4096;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(kCap);
    auto mr = peer.ctx->registerMemory(buf.data(), buf.size());
    if (!mr) return 12;
    for (int round = 0; round < 2; ++round)
      for (size_t i = 0; i < sizes.size(); ++i) {
        std::memset(buf.data(), 0xEE, sizes[i] + 64);
        auto r = ep->irecv(buf.data(), kCap, 3, round == 0 ? &*mr : nullptr);
        if (!r) return 13;
        Status st = r->wait(20s);
        if (!st.isOk()) {
          std::fprintf(stderr, "child: receive %zu (%zu bytes, round %d): %s\n", i, sizes[i],
                       round, st.toString().c_str());
          return 14;
        }
        if (r->size() != sizes[i] || checkPattern(buf.data(), sizes[i], i) != sizes[i]) return 15;
      }
    uint8_t ok = 1;
    auto v = ep->isend(&ok, 1, kVerdictTag);
    return v && v->wait(30s).isOk() ? 0 : 16;
  });
  Parent p(*child);
  std::vector<uint8_t> buf(kCap);
  auto mr = p.ctx->registerMemory(buf.data(), buf.size());
  REQUIRE(mr.isOk());
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < sizes.size(); ++i) {
      fillPattern(buf.data(), sizes[i], i);
      auto s = p.ep->isend(buf.data(), sizes[i], 3, round == 0 ? &*mr : nullptr);
      REQUIRE(s.isOk());
      Status st = s->wait(30s);
      INFO("send " << i << " of " << sizes[i] << " bytes, round " << round << ": " << st.toString());
      REQUIRE(st.isOk());
    }
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v.isOk());
  REQUIRE(v->wait(60s).isOk());
  CHECK(verdict == 1);
  CHECK(child->wait() == 0);
}

TEST_CASE("messages from a registered buffer reuse its registration and arrive intact") {
  constexpr size_t kSize = 512 * 1024;
  constexpr int kCount = 8;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(kSize);
    auto mr = peer.ctx->registerMemory(buf.data(), buf.size());
    if (!mr) return 12;
    for (int i = 0; i < kCount; ++i) {
      auto r = ep->irecv(buf.data(), kSize, 3, &*mr);
      if (!r || !r->wait(60s).isOk()) return 13;
      if (checkPattern(buf.data(), kSize, i) != kSize) return 14;
      uint8_t ok = 1;
      auto v = ep->isend(&ok, 1, kVerdictTag);
      if (!v || !v->wait(30s).isOk()) return 15;
    }
    return 0;
  });
  Parent p(*child);
  std::vector<uint8_t> buf(kSize);
  auto mr = p.ctx->registerMemory(buf.data(), buf.size());
  REQUIRE(mr.isOk());
  auto before = p.ctx->registrationStats();
  for (int i = 0; i < kCount; ++i) {
    fillPattern(buf.data(), kSize, i);
    auto s = p.ep->isend(buf.data(), kSize, 3, &*mr);
    REQUIRE(s.isOk());
    REQUIRE(s->wait(60s).isOk());
    uint8_t verdict = 0;
    auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
    REQUIRE(v->wait(60s).isOk());
    CHECK(verdict == 1);
  }
  // No new registration for any of the sends.
  CHECK(p.ctx->registrationStats().registered == before.registered);
  CHECK(child->wait() == 0);
}

TEST_CASE("one-sided writes and reads move data between registered regions") {
  constexpr size_t kSize = 1u << 20;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(kSize);
    fillPattern(buf.data(), kSize, 5);
    auto mr = peer.ctx->registerMemory(buf.data(), buf.size());
    if (!mr) return 12;
    auto key = mr->remoteKey();
    if (!key) return 13;
    auto s = ep->isend(key->bytes, RemoteKey::kSize, 1);
    if (!s || !s->wait(30s).isOk()) return 14;
    // Wait for "written", then check what landed in the second half.
    uint8_t done = 0;
    auto r = ep->irecv(&done, 1, 2);
    if (!r || !r->wait(60s).isOk()) return 15;
    if (checkPattern(buf.data() + kSize / 2, kSize / 2, 9) != kSize / 2) return 16;
    uint8_t ok = 1;
    auto v = ep->isend(&ok, 1, kVerdictTag);
    return v && v->wait(30s).isOk() ? 0 : 17;
  });
  Parent p(*child);
  RemoteKey key;
  auto r = p.ep->irecv(key.bytes, RemoteKey::kSize, 1);
  REQUIRE(r.isOk());
  REQUIRE(r->wait(30s).isOk());
  std::vector<uint8_t> local(kSize);
  auto mr = p.ctx->registerMemory(local.data(), local.size());
  REQUIRE(mr.isOk());
  // Out of bounds, or from an unregistered buffer, is refused before anything moves.
  CHECK(p.ep->iwrite(local.data(), 16, *mr, key, kSize - 8).status().code() ==
        Code::kInvalidArgument);
  uint8_t stray[16];
  CHECK(p.ep->iwrite(stray, 16, *mr, key, 0).status().code() == Code::kInvalidArgument);
  // Read the peer's first half, then write our pattern into its second half.
  auto rd = p.ep->iread(local.data(), kSize / 2, *mr, key, 0);
  REQUIRE(rd.isOk());
  REQUIRE(rd->wait(60s).isOk());
  CHECK(checkPattern(local.data(), kSize / 2, 5) == kSize / 2);
  fillPattern(local.data() + kSize / 2, kSize / 2, 9);
  auto wr = p.ep->iwrite(local.data() + kSize / 2, kSize / 2, *mr, key, kSize / 2);
  REQUIRE(wr.isOk());
  REQUIRE(wr->wait(60s).isOk());
  // Both one-sided operations count on the rails that carried them.
  uint64_t railBytes = 0;
  for (uint64_t b : p.ep->stats().bytesSentPerRail) railBytes += b;
  CHECK(railBytes == kSize);
  uint8_t done = 1;
  auto d = p.ep->isend(&done, 1, 2);
  REQUIRE(d->wait(30s).isOk());
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v->wait(60s).isOk());
  CHECK(verdict == 1);
  CHECK(child->wait() == 0);
}

TEST_CASE("a receive buffer deregistered under a transfer is a remote access error, reported "
          "cleanly on both sides") {
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions(5000));
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(1 << 20);
    auto mr = peer.ctx->registerMemory(buf.data(), buf.size());
    if (!mr) return 12;
    auto r = ep->irecv(buf.data(), buf.size(), 1, &*mr);
    if (!r) return 13;
    // Let the CTS go out, then pull the registration away, and tell the sender to go.
    for (int i = 0; i < 200; ++i) (void)peer.worker->waitAndProgress(1ms);
    mr->deregister();
    uint8_t go = 1;
    auto g = ep->isend(&go, 1, 2);
    if (!g || !g->wait(30s).isOk()) return 14;
    Status st = r->wait(30s);
    // The receive fails (its peer failed the connection), it does not hang.
    return st.isOk() ? 15 : 0;
  });
  Parent p(*child, verbsOptions(5000));
  uint8_t go = 0;
  auto g = p.ep->irecv(&go, 1, 2);
  REQUIRE(g->wait(30s).isOk());
  std::vector<uint8_t> big(1 << 20, 3);
  auto s = p.ep->isend(big.data(), big.size(), 1);
  REQUIRE(s.isOk());
  Status st = s->wait(30s);
  INFO(st.toString());
  CHECK_FALSE(st.isOk());
  CHECK_THAT(st.message(), Catch::Contains("remote access error") ||
                               Catch::Contains("remote invalid request error"));
  CHECK_THAT(st.message(), Catch::Contains("rxe"));
  CHECK_THAT(st.message(), Catch::Contains("qpn"));
  CHECK(child->wait() == 0);
}

TEST_CASE("a receiver killed mid-stream fails the sender's requests within the timeout") {
  constexpr size_t kSize = 1u << 20;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions(3000));
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(kSize);
    for (int i = 0;; ++i) {
      auto r = ep->irecv(buf.data(), buf.size(), 1);
      if (!r || !r->wait(30s).isOk()) return 12;
      if (i == 3) {
        char got = 'g';
        writeAll(pipeFd, &got, 1);  // the parent kills us from here on
      }
    }
  });
  Parent p(*child, verbsOptions(3000));
  std::vector<uint8_t> big(kSize, 1);
  bool killed = false;
  std::chrono::steady_clock::time_point t0;
  Status st;
  for (int i = 0; i < 100000; ++i) {
    auto s = p.ep->isend(big.data(), big.size(), 1);
    if (!s) {
      st = s.status();
      break;
    }
    st = s->wait(30s);
    if (!st.isOk()) break;
    pollfd pfd{child->readFd, POLLIN, 0};
    if (!killed && ::poll(&pfd, 1, 0) == 1) {
      ::kill(child->pid, SIGKILL);
      killed = true;
      t0 = std::chrono::steady_clock::now();
    }
  }
  INFO(st.toString());
  REQUIRE(killed);
  CHECK_FALSE(st.isOk());
  CHECK((st.code() == Code::kConnectionReset || st.code() == Code::kEndpointFailed));
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("with two QPs per rail a large message is striped over four QPs and arrives intact") {
  ContextOptions o = verbsOptions();
  o.ibQpsPerRail = 2;
  o.chunkSize = 64 * 1024;
  constexpr size_t kSize = (2u << 20) + 13;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, o);
    auto& ep = peer.ep;
    if (!ep) return 11;
    if (ep->railCount() != 4) return 14;
    std::vector<uint8_t> buf(kSize);
    auto r = ep->irecv(buf.data(), buf.size(), 7);
    if (!r || !r->wait(60s).isOk()) return 12;
    uint8_t ok = checkPattern(buf.data(), kSize, 77) == kSize;
    auto v = ep->isend(&ok, 1, kVerdictTag);
    return v && v->wait(30s).isOk() ? 0 : 13;
  });
  Parent p(*child, o);
  REQUIRE(p.ep->railCount() == 4);
  std::vector<uint8_t> msg(kSize);
  fillPattern(msg.data(), kSize, 77);
  auto s = p.ep->isend(msg.data(), kSize, 7);
  REQUIRE(s.isOk());
  REQUIRE(s->wait(60s).isOk());
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v->wait(60s).isOk());
  CHECK(verdict == 1);
  auto st = p.ep->stats();
  REQUIRE(st.bytesSentPerRail.size() == 4);
  for (uint64_t b : st.bytesSentPerRail) CHECK(b > 0);
  CHECK(child->wait() == 0);
}

TEST_CASE("a verbs-capable side falls back to TCP with a peer that has no verbs rails") {
  ContextOptions tcpOnly = loOptions(20000);
  tcpOnly.transport = Transport::kTcp;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, tcpOnly);
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> buf(1u << 20);
    auto r = ep->irecv(buf.data(), buf.size(), 1);
    if (!r || !r->wait(30s).isOk()) return 12;
    return checkPattern(buf.data(), buf.size(), 3) == buf.size() ? 0 : 13;
  });
  ContextOptions autoOpts = loOptions(20000);
  autoOpts.transport = Transport::kAuto;
  auto ctx = makeContext(autoOpts);
  REQUIRE(ctx->transport() == Transport::kVerbs);  // this side has rxe rails
  auto w = makeWorker(ctx);
  auto ep = connectToChild(*w, *child);
  CHECK(ep->railCount() == 1);  // lo: the TCP data path
  std::vector<uint8_t> msg(1u << 20);
  fillPattern(msg.data(), msg.size(), 3);
  auto s = ep->isend(msg.data(), msg.size(), 1);
  REQUIRE(s.isOk());
  REQUIRE(s->wait(30s).isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("a side that insists on verbs refuses a peer without verbs rails, naming why") {
  ContextOptions tcpOnly = loOptions(20000);
  tcpOnly.transport = Transport::kTcp;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, tcpOnly);  // accept fails: the connector is refused
    return peer.ep ? 11 : 0;
  });
  auto ctx = makeContext(verbsOptions());
  auto w = makeWorker(ctx);
  Address a;
  REQUIRE(readAll(child->readFd, a.bytes, Address::kSize));
  auto ep = Endpoint::connect(*w, a);
  REQUIRE(ep.isOk());
  Status st = (*ep)->waitConnected(30s);
  INFO(st.toString());
  CHECK(st.code() == Code::kConnectionRefused);
  CHECK_THAT(st.message(), Catch::Contains("no verbs rails in common"));
  CHECK_THAT(st.message(), Catch::Contains("BRAID_TRANSPORT=verbs on the connector"));
  ::kill(child->pid, SIGKILL);
}

TEST_CASE("both sides sending 300 eager messages before receiving any do not deadlock on "
          "credits") {
  constexpr int kCount = 300;  // more than the 128 receive slots per QP
  auto exchange = [](Endpoint& ep) -> int {
    std::vector<std::array<uint8_t, 64>> out(kCount), in(kCount);
    std::vector<Request> sends, recvs;
    for (int i = 0; i < kCount; ++i) {
      fillPattern(out[i].data(), out[i].size(), i);
      auto s = ep.isend(out[i].data(), out[i].size(), 9);
      if (!s) return 1;
      sends.push_back(std::move(s).value());
    }
    // Let both sides' sends run into the credit limit before any receive is posted.
    for (int i = 0; i < 100; ++i) (void)sends.back().test();
    for (int i = 0; i < kCount; ++i) {
      auto r = ep.irecv(in[i].data(), in[i].size(), 9);
      if (!r) return 2;
      recvs.push_back(std::move(r).value());
    }
    for (auto& r : recvs) {
      Status st = r.wait(60s);
      if (!st.isOk()) {
        std::fprintf(stderr, "exchange: receive: %s\n", st.toString().c_str());
        return 3;
      }
    }
    for (auto& s : sends) {
      Status st = s.wait(60s);
      if (!st.isOk()) {
        std::fprintf(stderr, "exchange: send: %s\n", st.toString().c_str());
        return 4;
      }
    }
    for (int i = 0; i < kCount; ++i)
      if (checkPattern(in[i].data(), in[i].size(), i) != in[i].size()) return 5;
    return 0;
  };
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    if (!peer.ep) return 11;
    int rc = exchange(*peer.ep);
    if (rc) return 20 + rc;
    // Stay until the parent has everything.
    uint8_t done = 0;
    auto d = peer.ep->irecv(&done, 1, kVerdictTag);
    return d && d->wait(60s).isOk() ? 0 : 12;
  });
  Parent p(*child);
  CHECK(exchange(*p.ep) == 0);
  uint8_t done = 1;
  auto d = p.ep->isend(&done, 1, kVerdictTag);
  REQUIRE(d.isOk());
  CHECK(d->wait(30s).isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("eager messages whose sends finished reach the peer when the sender closes at once, "
          "even receives posted after the close") {
  // Over verbs an eager send finishes when posted (its payload is copied); the close that
  // follows must not lose it: the endpoint waits for the SENDs to be acknowledged before
  // telling the peer and taking the queue pairs down.
  constexpr int kCount = 200;
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    if (!peer.ep) return 11;
    std::vector<std::array<uint8_t, 100>> out(kCount);
    std::vector<Request> sends;
    for (int i = 0; i < kCount; ++i) {
      fillPattern(out[i].data(), out[i].size(), 1000 + i);
      auto s = peer.ep->isend(out[i].data(), out[i].size(), 5);
      if (!s) return 12;
      sends.push_back(std::move(s).value());
    }
    for (auto& s : sends)
      if (!s.wait(60s).isOk()) return 13;
    peer.ep.reset();  // at once: no round trip with the parent after the last send
    return 0;
  });
  Parent p(*child);
  // Half the receives are posted before the close, half after it was seen: messages that
  // arrived before the close are delivered either way.
  std::vector<std::array<uint8_t, 100>> in(kCount);
  std::vector<Request> recvs;
  auto postRecv = [&](int i) {
    auto r = p.ep->irecv(in[i].data(), in[i].size(), 5);
    REQUIRE(r.isOk());
    recvs.push_back(std::move(r).value());
  };
  for (int i = 0; i < kCount / 2; ++i) postRecv(i);
  uint8_t x = 0;
  auto probe = p.ep->irecv(&x, 1, 99);
  REQUIRE(probe.isOk());
  CHECK(probe->wait(60s).code() == Code::kConnectionReset);  // the child closed
  for (int i = kCount / 2; i < kCount; ++i) postRecv(i);
  int got = 0;
  for (int i = 0; i < kCount; ++i) {
    Status st = recvs[i].wait(60s);
    INFO("message " << i << ": " << st.toString());
    REQUIRE(st.isOk());
    CHECK(checkPattern(in[i].data(), in[i].size(), 1000 + i) == in[i].size());
    ++got;
  }
  CHECK(got == kCount);
  auto after = p.ep->irecv(in[0].data(), in[0].size(), 5);
  CHECK(after.status().code() == Code::kConnectionReset);
  CHECK(child->wait() == 0);
}

TEST_CASE("a blocking wait sleeps on the completion channels until a message arrives") {
  // Worker::waitAndProgress arms the CQs and sleeps in epoll on their completion channels:
  // a receiver waiting 400 ms for a message wakes a few times, not once per millisecond.
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    if (!peer.ep) return 11;
    std::this_thread::sleep_for(400ms);
    uint64_t v = 0xE7E7;
    auto s = peer.ep->isend(&v, 8, 9);
    if (!s || !s->wait(30s).isOk()) return 12;
    uint8_t ok = 0;
    auto r = peer.ep->irecv(&ok, 1, kVerdictTag);
    return r && r->wait(30s).isOk() && ok == 1 ? 0 : 13;
  });
  Parent p(*child);
  uint64_t got = 0;
  auto r = p.ep->irecv(&got, 8, 9);
  REQUIRE(r.isOk());
  const auto start = std::chrono::steady_clock::now();
  int calls = 0;
  Status st = r->test();
  while (st.code() == Code::kInProgress && std::chrono::steady_clock::now() - start < 20s) {
    ++calls;
    REQUIRE(p.worker->waitAndProgress(10s).isOk());
    st = r->test();
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE(st.isOk());
  CHECK(got == 0xE7E7);
  INFO("woke " << calls << " times in "
               << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms");
  CHECK(waited >= 200ms);  // it did wait for the child's message
  CHECK(calls < 40);       // polled every millisecond, it would have woken some 400 times
  uint8_t ok = 1;
  auto v = p.ep->isend(&ok, 1, kVerdictTag);
  REQUIRE(v->wait(30s).isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("closing after the peer closed does not wait for acknowledgements it cannot get") {
  // The close of the second side finds SENDs not yet retired (unsignaled eager ones) and
  // a peer whose queue pairs are gone: it must see the peer's CLOSE on the control socket
  // and stop waiting, not sit out its 1 s bound (or the retry timeout).
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    if (!peer.ep) return 11;
    std::array<uint8_t, 32> msg{};
    for (int i = 0; i < 20; ++i) {  // 20: the last few are unsignaled
      auto s = peer.ep->isend(msg.data(), msg.size(), 6);
      if (!s || !s->wait(30s).isOk()) return 12;
    }
    // The parent takes them and closes; this side does not progress meanwhile.
    std::this_thread::sleep_for(500ms);
    auto t0 = std::chrono::steady_clock::now();
    peer.ep.reset();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
    std::fprintf(stderr, "child: close took %lld ms\n", static_cast<long long>(ms));
    return ms < 500 ? 0 : 13;
  });
  Parent p(*child);
  std::array<uint8_t, 32> in{};
  for (int i = 0; i < 20; ++i) {
    auto r = p.ep->irecv(in.data(), in.size(), 6);
    REQUIRE(r.isOk());
    REQUIRE(r->wait(30s).isOk());
  }
  p.ep.reset();
  CHECK(child->wait() == 0);
}

// Last: it takes a link down (and back up) under every process in the VM.
TEST_CASE("a port that goes down takes its lane out: the endpoint goes on over rxe0, the "
          "lane is down in the stats with PORT_ERR, and messages arrive intact") {
  constexpr size_t kBig = 3 << 20;  // rendezvous, striped while both lanes are up
  auto pattern = [](size_t i, int m) { return static_cast<uint8_t>((i * 131 + m * 7) >> 3); };
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    // All posted at once: the parent's first sends are moving on both lanes when the
    // port goes down.
    std::vector<std::vector<uint8_t>> bufs(6, std::vector<uint8_t>(kBig));
    std::vector<Request> recvs;
    for (int m = 0; m < 6; ++m) {
      auto r = ep->irecv(bufs[m].data(), kBig, 10 + m);
      if (!r) return 12;
      recvs.push_back(std::move(r).value());
    }
    for (int m = 0; m < 6; ++m) {
      const std::vector<uint8_t>& buf = bufs[m];
      Status st = recvs[m].wait(30s);
      if (!st.isOk()) {
        std::fprintf(stderr, "child: message %d: %s\n", m, st.toString().c_str());
        return 13;
      }
      for (size_t i = 0; i < kBig; ++i)
        if (buf[i] != pattern(i, m)) {
          std::fprintf(stderr, "child: message %d byte %zu corrupted\n", m, i);
          return 14;
        }
    }
    EndpointStats s = ep->stats();
    const bool down = s.rails.size() >= 2 && s.rails[1].state == "down";
    std::fprintf(stderr, "child: lane 1 %s\n", s.rails.size() >= 2 ? s.rails[1].state.c_str() : "?");
    uint8_t v = down ? 1 : 0;
    auto done = ep->isend(&v, 1, 20);
    if (!done || !done->wait(30s).isOk()) return 15;
    return down ? 0 : 16;
  });
  ContextOptions o = verbsOptions();
  Parent p(*child, o);
  REQUIRE(p.ep->railCount() >= 2);
  std::vector<std::vector<uint8_t>> bufs(6, std::vector<uint8_t>(kBig));
  for (int m = 0; m < 6; ++m)
    for (size_t i = 0; i < kBig; ++i) bufs[m][i] = pattern(i, m);
  std::vector<Request> sends;
  for (int m = 0; m < 3; ++m) {
    auto s = p.ep->isend(bufs[m].data(), kBig, 10 + m);
    REQUIRE(s.isOk());
    sends.push_back(std::move(s).value());
  }
  REQUIRE(std::system("ip link set eth1 down") == 0);
  for (int m = 3; m < 6; ++m) {
    auto s = p.ep->isend(bufs[m].data(), kBig, 10 + m);
    REQUIRE(s.isOk());
    sends.push_back(std::move(s).value());
  }
  auto t0 = std::chrono::steady_clock::now();
  for (auto& s : sends) CHECK(s.wait(30s).isOk());
  auto took = std::chrono::steady_clock::now() - t0;
  uint8_t verdict = 0;
  auto r = p.ep->irecv(&verdict, 1, 20);
  REQUIRE(r.isOk());
  CHECK(r->wait(30s).isOk());
  (void)std::system("ip link set eth1 up");
  CHECK(verdict == 1);
  CHECK(took < 10s);
  EndpointStats st = p.ep->stats();
  REQUIRE(st.rails.size() >= 2);
  CHECK(st.rails[0].state != "down");
  CHECK(st.rails[1].state == "down");
  CHECK(st.rails[1].failures == 1);
  std::string events;
  for (const RailEvent& e : st.rails[1].events) events += e.state + ": " + e.cause + "\n";
  INFO(events);
  CHECK_THAT(events, Catch::Contains("down: ") && Catch::Contains("rxe1:1"));
  CHECK_THAT(events, Catch::Contains("PORT_ERR") || Catch::Contains("peer gave the lane up") ||
                         Catch::Contains("Flushed"));
  // The endpoint is still good for more.
  auto again = p.ep->isend(bufs[0].data(), 1000, 30);
  CHECK(again.isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("the control lane's port going down moves the endpoint to TCP and back to RDMA on "
          "rxe1: messages arrive intact and a one-sided write in flight waits and completes") {
  constexpr size_t kBig = 3 << 20;
  constexpr size_t kRegion = 4 << 20;
  auto pattern = [](size_t i, int m) { return static_cast<uint8_t>((i * 37 + m * 11) >> 2); };
  auto child = spawn([&](int pipeFd) {
    ChildPeer peer(pipeFd, verbsOptions());
    auto& ep = peer.ep;
    if (!ep) return 11;
    std::vector<uint8_t> region(kRegion, 0);
    auto mr = peer.ctx->registerMemory(region.data(), region.size());
    if (!mr) return 12;
    auto key = mr->remoteKey();
    if (!key) return 13;
    std::vector<std::vector<uint8_t>> bufs(4, std::vector<uint8_t>(kBig));
    std::vector<Request> recvs;
    for (int m = 0; m < 4; ++m) {
      auto r = ep->irecv(bufs[m].data(), kBig, 10 + m);
      if (!r) return 14;
      recvs.push_back(std::move(r).value());
    }
    auto k = ep->isend(key->bytes, RemoteKey::kSize, 1);
    if (!k || !k->wait(30s).isOk()) return 15;
    for (int m = 0; m < 4; ++m) {
      Status st = recvs[m].wait(60s);
      if (!st.isOk()) {
        std::fprintf(stderr, "child: message %d: %s\n", m, st.toString().c_str());
        return 16;
      }
      for (size_t i = 0; i < kBig; ++i)
        if (bufs[m][i] != pattern(i, m)) {
          std::fprintf(stderr, "child: message %d byte %zu corrupted\n", m, i);
          return 17;
        }
    }
    uint8_t written = 0;
    auto w = ep->irecv(&written, 1, 2);
    if (!w || !w->wait(60s).isOk()) return 18;
    for (size_t i = 0; i < kRegion; ++i)
      if (region[i] != pattern(i % (kRegion / 2), 9)) {
        std::fprintf(stderr, "child: one-sided byte %zu wrong\n", i);
        return 19;
      }
    EndpointStats s = ep->stats();
    const bool moved = s.rails.size() >= 2 && s.rails[0].state == "down" && s.rails[1].state != "down";
    uint8_t v = moved ? 1 : 0;
    auto d = ep->isend(&v, 1, kVerdictTag);
    if (!d || !d->wait(30s).isOk()) return 20;
    return moved ? 0 : 21;
  });
  ContextOptions o = verbsOptions();
  Parent p(*child, o);
  REQUIRE(p.ep->railCount() >= 2);
  RemoteKey key;
  auto kr = p.ep->irecv(key.bytes, RemoteKey::kSize, 1);
  REQUIRE(kr.isOk());
  REQUIRE(kr->wait(30s).isOk());
  std::vector<uint8_t> local(kRegion / 2);
  for (size_t i = 0; i < local.size(); ++i) local[i] = pattern(i, 9);
  auto lmr = p.ctx->registerMemory(local.data(), local.size());
  REQUIRE(lmr.isOk());
  std::vector<std::vector<uint8_t>> bufs(4, std::vector<uint8_t>(kBig));
  for (int m = 0; m < 4; ++m)
    for (size_t i = 0; i < kBig; ++i) bufs[m][i] = pattern(i, m);
  std::vector<Request> sends;
  for (int m = 0; m < 2; ++m) {
    auto s = p.ep->isend(bufs[m].data(), kBig, 10 + m);
    REQUIRE(s.isOk());
    sends.push_back(std::move(s).value());
  }
  auto wr = p.ep->iwrite(local.data(), local.size(), *lmr, key, 0);
  REQUIRE(wr.isOk());
  REQUIRE(std::system("ip link set eth0 down") == 0);  // rxe0's port: lane 0, the control lane
  for (int m = 2; m < 4; ++m) {
    auto s = p.ep->isend(bufs[m].data(), kBig, 10 + m);
    REQUIRE(s.isOk());
    sends.push_back(std::move(s).value());
  }
  // Half a second later (the port's failure seen, the endpoint on TCP): a second one-sided
  // write, which must wait for the return too.
  for (auto t = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t < 500ms;)
    REQUIRE(p.worker->waitAndProgress(10ms).isOk());
  auto wr2 = p.ep->iwrite(local.data(), local.size(), *lmr, key, kRegion / 2);
  REQUIRE(wr2.isOk());
  for (auto& s : sends) CHECK(s.wait(60s).isOk());
  for (Request* w : {&wr.value(), &wr2.value()}) {
    Status ws = w->wait(60s);
    INFO(ws.toString());
    CHECK(ws.isOk());
  }
  uint8_t one = 1;
  auto d = p.ep->isend(&one, 1, 2);
  REQUIRE(d.isOk());
  CHECK(d->wait(30s).isOk());
  uint8_t verdict = 0;
  auto v = p.ep->irecv(&verdict, 1, kVerdictTag);
  REQUIRE(v.isOk());
  CHECK(v->wait(60s).isOk());
  (void)std::system("ip link set eth0 up");
  CHECK(verdict == 1);
  EndpointStats st = p.ep->stats();
  REQUIRE(st.rails.size() >= 3);  // the lanes, then the TCP rail's record (standby)
  CHECK(st.rails[0].state == "down");
  CHECK(st.rails[1].state != "down");
  CHECK(st.rails.back().state == "standby");
  std::string events;
  for (const RailEvent& e : st.rails[1].events) events += e.state + ": " + e.cause + "\n";
  INFO(events);
  CHECK_THAT(events, Catch::Contains("back on RDMA after"));
  // The endpoint is still good for more, over rxe1.
  auto again = p.ep->isend(bufs[0].data(), 1000, 30);
  CHECK(again.isOk());
  CHECK(child->wait() == 0);
}

TEST_CASE("cancel over verbs: a withdrawn receive (eager-only, or with its CTS in the sender's "
          "ring) gives its place to the next one, and a send waiting for its CTS ends both "
          "sides canceled") {
  auto p = connectLocal(verbsOptions());
  REQUIRE(p.client->transport() == Transport::kVerbs);
  // An eager-only receive: no CTS went out, the sender skips its seq.
  uint64_t a = 0, b = 0, v = 0xabc;
  auto r1 = p.server->irecv(&a, 8, 1);
  CHECK(r1->wait(30ms).code() == Code::kTimedOut);
  CHECK(r1->cancel().code() == Code::kInProgress);
  Status st = r1->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  std::vector<Request> q;
  q.push_back(std::move(*p.client->isend(&v, 8, 1)));
  q.push_back(std::move(*p.server->irecv(&b, 8, 1)));
  CHECK(waitAll(q, 5s).isOk());
  CHECK(b == 0xabc);
  CHECK(a == 0);
  // A rendezvous-capable receive: its CTS (address, rkeys) sits in the sender's ring.
  std::vector<uint8_t> out(1 << 20), in1(1 << 20, 0), in2(1 << 20, 0);
  fillPattern(out.data(), out.size(), 5);
  auto big = p.server->irecv(in1.data(), in1.size(), 2);
  CHECK(big->wait(30ms).code() == Code::kTimedOut);
  CHECK(big->cancel().code() == Code::kInProgress);
  st = big->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  q.clear();
  q.push_back(std::move(*p.client->isend(out.data(), out.size(), 2)));
  q.push_back(std::move(*p.server->irecv(in2.data(), in2.size(), 2)));
  st = waitAll(q, 10s);
  INFO(st.toString());
  CHECK(st.isOk());
  CHECK(checkPattern(in2.data(), in2.size(), 5) == in2.size());
  CHECK(std::all_of(in1.begin(), in1.end(), [](uint8_t x) { return x == 0; }));
  // A rendezvous send whose receive is not posted: it announced itself (RTS) and waits.
  auto s = p.client->isend(out.data(), out.size(), 3);
  CHECK(s->wait(30ms).code() == Code::kTimedOut);
  CHECK(s->cancel().isOk());
  CHECK(s->test().code() == Code::kCanceled);
  for (int i = 0; i < 50; ++i) (void)p.worker->progress();
  auto r3 = p.server->irecv(in1.data(), in1.size(), 3);
  st = r3->wait(5s);
  INFO(st.toString());
  CHECK(st.code() == Code::kCanceled);
  CHECK(p.client->error().isOk());
  CHECK(p.server->error().isOk());
}
