// libFuzzer target: wire::decodeHello, the body of the connector's first frame as the
// listener decodes it (docs/fuzzing.md).
#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    wire::HelloBody b{};
    b.token = 0x1234;
    b.nonce = 7;
    b.socketsPerRail = 4;
    b.eagerMax = 16384;
    for (uint32_t rails : {1u, 2u, wire::kMaxRails}) {
      for (uint32_t verbs : {0u, 1u, 4u, wire::kMaxRails}) {
        b.railCount = rails;
        b.verbsRailCount = verbs;
        b.transport = verbs ? 1 : 0;
        s.push_back(bodyOf(wire::encodeHello(b, sampleRails(rails), sampleVerbsRails(verbs))));
      }
    }
    return s;
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = wire::decodeHello(data, size);
  checkRailsMessage(
      r, data, size, wire::HsType::kHello,
      [](const wire::HelloBody& b, const std::vector<wire::RailDesc>& rails,
         const std::vector<wire::VerbsRailDesc>& verbs) {
        return wire::encodeHello(b, rails, verbs);
      },
      wire::decodeHello);
  return 0;
}
