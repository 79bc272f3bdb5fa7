// perf/stats.cc — message buffers and the figures of a run (bandwidth, latency).
#include "stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace braid::perf {

// ------------------------------------------------------------------ buffers

void Buffer::Free::operator()(uint8_t* p) const {
  std::free(p);
}

Result<Buffer> Buffer::allocate(size_t bytes) {
  size_t n = std::max<size_t>(bytes, 1);
  // Rounding up to whole pages must not wrap: a size near 2^64 would round to 0 bytes.
  if (n > SIZE_MAX - 4095)
    return Status(Code::kInvalidArgument,
                  fmt::format("cannot allocate {} bytes of message buffers", n));
  size_t rounded = (n + 4095) / 4096 * 4096;
  void* p = std::aligned_alloc(4096, rounded);
  if (!p)
    return Status(Code::kNoMemory, fmt::format("cannot allocate {} bytes of message buffers", n));
  std::memset(p, 0, rounded);  // fault every page in now, not in the timed loop
  Buffer b;
  b.p_.reset(static_cast<uint8_t*>(p));
  b.n_ = n;
  return b;
}

// ------------------------------------------------------------------ statistics

namespace {

// The average over [startNs, endNs] and the bounds every peak interval must meet.
struct BwFrame {
  uint64_t n = 0;         // timed operations
  uint64_t span = 1;      // ns
  uint64_t minSpan = 1;   // ns: a peak interval lasts at least this long...
  uint64_t minCount = 1;  // ...and holds at least this many operations
};

BwFrame frameOf(BwRow& r, uint64_t size, uint64_t n, uint64_t startNs, uint64_t endNs,
                size_t window) {
  BwFrame f;
  f.n = n;
  r.bytes = size;
  r.iters = n;
  f.span = endNs > startNs ? endNs - startNs : 1;
  r.elapsedNs = f.span;
  const double secs = static_cast<double>(f.span) * 1e-9;
  r.avgBps = static_cast<double>(size) * static_cast<double>(n) / secs;
  r.msgRate = static_cast<double>(n) / secs;
  r.peakBps = r.avgBps;  // the whole run is one of the intervals
  // Shorter intervals measure buffering and the clock, not the transport.
  f.minSpan = std::min(std::max<uint64_t>(100'000, f.span / 10), f.span);
  f.minCount =
      std::clamp<uint64_t>(std::max<uint64_t>(window, (n + 9) / 10), 1, std::max<uint64_t>(n, 1));
  return f;
}

double rateOf(uint64_t size, uint64_t count, uint64_t ns) {
  return static_cast<double>(size) * static_cast<double>(count) / (static_cast<double>(ns) * 1e-9);
}

}  // namespace

BwRow computeBwLanded(uint64_t size, uint64_t startNs, const std::vector<uint64_t>& landed,
                      uint64_t endNs, size_t window, Side side) {
  BwRow r;
  r.side = side;
  const uint64_t n = landed.size();
  BwFrame f = frameOf(r, size, n, startNs, endNs, window);
  if (n == 0) return r;
  // t[0] = start, t[k] = landing of operation k (1-based).
  std::vector<uint64_t> t(n + 1);
  t[0] = startNs;
  for (uint64_t k = 0; k < n; ++k) t[k + 1] = std::max(landed[k], t[k]);
  // An interval may start at t[k] only when operation k+1 was seen well after it (a
  // quarter of the average time per operation): one reaped in the same burst may have
  // landed before t[k], and counting it would credit the interval with earlier bytes.
  // t[0] always qualifies: it is where the average starts.
  const uint64_t gapMin = f.span / n / 4;
  std::vector<uint64_t> lastStart(n + 1);  // the latest qualifying start at or before k
  for (uint64_t k = 0; k <= n; ++k) {
    bool ok = k == 0 || (k < n && t[k + 1] - t[k] >= gapMin);
    lastStart[k] = ok ? k : lastStart[k - 1];
  }
  // Intervals end before the drain: once the last operation is posted nothing new starts,
  // and the last `window` operations, moved in good part while earlier ones finished,
  // complete in a burst that would read as a rate no link has. In steady state the bytes
  // in flight at both ends of an interval are alike, so its completions are its bytes;
  // two windows' worth of operations at least keeps the difference small.
  const uint64_t minCount = std::min<uint64_t>(std::max<uint64_t>(f.minCount, 2 * window), n);
  const uint64_t lastEnd = n > window ? n - window : 0;
  // For each end j, the shortest qualifying interval (the latest start k that leaves both
  // minCount operations and minSpan): the tightest window is where a peak shows.
  uint64_t k = 0;
  for (uint64_t j = minCount; j <= lastEnd; ++j) {
    while (k + 1 + minCount <= j && t[j] - t[k + 1] >= f.minSpan) ++k;
    const uint64_t s = lastStart[k];
    if (j - s < minCount || t[j] - t[s] < f.minSpan || t[j] == t[s]) continue;
    r.peakBps = std::max(r.peakBps, rateOf(size, j - s, t[j] - t[s]));
  }
  return r;
}

BwRow computeBwSent(uint64_t size, uint64_t startNs, const std::vector<uint64_t>& posted,
                    uint64_t endNs, size_t window) {
  BwRow r;
  r.side = Side::kSender;
  const uint64_t n = posted.size();
  BwFrame f = frameOf(r, size, n, startNs, endNs, window);
  if (n == 0) return r;
  // Operations k..n-1 were all posted at posted[k] or later and had all landed by endNs.
  for (uint64_t k = 0; k + f.minCount <= n; ++k) {
    if (posted[k] >= endNs || endNs - posted[k] < f.minSpan) break;  // later ones: shorter
    r.peakBps = std::max(r.peakBps, rateOf(size, n - k, endNs - posted[k]));
  }
  return r;
}

LatRow computeLat(uint64_t size, std::vector<double> us) {
  LatRow r;
  r.bytes = size;
  r.iters = us.size();
  if (us.empty()) return r;
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) {
    // Nearest rank, as perftest does: the ceil(q*n)-th sample.
    size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    return us[std::clamp<size_t>(k, 1, us.size()) - 1];
  };
  r.min = us.front();
  r.max = us.back();
  r.typical = us.size() % 2 ? us[us.size() / 2] : (us[us.size() / 2 - 1] + us[us.size() / 2]) / 2;
  double sum = 0;
  for (double v : us) sum += v;
  r.avg = sum / static_cast<double>(us.size());
  double sq = 0;
  for (double v : us) sq += (v - r.avg) * (v - r.avg);
  r.stdev = us.size() > 1 ? std::sqrt(sq / static_cast<double>(us.size() - 1)) : 0.0;
  r.p99 = rank(0.99);
  r.p999 = rank(0.999);
  return r;
}

}  // namespace braid::perf
