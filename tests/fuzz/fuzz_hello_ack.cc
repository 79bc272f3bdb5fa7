// libFuzzer target: wire::decodeHelloAck, the body of the listener's answer as the
// connector decodes it (docs/fuzzing.md).
#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

Bytes encode(const wire::HelloAckBody& b, const std::vector<wire::RailDesc>& rails,
             const std::vector<wire::VerbsRailDesc>& verbs) {
  return wire::encodeHelloAck(b, rails, verbs);
}

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    wire::HelloAckBody b{};
    b.endpointId = 0xabcdef;
    b.nonce = 7;
    b.socketsPerRail = 2;
    b.eagerMax = 8192;
    return railsSeeds(b, {1u, 3u, wire::kMaxRails}, {0u, 2u, wire::kMaxRails}, encode);
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // checkRailsMessage also checks the eager limit: the finding hello_ack/eager-limit-4GiB.
  railsTarget(data, size, wire::HsType::kHelloAck, wire::decodeHelloAck, encode);
  return 0;
}
