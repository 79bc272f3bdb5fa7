#include "sim/rail_sim.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <queue>
#include <random>

namespace braid::sim {

using transport::Chunk;
using transport::RailMonitor;
using transport::RailSnapshot;
using transport::Scheduler;

double SimRail::rateAt(uint64_t ns) const {
  double r = rates.front().second;
  for (const auto& [from, bps] : rates)
    if (from <= ns) r = bps;
  return r;
}

bool SimRail::upAt(uint64_t ns) const {
  // Up unless the latest scripted event at or before `ns` is a failure.
  int64_t lastFail = -1, lastRecover = -1;
  for (uint64_t f : failAt)
    if (f <= ns) lastFail = std::max(lastFail, static_cast<int64_t>(f));
  for (uint64_t r : recoverAt)
    if (r <= ns) lastRecover = std::max(lastRecover, static_cast<int64_t>(r));
  return lastFail < 0 || lastRecover > lastFail;
}

double SimResult::throughput(size_t warmup) const {
  if (progress.size() < warmup + 2) return 0;
  const auto& [t0, b0] = progress[warmup];
  const auto& [t1, b1] = progress.back();
  return t1 > t0 ? static_cast<double>(b1 - b0) / static_cast<double>(t1 - t0) * 1e9 : 0;
}

double SimResult::share(uint32_t rail, uint64_t fromNs, uint64_t toNs) const {
  uint64_t on = 0, all = 0;
  for (const auto& m : messages) {
    if (m.postNs < fromNs || m.postNs >= toNs) continue;
    for (size_t r = 0; r < m.railBytes.size(); ++r) all += m.railBytes[r];
    on += m.railBytes[rail];
  }
  return all ? static_cast<double>(on) / static_cast<double>(all) : 0;
}

double oracleBps(const std::vector<SimRail>& rails, uint64_t ns, const SimConfig& cfg) {
  double sum = 0;
  uint64_t latency = 0;
  for (const auto& r : rails)
    if (r.upAt(ns)) {
      sum += r.rateAt(ns);
      latency = std::max(latency, r.latencyNs);
    }
  const double bytes = static_cast<double>(cfg.messageBytes) * cfg.inFlight;
  return bytes / (bytes / sum + static_cast<double>(latency) * 1e-9);
}

namespace {

class Sim {
 public:
  Sim(const std::vector<SimRail>& rails, const SimConfig& cfg)
      : script_(rails),
        cfg_(cfg),
        sched_(cfg.sched),
        monitor_(static_cast<uint32_t>(rails.size()), cfg.monitor),
        rng_(cfg.seed),
        rails_(rails.size()) {
    res_.railChunks.assign(rails.size(), 0);
    for (uint32_t r = 0; r < rails.size(); ++r) {
      assert(!rails[r].rates.empty() && rails[r].rates.front().first == 0);
      monitor_.describe(r, 1, rails[r].nominalBps);
      for (uint64_t t : rails[r].failAt) push(t, kFail, r, 0);
      for (uint64_t t : rails[r].recoverAt) push(t, kRecover, r, 0);
    }
  }

  SimResult run() {
    for (uint32_t k = 0; k < cfg_.inFlight && k < cfg_.messages; ++k) startMessage(0);
    while (!events_.empty()) {
      Event e = events_.top();
      events_.pop();
      now_ = e.ns;
      switch (e.kind) {
        case kDone:
          onDone(e.rail, e.id);
          break;
        case kFail:
          onFail(e.rail);
          break;
        case kRecover:
          onRecover(e.rail);
          break;
      }
      // Scripted failures and recoveries after the last message do not keep the run going.
      if (res_.messages.size() == cfg_.messages && active_ == 0) break;
    }
    for (uint32_t r = 0; r < rails_.size(); ++r) res_.finalHealth.push_back(monitor_.health(r));
    return std::move(res_);
  }

 private:
  enum Kind : uint8_t { kDone, kFail, kRecover };
  struct Event {
    uint64_t ns, order;
    Kind kind;
    uint32_t rail;
    uint64_t id;
    bool operator>(const Event& o) const { return ns != o.ns ? ns > o.ns : order > o.order; }
  };
  struct Pending {
    uint64_t id, msg, bytes, postedNs;
  };
  struct Rail {
    uint64_t freeAt = 0;
    bool up = true;
    std::vector<Pending> pending;
  };
  struct MsgState {
    uint64_t outstanding = 0;  ///< chunks not completed
    uint64_t stalled = 0;      ///< bytes waiting for a usable rail
  };

  void push(uint64_t ns, Kind k, uint32_t rail, uint64_t id) {
    events_.push(Event{ns, order_++, k, rail, id});
  }

  double uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  /// When `bytes` put on the wire at `start` have all left, at the scripted rates.
  uint64_t transmitEnd(uint32_t rail, uint64_t start, uint64_t bytes) const {
    const auto& rates = script_[rail].rates;
    size_t k = 0;
    while (k + 1 < rates.size() && rates[k + 1].first <= start) ++k;
    double t = static_cast<double>(start), left = static_cast<double>(bytes);
    for (;; ++k) {
      const double rate = rates[k].second;
      const double segEnd = k + 1 < rates.size() ? static_cast<double>(rates[k + 1].first)
                                                 : std::numeric_limits<double>::infinity();
      const double need = left / rate * 1e9;
      if (t + need <= segEnd) return static_cast<uint64_t>(std::ceil(t + need));
      left -= (segEnd - t) * 1e-9 * rate;
      t = segEnd;
    }
  }

  void post(uint64_t msg, uint32_t rail, uint64_t bytes) {
    Rail& r = rails_[rail];
    assert(r.up);
    uint64_t end = transmitEnd(rail, std::max(now_, r.freeAt), bytes);
    if (script_[rail].loss > 0 && uniform() < script_[rail].loss) {
      end = transmitEnd(rail, end + script_[rail].rtoNs, bytes);
      ++res_.lost;
    }
    r.freeAt = end;
    const uint64_t id = nextId_++;
    r.pending.push_back({id, msg, bytes, now_});
    push(end + script_[rail].latencyNs, kDone, rail, id);
    monitor_.chunkPosted(rail, bytes, now_);
    ++state_[msg].outstanding;
    ++res_.chunks;
    ++res_.railChunks[rail];
  }

  /// Plans `bytes` of message `msg` from the monitor's snapshots and posts the chunks.
  void planAndPost(uint64_t msg, uint64_t bytes) {
    monitor_.snapshot(snaps_);
    sched_.plan(bytes, snaps_, plan_);
    if (plan_.empty()) {
      state_[msg].stalled += bytes;
      return;
    }
    for (const Chunk& c : plan_) post(msg, c.rail, c.length);
  }

  void startMessage(uint64_t ns) {
    const uint64_t msg = res_.messages.size();
    SimMessage m;
    m.postNs = ns;
    m.railBytes.assign(rails_.size(), 0);
    monitor_.snapshot(snaps_);
    for (const auto& s : snaps_) m.health.push_back(s.health);
    res_.messages.push_back(std::move(m));
    state_.emplace_back();
    ++active_;
    planAndPost(msg, cfg_.messageBytes);
  }

  void onDone(uint32_t rail, uint64_t id) {
    auto& pend = rails_[rail].pending;
    auto it = std::find_if(pend.begin(), pend.end(), [&](const Pending& p) { return p.id == id; });
    if (it == pend.end()) return;  // lost when the rail failed
    const Pending p = *it;
    pend.erase(it);
    monitor_.chunkCompleted(rail, p.bytes, p.postedNs, now_);
    delivered_ += p.bytes;
    res_.messages[p.msg].railBytes[rail] += p.bytes;
    if (--state_[p.msg].outstanding == 0 && state_[p.msg].stalled == 0) finishMessage(p.msg);
  }

  void finishMessage(uint64_t msg) {
    res_.messages[msg].doneNs = now_;
    res_.progress.push_back({now_, delivered_});
    --active_;
    if (res_.messages.size() < cfg_.messages) startMessage(now_);
  }

  void onFail(uint32_t rail) {
    Rail& r = rails_[rail];
    if (!r.up) return;
    r.up = false;
    monitor_.railFailed(rail, now_);
    std::vector<Pending> lost;
    lost.swap(r.pending);
    r.freeAt = now_;
    for (const Pending& p : lost) {
      --state_[p.msg].outstanding;
      res_.resent += p.bytes;
    }
    for (const Pending& p : lost) planAndPost(p.msg, p.bytes);
  }

  void onRecover(uint32_t rail) {
    Rail& r = rails_[rail];
    if (r.up) return;
    r.up = true;
    r.freeAt = now_;
    monitor_.railRecovered(rail, now_);
    for (uint64_t msg = 0; msg < state_.size(); ++msg)
      if (uint64_t b = std::exchange(state_[msg].stalled, 0)) planAndPost(msg, b);
  }

  const std::vector<SimRail>& script_;
  const SimConfig& cfg_;
  Scheduler sched_;
  RailMonitor monitor_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same runs everywhere
  std::vector<Rail> rails_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<MsgState> state_;
  std::vector<RailSnapshot> snaps_;
  std::vector<Chunk> plan_;
  SimResult res_;
  uint64_t now_ = 0, order_ = 0, nextId_ = 0, delivered_ = 0, active_ = 0;
};

}  // namespace

SimResult simulate(const std::vector<SimRail>& rails, const SimConfig& cfg) {
  return Sim(rails, cfg).run();
}

}  // namespace braid::sim
