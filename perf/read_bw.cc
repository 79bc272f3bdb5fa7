// braid_read_bw — one-sided RDMA READ bandwidth over braid endpoints (perftest's
// ib_read_bw).
//
//   server:  braid_read_bw [options]
//   client:  braid_read_bw [options] SERVER
//
// Per size, the server fills a buffer with a known pattern, registers it and sends its
// RemoteKey; the client keeps --tx-depth Endpoint::iread()s in flight from slots of that
// buffer. A read finishes when its bytes are in the client's memory, so the client's
// figures are the figures (the server prints the row the client sends it).
//
// --validate: slot k of the server's buffer holds the pattern of (k, size) and read i
// comes from slot i % tx-depth into a buffer of its own; the client checks every byte.
// --inject-error N flips a byte of read N after it landed (the checker must catch it).
#include <fmt/format.h>

#include <algorithm>

#include "perf_common.h"

namespace braid::perf {
namespace {

const ToolSpec kSpec{ToolKind::kReadBw,
                     "braid_read_bw",
                     "RDMA_Read BW Test",
                     "braid_read_bw: one-sided RDMA READ bandwidth over braid (perftest "
                     "ib_read_bw conventions); a server without HOST, a client with the "
                     "server's HOST. Needs verbs rails on both sides",
                     65536,
                     1000,
                     true,
                     true};

Status runReads(Session& s, const TestMsg& t, const ClientRound& round, const KeyMsg& key,
                Verdict& verdict, BwRow& row) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const bool validate = (t.flags & kFlagValidate) != 0;
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  // Registered once per size: no registration per read.
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr, s.registerMemory(buf.data(), buf.size(), "reads"));
  std::vector<Request> reqs(w);
  PipelineTimes times;
  times.done.reserve(t.iters);
  auto post = [&](uint64_t i) -> Status {
    const uint64_t slot = i % slots;
    BRAID_ASSIGN_OR_RETURN(
        reqs[i % w], s.iread(buf.data() + slot * size, size, mr, key.key, slot * size, "a read"));
    return Status::ok();
  };
  const std::vector<uint64_t> railsBefore = s.endpoint().stats().bytesSentPerRail;
  auto check = [&](uint64_t i) -> Status {
    if (validate) {
      uint8_t* p = buf.data() + (i % slots) * size;
      maybeInjectError(round.options, p, size, i);
      verdict.check(p, size, i % slots, size);
    }
    return Status::ok();
  };
  BRAID_RETURN_IF_ERROR(runPipeline(s, "read", total, t.warmup, reqs, times, post, check));
  // A finished read's bytes are here: each completion is a landing.
  row = computeBwLanded(size, times.warmupEndNs, times.done, times.done.back(), w, Side::kReceiver);
  // Reads are requests this side sends; the bytes come back on the rails they used.
  row.bytesPerRail = railBytesSince(s, railsBefore);
  return Status::ok();
}

Status client(Session& s, const TestMsg& t, ClientRound& round, Report& report, Verdict& verdict) {
  // The reads come from slots 0..slots-1 of the server's buffer.
  const uint64_t w = std::min<uint64_t>(t.txDepth, t.warmup + t.iters);
  BRAID_ASSIGN_OR_RETURN(KeyMsg key, recvKey(s, slotCount(t, w) * t.size));
  BwRow row;
  Status st = runReads(s, t, round, key, verdict, row);
  if (!key.valid) st = explainMissingKey(st, key);
  BRAID_RETURN_IF_ERROR(sendRmaEnd(s, &row, {}, st));
  BRAID_RETURN_IF_ERROR(round.waitDone());
  report.addBw(row);
  return Status::ok();
}

Status server(Session& s, const TestMsg& t, Report& report, Verdict& verdict, ReplyMsg& done) {
  // The client checks what it read; this side has nothing to check (no verdict line).
  verdict.enabled = false;
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  for (uint64_t k = 0; k < slots; ++k) fillPattern(buf.data() + k * size, size, k, size);
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr,
                         s.registerMemory(buf.data(), buf.size(), "the source buffer"));
  RmaEnd end;
  BRAID_RETURN_IF_ERROR(end.post(s));
  BRAID_RETURN_IF_ERROR(sendReady(s));
  BRAID_RETURN_IF_ERROR(sendKey(s, mr));
  s.timelineStart(nowNs());  // --timeline: about when the client's timed operations start
  // The reads are served by the NIC while this side only drives progress.
  BRAID_RETURN_IF_ERROR(end.wait(s, t, true, 0));
  report.addBw(end.row(size, Side::kReceiver));
  done.bytes = t.iters * size;
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
