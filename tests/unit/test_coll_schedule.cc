// The collectives' schedules (lib/coll/algorithms.cc) run by a simulator of every rank at
// once, under random timings: a send's buffer is read only when its message is matched, at a
// random later moment, and ready tasks run in random order. A missing dependency (a slot
// written again before its reduction read it, a block sent before it was reduced) shows up
// as a wrong result under some order, where real processes might never hit it. Also: how
// much scratch each algorithm asks for.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "coll/reduce.h"
#include "coll/schedule.h"

using namespace braid::coll;

namespace {

struct Rank {
  std::vector<int32_t> send, recv;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> scratch;
  size_t scratchBytes = 0;
  Schedule sched;
  std::vector<std::deque<int>> sendQ, recvQ;  // per peer, list order, not yet posted
  std::vector<std::deque<int>> sent, posted;  // per peer, posted and not yet matched
};

bool depsDone(const Schedule& s, const Task& t) {
  for (int d : t.deps)
    if (s.tasks()[static_cast<size_t>(d)].state != Task::State::kDone) return false;
  return true;
}

/// Runs one call of `kind` with `algo` on `P` simulated ranks, rank r contributing
/// send[i] = (r + 1) * 1000 + i (int32 sum: exact). Returns the ranks after the call.
std::vector<Rank> simulate(CollKind kind, Algo algo, int P, size_t count, size_t segment,
                           uint32_t seed, int root = 0) {
  std::vector<Rank> ranks(static_cast<size_t>(P));
  const size_t sendCount = kind == CollKind::kReduceScatter ? count * static_cast<size_t>(P) : count;
  for (int r = 0; r < P; ++r) {
    Rank& k = ranks[static_cast<size_t>(r)];
    k.send.resize(sendCount);
    for (size_t i = 0; i < sendCount; ++i) k.send[i] = (r + 1) * 1000 + static_cast<int32_t>(i);
    k.recv.assign(count, -1);
    BuildArgs a;
    a.kind = kind;
    a.send = reinterpret_cast<const uint8_t*>(k.send.data());
    a.recv = reinterpret_cast<uint8_t*>(k.recv.data());
    a.count = count;
    a.type = DataType::kInt32;
    a.op = ReduceOp::kSum;
    a.root = root;
    a.rank = r;
    a.size = P;
    a.segmentBytes = segment;
    a.scratch = [&k](size_t bytes) {
      k.scratch.push_back(std::make_unique<std::vector<uint8_t>>(bytes, 0xEE));
      k.scratchBytes += bytes;
      return k.scratch.back()->data();
    };
    REQUIRE(buildSchedule(algo, a, k.sched).isOk());
    k.sendQ.resize(static_cast<size_t>(P));
    k.recvQ.resize(static_cast<size_t>(P));
    k.sent.resize(static_cast<size_t>(P));
    k.posted.resize(static_cast<size_t>(P));
    for (size_t id = 0; id < k.sched.tasks().size(); ++id) {
      const Task& t = k.sched.tasks()[id];
      if (t.kind == Task::Kind::kSend) k.sendQ[static_cast<size_t>(t.peer)].push_back(static_cast<int>(id));
      if (t.kind == Task::Kind::kRecv) k.recvQ[static_cast<size_t>(t.peer)].push_back(static_cast<int>(id));
    }
  }
  std::mt19937 rng(seed);
  // Each action: 0 post, 1 match (copy a message), 2 compute; (rank, peer or task).
  struct Action {
    int what, rank, arg;
    bool isSend;
  };
  for (;;) {
    std::vector<Action> can;
    for (int r = 0; r < P; ++r) {
      Rank& k = ranks[static_cast<size_t>(r)];
      for (int p = 0; p < P; ++p) {
        auto pu = static_cast<size_t>(p);
        if (!k.sendQ[pu].empty() && depsDone(k.sched, k.sched.tasks()[static_cast<size_t>(k.sendQ[pu].front())]))
          can.push_back({0, r, p, true});
        if (!k.recvQ[pu].empty() && depsDone(k.sched, k.sched.tasks()[static_cast<size_t>(k.recvQ[pu].front())]))
          can.push_back({0, r, p, false});
        // Rank r's oldest send to p meets p's oldest posted receive from r.
        Rank& q = ranks[pu];
        if (!k.sent[pu].empty() && !q.posted[static_cast<size_t>(r)].empty()) can.push_back({1, r, p, true});
      }
      for (size_t id = 0; id < k.sched.tasks().size(); ++id) {
        const Task& t = k.sched.tasks()[id];
        if (t.kind != Task::Kind::kSend && t.kind != Task::Kind::kRecv &&
            t.state == Task::State::kWaiting && depsDone(k.sched, t))
          can.push_back({2, r, static_cast<int>(id), false});
      }
    }
    if (can.empty()) break;
    Action a = can[std::uniform_int_distribution<size_t>(0, can.size() - 1)(rng)];
    Rank& k = ranks[static_cast<size_t>(a.rank)];
    auto& tasks = k.sched.tasks();
    if (a.what == 0) {
      auto& q = a.isSend ? k.sendQ[static_cast<size_t>(a.arg)] : k.recvQ[static_cast<size_t>(a.arg)];
      int id = q.front();
      q.pop_front();
      tasks[static_cast<size_t>(id)].state = Task::State::kPosted;
      (a.isSend ? k.sent : k.posted)[static_cast<size_t>(a.arg)].push_back(id);
    } else if (a.what == 1) {
      Rank& to = ranks[static_cast<size_t>(a.arg)];
      int sid = k.sent[static_cast<size_t>(a.arg)].front();
      int rid = to.posted[static_cast<size_t>(a.rank)].front();
      k.sent[static_cast<size_t>(a.arg)].pop_front();
      to.posted[static_cast<size_t>(a.rank)].pop_front();
      Task& s = tasks[static_cast<size_t>(sid)];
      Task& r = to.sched.tasks()[static_cast<size_t>(rid)];
      REQUIRE(s.bytes == r.bytes);
      if (s.bytes > 0) std::memcpy(r.dst, s.src, s.bytes);
      s.state = Task::State::kDone;
      r.state = Task::State::kDone;
    } else {
      Task& t = tasks[static_cast<size_t>(a.arg)];
      const size_t n = t.bytes / sizeof(int32_t);
      if (t.kind == Task::Kind::kReduce) reduce(t.dst, t.src, t.src2, n, DataType::kInt32, ReduceOp::kSum);
      if (t.kind == Task::Kind::kCopy && t.bytes > 0 && t.dst != t.src) std::memmove(t.dst, t.src, t.bytes);
      if (t.kind == Task::Kind::kDivide) divideBy(t.dst, n, DataType::kInt32, P);
      t.state = Task::State::kDone;
    }
  }
  for (auto& k : ranks)
    for (const Task& t : k.sched.tasks()) REQUIRE(t.state == Task::State::kDone);  // no deadlock
  return ranks;
}

/// The sum over ranks of element i of what each sent.
int32_t sumAt(int P, size_t i) {
  int32_t s = 0;
  for (int r = 0; r < P; ++r) s += (r + 1) * 1000 + static_cast<int32_t>(i);
  return s;
}

}  // namespace

TEST_CASE("coll schedules: reducing algorithms are exact under any timing of sends, receives and reductions",
          "[coll][schedule]") {
  struct Case {
    CollKind kind;
    Algo algo;
  };
  const Case cases[] = {
      {CollKind::kAllreduce, Algo::kRing},          {CollKind::kAllreduce, Algo::kRabenseifner},
      {CollKind::kAllreduce, Algo::kRecursiveDoubling}, {CollKind::kReduceScatter, Algo::kRing},
      {CollKind::kReduce, Algo::kChain},             {CollKind::kReduce, Algo::kBinomial}};
  for (const Case& c : cases) {
    for (int P : {2, 3, 4, 5}) {
      // Odd counts and 64-byte segments: uneven blocks, several segments each, so slots
      // are used again within one call.
      for (size_t count : {size_t{1}, size_t{97}, size_t{613}}) {
        for (uint32_t seed = 1; seed <= 12; ++seed) {
          INFO(std::string(collName(c.kind)) << " " << algoName(c.algo) << " P=" << P
                                             << " count=" << count << " seed=" << seed);
          const int root = c.kind == CollKind::kReduce ? static_cast<int>(seed) % P : 0;
          auto ranks = simulate(c.kind, c.algo, P, count, 64, seed, root);
          size_t wrong = 0;
          for (int r = 0; r < P; ++r) {
            const auto& got = ranks[static_cast<size_t>(r)].recv;
            if (c.kind == CollKind::kReduce && r != root) continue;
            for (size_t i = 0; i < count; ++i) {
              size_t global = c.kind == CollKind::kReduceScatter ? static_cast<size_t>(r) * count + i : i;
              if (got[i] != sumAt(P, global)) ++wrong;
            }
          }
          REQUIRE(wrong == 0);
        }
      }
    }
  }
}

TEST_CASE("coll schedules: a large ring allreduce receives into a few segment slots, not a block-sized scratch",
          "[coll][schedule]") {
  // 8 MiB of int32 on 4 ranks with 256 KiB segments: blocks of 2 MiB in 8 segments. The
  // received segments wait in 4 slots (1 MiB); a block-sized scratch was 2 blocks (4 MiB),
  // at 64 MiB 32 MiB per rank, which also sent every received byte out to memory and back.
  const size_t count = 2 * 1024 * 1024, segment = 256 * 1024;
  auto ranks = simulate(CollKind::kAllreduce, Algo::kRing, 4, count, segment, 7);
  for (const Rank& k : ranks) {
    CHECK(k.scratchBytes == 4 * segment);
    for (size_t i = 0; i < count; i += 4099) REQUIRE(k.recv[i] == sumAt(4, i));
  }
  // The reduce-scatter ring: slots for what arrives, two blocks for this rank's partials.
  auto rs = simulate(CollKind::kReduceScatter, Algo::kRing, 4, count / 4, segment, 7);
  for (const Rank& k : rs) CHECK(k.scratchBytes == 4 * segment + 2 * (count / 4) * sizeof(int32_t));
}
