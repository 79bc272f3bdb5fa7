// Verbs lane rejoin (docs/protocol.md, "Verbs lane rejoin").
//
// A lane other than 0 that failed is tried again by the connector, with back-off (100 ms
// doubling to 5 s), while its local port is up: a new QP (with its own CQ and completion
// channel: nothing of the old one can complete into the new), offered in a LANE_JOIN on the
// control socket; the listener builds its own, connects it and answers LANE_JOIN_ACK (or
// refuses while its port is down); the connector connects, proves the path with an empty
// RDMA WRITE to the listener's flow block, and on its completion takes the lane back and
// says so (RAIL_UP, a verbs lane). A rail that still drops packets fails the probe, and the
// attempt ends without disturbing the other lanes. Credits: the receive slots each side
// returned on the old QP are the base of the new one's count.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"
#include "transport/verbs_lane.h"

#if BRAID_HAVE_VERBS
namespace braid {

namespace {
constexpr uint32_t kFirstBackoffMs = 100;
constexpr uint32_t kMaxBackoffMs = 5000;
constexpr uint64_t kJoinTimeoutNs = 3'000'000'000;  // no answer, or a probe still retrying
}  // namespace

Status VerbsPath::restartLane(Lane& l) {
  // What the old QP delivered before it failed is taken first (a FIN the peer saw
  // acknowledged is counted here, or never): its CQ goes with it.
  l.join = Lane::Join::kNone;  // no slot goes back to the dying QP
  if (l.qp) (void)verbs::toError(*l.qp);
  for (int i = 0; i < 64 && l.cq && pollLane(l); ++i) {
  }
  l.rqFlushed = true;  // nothing more arrives through the old QP
  unwatch(l);
  if (l.rail->watcher && l.qp) l.rail->watcher->forgetQp(l.qpn());
  l.qp.reset();
  if (l.channel && l.cq) l.takeEvents();  // every event read is acknowledged before the CQ goes
  l.cq.reset();
  l.channel.reset();
  l.armed = false;
  std::fill(l.wrs.begin(), l.wrs.end(), Lane::WrInfo());
  l.sqPosted = l.sqRetired = 0;
  l.sendsPosted = 0;
  l.sinceSignal = 0;
  l.bytesInFlight = 0;
  l.repostCount = 0;
  l.backlog.clear();
  l.ctlBacklog.clear();
  l.psn = verbs::randomPsn();
  return buildLane(l);
}

void VerbsPath::joinFailed(Lane& l, const Status& why, uint64_t now) {
  if (l.qp) (void)verbs::toError(*l.qp);
  l.join = Lane::Join::kNone;
  l.backoffMs = std::min(kMaxBackoffMs, std::max(kFirstBackoffMs, l.backoffMs * 2));
  l.nextTryNs = now + static_cast<uint64_t>(l.backoffMs) * 1000000ull;
  BRAID_LOG_DEBUG(kTransport, "{}: lane {} ({}): rejoin attempt {} failed: {}; next in {} ms",
                  ep_->describe(), l.index, laneName(l.index), l.epoch, why.toString(),
                  l.backoffMs);
}

void VerbsPath::laneUp(Lane& l, uint64_t now) {
  l.down = false;
  l.connected = true;
  l.rqFlushed = false;
  l.join = Lane::Join::kNone;
  l.backoffMs = 0;
  const auto r = static_cast<uint32_t>(l.index);
  if (ep_->verbsGone) {
    // On TCP: the lane is ready; data moves over it once both sides agree to return
    // (EndpointImpl::maybeOfferReturn), with the record kept aside until then.
    if (r < ep_->laneLinks.size()) {
      ep_->laneLinks[r].alive = true;
      EndpointImpl::addRailEvent(ep_->laneLinks[r], "up",
                                 fmt::format("rejoined with a new queue pair (attempt {}) while "
                                             "on TCP",
                                             l.epoch));
    }
    BRAID_LOG_INFO(kTransport, "{}: lane {} ({}) is back after {} ms; the endpoint returns to "
                               "RDMA when no transfer is open on either side",
                   ep_->describe(), l.index, laneName(l.index), (now - l.downNs) / 1000000);
    return;
  }
  if (r < ep_->links.size()) ep_->links[r].alive = true;
  ep_->monitor.railRecovered(r, now);
  ep_->railEvent(r, "up", fmt::format("rejoined with a new queue pair (attempt {})", l.epoch));
  BRAID_LOG_INFO(kTransport, "{}: lane {} ({}) is back after {} ms; it carries traffic again",
                 ep_->describe(), l.index, laneName(l.index), (now - l.downNs) / 1000000);
}

void VerbsPath::rejoinTick(uint64_t now) {
  for (auto& lp : lanes_) {
    Lane& l = *lp;
    // The control lane fails only with the move to TCP: it comes back for the return.
    if (!l.down || (l.index == ctl_ && !ep_->verbsGone)) continue;
    if (l.join == Lane::Join::kAsked || l.join == Lane::Join::kProbing) {
      if (now > l.joinSentNs + kJoinTimeoutNs)
        joinFailed(l, Status(Code::kTimedOut, l.join == Lane::Join::kAsked
                                                  ? "the peer did not answer the join"
                                                  : "the probe write did not complete"),
                   now);
      continue;
    }
    if (now < l.nextTryNs || !railStatus(l).isOk()) continue;  // back-off; the port is down
    ++l.epoch;
    Status st = restartLane(l);
    if (!st.isOk()) {
      joinFailed(l, st, now);
      continue;
    }
    l.joinDesc = descOf(l);
    OutFrame f;
    f.hdr = wire::makeFrame(wire::FrameType::kLaneJoin, 0, l.recvReposted, l.epoch,
                            sizeof(wire::VerbsRailDesc), l.index);
    f.payload = reinterpret_cast<const uint8_t*>(&l.joinDesc);
    l.join = Lane::Join::kAsked;
    l.joinSentNs = now;
    ep_->control->queue(f, true);
    if (ep_->state != EpState::kConnected) return;
  }
}

void VerbsPath::onLaneJoin(const wire::FrameHeader& f, const uint8_t* payload) {
  if (ep_->isServer == false || f.offset >= lanes_.size() || (f.offset == ctl_ && !ep_->verbsGone))
    return ep_->fail(Status(Code::kProtocolError,
                            fmt::format("a lane join for lane {} from peer {}, which this side "
                                        "does not take",
                                        f.offset, ep_->peer)));
  Lane& l = *lanes_[f.offset];
  const auto epoch = static_cast<uint32_t>(f.total);
  if (!l.down || epoch <= l.epoch) return;  // up already, or stale
  const uint64_t now = core::nowNs();
  auto refuse = [&](const Status& why) {
    BRAID_LOG_DEBUG(kTransport, "{}: lane {} ({}): refusing the peer's rejoin: {}",
                    ep_->describe(), l.index, laneName(l.index), why.toString());
    wire::FrameHeader h = wire::makeFrame(wire::FrameType::kLaneJoinAck, 0, 0, epoch, 0, l.index);
    h.flags = wire::kJoinRefused;
    ep_->controlNotice(h);
  };
  Result<wire::VerbsRailDesc> d = wire::decodeVerbsRailDesc(payload, f.length);
  if (!d) return ep_->fail(d.status().withContext("lane join"));
  if (Status st = railStatus(l); !st.isOk()) return refuse(st);
  l.epoch = epoch;
  Status st = restartLane(l);
  if (st.isOk()) st = connectLane(l, *d);
  if (!st.isOk()) {
    if (l.qp) (void)verbs::toError(*l.qp);
    return refuse(st);
  }
  l.creditBase = f.seq;
  l.join = Lane::Join::kAwaitUp;
  l.joinSentNs = now;
  l.joinDesc = descOf(l);
  OutFrame a;
  a.hdr = wire::makeFrame(wire::FrameType::kLaneJoinAck, 0, l.recvReposted, epoch,
                          sizeof(wire::VerbsRailDesc), l.index);
  a.payload = reinterpret_cast<const uint8_t*>(&l.joinDesc);
  ep_->control->queue(a, true);
}

void VerbsPath::onLaneJoinAck(const wire::FrameHeader& f, const uint8_t* payload) {
  if (ep_->isServer || f.offset >= lanes_.size())
    return ep_->fail(Status(Code::kProtocolError,
                            fmt::format("a lane join answer for lane {} from peer {}, which "
                                        "asked none",
                                        f.offset, ep_->peer)));
  Lane& l = *lanes_[f.offset];
  if (l.join != Lane::Join::kAsked || f.total != l.epoch) return;  // an older attempt's
  const uint64_t now = core::nowNs();
  if (f.flags == wire::kJoinRefused)
    return joinFailed(l, Status(Code::kRailFailed, "the peer refused: its side of the rail is down"),
                      now);
  Result<wire::VerbsRailDesc> d = wire::decodeVerbsRailDesc(payload, f.length);
  if (!d) return ep_->fail(d.status().withContext("lane join answer"));
  Status st = connectLane(l, *d);
  if (!st.isOk()) return joinFailed(l, st, now);
  l.creditBase = f.seq;
  // The probe: an 8-byte RDMA WRITE into the spare bytes after the peer's flow block
  // (nobody reads them), completed only once the peer's NIC acknowledged it. (An empty
  // write completes on rxe without crossing the wire.)
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uint64_t>(cb_->probe);
  sge.length = sizeof cb_->probe;
  sge.lkey = l.cbMr->lkey();
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = l.peer.flowAddr + sizeof(wire::FlowBlock);
  wr.wr.rdma.rkey = l.peer.flowRkey;
  wr.wr_id = l.sqPosted;
  Lane::WrInfo info;
  info.kind = kWrProbe;
  l.wrs[l.sqPosted % kMaxSendWr] = info;
  ++l.sqPosted;
  ibv_send_wr* bad = nullptr;
  int rc = verbs::postSend(*l.rail->lib, l.qp->get(), &wr, &bad);
  if (rc != 0) {
    --l.sqPosted;
    return joinFailed(l, Status(Code::kSystemError, fmt::format("posting the probe: {}",
                                                                verbs::errnoText(rc))),
                      now);
  }
  l.join = Lane::Join::kProbing;
  l.joinSentNs = now;
}

void VerbsPath::onProbeDone(Lane& l, bool ok, const std::string& why) {
  if (l.join != Lane::Join::kProbing) return;
  const uint64_t now = core::nowNs();
  if (!ok) return joinFailed(l, Status(Code::kCompletionError, why), now);
  laneUp(l, now);
  ep_->controlNotice(wire::makeFrame(wire::FrameType::kRailUp, wire::kRailDownVerbsLane, 0, l.epoch,
                                     0, l.index));
}

void VerbsPath::onLaneUp(const wire::FrameHeader& f) {
  if (f.offset >= lanes_.size()) return;
  Lane& l = *lanes_[f.offset];
  if (l.join != Lane::Join::kAwaitUp || f.total != l.epoch) return;  // superseded
  laneUp(l, core::nowNs());
}

void VerbsPath::replayRma(std::vector<RmaRange>& held) {
  std::vector<Chunk> plan;
  for (const RmaRange& h : held) {
    OpState* op = h.op;
    if (op->finished || ep_->state != EpState::kConnected) {
      --op->pendingFrames;
      ep_->maybeRecycle(op);
      continue;
    }
    const int t = liveLaneFor(op);
    --op->pendingFrames;  // the hold; the plan's batches hold their own
    if (t < 0) {
      ep_->finish(op, Status(Code::kRailFailed,
                             fmt::format("one-sided {} of {} bytes: back on RDMA, but no lane "
                                         "its remote key names is up",
                                         op->kind == OpState::Kind::kRead ? "read" : "write",
                                         op->len)));
      continue;
    }
    plan.clear();
    rangeToPlan(h.offset, h.length, static_cast<size_t>(t), plan);
    postPlan(op, plan, /*rma=*/true);
  }
  held.clear();
}

int VerbsPath::returnLane() const {
  // Lane 0 when it is back, else the first lane that is: a port that stays dead does not
  // keep the endpoint on TCP while another rail works.
  for (const auto& lp : lanes_)
    if (!lp->down && lp->connected) return static_cast<int>(lp->index);
  return -1;
}

bool VerbsPath::laneUsable(size_t i) const {
  return i < lanes_.size() && !lanes_[i]->down && lanes_[i]->connected;
}

bool VerbsPath::quietForReturn() const { return rechecks_.empty() && pendingRechecks_.empty(); }

void VerbsPath::resume(uint64_t peerCtsWritten, size_t ctlLane) {
  ctl_ = ctlLane;
  // The CTS ring: entries the peer wrote through the old control lane and never landed are
  // skipped (their receives' CTS go again, EndpointImpl::returnToVerbs), and the peer did
  // the same with ours. Neither side wrote into a ring while on TCP.
  ctsConsumed_ = peerCtsWritten;
  cb_->flowOut.ctsConsumed = ctsConsumed_;
  cb_->flowSend.ctsConsumed = ctsConsumed_;
  __atomic_store_n(&cb_->flowIn.ctsConsumed, ctsWritten_, __ATOMIC_RELEASE);
  pendingCts_.clear();
  flowInFlight_ = false;  // a new QP: a flow write of the old control lane never completes
  flowDirty_ = true;
  backlogged_ = false;
}

}  // namespace braid
#endif  // BRAID_HAVE_VERBS
