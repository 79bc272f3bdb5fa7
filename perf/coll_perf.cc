// braid_coll_perf — nccl-tests' benchmarks over braid::coll::Communicator (host memory):
//
//   braidrun -n 4 braid_coll_perf all_reduce -b 8 -e 64M -f 2
//   braidrun -n 4 braid_all_reduce_perf -b 8 -e 64M -f 2      (the same, through a symlink)
//
// The collective is the first positional argument, or comes from the program's name
// (braid_<collective>_perf). Flags, defaults, columns and footer are nccl-tests' (see
// perf/README.md): per size and per type/op, the mean time of `iters` back-to-back blocking
// calls, combined across ranks (-a), algbw = S / time (GB/s = 1e9 B/s) and busbw = algbw x
// the collective's factor, out-of-place then in-place. With -c N, N more calls per half are
// checked element by element against a serial computation of the expected result from
// every rank's generated input; the wrong elements are summed across ranks.
//
// Only the public API (braid/coll.h, braid/transport.h). Only rank 0 prints; every rank
// prints an error it sees and exits 1. Exit codes: 0 ok; 1 a failed collective or wrong
// values ("# Out of bounds values : N FAILED"); 2 a bad command line.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "braid/coll.h"
#include "braid/info.h"
#include "braid/status.h"
#include "braid/transport.h"
#include "perf_common.h"

namespace braid::tools {
namespace {

using coll::Communicator;
using coll::DataType;
using coll::ReduceOp;
using nlohmann::json;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// ------------------------------------------------------------------ collectives

enum class Coll {
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kBroadcast,
  kReduce,
  kAllToAll,
  kSendRecv
};

struct CollInfo {
  Coll coll;
  std::string_view name;      // as given on the command line / in braid_<name>_perf
  std::string_view testName;  // nccl-tests' executable name
  bool reduces;               // has an op
  bool rooted;                // has a root
};

constexpr CollInfo kColls[] = {
    {Coll::kAllReduce, "all_reduce", "all_reduce_perf", true, false},
    {Coll::kAllGather, "all_gather", "all_gather_perf", false, false},
    {Coll::kReduceScatter, "reduce_scatter", "reduce_scatter_perf", true, false},
    {Coll::kBroadcast, "broadcast", "broadcast_perf", false, true},
    {Coll::kReduce, "reduce", "reduce_perf", true, true},
    {Coll::kAllToAll, "alltoall", "alltoall_perf", false, false},
    {Coll::kSendRecv, "sendrecv", "sendrecv_perf", false, false},
};

std::string withoutUnderscores(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// "all_reduce", "allreduce", "all-reduce", "all_to_all" ...
const CollInfo* findColl(std::string_view name) {
  std::string key = withoutUnderscores(name);
  for (const auto& c : kColls)
    if (withoutUnderscores(c.name) == key) return &c;
  return nullptr;
}

/// The collective a braid_<name>_perf symlink names, if argv[0] is one.
const CollInfo* collFromProgramName(std::string_view argv0) {
  auto slash = argv0.rfind('/');
  std::string_view base = slash == std::string_view::npos ? argv0 : argv0.substr(slash + 1);
  constexpr std::string_view kPre = "braid_", kSuf = "_perf";
  if (base.size() <= kPre.size() + kSuf.size() || base.substr(0, kPre.size()) != kPre ||
      base.substr(base.size() - kSuf.size()) != kSuf)
    return nullptr;
  return findColl(base.substr(kPre.size(), base.size() - kPre.size() - kSuf.size()));
}

/// Element counts of one row, as nccl-tests' getCollByteCount: per-rank blocks for
/// all_gather, reduce_scatter and alltoall.
struct Shape {
  size_t sendCount = 0;       // elements in the send buffer
  size_t recvCount = 0;       // elements in the recv buffer
  size_t paramCount = 0;      // the count passed to the call (the row's "count")
  size_t inplaceSendOff = 0;  // in-place: send = buffer + this (elements)
  size_t inplaceRecvOff = 0;  // in-place: recv = buffer + this
  size_t inplaceCount = 0;    // elements of the in-place buffer
  double algBytes = 0;        // S of algbw = S / t
  double busFactor = 1;
};

Shape shapeOf(Coll c, size_t bytes, size_t typeSize, int nranks, int rank) {
  Shape s;
  const size_t n = static_cast<size_t>(nranks), r = static_cast<size_t>(rank);
  const size_t count = bytes / typeSize;
  const size_t block = count / n;
  switch (c) {
    case Coll::kAllReduce:
      s.sendCount = s.recvCount = s.paramCount = s.inplaceCount = count;
      s.busFactor = nranks > 1 ? 2.0 * (nranks - 1) / nranks : 0.0;
      break;
    case Coll::kAllGather:
      s.sendCount = s.paramCount = block;
      s.recvCount = s.inplaceCount = block * n;
      s.inplaceSendOff = r * block;
      s.busFactor = static_cast<double>(nranks - 1) / nranks;
      break;
    case Coll::kReduceScatter:
      s.sendCount = s.inplaceCount = block * n;
      s.recvCount = s.paramCount = block;
      s.inplaceRecvOff = r * block;
      s.busFactor = static_cast<double>(nranks - 1) / nranks;
      break;
    case Coll::kAllToAll:
      s.sendCount = s.recvCount = s.inplaceCount = block * n;
      s.paramCount = block;
      s.busFactor = static_cast<double>(nranks - 1) / nranks;
      break;
    case Coll::kBroadcast:
    case Coll::kReduce:
      s.sendCount = s.recvCount = s.paramCount = s.inplaceCount = count;
      break;
    case Coll::kSendRecv:
      // No in-place form exists for a ring exchange (the recv would overwrite what is being
      // sent): the in-place half uses one allocation, the send block then the recv block.
      s.sendCount = s.recvCount = s.paramCount = count;
      s.inplaceCount = 2 * count;
      s.inplaceRecvOff = count;
      break;
  }
  s.algBytes = static_cast<double>(std::max(s.sendCount, s.recvCount) * typeSize);
  return s;
}

// ------------------------------------------------------------------ fp16 / bf16

/// Rounds a double to a binary float of `expBits` / `mantBits` (IEEE layout, nearest even,
/// with subnormals and infinities): 5/10 is fp16, 8/7 is bf16.
uint32_t encodeSmallFloat(double x, int expBits, int mantBits) {
  const uint32_t signBit = 1u << (expBits + mantBits);
  const int bias = (1 << (expBits - 1)) - 1;
  const uint32_t expMax = (1u << expBits) - 1;
  const uint32_t inf = expMax << mantBits;
  if (std::isnan(x)) return inf | (1u << (mantBits - 1));
  uint32_t sign = std::signbit(x) ? signBit : 0;
  double a = std::fabs(x);
  if (a == 0) return sign;
  int e2 = 0;
  std::frexp(a, &e2);  // a = f * 2^e2, f in [0.5, 1)
  int e = e2 - 1;      // a = m * 2^e, m in [1, 2)
  if (e < 1 - bias) {
    // Subnormal: units of 2^(1 - bias - mantBits). nearbyint rounds half to even.
    double units = std::nearbyint(std::ldexp(a, bias - 1 + mantBits));
    return sign | static_cast<uint32_t>(units);  // 2^mantBits units carry into the exponent
  }
  double frac = std::nearbyint(std::ldexp(std::ldexp(a, -e) - 1.0, mantBits));
  if (frac >= std::ldexp(1.0, mantBits)) {
    frac = 0;
    ++e;
  }
  if (e + bias >= static_cast<int>(expMax)) return sign | inf;
  return sign | (static_cast<uint32_t>(e + bias) << mantBits) | static_cast<uint32_t>(frac);
}

double decodeSmallFloat(uint32_t bits, int expBits, int mantBits) {
  const int bias = (1 << (expBits - 1)) - 1;
  const uint32_t expMax = (1u << expBits) - 1;
  const uint32_t mantMask = (1u << mantBits) - 1;
  double sign = (bits >> (expBits + mantBits)) & 1 ? -1.0 : 1.0;
  uint32_t e = (bits >> mantBits) & expMax, m = bits & mantMask;
  if (e == expMax) return m != 0 ? std::nan("") : sign * HUGE_VAL;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), 1 - bias - mantBits);
  return sign * std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -mantBits),
                           static_cast<int>(e) - bias);
}

// ------------------------------------------------------------------ typed access

template <typename T>
T get(const void* p, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(p) + i * sizeof(T), sizeof(T));
  return v;
}
template <typename T>
void put(void* p, size_t i, T v) {
  std::memcpy(static_cast<char*>(p) + i * sizeof(T), &v, sizeof(T));
}

/// Stores `v` (exactly representable, or rounded as the type rounds) as element i.
void storeAs(DataType t, void* p, size_t i, double v) {
  switch (t) {
    case DataType::kInt8:
      put(p, i, static_cast<int8_t>(v));
      break;
    case DataType::kUint8:
      put(p, i, static_cast<uint8_t>(v));
      break;
    case DataType::kInt32:
      put(p, i, static_cast<int32_t>(v));
      break;
    case DataType::kUint32:
      put(p, i, static_cast<uint32_t>(v));
      break;
    case DataType::kInt64:
      put(p, i, static_cast<int64_t>(v));
      break;
    case DataType::kUint64:
      put(p, i, static_cast<uint64_t>(v));
      break;
    case DataType::kFloat16:
      put(p, i, static_cast<uint16_t>(encodeSmallFloat(v, 5, 10)));
      break;
    case DataType::kBfloat16:
      put(p, i, static_cast<uint16_t>(encodeSmallFloat(v, 8, 7)));
      break;
    case DataType::kFloat32:
      put(p, i, static_cast<float>(v));
      break;
    case DataType::kFloat64:
      put(p, i, v);
      break;
  }
}

double loadAs(DataType t, const void* p, size_t i) {
  switch (t) {
    case DataType::kInt8:
      return get<int8_t>(p, i);
    case DataType::kUint8:
      return get<uint8_t>(p, i);
    case DataType::kInt32:
      return get<int32_t>(p, i);
    case DataType::kUint32:
      return get<uint32_t>(p, i);
    case DataType::kInt64:
      return static_cast<double>(get<int64_t>(p, i));
    case DataType::kUint64:
      return static_cast<double>(get<uint64_t>(p, i));
    case DataType::kFloat16:
      return decodeSmallFloat(get<uint16_t>(p, i), 5, 10);
    case DataType::kBfloat16:
      return decodeSmallFloat(get<uint16_t>(p, i), 8, 7);
    case DataType::kFloat32:
      return get<float>(p, i);
    case DataType::kFloat64:
      return get<double>(p, i);
  }
  return 0;
}

/// `v` as the type holds it (the round trip through its storage).
double roundTrip(DataType t, double v) {
  uint64_t tmp = 0;
  storeAs(t, &tmp, 0, v);
  return loadAs(t, &tmp, 0);
}

bool isFloating(DataType t) {
  return t == DataType::kFloat16 || t == DataType::kBfloat16 || t == DataType::kFloat32 ||
         t == DataType::kFloat64;
}
bool isSigned(DataType t) {
  return t == DataType::kInt8 || t == DataType::kInt32 || t == DataType::kInt64 || isFloating(t);
}
/// Mantissa bits (with the implicit one) of a floating type: its relative precision.
int precisionBits(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return 11;
    case DataType::kBfloat16:
      return 8;
    case DataType::kFloat32:
      return 24;
    default:
      return 53;
  }
}
/// The largest integer every partial sum may reach and stay exact in the type.
int64_t exactCap(DataType t) {
  switch (t) {
    case DataType::kInt8:
      return 127;
    case DataType::kUint8:
      return 255;
    case DataType::kFloat16:
      return 2048;
    case DataType::kBfloat16:
      return 256;
    default:
      return int64_t{1} << 20;
  }
}
/// How many ranks may contribute a factor 2 to a product that stays exact.
int maxTwos(DataType t) {
  switch (t) {
    case DataType::kInt8:
      return 6;
    case DataType::kUint8:
      return 7;
    case DataType::kFloat16:
      return 15;
    default:
      return 30;
  }
}

// ------------------------------------------------------------------ check data

/// The inputs of a checked call: element i of rank r's send buffer is value(r, i), small
/// integers chosen per op so that every reduction over every rank is exact in the type
/// (whatever the order of the reduction): sums stay within the type's exact range, products
/// are +-1 with at most maxTwos() factors of 2, averages are of values whose sum is a
/// multiple of the number of ranks.
class Inputs {
 public:
  Inputs(DataType type, ReduceOp op, bool reduces, int nranks, uint64_t seed)
      : type_(type), op_(op), reduces_(reduces), n_(nranks), seed_(seed) {
    int64_t cap = exactCap(type);
    sumRange_ = std::min<int64_t>(1000, cap / nranks);
    avgBase_ = std::min<int64_t>(1000, (cap - nranks) / nranks);
  }

  double value(int rank, size_t i) const {
    uint64_t h = mix(static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull +
                     i * 0xC2B2AE3D27D4EB4Full + seed_);
    if (!reduces_) return static_cast<double>(h % 121) - (isSigned(type_) ? 60 : 0);
    switch (op_) {
      case ReduceOp::kSum: {
        if (sumRange_ <= 0) return 0;
        if (isSigned(type_))
          return static_cast<double>(static_cast<int64_t>(h % (2 * sumRange_ + 1)) - sumRange_);
        return static_cast<double>(h % (sumRange_ + 1));
      }
      case ReduceOp::kProd: {
        double v = (rank < maxTwos(type_) && h % 8 == 0) ? 2 : 1;
        if (isSigned(type_) && ((h >> 8) & 1)) v = -v;
        return v;
      }
      case ReduceOp::kMin:
      case ReduceOp::kMax:
        return static_cast<double>(h % 121) - (isSigned(type_) ? 60 : 0);
      case ReduceOp::kAvg: {
        // base(i) everywhere, + (n - 1) on one rank and - 1 on the others: the sum is n x base.
        if (avgBase_ < 1) return 0;
        uint64_t hb = mix(i * 0xC2B2AE3D27D4EB4Full + seed_);
        double base = 1 + static_cast<double>(hb % static_cast<uint64_t>(avgBase_));
        return base + (static_cast<size_t>(rank) == i % static_cast<size_t>(n_) ? n_ - 1 : -1);
      }
    }
    return 0;
  }

  /// The reduction over every rank of value(r, i), in double, as the type holds it.
  double reduced(size_t i) const {
    double acc = value(0, i);
    for (int r = 1; r < n_; ++r) {
      double v = value(r, i);
      switch (op_) {
        case ReduceOp::kSum:
        case ReduceOp::kAvg:
          acc += v;
          break;
        case ReduceOp::kProd:
          acc *= v;
          break;
        case ReduceOp::kMin:
          acc = std::min(acc, v);
          break;
        case ReduceOp::kMax:
          acc = std::max(acc, v);
          break;
      }
    }
    if (op_ == ReduceOp::kAvg) acc = isFloating(type_) ? acc / n_ : std::trunc(acc / n_);
    return roundTrip(type_, acc);
  }

  void fill(void* buf, size_t offset, size_t count, int rank, size_t firstIndex) const {
    for (size_t k = 0; k < count; ++k) storeAs(type_, buf, offset + k, value(rank, firstIndex + k));
  }

  /// Whether element `got` is `want`: exact, except an average in a floating type (the
  /// library may multiply by 1/n), which may be 1 ulp off.
  bool matches(double got, double want) const {
    if (got == want) return true;
    if (op_ == ReduceOp::kAvg && reduces_ && isFloating(type_))
      return std::fabs(got - want) <= std::ldexp(std::fabs(want), 1 - precisionBits(type_));
    return false;
  }

 private:
  static uint64_t mix(uint64_t x) {  // splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }
  DataType type_;
  ReduceOp op_;
  bool reduces_;
  int n_;
  uint64_t seed_;
  int64_t sumRange_ = 0;
  int64_t avgBase_ = 0;
};

// ------------------------------------------------------------------ options

struct Options {
  const CollInfo* coll = nullptr;
  uint64_t minBytes = 32ull << 20;
  uint64_t maxBytes = 32ull << 20;
  uint64_t stepFactor = 1;
  uint64_t stepBytes = 1ull << 20;
  std::string op = "sum";
  std::string datatype = "float";
  int root = 0;
  int iters = 20;
  int warmupIters = 1;
  int aggIters = 1;
  int check = 1;
  int average = 1;
  std::string jsonFile;
  int blocking = 0;
  int graph = 0;
  int timeoutSec = 0;
  std::vector<DataType> types;
  std::vector<ReduceOp> ops;  // empty for a collective without an op
};

CLI::Validator sizeValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (!perf::parseSize(s)) return "'" + s + "' is not a size (examples: 8, 64K, 32M, 1G)";
        return {};
      },
      "SIZE");
}

/// Parses argv. nullopt to go on, else the exit code (0 after --help, 2 on a bad line).
std::optional<int> parseCommandLine(int argc, char** argv, Options& o) {
  const CollInfo* fromName = collFromProgramName(argv[0]);
  std::string program = fromName ? fmt::format("braid_{}_perf", fromName->name) : "braid_coll_perf";
  CLI::App app{
      "nccl-tests' collective benchmarks over braid::coll::Communicator (host memory). "
      "Start the ranks with braidrun (braidrun -n 4 " +
          program +
          " ...), torchrun, "
          "srun or mpirun; alone it runs one rank.",
      program};
  app.failure_message(CLI::FailureMessage::help);
  app.set_version_flag("-V,--version", program + " (braid " + versionString() + ")");
  app.get_formatter()->column_width(30);

  std::string collName, minArg, maxArg, stepArg;
  if (fromName == nullptr)
    app.add_option("collective", collName,
                   "all_reduce, all_gather, reduce_scatter, broadcast, reduce, alltoall or "
                   "sendrecv")
        ->required();
  app.add_option("-b,--minbytes", minArg, "smallest size in bytes; K, M, G suffixes [32M]")
      ->check(sizeValidator());
  app.add_option("-e,--maxbytes", maxArg, "largest size in bytes [32M]")->check(sizeValidator());
  app.add_option("-f,--stepfactor", o.stepFactor, "multiply the size by this each step")
      ->check(CLI::Range(uint64_t{2}, uint64_t{1} << 20));
  app.add_option("-i,--stepbytes", stepArg, "add this to the size each step (without -f) [1M]")
      ->check(sizeValidator());
  app.add_option("-o,--op", o.op, "sum, prod, min, max, avg or all")->capture_default_str();
  app.add_option("-d,--datatype", o.datatype,
                 "int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double, or all")
      ->capture_default_str();
  app.add_option("-r,--root", o.root, "root of broadcast and reduce (-1: every rank in turn)")
      ->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed calls per size")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  app.add_option("-w,--warmup_iters", o.warmupIters, "untimed calls before each size's timing")
      ->check(CLI::Range(0, 100000000))
      ->capture_default_str();
  app.add_option("-m,--agg_iters", o.aggIters, "calls per timed iteration")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("-c,--check", o.check, "checked calls per size and half (0: no check)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("-a,--average", o.average,
                 "time reported: 0 rank 0's, 1 the mean over ranks, 2 the minimum, 3 the maximum")
      ->check(CLI::Range(0, 3))
      ->capture_default_str();
  app.add_option("-J,--output_file", o.jsonFile, "write the parameters and every row as JSON");
  app.add_option("-T,--timeout", o.timeoutSec,
                 "seconds: a stalled peer fails the run (CommOptions::timeoutMs; default "
                 "BRAID_TIMEOUT_MS)")
      ->check(CLI::Range(1, 24 * 3600));
  app.add_option("-z,--blocking", o.blocking,
                 "accepted for nccl-tests' command lines; every call here is blocking already")
      ->check(CLI::Range(0, 1));
  app.add_option("-G,--cudagraph", o.graph, "accepted for nccl-tests' command lines; must be 0")
      ->check(CLI::Range(0, 0));
  int ngpus = 1, nthreads = 1;
  app.add_option("-g,--ngpus", ngpus, "one rank per process: must be 1 (use braidrun -n)")
      ->check(CLI::Range(1, 1));
  app.add_option("-t,--nthreads", nthreads, "one rank per process: must be 1 (use braidrun -n)")
      ->check(CLI::Range(1, 1));

  auto usage = [&](const std::string& message) {
    std::fprintf(stderr, "%s: %s\n%s", program.c_str(), message.c_str(), app.help().c_str());
    return std::optional<int>(kExitUsage);
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  o.coll = fromName ? fromName : findColl(collName);
  if (o.coll == nullptr) return usage("unknown collective '" + collName + "'");
  if (!minArg.empty()) o.minBytes = *perf::parseSize(minArg);
  if (!maxArg.empty()) o.maxBytes = *perf::parseSize(maxArg);
  if (!stepArg.empty()) o.stepBytes = *perf::parseSize(stepArg);
  if (o.maxBytes < o.minBytes) return usage("-e (maxbytes) is below -b (minbytes)");
  if (o.stepFactor <= 1 && o.stepBytes == 0 && o.maxBytes > o.minBytes)
    return usage("-i 0 would never reach -e");
  if (o.stepFactor > 1 && o.minBytes == 0 && o.maxBytes > 0)
    return usage("-f with -b 0 would never reach -e");
  if (o.maxBytes > (uint64_t{1} << 40)) return usage("-e above 1T");

  if (o.datatype == "all") {
    for (int t = 0; t < coll::kDataTypeCount; ++t) o.types.push_back(static_cast<DataType>(t));
  } else {
    auto t = coll::parseDataType(o.datatype);
    if (!t) return usage("-d: " + t.status().message());
    o.types.push_back(*t);
  }
  if (o.coll->reduces) {
    if (o.op == "all") {
      for (int p = 0; p < coll::kReduceOpCount; ++p) o.ops.push_back(static_cast<ReduceOp>(p));
    } else {
      auto p = coll::parseReduceOp(o.op);
      if (!p) return usage("-o: " + p.status().message());
      o.ops.push_back(*p);
    }
  } else if (o.op != "all") {
    auto p = coll::parseReduceOp(o.op);  // checked even where unused, as nccl-tests does
    if (!p) return usage("-o: " + p.status().message());
  }
  if (o.root < -1) return usage("-r: a rank, or -1 for every rank in turn");
  return std::nullopt;
}

/// Sizes in bytes, nccl-tests' loop: minBytes, then x stepFactor (or + stepBytes) up to
/// maxBytes.
std::vector<uint64_t> sizeList(const Options& o) {
  std::vector<uint64_t> sizes;
  for (uint64_t s = o.minBytes; s <= o.maxBytes;) {
    sizes.push_back(s);
    uint64_t next = o.stepFactor > 1 ? s * o.stepFactor : s + o.stepBytes;
    if (next <= s) break;
    s = next;
  }
  return sizes;
}

// ------------------------------------------------------------------ output

/// A number squeezed into `width` characters: 2 decimals if they fit, else 1, else none
/// (as nccl-tests' result columns).
std::string squeeze(double v, int width) {
  for (int decimals : {2, 1, 0}) {
    std::string s = fmt::format("{:>{}.{}f}", v, width, decimals);
    if (static_cast<int>(s.size()) <= width) return s;
  }
  return fmt::format("{:>{}.0f}", v, width);
}

struct Half {
  double timeUs = 0, algbw = 0, busbw = 0;
  /// The median call's time (each timed call is clocked on its own; -a combines the ranks'
  /// medians), and its busbw: Gloo's benchmark reports this statistic.
  double p50Us = 0, busbwP50 = 0;
  int64_t wrong = -1;  // -1: not checked
};

std::string halfColumns(const Half& h) {
  std::string wrong = h.wrong < 0 ? fmt::format("{:>6}", "N/A") : fmt::format("{:>6}", h.wrong);
  return fmt::format("  {}  {}  {}  {}", squeeze(h.timeUs, 7), squeeze(h.algbw, 6),
                     squeeze(h.busbw, 6), wrong);
}

json halfJson(const Half& h) {
  json j = {{"time_us", h.timeUs}, {"algbw", h.algbw}, {"busbw", h.busbw},
            {"time_p50_us", h.p50Us}, {"busbw_p50", h.busbwP50}};
  j["wrong"] = h.wrong < 0 ? json(nullptr) : json(h.wrong);
  return j;
}

// ------------------------------------------------------------------ the run

/// Rank identity gathered on rank 0 for the header (fixed size: exchanged as bytes).
struct RankRecord {
  int64_t pid = 0;
  char host[64] = {};
  char transport[16] = {};
  char rails[168] = {};
};
static_assert(sizeof(RankRecord) == 256);

void copyText(char* dst, size_t cap, std::string_view s) {
  size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

std::string_view transportName(Transport t) {
  switch (t) {
    case Transport::kTcp:
      return "tcp";
    case Transport::kVerbs:
      return "verbs";
    case Transport::kAuto:
      return "none";
  }
  return "?";
}

/// Aligned, zero-filled host buffer (page-aligned, as registrations like).
struct Buffer {
  struct Free {
    void operator()(void* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<char, Free> mem;
  size_t bytes = 0;
  void resize(size_t n) {
    if (n <= bytes && mem) return;
    size_t rounded = std::max<size_t>(4096, (n + 4095) / 4096 * 4096);
    mem.reset(static_cast<char*>(std::aligned_alloc(4096, rounded)));
    if (!mem) {
      std::fprintf(stderr, "braid_coll_perf: cannot allocate %zu bytes\n", rounded);
      std::exit(kExitFailure);
    }
    std::memset(mem.get(), 0, rounded);
    bytes = rounded;
  }
  char* data() { return mem.get(); }
};

class Bench {
 public:
  /// `context`: the transport options the communicator was made with (for the rails shown).
  Bench(const Options& o, Communicator& comm, ContextOptions context)
      : o_(o), comm_(comm), contextOptions_(std::move(context)) {}

  int run() {
    const int n = comm_.size();
    if (o_.root >= n)
      fail(Status(Code::kInvalidArgument, fmt::format("-r {}: there are {} ranks", o_.root, n)));
    auto records = gatherRanks();
    const auto sizes = sizeList(o_);
    if (rank() == 0) printHeader(records);

    // Buffers for the largest size of any type (they only grow).
    std::vector<ReduceOp> ops = o_.ops.empty() ? std::vector<ReduceOp>{ReduceOp::kSum} : o_.ops;
    std::vector<int> roots;
    if (o_.coll->rooted && o_.root == -1)
      for (int r = 0; r < n; ++r) roots.push_back(r);
    else
      roots.push_back(o_.coll->rooted ? o_.root : -1);

    for (DataType type : o_.types) {
      for (ReduceOp op : ops) {
        for (int root : roots) {
          for (uint64_t size : sizes) runRow(type, op, root, size);
        }
      }
    }

    int64_t totalWrong = totalWrong_;
    double avgBus = busCount_ > 0 ? busSum_ / busCount_ : 0.0;
    if (rank() == 0) {
      std::printf("# Out of bounds values : %lld %s\n", static_cast<long long>(totalWrong),
                  totalWrong == 0 ? "OK" : "FAILED");
      std::printf("# Avg bus bandwidth    : %g \n", avgBus);
      std::printf("#\n");
      std::printf("# Collective test concluded: %s\n", std::string(o_.coll->testName).c_str());
      std::fflush(stdout);
      if (!o_.jsonFile.empty()) writeJson(records, avgBus, totalWrong);
    }
    // Nobody leaves before rank 0 has written everything: a launcher ends the job when the
    // first rank exits non-zero. This also lets every rank's last call finish everywhere
    // before any communicator is torn down.
    check(comm_.barrier(), "final barrier");
    return totalWrong == 0 ? 0 : kExitFailure;
  }

 private:
  int rank() const { return comm_.rank(); }

  /// Every rank stops on an error it sees (the others' calls fail within the library's
  /// timeout), without running destructors that could wait for peers.
  [[noreturn]] void fail(const Status& st, std::string_view what = {}) {
    std::fflush(stdout);
    std::fprintf(stderr, "braid_coll_perf: rank %d: %s%s%s\n", rank(), std::string(what).c_str(),
                 what.empty() ? "" : ": ", st.toString().c_str());
    std::fflush(stderr);
    std::_Exit(kExitFailure);
  }
  void check(const Status& st, std::string_view what) {
    if (!st.isOk()) fail(st, what);
  }

  std::vector<RankRecord> gatherRanks() {
    RankRecord mine;
    mine.pid = static_cast<int64_t>(::getpid());
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    copyText(mine.host, sizeof mine.host, host);
    Transport t = comm_.transport();
    copyText(mine.transport, sizeof mine.transport, transportName(t));
    std::string rails;
    if (auto ctx = Context::create(contextOptions_)) {
      for (const auto& rail : (*ctx)->rails()) {
        if (t != Transport::kAuto && rail.transport != t) continue;
        if (!rails.empty()) rails += ',';
        rails += rail.name;
      }
    }
    copyText(mine.rails, sizeof mine.rails, rails.empty() ? "-" : rails);
    std::vector<RankRecord> all(static_cast<size_t>(comm_.size()));
    check(comm_.allgather(&mine, all.data(), sizeof(RankRecord), DataType::kUint8),
          "allgather of the ranks' hosts");
    return all;
  }

  void printHeader(const std::vector<RankRecord>& records) {
    uint64_t step = o_.stepFactor > 1 ? o_.stepFactor : o_.stepBytes;
    std::printf(
        "# nThread 1 nGpus 1 minBytes %llu maxBytes %llu step: %llu(%s) warmup iters: %d "
        "iters: %d agg iters: %d validation: %d graph: %d\n",
        static_cast<unsigned long long>(o_.minBytes), static_cast<unsigned long long>(o_.maxBytes),
        static_cast<unsigned long long>(step), o_.stepFactor > 1 ? "factor" : "bytes",
        o_.warmupIters, o_.iters, o_.aggIters, o_.check > 0 ? 1 : 0, o_.graph);
    if (o_.blocking != 0)
      std::printf("# Blocking: every call is blocking here; -z changes nothing\n");
    std::printf("#\n");
    for (size_t r = 0; r < records.size(); ++r)
      std::printf("#  Rank %2zu Group  0 Pid %6lld on %10s transport %s rails %s\n", r,
                  static_cast<long long>(records[r].pid), records[r].host, records[r].transport,
                  records[r].rails);
    std::printf("#\n");
    std::printf(
        "#                                                              out-of-place      "
        "                 in-place          \n");
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "size",
                "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
                "algbw", "busbw", "#wrong");
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "(B)",
                "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
                "(GB/s)", "");
    std::fflush(stdout);
  }

  /// One call of the collective (blocking) on buffers (send, recv).
  Status call(const Shape& s, DataType type, ReduceOp op, int root, const void* send, void* recv) {
    switch (o_.coll->coll) {
      case Coll::kAllReduce:
        return comm_.allreduce(send, recv, s.paramCount, type, op);
      case Coll::kAllGather:
        return comm_.allgather(send, recv, s.paramCount, type);
      case Coll::kReduceScatter:
        return comm_.reduceScatter(send, recv, s.paramCount, type, op);
      case Coll::kBroadcast:
        return comm_.broadcast(send, recv, s.paramCount, type, root);
      case Coll::kReduce:
        return comm_.reduce(send, recv, s.paramCount, type, op, root);
      case Coll::kAllToAll:
        return comm_.alltoall(send, recv, s.paramCount, type);
      case Coll::kSendRecv: {
        const int n = comm_.size();
        const int next = (rank() + 1) % n, prev = (rank() - 1 + n) % n;
        auto rq = comm_.irecv(recv, s.paramCount, type, prev);
        if (!rq) return rq.status();
        auto sq = comm_.isend(send, s.paramCount, type, next);
        if (!sq) return sq.status();
        Status st = sq->wait();
        Status rs = rq->wait();
        return st.isOk() ? rs : st;
      }
    }
    return Status(Code::kInternal, "unknown collective");
  }

  /// Combines a per-rank time across ranks as -a asks.
  double combineTime(double seconds) {
    double in = seconds, out = 0;
    const int n = comm_.size();
    switch (o_.average) {
      case 0:
        check(comm_.broadcast(&in, &out, 1, DataType::kFloat64, 0), "broadcast of the time");
        return out;
      case 2:
        check(comm_.allreduce(&in, &out, 1, DataType::kFloat64, ReduceOp::kMin),
              "allreduce of the time");
        return out;
      case 3:
        check(comm_.allreduce(&in, &out, 1, DataType::kFloat64, ReduceOp::kMax),
              "allreduce of the time");
        return out;
      default:
        check(comm_.allreduce(&in, &out, 1, DataType::kFloat64, ReduceOp::kSum),
              "allreduce of the time");
        return out / n;
    }
  }

  int64_t sumAcrossRanks(int64_t v) {
    int64_t out = 0;
    check(comm_.allreduce(&v, &out, 1, DataType::kInt64, ReduceOp::kSum),
          "allreduce of the wrong-element count");
    return out;
  }

  /// Fills what a call reads with this rank's inputs (element k of the send buffer is
  /// value(rank, k)) and poisons what it writes, so that an element the call leaves alone
  /// cannot pass for a result. `base` is the in-place buffer, or the send buffer.
  void prepare(const Shape& s, const Inputs& in, bool inPlace, char* base, char* recv, size_t ts) {
    if (inPlace)
      std::memset(base, 0xFF, s.inplaceCount * ts);
    else
      std::memset(recv, 0xFF, s.recvCount * ts);
    in.fill(inPlace ? base + s.inplaceSendOff * ts : base, 0, s.sendCount, rank(), 0);
  }

  /// Wrong elements of this rank's output after a checked call.
  int64_t verify(const Shape& s, DataType type, const Inputs& in, int root, const char* out) {
    const int n = comm_.size();
    const size_t count = s.paramCount;
    int64_t wrong = 0;
    auto expect = [&](size_t idx, double want) {
      if (!in.matches(loadAs(type, out, idx), want)) ++wrong;
    };
    switch (o_.coll->coll) {
      case Coll::kAllReduce:
        for (size_t i = 0; i < count; ++i) expect(i, in.reduced(i));
        break;
      case Coll::kReduce:
        if (rank() == root)
          for (size_t i = 0; i < count; ++i) expect(i, in.reduced(i));
        break;
      case Coll::kBroadcast:
        for (size_t i = 0; i < count; ++i) expect(i, roundTrip(type, in.value(root, i)));
        break;
      case Coll::kAllGather:
        for (int j = 0; j < n; ++j)
          for (size_t i = 0; i < count; ++i)
            expect(static_cast<size_t>(j) * count + i, roundTrip(type, in.value(j, i)));
        break;
      case Coll::kReduceScatter: {
        size_t base = static_cast<size_t>(rank()) * count;
        for (size_t i = 0; i < count; ++i) expect(i, in.reduced(base + i));
        break;
      }
      case Coll::kAllToAll:
        for (int j = 0; j < n; ++j)
          for (size_t i = 0; i < count; ++i)
            expect(static_cast<size_t>(j) * count + i,
                   roundTrip(type, in.value(j, static_cast<size_t>(rank()) * count + i)));
        break;
      case Coll::kSendRecv: {
        int prev = (rank() - 1 + n) % n;
        for (size_t i = 0; i < count; ++i) expect(i, roundTrip(type, in.value(prev, i)));
        break;
      }
    }
    return wrong;
  }

  /// Times (and checks) one half of a row.
  Half runHalf(const Shape& s, DataType type, ReduceOp op, int root, uint64_t size, bool inPlace) {
    const size_t ts = coll::typeSize(type);
    char* send;
    char* recv;
    if (inPlace) {
      inplace_.resize(s.inplaceCount * ts);
      send = inplace_.data() + s.inplaceSendOff * ts;
      recv = inplace_.data() + s.inplaceRecvOff * ts;
    } else {
      send_.resize(s.sendCount * ts);
      recv_.resize(s.recvCount * ts);
      send = send_.data();
      recv = recv_.data();
    }
    const Inputs in(type, op, o_.coll->reduces, comm_.size(),
                    size * 31 + static_cast<uint64_t>(type));
    // Timed calls run on checked-call inputs (any values do for timing; these stay finite
    // for min, max and prod, and wrap or saturate harmlessly for sums).
    prepare(s, in, inPlace, inPlace ? inplace_.data() : send, recv, ts);

    const char* what = inPlace ? "in-place call" : "out-of-place call";
    for (int w = 0; w < o_.warmupIters; ++w) check(call(s, type, op, root, send, recv), what);
    check(comm_.barrier(), "barrier");
    const int64_t calls = static_cast<int64_t>(o_.iters) * o_.aggIters;
    // Back-to-back calls, each clocked (the first million): the mean is nccl-tests' figure,
    // the median Gloo's.
    const size_t clocked = std::min<size_t>(static_cast<size_t>(calls), size_t{1} << 20);
    std::vector<double> each(clocked);
    const auto t0 = std::chrono::steady_clock::now();
    auto prev = t0;
    for (int64_t k = 0; k < calls; ++k) {
      check(call(s, type, op, root, send, recv), what);
      if (static_cast<size_t>(k) < clocked) {
        const auto now = std::chrono::steady_clock::now();
        each[static_cast<size_t>(k)] = std::chrono::duration<double>(now - prev).count();
        prev = now;
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    double sec = std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(calls);
    std::nth_element(each.begin(), each.begin() + static_cast<std::ptrdiff_t>(each.size() / 2),
                     each.end());
    double p50 = each.empty() ? 0 : each[each.size() / 2];

    Half h;
    sec = combineTime(sec);
    h.timeUs = sec * 1e6;
    h.algbw = sec > 0 ? s.algBytes / 1e9 / sec : 0;
    h.busbw = h.algbw * s.busFactor;
    p50 = combineTime(p50);
    h.p50Us = p50 * 1e6;
    h.busbwP50 = p50 > 0 ? s.algBytes / 1e9 / p50 * s.busFactor : 0;

    if (o_.check > 0) {
      int64_t wrong = 0;
      for (int c = 0; c < o_.check; ++c) {
        prepare(s, in, inPlace, inPlace ? inplace_.data() : send, recv, ts);
        check(call(s, type, op, root, send, recv), what);
        wrong += verify(s, type, in, root, recv);
      }
      h.wrong = sumAcrossRanks(wrong);
      totalWrong_ += h.wrong;
    }
    busSum_ += h.busbw;
    ++busCount_;
    return h;
  }

  void runRow(DataType type, ReduceOp op, int root, uint64_t size) {
    const size_t ts = coll::typeSize(type);
    Shape s = shapeOf(o_.coll->coll, size, ts, comm_.size(), rank());
    Half outOfPlace = runHalf(s, type, op, root, size, /*inPlace=*/false);
    Half inPlace = runHalf(s, type, op, root, size, /*inPlace=*/true);
    std::string opText = o_.coll->reduces ? std::string(coll::opName(op)) : "none";
    size_t rowBytes = std::max(s.sendCount, s.recvCount) * ts;
    if (rank() == 0) {
      std::printf("%12zu  %12zu  %8s  %6s  %6d%s%s\n", rowBytes, s.paramCount,
                  std::string(coll::typeName(type)).c_str(), opText.c_str(), root,
                  halfColumns(outOfPlace).c_str(), halfColumns(inPlace).c_str());
      std::fflush(stdout);
      rows_.push_back({{"collective", o_.coll->name},
                       {"size", rowBytes},
                       {"count", s.paramCount},
                       {"type", coll::typeName(type)},
                       {"op", opText},
                       {"root", root},
                       {"out_of_place", halfJson(outOfPlace)},
                       {"in_place", halfJson(inPlace)}});
    }
  }

  void writeJson(const std::vector<RankRecord>& records, double avgBus, int64_t totalWrong) {
    json ranks = json::array();
    for (size_t r = 0; r < records.size(); ++r)
      ranks.push_back({{"rank", r},
                       {"host", records[r].host},
                       {"pid", records[r].pid},
                       {"transport", records[r].transport},
                       {"rails", records[r].rails}});
    json types = json::array(), ops = json::array();
    for (DataType t : o_.types) types.push_back(coll::typeName(t));
    for (ReduceOp p : o_.ops) ops.push_back(coll::opName(p));
    json doc = {
        {"tool", "braid_coll_perf"},
        {"braid_version", versionString()},
        {"collective", o_.coll->name},
        {"test", o_.coll->testName},
        {"nranks", comm_.size()},
        {"parameters",
         {{"minbytes", o_.minBytes},
          {"maxbytes", o_.maxBytes},
          {"stepfactor", o_.stepFactor},
          {"stepbytes", o_.stepBytes},
          {"op", o_.op},
          {"ops", ops},
          {"datatype", o_.datatype},
          {"datatypes", types},
          {"root", o_.root},
          {"iters", o_.iters},
          {"warmup_iters", o_.warmupIters},
          {"agg_iters", o_.aggIters},
          {"check", o_.check},
          {"average", o_.average},
          {"blocking", o_.blocking},
          {"timeout_s", o_.timeoutSec}}},
        {"ranks", ranks},
        {"rows", rows_},
        {"avg_busbw", avgBus},
        {"out_of_bounds", totalWrong},
        {"ok", totalWrong == 0},
    };
    std::ofstream f(o_.jsonFile);
    f << doc.dump(2) << '\n';
    f.close();
    if (!f) {
      std::fprintf(stderr, "braid_coll_perf: cannot write %s\n", o_.jsonFile.c_str());
      std::fflush(stderr);
      std::_Exit(kExitFailure);
    }
  }

 private:
  const Options& o_;
  Communicator& comm_;
  ContextOptions contextOptions_;
  Buffer send_, recv_, inplace_;
  double busSum_ = 0;
  int busCount_ = 0;
  int64_t totalWrong_ = 0;
  json rows_ = json::array();
};

/// The communicator: from the launcher's environment, or a single rank when none is found
/// (nccl-tests alone runs on one GPU).
Result<std::unique_ptr<Communicator>> joinCommunicator(const coll::CommOptions& options) {
  auto launch = coll::detectLaunch();
  if (!launch && launch.status().code() == Code::kNotFound) {
    coll::TcpStoreOptions so;
    so.host = "127.0.0.1";
    so.serve = true;
    BRAID_ASSIGN_OR_RETURN(auto store, coll::openTcpStore(so));
    return Communicator::create(0, 1, std::move(store), options);
  }
  if (!launch) return launch.status();
  return Communicator::fromEnvironment(options);
}

int run(int argc, char** argv) {
  Options o;
  if (auto rc = parseCommandLine(argc, argv, o)) return *rc;
  coll::CommOptions co;
  if (o.timeoutSec > 0) co.timeoutMs = o.timeoutSec * 1000;
  auto comm = joinCommunicator(co);
  if (!comm) {
    std::fprintf(stderr, "braid_coll_perf: cannot join the communicator: %s\n",
                 comm.status().toString().c_str());
    return kExitFailure;
  }
  Bench bench(o, **comm, co.context);
  int rc = bench.run();
  std::fflush(stdout);
  return rc;
}

}  // namespace
}  // namespace braid::tools

int main(int argc, char** argv) {
  return braid::tools::run(argc, argv);
}
