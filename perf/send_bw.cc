// braid_send_bw — one-way message bandwidth over braid endpoints (perftest's ib_send_bw).
//
//   server:  braid_send_bw [options]
//   client:  braid_send_bw [options] SERVER
//
// The client keeps --tx-depth isends in flight; the server keeps as many irecvs posted and
// reports what it received. The first tx-depth messages are the warm-up. The server times
// from the arrival of the last warm-up message to that of the last message, and
// acknowledges the warm-up; the client times from that acknowledgement's arrival to the
// server's end of size, so both count the same bytes, only data the receiver has, and
// print the receiver's figures next to the sender's.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

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

// Peak intervals hold at least one tx-depth window of messages (stats.h).
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
  PipelineTimes times;
  times.wantPosted = true;
  times.posted.reserve(t.iters);
  times.done.reserve(t.iters);
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
  // A send finishing says little about when its bytes land (TCP: the kernel took them;
  // eager: copied out), so the sender times between two events of the receiver: its
  // acknowledgement of the warm-up (watched while sending) and its end of size.
  BRAID_RETURN_IF_ERROR(runPipeline(
      s, "send", total, t.warmup, reqs, times, post, [](uint64_t) { return Status::ok(); },
      &round.warmedReq, &round.warmedNs));
  BRAID_RETURN_IF_ERROR(round.waitWarmedUp());
  BRAID_RETURN_IF_ERROR(round.waitDone());
  const uint64_t endNs = nowNs();
  BwRow row = computeBwSent(size, round.warmedNs, times.posted, endNs, peakWindow(t));
  // The receiver's figures of the same messages, next to the sender's.
  const ReplyMsg& d = round.done;
  if (d.elapsedNs > 0) {
    BwRow::Other other;
    other.side = Side::kReceiver;
    other.avgBps = static_cast<double>(d.bytes) * 1e9 / static_cast<double>(d.elapsedNs);
    other.peakBps = std::max(static_cast<double>(d.peakBps), other.avgBps);
    row.other = other;
  }
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
  uint64_t startNs = nowNs();  // the end of the warm-up (checkTestParams: warmup >= 1)
  std::vector<uint64_t> landed;
  landed.reserve(t.iters);
  for (uint64_t i = 0; i < total; ++i) {
    Request& r = reqs[i % w];
    Status st = s.wait(r, "receive");
    if (!st.isOk()) return st.withContext(fmt::format("message {} of {}", i, total));
    const uint64_t now = nowNs();
    s.timelineTick(now);
    if (i >= t.warmup) landed.push_back(now);
    if (r.size() != size)
      return Status(Code::kProtocolError,
                    fmt::format("message {} has {} bytes, {} expected", i, r.size(), size));
    uint8_t* p = buf.data() + (i % slots) * size;
    if (validate) verdict.check(p, size, i, size);
    if (i + w < total) {
      BRAID_ASSIGN_OR_RETURN(r, s.irecv(p, size, kTagData, "a receive", &mr));
    }
    if (i + 1 == t.warmup) {
      // The receiver's interval starts here; the sender's when this acknowledgement lands.
      startNs = now;
      s.timelineStart(now);
      BRAID_RETURN_IF_ERROR(sendWarmedUp(s));
    }
  }
  const uint64_t endNs = landed.empty() ? startNs : landed.back();
  BwRow row = computeBwLanded(size, startNs, landed, endNs, peakWindow(t), Side::kReceiver);
  report.addBw(row);
  done.elapsedNs = row.elapsedNs;
  done.bytes = t.iters * size;
  done.peakBps = static_cast<uint64_t>(std::llround(row.peakBps));
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
