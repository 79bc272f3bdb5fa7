#include "transport/scheduler.h"

#include <algorithm>

namespace braid::transport {

void Scheduler::plan(uint64_t bytes, const std::vector<RailSnapshot>& rails,
                     std::vector<Chunk>& out) const {
  out.clear();
  uint64_t lanes = 0;
  for (const auto& r : rails)
    if (r.healthy) lanes += std::max<uint32_t>(1, r.lanes);
  if (lanes == 0) return;
  if (bytes == 0) {
    for (const auto& r : rails)
      if (r.healthy) {
        out.push_back({r.rail, 0, 0});
        break;
      }
    return;
  }
  // Chunk length: spread over every lane, but no smaller than minChunk nor larger than
  // chunkSize, rounded up to the alignment.
  uint64_t per = (bytes + lanes - 1) / lanes;
  per = std::clamp(per, cfg_.minChunk, std::max(cfg_.minChunk, cfg_.chunkSize));
  per = (per + cfg_.align - 1) / cfg_.align * cfg_.align;

  // Each chunk goes to the rail whose queue (per lane) is shortest once it is added.
  std::vector<uint64_t> queued(rails.size());
  for (size_t i = 0; i < rails.size(); ++i) queued[i] = rails[i].bytesInFlight;
  for (uint64_t off = 0; off < bytes; off += per) {
    uint64_t len = std::min(per, bytes - off);
    size_t best = rails.size();
    double bestCost = 0;
    for (size_t i = 0; i < rails.size(); ++i) {
      if (!rails[i].healthy) continue;
      double cost = static_cast<double>(queued[i] + len) / std::max<uint32_t>(1, rails[i].lanes);
      if (best == rails.size() || cost < bestCost) {
        best = i;
        bestCost = cost;
      }
    }
    queued[best] += len;
    out.push_back({rails[best].rail, off, len});
  }
}

}  // namespace braid::transport
