// libFuzzer target: wire::decodeHello, the body of the connector's first frame as the
// listener decodes it (docs/fuzzing.md).
#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

Bytes encode(const wire::HelloBody& b, const std::vector<wire::RailDesc>& rails,
             const std::vector<wire::VerbsRailDesc>& verbs) {
  return wire::encodeHello(b, rails, verbs);
}

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    wire::HelloBody b{};
    b.token = 0x1234;
    b.nonce = 7;
    b.socketsPerRail = 4;
    b.eagerMax = 16384;
    return railsSeeds(b, {1u, 2u, wire::kMaxRails}, {0u, 1u, 4u, wire::kMaxRails}, encode);
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  railsTarget(data, size, wire::HsType::kHello, wire::decodeHello, encode);
  return 0;
}
