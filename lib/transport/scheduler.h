// lib/transport/scheduler.h — the striping planner: which rail carries which byte range.
//
// A pure function of the message size and a snapshot of each rail (plus, for round-robin,
// a cursor), so it is tested alone and in the simulator of tests/sim. No I/O, no clock:
// what it knows of time comes in through the snapshots (RailMonitor fills them).
//
// The model (adaptive policy). Rail i is a pipe with a fixed per-chunk cost L_i (latency),
// a delivery rate r_i (bytes/s) and a backlog B_i (bytes in flight). x more bytes put on it
// now are predicted to be delivered at
//
//     finish_i(x) = L_i + (B_i + x) / r_i .
//
// The plan gives rail i the share x_i (sum: the message) that makes every loaded rail finish
// at the same time T ("water filling"); a rail whose backlog alone reaches past T gets
// nothing. Over idle rails of equal latency that is a split in proportion to the rates:
// 80/20 for rails of 400 and 100 Mbit/s, where an even split makes every message wait for
// the slow rail. r_i is the measured delivered rate, else the nominal link speed, else the
// mean of the other rails' rates (all equal when nothing is known); a congestion signal c
// (0..1) scales it by (1 - c/2).
//
// Probes. A share below a minimum chunk is not sent: the rail is left out. A rail left out
// with nothing in flight is not measured, so it would never be seen to recover; it gets a
// probe of one minimum chunk when that is predicted to finish by T, or else when the rail's
// probe credit pays for the delay: each message it sits out adds probeShare x (the
// message's predicted time), so probing costs about probeShare of the time however slow the
// rail looks. A rail in RailHealth::kProbing (back after a failure) gets at most a probe of
// probeShare of the message (at least minChunk), on the same terms (weighted and
// round-robin give it one whenever it has less than that in flight), until RailMonitor
// reports it kUp again. Messages shorter than 4 minimum chunks carry no probe.
//
// Chunks: each rail's share is cut into pieces of at most chunkSize and at least minChunk
// (one per lane where the share allows), every boundary a multiple of `align` (the last
// chunk of the message ends at `bytes`). Chunks are listed in increasing offset order, the
// offsets handed out in the order the chunks are predicted to arrive, so the message fills
// roughly front to back.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace braid::transport {

/// How a message is spread over rails (BRAID_STRIPE_POLICY).
enum class StripePolicy : uint8_t {
  kAdaptive,    ///< shares that make the rails finish together (measured rates, backlog)
  kWeighted,    ///< shares in proportion to the nominal link speeds (equal when unknown)
  kRoundRobin,  ///< equal chunks dealt to the rails in turn, blind to speed and backlog
  kSingle,      ///< the whole message on the rail predicted to finish it first
};

/// "adaptive", "weighted", "roundrobin", "single".
const char* stripePolicyName(StripePolicy p);
/// Parses one of stripePolicyName's names; false (and *out untouched) for anything else.
bool parseStripePolicy(std::string_view text, StripePolicy* out);

enum class RailHealth : uint8_t {
  kUp,       ///< carries its share
  kProbing,  ///< back after a failure: only a probe share until it has delivered a while
  kDown,     ///< carries nothing
};

/// What the planner knows about one rail. 0 means unknown for every measured field.
struct RailSnapshot {
  uint32_t rail = 0;            ///< index in the endpoint, copied into Chunk::rail
  uint32_t lanes = 1;           ///< parallel lanes (TCP sockets, QPs) on this rail
  uint64_t bytesInFlight = 0;   ///< queued or unacknowledged bytes now
  double throughputEwma = 0;    ///< delivered bytes/s over busy time
  double completionEwmaUs = 0;  ///< chunk completion time (post to done), informational
  double latencyUs = 0;         ///< fixed per-chunk cost
  double nominalBps = 0;        ///< link speed, bytes/s (the weighted policy's input)
  double congestion = 0;        ///< 0 (none or unknown) .. 1 (heavily congested)
  RailHealth health = RailHealth::kUp;

  bool usable() const { return health != RailHealth::kDown; }
};

/// One planned piece: bytes [offset, offset+length) go on `rail`.
struct Chunk {
  uint32_t rail = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct SchedulerConfig {
  uint64_t chunkSize = 512 * 1024;  ///< upper bound of a chunk
  uint64_t minChunk = 64 * 1024;    ///< do not split below this
  uint64_t align = 128;             ///< chunk boundaries are multiples (NCCL LL128)
  StripePolicy policy = StripePolicy::kAdaptive;
  double probeShare = 0.03;         ///< probe size (share of the message) and time budget
  uint64_t wholeBelow = 64 * 1024;  ///< messages up to this size go whole on the best rail
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig cfg = {});

  /// Replaces `out` with the plan for `bytes`: chunks covering [0, bytes) exactly once, in
  /// increasing offset order. Empty when no rail is usable; one empty chunk on the best rail
  /// when bytes is 0. Not const: round-robin advances a cursor (deterministic state).
  void plan(uint64_t bytes, const std::vector<RailSnapshot>& rails, std::vector<Chunk>& out);

  const SchedulerConfig& config() const { return cfg_; }

 private:
  SchedulerConfig cfg_;
  uint64_t cursor_ = 0;         ///< round-robin: the rail (among the usable ones) dealt next
  std::vector<double> credit_;  ///< adaptive: probe credit (seconds) per rail index (.rail)
};

}  // namespace braid::transport
