// lib/core/ranges.h — a set of byte ranges, for receives that land in pieces.
//
// A message striped over several sockets or rails lands chunk by chunk, in any order, and
// (after a failover) possibly twice. The receiver counts each byte once: it finishes when
// the ranges cover the message, not when the lengths it was told add up.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace braid::core {

/// Sorted, disjoint, non-adjacent half-open ranges [begin, end).
using RangeSet = std::vector<std::pair<uint64_t, uint64_t>>;

/// Adds [begin, end) to `set`; returns how many bytes of it were not in the set before.
/// O(n) in the ranges held, which stay few: chunks land nearly in order on each socket,
/// and neighbours merge.
inline uint64_t addRange(RangeSet& set, uint64_t begin, uint64_t end) {
  if (begin >= end) return 0;
  // First range that ends at or after `begin` (it may touch or overlap).
  size_t i = 0;
  while (i < set.size() && set[i].second < begin) ++i;
  uint64_t covered = 0;
  size_t j = i;
  uint64_t b = begin, e = end;
  while (j < set.size() && set[j].first <= end) {
    // Overlap of [begin, end) with set[j], already counted.
    uint64_t lo = std::max(begin, set[j].first), hi = std::min(end, set[j].second);
    if (hi > lo) covered += hi - lo;
    b = std::min(b, set[j].first);
    e = std::max(e, set[j].second);
    ++j;
  }
  if (i == j) {
    set.insert(set.begin() + static_cast<std::ptrdiff_t>(i), {b, e});
  } else {
    set[i] = {b, e};
    set.erase(set.begin() + static_cast<std::ptrdiff_t>(i + 1),
              set.begin() + static_cast<std::ptrdiff_t>(j));
  }
  return (end - begin) - covered;
}

}  // namespace braid::core
