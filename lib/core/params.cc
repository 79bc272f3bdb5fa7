#include "core/params.h"

#include <unistd.h>  // environ (_GNU_SOURCE)

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "core/log.h"

namespace braid::core {
namespace {

enum class Kind { kInt, kSize, kString, kEnum, kToken };

struct Def {
  const char* name;
  Kind kind;
  const char* def;    // default as text ("" = unset/empty)
  int64_t min;        // kInt/kSize bounds
  int64_t max;
  const char* choices;  // kEnum: '|'-separated
  const char* doc;
  // Stores the parsed value into Params.
  void (*store)(Params&, const std::string& text, int64_t num);
};

constexpr int64_t kI64Max = INT64_MAX;

// The registry. Add a knob here and nowhere else.
const Def kDefs[] = {
    {"BRAID_LOG_LEVEL", Kind::kEnum, "warn", 0, 0, "off|error|warn|info|debug|trace",
     "log level of every braid logger",
     [](Params& p, const std::string& t, int64_t) { p.logLevel = t; }},
    {"BRAID_LOG_FILE", Kind::kString, "", 0, 0, nullptr,
     "append logs to this file instead of stderr (%p is replaced by the pid)",
     [](Params& p, const std::string& t, int64_t) { p.logFile = t; }},
    {"BRAID_JOB_TOKEN", Kind::kToken, "", 0, 0, nullptr,
     "64-bit job token (decimal or 0x hex) every peer must present; unset: a random token per "
     "listener, carried in its address",
     [](Params& p, const std::string& t, int64_t n) {
       if (!t.empty()) p.jobToken = static_cast<uint64_t>(n);
     }},
    {"BRAID_TIMEOUT_MS", Kind::kInt, "30000", 1, 24LL * 3600 * 1000, nullptr,
     "a dead peer host (its kernel stops answering TCP keepalive or data) fails the endpoint "
     "after about this long, as does a connect/handshake that makes no progress; a live peer "
     "that computes without calling braid is never declared dead (the waiting call's own "
     "timeout applies)",
     [](Params& p, const std::string&, int64_t n) { p.timeoutMs = n; }},
    {"BRAID_TRANSPORT", Kind::kEnum, "auto", 0, 0, "auto|tcp|verbs",
     "transport for new endpoints: auto prefers verbs and falls back to tcp",
     [](Params& p, const std::string& t, int64_t) { p.transport = t; }},
    {"BRAID_SOCKET_IFNAME", Kind::kString, "", 0, 0, nullptr,
     "TCP rails: interface prefixes, comma separated; ^ excludes, = matches exactly "
     "(NCCL_SOCKET_IFNAME syntax); empty: every up interface except lo and docker*, else lo",
     [](Params& p, const std::string& t, int64_t) { p.socketIfname = t; }},
    {"BRAID_SOCKET_NSOCKS", Kind::kInt, "2", 1, 64, nullptr,
     "TCP data sockets per rail; chunks of large messages are spread over all of them",
     [](Params& p, const std::string&, int64_t n) { p.socketNsocks = n; }},
    {"BRAID_SOCKET_BUFSIZE", Kind::kSize, "0", 0, 1LL << 30, nullptr,
     "SO_SNDBUF/SO_RCVBUF of data sockets; 0 keeps the kernel's autotuning",
     [](Params& p, const std::string&, int64_t n) { p.socketBufSize = n; }},
    {"BRAID_EAGER_MAX", Kind::kSize, "16K", 0, 1LL << 20, nullptr,
     "messages up to this size are copied and sent at once, and their sends finish then, "
     "without waiting for the receive; larger ones wait for the receiver's clear-to-send and "
     "land without a copy. Unset, a collectives communicator whose rails are all TCP uses "
     "128K (ContextOptions::usage = kCollective)",
     [](Params& p, const std::string&, int64_t n) { p.eagerMax = n; }},
    {"BRAID_CHUNK_SIZE", Kind::kSize, "512K", 4096, 1LL << 30, nullptr,
     "large messages are cut into chunks of about this size and striped over rails and sockets",
     [](Params& p, const std::string&, int64_t n) { p.chunkSize = n; }},
    {"BRAID_UNEXPECTED_MAX", Kind::kSize, "256M", 1LL << 20, 1LL << 40, nullptr,
     "bytes of eager messages an endpoint holds for receives not posted yet (each is a "
     "copy); a peer that sends more fails the endpoint with an error naming the limit",
     [](Params& p, const std::string&, int64_t n) { p.unexpectedMax = n; }},
    {"BRAID_STRIPE_POLICY", Kind::kEnum, "adaptive", 0, 0, "adaptive|weighted|roundrobin|single",
     "how a large message is split over rails: adaptive places each chunk where it is "
     "predicted to land first (measured rates, bytes in flight); weighted by the rails' "
     "nominal speeds; roundrobin in equal chunks; single: the whole message on the best rail",
     [](Params& p, const std::string& t, int64_t) { p.stripePolicy = t; }},
    {"BRAID_SPIN_US", Kind::kInt, "50", 0, 10'000'000, nullptr,
     "Request::wait busy-polls this long before it sleeps in epoll_wait",
     [](Params& p, const std::string&, int64_t n) { p.spinUs = n; }},
    {"BRAID_THREAD_CHECKS", Kind::kEnum, "auto", 0, 0, "auto|on|off",
     "detect two threads using one Worker (and its listeners, endpoints, requests) at once and "
     "fail the second call with an error instead of corrupting state; auto: on in Debug and "
     "sanitizer builds",
     [](Params& p, const std::string& t, int64_t) { p.threadChecks = t; }},
    {"BRAID_NCCL_MERGE_ALL", Kind::kEnum, "0", 0, 0, "0|1",
     "NCCL plugin: 1 offers every rail as one NCCL device, striped and failed over by braid; "
     "0 offers one device per RDMA port (or TCP interface) and lets NCCL fuse them",
     [](Params& p, const std::string& t, int64_t) { p.ncclMergeAll = t == "1"; }},
    {"BRAID_RANK", Kind::kInt, "-1", -1, 1 << 24, nullptr,
     "collectives: this process's rank (with BRAID_WORLD_SIZE and BRAID_STORE; wins over "
     "torchrun's, Slurm's and Open MPI's variables); -1: from the launcher",
     [](Params& p, const std::string&, int64_t n) { p.rank = n; }},
    {"BRAID_WORLD_SIZE", Kind::kInt, "0", 0, 1 << 24, nullptr,
     "collectives: the number of ranks (with BRAID_RANK); 0: from the launcher",
     [](Params& p, const std::string&, int64_t n) { p.worldSize = n; }},
    {"BRAID_LOCAL_RANK", Kind::kInt, "-1", -1, 1 << 24, nullptr,
     "collectives: this process's rank on its host (with BRAID_RANK); -1: unknown",
     [](Params& p, const std::string&, int64_t n) { p.localRank = n; }},
    {"BRAID_STORE", Kind::kString, "", 0, 0, nullptr,
     "collectives: where ranks meet: host:port (a TCP store served by rank 0) or file:DIR (a "
     "directory every rank sees); overrides the launcher's (MASTER_ADDR:MASTER_PORT+1, ...)",
     [](Params& p, const std::string& t, int64_t) { p.store = t; }},
    {"BRAID_STORE_PORT", Kind::kInt, "0", 0, 65535, nullptr,
     "collectives under Slurm or Open MPI without BRAID_STORE: the TCP store's port on the "
     "first node; 0: 20000 + the job id modulo 20000",
     [](Params& p, const std::string&, int64_t n) { p.storePort = n; }},
    {"BRAID_ALGO", Kind::kString, "", 0, 0, nullptr,
     "collectives: algorithm overrides, collective:algorithm pairs comma separated, e.g. "
     "allreduce:ring,broadcast:binomial (docs/collectives.md lists them); empty: chosen by "
     "size and rank count",
     [](Params& p, const std::string& t, int64_t) { p.algo = t; }},
    {"BRAID_COLL_SEGMENT", Kind::kSize, "1M", 4096, 1LL << 30, nullptr,
     "collectives: pipelined algorithms move data in segments of about this size, so that "
     "sending, receiving and reducing overlap",
     [](Params& p, const std::string&, int64_t n) { p.collSegment = n; }},
    {"BRAID_COLL_THREAD", Kind::kEnum, "0", 0, 0, "0|1",
     "collectives: 1 starts a progress thread per communicator that drives non-blocking "
     "collectives while the caller computes; 0: the caller's calls drive them",
     [](Params& p, const std::string& t, int64_t) { p.collThread = t == "1"; }},
    {"BRAID_COLL_SPIN_US", Kind::kInt, "1000", 0, 1000000, nullptr,
     "collectives: a blocking call polls this many microseconds (giving the core away "
     "between polls, so ranks that share cores take turns) before it sleeps until its "
     "sockets or completion queues wake it; 0 sleeps at once (least CPU, most latency)",
     [](Params& p, const std::string&, int64_t n) { p.collSpinUs = n; }},
    {"BRAID_IB_HCA", Kind::kString, "", 0, 0, nullptr,
     "verbs rails: devices[:port], comma separated; ^ excludes, = matches exactly "
     "(NCCL_IB_HCA syntax); empty: every active port",
     [](Params& p, const std::string& t, int64_t) { p.ibHca = t; }},
    {"BRAID_IB_GID_INDEX", Kind::kInt, "-1", -1, 65535, nullptr,
     "RoCE GID index to use; -1 selects automatically (RoCE v2, IPv4-mapped)",
     [](Params& p, const std::string&, int64_t n) { p.ibGidIndex = n; }},
    {"BRAID_IB_ROCE_VERSION", Kind::kInt, "2", 1, 2, nullptr,
     "RoCE version preferred by automatic GID selection",
     [](Params& p, const std::string&, int64_t n) { p.ibRoceVersion = n; }},
    {"BRAID_IB_ADDR_FAMILY", Kind::kEnum, "AF_INET", 0, 0, "AF_INET|AF_INET6",
     "address family preferred by automatic GID selection",
     [](Params& p, const std::string& t, int64_t) { p.ibAddrFamily = t; }},
    {"BRAID_IB_ADDR_RANGE", Kind::kString, "", 0, 0, nullptr,
     "only GIDs inside this CIDR range (e.g. 10.0.0.0/8) are selected automatically",
     [](Params& p, const std::string& t, int64_t) { p.ibAddrRange = t; }},
    {"BRAID_IB_TIMEOUT", Kind::kInt, "20", 1, 31, nullptr,
     "RC QP local ACK timeout exponent (4.096 us * 2^value)",
     [](Params& p, const std::string&, int64_t n) { p.ibTimeout = n; }},
    {"BRAID_IB_RETRY_CNT", Kind::kInt, "7", 0, 7, nullptr, "RC QP retry count",
     [](Params& p, const std::string&, int64_t n) { p.ibRetryCnt = n; }},
    {"BRAID_IB_TC", Kind::kInt, "0", 0, 255, nullptr, "traffic class of RoCE/IB packets",
     [](Params& p, const std::string&, int64_t n) { p.ibTc = n; }},
    {"BRAID_IB_SL", Kind::kInt, "0", 0, 15, nullptr, "InfiniBand service level",
     [](Params& p, const std::string&, int64_t n) { p.ibSl = n; }},
    {"BRAID_IB_QPS_PER_RAIL", Kind::kInt, "1", 1, 16, nullptr,
     "RC queue pairs per verbs rail and peer; chunks are spread over all of them (perftest -q)",
     [](Params& p, const std::string&, int64_t n) { p.ibQpsPerRail = n; }},
};

const char* kindName(Kind k) {
  switch (k) {
    case Kind::kInt: return "int";
    case Kind::kSize: return "size";
    case Kind::kString: return "string";
    case Kind::kEnum: return "enum";
    case Kind::kToken: return "token";
  }
  return "?";
}

// The value grammars. Knobs used to go through strtoll(..., 0), which read "030000" as
// octal 12288 and took "0x10" and " 5"; a typo then changed a timeout silently. Now every
// number is plain decimal (the token alone may say 0x) and each way a value can be wrong
// has its own reason, so the message tells the user what to type.

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

Status invalid(std::string why) { return Status(Code::kInvalidArgument, std::move(why)); }

// Checks the spelling of unsigned decimal digits (no value yet): the reason, or ok.
// `sign` and `suffix` only go into the suggested spelling.
Status checkDigits(std::string_view sign, std::string_view digits, std::string_view suffix) {
  if (digits.empty()) return invalid("no digits");
  if (digits.size() >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
    return invalid("hex is not accepted here (decimal only)");
  for (char c : digits)
    if (!isDigit(c)) return invalid("not a decimal number");
  if (digits.size() > 1 && digits[0] == '0') {
    size_t nz = digits.find_first_not_of('0');
    std::string_view rest = nz == std::string_view::npos ? "0" : digits.substr(nz);
    return invalid(fmt::format("decimal only, no leading zeros (C reads a leading 0 as octal); "
                               "write {}{}{}",
                               rest == "0" ? "" : sign, rest, suffix));
  }
  return Status::ok();
}

Status checkNoSpace(std::string_view text) {
  if (isSpace(text.front()) || isSpace(text.back())) return invalid("leading or trailing space");
  for (char c : text)
    if (isSpace(c)) return invalid("space inside the value");
  return Status::ok();
}

// Decimal digits, at most one leading '-' when `allowNegative`; nothing else.
Result<int64_t> parseDecimal(std::string_view text, bool allowNegative) {
  if (text.empty()) return invalid("empty value (unset the variable to get the default)");
  BRAID_RETURN_IF_ERROR(checkNoSpace(text));
  std::string_view digits = text;
  if (text[0] == '+' || text[0] == '-') {
    if (text[0] == '+' || !allowNegative)
      return invalid(allowNegative ? "no '+' sign"
                                   : "no sign allowed (the value is never negative)");
    digits.remove_prefix(1);
    if (digits == "0") return invalid("-0: write 0");
  }
  BRAID_RETURN_IF_ERROR(checkDigits(text.substr(0, text.size() - digits.size()), digits, ""));
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (ec == std::errc::result_out_of_range) return invalid("too large for a 64-bit integer");
  if (ec != std::errc() || ptr != text.data() + text.size()) return invalid("not a decimal number");
  return v;
}

// What a knob accepts, in words: the tail of every error about it and the docs' grammar.
std::string acceptedForm(const Def& d) {
  switch (d.kind) {
    case Kind::kInt:
      return fmt::format("a decimal integer in [{}, {}]: digits{}, no spaces, no leading zeros",
                         d.min, d.max,
                         d.min < 0 ? " with an optional leading '-'" : " only, no sign");
    case Kind::kSize:
      return fmt::format("a size in bytes in [{}, {}]: decimal digits, optionally followed by "
                         "K, M or G (x1024, x1024^2, x1024^3; either case), e.g. 16K; no spaces, "
                         "no sign, no leading zeros",
                         d.min, d.max);
    case Kind::kToken:
      return "a nonzero unsigned 64-bit number: 0x then hex digits, or decimal digits without "
             "leading zeros (never octal)";
    case Kind::kEnum: return fmt::format("one of {}", d.choices);
    case Kind::kString: return "text";
  }
  return "?";
}

Status parseOne(const Def& d, const std::string& text, Params& out) {
  auto fail = [&](const Status& why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{}='{}' is invalid: {} (expected {}; {})", d.name, text,
                              why.message(), acceptedForm(d),
                              *d.def ? fmt::format("default '{}'", d.def) : "unset by default"));
  };
  int64_t num = 0;
  switch (d.kind) {
    case Kind::kInt:
    case Kind::kSize: {
      auto r = d.kind == Kind::kInt ? parseDecimal(text, d.min < 0) : parseSize(text);
      if (!r) return fail(r.status());
      num = *r;
      if (num < d.min || num > d.max) return fail(invalid("out of range"));
      break;
    }
    case Kind::kToken: {
      if (!text.empty()) {  // set but empty: unset, a random token per listener
        auto r = parseToken(text);
        if (!r) return fail(r.status());
        if (*r == 0) return fail(invalid("the token must not be 0"));
        num = static_cast<int64_t>(*r);
      }
      break;
    }
    case Kind::kEnum: {
      std::string choices = d.choices;
      bool found = false;
      size_t pos = 0;
      while (pos <= choices.size()) {
        size_t bar = choices.find('|', pos);
        if (bar == std::string::npos) bar = choices.size();
        if (choices.compare(pos, bar - pos, text) == 0 && bar - pos == text.size()) found = true;
        pos = bar + 1;
      }
      if (!found) return fail(invalid("not one of the allowed values"));
      break;
    }
    case Kind::kString:
      break;
  }
  d.store(out, text, num);
  return Status::ok();
}

// ---- BRAID_* names that are no knobs

constexpr std::string_view kPrefix = "BRAID_";

bool hasBraidPrefix(std::string_view name) {
  if (name.size() < kPrefix.size()) return false;
  for (size_t i = 0; i < kPrefix.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(name[i])) != kPrefix[i]) return false;
  return true;
}

// Set by braid's test scripts (tests/softroce, perf/bench_*.sh), read by scripts only.
bool isHarnessName(std::string_view name) {
  return name == "BRAID_IN_VM" || name == "BRAID_BUILD_DIR" || name.starts_with("BRAID_VM_") ||
         name.starts_with("BRAID_SOFTROCE_");
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The knob `name` most likely meant, or nullptr. Compared without the prefix and in upper
// case: the closest by edit distance when within a third of the name (at least 3: a dropped
// "_MS" or "IB_"); else a knob with the name as a whole '_'-separated part (NSOCKS ->
// SOCKET_NSOCKS); else none, rather than a wild guess.
const char* closestKnob(std::string_view name) {
  std::string typed(name.substr(kPrefix.size()));
  for (char& c : typed) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const char* best = nullptr;
  size_t bestDistance = std::max<size_t>(3, typed.size() / 3) + 1;
  for (const Def& d : kDefs) {
    size_t dist = editDistance(typed, std::string_view(d.name).substr(kPrefix.size()));
    if (dist < bestDistance) {
      best = d.name;
      bestDistance = dist;
    }
  }
  if (best != nullptr || typed.empty()) return best;
  for (const Def& d : kDefs) {
    std::string knob = std::string("_") + (d.name + kPrefix.size()) + "_";
    if (knob.find("_" + typed + "_") != std::string::npos) return d.name;
  }
  return nullptr;
}

}  // namespace

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // the only getenv in braid
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<int64_t> parseSize(std::string_view text) {
  if (text.empty()) return invalid("empty value (unset the variable to get the default)");
  BRAID_RETURN_IF_ERROR(checkNoSpace(text));
  if (text[0] == '+' || text[0] == '-')
    return invalid("no sign allowed (a size is never negative)");
  size_t end = 0;
  while (end < text.size() && isDigit(text[end])) ++end;
  std::string_view digits = text.substr(0, end), suffix = text.substr(end);
  int shift = 0;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else if (!suffix.empty()) {
    if (digits == "0" && (suffix[0] == 'x' || suffix[0] == 'X'))
      return invalid("hex is not accepted here (decimal only)");
    if (digits.empty()) return invalid("not a size");
    return invalid(fmt::format("unknown suffix '{}' (K, M or G only)", suffix));
  }
  BRAID_RETURN_IF_ERROR(checkDigits("", digits, suffix));
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n, 10);
  if (ec == std::errc::result_out_of_range || n > (INT64_MAX >> shift))
    return invalid("too large for a 64-bit size");
  if (ec != std::errc() || ptr != digits.data() + digits.size()) return invalid("not a size");
  return n << shift;
}

Result<uint64_t> parseToken(std::string_view text) {
  if (text.empty()) return invalid("empty token");
  BRAID_RETURN_IF_ERROR(checkNoSpace(text));
  uint64_t v = 0;
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    std::string_view hex = text.substr(2);
    if (hex.empty()) return invalid("0x without hex digits");
    if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos)
      return invalid("not hex digits after 0x");
    auto [ptr, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), v, 16);
    if (ec == std::errc::result_out_of_range) return invalid("too large for 64 bits");
    if (ec != std::errc() || ptr != hex.data() + hex.size())
      return invalid("not hex digits after 0x");
    return v;
  }
  if (text[0] == '+' || text[0] == '-') return invalid("no sign allowed");
  BRAID_RETURN_IF_ERROR(checkDigits("", text, ""));
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (ec == std::errc::result_out_of_range) return invalid("too large for 64 bits");
  if (ec != std::errc() || ptr != text.data() + text.size()) return invalid("not a number");
  return v;
}

Result<Params> parseParams(const EnvLookup& env) {
  Params p;
  for (const Def& d : kDefs) {
    auto v = env(d.name);
    std::string text = v ? *v : std::string(d.def);
    Status st = parseOne(d, text, p);
    if (!st.isOk()) return st;
    if (v) p.setNames.emplace_back(d.name);
  }
  return p;
}

Result<Params> paramsWithoutWarnings() {
  static std::once_flag once;
  static Result<Params>* cached = nullptr;
  std::call_once(once, [] { cached = new Result<Params>(parseParams(processEnv())); });
  return *cached;
}

Result<Params> params() {
  // Context::create calls this once per context: each new name is warned about once, even
  // when it was set after the first call (the knobs themselves are read only once).
  static std::mutex mu;
  static auto* seen = new std::set<std::string>();  // never destroyed: no exit-order issue
  std::vector<std::string> fresh;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (std::string& n : processEnvNames())
      if (hasBraidPrefix(n) && seen->insert(n).second) fresh.push_back(std::move(n));
  }
  for (const std::string& w : unknownKnobWarnings(fresh)) BRAID_LOG_WARN(kCore, "{}", w);
  return paramsWithoutWarnings();
}

std::vector<std::string> unknownKnobWarnings(const std::vector<std::string>& envNames) {
  std::vector<std::string> out;
  std::set<std::string> done;
  for (const std::string& name : envNames) {
    if (!hasBraidPrefix(name) || isHarnessName(name) || !done.insert(name).second) continue;
    bool known = false;
    for (const Def& d : kDefs) known = known || name == d.name;
    if (known) continue;
    const char* near = closestKnob(name);
    out.push_back(near ? fmt::format("{} is not a braid knob (ignored); did you mean {}?", name,
                                     near)
                       : fmt::format("{} is not a braid knob (ignored); the knobs are listed in "
                                     "docs/params.md and by braid_info --params",
                                     name));
  }
  return out;
}

std::vector<std::string> processEnvNames() {
  std::vector<std::string> names;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    names.emplace_back(*e, eq ? static_cast<size_t>(eq - *e) : std::strlen(*e));
  }
  return names;
}

std::string paramsMarkdown() {
  std::string md = R"(# braid environment knobs

Generated from the registry in `lib/core/params.cc` by `cmake --build build --target params_doc`
(do not edit by hand: a unit test fails when this page and the registry differ).
`braid_info --params` prints the same with the values in force.

## Values
- **int**: decimal digits only, in the range shown: no spaces, no leading zeros (`030000`
  is refused, not read as octal 12288), no hex, no `+`; `-` only where the range goes
  below 0.
- **size**: bytes as decimal digits, optionally followed by `K`, `M` or `G` in either case
  (x1024, x1024^2, x1024^3): `4096`, `16K`, `1m`, `2G`. No spaces, no sign, no leading
  zeros, no other suffix (`16KB` and `16KiB` are refused).
- **token**: a nonzero unsigned 64-bit number: `0x` (or `0X`) then hex digits, or decimal
  digits without leading zeros (never octal). Set but empty counts as unset.
- **enum**: exactly one of the words listed (case matters).
- **string**: any text.

A value that breaks these rules, including an empty int, size or enum, is an error:
`Context::create` fails with invalid-argument and a message naming the variable, the value,
what is wrong and what is accepted. Unset a variable to get its default.

## Unknown names
A `BRAID_*` variable (in any case) that is not in the table is ignored, with a warning that
names the closest knob, logged once per process and name when a Context is created:
`BRAID_SOCKET_IFNAMES is not a braid knob (ignored); did you mean BRAID_SOCKET_IFNAME?`.
The variables of braid's own test scripts (`BRAID_SOFTROCE_*`, `BRAID_VM_*`, `BRAID_IN_VM`,
`BRAID_BUILD_DIR`) get no warning.

## Knobs
)";
  md += "| variable | type | default | meaning |\n|---|---|---|---|\n";
  for (const ParamRow& r : listParams([](const std::string&) { return std::nullopt; })) {
    std::string type = r.type;
    std::replace(type.begin(), type.end(), '|', '/');  // '|' would split the table cell
    md += fmt::format("| `{}` | {} | {} | {} |\n", r.name, type,
                      r.defaultValue.empty() ? "(unset)" : "`" + r.defaultValue + "`", r.doc);
  }
  return md;
}

std::vector<ParamRow> listParams(const EnvLookup& env) {
  std::vector<ParamRow> rows;
  for (const Def& d : kDefs) {
    auto v = env(d.name);
    ParamRow r;
    r.name = d.name;
    r.type = d.kind == Kind::kEnum ? fmt::format("enum({})", d.choices) : kindName(d.kind);
    if (d.kind == Kind::kInt || d.kind == Kind::kSize)
      r.type += fmt::format("[{}..{}]", d.min, d.max == kI64Max ? std::string("max")
                                                                : std::to_string(d.max));
    r.defaultValue = d.def;
    r.isSet = v.has_value();
    r.value = v ? *v : std::string(d.def);
    r.doc = d.doc;
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace braid::core
