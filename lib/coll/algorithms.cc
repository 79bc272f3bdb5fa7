// lib/coll/algorithms.cc — each collective's algorithms as task lists (schedule.h).
//
// Conventions of this file: byte offsets throughout; `es` is the element size. Blocks of
// a buffer split over n parts differ by at most one element (the first count % n blocks
// get one more). Every algorithm works for any rank count; those built on powers of two
// first fold the ranks above the largest power of two into their neighbours (the even
// rank of each of the first 2*rem pairs hands its data to the odd one and gets the result
// back at the end), as MPICH and Open MPI do.
#include <algorithm>
#include <optional>
#include <cstring>

#include "coll/schedule.h"

namespace braid::coll {

std::string_view collName(CollKind k) {
  switch (k) {
    case CollKind::kAllreduce: return "allreduce";
    case CollKind::kAllgather: return "allgather";
    case CollKind::kReduceScatter: return "reduce_scatter";
    case CollKind::kBroadcast: return "broadcast";
    case CollKind::kReduce: return "reduce";
    case CollKind::kAlltoall: return "alltoall";
    case CollKind::kBarrier: return "barrier";
    case CollKind::kSend: return "send";
    case CollKind::kRecv: return "recv";
  }
  return "?";
}

std::string_view algoName(Algo a) {
  switch (a) {
    case Algo::kLocal: return "local";
    case Algo::kRing: return "ring";
    case Algo::kRecursiveDoubling: return "recursive_doubling";
    case Algo::kRabenseifner: return "rabenseifner";
    case Algo::kBinomial: return "binomial";
    case Algo::kChain: return "chain";
    case Algo::kPairwise: return "pairwise";
    case Algo::kDissemination: return "dissemination";
    case Algo::kDirect: return "direct";
  }
  return "?";
}

int Schedule::add(Task t, std::initializer_list<int> deps) {
  for (int d : deps) {
    if (d >= 0) t.deps.push_back(d);
  }
  tasks_.push_back(std::move(t));
  return static_cast<int>(tasks_.size() - 1);
}

int Schedule::send(int peer, const void* src, size_t bytes, std::initializer_list<int> deps) {
  Task t;
  t.kind = Task::Kind::kSend;
  t.peer = peer;
  t.src = static_cast<const uint8_t*>(src);
  t.bytes = bytes;
  return add(std::move(t), deps);
}

int Schedule::recv(int peer, void* dst, size_t bytes, std::initializer_list<int> deps) {
  Task t;
  t.kind = Task::Kind::kRecv;
  t.peer = peer;
  t.dst = static_cast<uint8_t*>(dst);
  t.bytes = bytes;
  return add(std::move(t), deps);
}

int Schedule::reduce(void* dst, const void* a, const void* b, size_t bytes,
                     std::initializer_list<int> deps) {
  Task t;
  t.kind = Task::Kind::kReduce;
  t.dst = static_cast<uint8_t*>(dst);
  t.src = static_cast<const uint8_t*>(a);
  t.src2 = static_cast<const uint8_t*>(b);
  t.bytes = bytes;
  return add(std::move(t), deps);
}

int Schedule::copy(void* dst, const void* src, size_t bytes, std::initializer_list<int> deps) {
  Task t;
  t.kind = Task::Kind::kCopy;
  t.dst = static_cast<uint8_t*>(dst);
  t.src = static_cast<const uint8_t*>(src);
  t.bytes = bytes;
  return add(std::move(t), deps);
}

int Schedule::divide(void* buf, size_t bytes, std::initializer_list<int> deps) {
  Task t;
  t.kind = Task::Kind::kDivide;
  t.dst = static_cast<uint8_t*>(buf);
  t.bytes = bytes;
  return add(std::move(t), deps);
}

namespace {

/// `count` elements split in `parts` blocks; offsets and lengths in bytes.
struct Blocks {
  Blocks(size_t count, int parts, size_t es) : count_(count), parts_(parts), es_(es) {}
  size_t off(int i) const {
    size_t base = count_ / static_cast<size_t>(parts_), extra = count_ % static_cast<size_t>(parts_);
    auto u = static_cast<size_t>(i);
    return (u * base + std::min(u, extra)) * es_;
  }
  size_t len(int i) const {
    size_t base = count_ / static_cast<size_t>(parts_), extra = count_ % static_cast<size_t>(parts_);
    return (base + (static_cast<size_t>(i) < extra ? 1 : 0)) * es_;
  }
  /// Bytes of blocks [a, b).
  size_t span(int a, int b) const { return off(b) - off(a); }
  size_t maxLen() const { return len(0); }
  size_t count_;
  int parts_;
  size_t es_;
};

/// A block of `len` bytes cut in `nseg` segments on element boundaries.
struct Segments {
  Segments(size_t len, int nseg, size_t es) : b(len / es, nseg, es) {}
  size_t off(int g) const { return b.off(g); }
  size_t len(int g) const { return b.len(g); }
  Blocks b;
};

int segmentCount(size_t maxBlockBytes, size_t segmentBytes) {
  if (maxBlockBytes == 0) return 1;
  size_t n = (maxBlockBytes + segmentBytes - 1) / segmentBytes;
  return static_cast<int>(std::min<size_t>(n, 4096));
}

/// Where received segments wait for their reduction: a ring of a few segment-sized slots,
/// each written again once the task that read it last is done. The slots stay in cache,
/// where a block-sized scratch would send every received byte out to memory and back
/// before it is reduced (and would cost a block of memory per call).
class SlotRing {
 public:
  SlotRing(const BuildArgs& a, size_t slotBytes, int segments)
      : n_(static_cast<size_t>(std::min(2 * segments, 4))),
        bytes_(slotBytes),
        base_(a.scratch(n_ * slotBytes)),
        reader_(n_, -1) {}
  /// The next slot; `*dep` is the task that must finish before it is written.
  uint8_t* next(int* dep) {
    cur_ = i_++ % n_;
    *dep = reader_[cur_];
    return base_ + cur_ * bytes_;
  }
  /// `task` reads the slot that next() returned last.
  void readBy(int task) { reader_[cur_] = task; }

 private:
  size_t n_, bytes_;
  uint8_t* base_;
  std::vector<int> reader_;
  size_t i_ = 0, cur_ = 0;
};

int mod(int a, int n) { return ((a % n) + n) % n; }

int largestPow2AtMost(int n) {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

/// The fold of a rank count onto a power of two (see the file comment).
struct Fold {
  explicit Fold(int size) : p2(largestPow2AtMost(size)), rem(size - p2) {}
  /// The virtual rank of `r`, or -1 for the even ranks that hand their data off.
  int vrank(int r) const {
    if (r < 2 * rem) return (r % 2 == 0) ? -1 : r / 2;
    return r - rem;
  }
  /// The real rank that stands for virtual rank `v`.
  int real(int v) const { return v < rem ? 2 * v + 1 : v + rem; }
  /// The first and one-past-last real ranks that virtual ranks [a, b) stand for.
  int firstReal(int v) const { return v < rem ? 2 * v : v + rem; }
  int endReal(int v) const { return v < rem ? 2 * v + 2 : v + rem + 1; }
  int p2, rem;
};

bool isAvg(const BuildArgs& a) { return a.op == ReduceOp::kAvg; }

// ---------------------------------------------------------------------------- allreduce

void allreduceLocal(const BuildArgs& a, Schedule& s, size_t bytes) {
  if (a.send != a.recv) s.copy(a.recv, a.send, bytes);
}

/// Pipelined ring: reduce-scatter, then allgather of the reduced blocks (zero-copy into
/// recv). Each block in segments so that a segment is on the wire while the previous one
/// is reduced.
void allreduceRing(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank, right = mod(r + 1, P), left = mod(r - 1, P);
  const size_t es = typeSize(a.type);
  Blocks B(a.count, P, es);
  const int G = segmentCount(B.maxLen(), a.segmentBytes);
  uint8_t* dst = a.recv;
  const uint8_t* src = a.send;
  SlotRing slots(a, Segments(B.maxLen(), G, es).len(0), G);
  auto seg = [&](int block, int g, size_t* len) {
    Segments S(B.len(block), G, es);
    *len = S.len(g);
    return B.off(block) + S.off(g);
  };
  // reduceId[s][g], rsSend[s][g], agRecv[s][g]
  std::vector<std::vector<int>> red(static_cast<size_t>(P), std::vector<int>(static_cast<size_t>(G), -1));
  std::vector<std::vector<int>> rsSend = red, agRecv = red;
  for (int st = 0; st + 1 < P; ++st) {
    int sb = mod(r - st, P), rb = mod(r - st - 1, P);
    for (int g = 0; g < G; ++g) {
      size_t slen, rlen;
      size_t soff = seg(sb, g, &slen), roff = seg(rb, g, &rlen);
      auto su = static_cast<size_t>(st), gu = static_cast<size_t>(g);
      rsSend[su][gu] = s.send(right, (st == 0 ? src : dst) + soff, slen,
                              {st == 0 ? -1 : red[su - 1][gu]});
      int free = -1;
      uint8_t* slot = slots.next(&free);
      int rcv = s.recv(left, slot, rlen, {free});
      red[su][gu] = s.reduce(dst + roff, src + roff, slot, rlen, {rcv});
      slots.readBy(red[su][gu]);
    }
  }
  // This rank now holds block r+1 reduced; kAvg divides it before it goes round.
  const int own = mod(r + 1, P);
  std::vector<int> ready(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g) {
    auto gu = static_cast<size_t>(g);
    ready[gu] = red[static_cast<size_t>(P - 2)][gu];
    if (isAvg(a)) {
      size_t len, off = seg(own, g, &len);
      ready[gu] = s.divide(dst + off, len, {ready[gu]});
    }
  }
  for (int st = 0; st + 1 < P; ++st) {
    int sb = mod(r + 1 - st, P), rb = mod(r - st, P);
    for (int g = 0; g < G; ++g) {
      size_t slen, rlen;
      size_t soff = seg(sb, g, &slen), roff = seg(rb, g, &rlen);
      auto su = static_cast<size_t>(st), gu = static_cast<size_t>(g);
      s.send(right, dst + soff, slen, {st == 0 ? ready[gu] : agRecv[su - 1][gu]});
      // Block rb was read by the reduce-scatter's send of the same step (in place: the
      // step-0 send read the caller's block r); it is overwritten only after that send.
      agRecv[su][gu] = s.recv(left, dst + roff, rlen, {rsSend[su][gu]});
    }
  }
}

/// Recursive doubling: log2(P) exchanges of the whole buffer (small messages).
void allreduceRecursiveDoubling(const BuildArgs& a, Schedule& s) {
  const size_t bytes = a.count * typeSize(a.type);
  const int r = a.rank;
  Fold F(a.size);
  uint8_t* dst = a.recv;
  const int v = F.vrank(r);
  if (v < 0) {  // an even rank of the fold: hand off, get the result back
    int snd = s.send(r + 1, a.send, bytes);
    s.recv(r + 1, dst, bytes, {snd});
    return;
  }
  // Out of place, the first exchange sends from the caller's buffer and the first reduce
  // writes dst from it: no copy of the input into dst first.
  const uint8_t* cur = a.send;
  int last = -1;
  uint8_t* tmp = a.scratch(3 * bytes);  // two slots for the exchanges, one for the fold
  if (r < 2 * F.rem) {
    int rcv = s.recv(r - 1, tmp + 2 * bytes, bytes);
    last = s.reduce(dst, cur, tmp + 2 * bytes, bytes, {rcv});
    cur = dst;
  }
  std::vector<int> red;
  int k = 0;
  for (int mask = 1; mask < F.p2; mask <<= 1, ++k) {
    int partner = F.real(v ^ mask);
    uint8_t* slot = tmp + static_cast<size_t>(k % 2) * bytes;
    int snd = s.send(partner, cur, bytes, {last});
    int rcv = s.recv(partner, slot, bytes, {k >= 2 ? red[static_cast<size_t>(k - 2)] : -1});
    // The reduce overwrites what the send reads only when both are dst.
    last = s.reduce(dst, cur, slot, bytes, {rcv, cur == dst ? snd : -1});
    red.push_back(last);
    cur = dst;
  }
  if (isAvg(a)) last = s.divide(dst, bytes, {last});
  if (r < 2 * F.rem) s.send(r - 1, dst, bytes, {last});
}

/// Rabenseifner: recursive-halving reduce-scatter, then recursive-doubling allgather, over
/// the folded power of two (bandwidth of the ring, log2(P) steps each way).
void allreduceRabenseifner(const BuildArgs& a, Schedule& s) {
  const size_t es = typeSize(a.type), bytes = a.count * es;
  const int r = a.rank;
  Fold F(a.size);
  uint8_t* dst = a.recv;
  const int v = F.vrank(r);
  if (v < 0) {
    int snd = s.send(r + 1, a.send, bytes);
    s.recv(r + 1, dst, bytes, {snd});
    return;
  }
  // Out of place, the first step sends from the caller's buffer and its reduce writes dst
  // from it: no copy of the input into dst first (a pass over the whole buffer, and a
  // second buffer's worth of cache).
  const uint8_t* cur = a.send;
  int last = -1;
  Blocks B(a.count, F.p2, es);
  if (r < 2 * F.rem) {
    uint8_t* fold = a.scratch(std::max(bytes, es));
    int rcv = s.recv(r - 1, fold, bytes);
    last = s.reduce(dst, cur, fold, bytes, {rcv});
    cur = dst;
  }
  // Each step receives into its own part of tmp (the kept halves shrink: p2 - 1 blocks in
  // all), so every receive is posted at the start and its CTS goes at once: a partner
  // that is ahead sends as soon as it is ready, not after this rank's previous reduce.
  uint8_t* tmp = a.scratch(std::max(static_cast<size_t>(F.p2) * B.maxLen(), es));
  size_t tmpOff = 0;
  struct Step {
    int mask, sendLo, sendHi, snd;
  };
  std::vector<Step> steps;
  int lo = 0, hi = F.p2;
  for (int mask = F.p2 / 2; mask >= 1; mask /= 2) {
    int partner = F.real(v ^ mask), mid = lo + (hi - lo) / 2;
    int keepLo = (v & mask) ? mid : lo, keepHi = (v & mask) ? hi : mid;
    int sendLo = (v & mask) ? lo : mid, sendHi = (v & mask) ? mid : hi;
    int snd = s.send(partner, cur + B.off(sendLo), B.span(sendLo, sendHi), {last});
    size_t keepOff = B.off(keepLo), keepLen = B.span(keepLo, keepHi);
    int rcv = s.recv(partner, tmp + tmpOff, keepLen);
    // The send reads the other half: the reduce need not wait for it. Each reduce waits
    // for the previous one (it reads what that one wrote).
    last = s.reduce(dst + keepOff, cur + keepOff, tmp + tmpOff, keepLen, {rcv, last});
    tmpOff += keepLen;
    cur = dst;
    steps.push_back({mask, sendLo, sendHi, snd});
    lo = keepLo;
    hi = keepHi;
  }
  if (isAvg(a)) last = s.divide(dst + B.off(v), B.len(v), {last});
  // Allgather: the reverse order; each step receives exactly the range the matching
  // reduce-scatter step sent away, after that send is done.
  std::vector<int> written{last};  // every write of the blocks this rank holds
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    int partner = F.real(v ^ it->mask);
    int snd = s.send(partner, dst + B.off(lo), B.span(lo, hi));
    for (int w : written) s.addDep(snd, w);
    written.push_back(
        s.recv(partner, dst + B.off(it->sendLo), B.span(it->sendLo, it->sendHi), {it->snd}));
    lo = std::min(lo, it->sendLo);
    hi = std::max(hi, it->sendHi);
  }
  if (r < 2 * F.rem) {
    int snd = s.send(r - 1, dst, bytes);
    for (int w : written) s.addDep(snd, w);
  }
}

// ---------------------------------------------------------------------------- allgather

void allgatherRing(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank, right = mod(r + 1, P), left = mod(r - 1, P);
  const size_t blk = a.count * typeSize(a.type), es = typeSize(a.type);
  uint8_t* dst = a.recv;
  int cp = (a.send != dst + static_cast<size_t>(r) * blk) ? s.copy(dst + static_cast<size_t>(r) * blk, a.send, blk) : -1;
  const int G = segmentCount(blk, a.segmentBytes);
  Segments S(blk, G, es);
  std::vector<int> prev(static_cast<size_t>(G), cp);
  for (int st = 0; st + 1 < P; ++st) {
    int sb = mod(r - st, P), rb = mod(r - st - 1, P);
    for (int g = 0; g < G; ++g) {
      auto gu = static_cast<size_t>(g);
      s.send(right, dst + static_cast<size_t>(sb) * blk + S.off(g), S.len(g), {prev[gu]});
      prev[gu] = s.recv(left, dst + static_cast<size_t>(rb) * blk + S.off(g), S.len(g));
    }
  }
}

void allgatherRecursiveDoubling(const BuildArgs& a, Schedule& s) {
  const int r = a.rank;
  const size_t blk = a.count * typeSize(a.type);
  Fold F(a.size);
  uint8_t* dst = a.recv;
  auto at = [&](int realRank) { return dst + static_cast<size_t>(realRank) * blk; };
  const int v = F.vrank(r);
  if (v < 0) {  // the whole result comes back, this rank's block included
    int snd = s.send(r + 1, a.send, blk);
    s.recv(r + 1, dst, blk * static_cast<size_t>(a.size), {snd});
    return;
  }
  std::vector<int> writes;
  if (a.send != at(r)) writes.push_back(s.copy(at(r), a.send, blk));
  if (r < 2 * F.rem) writes.push_back(s.recv(r - 1, at(r - 1), blk));
  for (int mask = 1; mask < F.p2; mask <<= 1) {
    int partner = F.real(v ^ mask);
    int mine = (v / mask) * mask, theirs = mine ^ mask;
    int lo = F.firstReal(mine), hi = F.endReal(mine + mask - 1);
    int plo = F.firstReal(theirs), phi = F.endReal(theirs + mask - 1);
    int snd = s.send(partner, at(lo), blk * static_cast<size_t>(hi - lo));
    for (int w : writes) s.addDep(snd, w);
    writes.push_back(s.recv(partner, at(plo), blk * static_cast<size_t>(phi - plo)));
  }
  if (r < 2 * F.rem) {
    int snd = s.send(r - 1, dst, blk * static_cast<size_t>(a.size));
    for (int w : writes) s.addDep(snd, w);
  }
}

// ----------------------------------------------------------------------- reduce_scatter

/// Ring: block b's partial sum travels round the ring and ends, fully reduced, at rank b.
void reduceScatterRing(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank, right = mod(r + 1, P), left = mod(r - 1, P);
  const size_t es = typeSize(a.type), blk = a.count * es;
  const uint8_t* src = a.send;
  uint8_t* dst = a.recv;
  const int G = segmentCount(blk, a.segmentBytes);
  Segments S(blk, G, es);
  SlotRing slots(a, S.len(0), G);     // received partials
  uint8_t* acc = a.scratch(2 * blk);   // this rank's partials, two slots
  auto u = [](int x) { return static_cast<size_t>(x); };
  std::vector<std::vector<int>> red(u(P), std::vector<int>(u(G), -1)), snd = red;
  for (int st = 0; st + 1 < P; ++st) {
    int sb = mod(r - st - 1, P), rb = mod(r - st - 2, P);
    bool last = st == P - 2;
    for (int g = 0; g < G; ++g) {
      size_t so = S.off(g), len = S.len(g);
      const uint8_t* from = st == 0 ? src + u(sb) * blk + so : acc + u((st - 1) % 2) * blk + so;
      snd[u(st)][u(g)] = s.send(right, from, len, {st == 0 ? -1 : red[u(st - 1)][u(g)]});
      int free = -1;
      uint8_t* slot = slots.next(&free);
      int rcv = s.recv(left, slot, len, {free});
      uint8_t* out = last ? dst + so : acc + u(st % 2) * blk + so;
      red[u(st)][u(g)] = s.reduce(out, src + u(rb) * blk + so, slot, len,
                                  {rcv, st >= 1 ? snd[u(st - 1)][u(g)] : -1});
      slots.readBy(red[u(st)][u(g)]);
      if (last && isAvg(a)) s.divide(out, len, {red[u(st)][u(g)]});
    }
  }
}

// ---------------------------------------------------------------------------- broadcast

void broadcastBinomial(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  const size_t bytes = a.count * typeSize(a.type);
  const int v = mod(r - a.root, P);
  auto real = [&](int vr) { return mod(vr + a.root, P); };
  int have = -1;
  const uint8_t* from = a.recv;
  int mask = 1;
  if (v == 0) {
    from = a.send;
    if (a.send != a.recv) s.copy(a.recv, a.send, bytes);
    while (mask < P) mask <<= 1;
  } else {
    while (!(v & mask)) mask <<= 1;
    have = s.recv(real(v - mask), a.recv, bytes);
  }
  for (mask >>= 1; mask >= 1; mask >>= 1) {
    if (v + mask < P) s.send(real(v + mask), from, bytes, {have});
  }
}

void broadcastChain(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  const size_t es = typeSize(a.type), bytes = a.count * es;
  const int v = mod(r - a.root, P);
  const int prev = mod(r - 1, P), next = mod(r + 1, P);
  const int G = segmentCount(bytes, a.segmentBytes);
  Segments S(bytes, G, es);
  if (v == 0 && a.send != a.recv) s.copy(a.recv, a.send, bytes);
  for (int g = 0; g < G; ++g) {
    int have = -1;
    const uint8_t* from = (v == 0 ? a.send : a.recv) + S.off(g);
    if (v > 0) have = s.recv(prev, a.recv + S.off(g), S.len(g));
    if (v + 1 < P) s.send(next, from, S.len(g), {have});
  }
}

// ------------------------------------------------------------------------------- reduce

void reduceBinomial(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  const size_t bytes = a.count * typeSize(a.type);
  const int v = mod(r - a.root, P);
  auto real = [&](int vr) { return mod(vr + a.root, P); };
  // Children first (lowest mask first), then the parent.
  int children = 0;
  int mask = 1;
  for (; mask < P; mask <<= 1) {
    if (v & mask) break;
    if (v + mask < P) ++children;
  }
  const int parentMask = mask;  // == first set bit of v (or >= P for the root)
  const uint8_t* acc = a.send;
  int last = -1;
  if (children > 0) {
    uint8_t* buf = v == 0 ? a.recv : a.scratch(bytes);
    uint8_t* tmp = a.scratch(bytes * static_cast<size_t>(children));
    bool first = true;
    int c = 0;
    for (int m = 1; m < parentMask && m < P; m <<= 1) {
      if (v + m >= P) continue;
      uint8_t* slot = tmp + static_cast<size_t>(c++) * bytes;
      int rcv = s.recv(real(v + m), slot, bytes);
      last = s.reduce(buf, first ? a.send : buf, slot, bytes, {rcv, last});
      first = false;
    }
    acc = buf;
  } else if (v == 0 && a.send != a.recv) {
    last = s.copy(a.recv, a.send, bytes);
  }
  if (v == 0) {
    if (isAvg(a)) s.divide(a.recv, bytes, {last});
    return;
  }
  s.send(real(v - parentMask), acc, bytes, {last});
}

/// Chain towards the root, pipelined: each rank adds its segment to what the next one
/// sent and passes it on.
void reduceChain(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  const size_t es = typeSize(a.type), bytes = a.count * es;
  const int v = mod(r - a.root, P);
  const int toward = mod(r - 1, P), from = mod(r + 1, P);  // v-1 and v+1
  const int G = segmentCount(bytes, a.segmentBytes);
  Segments S(bytes, G, es);
  std::optional<SlotRing> slots;  // what the rank behind sends
  if (v + 1 < P) slots.emplace(a, S.len(0), G);
  uint8_t* acc = (v > 0 && v + 1 < P) ? a.scratch(bytes) : a.recv;
  for (int g = 0; g < G; ++g) {
    size_t off = S.off(g), len = S.len(g);
    int have = -1;
    const uint8_t* out = a.send + off;
    if (v + 1 < P) {
      int free = -1;
      uint8_t* slot = slots->next(&free);
      int rcv = s.recv(from, slot, len, {free});
      have = s.reduce(acc + off, a.send + off, slot, len, {rcv});
      slots->readBy(have);
      out = acc + off;
    } else if (v == 0 && a.send != a.recv) {  // a root with no one behind it (P == 1)
      have = s.copy(a.recv + off, a.send + off, len);
    }
    if (v > 0) {
      s.send(toward, out, len, {have});
    } else if (isAvg(a)) {
      s.divide(a.recv + off, len, {have});
    }
  }
}

// ----------------------------------------------------------------------------- alltoall

void alltoallPairwise(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  const size_t blk = a.count * typeSize(a.type);
  const uint8_t* src = a.send;
  int ready = -1;
  if (a.send == a.recv) {  // in place: send from a copy
    uint8_t* copy = a.scratch(blk * static_cast<size_t>(P));
    ready = s.copy(copy, a.send, blk * static_cast<size_t>(P));
    src = copy;
  }
  auto u = [](int x) { return static_cast<size_t>(x); };
  s.copy(a.recv + u(r) * blk, src + u(r) * blk, blk, {ready});
  for (int i = 1; i < P; ++i) {
    int to = mod(r + i, P), from = mod(r - i, P);
    s.send(to, src + u(to) * blk, blk, {ready});
    s.recv(from, a.recv + u(from) * blk, blk, {ready});
  }
}

// ------------------------------------------------------------------------------ barrier

void barrierDissemination(const BuildArgs& a, Schedule& s) {
  const int P = a.size, r = a.rank;
  int prev = -1;
  for (int d = 1; d < P; d <<= 1) {
    s.send(mod(r + d, P), nullptr, 0, {prev});
    prev = s.recv(mod(r - d, P), nullptr, 0);
  }
}

/// Ranks that disagree on a tree's root build different trees: one may wait for a parent
/// that never sends, while the others finish. An empty message round the ring (each rank
/// to its right) makes every rank hear from its left neighbour, and the descriptor that
/// rides on a pair's first message then shows any disagreement somewhere on the ring.
void ringCheck(const BuildArgs& a, Schedule& s) {
  if (a.size <= 2) return;  // the tree joins both ranks already
  s.send(mod(a.rank + 1, a.size), nullptr, 0);
  s.recv(mod(a.rank - 1, a.size), nullptr, 0);
}

}  // namespace

Status buildSchedule(Algo algo, const BuildArgs& a, Schedule& out) {
  const size_t es = typeSize(a.type);
  auto wrong = [&] {
    return Status(Code::kInvalidArgument,
                  std::string(collName(a.kind)) + " has no algorithm " + std::string(algoName(algo)));
  };
  if (a.size == 1 || algo == Algo::kLocal) {
    switch (a.kind) {
      case CollKind::kAllreduce: case CollKind::kBroadcast: case CollKind::kReduce:
      case CollKind::kAllgather: case CollKind::kReduceScatter: case CollKind::kAlltoall:
        allreduceLocal(a, out, a.count * es);
        return Status::ok();
      case CollKind::kBarrier:
        return Status::ok();
      default:
        return wrong();
    }
  }
  switch (a.kind) {
    case CollKind::kAllreduce:
      if (algo == Algo::kRing) allreduceRing(a, out);
      else if (algo == Algo::kRecursiveDoubling) allreduceRecursiveDoubling(a, out);
      else if (algo == Algo::kRabenseifner) allreduceRabenseifner(a, out);
      else return wrong();
      return Status::ok();
    case CollKind::kAllgather:
      if (algo == Algo::kRing) allgatherRing(a, out);
      else if (algo == Algo::kRecursiveDoubling) allgatherRecursiveDoubling(a, out);
      else return wrong();
      return Status::ok();
    case CollKind::kReduceScatter:
      if (algo != Algo::kRing) return wrong();
      reduceScatterRing(a, out);
      return Status::ok();
    case CollKind::kBroadcast:
      if (algo == Algo::kBinomial) broadcastBinomial(a, out);
      else if (algo == Algo::kChain) broadcastChain(a, out);
      else return wrong();
      ringCheck(a, out);
      return Status::ok();
    case CollKind::kReduce:
      if (algo == Algo::kBinomial) reduceBinomial(a, out);
      else if (algo == Algo::kChain) reduceChain(a, out);
      else return wrong();
      ringCheck(a, out);
      return Status::ok();
    case CollKind::kAlltoall:
      if (algo != Algo::kPairwise) return wrong();
      alltoallPairwise(a, out);
      return Status::ok();
    case CollKind::kBarrier:
      if (algo != Algo::kDissemination) return wrong();
      barrierDissemination(a, out);
      return Status::ok();
    default:
      return wrong();
  }
}

}  // namespace braid::coll
