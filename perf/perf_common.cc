// perf/perf_common.cc — the driver every tool runs: the per-size exchange of control
// messages between client and server (each received one checked, control_msgs.h), and the
// exit code.
#include "perf_common.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace braid::perf {

// ------------------------------------------------------------------ control exchange

namespace {

Status sendReply(Session& s, ReplyType type, std::string_view what) {
  ReplyMsg r;
  r.type = static_cast<uint8_t>(type);
  return s.send(&r, sizeof r, kTagReply, what);
}

}  // namespace

Status sendReady(Session& s) {
  return sendReply(s, ReplyType::kReady, "sending ready");
}

Status sendWarmedUp(Session& s) {
  return sendReply(s, ReplyType::kWarmedUp, "acknowledging the warm-up");
}

Status sendKey(Session& s, const MemoryRegion& mr) {
  KeyMsg k;
  k.length = mr.length();
  auto key = mr.remoteKey();
  if (key) {
    k.valid = 1;
    k.key = *key;
  } else {
    std::snprintf(k.text, sizeof k.text, "%s", key.status().message().c_str());
  }
  return s.send(&k, sizeof k, kTagKey, "sending the remote key");
}

Result<KeyMsg> recvKey(Session& s, uint64_t needBytes) {
  KeyMsg k;
  size_t got = 0;
  BRAID_RETURN_IF_ERROR(s.recv(&k, sizeof k, kTagKey, "the peer's remote key", got));
  BRAID_RETURN_IF_ERROR(checkKey(k, got, needBytes, s.peer()));
  return k;
}

Status explainMissingKey(const Status& error, const KeyMsg& key) {
  if (error.isOk() || error.code() == Code::kUnsupported) return error;
  return Status(error.code(), fmt::format("{} (the server sent no remote key: {})", error.message(),
                                          textOf(key.text, sizeof key.text)));
}

Status sendRmaEnd(Session& s, const BwRow* row, const std::vector<uint64_t>& slots,
                  const Status& error) {
  std::vector<uint8_t> buf(sizeof(RmaEndMsg) + slots.size() * sizeof(uint64_t));
  RmaEndMsg m;
  if (!error.isOk()) {
    m.code = static_cast<uint8_t>(error.code());
    std::snprintf(m.text, sizeof m.text, "%s", error.message().c_str());
  } else {
    m.slots = static_cast<uint32_t>(slots.size());
    if (row) {
      m.iters = row->iters;
      m.elapsedNs = row->elapsedNs;
      m.peakBps = static_cast<uint64_t>(std::llround(row->peakBps));
    }
  }
  std::memcpy(buf.data(), &m, sizeof m);
  if (m.slots) std::memcpy(buf.data() + sizeof m, slots.data(), slots.size() * sizeof(uint64_t));
  const size_t len = error.isOk() ? buf.size() : sizeof m;
  Status st = s.send(buf.data(), len, kTagRmaEnd, "sending the end of size");
  // The error that stopped the size wins over a failure to report it.
  if (!error.isOk()) return error;
  return st;
}

Status RmaEnd::post(Session& s) {
  buf.assign(sizeof(RmaEndMsg) + kMaxSlots * sizeof(uint64_t), 0);
  BRAID_ASSIGN_OR_RETURN(req, s.irecv(buf.data(), buf.size(), kTagRmaEnd, "the end of size"));
  return Status::ok();
}

Status RmaEnd::wait(Session& s, const TestMsg& t, bool isBw, uint32_t expectSlots) {
  BRAID_RETURN_IF_ERROR(s.waitIdle(req, "waiting for the client's end of size"));
  return checkRmaEnd(msg(), req.size(), t, isBw, expectSlots, s.peer());
}

std::vector<uint64_t> RmaEnd::slots() const {
  std::vector<uint64_t> v(msg().slots);
  if (!v.empty())
    std::memcpy(v.data(), buf.data() + sizeof(RmaEndMsg), v.size() * sizeof(uint64_t));
  return v;
}

BwRow RmaEnd::row(uint64_t size, Side side) const {
  // checkRmaEnd bounded every field: the interval is not 0 and the peak lies between the
  // average and ten times it.
  BwRow r;
  r.bytes = size;
  r.side = side;
  r.iters = msg().iters;
  r.elapsedNs = msg().elapsedNs;
  const double secs = static_cast<double>(std::max<uint64_t>(r.elapsedNs, 1)) * 1e-9;
  r.avgBps = static_cast<double>(size) * static_cast<double>(r.iters) / secs;
  r.msgRate = static_cast<double>(r.iters) / secs;
  r.peakBps = std::max(static_cast<double>(msg().peakBps), r.avgBps);
  return r;
}

Status ClientRound::waitDone() {
  BRAID_RETURN_IF_ERROR(session.wait(doneReq, "waiting for the server's end of size"));
  return checkReply(done, doneReq.size(), ReplyType::kDone, test, session.peer());
}

Status ClientRound::waitWarmedUp() {
  if (warmedNs == 0) {
    BRAID_RETURN_IF_ERROR(session.wait(warmedReq, "waiting for the end of the warm-up"));
    warmedNs = nowNs();
  }
  return checkReply(warmed, warmedReq.size(), ReplyType::kWarmedUp, test, session.peer());
}

// ------------------------------------------------------------------ driver

namespace {

Status runClient(const ToolSpec& spec, const Options& o, Session& s, ClientFn fn, Report& report,
                 Verdict& verdict) {
  bool first = true;
  for (uint64_t size : sizeList(o)) {
    const TestMsg t = testFor(spec, o, size);
    if (first) report.printHeader(s, t, o.all);
    first = false;
    // The replies are posted before the test goes out, so they never wait for a CTS; the
    // server sends them in this order (one tag, matched in posting order).
    ReplyMsg ready;
    ClientRound round{s, o, t, Request(), ReplyMsg(), Request(), ReplyMsg(), 0};
    BRAID_ASSIGN_OR_RETURN(Request readyReq, s.irecv(&ready, sizeof ready, kTagReply, "ready"));
    if (spec.kind == ToolKind::kSendBw) {
      BRAID_ASSIGN_OR_RETURN(round.warmedReq, s.irecv(&round.warmed, sizeof round.warmed, kTagReply,
                                                      "the end of the warm-up"));
    }
    BRAID_ASSIGN_OR_RETURN(round.doneReq,
                           s.irecv(&round.done, sizeof round.done, kTagReply, "end of size"));
    BRAID_RETURN_IF_ERROR(s.send(&t, sizeof t, kTagTest, "sending the test parameters"));
    BRAID_RETURN_IF_ERROR(s.wait(readyReq, "waiting for the server to post its receives"));
    BRAID_RETURN_IF_ERROR(checkReply(ready, readyReq.size(), ReplyType::kReady, t, s.peer()));
    Status st = fn(s, t, round, report, verdict);
    if (!st.isOk()) return st.withContext(fmt::format("size {}", size));
    // The server's tally: every message (bw) or every ping (lat) it checked.
    if (o.validate) verdict.mergeReply(round.done, size);
  }
  report.endTable();
  // Before kEnd: the server's close that follows is no rail going down.
  s.timelineFinish();
  TestMsg end;
  end.command = static_cast<uint8_t>(TestCommand::kEnd);
  // The server closes once it has read kEnd; nothing is outstanding on either side then, so
  // each side's braid takes the other's close frame as an orderly close.
  BRAID_RETURN_IF_ERROR(s.send(&end, sizeof end, kTagTest, "sending the end of the test"));
  return Status::ok();
}

// The server's receive of the client's next TestMsg. Its buffer is larger than a TestMsg so
// that a message of the wrong length arrives whole and is reported as such.
struct TestRecv {
  alignas(8) std::array<uint8_t, 256> raw{};
  Request req;
  Status post(Session& s) {
    BRAID_ASSIGN_OR_RETURN(req, s.irecv(raw.data(), raw.size(), kTagTest, "test parameters"));
    return Status::ok();
  }
};

Status runServer(const ToolSpec& spec, Session& s, ServerFn fn, Report& report, Verdict& verdict) {
  TestRecv tq;
  BRAID_RETURN_IF_ERROR(tq.post(s));
  bool first = true;
  for (;;) {
    Status got = s.wait(tq.req, "waiting for the client's next test");
    TestMsg t;
    Status chk;
    if (got.code() == Code::kTruncated) {
      chk = Status(Code::kProtocolError,
                   fmt::format("client {} sent more than {} bytes of test parameters; {} expected",
                               s.peer(), tq.raw.size(), sizeof t));
    } else {
      BRAID_RETURN_IF_ERROR(got);
      std::memcpy(&t, tq.raw.data(), std::min(sizeof t, tq.req.size()));
      chk = checkTestMsg(t, tq.req.size(), spec, s.peer());
    }
    if (!chk.isOk()) {
      // As perftest's, a server serves one client: this one is told why it is refused, and
      // the server exits with the same error.
      ReplyMsg refuse;
      refuse.type = static_cast<uint8_t>(ReplyType::kRefuse);
      std::snprintf(refuse.text, sizeof refuse.text, "%s", chk.message().c_str());
      (void)s.send(&refuse, sizeof refuse, kTagReply, "refusing the test");
      return chk.withContext("refused the client's test");
    }
    if (t.command == static_cast<uint8_t>(TestCommand::kEnd)) {
      s.timelineFinish();
      break;
    }
    const TestMsg cur = t;
    // The next test's receive goes out now, so the client never waits for its CTS.
    BRAID_RETURN_IF_ERROR(tq.post(s));
    if (first) report.printHeader(s, cur, (cur.flags & kFlagAllSizes) != 0);
    first = false;
    Verdict v;
    v.enabled = (cur.flags & kFlagValidate) != 0;
    ReplyMsg done;
    done.type = static_cast<uint8_t>(ReplyType::kDone);
    Status st = fn(s, cur, report, v, done);
    if (!st.isOk()) return st.withContext(fmt::format("size {}", cur.size));
    v.toReply(done);
    verdict.merge(v);
    BRAID_RETURN_IF_ERROR(s.send(&done, sizeof done, kTagReply, "sending the end of size"));
  }
  report.endTable();
  return Status::ok();
}

}  // namespace

void reportServerLat(const TestMsg& t, const std::vector<uint64_t>& sent, Report& report,
                     ReplyMsg& done) {
  const uint64_t total = t.warmup + t.iters;
  std::vector<double> samples;
  for (uint64_t i = t.warmup; i + 1 < total && i + 1 < sent.size(); ++i)
    samples.push_back(static_cast<double>(sent[i + 1] - sent[i]) / 2000.0);
  report.addLat(computeLat(t.size, std::move(samples)));
  done.elapsedNs =
      sent.empty() ? 0 : sent.back() - sent[std::min<uint64_t>(t.warmup, sent.size() - 1)];
  done.bytes = 2 * t.iters * t.size;
}

int toolMain(const ToolSpec& spec, int argc, char** argv, ClientFn client, ServerFn server) {
  Options o;
  if (auto rc = parseCommandLine(spec, argc, argv, o)) return *rc;
  return runTool(spec, o, client, server);
}

int runTool(const ToolSpec& spec, const Options& o, ClientFn client, ServerFn server) {
  Report report(spec, o);
  Verdict verdict;
  verdict.enabled = o.validate;
  auto s = Session::open(spec, o);
  if (!s) {
    printError(spec, s.status().toString());
    report.finish(verdict, s.status().toString());
    return kExitFailure;
  }
  Status st = o.isServer() ? runServer(spec, **s, server, report, verdict)
                           : runClient(spec, o, **s, client, report, verdict);
  if (!st.isOk()) {
    (*s)->timelineFinish();  // the last interval, with the rail events that led here
    report.endTable();
    printError(spec, st.toString());
    report.finish(verdict, st.toString());
    return kExitFailure;
  }
  if (o.railStats) report.railTable((*s)->endpoint().stats());
  bool jsonOk = report.finish(verdict, "");
  if (verdict.enabled && !verdict.passed()) return kExitFailure;
  return jsonOk ? kExitOk : kExitFailure;
}

std::vector<uint64_t> railBytesSince(Session& s, const std::vector<uint64_t>& before) {
  std::vector<uint64_t> now = s.endpoint().stats().bytesSentPerRail;
  for (size_t r = 0; r < now.size() && r < before.size(); ++r) now[r] -= before[r];
  return now;
}

}  // namespace braid::perf
