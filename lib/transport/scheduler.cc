#include "transport/scheduler.h"

#include <algorithm>
#include <cmath>

namespace braid::transport {

const char* stripePolicyName(StripePolicy p) {
  switch (p) {
    case StripePolicy::kAdaptive:
      return "adaptive";
    case StripePolicy::kWeighted:
      return "weighted";
    case StripePolicy::kRoundRobin:
      return "roundrobin";
    case StripePolicy::kSingle:
      return "single";
  }
  return "?";
}

bool parseStripePolicy(std::string_view text, StripePolicy* out) {
  for (StripePolicy p : {StripePolicy::kAdaptive, StripePolicy::kWeighted,
                         StripePolicy::kRoundRobin, StripePolicy::kSingle})
    if (text == stripePolicyName(p)) {
      *out = p;
      return true;
    }
  return false;
}

namespace {

/// A congestion signal of 1 halves a rail's predicted rate.
constexpr double kCongestionWeight = 0.5;

/// A usable rail as one policy sees it.
struct View {
  uint32_t rail = 0;
  uint32_t lanes = 1;
  uint64_t backlog = 0;  ///< bytes in flight
  double rate = 1;       ///< bytes/s, > 0
  double start = 0;      ///< seconds until x = 0 more bytes "finish": latency + backlog / rate
  bool probing = false;  ///< gets at most a probe
  double chunkSec = 0;   ///< observed chunk completion time (0 unknown)
};

bool known(double v) {
  return std::isfinite(v) && v > 0;
}

/// The usable rails, in snapshot order. Weighted sees nominal speeds only (no latency, no
/// backlog); the others see measured rates, latency, backlog and congestion.
std::vector<View> makeViews(const std::vector<RailSnapshot>& rails, bool weighted) {
  auto measured = [&](const RailSnapshot& r) {
    if (weighted) return known(r.nominalBps) ? r.nominalBps : 0.0;
    if (known(r.throughputEwma)) return r.throughputEwma;
    return known(r.nominalBps) ? r.nominalBps : 0.0;
  };
  // A rail of unknown rate counts as an average one; all equal when nothing is known.
  double sum = 0;
  int n = 0;
  bool anyUp = false;
  for (const auto& r : rails) {
    if (!r.usable()) continue;
    anyUp |= r.health == RailHealth::kUp;
    if (double m = measured(r); m > 0) {
      sum += m;
      ++n;
    }
  }
  const double fallback = n ? sum / n : 1.0;
  std::vector<View> v;
  for (const auto& r : rails) {
    if (!r.usable()) continue;
    View w;
    w.rail = r.rail;
    w.lanes = std::max<uint32_t>(1, r.lanes);
    w.probing = anyUp && r.health == RailHealth::kProbing;  // all probing: all carry
    double m = measured(r);
    w.rate = m > 0 ? m : fallback;
    if (!weighted) {
      w.backlog = r.bytesInFlight;
      if (std::isfinite(r.congestion))
        w.rate *= 1 - kCongestionWeight * std::clamp(r.congestion, 0.0, 1.0);
      double latency = known(r.latencyUs) ? r.latencyUs * 1e-6 : 0;
      w.start = latency + static_cast<double>(w.backlog) / w.rate;
      if (known(r.completionEwmaUs)) w.chunkSec = r.completionEwmaUs * 1e-6;
    }
    v.push_back(w);
  }
  return v;
}

/// The rail predicted to deliver `bytes` first; a probing one only when all are.
size_t bestView(const std::vector<View>& v, uint64_t bytes) {
  size_t best = v.size();
  double bestT = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].probing) continue;
    double t = v[i].start + static_cast<double>(bytes) / v[i].rate;
    if (best == v.size() || t < bestT) {
      best = i;
      bestT = t;
    }
  }
  return best;
}

/// Water filling: the shares x[i] (bytes, summing to `bytes`) over the views flagged in
/// `take` that make them finish together, x[i] = max(0, (T - start_i) * rate_i); returns T.
double waterFill(double bytes, const std::vector<View>& v, const std::vector<bool>& take,
                 std::vector<double>& x) {
  std::vector<size_t> order;
  for (size_t i = 0; i < v.size(); ++i)
    if (take[i]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return v[a].start < v[b].start; });
  // Rails join in order of start; T is final once the next rail starts after it.
  double sumR = 0, sumSR = 0, t = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    sumR += v[order[k]].rate;
    sumSR += v[order[k]].start * v[order[k]].rate;
    t = (bytes + sumSR) / sumR;
    if (k + 1 == order.size() || t <= v[order[k + 1]].start) break;
  }
  x.assign(v.size(), 0.0);
  for (size_t i : order) x[i] = std::max(0.0, (t - v[i].start) * v[i].rate);
  return t;
}

/// Whole units for the `take` views, summing to `total`: floors, then the largest remainders.
void roundShares(uint64_t total, const std::vector<double>& x, const std::vector<bool>& take,
                 std::vector<uint64_t>& share) {
  std::vector<size_t> idx;
  int64_t diff = static_cast<int64_t>(total);
  for (size_t i = 0; i < x.size(); ++i)
    if (take[i]) {
      idx.push_back(i);
      diff -= static_cast<int64_t>(share[i] = static_cast<uint64_t>(x[i]));
    }
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return x[a] - std::floor(x[a]) > x[b] - std::floor(x[b]);
  });
  for (size_t k = 0; diff > 0; ++k, --diff) ++share[idx[k % idx.size()]];
  auto smaller = [&](size_t a, size_t b) { return share[a] < share[b]; };
  for (; diff < 0; ++diff) --share[*std::max_element(idx.begin(), idx.end(), smaller)];
}

/// Adaptive and weighted: each view's share of `units`. `credit` (per rail index) carries
/// the adaptive policy's probe credit from one plan to the next.
void splitShares(const SchedulerConfig& cfg, uint64_t units, uint64_t probeUnits, uint64_t minUnits,
                 const std::vector<View>& v, std::vector<double>& credit,
                 std::vector<uint64_t>& share) {
  // Water-fill the rails that are up. One whose share comes out below a minimum chunk is
  // left out (the smallest first) and the rest filled again. Each rail left out (probing
  // ones included) may then get a probe, and the rest is filled again.
  const bool adaptive = cfg.policy == StripePolicy::kAdaptive;
  const uint64_t align = cfg.align;
  const size_t n = v.size();
  uint64_t fixed = 0;
  std::vector<bool> free(n), asked(n, false);
  for (size_t i = 0; i < n; ++i) free[i] = !v[i].probing;
  std::vector<double> x;
  for (;;) {
    const uint64_t rest = units - fixed;
    const double t = waterFill(static_cast<double>(rest * align), v, free, x);
    for (double& xi : x) xi /= static_cast<double>(align);  // in units
    size_t worst = n, nfree = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!free[i]) continue;
      ++nfree;
      if (x[i] < static_cast<double>(minUnits) && (worst == n || x[i] <= x[worst])) worst = i;
    }
    if (worst != n && nfree > 1) {
      free[worst] = false;
      continue;
    }
    bool probed = false;
    for (size_t i = 0; i < n; ++i) {
      if (free[i] || asked[i]) continue;
      asked[i] = true;
      if (!v[i].probing && (!adaptive || v[i].backlog > 0)) continue;  // measured already
      // A probing rail's probe is the probe share; a rail left out gets a minimum chunk.
      const uint64_t p = v[i].probing ? probeUnits : probeUnits ? minUnits : 0;
      if (p == 0 || v[i].backlog >= p * align || fixed + p > units / 2) continue;
      if (adaptive) {
        // A probe that would make the message later than t is paid from the rail's credit:
        // probeShare of the predicted message time for each message it sits out.
        if (credit.size() <= v[i].rail) credit.resize(v[i].rail + 1, 0.0);
        double& c = credit[v[i].rail];
        c += cfg.probeShare * t;
        const double finish =
            std::max(v[i].start + static_cast<double>(p * align) / v[i].rate, v[i].chunkSec);
        if (finish - t > c) continue;
        c = 0;
      }
      fixed += share[i] = p;
      probed = true;
    }
    if (probed) continue;
    roundShares(rest, x, free, share);
    for (size_t i = 0; i < n; ++i)
      if (free[i] && share[i] > 0 && v[i].rail < credit.size()) credit[v[i].rail] = 0;
    return;
  }
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig cfg) : cfg_(cfg) {
  cfg_.align = std::max<uint64_t>(1, cfg_.align);
  cfg_.minChunk = std::max<uint64_t>(1, cfg_.minChunk);
  cfg_.chunkSize = std::max(cfg_.chunkSize, cfg_.align);
  if (!std::isfinite(cfg_.probeShare)) cfg_.probeShare = 0;
  cfg_.probeShare = std::clamp(cfg_.probeShare, 0.0, 0.5);
}

void Scheduler::plan(uint64_t bytes, const std::vector<RailSnapshot>& rails,
                     std::vector<Chunk>& out) {
  out.clear();
  const std::vector<View> v = makeViews(rails, cfg_.policy == StripePolicy::kWeighted);
  if (v.empty()) return;
  const size_t best = bestView(v, std::max<uint64_t>(bytes, 1));  // 0 bytes: the fastest
  if (bytes == 0) {
    out.push_back({v[best].rail, 0, 0});
    return;
  }

  // Everything below is in units of `align` bytes; the last chunk gives back the excess.
  const uint64_t align = cfg_.align;
  const uint64_t units = (bytes + align - 1) / align;
  const uint64_t maxUnits = cfg_.chunkSize / align;
  const uint64_t minUnits = std::max<uint64_t>(1, (cfg_.minChunk + align - 1) / align);
  // A probe: the probe share of the message, at least a minimum chunk, at most a quarter.
  uint64_t probeUnits = std::max<uint64_t>(
      minUnits, static_cast<uint64_t>(cfg_.probeShare * static_cast<double>(units)));
  if (cfg_.probeShare <= 0 || probeUnits * 4 > units) probeUnits = 0;
  // Pieces of a share of s units: at most maxUnits each, one per lane down to minUnits.
  auto pieces = [&](uint64_t s, uint32_t lanes) -> uint64_t {
    return std::max<uint64_t>(
        {1, (s + maxUnits - 1) / maxUnits, std::min<uint64_t>(lanes, s / minUnits)});
  };
  // (view, units) in the order the offsets are handed out.
  std::vector<std::pair<size_t, uint64_t>> seq;
  const bool small = bytes <= cfg_.wholeBelow;
  std::vector<uint64_t> share(v.size(), 0);

  if (cfg_.policy == StripePolicy::kRoundRobin) {
    // Probing rails get a probe (cut in chunks, placed last); the rest is cut in equal
    // chunks dealt to the other rails in turn, a small message whole on the next one.
    std::vector<size_t> up;
    uint64_t fixed = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].probing) {
        up.push_back(i);
      } else if (!small && probeUnits > 0 && v[i].backlog < probeUnits * align &&
                 fixed + probeUnits <= units / 2) {
        fixed += share[i] = probeUnits;
      }
    }
    const uint64_t rest = units - fixed;
    uint64_t lanes = 0;
    for (size_t i : up) lanes += v[i].lanes;
    if (small) lanes = v[up[cursor_ % up.size()]].lanes;
    const uint64_t n = pieces(rest, static_cast<uint32_t>(std::min<uint64_t>(lanes, UINT32_MAX)));
    for (uint64_t k = 0; k < n; ++k)
      seq.push_back({up[(cursor_ + (small ? 0 : k)) % up.size()], rest / n + (k < rest % n)});
    cursor_ += small ? 1 : n;
    for (size_t i = 0; i < v.size(); ++i)
      for (uint64_t k = 0, m = share[i] ? pieces(share[i], v[i].lanes) : 0; k < m; ++k)
        seq.push_back({i, share[i] / m + (k < share[i] % m)});
  } else {
    if (cfg_.policy == StripePolicy::kSingle || small || v.size() == 1) {
      share[best] = units;
    } else {
      splitShares(cfg_, units, probeUnits, minUnits, v, credit_, share);
    }
    // Merge the rails' pieces by predicted arrival (ties: snapshot order).
    std::vector<uint64_t> count(v.size()), done(v.size(), 0), sent(v.size(), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < v.size(); ++i)
      total += count[i] = share[i] ? pieces(share[i], v[i].lanes) : 0;
    auto len = [&](size_t i) { return share[i] / count[i] + (done[i] < share[i] % count[i]); };
    for (uint64_t k = 0; k < total; ++k) {
      size_t pick = v.size();
      double pickT = 0;
      for (size_t i = 0; i < v.size(); ++i) {
        if (done[i] == count[i]) continue;
        double t = v[i].start + static_cast<double>((sent[i] + len(i)) * align) / v[i].rate;
        if (pick == v.size() || t < pickT) {
          pick = i;
          pickT = t;
        }
      }
      uint64_t l = len(pick);
      seq.push_back({pick, l});
      sent[pick] += l;
      ++done[pick];
    }
  }

  uint64_t off = 0;
  for (const auto& [i, u] : seq) {
    uint64_t l = std::min(u * align, bytes - off);
    out.push_back({v[i].rail, off, l});
    off += l;
  }
}

}  // namespace braid::transport
