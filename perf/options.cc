// perf/options.cc — the command line every tool shares, and the test plan it implies.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "braid/info.h"
#include "perf_common.h"

namespace braid::perf {

std::optional<ParamInfo> paramInForce(const std::string& name) {
  for (auto& p : listParams())
    if (p.name == name) return p;
  return std::nullopt;
}

const char* pollModeName(PollMode m) {
  switch (m) {
    case PollMode::kBusy:
      return "busy";
    case PollMode::kYield:
      return "yield";
    case PollMode::kEvent:
      return "epoll";
  }
  return "?";
}

std::string Options::ibHca() const {
  if (ibDev.empty()) return {};
  return fmt::format("={}:{}", ibDev, ibPort > 0 ? ibPort : 1);
}

// ------------------------------------------------------------------ command line

std::optional<uint64_t> parseSize(std::string_view text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit;
  for (; i < text.size(); ++i)
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  int shift = 0;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    shift = 10;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    shift = 20;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    shift = 30;
  else
    return std::nullopt;
  if (shift > 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::optional<int> parseCommandLine(const ToolSpec& spec, int argc, char** argv, Options& o) {
  CLI::App app{spec.description, spec.name};
  app.failure_message(CLI::FailureMessage::help);  // usage on stderr with the error
  app.set_version_flag("-V,--version", std::string(spec.name) + " (braid " + versionString() + ")");
  app.get_formatter()->column_width(30);

  std::string sizeArg;
  app.add_option("host", o.host,
                 "server to connect to; without it this process is the server and waits for "
                 "one client");

  auto* conn = app.add_option_group("Connection");
  conn->add_option("-p,--port", o.port, "control port of the server")->capture_default_str();
  conn->add_option("--transport", o.transport,
                   "verbs, tcp or auto (auto: verbs when both sides have a verbs rail, else "
                   "tcp; default: verbs with -d, else BRAID_TRANSPORT)")
      ->check(CLI::IsMember({"tcp", "auto", "verbs"}));
  conn->add_option("--rails", o.rails,
                   "TCP rails: interfaces in BRAID_SOCKET_IFNAME syntax, e.g. lo, eth0,eth1, "
                   "^docker, =eth0 (default: BRAID_SOCKET_IFNAME)");
  conn->add_option("--socks", o.socks, "TCP data sockets per rail (default: BRAID_SOCKET_NSOCKS)")
      ->check(CLI::Range(1, 64));
  conn->add_option("--timeout", o.timeoutMs,
                   "ms: a peer silent this long fails the run, a request waiting twice "
                   "this plus 1 s (a rail failover fits) (default: BRAID_TIMEOUT_MS)")
      ->check(CLI::Range(1, 24 * 3600 * 1000));

  auto* ib = app.add_option_group("Verbs (perftest's names)");
  auto* devOpt =
      ib->add_option("-d,--ib-dev", o.ibDev,
                     "RDMA device (rxe0, mlx5_0): the only verbs rail, BRAID_IB_HCA =DEV:PORT; "
                     "implies --transport verbs unless that is given");
  ib->add_option("-i,--ib-port", o.ibPort, "port of the -d device [default: 1]")
      ->check(CLI::Range(1, 255))
      ->needs(devOpt);
  ib->add_option("-x,--gid-index", o.gidIndex,
                 "RoCE GID index (default: BRAID_IB_GID_INDEX; -1: automatic, RoCE v2 IPv4)")
      ->check(CLI::Range(-1, 65535));
  ib->add_option("-q,--qp", o.qps, "RC QPs per verbs rail (default: BRAID_IB_QPS_PER_RAIL)")
      ->check(CLI::Range(1, 16));

  auto* test = app.add_option_group("Test");
  test->add_option("-s,--size", sizeArg,
                   fmt::format("message size in bytes; K, M, G suffixes (64K = 65536) "
                               "[default: {}]",
                               spec.defaultSize))
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            auto v = parseSize(s);
            if (!v || *v == 0) return "'" + s + "' is not a size (examples: 8, 64K, 1M)";
            if (*v > kMaxMessageSize)
              return fmt::format("'{}' is above the largest message, {} bytes (2G)", s,
                                 kMaxMessageSize);
            return {};
          },
          "SIZE"));
  test->add_flag("-a,--all", o.all, "run every size 2, 4, 8, ... 8M (the server follows)");
  test->add_option("-n,--iters", o.iters,
                   fmt::format("iterations per size [default: {}, fewer for large sizes unless "
                               "given]",
                               spec.defaultIters))
      ->check(CLI::Range(uint64_t{1}, kMaxIters));
  if (spec.isBw)
    test->add_option("-t,--tx-depth", o.txDepth,
                     spec.oneSided ? "operations in flight"
                                   : "messages in flight (sends, and receives posted)")
        ->check(CLI::Range(1, static_cast<int>(kMaxTxDepth)))
        ->capture_default_str();
  test->add_flag("--validate", o.validate,
                 "every message carries a pattern of (iteration, size) checked byte for byte");

  auto* pollGroup = app.add_option_group(
      "Polling", fmt::format("how a side waits [default: {}]", pollModeName(spec.defaultPoll)));
  bool busy = false;
  auto* ev = pollGroup->add_flag(
      "-e,--use_event,--use-event", o.useEvent,
      "Request::wait: spin BRAID_SPIN_US, then sleep in epoll until an event (verbs: on the "
      "CQs' completion channels)");
  auto* yl = pollGroup->add_flag("--yield", o.useYield,
                                 "poll, with sched_yield() between polls (leaves the core to "
                                 "Soft-RoCE's kernel work and to the peer on small machines)");
  auto* bz = pollGroup->add_flag("--busy", busy, "poll without yielding (perftest's default)");
  ev->excludes(yl)->excludes(bz);
  yl->excludes(bz);

  auto* rep = app.add_option_group("Report");
  app.add_option("--inject-error", o.injectError,
                 "test the validation: corrupt message N on the client")
      ->group("");  // hidden
  rep->add_flag("--report_gbits,--report-gbits", o.reportGbits, "bandwidth in Gb/sec, not MB/sec");
  rep->add_option("--json", o.jsonFile, "write the configuration, every row and the verdict here");
  rep->add_flag("--stats", o.railStats,
                "after the run, a table per rail: state, bytes and share this side sent, the "
                "rate and chunk completion time the scheduler measured (also in --json)");
  if (spec.isBw)
    rep->add_option("--timeline", o.timelineFile,
                    "during the run, every 100 ms one JSON line per sample to FILE (flushed: "
                    "tail -f works): each rail's state, bytes this side sent in the interval, "
                    "Mbit/s and the scheduler's measured rate, and a line per rail state "
                    "change; plot with perf/plot_rails.py")
        ->type_name("FILE");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  o.size = sizeArg.empty() ? spec.defaultSize : *parseSize(sizeArg);
  o.itersGiven = o.iters != 0;
  if (!o.itersGiven) o.iters = spec.defaultIters;
  o.poll = o.useEvent   ? PollMode::kEvent
           : o.useYield ? PollMode::kYield
           : busy       ? PollMode::kBusy
                        : spec.defaultPoll;
  if (!o.ibDev.empty() && o.ibDev.find_first_of(",:^=") != std::string::npos) {
    std::fprintf(stderr, "%s: -d takes one device name (got '%s'); for a list use BRAID_IB_HCA\n",
                 spec.name, o.ibDev.c_str());
    return kExitUsage;
  }
  if (!o.ibDev.empty() && o.transport == "tcp") {
    std::fprintf(stderr, "%s: -d %s asks for a verbs rail but --transport is tcp\n", spec.name,
                 o.ibDev.c_str());
    return kExitUsage;
  }
  // What a server checks on receipt, checked here first: a plan no server would run (a
  // buffer footprint above the limit) is a bad command line, not a refused connection.
  for (uint64_t size : sizeList(o)) {
    Status st = checkTestParams(testFor(spec, o, size), spec, "the command line");
    if (!st.isOk()) {
      std::fprintf(stderr, "%s: %s\n", spec.name, st.message().c_str());
      return kExitUsage;
    }
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ test plan

std::vector<uint64_t> sizeList(const Options& o) {
  if (!o.all) return {o.size};
  std::vector<uint64_t> v;
  for (uint64_t s = 2; s <= kMaxAllSize; s *= 2) v.push_back(s);
  return v;
}

uint64_t itersFor(const ToolSpec& spec, const Options& o, uint64_t size) {
  if (o.itersGiven) return o.iters;
  // About 2 GiB moved per size for bw, 1 GiB of round trips for lat.
  uint64_t budget = spec.isBw ? (2ull << 30) : (1ull << 30) / 2;
  uint64_t n = std::max<uint64_t>(100, budget / std::max<uint64_t>(size, 1));
  return std::min(o.iters, n);
}

TestMsg testFor(const ToolSpec& spec, const Options& o, uint64_t size) {
  TestMsg t;
  t.tool = static_cast<uint8_t>(spec.kind);
  t.command = static_cast<uint8_t>(TestCommand::kRun);
  t.flags = (o.validate ? kFlagValidate : 0u) | (o.all ? kFlagAllSizes : 0u);
  t.txDepth = static_cast<uint32_t>(spec.isBw ? o.txDepth : 1);
  t.size = size;
  t.iters = itersFor(spec, o, size);
  t.warmup = warmupFor(spec, t.txDepth, t.iters);
  return t;
}

}  // namespace braid::perf
