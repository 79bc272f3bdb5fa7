// braid_send_lat — ping-pong latency over braid endpoints (perftest's ib_send_lat).
//
//   server:  braid_send_lat [options]
//   client:  braid_send_lat [options] SERVER
//
// The client sends a ping and waits for the pong; one sample is half of that round trip.
// Each side posts its next receive before it sends, so the receive is always ready and
// its clear-to-send rides along with the message going the other way (TCP: in the same
// write; verbs: inside the same SEND, no RDMA WRITE of its own). The server echoes
// the ping it received, so --validate checks both directions.
#include <fmt/format.h>

#include <algorithm>

#include "perf_common.h"

namespace braid::perf {
namespace {

const ToolSpec kSpec{ToolKind::kSendLat,
                     "braid_send_lat",
                     "Send Latency Test",
                     "braid_send_lat: ping-pong message latency over braid (perftest "
                     "ib_send_lat conventions); a server without HOST, a client with the "
                     "server's HOST",
                     8,
                     1000,
                     false,
                     false};

Status client(Session& s, const TestMsg& t, ClientRound& round, Report& report, Verdict& verdict) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const bool validate = (t.flags & kFlagValidate) != 0;
  // One ping buffer (its send is over before it is refilled), two pong buffers (the next
  // pong's receive is posted before the last pong is checked).
  BRAID_ASSIGN_OR_RETURN(Buffer ping, Buffer::allocate(size));
  BRAID_ASSIGN_OR_RETURN(Buffer pong, Buffer::allocate(2 * size));
  // Registered once: verbs transfers are zero-copy without a registration per message.
  BRAID_ASSIGN_OR_RETURN(MemoryRegion pingMr, s.registerMemory(ping.data(), ping.size(), "pings"));
  BRAID_ASSIGN_OR_RETURN(MemoryRegion pongMr, s.registerMemory(pong.data(), pong.size(), "pongs"));
  if (!validate) fillPattern(ping.data(), size, 0, size);
  std::vector<double> samples;
  samples.reserve(t.iters);
  Request rq[2];
  BRAID_ASSIGN_OR_RETURN(rq[0], s.irecv(pong.data(), size, kTagData, "a pong receive", &pongMr));
  for (uint64_t i = 0; i < total; ++i) {
    if (validate) {
      fillPattern(ping.data(), size, i, size);
      maybeInjectError(round.options, ping.data(), size, i);
    }
    uint64_t t1 = nowNs();
    BRAID_ASSIGN_OR_RETURN(Request sq, s.isend(ping.data(), size, kTagData, "a ping", &pingMr));
    Request& r = rq[i % 2];
    Status st = s.wait(r, "pong");
    if (!st.isOk()) return st.withContext(fmt::format("round trip {} of {}", i, total));
    uint64_t t2 = nowNs();
    if (i + 1 < total) {
      BRAID_ASSIGN_OR_RETURN(rq[(i + 1) % 2], s.irecv(pong.data() + ((i + 1) % 2) * size, size,
                                                      kTagData, "a pong receive", &pongMr));
    }
    st = s.wait(sq, "ping");
    if (!st.isOk()) return st.withContext(fmt::format("round trip {} of {}", i, total));
    if (r.size() != size)
      return Status(Code::kProtocolError,
                    fmt::format("pong {} has {} bytes, {} expected", i, r.size(), size));
    if (validate) verdict.check(pong.data() + (i % 2) * size, size, i, size);
    if (i >= t.warmup) samples.push_back(static_cast<double>(t2 - t1) / 2000.0);
  }
  BRAID_RETURN_IF_ERROR(round.waitDone());
  report.addLat(computeLat(size, std::move(samples)));
  return Status::ok();
}

Status server(Session& s, const TestMsg& t, Report& report, Verdict& verdict, ReplyMsg& done) {
  const uint64_t size = t.size, total = t.warmup + t.iters;
  const bool validate = (t.flags & kFlagValidate) != 0;
  BRAID_ASSIGN_OR_RETURN(Buffer buf, Buffer::allocate(2 * size));
  BRAID_ASSIGN_OR_RETURN(MemoryRegion mr, s.registerMemory(buf.data(), buf.size(), "pings"));
  Request rq[2];
  BRAID_ASSIGN_OR_RETURN(rq[0], s.irecv(buf.data(), size, kTagData, "a ping receive", &mr));
  BRAID_RETURN_IF_ERROR(sendReady(s));
  // perftest's server view: the period between two pongs is one round trip.
  std::vector<uint64_t> sent;
  sent.reserve(total);
  for (uint64_t i = 0; i < total; ++i) {
    Request& r = rq[i % 2];
    Status st = s.wait(r, "ping");
    if (!st.isOk()) return st.withContext(fmt::format("round trip {} of {}", i, total));
    if (r.size() != size)
      return Status(Code::kProtocolError,
                    fmt::format("ping {} has {} bytes, {} expected", i, r.size(), size));
    // The other buffer held ping i-1, whose echo has finished.
    if (i + 1 < total) {
      BRAID_ASSIGN_OR_RETURN(rq[(i + 1) % 2], s.irecv(buf.data() + ((i + 1) % 2) * size, size,
                                                      kTagData, "a ping receive", &mr));
    }
    uint8_t* p = buf.data() + (i % 2) * size;
    BRAID_ASSIGN_OR_RETURN(Request sq, s.isend(p, size, kTagData, "a pong", &mr));
    sent.push_back(nowNs());  // after the send: the clock read is not on the round trip
    st = s.wait(sq, "pong");
    if (!st.isOk()) return st.withContext(fmt::format("round trip {} of {}", i, total));
    if (validate) verdict.check(p, size, i, size);  // after the echo: off the critical path
  }
  reportServerLat(t, sent, report, done);
  return Status::ok();
}

}  // namespace
}  // namespace braid::perf

int main(int argc, char** argv) {
  return braid::perf::toolMain(braid::perf::kSpec, argc, argv, braid::perf::client,
                               braid::perf::server);
}
