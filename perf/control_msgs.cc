// perf/control_msgs.cc — the control messages of the tools: checks of what a peer sent.
#include "control_msgs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace braid::perf {

const char* toolName(uint8_t kind) {
  switch (static_cast<ToolKind>(kind)) {
    case ToolKind::kSendBw:
      return "braid_send_bw";
    case ToolKind::kSendLat:
      return "braid_send_lat";
    case ToolKind::kWriteBw:
      return "braid_write_bw";
    case ToolKind::kReadBw:
      return "braid_read_bw";
    case ToolKind::kWriteLat:
      return "braid_write_lat";
  }
  return "another tool";
}

namespace {

// "2 GiB", "16 GiB", "512 MiB", or plain bytes: for the limits in messages.
std::string human(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{} bytes", bytes);
}

Status badHeader(std::string_view who, uint32_t magic, uint16_t version) {
  return Status(Code::kProtocolError,
                fmt::format("{} is not a compatible braid perf tool (magic 0x{:08x}, version {}; "
                            "this tool speaks version {}: run the same braid build on both "
                            "sides)",
                            who, magic, version, kCtlVersion));
}

Status badLength(std::string_view who, size_t len, std::string_view what, size_t expect) {
  return Status(Code::kProtocolError,
                fmt::format("{} sent {} bytes of {}; {} expected", who, len, what, expect));
}

// A rate a peer reported must be one its own interval allows: a peak interval holds at
// most every timed byte and lasts at least a tenth of the run (stats.h), so the peak lies
// between the average and ten times it.
Status checkPeak(std::string_view who, uint64_t peakBps, uint64_t bytes, uint64_t elapsedNs) {
  if (elapsedNs == 0 || elapsedNs > kMaxElapsedNs)
    return Status(Code::kProtocolError,
                  fmt::format("{} reports a timed interval of {} ns; 1 ns to a week expected", who,
                              elapsedNs));
  const double avg = static_cast<double>(bytes) * 1e9 / static_cast<double>(elapsedNs);
  const double peak = static_cast<double>(peakBps);
  if (peak + 1.0 < avg * (1 - 1e-9) || peak > 10.0 * avg * (1 + 1e-9) + 1.0)
    return Status(Code::kProtocolError,
                  fmt::format("{} reports a peak of {} B/s for an average of {:.0f} B/s; a peak "
                              "lies between the average and ten times it",
                              who, peakBps, avg));
  return Status::ok();
}

}  // namespace

uint64_t warmupFor(const ToolSpec& spec, uint64_t txDepth, uint64_t iters) {
  // bw: one window, so the timed interval starts with the pipeline full. lat: a tenth of
  // the round trips, at most 100, so caches and the scheduler have settled.
  if (spec.isBw) return std::min(txDepth, iters);
  return std::min<uint64_t>(100, iters / 10);
}

uint64_t bufferSlots(const ToolSpec& spec, const TestMsg& t) {
  const bool validate = (t.flags & kFlagValidate) != 0;
  switch (spec.kind) {
    case ToolKind::kSendLat:
      return 3;  // the client's ping and its two pong buffers
    case ToolKind::kWriteLat:
      return (validate ? 3 : 1) + 1;  // landing slots and the source message
    default:
      // bw: one slot per operation in flight with --validate (perf_common.h slotCount).
      return validate ? std::min<uint64_t>(t.txDepth, t.warmup + t.iters) : 1;
  }
}

Status checkTestParams(const TestMsg& m, const ToolSpec& spec, std::string_view who) {
  auto invalid = [](std::string text) { return Status(Code::kInvalidArgument, std::move(text)); };
  if (m.flags & ~kKnownFlags)
    return invalid(fmt::format("{} set unknown test flags 0x{:x} (known: 0x{:x})", who,
                               m.flags & ~kKnownFlags, kKnownFlags));
  if (m.size == 0 || m.size > kMaxMessageSize)
    return invalid(fmt::format("{} asked for a {}-byte message; the limit is 1 to {} bytes ({})",
                               who, m.size, kMaxMessageSize, human(kMaxMessageSize)));
  if (m.iters == 0 || m.iters > kMaxIters)
    return invalid(
        fmt::format("{} asked for {} iterations; the limit is 1 to {}", who, m.iters, kMaxIters));
  if (spec.isBw && (m.txDepth == 0 || m.txDepth > kMaxTxDepth))
    return invalid(fmt::format("{} asked for a tx depth of {}; the limit is 1 to {}", who,
                               m.txDepth, kMaxTxDepth));
  if (!spec.isBw && m.txDepth != 1)
    return invalid(
        fmt::format("{} asked for a tx depth of {}; {} runs one message at a time "
                    "(tx depth 1)",
                    who, m.txDepth, spec.name));
  const uint64_t warmup = warmupFor(spec, m.txDepth, m.iters);
  if (m.warmup != warmup)
    return invalid(
        fmt::format("{} asked for a warm-up of {} messages; {} warms up with {} for "
                    "{} iterations at tx depth {}",
                    who, m.warmup, spec.name, warmup, m.iters, m.txDepth));
  // Each factor is bounded above, so the product cannot wrap.
  const uint64_t slots = bufferSlots(spec, m);
  if (slots * m.size > kMaxBufferBytes)
    return invalid(
        fmt::format("{} asked for {} buffers of {} bytes ({} bytes); the limit is {} "
                    "bytes ({}) per side",
                    who, slots, m.size, slots * m.size, kMaxBufferBytes, human(kMaxBufferBytes)));
  return Status::ok();
}

Status checkTestMsg(const TestMsg& m, size_t len, const ToolSpec& spec, std::string_view peer) {
  const std::string who = fmt::format("client {}", peer);
  if (len != sizeof m) return badLength(who, len, "test parameters", sizeof m);
  if (m.magic != kCtlMagic || m.version != kCtlVersion) return badHeader(who, m.magic, m.version);
  if (m.command == static_cast<uint8_t>(TestCommand::kEnd)) {
    if (m.tool != 0 || m.flags != 0 || m.txDepth != 0 || m.size != 0 || m.iters != 0 ||
        m.warmup != 0)
      return Status(Code::kProtocolError,
                    fmt::format("{} sent an end of test that carries test parameters", who));
    return Status::ok();
  }
  if (m.command != static_cast<uint8_t>(TestCommand::kRun))
    return Status(Code::kProtocolError,
                  fmt::format("{} sent test command {}; known: 1 (run), 2 (end)", who, m.command));
  if (m.tool != static_cast<uint8_t>(spec.kind))
    return Status(Code::kInvalidArgument,
                  fmt::format("{} runs {} (tool kind {}) but this server is {}: run the same tool "
                              "on both sides",
                              who, toolName(m.tool), m.tool, spec.name));
  return checkTestParams(m, spec, who);
}

Status checkReply(const ReplyMsg& m, size_t len, ReplyType expected, const TestMsg& t,
                  std::string_view peer) {
  const std::string who = fmt::format("server {}", peer);
  if (len != sizeof m) return badLength(who, len, "reply", sizeof m);
  if (m.magic != kCtlMagic || m.version != kCtlVersion) return badHeader(who, m.magic, m.version);
  if (m.type == static_cast<uint8_t>(ReplyType::kRefuse))
    return Status(Code::kInvalidArgument,
                  fmt::format("{} refused the test: {}", who, textOf(m.text, sizeof m.text)));
  if (m.type != static_cast<uint8_t>(expected))
    return Status(Code::kProtocolError, fmt::format("{} answered {} where {} was expected", who,
                                                    m.type, static_cast<int>(expected)));
  if (expected != ReplyType::kDone) return Status::ok();
  // The tally and the figures of a size: every count within the test the client asked for
  // (both bounded by checkTestParams, so no product below can wrap).
  auto bad = [&](std::string text) {
    return Status(Code::kProtocolError, fmt::format("{} {}", who, text));
  };
  const uint64_t total = t.warmup + t.iters;
  if (m.badValid > 1) return bad(fmt::format("sent a bad-byte flag of {}", m.badValid));
  if (m.messagesChecked > total)
    return bad(
        fmt::format("reports {} messages checked in a test of {}", m.messagesChecked, total));
  if (m.bytesChecked > m.messagesChecked * t.size)
    return bad(fmt::format("reports {} bytes checked in {} messages of {} bytes", m.bytesChecked,
                           m.messagesChecked, t.size));
  if (m.badMessages > m.messagesChecked)
    return bad(
        fmt::format("reports {} bad messages of {} checked", m.badMessages, m.messagesChecked));
  if ((m.badValid == 1) != (m.badMessages > 0))
    return bad(fmt::format("reports {} bad messages but {} first bad byte", m.badMessages,
                           m.badValid ? "a" : "no"));
  if (m.badValid && (m.badIter >= total || m.badOffset >= t.size))
    return bad(
        fmt::format("reports a first bad byte at offset {} of message {}, outside the "
                    "test ({} messages of {} bytes)",
                    m.badOffset, m.badIter, total, t.size));
  if (m.bytes > 2 * t.iters * t.size)
    return bad(
        fmt::format("reports {} bytes timed in a test of {} x {} bytes", m.bytes, t.iters, t.size));
  if (m.elapsedNs > kMaxElapsedNs)
    return bad(fmt::format("reports a timed interval of {} ns", m.elapsedNs));
  if (m.peakBps != 0) return checkPeak(who, m.peakBps, m.bytes, m.elapsedNs);
  return Status::ok();
}

Status checkKey(const KeyMsg& k, size_t len, uint64_t needBytes, std::string_view peer) {
  const std::string who = fmt::format("peer {}", peer);
  if (len != sizeof k) return badLength(who, len, "remote key message", sizeof k);
  if (k.magic != kCtlMagic || k.version != kCtlVersion) return badHeader(who, k.magic, k.version);
  if (k.valid > 1)
    return Status(Code::kProtocolError,
                  fmt::format("{} sent a remote key flag of {}", who, k.valid));
  if (k.valid && (k.length < needBytes || k.length > kMaxBufferBytes))
    return Status(Code::kProtocolError,
                  fmt::format("{} sent the key of a {}-byte region; this test needs {} bytes "
                              "(at most {})",
                              who, k.length, needBytes, kMaxBufferBytes));
  return Status::ok();
}

Status checkRmaEnd(const RmaEndMsg& m, size_t len, const TestMsg& t, bool isBw,
                   uint32_t expectSlots, std::string_view peer) {
  const std::string who = fmt::format("client {}", peer);
  if (len < sizeof m) return badLength(who, len, "end of size", sizeof m);
  if (m.magic != kCtlMagic || m.version != kCtlVersion) return badHeader(who, m.magic, m.version);
  auto bad = [&](std::string text) {
    return Status(Code::kProtocolError, fmt::format("{} {}", who, text));
  };
  if (m.code != 0) {
    // The client's own failure: a well-formed one is that failure, on this side too.
    if (m.code == static_cast<uint8_t>(Code::kInProgress) ||
        m.code > static_cast<uint8_t>(Code::kInternal))
      return bad(fmt::format("sent error code {}", m.code));
    if (len != sizeof m) return badLength(who, len, "end of size with an error", sizeof m);
    return Status(static_cast<Code>(m.code),
                  fmt::format("the client stopped: {}", textOf(m.text, sizeof m.text)));
  }
  if (m.slots != expectSlots)
    return bad(fmt::format("sent a table of {} slots; {} expected", m.slots, expectSlots));
  if (len != sizeof m + uint64_t{m.slots} * sizeof(uint64_t))
    return badLength(who, len, "end of size", sizeof m + uint64_t{m.slots} * sizeof(uint64_t));
  if (!isBw) {
    if (m.iters != 0 || m.elapsedNs != 0 || m.peakBps != 0)
      return bad("sent bandwidth figures for a latency test");
    return Status::ok();
  }
  if (m.iters != t.iters)
    return bad(fmt::format("reports {} timed operations; the test has {}", m.iters, t.iters));
  return checkPeak(who, m.peakBps, m.iters * t.size, m.elapsedNs);
}

std::string textOf(const char* text, size_t cap) {
  std::string s(text, strnlen(text, cap));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return s;
}

}  // namespace braid::perf
