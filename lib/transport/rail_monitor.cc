#include "transport/rail_monitor.h"

#include <algorithm>
#include <cmath>

namespace braid::transport {

RailMonitor::RailMonitor(uint32_t rails, RailMonitorConfig cfg) : cfg_(cfg), rails_(rails) {
  cfg_.sampleNs = std::max<uint64_t>(1, cfg_.sampleNs);
  cfg_.rateTauNs = std::max<uint64_t>(1, cfg_.rateTauNs);
  if (!(cfg_.chunkAlpha > 0 && cfg_.chunkAlpha <= 1)) cfg_.chunkAlpha = 0.125;
}

RailMonitor::Rail& RailMonitor::at(uint32_t rail) {
  if (rail >= rails_.size()) rails_.resize(rail + 1);
  return rails_[rail];
}

void RailMonitor::accrue(Rail& r, uint64_t nowNs) {
  if (r.inFlightChunks > 0 && nowNs > r.lastNs) r.winBusyNs += nowNs - r.lastNs;
  r.lastNs = std::max(r.lastNs, nowNs);
}

void RailMonitor::describe(uint32_t rail, uint32_t lanes, double nominalBps) {
  Rail& r = at(rail);
  r.lanes = std::max<uint32_t>(1, lanes);
  r.nominalBps = std::isfinite(nominalBps) && nominalBps > 0 ? nominalBps : 0;
}

void RailMonitor::chunkPosted(uint32_t rail, uint64_t bytes, uint64_t nowNs) {
  Rail& r = at(rail);
  if (r.health == RailHealth::kDown) return;
  if (r.inFlightChunks == 0) {
    r.lastNs = nowNs;  // a busy period starts: the idle time before does not count
    r.periodStart = true;
  }
  accrue(r, nowNs);
  ++r.inFlightChunks;
  r.inFlightBytes += bytes;
}

void RailMonitor::chunkCompleted(uint32_t rail, uint64_t bytes, uint64_t postedNs, uint64_t nowNs) {
  Rail& r = at(rail);
  if (r.health == RailHealth::kDown || postedNs < r.epochNs || r.inFlightChunks == 0) return;
  accrue(r, nowNs);
  --r.inFlightChunks;
  r.inFlightBytes -= std::min(bytes, r.inFlightBytes);
  r.winBytes += bytes;

  auto ewma = [&](double& e, double sample) {
    e = e > 0 ? e + cfg_.chunkAlpha * (sample - e) : sample;
  };
  const double tookUs = static_cast<double>(nowNs - std::min(nowNs, postedNs)) * 1e-3;
  ewma(r.completionUs, tookUs);
  if (r.periodStart && r.rate > 0) {
    // Leaning to the minimum: falls fast, rises slowly, so one chunk held up by a loss does
    // not make the rail look far away (a rail the planner avoids is not measured again soon).
    const double sample = std::max(0.0, tookUs - static_cast<double>(bytes) / r.rate * 1e6);
    const double w = sample < r.latencyUs ? 0.5 : cfg_.chunkAlpha / 4;
    r.latencyUs = r.latencyKnown ? r.latencyUs + w * (sample - r.latencyUs) : sample;
    r.latencyKnown = true;
  }
  r.periodStart = false;

  // A window closes after sampleNs of busy time, or when the rail goes idle: a lone probe is
  // a sample too (of little weight unless the estimate is fresh).
  if (r.winBusyNs >= cfg_.sampleNs || (r.inFlightChunks == 0 && r.winBusyNs > 0)) {
    const double busy = static_cast<double>(r.winBusyNs);
    const double sample = static_cast<double>(r.winBytes) / busy * 1e9;
    const double w = r.rate > 0 && !r.fresh ? 1 - std::exp(-busy / cfg_.rateTauNs) : 1.0;
    r.rate += w * (sample - r.rate);
    r.fresh = false;
    r.winBytes = r.winBusyNs = 0;
  }

  if (r.health == RailHealth::kProbing && ++r.probeDone >= cfg_.probeCompletions &&
      nowNs - std::min(nowNs, r.epochNs) >= cfg_.probeNs && !r.fresh)
    r.health = RailHealth::kUp;
}

void RailMonitor::railFailed(uint32_t rail, uint64_t /*nowNs*/) {
  Rail& r = at(rail);
  r.health = RailHealth::kDown;
  r.inFlightBytes = r.inFlightChunks = 0;
  r.winBytes = r.winBusyNs = 0;
  r.periodStart = false;
}

void RailMonitor::railRecovered(uint32_t rail, uint64_t nowNs) {
  Rail& r = at(rail);
  if (r.health != RailHealth::kDown) return;
  r.health = RailHealth::kProbing;
  r.epochNs = r.lastNs = nowNs;
  r.probeDone = 0;
  r.fresh = true;
}

void RailMonitor::congestion(uint32_t rail, double signal) {
  at(rail).congestion = std::isfinite(signal) ? std::clamp(signal, 0.0, 1.0) : 0.0;
}

RailHealth RailMonitor::health(uint32_t rail) const {
  return rail < rails_.size() ? rails_[rail].health : RailHealth::kDown;
}

void RailMonitor::snapshot(std::vector<RailSnapshot>& out) const {
  out.resize(rails_.size());
  for (size_t i = 0; i < rails_.size(); ++i) {
    const Rail& r = rails_[i];
    RailSnapshot& s = out[i];
    s = RailSnapshot{};
    s.rail = static_cast<uint32_t>(i);
    s.lanes = r.lanes;
    s.bytesInFlight = r.inFlightBytes;
    s.throughputEwma = r.rate;
    s.completionEwmaUs = r.completionUs;
    s.latencyUs = r.latencyUs;
    s.nominalBps = r.nominalBps;
    s.congestion = r.congestion;
    s.health = r.health;
  }
}

}  // namespace braid::transport
