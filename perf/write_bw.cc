// braid_write_bw — one-sided RDMA WRITE bandwidth over braid endpoints (perftest's
// ib_write_bw).
//
//   server:  braid_write_bw [options]
//   client:  braid_write_bw [options] SERVER
//
// Per size, the server registers a buffer and sends its RemoteKey; the client keeps
// --tx-depth Endpoint::iwrite()s in flight into slots of that buffer. A write finishes
// when the server's NIC has acknowledged every byte, so the client's figures are the
// figures (the server's CPU sees nothing; it prints the row the client sends it).
//
// --validate: message i carries the pattern of (i, size) and goes to slot i % tx-depth;
// at the end of the size the client sends the iteration that last wrote each slot and
// the server checks every slot byte for byte before it answers.
#include <fmt/format.h>

#include <algorithm>

#include "perf_common.h"

namespace braid::perf {
namespace {

const ToolSpec kSpec{ToolKind::kWriteBw,
                     "braid_write_bw",
                     "RDMA_Write BW Test",
                     "braid_write_bw: one-sided RDMA WRITE bandwidth over braid (perftest "
                     "ib_write_bw conventions); a server without HOST, a client with the "
                     "server's HOST. Needs verbs rails on both sides",
                     65536,
                     1000,
                     true,
                     true};

Status runWrites(Session& s, const TestMsg& t, const ClientRound& round, const KeyMsg& key,
                 BwRow& row, std::vector<uint64_t>& lastWriter) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const bool validate = (t.flags & kFlagValidate) != 0;
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  // Registered once per size: no registration per write.
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr, s.registerMemory(buf.data(), buf.size(), "writes"));
  if (!validate) fillPattern(buf.data(), size, 0, size);
  lastWriter.assign(validate ? slots : 0, UINT64_MAX);
  std::vector<Request> reqs(w);
  PipelineTimes times;
  times.done.reserve(t.iters);
  auto post = [&](uint64_t i) -> Status {
    const uint64_t slot = i % slots;
    uint8_t* p = buf.data() + slot * size;
    if (validate) {
      fillPattern(p, size, i, size);
      maybeInjectError(round.options, p, size, i);
      lastWriter[slot] = i;
    }
    BRAID_ASSIGN_OR_RETURN(reqs[i % w], s.iwrite(p, size, mr, key.key, slot * size, "a write"));
    return Status::ok();
  };
  const std::vector<uint64_t> railsBefore = s.endpoint().stats().bytesSentPerRail;
  BRAID_RETURN_IF_ERROR(runPipeline(s, "write", total, t.warmup, reqs, times, post,
                                    [](uint64_t) { return Status::ok(); }));
  // An acknowledged write has landed: each completion is a landing, and the interval ends
  // with the last one.
  row = computeBwLanded(size, times.warmupEndNs, times.done, times.done.back(), w, Side::kSender);
  row.bytesPerRail = railBytesSince(s, railsBefore);
  return Status::ok();
}

Status client(Session& s, const TestMsg& t, ClientRound& round, Report& report, Verdict&) {
  // The writes go to slots 0..slots-1 of the server's buffer.
  const uint64_t w = std::min<uint64_t>(t.txDepth, t.warmup + t.iters);
  BRAID_ASSIGN_OR_RETURN(KeyMsg key, recvKey(s, slotCount(t, w) * t.size));
  BwRow row;
  std::vector<uint64_t> lastWriter;
  Status st = runWrites(s, t, round, key, row, lastWriter);
  if (!key.valid) st = explainMissingKey(st, key);
  // The server learns that the size is over (or why it stopped) from this message.
  BRAID_RETURN_IF_ERROR(sendRmaEnd(s, &row, lastWriter, st));
  BRAID_RETURN_IF_ERROR(round.waitDone());
  report.addBw(row);
  return Status::ok();
}

Status server(Session& s, const TestMsg& t, Report& report, Verdict& verdict, ReplyMsg& done) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr,
                         s.registerMemory(buf.data(), buf.size(), "the target buffer"));
  RmaEnd end;
  BRAID_RETURN_IF_ERROR(end.post(s));
  BRAID_RETURN_IF_ERROR(sendReady(s));
  BRAID_RETURN_IF_ERROR(sendKey(s, mr));
  s.timelineStart(nowNs());  // --timeline: about when the client's timed operations start
  // The writes land while this side only drives progress; the client's end message
  // follows its last acknowledged write.
  BRAID_RETURN_IF_ERROR(end.wait(s, t, true, verdict.enabled ? static_cast<uint32_t>(slots) : 0));
  if (verdict.enabled) {
    std::vector<uint64_t> last = end.slots();
    if (last.size() != slots)
      return Status(Code::kProtocolError,
                    fmt::format("the client reported {} slots, {} expected", last.size(), slots));
    for (uint64_t k = 0; k < slots; ++k) {
      if (last[k] == UINT64_MAX) continue;
      if (last[k] >= total || last[k] % slots != k)
        return Status(Code::kProtocolError,
                      fmt::format("the client reported iteration {} for slot {}", last[k], k));
      verdict.check(buf.data() + k * size, size, last[k], size);
    }
  }
  report.addBw(end.row(size, Side::kSender));
  done.bytes = t.iters * size;
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
