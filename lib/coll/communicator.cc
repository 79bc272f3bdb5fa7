// lib/coll/communicator.cc — a communicator's creation (the mesh of endpoints, met
// through a Store), its public calls and their requests.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <sstream>

#include "coll/comm_impl.h"
#include "core/log.h"
#include "core/params.h"

namespace braid::coll {

namespace {

using Clock = std::chrono::steady_clock;

/// What a connecting rank says first (wire: 24 bytes, little-endian).
struct Hello {
  static constexpr uint32_t kMagic = 0x48434f42;  ///< "BOCH"
  uint32_t magic = kMagic;
  int32_t rank = 0;
  int32_t size = 0;
  uint32_t reserved = 0;
  uint64_t commIndex = 0;  ///< which communicator of the job (creation order)
};
static_assert(sizeof(Hello) == 24, "the hello is 24 bytes on the wire");

std::atomic<uint64_t> gCommCount{0};

std::string localHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

std::string rankList(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size() && i < 16; ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  if (ranks.size() > 16) s += ", ... (" + std::to_string(ranks.size()) + " in all)";
  return s;
}

Result<std::map<CollKind, Algo>> parseAlgorithms(const std::string& text) {
  std::map<CollKind, Algo> out;
  std::stringstream ss(text);
  std::string item;
  const std::pair<const char*, CollKind> kinds[] = {
      {"allreduce", CollKind::kAllreduce},         {"allgather", CollKind::kAllgather},
      {"reduce_scatter", CollKind::kReduceScatter}, {"reducescatter", CollKind::kReduceScatter},
      {"broadcast", CollKind::kBroadcast},         {"reduce", CollKind::kReduce},
      {"alltoall", CollKind::kAlltoall},           {"barrier", CollKind::kBarrier}};
  const Algo algos[] = {Algo::kRing, Algo::kRecursiveDoubling, Algo::kRabenseifner,
                        Algo::kBinomial, Algo::kChain, Algo::kPairwise, Algo::kDissemination};
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto colon = item.find(':');
    std::string k = item.substr(0, colon), a = colon == std::string::npos ? "" : item.substr(colon + 1);
    const CollKind* kind = nullptr;
    for (auto& [name, kk] : kinds) {
      if (k == name) kind = &kk;
    }
    const Algo* algo = nullptr;
    for (auto& aa : algos) {
      if (a == algoName(aa) || (a == "rd" && aa == Algo::kRecursiveDoubling)) algo = &aa;
    }
    if (kind == nullptr || algo == nullptr) {
      return Status(Code::kInvalidArgument,
                    "BRAID_ALGO=" + text + ": '" + item + "' is not collective:algorithm (collectives: "
                    "allreduce, allgather, reduce_scatter, broadcast, reduce, alltoall, barrier; "
                    "algorithms: ring, recursive_doubling (rd), rabenseifner, binomial, chain, "
                    "pairwise, dissemination)");
    }
    // The pairs a collective has (buildSchedule would refuse the others at each call).
    static const std::multimap<CollKind, Algo> valid = {
        {CollKind::kAllreduce, Algo::kRing}, {CollKind::kAllreduce, Algo::kRecursiveDoubling},
        {CollKind::kAllreduce, Algo::kRabenseifner}, {CollKind::kAllgather, Algo::kRing},
        {CollKind::kAllgather, Algo::kRecursiveDoubling}, {CollKind::kReduceScatter, Algo::kRing},
        {CollKind::kBroadcast, Algo::kBinomial}, {CollKind::kBroadcast, Algo::kChain},
        {CollKind::kReduce, Algo::kBinomial}, {CollKind::kReduce, Algo::kChain},
        {CollKind::kAlltoall, Algo::kPairwise}, {CollKind::kBarrier, Algo::kDissemination}};
    bool ok = false;
    auto range = valid.equal_range(*kind);
    for (auto it = range.first; it != range.second; ++it) ok = ok || it->second == *algo;
    if (!ok) {
      return Status(Code::kInvalidArgument, "BRAID_ALGO=" + text + ": " + std::string(collName(*kind)) +
                                                " has no algorithm " + a);
    }
    out[*kind] = *algo;
  }
  return out;
}

}  // namespace

CommImpl::~CommImpl() {
  if (progressThread.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu);
      stopping = true;
    }
    cv.notify_all();
    progressThread.join();
  }
  // Endpoints first: closing them cancels what is still posted, before the buffers those
  // requests point into (the scratch pool) go.
  for (auto& p : peers) {
    p.abortRecv = braid::Request();
    p.ep.reset();
  }
  inflight.clear();
  listener.reset();
}

Algo CommImpl::choose(CollKind kind, size_t bytes) const {
  if (size == 1) return Algo::kLocal;
  auto it = forced.find(kind);
  if (it != forced.end()) return it->second;
  switch (kind) {
    case CollKind::kAllreduce:
      if (bytes <= 64 * 1024) return Algo::kRecursiveDoubling;
      if (bytes <= 2 * 1024 * 1024) return Algo::kRabenseifner;
      return Algo::kRing;
    case CollKind::kAllgather:
      return bytes <= 64 * 1024 ? Algo::kRecursiveDoubling : Algo::kRing;
    case CollKind::kReduceScatter: return Algo::kRing;
    case CollKind::kBroadcast:
    case CollKind::kReduce:
      return bytes <= 64 * 1024 ? Algo::kBinomial : Algo::kChain;
    case CollKind::kAlltoall: return Algo::kPairwise;
    case CollKind::kBarrier: return Algo::kDissemination;
    default: return Algo::kDirect;
  }
}

Result<std::shared_ptr<CollOp>> CommImpl::submit(CollKind kind, const void* send, void* recv,
                                                size_t count, DataType type, ReduceOp rop,
                                                int root, int peer) {
  if (!failed.isOk()) return failed;
  const std::string name(collName(kind));
  if (static_cast<int>(type) >= kDataTypeCount) {
    return Status(Code::kInvalidArgument, name + ": unknown data type " + std::to_string(static_cast<int>(type)));
  }
  if (static_cast<int>(rop) >= kReduceOpCount) {
    return Status(Code::kInvalidArgument, name + ": unknown reduction " + std::to_string(static_cast<int>(rop)));
  }
  const bool rooted = kind == CollKind::kBroadcast || kind == CollKind::kReduce;
  if (rooted && (root < 0 || root >= size)) {
    return Status(Code::kInvalidArgument, name + ": root " + std::to_string(root) +
                                              " is not a rank of this communicator of " + std::to_string(size));
  }
  const bool p2p = kind == CollKind::kSend || kind == CollKind::kRecv;
  if (p2p && (peer < 0 || peer >= size || peer == rank)) {
    return Status(Code::kInvalidArgument, name + ": peer " + std::to_string(peer) +
                                              " is not another rank of this communicator of " + std::to_string(size));
  }
  const size_t es = typeSize(type), P = static_cast<size_t>(size);
  if (count > (SIZE_MAX / 2) / es / P) {
    return Status(Code::kInvalidArgument, name + ": count " + std::to_string(count) + " is too large");
  }
  size_t sendBytes = count * es, recvBytes = count * es, total = count * es;
  switch (kind) {
    case CollKind::kAllgather: recvBytes = total = count * es * P; break;
    case CollKind::kReduceScatter: sendBytes = total = count * es * P; break;
    case CollKind::kAlltoall: sendBytes = recvBytes = total = count * es * P; break;
    case CollKind::kBarrier: sendBytes = recvBytes = total = 0; break;
    case CollKind::kSend: recvBytes = 0; break;
    case CollKind::kRecv: sendBytes = 0; break;
    default: break;
  }
  const bool needSend = sendBytes > 0 && !(kind == CollKind::kBroadcast && root != rank);
  const bool needRecv = recvBytes > 0 && !(kind == CollKind::kReduce && root != rank);
  if ((needSend && send == nullptr) || (needRecv && recv == nullptr)) {
    return Status(Code::kInvalidArgument, name + ": a null buffer for " + std::to_string(count) + " elements");
  }
  auto op = std::make_shared<CollOp>();
  op->kind = kind;
  op->algo = p2p ? Algo::kDirect : choose(kind, total);
  op->seq = p2p ? 0 : nextSeq++;
  Descriptor& d = op->desc;
  d.kind = static_cast<uint8_t>(kind);
  d.type = static_cast<uint8_t>(type);
  d.op = (kind == CollKind::kAllreduce || kind == CollKind::kReduce || kind == CollKind::kReduceScatter)
             ? static_cast<uint8_t>(rop) : 0;
  d.algo = static_cast<uint8_t>(op->algo);
  d.count = count;
  d.root = rooted ? root : 0;
  d.segmentKiB = static_cast<uint32_t>(segmentBytes / 1024);
  d.seq = op->seq;
  {
    std::ostringstream o;
    o << name;
    if (!p2p) o << " #" << op->seq;
    o << " (" << count << " x " << typeName(type);
    if (d.op || kind == CollKind::kAllreduce || kind == CollKind::kReduce || kind == CollKind::kReduceScatter) {
      o << " " << opName(rop);
    }
    if (rooted) o << ", root " << root;
    if (p2p) o << (kind == CollKind::kSend ? ", to " : ", from ") << describeRank(peer);
    o << ", " << algoName(op->algo) << ")";
    op->what = o.str();
  }
  if (p2p) {
    if (kind == CollKind::kSend) op->sched.send(peer, send, sendBytes);
    else op->sched.recv(peer, recv, recvBytes);
  } else {
    BuildArgs a;
    a.kind = kind;
    a.send = static_cast<const uint8_t*>(send);
    a.recv = static_cast<uint8_t*>(recv);
    a.count = count;
    a.type = type;
    a.op = rop;
    a.root = rooted ? root : 0;
    a.rank = rank;
    a.size = size;
    a.segmentBytes = segmentBytes;
    CollOp* raw = op.get();
    a.scratch = [this, raw](size_t n) { return acquireScratch(*raw, n); };
    Status st = buildSchedule(op->algo, a, op->sched);
    if (!st.isOk()) {
      releaseScratch(*op);
      return st;
    }
  }
  if (verbs) {
    // Zero-copy over verbs wants the caller's buffers registered; the registration cache
    // makes that a lookup from the second call on.
    for (auto [p, n] : {std::pair<const void*, size_t>{needSend ? send : nullptr, sendBytes},
                        std::pair<const void*, size_t>{needRecv ? recv : nullptr, recvBytes}}) {
      if (p == nullptr || n <= kPiggybackMax) continue;
      auto mr = context->registerMemory(const_cast<void*>(p), n);
      if (mr) op->regions.push_back(*mr);
    }
  }
  inflight.push_back(op);
  if (threadOn) {
    cv.notify_all();
  } else {
    progress();
  }
  return op;
}

// ----------------------------------------------------------------------------- Request

Request::Request(std::shared_ptr<CommImpl> comm, std::shared_ptr<CollOp> op)
    : comm_(std::move(comm)), op_(std::move(op)) {}
Request::~Request() = default;
Request::Request(Request&&) noexcept = default;
Request& Request::operator=(Request&&) noexcept = default;

Status Request::test() {
  if (!op_) return Status(Code::kInvalidArgument, "test() on an empty collective request");
  std::lock_guard<std::mutex> lk(comm_->mu);
  if (!op_->finished && !comm_->threadOn) comm_->progress();
  if (!op_->finished) return Status(Code::kInProgress);
  return op_->status;
}

Status Request::wait(std::chrono::milliseconds timeout) {
  if (!op_) return Status(Code::kInvalidArgument, "wait() on an empty collective request");
  return comm_->wait(*op_, timeout);
}

// ------------------------------------------------------------------------ Communicator

Communicator::Communicator(std::shared_ptr<CommImpl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() {
  if (!impl_) return;
  std::unique_lock<std::mutex> lk(impl_->mu);
  bool busy = false;
  for (auto& op : impl_->inflight) busy = busy || !op->finished;
  if (busy) {
    impl_->fail(Status(Code::kCanceled, "the communicator was destroyed with calls in flight"), false);
  }
  lk.unlock();
  if (impl_->progressThread.joinable()) {
    {
      std::lock_guard<std::mutex> g(impl_->mu);
      impl_->stopping = true;
    }
    impl_->cv.notify_all();
    impl_->progressThread.join();
  }
  // The endpoints close now even if a Request still holds the state: a peer blocked in
  // a call sees this rank leave instead of waiting for its timeout.
  std::lock_guard<std::mutex> g(impl_->mu);
  if (!busy) impl_->sayGoodbye();
  for (auto& p : impl_->peers) {
    p.abortRecv = braid::Request();
    p.ep.reset();
    if (p.failed.isOk()) p.failed = Status(Code::kCanceled, "the communicator was destroyed");
  }
}

int Communicator::rank() const { return impl_->rank; }
int Communicator::size() const { return impl_->size; }
std::string Communicator::describeRank(int r) const { return impl_->describeRank(r); }
Status Communicator::error() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->failed;
}
Transport Communicator::transport() const {
  if (impl_->size == 1) return Transport::kAuto;
  return impl_->verbs ? Transport::kVerbs : Transport::kTcp;
}

std::string Communicator::algorithmFor(std::string_view collective, size_t bytes) const {
  for (CollKind k : {CollKind::kAllreduce, CollKind::kAllgather, CollKind::kReduceScatter,
                     CollKind::kBroadcast, CollKind::kReduce, CollKind::kAlltoall, CollKind::kBarrier}) {
    if (collName(k) == collective) return std::string(algoName(impl_->choose(k, bytes)));
  }
  return "";
}

#define BRAID_COLL_SUBMIT(...)                                                    \
  do {                                                                            \
    std::lock_guard<std::mutex> lk(impl_->mu);                                    \
    auto submitted = impl_->submit(__VA_ARGS__);                                  \
    if (!submitted) return submitted.status();                                    \
    return Request(impl_, std::move(submitted).value());                          \
  } while (0)

Result<Request> Communicator::iallreduce(const void* send, void* recv, size_t count, DataType type,
                                         ReduceOp op) {
  BRAID_COLL_SUBMIT(CollKind::kAllreduce, send, recv, count, type, op, 0, -1);
}
Result<Request> Communicator::iallgather(const void* send, void* recv, size_t sendcount, DataType type) {
  BRAID_COLL_SUBMIT(CollKind::kAllgather, send, recv, sendcount, type, ReduceOp::kSum, 0, -1);
}
Result<Request> Communicator::ireduceScatter(const void* send, void* recv, size_t recvcount,
                                             DataType type, ReduceOp op) {
  BRAID_COLL_SUBMIT(CollKind::kReduceScatter, send, recv, recvcount, type, op, 0, -1);
}
Result<Request> Communicator::ibroadcast(const void* send, void* recv, size_t count, DataType type,
                                         int root) {
  BRAID_COLL_SUBMIT(CollKind::kBroadcast, send, recv, count, type, ReduceOp::kSum, root, -1);
}
Result<Request> Communicator::ireduce(const void* send, void* recv, size_t count, DataType type,
                                      ReduceOp op, int root) {
  BRAID_COLL_SUBMIT(CollKind::kReduce, send, recv, count, type, op, root, -1);
}
Result<Request> Communicator::ialltoall(const void* send, void* recv, size_t count, DataType type) {
  BRAID_COLL_SUBMIT(CollKind::kAlltoall, send, recv, count, type, ReduceOp::kSum, 0, -1);
}
Result<Request> Communicator::ibarrier() {
  BRAID_COLL_SUBMIT(CollKind::kBarrier, nullptr, nullptr, 0, DataType::kUint8, ReduceOp::kSum, 0, -1);
}
Result<Request> Communicator::isend(const void* buf, size_t count, DataType type, int peer) {
  BRAID_COLL_SUBMIT(CollKind::kSend, buf, nullptr, count, type, ReduceOp::kSum, 0, peer);
}
Result<Request> Communicator::irecv(void* buf, size_t count, DataType type, int peer) {
  BRAID_COLL_SUBMIT(CollKind::kRecv, nullptr, buf, count, type, ReduceOp::kSum, 0, peer);
}

#undef BRAID_COLL_SUBMIT

namespace {
Status waitFor(Result<Request> r) {
  if (!r) return r.status();
  return r->wait();
}
}  // namespace

Status Communicator::allreduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  return waitFor(iallreduce(send, recv, count, type, op));
}
Status Communicator::allgather(const void* send, void* recv, size_t sendcount, DataType type) {
  return waitFor(iallgather(send, recv, sendcount, type));
}
Status Communicator::reduceScatter(const void* send, void* recv, size_t recvcount, DataType type,
                                   ReduceOp op) {
  return waitFor(ireduceScatter(send, recv, recvcount, type, op));
}
Status Communicator::broadcast(const void* send, void* recv, size_t count, DataType type, int root) {
  return waitFor(ibroadcast(send, recv, count, type, root));
}
Status Communicator::reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                            int root) {
  return waitFor(ireduce(send, recv, count, type, op, root));
}
Status Communicator::alltoall(const void* send, void* recv, size_t count, DataType type) {
  return waitFor(ialltoall(send, recv, count, type));
}
Status Communicator::barrier() { return waitFor(ibarrier()); }
Status Communicator::send(const void* buf, size_t count, DataType type, int peer) {
  return waitFor(isend(buf, count, type, peer));
}
Status Communicator::recv(void* buf, size_t count, DataType type, int peer) {
  return waitFor(irecv(buf, count, type, peer));
}

// ------------------------------------------------------------------------------ create

namespace {

void progressLoop(CommImpl* c) {
  std::unique_lock<std::mutex> lk(c->mu);
  while (!c->stopping) {
    bool busy = false;
    for (auto& op : c->inflight) busy = busy || !op->finished;
    if (!busy) {
      c->cv.wait(lk, [&] {
        if (c->stopping) return true;
        for (auto& op : c->inflight) {
          if (!op->finished) return true;
        }
        return false;
      });
      continue;
    }
    c->progress();
    c->cv.notify_all();  // waiters check their own call
    lk.unlock();
    std::this_thread::yield();
    lk.lock();
  }
}

}  // namespace

Result<std::unique_ptr<Communicator>> Communicator::create(int rank, int size,
                                                           std::shared_ptr<Store> store,
                                                           const CommOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) {
    return Status(Code::kInvalidArgument, "communicator: rank " + std::to_string(rank) +
                                              " of size " + std::to_string(size) + " is not a rank of it");
  }
  if (!store && size > 1) return Status(Code::kInvalidArgument, "communicator: no store to meet through");
  BRAID_ASSIGN_OR_RETURN(auto params, core::params());
  auto impl = std::make_shared<CommImpl>();
  impl->rank = rank;
  impl->size = size;
  impl->timeoutMs = options.timeoutMs.value_or(options.context.timeoutMs.value_or(static_cast<int>(params.timeoutMs)));
  impl->segmentBytes = options.segmentBytes.value_or(static_cast<size_t>(params.collSegment));
  impl->spinUs = static_cast<int>(params.collSpinUs);
  if (impl->segmentBytes < 1024) impl->segmentBytes = 1024;
  BRAID_ASSIGN_OR_RETURN(impl->forced, parseAlgorithms(options.algorithms.value_or(params.algo)));
  impl->hostName = localHostName();
  const uint64_t index = gCommCount.fetch_add(1);
  const auto timeout = std::chrono::milliseconds(impl->timeoutMs);
  const auto deadline = Clock::now() + timeout;
  auto remaining = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return std::max(left, std::chrono::milliseconds(1));
  };
  const auto t0 = Clock::now();
  impl->peers.resize(static_cast<size_t>(size));
  const bool threadOn = options.progressThread.value_or(params.collThread);
  if (size > 1) {
    auto ns = prefixStore(store, "braid/comm" + std::to_string(index) + "/");
    // The job token: the caller's or BRAID_JOB_TOKEN, else one rank 0 draws for the job.
    ContextOptions copt = options.context;
    std::optional<uint64_t> token = copt.jobToken ? copt.jobToken : params.jobToken;
    if (rank == 0) {
      if (!token) token = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
      BRAID_RETURN_IF_ERROR(ns->set("token", std::to_string(*token)));
    } else {
      auto t = ns->get("token", timeout);
      if (!t) return Status(t.status().code(), "communicator rank " + std::to_string(rank) + " of " +
                                                  std::to_string(size) + ": rank 0 did not publish the job's token: " +
                                                  t.status().message());
      uint64_t theirs = std::stoull(*t);
      if (token && *token != theirs) {
        return Status(Code::kConnectionRefused,
                      "communicator rank " + std::to_string(rank) + ": this process's job token "
                      "(BRAID_JOB_TOKEN) differs from rank 0's: it belongs to another job; start every "
                      "rank with the same token");
      }
      token = theirs;
    }
    copt.jobToken = token;
    copt.usage = ContextOptions::Usage::kCollective;  // over TCP: eager up to 128 KiB
    BRAID_ASSIGN_OR_RETURN(impl->context, Context::create(copt));
    BRAID_ASSIGN_OR_RETURN(impl->worker, Worker::create(impl->context));
    ListenOptions lopt;
    lopt.jobToken = token;
    BRAID_ASSIGN_OR_RETURN(impl->listener, Listener::create(*impl->worker, lopt));
    const Address& mine = impl->listener->address();
    BRAID_RETURN_IF_ERROR(ns->set("addr/" + std::to_string(rank),
                                  std::string(reinterpret_cast<const char*>(mine.bytes), Address::kSize) + impl->hostName));
    std::vector<Address> addrs(static_cast<size_t>(size));
    std::vector<int> missing;
    for (int j = 0; j < size; ++j) {
      if (j == rank) continue;
      auto v = ns->get("addr/" + std::to_string(j), missing.empty() ? remaining() : std::chrono::milliseconds(1));
      if (!v || v->size() < Address::kSize) {
        missing.push_back(j);
        continue;
      }
      std::memcpy(addrs[static_cast<size_t>(j)].bytes, v->data(), Address::kSize);
      impl->peers[static_cast<size_t>(j)].host = v->substr(Address::kSize);
      impl->peers[static_cast<size_t>(j)].address = addrs[static_cast<size_t>(j)].toString();
    }
    if (!missing.empty()) {
      return Status(Code::kTimedOut,
                    "communicator of " + std::to_string(size) + " ranks: rank(s) " + rankList(missing) +
                        " did not join within " + std::to_string(impl->timeoutMs) +
                        " ms (BRAID_TIMEOUT_MS): start every rank, with the same world size and store");
    }
    // Rank i connects to every j < i and accepts every j > i; the connecting side says
    // who it is first.
    struct Pending {
      std::unique_ptr<Endpoint> ep;
      int rank = -1;
      braid::Request hello;
      Hello in;
    };
    std::vector<Pending> connecting;
    std::vector<std::unique_ptr<Pending>> accepted;  // stable: a receive points into each
    Hello out;
    out.rank = rank;
    out.size = size;
    out.commIndex = index;
    for (int j = 0; j < rank; ++j) {
      auto ep = Endpoint::connect(*impl->worker, addrs[static_cast<size_t>(j)]);
      if (!ep) {
        return Status(ep.status().code(), "communicator rank " + std::to_string(rank) + ": connecting to " +
                                              impl->describeRank(j) + " at " + impl->peers[static_cast<size_t>(j)].address +
                                              ": " + ep.status().message());
      }
      connecting.push_back(Pending{std::move(ep).value(), j, braid::Request(), Hello()});
    }
    int toAccept = size - 1 - rank, connected = 0;
    while (connected < size - 1) {
      if (Clock::now() > deadline) {
        std::vector<int> absent;
        for (int j = 0; j < size; ++j) {
          if (j != rank && !impl->peers[static_cast<size_t>(j)].ep) absent.push_back(j);
        }
        return Status(Code::kTimedOut, "communicator rank " + std::to_string(rank) + " of " + std::to_string(size) +
                                           ": rank(s) " + rankList(absent) + " did not connect within " +
                                           std::to_string(impl->timeoutMs) + " ms (BRAID_TIMEOUT_MS)");
      }
      if (toAccept > 0) {
        auto ep = impl->listener->accept();
        if (ep) {
          auto p = std::make_unique<Pending>();
          p->ep = std::move(ep).value();
          auto h = p->ep->irecv(&p->in, sizeof(Hello), kTagHello);
          if (h) {
            p->hello = std::move(h).value();
            accepted.push_back(std::move(p));
          }
        }
      }
      for (auto it = connecting.begin(); it != connecting.end();) {
        Status st = it->ep->connectProgress();
        if (st.code() == Code::kInProgress) {
          ++it;
          continue;
        }
        if (!st.isOk()) {
          return Status(st.code(), "communicator rank " + std::to_string(rank) + ": connecting to " +
                                       impl->describeRank(it->rank) + " at " +
                                       impl->peers[static_cast<size_t>(it->rank)].address + ": " + st.message());
        }
        auto h = it->ep->isend(&out, sizeof(out), kTagHello);  // eager: finished when posted
        if (!h) return h.status();
        impl->peers[static_cast<size_t>(it->rank)].ep = std::move(it->ep);
        ++connected;
        it = connecting.erase(it);
      }
      for (auto it = accepted.begin(); it != accepted.end();) {
        Pending& pa = **it;
        if (!pa.hello.valid() || !pa.hello.finished()) {
          ++it;
          continue;
        }
        Status st = pa.hello.result();
        const Hello& h = pa.in;
        if (!st.isOk() || pa.hello.size() != sizeof(Hello) || h.magic != Hello::kMagic ||
            h.size != size || h.commIndex != index || h.rank <= rank || h.rank >= size ||
            impl->peers[static_cast<size_t>(h.rank)].ep) {
          BRAID_LOG_WARN(kColl, "coll: rank {}: dropped a peer that did not introduce itself as a "
                                "rank of this communicator ({}; rank {}, size {}, communicator {})",
                         rank, st.isOk() ? "bad hello" : st.toString(), h.rank, h.size, h.commIndex);
          it = accepted.erase(it);
          continue;
        }
        impl->peers[static_cast<size_t>(h.rank)].ep = std::move(pa.ep);
        ++connected;
        --toAccept;
        it = accepted.erase(it);
      }
      auto r = impl->worker->waitAndProgress(std::chrono::milliseconds(1));
      (void)r;
    }
    bool allVerbs = true;
    for (int j = 0; j < size; ++j) {
      if (j == rank) continue;
      Peer& p = impl->peers[static_cast<size_t>(j)];
      allVerbs = allVerbs && p.ep->transport() == Transport::kVerbs;
      p.abortBuf.resize(kAbortBytes);
      auto r = p.ep->irecv(p.abortBuf.data(), p.abortBuf.size(), kTagAbort);
      if (r) p.abortRecv = std::move(r).value();
    }
    impl->verbs = allVerbs;
    if (allVerbs) {
      impl->pool = ScratchPool([ctx = impl->context](uint8_t* base, size_t length) {
        auto mr = ctx->registerMemory(base, length);
        return mr ? *mr : MemoryRegion();  // requests then register their own
      });
    }
  }
  impl->threadOn = threadOn;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  std::string rails;
  if (impl->context) {
    for (const auto& r : impl->context->rails()) rails += (rails.empty() ? "" : ",") + r.name;
  }
  BRAID_LOG_INFO(kColl, "coll: rank {} of {} on {}: connected to {} peers over {} (rails {}) in {} ms",
                 rank, size, impl->hostName, size - 1, impl->verbs ? "verbs" : "tcp", rails, ms);
  if (threadOn) impl->progressThread = std::thread(progressLoop, impl.get());
  return std::unique_ptr<Communicator>(new Communicator(impl));
}

Result<std::unique_ptr<Communicator>> Communicator::fromEnvironment(const CommOptions& options) {
  BRAID_ASSIGN_OR_RETURN(LaunchInfo info, detectLaunch());
  BRAID_LOG_INFO(kColl, "coll: {}", info.describe());
  CommOptions opt = options;
  if (!opt.context.jobToken && info.jobToken) opt.context.jobToken = info.jobToken;
  BRAID_ASSIGN_OR_RETURN(auto params, core::params());
  auto timeout = std::chrono::milliseconds(opt.timeoutMs.value_or(static_cast<int>(params.timeoutMs)));
  std::shared_ptr<Store> store;
  if (info.size > 1) {
    if (info.store.rfind("file:", 0) == 0) {
      BRAID_ASSIGN_OR_RETURN(store, openFileStore(info.store.substr(5)));
    } else {
      auto colon = info.store.rfind(':');
      if (colon == std::string::npos) {
        return Status(Code::kInvalidArgument, "store '" + info.store + "' is neither host:port nor file:DIR");
      }
      TcpStoreOptions t;
      // The serving rank listens on every address: its host name may resolve to an
      // address only this host reaches (Debian maps it to 127.0.1.1).
      t.host = info.serveStore ? std::string() : info.store.substr(0, colon);
      int port = std::atoi(info.store.c_str() + colon + 1);
      if (port <= 0 || port > 65535) {
        return Status(Code::kInvalidArgument, "store '" + info.store + "': bad port");
      }
      t.port = static_cast<uint16_t>(port);
      t.serve = info.serveStore;
      t.jobToken = opt.context.jobToken.value_or(0);
      t.timeout = timeout;
      BRAID_ASSIGN_OR_RETURN(store, openTcpStore(t));
    }
  }
  auto comm = create(info.rank, info.size, store, opt);
  if (!comm) {
    return Status(comm.status().code(), info.describe() + ": " + comm.status().message());
  }
  // Rank 0's store serves the job: it lives as long as the communicator.
  (*comm)->impl().store = store;
  return comm;
}

}  // namespace braid::coll
