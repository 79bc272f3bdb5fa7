// braid_write_lat — ping-pong latency by one-sided RDMA WRITEs (perftest's ib_write_lat).
//
//   server:  braid_write_lat [options]
//   client:  braid_write_lat [options] SERVER
//
// Each side registers a buffer and sends the other its RemoteKey. The client iwrite()s
// ping i into the server's buffer; the server polls the last byte of its own buffer until
// it holds markerOf(i), then iwrite()s pong i back, which the client detects the same
// way. One sample is half of the client's round trip. Nothing but the writes crosses the
// wire per iteration: no message, no completion on the side the data lands on.
//
// Polling memory never enters the kernel, so two pollers can starve Soft-RoCE's kernel
// work on a small VM: between polls each side drives its Worker (to reap its own write
// completions) and yields the CPU with sched_yield() (--yield, this tool's default;
// --busy spins without yielding).
//
// --validate: message i carries the pattern of (i, size) with the marker as last byte,
// and goes to slot i % 3 of the peer's buffer. The last byte can land before the rest
// when a message is striped over several QPs (-q), so message i-1 is checked when
// message i arrives (its sender waited for i-1's completion before writing i), and the
// last one after the end-of-size exchange.
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>

#include "perf_common.h"

namespace braid::perf {
namespace {

const ToolSpec kSpec{ToolKind::kWriteLat,
                     "braid_write_lat",
                     "RDMA_Write Latency Test",
                     "braid_write_lat: ping-pong latency by one-sided RDMA WRITEs over braid "
                     "(perftest ib_write_lat conventions); a server without HOST, a client "
                     "with the server's HOST. Needs verbs rails on both sides",
                     2,
                     1000,
                     false,
                     true,
                     PollMode::kYield};

// Slots of each side's landing buffer: three with --validate (the one being written, the
// one being checked, and one free), else one, as perftest.
uint64_t slotCount(const TestMsg& t) {
  return (t.flags & kFlagValidate) ? 3 : 1;
}

/// One side's memory: `slots` landing slots then one source message, registered once.
struct Buffers {
  Buffer buf;
  MemoryRegion mr;
  uint64_t size = 0, slots = 0;
  uint8_t* slot(uint64_t i) const { return buf.data() + (i % slots) * size; }
  uint8_t* source() const { return buf.data() + slots * size; }
};

Result<Buffers> makeBuffers(Session& s, const TestMsg& t) {
  Buffers b;
  b.size = t.size;
  b.slots = slotCount(t);
  BRAID_ASSIGN_OR_RETURN(b.buf, Buffer::allocate((b.slots + 1) * t.size));
  BRAID_ASSIGN_OR_RETURN(b.mr, s.registerMemory(b.buf.data(), b.buf.size(), "the buffers"));
  // Without --validate every message is the same bytes but for its marker.
  fillPattern(b.source(), t.size, 0, t.size);
  return b;
}

// Message i in the source slot (the previous write from it has finished).
void prepare(const Buffers& b, const TestMsg& t, const Options* o, uint64_t i) {
  uint8_t* p = b.source();
  if (t.flags & kFlagValidate) {
    fillPattern(p, b.size, i, b.size);
    // Not in the marker byte: a lost marker would only show as a timeout.
    if (o) maybeInjectError(*o, p, b.size - 1, i);
  }
  p[b.size - 1] = markerOf(i);
}

/// Polls the last byte of slot i until it is markerOf(i), driving progress between polls
/// (and yielding unless --busy). `other`, when given, is a request whose finishing early
/// means the peer has stopped (the server's receive of the client's end message).
Status awaitMarker(Session& s, const Buffers& b, uint64_t i, Request* other) {
  const uint8_t* last = b.slot(i) + b.size - 1;
  const uint8_t want = markerOf(i);
  const uint64_t limitNs = static_cast<uint64_t>(s.timeoutMs()) * 1'000'000ull;
  uint64_t start = 0;
  for (uint32_t spins = 0;; ++spins) {
    if (__atomic_load_n(last, __ATOMIC_ACQUIRE) == want) return Status::ok();
    BRAID_RETURN_IF_ERROR(s.progress());
    if ((spins & 63) == 63) {
      if (other && other->valid()) {
        Status st = other->test();
        if (st.code() != Code::kInProgress)
          return st.isOk() ? Status(Code::kProtocolError, "the client ended the size early") : st;
      }
      uint64_t now = nowNs();
      if (start == 0) {
        start = now;
      } else if (now - start > limitNs) {
        return Status(Code::kTimedOut,
                      fmt::format("message {} did not land within {} ms", i, s.timeoutMs()));
      }
    }
  }
}

Status pingPong(Session& s, const TestMsg& t, const ClientRound& round, const Buffers& b,
                const KeyMsg& key, Verdict& verdict, std::vector<double>& samples) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const bool validate = (t.flags & kFlagValidate) != 0;
  for (uint64_t i = 0; i < total; ++i) {
    prepare(b, t, &round.options, i);
    uint64_t t1 = nowNs();
    BRAID_ASSIGN_OR_RETURN(
        Request wq, s.iwrite(b.source(), size, b.mr, key.key, (i % b.slots) * size, "a ping"));
    Status st = awaitMarker(s, b, i, nullptr);
    uint64_t t2 = nowNs();
    if (!st.isOk()) return st.withContext(fmt::format("pong {} of {}", i, total));
    // Ping i has landed too (the pong answers it); reap its completion before reusing the
    // source.
    st = s.wait(wq, "ping");
    if (!st.isOk()) return st.withContext(fmt::format("ping {} of {}", i, total));
    if (validate && i > 0) verdict.checkMarked(b.slot(i - 1), size, i - 1, size);
    if (i >= t.warmup) samples.push_back(static_cast<double>(t2 - t1) / 2000.0);
  }
  return Status::ok();
}

Status client(Session& s, const TestMsg& t, ClientRound& round, Report& report, Verdict& verdict) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  BRAID_ASSIGN_OR_RETURN(Buffers b, makeBuffers(s, t));
  BRAID_ASSIGN_OR_RETURN(KeyMsg key, recvKey(s, slotCount(t) * t.size));
  BRAID_RETURN_IF_ERROR(sendKey(s, b.mr));
  std::vector<double> samples;
  samples.reserve(t.iters);
  Status st = pingPong(s, t, round, b, key, verdict, samples);
  if (!key.valid) st = explainMissingKey(st, key);
  // Tells the server that the last ping has landed (its write finished), or why not.
  BRAID_RETURN_IF_ERROR(sendRmaEnd(s, nullptr, {}, st));
  // The server's end of size follows its last pong's completion.
  BRAID_RETURN_IF_ERROR(round.waitDone());
  if ((t.flags & kFlagValidate) && total > 0)
    verdict.checkMarked(b.slot(total - 1), size, total - 1, size);
  report.addLat(computeLat(size, std::move(samples)));
  return Status::ok();
}

Status server(Session& s, const TestMsg& t, Report& report, Verdict& verdict, ReplyMsg& done) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const bool validate = (t.flags & kFlagValidate) != 0;
  BRAID_ASSIGN_OR_RETURN(Buffers b, makeBuffers(s, t));
  RmaEnd end;
  BRAID_RETURN_IF_ERROR(end.post(s));
  BRAID_RETURN_IF_ERROR(sendReady(s));
  BRAID_RETURN_IF_ERROR(sendKey(s, b.mr));
  BRAID_ASSIGN_OR_RETURN(KeyMsg key, recvKey(s, slotCount(t) * t.size));
  // perftest's server view: the period between two pongs is one round trip.
  std::vector<uint64_t> sent;
  sent.reserve(total);
  for (uint64_t i = 0; i < total; ++i) {
    prepare(b, t, nullptr, i);  // before the ping arrives: off the critical path
    Status st = awaitMarker(s, b, i, &end.req);
    if (!st.isOk()) {
      // The client's error, when it sent one, says more than a timeout here.
      if (end.req.valid() && end.req.test().isOk()) BRAID_RETURN_IF_ERROR(end.wait(s, t, false, 0));
      return st.withContext(fmt::format("ping {} of {}", i, total));
    }
    sent.push_back(nowNs());
    BRAID_ASSIGN_OR_RETURN(
        Request wq, s.iwrite(b.source(), size, b.mr, key.key, (i % b.slots) * size, "a pong"));
    st = s.wait(wq, "pong");
    if (!st.isOk()) return st.withContext(fmt::format("pong {} of {}", i, total));
    if (validate && i > 0) verdict.checkMarked(b.slot(i - 1), size, i - 1, size);
  }
  // The client's end message follows the completion of its last ping.
  BRAID_RETURN_IF_ERROR(end.wait(s, t, false, 0));
  if (validate && total > 0) verdict.checkMarked(b.slot(total - 1), size, total - 1, size);
  reportServerLat(t, sent, report, done);
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
