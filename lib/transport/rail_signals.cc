// Each rail's congestion signal and counters (transport/congestion.h), sampled every
// 100 ms from the endpoint's tick, never on the data path: TCP_INFO of a TCP rail's
// sockets (two getsockopt calls per rail), or the counters the device's async-event
// thread read from sysfs for a verbs lane's port.
#include "core/log.h"
#include "tcp/tcp_info.h"
#include "transport/internal.h"

namespace braid {

namespace {
constexpr uint64_t kSignalPeriodNs = 100'000'000;
}  // namespace

void EndpointImpl::sampleSignals(uint64_t now) {
  if (now < nextSignalNs || state != EpState::kConnected) return;
  nextSignalNs = now + kSignalPeriodNs;
  if (onVerbs()) {
    for (size_t i = 0; i < links.size() && i < verbs->laneCount(); ++i) {
      const VerbsRail* rail = verbs->laneRail(i);
      if (rail == nullptr || !rail->watcher) continue;
      const auto s = rail->watcher->counterSamples(rail->port.port);
      if (!s.valid) continue;  // the first samples come 100-200 ms after the first ask
      RailLink& l = links[i];
      l.congestion = transport::roceCongestion(s.prev, s.cur);
      monitor.congestion(static_cast<uint32_t>(i), l.congestion);
      for (const auto& [name, value] : s.cur) {
        if (!transport::isCongestionCounter(name)) continue;
        auto f = s.first.find(name);
        const uint64_t base = f == s.first.end() ? 0 : f->second;
        if (value > base) l.counters[name] = value - base;
      }
    }
    return;
  }
  for (uint32_t r = 0; r < links.size(); ++r) {
    RailLink& l = links[r];
    if (!l.alive) {
      l.tcpSampled = false;  // its sockets are gone; a rejoin brings new counters
      continue;
    }
    transport::TcpSample cur;
    uint32_t rtt = 0, minRtt = 0, cwnd = 0;
    bool any = false;
    for (uint32_t k = 0; k < socketsPerRail; ++k) {
      const Channel* ch = data[r * socketsPerRail + k].get();
      if (ch == nullptr || ch->fd() < 0) continue;
      auto ti = tcp::tcpInfo(ch->fd());
      if (!ti) continue;
      any = true;
      cur.segsOut += ti->segsOut;
      cur.retrans += ti->retrans;
      rtt = std::max(rtt, ti->rttUs);
      if (ti->minRttUs != 0 && (minRtt == 0 || ti->minRttUs < minRtt)) minRtt = ti->minRttUs;
      cwnd += ti->cwnd;
    }
    if (!any) continue;
    if (l.tcpSampled && cur.segsOut >= l.tcpPrev.segsOut && cur.retrans >= l.tcpPrev.retrans) {
      l.congestion = transport::tcpCongestion(l.tcpPrev, cur);
      monitor.congestion(r, l.congestion);
      l.retransTotal += cur.retrans - l.tcpPrev.retrans;
    }
    l.tcpPrev = cur;
    l.tcpSampled = true;
    l.counters["retransmits"] = l.retransTotal;
    l.counters["rtt_us"] = rtt;
    l.counters["min_rtt_us"] = minRtt;
    l.counters["cwnd"] = cwnd;
  }
}

}  // namespace braid
