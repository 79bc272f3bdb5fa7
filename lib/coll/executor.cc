// lib/coll/executor.cc — runs the calls in flight: posts each task once its dependencies
// are done (sends and receives per peer in list order, schedule.h), checks what arrives
// against what this rank expects, and turns every failure into one communicator error
// that the other ranks hear about (an abort message) instead of waiting for it.
#include <sched.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <thread>

#include "coll/comm_impl.h"
#include "coll/reduce.h"
#include "core/log.h"

namespace braid::coll {

namespace {

using Clock = std::chrono::steady_clock;

std::string describeDesc(const Descriptor& d) {
  std::ostringstream o;
  auto kind = static_cast<CollKind>(d.kind);
  o << collName(kind) << " #" << d.seq << " with " << d.count;
  if (d.type < kDataTypeCount) o << " x " << typeName(static_cast<DataType>(d.type));
  if (kind == CollKind::kAllreduce || kind == CollKind::kReduce ||
      kind == CollKind::kReduceScatter) {
    if (d.op < kReduceOpCount) o << " " << opName(static_cast<ReduceOp>(d.op));
  }
  if (kind == CollKind::kBroadcast || kind == CollKind::kReduce) o << ", root " << d.root;
  o << " (" << algoName(static_cast<Algo>(d.algo)) << ", segments " << d.segmentKiB << " KiB)";
  return o.str();
}

bool sameCall(const Descriptor& a, const Descriptor& b) {
  return a.magic == b.magic && a.kind == b.kind && a.type == b.type && a.op == b.op &&
         a.count == b.count && a.root == b.root && a.seq == b.seq;
}

bool depsDone(const Schedule& s, const Task& t) {
  for (int d : t.deps) {
    if (s.tasks()[static_cast<size_t>(d)].state != Task::State::kDone) return false;
  }
  return true;
}

}  // namespace

std::string CommImpl::describeRank(int r) const {
  std::string s = "rank " + std::to_string(r);
  if (r >= 0 && r < size && r != rank && !peers[static_cast<size_t>(r)].host.empty()) {
    s += " (host " + peers[static_cast<size_t>(r)].host + ")";
  } else if (r == rank) {
    s += " (this process, host " + hostName + ")";
  }
  return s;
}

uint8_t* CommImpl::acquireScratch(CollOp& op, size_t bytes) {
  uint8_t* p = pool.acquire(bytes);
  op.scratch.push_back(p);
  return p;
}

void CommImpl::releaseScratch(CollOp& op) {
  for (uint8_t* p : op.scratch) pool.release(p);
  op.scratch.clear();
}

const MemoryRegion* CommImpl::regionFor(const CollOp& op, const void* p, size_t len) const {
  if (!verbs || p == nullptr) return nullptr;
  for (const auto& r : op.regions) {
    if (r.contains(p, len)) return &r;
  }
  return pool.regionFor(p, len);
}

void CommImpl::start(CollOp& op) {
  auto& tasks = op.sched.tasks();
  const size_t n = tasks.size();
  op.reqs.resize(n);
  op.descReqs.resize(n);
  op.staging.resize(n);
  op.sendQ.assign(static_cast<size_t>(size), {});
  op.recvQ.assign(static_cast<size_t>(size), {});
  op.sendNext.assign(static_cast<size_t>(size), 0);
  op.recvNext.assign(static_cast<size_t>(size), 0);
  const bool describe = op.kind != CollKind::kSend && op.kind != CollKind::kRecv;
  for (size_t i = 0; i < n; ++i) {
    Task& t = tasks[i];
    if (t.kind == Task::Kind::kSend || t.kind == Task::Kind::kRecv) {
      auto& q = (t.kind == Task::Kind::kSend ? op.sendQ : op.recvQ)[static_cast<size_t>(t.peer)];
      t.carriesDescriptor = describe && q.empty();
      q.push_back(static_cast<int>(i));
    } else {
      op.pendingCompute.push_back(static_cast<int>(i));
    }
  }
  op.started = true;
  op.lastProgress = Clock::now();
  if (n == 0) finish(op, Status::ok());
}

Status CommImpl::post(CollOp& op, int id) {
  Task& t = op.sched.tasks()[static_cast<size_t>(id)];
  Peer& peer = peers[static_cast<size_t>(t.peer)];
  if (!peer.failed.isOk()) {
    return Status(peer.failed.code(), op.what + ": " + describeRank(t.peer) + ": " +
                                          peer.failed.message());
  }
  const uint64_t tag = op.kind == CollKind::kSend || op.kind == CollKind::kRecv
                           ? kTagP2p
                           : kTagColl | (op.seq % kSlots);
  Endpoint& ep = *peer.ep;
  auto& staging = op.staging[static_cast<size_t>(id)];
  auto& req = op.reqs[static_cast<size_t>(id)];
  auto& descReq = op.descReqs[static_cast<size_t>(id)];
  const size_t D = sizeof(Descriptor);
  if (t.kind == Task::Kind::kSend) {
    const MemoryRegion* mr = regionFor(op, t.src, t.bytes);
    if (t.carriesDescriptor && t.bytes <= kPiggybackMax) {
      staging.resize(D + t.bytes);
      std::memcpy(staging.data(), &op.desc, D);
      if (t.bytes > 0) std::memcpy(staging.data() + D, t.src, t.bytes);
      BRAID_ASSIGN_OR_RETURN(req, ep.isend(staging.data(), staging.size(), tag));
    } else {
      if (t.carriesDescriptor) {
        // Over TCP the descriptor shares the data's write (one system call, not two).
        BRAID_ASSIGN_OR_RETURN(descReq, ep.isend(&op.desc, D, tag, nullptr, SendFlags::kMore));
      }
      BRAID_ASSIGN_OR_RETURN(req, ep.isend(t.src, t.bytes, tag, mr));
    }
  } else {
    const MemoryRegion* mr = regionFor(op, t.dst, t.bytes);
    if (t.carriesDescriptor) {
      // Room for any descriptor message, piggybacked or not: a peer that called something
      // else (another count) is then reported as such, not as a truncation.
      staging.resize(D + kPiggybackMax);
      if (t.bytes <= kPiggybackMax) {
        BRAID_ASSIGN_OR_RETURN(req, ep.irecv(staging.data(), staging.size(), tag));
        t.state = Task::State::kPosted;
        op.posted.push_back(id);
        return Status::ok();
      }
      BRAID_ASSIGN_OR_RETURN(descReq, ep.irecv(staging.data(), staging.size(), tag));
    }
    BRAID_ASSIGN_OR_RETURN(req, ep.irecv(t.dst, t.bytes, tag, mr));
  }
  t.state = Task::State::kPosted;
  op.posted.push_back(id);
  return Status::ok();
}

namespace {

/// Checks the descriptor a peer sent; `who()` names the peer (built only for an error:
/// this runs on every call's first message from each peer).
template <typename Who>
Status peerDescriptor(const CollOp& op, const Who& who, const uint8_t* data, size_t got,
                      Descriptor* out) {
  if (got < sizeof(Descriptor)) {
    return Status(Code::kProtocolError, op.what + ": " + who() + " sent " + std::to_string(got) +
                                            " bytes where a call descriptor was expected");
  }
  std::memcpy(out, data, sizeof(Descriptor));
  if (out->magic != Descriptor::kMagic) {
    return Status(Code::kProtocolError,
                  op.what + ": " + who() + " sent a message that is no call descriptor");
  }
  if (!sameCall(*out, op.desc)) {
    return Status(Code::kInvalidArgument,
                  op.what + ": " + who() + " called " + describeDesc(*out) +
                      " where this rank called " + describeDesc(op.desc) +
                      ": every rank must make the same calls in the same order, with the same "
                      "counts, types, ops and roots");
  }
  if (out->algo != op.desc.algo || out->segmentKiB != op.desc.segmentKiB) {
    return Status(Code::kInvalidArgument,
                  op.what + ": " + who() + " runs it as " + describeDesc(*out) +
                      " where this rank runs " + describeDesc(op.desc) +
                      ": set BRAID_ALGO and BRAID_COLL_SEGMENT alike on every rank");
  }
  return Status::ok();
}

}  // namespace

Status CommImpl::complete(CollOp& op, int id) {
  Task& t = op.sched.tasks()[static_cast<size_t>(id)];
  auto& req = op.reqs[static_cast<size_t>(id)];
  auto& descReq = op.descReqs[static_cast<size_t>(id)];
  auto& staging = op.staging[static_cast<size_t>(id)];
  auto who = [&] { return describeRank(t.peer); };  // for errors only: not on the hot path
  auto failed = [&](const Status& st) {
    return Status(st.code(), op.what + ": " + (t.kind == Task::Kind::kSend ? "sending to " : "receiving from ") +
                                 who() + ": " + st.message());
  };
  const size_t D = sizeof(Descriptor);
  Descriptor peerDesc;
  if (descReq.valid()) {
    Status st = descReq.result();
    if (!st.isOk()) return failed(st);
    if (t.kind == Task::Kind::kRecv) {
      BRAID_RETURN_IF_ERROR(peerDescriptor(op, who, staging.data(), descReq.size(), &peerDesc));
    }
    descReq = braid::Request();
  }
  Status st = req.result();
  if (!st.isOk()) {
    if (st.code() == Code::kTruncated) {
      return Status(Code::kInvalidArgument,
                    op.what + ": " + who() + " sent more than the " + std::to_string(t.bytes) +
                        " bytes this rank expects: the ranks disagree on counts or types (" +
                        st.message() + ")");
    }
    return failed(st);
  }
  if (t.kind == Task::Kind::kRecv) {
    size_t got = req.size();
    if (t.carriesDescriptor && t.bytes <= kPiggybackMax) {
      BRAID_RETURN_IF_ERROR(peerDescriptor(op, who, staging.data(), got, &peerDesc));
      got -= D;
      if (got == t.bytes && got > 0) std::memcpy(t.dst, staging.data() + D, got);
    }
    if (got != t.bytes) {
      return Status(Code::kInvalidArgument,
                    op.what + ": " + who() + " sent " + std::to_string(got) + " bytes where " +
                        std::to_string(t.bytes) + " were expected: the ranks disagree on counts "
                        "or types");
    }
  }
  req = braid::Request();
  staging.clear();
  staging.shrink_to_fit();
  return Status::ok();
}

bool CommImpl::advance(CollOp& op) {
  bool any = false;
  auto& tasks = op.sched.tasks();
  // Completions. A separate descriptor is checked as soon as it is here: a peer that
  // called something else may never send the data this rank waits for.
  for (size_t i = 0; i < op.posted.size();) {
    int id = op.posted[i];
    auto& descReq = op.descReqs[static_cast<size_t>(id)];
    auto& req = op.reqs[static_cast<size_t>(id)];
    Task& t = tasks[static_cast<size_t>(id)];
    if (descReq.valid() && descReq.finished() && t.kind == Task::Kind::kRecv &&
        !req.finished()) {
      Status st = descReq.result();
      Descriptor d;
      if (st.isOk()) st = peerDescriptor(op, [&] { return describeRank(t.peer); }, op.staging[static_cast<size_t>(id)].data(), descReq.size(), &d);
      if (!st.isOk()) {
        finish(op, st.code() == Code::kInvalidArgument || st.code() == Code::kProtocolError
                       ? st
                       : Status(st.code(), op.what + ": receiving from " + describeRank(t.peer) + ": " + st.message()));
        return true;
      }
    }
    if (req.finished() && (!descReq.valid() || descReq.finished())) {
      Status st = complete(op, id);
      if (!st.isOk()) {
        finish(op, st);
        return true;
      }
      t.state = Task::State::kDone;
      ++op.done;
      op.posted[i] = op.posted.back();
      op.posted.pop_back();
      any = true;
    } else {
      ++i;
    }
  }
  // Posts, per peer in list order; receives first: over TCP a receive queues its
  // clear-to-send, which then leaves in the same write as the send that follows it (one
  // system call per step instead of two), and reaches the peer before that peer's data.
  for (size_t p = 0; p < static_cast<size_t>(size); ++p) {
    for (auto* q : {&op.recvQ[p], &op.sendQ[p]}) {
      size_t& next = (q == &op.sendQ[p] ? op.sendNext : op.recvNext)[p];
      while (next < q->size()) {
        int id = (*q)[next];
        if (!depsDone(op.sched, tasks[static_cast<size_t>(id)])) break;
        Status st = post(op, id);
        if (st.code() == Code::kAgain) break;  // a queue is full: retry on the next pass
        if (!st.isOk()) {
          finish(op, st);
          return true;
        }
        ++next;
        any = true;
      }
    }
  }
  // Local work whose inputs are ready.
  for (size_t i = 0; i < op.pendingCompute.size();) {
    int id = op.pendingCompute[i];
    Task& t = tasks[static_cast<size_t>(id)];
    if (!depsDone(op.sched, t)) {
      ++i;
      continue;
    }
    const size_t es = typeSize(static_cast<DataType>(op.desc.type));
    switch (t.kind) {
      case Task::Kind::kReduce:
        reduce(t.dst, t.src, t.src2, t.bytes / es, static_cast<DataType>(op.desc.type),
               static_cast<ReduceOp>(op.desc.op));
        break;
      case Task::Kind::kCopy:
        if (t.bytes > 0 && t.dst != t.src) std::memmove(t.dst, t.src, t.bytes);
        break;
      case Task::Kind::kDivide:
        divideBy(t.dst, t.bytes / es, static_cast<DataType>(op.desc.type), size);
        break;
      default:
        break;
    }
    t.state = Task::State::kDone;
    ++op.done;
    op.pendingCompute.erase(op.pendingCompute.begin() + static_cast<std::ptrdiff_t>(i));
    any = true;
  }
  if (any) op.lastProgress = Clock::now();
  if (op.done == tasks.size()) {
    finish(op, Status::ok());
    return true;
  }
  return any;
}

namespace {
/// An abort's text ("" for a goodbye or garbage); `blamed` gets the rank it blames.
std::string parseAbort(const uint8_t* data, size_t n, int* blamed) {
  *blamed = -1;
  uint32_t magic = 0;
  int32_t b = -1;
  if (n < sizeof(magic) + sizeof(b)) return "";
  std::memcpy(&magic, data, sizeof(magic));
  std::memcpy(&b, data + sizeof(magic), sizeof(b));
  if (magic != kAbortMagic) return "";
  *blamed = b;
  return std::string(reinterpret_cast<const char*>(data) + 8, std::min(n, kAbortBytes) - 8);
}

bool isPeerLoss(const Status& st) {
  return st.code() == Code::kConnectionReset || st.code() == Code::kEndpointFailed ||
         st.code() == Code::kCanceled || st.code() == Code::kRailFailed;
}
}  // namespace

bool CommImpl::checkAborts() {
  bool any = false;
  for (size_t p = 0; p < peers.size(); ++p) {
    Peer& peer = peers[p];
    if (!peer.abortRecv.valid() || !peer.abortRecv.finished()) continue;
    any = true;
    Status st = peer.abortRecv.result();
    size_t n = peer.abortRecv.size();
    peer.abortRecv = braid::Request();
    if (st.isOk() && n == 1 && peer.abortBuf[0] == 0) {  // goodbye: it destroyed its communicator
      // Nothing fails yet: what it sent before is still delivered, and its sends
      // acknowledged by our kernel still finish; its endpoint's close fails the rest.
      BRAID_LOG_DEBUG(kColl, "coll: rank {}: goodbye from rank {}", rank, p);
    } else if (st.isOk()) {
      int blamed = -1;
      std::string why = parseAbort(peer.abortBuf.data(), n, &blamed);
      std::string base = describeRank(static_cast<int>(p)) + " failed the communicator: " + why;
      if (blamed == rank) {
        // This rank is blamed for a stall: say whom it waits for itself, so that every
        // rank's error ends at the one that stopped.
        int y = waitingFor();
        BRAID_LOG_INFO(kColl, "coll: rank {}: blamed by rank {}; waiting for rank {}", rank, p, y);
        if (y >= 0) {
          fail(Status(Code::kTimedOut, base + "; this rank, " + describeRank(rank) +
                                           ", was itself waiting for " + describeRank(y)),
               true, y);
        } else {
          fail(Status(Code::kEndpointFailed, base), true, -1);
        }
      } else {
        // Passed on to every peer: one that blames this rank at the same moment (it waits
        // for this rank, which waits for the stopped one) follows the word to the rank
        // that stopped instead of finding this rank gone without a reason and naming it.
        fail(Status(Code::kEndpointFailed, base), true, blamed);
      }
    } else if (peer.failed.isOk()) {
      peer.failed = st;
      BRAID_LOG_INFO(kColl, "coll: rank {}: {} is gone: {}", rank, describeRank(static_cast<int>(p)), st.toString());
    }
  }
  return any;
}

void CommImpl::finish(CollOp& op, Status st) {
  if (op.finished) return;
  if (!st.isOk() && isPeerLoss(st) && failed.isOk() && worker) {
    // A peer that failed the communicator closes its endpoints right after telling the
    // others why; its abort message may trail the broken connection by a moment. Its
    // reason (naming the rank that started it) beats "peer closed".
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (failed.isOk() && std::chrono::steady_clock::now() < until) {
      auto r = worker->waitAndProgress(std::chrono::milliseconds(1));
      (void)r;
      checkAborts();
    }
    if (op.finished) return;
  }
  op.finished = true;
  op.status = st;
  if (!st.isOk()) {
    // Requests still posted keep their buffers: the scratch stays out of the pool.
    if (op.posted.empty()) releaseScratch(op);
    fail(st, true, op.blame);
    if (!failed.isOk()) op.status = failed;  // the reason, followed to the rank that stopped
  } else {
    releaseScratch(op);
    op.reqs.clear();
    op.descReqs.clear();
    op.staging.clear();
  }
}

int CommImpl::waitingFor() const {
  for (const auto& op : inflight) {
    if (op->finished || !op->started) continue;
    for (int id : op->posted) {
      const Task& t = op->sched.tasks()[static_cast<size_t>(id)];
      if (t.kind == Task::Kind::kRecv) return t.peer;
    }
    if (!op->posted.empty()) return op->sched.tasks()[static_cast<size_t>(op->posted[0])].peer;
  }
  return -1;
}

Status CommImpl::followBlame(Status st, int blamed) {
  for (int hop = 0; hop < size && blamed >= 0 && blamed != rank && worker; ++hop) {
    Peer& pb = peers[static_cast<size_t>(blamed)];
    if (!pb.abortRecv.valid()) break;
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (!pb.abortRecv.finished() && std::chrono::steady_clock::now() < until) {
      auto r = worker->waitAndProgress(std::chrono::milliseconds(1));
      (void)r;
    }
    BRAID_LOG_INFO(kColl, "coll: rank {}: rank {} blamed: {}", rank, blamed,
                   pb.abortRecv.finished() ? pb.abortRecv.result().toString() : "no word");
    if (!pb.abortRecv.finished() || !pb.abortRecv.result().isOk()) break;  // it is the one
    size_t n = pb.abortRecv.size();
    pb.abortRecv = braid::Request();
    int next = -1;
    std::string why = parseAbort(pb.abortBuf.data(), n, &next);
    if (why.empty()) break;  // a goodbye
    st = Status(st.code(), describeRank(blamed) + " failed the communicator: " + why);
    blamed = next;
  }
  return st;
}

void CommImpl::fail(const Status& whyFirst, bool tellPeers, int blamed) {
  if (!failed.isOk() || failing) return;
  failing = true;
  // The abort: who this rank blames (-1: nobody in particular), then why.
  std::string msg(sizeof(uint32_t) + sizeof(int32_t), '\0');
  uint32_t magic = kAbortMagic;
  int32_t b = blamed;
  std::memcpy(msg.data(), &magic, sizeof(magic));
  std::memcpy(msg.data() + sizeof(magic), &b, sizeof(b));
  msg += whyFirst.message().substr(0, kAbortBytes - msg.size());
  for (size_t p = 0; tellPeers && p < peers.size(); ++p) {
    Peer& peer = peers[p];
    if (static_cast<int>(p) == rank || !peer.ep || !peer.failed.isOk()) continue;
    auto r = peer.ep->isend(msg.data(), msg.size(), kTagAbort);  // eager: sent at once
    (void)r;
  }
  if (worker) (void)worker->progress();
  // A blamed rank that is alive explains itself (whom it waited for): follow the chain
  // to the rank that really stopped, so every rank's error names it.
  Status why = followBlame(whyFirst, blamed);
  failed = why;
  failing = false;
  BRAID_LOG_ERROR(kColl, "coll: rank {} of {}: {}", rank, size, why.message());
  for (auto& op : inflight) {
    if (!op->finished) {
      op->finished = true;
      op->status = why;
    }
  }
  // Closing the endpoints cancels every request still posted, so no late message lands
  // in a caller's buffer after the call has returned its error; the abort messages,
  // eager and finished, reach the peers first (Endpoint::~Endpoint).
  for (auto& peer : peers) {
    if (peer.failed.isOk()) peer.failed = Status(why.code(), "the communicator failed");
    peer.abortRecv = braid::Request();
    peer.ep.reset();
  }
  for (auto& op : inflight) {
    op->reqs.clear();
    op->descReqs.clear();
    releaseScratch(*op);
  }
}

Status CommImpl::checkStalled(CollOp& op) {
  auto now = Clock::now();
  if (now - op.lastProgress < std::chrono::milliseconds(timeoutMs)) return Status::ok();
  std::string waiting;
  for (int id : op.posted) {
    const Task& t = op.sched.tasks()[static_cast<size_t>(id)];
    std::string w = (t.kind == Task::Kind::kRecv ? "data from " : "a send to ") + describeRank(t.peer);
    if (waiting.find(w) == std::string::npos) waiting += (waiting.empty() ? "" : ", ") + w;
  }
  if (waiting.empty()) waiting = "earlier steps";
  op.blame = -1;
  for (int id : op.posted) {  // blame the first peer it waits to hear from
    const Task& t = op.sched.tasks()[static_cast<size_t>(id)];
    if (op.blame < 0 || t.kind == Task::Kind::kRecv) op.blame = t.peer;
    if (t.kind == Task::Kind::kRecv) break;
  }
  return Status(Code::kTimedOut,
                op.what + ": no progress for " + std::to_string(timeoutMs) + " ms (BRAID_TIMEOUT_MS), waiting for " +
                    waiting + ": that rank died, is stopped, or has not made this call");
}

void CommImpl::progress() {
  auto now = Clock::now();
  // A caller that did not drive the communicator for a while stalled nothing: the
  // no-progress clock only runs while someone is driving.
  bool gap = now - lastCall > std::chrono::seconds(1);
  lastCall = now;
  if (worker) {
    auto r = worker->progress();
    (void)r;
  }
  checkAborts();
  for (size_t i = 0; i < inflight.size(); ++i) {
    CollOp& op = *inflight[i];
    if (op.finished) continue;
    if (!op.started) {
      bool slotBusy = false;
      for (size_t j = 0; j < i; ++j) {
        const CollOp& o = *inflight[j];
        if (!o.finished && o.kind != CollKind::kSend && o.kind != CollKind::kRecv &&
            o.seq % kSlots == op.seq % kSlots) {
          slotBusy = true;
        }
      }
      if (slotBusy) continue;
      start(op);
    }
    if (gap) op.lastProgress = now;
    for (int rounds = 0; rounds < 64 && !op.finished && advance(op); ++rounds) {
    }
    if (!op.finished) {
      // A peer that is gone fails the calls that still need it.
      for (int id : op.posted) {
        const Task& t = op.sched.tasks()[static_cast<size_t>(id)];
        const Peer& peer = peers[static_cast<size_t>(t.peer)];
        if (!peer.failed.isOk() && !op.reqs[static_cast<size_t>(id)].finished()) {
          finish(op, Status(peer.failed.code(), op.what + ": " + describeRank(t.peer) + " is gone: " + peer.failed.message()));
          break;
        }
      }
    }
    if (!op.finished) {
      Status st = checkStalled(op);
      if (!st.isOk()) finish(op, st);
    }
  }
  while (!inflight.empty() && inflight.front()->finished) inflight.pop_front();
}

Status CommImpl::wait(CollOp& op, std::chrono::milliseconds timeout) {
  auto start = Clock::now();
  auto deadline = timeout == std::chrono::milliseconds::max() ? Clock::time_point::max()
                                                               : start + timeout;
  if (threadOn) {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_until(lk, deadline, [&] { return op.finished; })) {
      return Status(Code::kTimedOut, op.what + ": not finished after " + std::to_string(timeout.count()) + " ms");
    }
    return op.status;
  }
  std::lock_guard<std::mutex> lk(mu);
  // Poll for a while before sleeping in the worker: a sleeping rank pays a wakeup per
  // message. Between polls the core goes to whoever else wants it (sched_yield), so ranks
  // that share cores (more ranks than cores) hand it to the rank that has work.
  const auto spin = std::chrono::microseconds(spinUs);
  while (true) {
    progress();
    if (op.finished) return op.status;
    auto now = Clock::now();
    if (now >= deadline) {
      return Status(Code::kTimedOut, op.what + ": not finished after " + std::to_string(timeout.count()) + " ms");
    }
    if (now - start >= spin && worker) {
      auto r = worker->waitAndProgress(std::chrono::milliseconds(1));
      (void)r;
    } else {
      sched_yield();
    }
  }
}

}  // namespace braid::coll

namespace braid::coll {

void CommImpl::sayGoodbye() {
  if (!worker || !failed.isOk()) return;
  for (size_t p = 0; p < peers.size(); ++p) {
    Peer& peer = peers[p];
    if (static_cast<int>(p) == rank || !peer.ep || !peer.failed.isOk()) continue;
    static const char kBye = 0;
    auto r = peer.ep->isend(&kBye, 1, kTagAbort);  // eager; one zero byte: goodbye
    if (!r) BRAID_LOG_DEBUG(kColl, "coll: rank {}: goodbye to rank {}: {}", rank, p, r.status().toString());
  }
  // Peers normally leave together (after the same last call); one that lingers costs at
  // most this long, and then its endpoint closes with our goodbye receive outstanding.
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(std::min(timeoutMs, 1000));
  while (std::chrono::steady_clock::now() < until) {
    bool waiting = false;
    for (auto& peer : peers) waiting = waiting || (peer.abortRecv.valid() && !peer.abortRecv.finished());
    if (!waiting) break;
    auto r = worker->waitAndProgress(std::chrono::milliseconds(1));
    (void)r;
    checkAborts();
  }
  size_t missing = 0;
  for (auto& peer : peers) missing += peer.abortRecv.valid() && !peer.abortRecv.finished();
  BRAID_LOG_DEBUG(kColl, "coll: rank {}: leaving; {} peers have not said goodbye yet", rank, missing);

}

}  // namespace braid::coll
