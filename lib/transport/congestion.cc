#include "transport/congestion.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace braid::transport {

namespace {
uint64_t delta(uint64_t before, uint64_t after) { return after > before ? after - before : 0; }

uint64_t deltaOf(const PortCounters& before, const PortCounters& after, const std::string& k) {
  auto a = after.find(k);
  if (a == after.end()) return 0;
  auto b = before.find(k);
  return delta(b == before.end() ? 0 : b->second, a->second);
}

// mlx5 names (Documentation/infiniband, the mlx5 hw_counters) and rxe's.
constexpr std::array<std::string_view, 11> kCongestion = {
    "np_cnp_sent",          "rp_cnp_handled",   "np_ecn_marked_roce_packets",
    "rp_cnp_ignored",       "packet_seq_err",   "local_ack_timeout_err",
    "out_of_sequence",      "duplicate_request", "rcvd_seq_err",
    "implied_nak_seq_err",  "retry_exceeded_err"};
}  // namespace

double tcpCongestion(const TcpSample& before, const TcpSample& after) {
  const uint64_t segs = delta(before.segsOut, after.segsOut);
  if (segs < 200) return 0;
  const double ratio =
      static_cast<double>(delta(before.retrans, after.retrans)) / static_cast<double>(segs);
  return std::clamp(ratio / 0.02, 0.0, 1.0);
}

bool isCongestionCounter(const std::string& name) {
  return std::find(kCongestion.begin(), kCongestion.end(), name) != kCongestion.end();
}

double roceCongestion(const PortCounters& before, const PortCounters& after) {
  const uint64_t packets = deltaOf(before, after, "port_xmit_packets") +
                           deltaOf(before, after, "port_rcv_packets");
  if (packets < 1000) return 0;
  uint64_t events = 0;
  for (const auto& [name, value] : after)
    if (isCongestionCounter(name)) events += deltaOf(before, after, name);
  return std::clamp(static_cast<double>(events) / static_cast<double>(packets) / 0.01, 0.0, 1.0);
}

}  // namespace braid::transport
