// libFuzzer target: wire::decodeReject (a refusal as the connector reads it) and, with the
// input as the message, encodeReject then decodeReject (docs/fuzzing.md).
#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

constexpr uint32_t kFirstReason = static_cast<uint32_t>(wire::RejectReason::kBadMagic);
constexpr uint32_t kLastReason = static_cast<uint32_t>(wire::RejectReason::kInternal);

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kBadToken,
                                          "job token 0x2a does not match this listener's")));
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kMalformed, "")));
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kNoRails, std::string(300, 'x'))));
    return s;
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Whatever the body, the connector reports connection-refused with a message it can
  // show: the peer's text, bounded, never more than the body holds.
  Status st = wire::decodeReject(data, size);
  BRAID_FUZZ_CHECK_ERROR(st, Code::kConnectionRefused);
  // A reason is at most kMaxRejectMessage bytes, whatever the frame claims.
  BRAID_FUZZ_CHECK_MSG(st.message().size() < wire::kMaxRejectMessage + 200, st.message());
  // The input as a listener's message, with every reason: it reaches the peer intact (cut
  // to what the body carries).
  std::string message(reinterpret_cast<const char*>(data), size);
  for (uint32_t r = kFirstReason; r <= kLastReason; ++r)
    checkRefusalReachesPeer(static_cast<wire::RejectReason>(r), message);
  return 0;
}
