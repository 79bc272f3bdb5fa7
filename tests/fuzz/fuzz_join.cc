// libFuzzer target: wire::decodeJoin and wire::decodeRejoin, the body of a data socket's
// first frame as the listener decodes it (docs/fuzzing.md). Every input goes to both.
#include "fuzz_support.h"

using namespace braid;
using namespace braid::fuzz;

namespace {

const std::vector<Bytes>& seeds() {
  static const std::vector<Bytes> all = [] {
    std::vector<Bytes> s;
    s.push_back(bodyOf(wire::encodeJoin({0x1234, 0xabcdef, 0, 0})));
    s.push_back(bodyOf(wire::encodeJoin({0x1234, 0xabcdef, 1, 3})));
    s.push_back(bodyOf(
        wire::encodeJoin({~0ull, ~0ull, wire::kMaxRails - 1, wire::kMaxSocketsPerRail - 1})));
    s.push_back(bodyOf(wire::encodeRejoin({0x1234, 0xabcdef, 1, 3, 1, 0})));
    s.push_back(bodyOf(wire::encodeRejoin(
        {~0ull, ~0ull, wire::kMaxRails - 1, wire::kMaxSocketsPerRail - 1, ~0u, 0})));
    return s;
  }();
  return all;
}

}  // namespace

BRAID_FUZZ_SEEDS(seeds)

namespace {
void rejoin(const uint8_t* data, size_t size) {
  auto r = wire::decodeRejoin(data, size);
  if (!r.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kProtocolError);
    return;
  }
  const wire::RejoinBody& j = *r;
  BRAID_FUZZ_CHECK(size == sizeof(wire::RejoinBody));
  // The endpoint indexes its rails and sockets with these; epoch 0 is the connect's.
  BRAID_FUZZ_CHECK(j.rail < wire::kMaxRails && j.socket < wire::kMaxSocketsPerRail);
  BRAID_FUZZ_CHECK(j.epoch > 0);
  Bytes frame = wire::encodeRejoin(j);
  checkEncodedFrame(frame, wire::HsType::kRejoin);
  BRAID_FUZZ_CHECK(bodyOf(frame) == Bytes(data, data + size));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rejoin(data, size);
  auto r = wire::decodeJoin(data, size);
  if (!r.isOk()) {
    BRAID_FUZZ_CHECK_ERROR(r.status(), Code::kProtocolError);
    return 0;
  }
  const wire::JoinBody& j = *r;
  BRAID_FUZZ_CHECK(size == sizeof(wire::JoinBody));
  BRAID_FUZZ_CHECK(j.rail < wire::kMaxRails);
  BRAID_FUZZ_CHECK(j.socket < wire::kMaxSocketsPerRail);
  // The listener's slot for it (rail * socketsPerRail + socket) stays inside an endpoint
  // of the largest shape.
  BRAID_FUZZ_CHECK(size_t{j.rail} * wire::kMaxSocketsPerRail + j.socket <
                   size_t{wire::kMaxRails} * wire::kMaxSocketsPerRail);
  // Round trip: a join has no slack, so it re-encodes to the very bytes.
  Bytes frame = wire::encodeJoin(j);
  checkEncodedFrame(frame, wire::HsType::kJoin);
  BRAID_FUZZ_CHECK(bodyOf(frame) == Bytes(data, data + size));
  return 0;
}
