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
    std::string words;
    while (words.size() < 2 * wire::kMaxRejectMessage) words += "rail 3 refused ";
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kNoRails, words)));
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kInternal,
                                          std::string(wire::kMaxRejectMessage + 9, 'x'))));
    s.push_back(bodyOf(wire::encodeReject(wire::RejectReason::kTimeout, "tab\there\x1b[2J")));
    return s;
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Whatever the body, the connector reports connection-refused with a message it can
  // show: printable, bounded, and the peer's text exactly when the body is well formed.
  Status st = wire::decodeReject(data, size);
  BRAID_FUZZ_CHECK_ERROR(st, Code::kConnectionRefused);
  BRAID_FUZZ_CHECK_MSG(allPrintable(st.message()), st.message());
  BRAID_FUZZ_CHECK_MSG(st.message().size() <= 100 + wire::kMaxRejectMessage, st.message());
  wire::RejectBody b{};
  if (size >= sizeof b) std::memcpy(&b, data, sizeof b);
  if (size >= sizeof b && b.length <= wire::kMaxRejectMessage && size == sizeof b + b.length) {
    // An unknown reason reads as "unknown reason".
    std::string text(reinterpret_cast<const char*>(data) + sizeof b, b.length);
    BRAID_FUZZ_CHECK_MSG(
        st.message() == rejectText(static_cast<wire::RejectReason>(b.reason), printable(text)),
        st.message());
  }
  // The input as a listener's message, with a reason of its own: it reaches the peer
  // (printable, cut at a word when too long).
  std::string message(reinterpret_cast<const char*>(data), size);
  const uint32_t reason = kFirstReason + static_cast<uint32_t>(size % kLastReason);
  checkRefusalReachesPeer(static_cast<wire::RejectReason>(reason), message);
  return 0;
}
