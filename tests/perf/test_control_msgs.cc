// The perf tools' control messages: every field a peer sends is bounded and checked
// before use, and the error names the peer and the field (perf/control_msgs.h).
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "control_msgs.h"
#include "stats.h"

namespace braid::perf {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

const ToolSpec kSendBw{
    ToolKind::kSendBw, "braid_send_bw", "Send BW Test", "", 65536, 1000, true, false};
const ToolSpec kSendLat{
    ToolKind::kSendLat, "braid_send_lat", "Send Latency Test", "", 8, 1000, false, false};
const ToolSpec kWriteLat{ToolKind::kWriteLat, "braid_write_lat", "", "", 2, 1000, false, true};

// What a well-behaved client sends.
TestMsg goodTest(const ToolSpec& spec, uint64_t size = 65536, uint64_t iters = 1000,
                 uint32_t txDepth = 16) {
  TestMsg t;
  t.tool = static_cast<uint8_t>(spec.kind);
  t.command = static_cast<uint8_t>(TestCommand::kRun);
  t.txDepth = spec.isBw ? txDepth : 1;
  t.size = size;
  t.iters = iters;
  t.warmup = warmupFor(spec, t.txDepth, t.iters);
  return t;
}

Status check(const TestMsg& t, const ToolSpec& spec = kSendBw) {
  return checkTestMsg(t, sizeof t, spec, "10.0.0.2:41234");
}

bool has(const Status& st, const std::string& text) {
  return st.message().find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("a well-formed test passes the server's check", "[perf][control]") {
  CHECK(check(goodTest(kSendBw)).isOk());
  CHECK(check(goodTest(kSendBw, 1, 1, 1)).isOk());
  CHECK(check(goodTest(kSendBw, kMaxMessageSize, kMaxIters, 4)).isOk());
  CHECK(check(goodTest(kSendLat, 8, 1000), kSendLat).isOk());
  TestMsg end;
  end.command = static_cast<uint8_t>(TestCommand::kEnd);
  CHECK(check(end).isOk());
}

TEST_CASE("a huge message size is refused with the peer and the limit", "[perf][control]") {
  // The size that wrapped the buffer rounding to 0 bytes and overflowed the heap.
  TestMsg t = goodTest(kSendBw);
  t.size = kU64Max;
  Status st = check(t);
  REQUIRE_FALSE(st.isOk());
  CHECK(st.code() == Code::kInvalidArgument);
  INFO(st.message());
  CHECK(has(st,
            "client 10.0.0.2:41234 asked for a 18446744073709551615-byte message; the limit "
            "is 1 to 2147483648 bytes (2 GiB)"));
  t.size = kMaxMessageSize + 1;
  CHECK_FALSE(check(t).isOk());
  t.size = 0;
  CHECK(has(check(t), "asked for a 0-byte message"));
}

TEST_CASE("iterations, tx depth and warm-up out of range are refused", "[perf][control]") {
  TestMsg t = goodTest(kSendBw);
  t.iters = kU64Max;
  CHECK(has(check(t), "asked for 18446744073709551615 iterations; the limit is 1 to 100000000"));
  t = goodTest(kSendBw);
  t.iters = 0;
  CHECK(has(check(t), "asked for 0 iterations"));
  t = goodTest(kSendBw);
  t.txDepth = 0;
  CHECK(has(check(t), "tx depth of 0"));
  t.txDepth = kMaxTxDepth + 1;
  CHECK(has(check(t), "tx depth of 4097"));
  // The latency tools run one message at a time.
  t = goodTest(kSendLat, 8, 100);
  t.txDepth = 16;
  CHECK(has(check(t, kSendLat), "tx depth of 16; braid_send_lat runs one message at a time"));
  // warmup + iters must not wrap (the loops run to warmup + iters).
  t = goodTest(kSendBw);
  t.warmup = kU64Max;
  CHECK(has(check(t),
            "asked for a warm-up of 18446744073709551615 messages; braid_send_bw "
            "warms up with 16"));
  t.warmup = 0;
  CHECK_FALSE(check(t).isOk());
}

TEST_CASE("a buffer footprint above the limit is refused", "[perf][control]") {
  // 4096 slots of 2 GiB with --validate: 8 TiB.
  TestMsg t = goodTest(kSendBw, kMaxMessageSize, 10000, kMaxTxDepth);
  t.flags = kFlagValidate;
  Status st = check(t);
  INFO(st.message());
  CHECK(has(st,
            "asked for 4096 buffers of 2147483648 bytes (8796093022208 bytes); the limit is "
            "17179869184 bytes (16 GiB) per side"));
  // The same without --validate is one buffer.
  t.flags = 0;
  CHECK(check(t).isOk());
  // 16 slots of 2 GiB: 32 GiB.
  t = goodTest(kSendBw, kMaxMessageSize, 100, 16);
  t.flags = kFlagValidate;
  CHECK(has(check(t), "asked for 16 buffers of 2147483648 bytes"));
  // braid_write_lat with --validate: three landing slots and the source.
  TestMsg w = goodTest(kWriteLat, 1ull << 31, 10);
  w.flags = kFlagValidate;
  CHECK(bufferSlots(kWriteLat, w) == 4);
  CHECK(check(w, kWriteLat).isOk());
}

TEST_CASE("unknown command, tool, flags, version and wrong lengths are refused",
          "[perf][control]") {
  TestMsg t = goodTest(kSendBw);
  t.command = 7;
  CHECK(has(check(t), "sent test command 7; known: 1 (run), 2 (end)"));
  t = goodTest(kSendBw);
  t.tool = 99;
  Status st = check(t);
  CHECK(st.code() == Code::kInvalidArgument);
  CHECK(has(st, "runs another tool (tool kind 99) but this server is braid_send_bw"));
  t = goodTest(kSendBw);
  t.flags = 0x80;
  CHECK(has(check(t), "unknown test flags 0x80"));
  t = goodTest(kSendBw);
  t.version = 2;
  CHECK(has(check(t), "version 2; this tool speaks version 3"));
  t = goodTest(kSendBw);
  CHECK(has(checkTestMsg(t, 39, kSendBw, "10.0.0.2:41234"),
            "client 10.0.0.2:41234 sent 39 bytes of test parameters; 40 expected"));
  CHECK(has(checkTestMsg(t, 41, kSendBw, "p"), "sent 41 bytes"));
  // An end of test carries nothing else.
  TestMsg end;
  end.command = static_cast<uint8_t>(TestCommand::kEnd);
  end.size = kU64Max;
  CHECK(has(check(end), "end of test that carries test parameters"));
}

TEST_CASE("the client checks every field of the server's end of size", "[perf][control]") {
  const TestMsg t = goodTest(kSendBw, 4096, 100, 16);  // 116 messages in all
  auto done = [] {
    ReplyMsg r;
    r.type = static_cast<uint8_t>(ReplyType::kDone);
    r.messagesChecked = 116;
    r.bytesChecked = 116 * 4096;
    r.elapsedNs = 1'000'000;
    r.bytes = 100 * 4096;
    r.peakBps = 500'000'000;  // average 409.6 MB/s
    return r;
  };
  auto checkDone = [&](const ReplyMsg& r) {
    return checkReply(r, sizeof r, ReplyType::kDone, t, "10.0.0.1:18515");
  };
  CHECK(checkDone(done()).isOk());
  ReplyMsg r = done();
  r.badMessages = 117;
  CHECK(has(checkDone(r), "server 10.0.0.1:18515 reports 117 bad messages of 116 checked"));
  r = done();
  r.messagesChecked = kU64Max;
  CHECK(has(checkDone(r), "messages checked in a test of 116"));
  r = done();
  r.bytesChecked = kU64Max;
  CHECK(has(checkDone(r), "bytes checked"));
  r = done();
  r.badMessages = 1;
  CHECK(has(checkDone(r), "1 bad messages but no first bad byte"));
  r.badValid = 1;
  r.badOffset = 4096;
  CHECK(has(checkDone(r), "outside the test"));
  r.badValid = 2;
  CHECK(has(checkDone(r), "bad-byte flag of 2"));
  r = done();
  r.peakBps = 1;  // below the average
  CHECK(has(checkDone(r), "a peak lies between the average and ten times it"));
  r.peakBps = kU64Max;
  CHECK_FALSE(checkDone(r).isOk());
  r = done();
  r.bytes = kU64Max;
  CHECK(has(checkDone(r), "bytes timed"));
  r = done();
  r.type = 9;
  CHECK(has(checkDone(r), "answered 9 where 2 was expected"));
  CHECK(has(checkReply(r, 200, ReplyType::kDone, t, "s"), "sent 200 bytes of reply; 208"));
  // A refusal is the server's error; its text is made printable.
  r = done();
  r.type = static_cast<uint8_t>(ReplyType::kRefuse);
  std::snprintf(r.text, sizeof r.text, "no\x1b[31m way");
  Status st = checkDone(r);
  CHECK(st.code() == Code::kInvalidArgument);
  CHECK(has(st, "refused the test: no?[31m way"));
  std::memset(r.text, 'x', sizeof r.text);  // no NUL: bounded by the field
  CHECK(checkDone(r).message().size() < 200);
}

TEST_CASE("remote key messages are checked against the region the test needs", "[perf][control]") {
  KeyMsg k;
  k.valid = 1;
  k.length = 16 * 65536;
  CHECK(checkKey(k, sizeof k, 16 * 65536, "peer").isOk());
  CHECK(has(checkKey(k, sizeof k, 16 * 65536 + 1, "10.0.0.1:18515"),
            "peer 10.0.0.1:18515 sent the key of a 1048576-byte region; this test needs 1048577"));
  k.length = kU64Max;
  CHECK_FALSE(checkKey(k, sizeof k, 1, "p").isOk());
  k.valid = 3;
  CHECK(has(checkKey(k, sizeof k, 1, "p"), "remote key flag of 3"));
  k.valid = 0;  // no key (TCP): the one-sided call reports it
  CHECK(checkKey(k, sizeof k, 1, "p").isOk());
  CHECK(has(checkKey(k, 12, 1, "p"), "sent 12 bytes of remote key message"));
}

TEST_CASE("the one-sided end of size is checked field by field", "[perf][control]") {
  const TestMsg t = goodTest(kSendBw, 4096, 100, 16);
  RmaEndMsg m;
  m.iters = 100;
  m.elapsedNs = 1'000'000;
  m.peakBps = 409'600'000;  // the average: 100 x 4096 B in 1 ms
  auto chk = [&](const RmaEndMsg& e, size_t len, uint32_t slots = 0, bool bw = true) {
    return checkRmaEnd(e, len, t, bw, slots, "10.0.0.2:41234");
  };
  CHECK(chk(m, sizeof m).isOk());
  RmaEndMsg e = m;
  e.slots = 0xffffffffu;
  CHECK(has(chk(e, sizeof e),
            "client 10.0.0.2:41234 sent a table of 4294967295 slots; 0 "
            "expected"));
  e = m;
  e.slots = 16;
  CHECK(has(chk(e, sizeof e, 16), "sent 304 bytes of end of size; 432 expected"));
  CHECK(chk(e, sizeof e + 16 * 8, 16).isOk());
  e = m;
  e.iters = kU64Max;
  CHECK(has(chk(e, sizeof e), "reports 18446744073709551615 timed operations; the test has 100"));
  e = m;
  e.elapsedNs = 0;
  CHECK(has(chk(e, sizeof e), "timed interval of 0 ns"));
  e = m;
  e.peakBps = kU64Max;
  CHECK(has(chk(e, sizeof e), "a peak lies between"));
  // A latency test carries no figures.
  CHECK(has(chk(m, sizeof m, 0, false), "bandwidth figures for a latency test"));
  // The client's own error comes through with its code; unknown codes do not.
  e = RmaEndMsg();
  e.code = static_cast<uint8_t>(Code::kUnsupported);
  std::snprintf(e.text, sizeof e.text, "one-sided writes need verbs");
  Status st = chk(e, sizeof e);
  CHECK(st.code() == Code::kUnsupported);
  CHECK(has(st, "the client stopped: one-sided writes need verbs"));
  e.code = 200;
  CHECK(has(chk(e, sizeof e), "sent error code 200"));
  e.code = static_cast<uint8_t>(Code::kInProgress);
  CHECK(chk(e, sizeof e).code() == Code::kProtocolError);
  CHECK(has(chk(m, 100), "sent 100 bytes of end of size"));
}

TEST_CASE("a buffer size that would wrap the page rounding is refused", "[perf][control]") {
  auto b = Buffer::allocate(kU64Max);
  REQUIRE_FALSE(b.isOk());
  CHECK(b.status().code() == Code::kInvalidArgument);
  auto ok = Buffer::allocate(5000);
  REQUIRE(ok.isOk());
  CHECK(ok->size() == 5000);
}

}  // namespace braid::perf
