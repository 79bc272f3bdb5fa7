// tests/fuzz/fuzz_support.h — what braid's libFuzzer targets share (docs/fuzzing.md).
//
// Each target is one file: its seeds (made with the encoders, so they follow the format)
// and LLVMFuzzerTestOneInput, which checks properties of what a decoder returns, not only
// that it returns: a property that does not hold aborts with a message, which libFuzzer
// reports as a crash and saves the input.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "braid/status.h"
#include "transport/wire.h"

namespace braid::fuzz {

using Bytes = std::vector<uint8_t>;

/// BRAID_EAGER_MAX's upper bound (lib/core/params.cc): no side offers a larger limit.
constexpr uint64_t kMaxEagerLimit = wire::kMaxEagerLimit;


[[noreturn]] inline void violated(const char* what, const char* file, int line,
                                  const std::string& detail) {
  std::fprintf(stderr, "braid fuzz: property violated at %s:%d: %s%s%s\n", file, line, what,
               detail.empty() ? "" : " -- ", detail.c_str());
  std::fflush(stderr);
  std::abort();
}

/// A property of a decoder's result; aborts (a libFuzzer crash) when it does not hold.
#define BRAID_FUZZ_CHECK(cond) \
  ((cond) ? (void)0 : ::braid::fuzz::violated(#cond, __FILE__, __LINE__, std::string()))
/// The same, with what explains the failure (a decoder's message, a value).
#define BRAID_FUZZ_CHECK_MSG(cond, detail) \
  ((cond) ? (void)0 : ::braid::fuzz::violated(#cond, __FILE__, __LINE__, (detail)))

/// A refusal as braid must report it: the expected code and a message that says why.
#define BRAID_FUZZ_CHECK_ERROR(st, expectedCode)                                \
  do {                                                                          \
    const ::braid::Status& fuzzSt_ = (st);                                      \
    BRAID_FUZZ_CHECK_MSG(!fuzzSt_.isOk(), "accepted");                          \
    BRAID_FUZZ_CHECK_MSG(fuzzSt_.code() == (expectedCode), fuzzSt_.toString()); \
    BRAID_FUZZ_CHECK_MSG(!fuzzSt_.message().empty(), fuzzSt_.toString());       \
    BRAID_FUZZ_CHECK_MSG(fuzzSt_.message().find('\0') == std::string::npos,     \
                         "NUL inside the message");                             \
  } while (0)

template <typename T>
Bytes bytesOf(const T& v) {
  Bytes b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

/// The header of an encoded handshake frame.
inline wire::HsHeader headerOf(const Bytes& frame) {
  wire::HsHeader h{};
  if (frame.size() >= sizeof h) std::memcpy(&h, frame.data(), sizeof h);
  return h;
}
/// The body of an encoded handshake frame (what the decoders take).
inline Bytes bodyOf(const Bytes& frame) {
  if (frame.size() < sizeof(wire::HsHeader)) return {};
  return Bytes(frame.begin() + sizeof(wire::HsHeader), frame.end());
}
/// An encoded handshake frame is well formed: its header passes checkHeader, has `type`
/// and announces exactly the body that follows.
inline void checkEncodedFrame(const Bytes& frame, wire::HsType type) {
  wire::HsHeader h = headerOf(frame);
  BRAID_FUZZ_CHECK(frame.size() >= sizeof h);
  auto chk = wire::checkHeader(h);
  BRAID_FUZZ_CHECK_MSG(chk.status.isOk(), chk.status.toString());
  BRAID_FUZZ_CHECK(h.type == static_cast<uint16_t>(type));
  BRAID_FUZZ_CHECK(h.length == frame.size() - sizeof h);
  BRAID_FUZZ_CHECK(h.reserved == 0);
}

/// What a peer would send, for seeds.
inline wire::RailDesc sampleRail(uint32_t i, bool v6 = false) {
  uint8_t a[16] = {};
  if (v6) {
    a[0] = 0xfd;
    a[15] = static_cast<uint8_t>(i + 1);
  } else {
    a[0] = 10;
    a[1] = static_cast<uint8_t>(i);
    a[3] = 1;
  }
  return wire::makeRailDesc("eth" + std::to_string(i), v6 ? AF_INET6 : AF_INET, a,
                            static_cast<uint16_t>(i ? 40000 + i : 0));
}
inline wire::VerbsRailDesc sampleVerbsRail(uint32_t i) {
  wire::VerbsRailDesc v{};
  const uint8_t gid[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 1};
  std::memcpy(v.gid, gid, 16);
  v.qpn = 0x11 + i;
  v.psn = 0x123456;
  v.linkLayer = static_cast<uint8_t>(i % 2 ? 1 : 2);
  v.lid = static_cast<uint16_t>(i % 2 ? 3 : 0);
  v.mtu = 3;
  v.recvSlots = 128;
  v.ctsRingAddr = 0x7f0000001000;
  v.ctsRingRkey = 0x1234;
  v.ctsSlots = 256;
  v.flowAddr = 0x7f0000009000;
  v.flowRkey = 0x1235;
  v.port = 1;
  v.gidIndex = 1;
  v.railIndex = static_cast<uint16_t>(i / 2);
  std::memcpy(v.device, "rxe0", 4);
  return v;
}
inline std::vector<wire::RailDesc> sampleRails(uint32_t n) {
  std::vector<wire::RailDesc> r;
  for (uint32_t i = 0; i < n; ++i) r.push_back(sampleRail(i, i % 3 == 2));
  return r;
}
inline std::vector<wire::VerbsRailDesc> sampleVerbsRails(uint32_t n) {
  std::vector<wire::VerbsRailDesc> r;
  for (uint32_t i = 0; i < n; ++i) r.push_back(sampleVerbsRail(i));
  return r;
}

/// Checks what decodeHello / decodeHelloAck returned (they share a layout and a decoder):
/// a malformed body is a protocol error that says so; an accepted one has counts within
/// the limits and every field valid, and encoding it gives back the body it came from
/// (the interface and device names NUL-terminated: the one change a decode makes), which
/// decodes to the same message again.
template <typename Msg, typename Encode, typename Decode>
void checkRailsMessage(const Result<Msg>& r, const uint8_t* data, size_t size, wire::HsType type,
                       Encode encode, Decode decode) {
  if (!r.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kProtocolError);
    BRAID_FUZZ_CHECK_MSG(r.status().message().rfind("malformed handshake: ", 0) == 0,
                         r.status().message());
    return;
  }
  const Msg& m = *r;
  BRAID_FUZZ_CHECK(m.body.railCount >= 1 && m.body.railCount <= wire::kMaxRails);
  BRAID_FUZZ_CHECK(m.rails.size() == m.body.railCount);
  BRAID_FUZZ_CHECK(m.body.verbsRailCount <= wire::kMaxRails);
  BRAID_FUZZ_CHECK(m.verbsRails.size() == m.body.verbsRailCount);
  BRAID_FUZZ_CHECK(m.body.socketsPerRail >= 1 && m.body.socketsPerRail <= wire::kMaxSocketsPerRail);
  // No side offers more than 1 MiB (the finding hello_ack/eager-limit-4GiB: a connector
  // once adopted a listener's 4 GiB).
  BRAID_FUZZ_CHECK_MSG(m.body.eagerMax <= kMaxEagerLimit,
                       "eager limit " + std::to_string(m.body.eagerMax) + " accepted");
  for (const wire::RailDesc& d : m.rails) {
    BRAID_FUZZ_CHECK(d.family == AF_INET || d.family == AF_INET6);
    BRAID_FUZZ_CHECK(d.ifname[sizeof d.ifname - 1] == '\0');
    BRAID_FUZZ_CHECK(!wire::railName(d).empty());
  }
  for (const wire::VerbsRailDesc& v : m.verbsRails) {
    BRAID_FUZZ_CHECK(v.linkLayer == 1 || v.linkLayer == 2);
    BRAID_FUZZ_CHECK(v.mtu >= 1 && v.mtu <= 5);
    BRAID_FUZZ_CHECK(v.qpn >= 1 && v.qpn <= 0xFFFFFF);
    BRAID_FUZZ_CHECK(v.psn <= 0xFFFFFF);
    BRAID_FUZZ_CHECK(v.recvSlots >= 1 && v.recvSlots <= 65536);
    BRAID_FUZZ_CHECK(v.ctsSlots >= 1 && v.ctsSlots <= 65536 &&
                     (v.ctsSlots & (v.ctsSlots - 1)) == 0);
    BRAID_FUZZ_CHECK(v.ctsRingAddr != 0 && v.flowAddr != 0);
    BRAID_FUZZ_CHECK(v.railIndex < wire::kMaxRails);
    BRAID_FUZZ_CHECK(v.device[sizeof v.device - 1] == '\0');
    BRAID_FUZZ_CHECK(!wire::verbsRailName(v).empty());
  }
  // Round trip: the canonical form of the input is what the encoder writes.
  Bytes canonical(data, data + size);
  const size_t tcpAt = sizeof m.body;
  const size_t verbsAt = tcpAt + m.rails.size() * sizeof(wire::RailDesc);
  BRAID_FUZZ_CHECK(verbsAt + m.verbsRails.size() * sizeof(wire::VerbsRailDesc) == size);
  for (size_t i = 0; i < m.rails.size(); ++i)
    canonical[tcpAt + i * sizeof(wire::RailDesc) + offsetof(wire::RailDesc, ifname) + 15] = 0;
  for (size_t i = 0; i < m.verbsRails.size(); ++i)
    canonical[verbsAt + i * sizeof(wire::VerbsRailDesc) + offsetof(wire::VerbsRailDesc, device) +
              15] = 0;
  Bytes frame = encode(m.body, m.rails, m.verbsRails);
  checkEncodedFrame(frame, type);
  Bytes body = bodyOf(frame);
  BRAID_FUZZ_CHECK_MSG(body == canonical, "re-encoding changed the body");
  auto again = decode(body.data(), body.size());
  BRAID_FUZZ_CHECK_MSG(again.isOk(), again.status().toString());
  BRAID_FUZZ_CHECK(std::memcmp(&again->body, &m.body, sizeof m.body) == 0);
  BRAID_FUZZ_CHECK(again->rails.size() == m.rails.size() &&
                   std::memcmp(again->rails.data(), m.rails.data(),
                               m.rails.size() * sizeof(wire::RailDesc)) == 0);
  BRAID_FUZZ_CHECK(again->verbsRails.size() == m.verbsRails.size() &&
                   (m.verbsRails.empty() ||
                    std::memcmp(again->verbsRails.data(), m.verbsRails.data(),
                                m.verbsRails.size() * sizeof(wire::VerbsRailDesc)) == 0));
}

/// Seeds for decodeHello / decodeHelloAck: `b` with every pair of TCP and verbs rail counts,
/// as `encode` (encodeHello or encodeHelloAck) writes it.
template <typename Body, typename Encode>
std::vector<Bytes> railsSeeds(Body b, std::initializer_list<uint32_t> tcpRails,
                              std::initializer_list<uint32_t> verbsRails, Encode encode) {
  std::vector<Bytes> s;
  for (uint32_t rails : tcpRails) {
    for (uint32_t verbs : verbsRails) {
      b.railCount = rails;
      b.verbsRailCount = verbs;
      if constexpr (requires { b.transport; }) b.transport = verbs ? 1 : 0;
      s.push_back(bodyOf(encode(b, sampleRails(rails), sampleVerbsRails(verbs))));
    }
  }
  return s;
}

/// One input of the hello or hello-ack target: decoded, then checked by checkRailsMessage.
template <typename Decode, typename Encode>
void railsTarget(const uint8_t* data, size_t size, wire::HsType type, Decode decode,
                 Encode encode) {
  checkRailsMessage(decode(data, size), data, size, type, encode, decode);
}

/// The text decodeReject gives for a peer's reason and message (what a user reads).
inline std::string rejectText(wire::RejectReason reason, const std::string& message) {
  return std::string("the peer refused the connection: ") + wire::rejectReasonName(reason) + ": " +
         message;
}
/// A reject message as the peer shows it: control bytes (< 0x20, 0x7f) read as '?'.
inline std::string printable(std::string m) {
  for (char& c : m)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return m;
}
/// Nothing in a refusal's text can move a terminal's cursor or cut a log line.
inline bool allPrintable(const std::string& m) {
  return printable(m) == m;
}
/// A refusal makes it to the peer: the frame the listener sends (encodeReject) passes the
/// peer's checks and decodes to connection-refused naming the reason, with the message
/// printable and whole, or, when longer than wire::kMaxRejectMessage, cut at a word
/// boundary (or at the limit when there is none) and marked "...", within the limit.
inline void checkRefusalReachesPeer(wire::RejectReason reason, const std::string& message) {
  Bytes frame = wire::encodeReject(reason, message);
  checkEncodedFrame(frame, wire::HsType::kReject);
  Bytes body = bodyOf(frame);
  Status st = wire::decodeReject(body.data(), body.size());
  BRAID_FUZZ_CHECK_ERROR(st, Code::kConnectionRefused);
  const std::string prefix = rejectText(reason, "");
  BRAID_FUZZ_CHECK_MSG(st.message().rfind(prefix, 0) == 0, st.message());
  const std::string got = st.message().substr(prefix.size());
  BRAID_FUZZ_CHECK_MSG(allPrintable(got), got);
  if (message.size() <= wire::kMaxRejectMessage) {
    BRAID_FUZZ_CHECK_MSG(got == printable(message), got);
    return;
  }
  BRAID_FUZZ_CHECK(got.size() <= wire::kMaxRejectMessage);
  BRAID_FUZZ_CHECK(got.size() >= 3 && got.compare(got.size() - 3, 3, "...") == 0);
  const size_t kept = got.size() - 3;
  BRAID_FUZZ_CHECK(got.compare(0, kept, printable(message.substr(0, kept))) == 0);
  // Cut at the last space that leaves room for "...", or at the limit when there is none.
  const size_t room = wire::kMaxRejectMessage - 3;
  BRAID_FUZZ_CHECK_MSG(
      message.rfind(' ', room) == (kept == room && message[kept] != ' ' ? std::string::npos : kept),
      "cut at " + std::to_string(kept));
}

/// `--write-seeds=DIR` (libFuzzer ignores flags that start with "--"): writes the target's
/// seeds into DIR as seed-NN and exits, so the seeds follow the encoders.
inline int writeSeedsIfAsked(int* argc, char*** argv, const std::vector<Bytes>& (*seeds)()) {
  const std::string flag = "--write-seeds=";
  for (int i = 1; i < *argc; ++i) {
    std::string a = (*argv)[i];
    if (a.compare(0, flag.size(), flag) != 0) continue;
    std::string dir = a.substr(flag.size());
    const std::vector<Bytes>& all = seeds();
    for (size_t k = 0; k < all.size(); ++k) {
      char name[32];
      std::snprintf(name, sizeof name, "/seed-%02zu", k);
      std::string path = dir + name;
      FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr || std::fwrite(all[k].data(), 1, all[k].size(), f) != all[k].size() ||
          std::fclose(f) != 0) {
        std::fprintf(stderr, "braid fuzz: cannot write %s\n", path.c_str());
        std::exit(1);
      }
    }
    std::printf("braid fuzz: %zu seeds written to %s\n", all.size(), dir.c_str());
    std::exit(0);
  }
  return 0;
}

}  // namespace braid::fuzz

/// Defines LLVMFuzzerInitialize for a target whose seeds `fn()` returns.
#define BRAID_FUZZ_SEEDS(fn)                                     \
  extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) { \
    return ::braid::fuzz::writeSeedsIfAsked(argc, argv, &(fn));  \
  }
