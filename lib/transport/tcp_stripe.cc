// TCP striping: a large message's chunks over the rails' data sockets, as the Scheduler
// plans from the RailMonitor's estimates (fed by the peer's kernel acknowledgements).
//
// Placement is made as late as the sockets allow: a message is striped only while the
// data sockets have less than kStripeWindow bytes queued in user space (what the kernel
// has not taken yet), and, before any rail has a measured rate, only when nothing is
// unacknowledged. Later messages wait in `deferred` and are striped as acknowledgements
// come in (Channel::pollAcks, Channel::flush, the endpoint's tick), each from fresh
// estimates. Striping many messages at once from stale (or no) estimates would commit a
// slow rail to far more than it can carry in time.
#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

void EndpointImpl::stripeTcp(OpState* op) {
  if (!deferred.empty() || holdStripes()) {
    ++op->pendingFrames;  // held here: not recycled while deferred
    deferred.push_back(op);
    return;
  }
  stripeNow(op);
}

bool EndpointImpl::holdStripes() {
  uint64_t queued = 0;
  for (const auto& ch : data) queued += ch->queuedBytes();
  if (queued >= kStripeWindow) return true;
  // Cold start: no rate is known yet, so a plan could only split evenly; wait for the
  // first acknowledgements (a few ms) rather than commit several messages that way.
  monitor.snapshot(snaps);
  bool known = false, busy = false;
  for (const RailSnapshot& r : snaps) {
    known = known || r.throughputEwma > 0;
    busy = busy || r.bytesInFlight > 0;
  }
  return !known && busy;
}

void EndpointImpl::stripeDeferred() {
  if (stripingDeferred || state != EpState::kConnected) return;
  stripingDeferred = true;
  while (!deferred.empty() && state == EpState::kConnected && !holdStripes()) {
    OpState* op = deferred.front();
    deferred.pop_front();
    --op->pendingFrames;
    if (op->finished) {  // failed or closed meanwhile
      maybeRecycle(op);
      continue;
    }
    stripeNow(op);
  }
  stripingDeferred = false;
}

void EndpointImpl::stripeNow(OpState* op) {
  const uint64_t now = core::nowNs();
  pollAcks(now);
  if (state != EpState::kConnected || op->finished) return;
  stripeRange(op, 0, op->len, now);
}

void EndpointImpl::pollAcks(uint64_t now) {
  for (auto& ch : data) ch->pollAcks(now);
}

void EndpointImpl::stripeRange(OpState* op, uint64_t offset, uint64_t length, uint64_t now) {
  monitor.snapshot(snaps);
  scheduler.plan(length, snaps, plan);
  if (core::logger(core::Subsys::kTransport).should_log(spdlog::level::trace)) traceStripe(op);
  // Queueing a chunk flushes its socket. A flush stripes deferred messages: they wait
  // until this plan is queued. A flush may also find its rail failed, whose chunks are
  // planned again at once: this plan moves to a vector of its own first.
  std::vector<Chunk> mine;
  mine.swap(plan);
  DeferredHold hold(*this);
  placePlan(op, offset, now, mine);
  const bool outer = hold.release();
  if (mine.capacity() > plan.capacity()) {  // keep the larger buffer for the next plan
    mine.clear();
    plan.swap(mine);
  }
  if (outer && !deferred.empty()) stripeDeferred();
}

void EndpointImpl::placePlan(OpState* op, uint64_t offset, uint64_t now,
                             const std::vector<Chunk>& chunks) {
  // Each chunk to the socket of its rail with the least queued.
  for (const Chunk& c : chunks) {
    if (state != EpState::kConnected || op->finished) return;
    if (!links[c.rail].alive) {  // it failed under an earlier chunk's flush: plan again
      stripeRange(op, offset + c.offset, c.length, now);
      continue;
    }
    Channel* best = nullptr;
    for (uint32_t k = 0; k < socketsPerRail; ++k) {
      Channel* ch = data[c.rail * socketsPerRail + k].get();
      if (ch->fd() < 0) continue;
      if (!best || ch->queuedBytes() < best->queuedBytes()) best = ch;
    }
    if (!best) {
      fail(Status(Code::kInternal, fmt::format("rail {} was planned but has no open socket", c.rail)));
      return;
    }
    OutFrame f;
    f.hdr = wire::makeFrame(wire::FrameType::kChunk, op->tag, op->seq, op->len,
                            static_cast<uint32_t>(c.length), offset + c.offset);
    f.payload = op->buf + offset + c.offset;
    f.op = op;
    f.postedNs = now;
    monitor.chunkPosted(c.rail, c.length, now);
    best->queue(f, true);
  }
}

void EndpointImpl::onChunkAcked(OpState* op, uint64_t bytes) {
  --op->pendingFrames;
  if (op->finished) {
    maybeRecycle(op);
    return;
  }
  op->bytesDone += bytes;
  if (op->matched && (op->bytesDone == op->len || (op->resent && op->pendingFrames == 0)))
    finish(op, Status::ok());
}

void EndpointImpl::traceStripe(const OpState* op) const {
  std::string rails;
  for (const RailSnapshot& r : snaps) {
    uint64_t planned = 0;
    for (const Chunk& c : plan)
      if (c.rail == r.rail) planned += c.length;
    rails += fmt::format(" | rail {}: {:.1f} MB/s, {} KiB in flight, health {}, gets {} KiB",
                         r.rail, r.throughputEwma / 1e6, r.bytesInFlight >> 10,
                         static_cast<int>(r.health), planned >> 10);
  }
  BRAID_LOG_TRACE(kTransport, "{}: tag {} seq {} ({} bytes) striped{}", describe(), op->tag,
                  op->seq, op->len, rails);
}

}  // namespace braid
