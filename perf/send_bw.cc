// braid_send_bw — one-way message bandwidth over braid endpoints (perftest's ib_send_bw).
//
//   server:  braid_send_bw [options]
//   client:  braid_send_bw [options] SERVER
//
// The client keeps --tx-depth isends in flight; the server keeps as many irecvs posted and
// reports what it received. The client's figures end when the server's end-of-size
// message arrives, so they count only data the receiver has.
#include <fmt/format.h>

#include <algorithm>

#include "perf_common.h"

namespace braid::perf {
namespace {

const ToolSpec kSpec{ToolKind::kSendBw,
                     "braid_send_bw",
                     "Send BW Test",
                     "braid_send_bw: one-way message bandwidth over braid (perftest ib_send_bw "
                     "conventions); a server without HOST, a client with the server's HOST",
                     65536,
                     1000,
                     true,
                     false};

// Peak window: one tx-depth window of completions (computeBw also requires 1% of the run).
size_t peakWindow(const TestMsg& t) {
  return t.txDepth;
}

Status client(Session& s, const TestMsg& t, ClientRound& round, Report& report, Verdict&) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const bool validate = (t.flags & kFlagValidate) != 0;
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  // Registered once: verbs sends are zero-copy without a registration per message.
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr, s.registerMemory(buf.data(), buf.size(), "sends"));
  if (!validate) fillPattern(buf.data(), size, 0, size);
  std::vector<Request> reqs(w);
  std::vector<uint64_t> marks;
  marks.reserve(t.iters + 1);
  auto post = [&](uint64_t i) -> Status {
    uint8_t* p = buf.data() + (i % slots) * size;
    if (validate) {
      fillPattern(p, size, i, size);
      maybeInjectError(round.options, p, size, i);
    }
    BRAID_ASSIGN_OR_RETURN(reqs[i % w], s.isend(p, size, kTagData, "a send", &mr));
    return Status::ok();
  };
  const std::vector<uint64_t> railsBefore = s.endpoint().stats().bytesSentPerRail;
  BRAID_RETURN_IF_ERROR(runPipeline(s, "send", total, t.warmup, reqs, marks, post,
                                    [](uint64_t) { return Status::ok(); }));
  BRAID_RETURN_IF_ERROR(round.waitDone());
  BwRow row = computeBw(size, marks, nowNs(), peakWindow(t));
  // Striping: what each rail carried (warmup included; eager messages go on the control
  // socket and count on no rail).
  row.bytesPerRail = railBytesSince(s, railsBefore);
  report.addBw(row);
  return Status::ok();
}

Status server(Session& s, const TestMsg& t, Report& report, Verdict& verdict, ReplyMsg& done) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const uint64_t w = std::min<uint64_t>(t.txDepth, total);
  const bool validate = (t.flags & kFlagValidate) != 0;
  const uint64_t slots = slotCount(t, w);
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(slots * size));
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr, s.registerMemory(buf.data(), buf.size(), "receives"));
  std::vector<Request> reqs(w);
  for (uint64_t i = 0; i < w; ++i) {
    BRAID_ASSIGN_OR_RETURN(
        reqs[i], s.irecv(buf.data() + (i % slots) * size, size, kTagData, "a receive", &mr));
  }
  BRAID_RETURN_IF_ERROR(sendReady(s));
  std::vector<uint64_t> marks;
  marks.reserve(t.iters + 1);
  if (t.warmup == 0) marks.push_back(nowNs());
  for (uint64_t i = 0; i < total; ++i) {
    Request& r = reqs[i % w];
    Status st = s.wait(r, "receive");
    if (!st.isOk()) return st.withContext(fmt::format("message {} of {}", i, total));
    if (i + 1 >= t.warmup) marks.push_back(nowNs());
    if (r.size() != size)
      return Status(Code::kProtocolError,
                    fmt::format("message {} has {} bytes, {} expected", i, r.size(), size));
    uint8_t* p = buf.data() + (i % slots) * size;
    if (validate) verdict.check(p, size, i, size);
    if (i + w < total) {
      BRAID_ASSIGN_OR_RETURN(r, s.irecv(p, size, kTagData, "a receive", &mr));
    }
  }
  BwRow row = computeBw(size, marks, marks.back(), peakWindow(t));
  report.addBw(row);
  done.elapsedNs = marks.back() - marks.front();
  done.bytes = t.iters * size;
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
