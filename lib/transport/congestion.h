// lib/transport/congestion.h — a rail's congestion signal (0 none .. 1 heavy) from the
// counters its host keeps, for RailMonitor::congestion. Pure: the callers read the
// counters (TCP_INFO of a rail's sockets, a RoCE port's sysfs hw_counters) off the hot
// path, every 100 ms or so, and pass two samples.
//
// What counts as congestion is what the rail's own traffic does not explain:
// - TCP: retransmitted segments per segment sent. Queueing delay is not used: a busy rail
//   shaped below its link (tbf, a policer) queues its own traffic, and the measured rate
//   already says how fast it drains. 2% retransmits or more is a full signal.
// - RoCE: congestion notifications (CNPs sent or handled, ECN-marked packets) and
//   transport retries (sequence errors, ACK timeouts, out-of-sequence and duplicate
//   packets) per packet the port sent and received. 1% or more is a full signal. rxe
//   has only the retry counters; a missing counter counts as 0.
// Too few packets in the interval (a rail that carried a probe or nothing) give no
// signal: a single retransmit among ten segments says nothing about the path.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace braid::transport {

/// Cumulative counters of one TCP rail (the sum over its sockets), from TCP_INFO.
struct TcpSample {
  uint64_t segsOut = 0;   ///< tcpi_segs_out
  uint64_t retrans = 0;   ///< tcpi_total_retrans
};

/// Retransmits per segment sent between the samples, scaled: 2% = 1. 0 below 200 segments.
double tcpCongestion(const TcpSample& before, const TcpSample& after);

/// A RoCE port's cumulative counters by sysfs name (hw_counters/* and
/// counters/port_{xmit,rcv}_packets).
using PortCounters = std::map<std::string, uint64_t>;

/// The hw_counters that mean congestion (notifications) or loss on the path (retries).
bool isCongestionCounter(const std::string& name);

/// (CNPs + ECN marks + retries) per packet between the samples, scaled: 1% = 1. 0 below
/// 1000 packets. Counters that went backwards (a reset) count as 0.
double roceCongestion(const PortCounters& before, const PortCounters& after);

}  // namespace braid::transport
