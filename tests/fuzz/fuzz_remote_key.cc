// libFuzzer target: decodeRemoteKey (lib/transport/verbs_path.cc), the 96 bytes of a peer's
// MemoryRegion::remoteKey() that Endpoint::iwrite / iread take (docs/fuzzing.md).
#include "fuzz_support.h"
#include "transport/verbs_path.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

RemoteKey keyOf(uint64_t base, uint64_t length, const std::vector<uint32_t>& rkeys) {
  MemoryRegionImpl m;
  m.base = base;
  m.length = length;
  for (uint32_t k : rkeys) m.perRail.push_back({0, k, nullptr});
  return encodeRemoteKey(m);
}

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    s.push_back(bytesOf(keyOf(0x7f0000001000, 1 << 20, {0x1234})));
    s.push_back(bytesOf(keyOf(0x7f0000001000, 4096, {0x1234, 0, 0x5678})));
    std::vector<uint32_t> many(wire::kMaxRails, 0x42);
    s.push_back(bytesOf(keyOf(1, ~0ull, many)));
    return s;
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  RemoteKey k;
  std::memcpy(k.bytes, data, std::min(size, RemoteKey::kSize));
  auto r = decodeRemoteKey(k);
  if (!r.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kInvalidArgument);
    return 0;
  }
  const DecodedRemoteKey& d = *r;
  // What startRma indexes with a lane's rail: rkeys[0, rails), rails within kMaxRails.
  BRAID_FUZZ_CHECK(d.rails >= 1 && d.rails <= wire::kMaxRails);
  BRAID_FUZZ_CHECK(d.addr != 0);
  // A region: at least one byte, not wrapping past the end of the address space.
  BRAID_FUZZ_CHECK(d.length >= 1 && d.addr + d.length > d.addr);
  // Round trip: the key re-encodes to the same address, length, rail count and rkeys; the
  // bytes the format leaves unused come back as zeros.
  std::vector<uint32_t> rkeys(d.rkeys, d.rkeys + d.rails);
  RemoteKey again = keyOf(d.addr, d.length, rkeys);
  Bytes expected(RemoteKey::kSize, 0);
  std::memcpy(expected.data(), k.bytes, 16 + 4 * d.rails);
  std::memcpy(expected.data() + 80, k.bytes + 80, 4);
  BRAID_FUZZ_CHECK(Bytes(again.bytes, again.bytes + RemoteKey::kSize) == expected);
  auto d2 = decodeRemoteKey(again);
  BRAID_FUZZ_CHECK_MSG(d2.isOk(), d2.status().toString());
  BRAID_FUZZ_CHECK(d2->addr == d.addr && d2->length == d.length && d2->rails == d.rails);
  BRAID_FUZZ_CHECK(std::memcmp(d2->rkeys, d.rkeys, 4 * d.rails) == 0);
  return 0;
}
