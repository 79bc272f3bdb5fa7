#include "core/params.h"

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

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
     "a silent or dead peer, or a connect/handshake that makes no progress, fails after this long",
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
     "messages up to this size are sent at once, without waiting for the receiver's "
     "clear-to-send",
     [](Params& p, const std::string&, int64_t n) { p.eagerMax = n; }},
    {"BRAID_CHUNK_SIZE", Kind::kSize, "512K", 4096, 1LL << 30, nullptr,
     "large messages are cut into chunks of about this size and striped over rails and sockets",
     [](Params& p, const std::string&, int64_t n) { p.chunkSize = n; }},
    {"BRAID_SPIN_US", Kind::kInt, "50", 0, 10'000'000, nullptr,
     "Request::wait busy-polls this long before it sleeps in epoll_wait",
     [](Params& p, const std::string&, int64_t n) { p.spinUs = n; }},
    {"BRAID_THREAD_CHECKS", Kind::kEnum, "auto", 0, 0, "auto|on|off",
     "detect two threads using one Worker (and its listeners, endpoints, requests) at once and "
     "fail the second call with an error instead of corrupting state; auto: on in Debug and "
     "sanitizer builds",
     [](Params& p, const std::string& t, int64_t) { p.threadChecks = t; }},
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

Result<int64_t> parseInt(const std::string& text) {
  if (text.empty()) return Status(Code::kInvalidArgument, "empty value");
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 0);
  if (errno == ERANGE) return Status(Code::kInvalidArgument, "number out of range");
  if (end == text.c_str() || *end != '\0')
    return Status(Code::kInvalidArgument, "not a number");
  return static_cast<int64_t>(v);
}

Status parseOne(const Def& d, const std::string& text, Params& out) {
  auto fail = [&](const std::string& why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{}='{}' is invalid: {} (expected {}; default '{}')", d.name, text,
                              why,
                              d.kind == Kind::kEnum ? std::string(d.choices)
                              : d.kind == Kind::kString
                                  ? std::string("text")
                                  : fmt::format("{} in [{}, {}]", kindName(d.kind), d.min, d.max),
                              d.def));
  };
  int64_t num = 0;
  switch (d.kind) {
    case Kind::kInt:
    case Kind::kSize: {
      auto r = d.kind == Kind::kInt ? parseInt(text) : parseSize(text);
      if (!r) return fail(r.status().message());
      num = *r;
      if (num < d.min || num > d.max) return fail("out of range");
      break;
    }
    case Kind::kToken: {
      if (!text.empty()) {
        errno = 0;
        char* end = nullptr;
        unsigned long long v = std::strtoull(text.c_str(), &end, 0);
        if (errno == ERANGE || end == text.c_str() || *end != '\0' || text[0] == '-')
          return Status(Code::kInvalidArgument,
                        fmt::format("{}='{}' is invalid: expected a 64-bit unsigned number "
                                    "(decimal or 0x hex)",
                                    d.name, text));
        if (v == 0)
          return Status(Code::kInvalidArgument,
                        fmt::format("{}='{}' is invalid: the token must not be 0", d.name, text));
        num = static_cast<int64_t>(v);
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
      if (!found) return fail("not one of the allowed values");
      break;
    }
    case Kind::kString:
      break;
  }
  d.store(out, text, num);
  return Status::ok();
}

}  // namespace

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // the only getenv in braid
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<int64_t> parseSize(const std::string& text) {
  if (text.empty()) return Status(Code::kInvalidArgument, "empty size");
  std::string digits = text;
  int64_t mult = 1;
  char last = digits.back();
  if (last == 'K' || last == 'k') mult = 1LL << 10;
  if (last == 'M' || last == 'm') mult = 1LL << 20;
  if (last == 'G' || last == 'g') mult = 1LL << 30;
  if (mult != 1) digits.pop_back();
  auto n = parseInt(digits);
  if (!n) return Status(Code::kInvalidArgument, "not a size (use e.g. 4096, 64K, 1M, 2G)");
  if (*n < 0) return Status(Code::kInvalidArgument, "negative size");
  if (*n > INT64_MAX / mult) return Status(Code::kInvalidArgument, "size too large");
  return *n * mult;
}

Result<Params> parseParams(const EnvLookup& env) {
  Params p;
  for (const Def& d : kDefs) {
    auto v = env(d.name);
    std::string text = v ? *v : std::string(d.def);
    Status st = parseOne(d, text, p);
    if (!st.isOk()) return st;
  }
  return p;
}

Result<Params> params() {
  static std::once_flag once;
  static Result<Params>* cached = nullptr;
  std::call_once(once, [] { cached = new Result<Params>(parseParams(processEnv())); });
  return *cached;
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
