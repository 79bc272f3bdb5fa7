// libFuzzer target: the bytes that arrive on a socket during the handshake, taken the way
// braid takes them: the listener on an accepted socket (ListenerImpl::onPending: header,
// checkHeader, hello or join only, then exactly `length` bytes of body to decodeHello or
// decodeJoin; a refusal goes back as a Reject), and the connector on its control socket
// (EndpointImpl::progressHandshake: checkHeader, then decodeReject or decodeHelloAck).
// docs/fuzzing.md.
#include <algorithm>

#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    wire::HelloBody hb{};
    hb.token = 0x1234;
    hb.nonce = 7;
    hb.railCount = 2;
    hb.socketsPerRail = 4;
    hb.eagerMax = 16384;
    s.push_back(wire::encodeHello(hb, sampleRails(2)));
    hb.verbsRailCount = 2;
    s.push_back(wire::encodeHello(hb, sampleRails(2), sampleVerbsRails(2)));
    wire::HelloAckBody ab{0xabcdef, 7, 1, 2, 8192, 1, 0};
    s.push_back(wire::encodeHelloAck(ab, sampleRails(1), sampleVerbsRails(1)));
    s.push_back(wire::encodeJoin({0x1234, 0xabcdef, 1, 2}));
    s.push_back(wire::encodeRejoin({0x1234, 0xabcdef, 1, 2, 3, 0}));
    s.push_back(wire::encodeReject(wire::RejectReason::kBadToken, "job token 0x2a"));
    // Data-phase bytes right behind the join: the listener must not take them.
    Bytes joinThenData = wire::encodeJoin({0x1234, 0xabcdef, 0, 0});
    Bytes frame = bytesOf(wire::makeFrame(wire::FrameType::kChunk, 1, 0, 4096, 64, 0));
    joinThenData.insert(joinThenData.end(), frame.begin(), frame.end());
    s.push_back(joinThenData);
    // Another version and another protocol.
    s.push_back(wire::encodeFrame(wire::HsType::kHello, nullptr, 0, wire::kMagic, 1));
    s.push_back(wire::encodeFrame(wire::HsType::kJoin, nullptr, 0, 0x20544547));  // "GET "
    return s;
  }();
  return all;
}

/// What checkHeader said about `h`, checked: an accepted header is within every limit;
/// a refused one carries the reason the listener sends back, and that refusal reaches
/// the peer.
bool headerAccepted(const wire::HsHeader& h) {
  auto chk = wire::checkHeader(h);
  if (chk.status.isOk()) {
    BRAID_FUZZ_CHECK(h.magic == wire::kMagic && h.version == wire::kVersion);
    BRAID_FUZZ_CHECK(h.type >= static_cast<uint16_t>(wire::HsType::kHello) &&
                     h.type <= static_cast<uint16_t>(wire::HsType::kRejoin));
    BRAID_FUZZ_CHECK(h.length <= wire::kMaxHandshakeBody);
    return true;
  }
  BRAID_FUZZ_CHECK_ERROR(chk.status, Code::kProtocolError);
  const wire::RejectReason expected = h.magic != wire::kMagic ? wire::RejectReason::kBadMagic
                                      : h.version != wire::kVersion
                                          ? wire::RejectReason::kBadVersion
                                          : wire::RejectReason::kMalformed;
  BRAID_FUZZ_CHECK(chk.reason == expected);
  checkRefusalReachesPeer(chk.reason, chk.status.message());
  return false;
}

/// The listener's side: the first frame of an accepted socket.
void asListener(const uint8_t* data, size_t size) {
  wire::HsHeader h;
  if (size < sizeof h) return;  // it waits for more
  std::memcpy(&h, data, sizeof h);
  if (!headerAccepted(h)) return;
  if (h.type != static_cast<uint16_t>(wire::HsType::kHello) &&
      h.type != static_cast<uint16_t>(wire::HsType::kJoin) &&
      h.type != static_cast<uint16_t>(wire::HsType::kRejoin))
    return;                                // refused as malformed, before any body is read
  if (size - sizeof h < h.length) return;  // it waits for the rest of the body
  // Exactly `length` bytes, read into a buffer of header + length bytes like the
  // listener's (so ASan sees a read past the body); what follows is the data phase.
  Bytes frame(data, data + sizeof h + h.length);
  const uint8_t* body = frame.data() + sizeof h;
  if (h.type == static_cast<uint16_t>(wire::HsType::kHello)) {
    auto r = wire::decodeHello(body, h.length);
    if (!r.isOk()) {
      BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kProtocolError);
      checkRefusalReachesPeer(wire::RejectReason::kMalformed, r.status().message());
      return;
    }
    // ListenerImpl::handle keeps min(offered, own) rails of the hello's, and makes
    // rails x sockets data slots: within the hello and within the limits, whatever the
    // listener's own rail count.
    for (uint32_t own = 1; own <= wire::kMaxRails; ++own) {
      uint32_t rails = std::min(r->body.railCount, own);
      BRAID_FUZZ_CHECK(rails <= r->rails.size());
      BRAID_FUZZ_CHECK(size_t{rails} * r->body.socketsPerRail <=
                       size_t{wire::kMaxRails} * wire::kMaxSocketsPerRail);
    }
    BRAID_FUZZ_CHECK(r->verbsRails.size() == r->body.verbsRailCount);
    return;
  }
  if (h.type == static_cast<uint16_t>(wire::HsType::kRejoin)) {
    auto rj = wire::decodeRejoin(body, h.length);
    if (!rj.isOk()) {
      BRAID_FUZZ_CHECK_ERROR(rj.status(), Code::kProtocolError);
      checkRefusalReachesPeer(wire::RejectReason::kMalformed, rj.status().message());
      return;
    }
    // The endpoint indexes its rails and sockets with these, and epoch 0 is the connect's.
    BRAID_FUZZ_CHECK(rj->rail < wire::kMaxRails && rj->socket < wire::kMaxSocketsPerRail &&
                     rj->epoch > 0);
    return;
  }
  auto j = wire::decodeJoin(body, h.length);
  if (!j.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(j.status(), Code::kProtocolError);
    checkRefusalReachesPeer(wire::RejectReason::kMalformed, j.status().message());
    return;
  }
  BRAID_FUZZ_CHECK(j->rail < wire::kMaxRails && j->socket < wire::kMaxSocketsPerRail);
}

/// The connector's side: the listener's answer to a hello.
void asConnector(const uint8_t* data, size_t size) {
  wire::HsHeader h;
  if (size < sizeof h) return;
  std::memcpy(&h, data, sizeof h);
  auto chk = wire::checkHeader(h);
  if (!chk.status.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(chk.status, Code::kProtocolError);
    return;
  }
  if (size - sizeof h < h.length) return;
  Bytes frame(data, data + sizeof h + h.length);
  const uint8_t* body = frame.data() + sizeof h;
  if (h.type == static_cast<uint16_t>(wire::HsType::kReject)) {
    BRAID_FUZZ_CHECK_ERROR(wire::decodeReject(body, h.length), Code::kConnectionRefused);
    return;
  }
  if (h.type != static_cast<uint16_t>(wire::HsType::kHelloAck)) return;  // protocol error
  auto r = wire::decodeHelloAck(body, h.length);
  if (!r.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kProtocolError);
    return;
  }
  // EndpointImpl::startDataSockets takes the ack's counts as they are: they must be
  // within the limits and match what follows.
  BRAID_FUZZ_CHECK(r->rails.size() == r->body.railCount && r->body.railCount <= wire::kMaxRails);
  BRAID_FUZZ_CHECK(r->verbsRails.size() == r->body.verbsRailCount &&
                   r->body.verbsRailCount <= wire::kMaxRails);
  BRAID_FUZZ_CHECK(r->body.socketsPerRail >= 1 &&
                   r->body.socketsPerRail <= wire::kMaxSocketsPerRail);
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  asListener(data, size);
  asConnector(data, size);
  return 0;
}
