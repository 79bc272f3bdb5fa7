// perf/report.cc — perftest-format header block and tables, and the --json report.
#include <arpa/inet.h>
#include <fmt/format.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "braid/info.h"
#include "perf_common.h"

namespace braid::perf {

namespace {

constexpr const char* kResultLine =
    "---------------------------------------------------------------------------------------\n";

std::string transportName(Transport t) {
  switch (t) {
    case Transport::kAuto:
      return "auto";
    case Transport::kTcp:
      return "tcp";
    case Transport::kVerbs:
      return "verbs";
  }
  return "?";
}

}  // namespace

// ------------------------------------------------------------------ reports

struct Report::Rows {
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json rows = nlohmann::json::array();
  nlohmann::json rails;  ///< --stats
};

Report::Report(const ToolSpec& spec, const Options& o)
    : spec_(spec), o_(o), rows_(std::make_shared<Rows>()) {}

namespace {

struct MeasuredAt {
  const char* side;  // JSON: "sender", "receiver" (bw) or "client", "server" (lat)
  const char* text;  // the header note
};

MeasuredAt measuredAt(ToolKind kind, bool server) {
  switch (kind) {
    case ToolKind::kSendBw:
      if (server)
        return {"receiver",
                "figures measured at the receiver, this side: from the arrival of the last "
                "warm-up message to that of the last message"};
      return {"sender",
              "figures measured at the sender, this side: from the receiver's acknowledgement "
              "of the warm-up to its end of size; the receiver's own figures follow each row"};
    case ToolKind::kWriteBw:
      if (server)
        return {"sender",
                "figures measured at the sender, the client: one-sided writes leave no trace "
                "here, the client sends its row"};
      return {"sender",
              "figures measured at the sender, this side: a write finishes once the peer's NIC "
              "acknowledged it; timed from the end of the warm-up"};
    case ToolKind::kReadBw:
      if (server)
        return {"receiver",
                "figures measured at the receiver, the client: one-sided reads leave no trace "
                "here, the client sends its row"};
      return {"receiver",
              "figures measured at the receiver, this side: a read finishes once its bytes are "
              "here; timed from the end of the warm-up"};
    case ToolKind::kSendLat:
    case ToolKind::kWriteLat:
      break;
  }
  if (server)
    return {"server",
            "latency measured at the server, this side: half the period between its "
            "answers"};
  return {"client", "latency measured at the client, this side: half of each round trip"};
}

// What perftest prints about a verbs port and the public API does not carry: read from
// the kernel's sysfs view of the device (empty when unavailable).
std::string readSysfs(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  if (!f || !std::getline(f, v)) return {};
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

struct VerbsRailView {
  std::string name;       ///< "rxe0:1"
  std::string gid;        ///< as RailInfo::address
  std::string linkLayer;  ///< "Ethernet", "InfiniBand" or "?"
  int gidIndex = -1;      ///< -1: not found
};

VerbsRailView viewOf(const RailInfo& r, int gidIndexGiven) {
  VerbsRailView v;
  v.name = r.name;
  v.gid = r.address;
  std::string dev = r.name, port = "1";
  if (auto c = r.name.rfind(':'); c != std::string::npos) {
    dev = r.name.substr(0, c);
    port = r.name.substr(c + 1);
  }
  const std::string base = "/sys/class/infiniband/" + dev + "/ports/" + port;
  v.linkLayer = readSysfs(base + "/link_layer");
  if (v.linkLayer.empty()) v.linkLayer = "?";
  // The GID index in use: the one asked for, else the table entry holding this GID.
  v.gidIndex = gidIndexGiven;
  in6_addr want{};
  if (v.gidIndex < 0 && inet_pton(AF_INET6, r.address.c_str(), &want) == 1) {
    for (int i = 0; i < 256; ++i) {
      std::string g = readSysfs(base + "/gids/" + std::to_string(i));
      if (g.empty()) break;
      in6_addr have{};
      if (inet_pton(AF_INET6, g.c_str(), &have) == 1 && std::memcmp(&have, &want, 16) == 0) {
        v.gidIndex = i;
        break;
      }
    }
  }
  return v;
}

}  // namespace

void Report::note(const std::string& text) {
  if (notes_.count(text)) return;
  notes_.insert(text);
  std::printf(" (%s)\n", text.c_str());
  std::fflush(stdout);
  rows_->config["notes"].push_back(text);
}

void Report::printHeader(const Session& s, const TestMsg& t, bool allSizes) {
  const Context& c = s.context();
  const auto& rails = c.rails();
  const bool verbs = s.dataTransport() == Transport::kVerbs;
  std::vector<VerbsRailView> vr;
  std::vector<const RailInfo*> tr;
  int gidGiven = o_.gidIndex;
  if (gidGiven < -1) {
    auto g = paramInForce("BRAID_IB_GID_INDEX");
    gidGiven = g ? std::atoi(g->value.c_str()) : -1;
  }
  for (auto& r : rails) {
    if (r.transport == Transport::kVerbs)
      vr.push_back(viewOf(r, gidGiven));
    else
      tr.push_back(&r);
  }
  int qps = o_.qps;
  if (qps <= 0) {
    auto q = paramInForce("BRAID_IB_QPS_PER_RAIL");
    qps = q ? std::atoi(q->value.c_str()) : 1;
  }
  int socks = tr.empty() ? 0 : tr.front()->sockets;
  std::string railNames, verbsNames;
  for (auto* r : tr) railNames += (railNames.empty() ? "" : ",") + r->name;
  for (auto& v : vr) verbsNames += (verbsNames.empty() ? "" : ",") + v.name;
  auto eager = paramInForce("BRAID_EAGER_MAX");
  auto chunk = paramInForce("BRAID_CHUNK_SIZE");
  std::string eagerText = eager ? eager->value : "?";
  std::string chunkText = chunk ? chunk->value : "?";
  bool validate = (t.flags & kFlagValidate) != 0;
  std::string sizeCol =
      allSizes ? fmt::format("2..{}[B] (-a)", kMaxAllSize) : fmt::format("{}[B]", t.size);
  std::string itersCol = fmt::format("{}", t.iters);
  if (allSizes && !o_.itersGiven && !s.isServer()) itersCol += " (fewer for large sizes)";
  const size_t inUse = s.endpoint().railCount();
  std::string transportText = transportName(s.dataTransport());
  if (!verbs && c.transport() == Transport::kVerbs) transportText += " (peer: no verbs)";
  const char* role = s.isServer() ? "server" : "client";

  std::printf("%s", kResultLine);
  std::printf("                    %s\n", spec_.title);
  if (verbs) {
    std::printf(" Transport       : %-14s\tVerbs rails    : %zu (%s)\n", transportText.c_str(),
                vr.size(), verbsNames.c_str());
    std::printf(" QPs per rail    : %-14s\tConnection     : %s (RC)\n",
                fmt::format("{} (local)", qps).c_str(), role);
  } else {
    std::printf(" Transport       : %-14s\tRails          : %zu (%s)\n", transportText.c_str(),
                tr.size(), railNames.c_str());
    std::printf(" Sockets per rail: %-14s\tConnection     : %s\n",
                fmt::format("{} (local)", socks).c_str(), role);
  }
  if (spec_.isBw)
    std::printf(" TX depth        : %-14u\tValidation     : %s\n", t.txDepth,
                validate ? "ON" : "OFF");
  // The server of a one-sided bw test only waits for the client's end of size, asleep.
  const bool idle = spec_.oneSided && spec_.isBw && s.isServer();
  std::printf(" Polling         : %-14s\t%s\n", idle ? "epoll (idle)" : pollModeName(s.pollMode()),
              spec_.isBw ? "Buffers        : registered once per size"
                         : fmt::format("Validation     : {}", validate ? "ON" : "OFF").c_str());
  std::printf(" Message size    : %-14s\tIterations     : %s\n", sizeCol.c_str(), itersCol.c_str());
  std::printf(" Eager max       : %-14s\tChunk size     : %s\n", eagerText.c_str(),
              chunkText.c_str());
  std::printf(" Timeout         : %-14s\tJob token      : 0x%" PRIx64 "\n",
              fmt::format("{}[ms]", c.timeoutMs()).c_str(), s.token());
  std::printf("%s", kResultLine);
  for (auto& v : vr)
    std::printf(" verbs rail  : %s  link %s  GID index %s  GID %s\n", v.name.c_str(),
                v.linkLayer.c_str(), v.gidIndex >= 0 ? std::to_string(v.gidIndex).c_str() : "?",
                v.gid.c_str());
  for (auto* r : tr)
    std::printf(" %s : %s %s, %d sockets%s\n", verbs ? "tcp rail   " : "local rail ",
                r->name.c_str(), r->address.c_str(), r->sockets, verbs ? " (control only)" : "");
  if (verbs)
    std::printf(" remote      : %s, %zu QP%s in use (%zu per rail)\n", s.peer().c_str(), inUse,
                inUse == 1 ? "" : "s", vr.empty() ? inUse : (inUse + vr.size() - 1) / vr.size());
  else
    std::printf(" remote      : %s, %zu rail%s in use\n", s.peer().c_str(), inUse,
                inUse == 1 ? "" : "s");
  std::printf("%s", kResultLine);
  // Which side measured the figures below: a figure is only as good as the clock and the
  // events behind it, so the table says whose they are.
  const MeasuredAt at = measuredAt(spec_.kind, s.isServer());
  measuredAt_ = at.side;
  std::printf(" (%s)\n", at.text);
  if (spec_.isBw)
    std::printf("%s\n", o_.reportGbits ? " #bytes     #iterations    BW peak[Gb/sec]    BW "
                                         "average[Gb/sec]   MsgRate[Mpps]"
                                       : " #bytes     #iterations    BW peak[MB/sec]    BW "
                                         "average[MB/sec]   MsgRate[Mpps]");
  else
    std::printf(
        " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    "
        "t_avg[usec]    t_stdev[usec]   99%% percentile[usec]   99.9%% percentile[usec] \n");
  std::fflush(stdout);
  tableOpen_ = true;

  auto& cfg = rows_->config;
  cfg["measured_at"] = measuredAt_;
  cfg["transport"] = transportName(s.dataTransport());
  cfg["context_transport"] = transportName(c.transport());
  cfg["rails"] = nlohmann::json::array();
  for (auto* r : tr)
    cfg["rails"].push_back({{"name", r->name}, {"address", r->address}, {"sockets", r->sockets}});
  cfg["verbs_rails"] = nlohmann::json::array();
  for (auto& v : vr) {
    nlohmann::json j = {{"name", v.name}, {"gid", v.gid}, {"link_layer", v.linkLayer}};
    if (v.gidIndex >= 0) j["gid_index"] = v.gidIndex;
    cfg["verbs_rails"].push_back(j);
  }
  cfg["rails_in_use"] = inUse;
  cfg["sockets_per_rail"] = socks;
  cfg["qps_per_rail"] = qps;
  if (!o_.ibDev.empty()) cfg["ib_hca"] = o_.ibHca();
  cfg["port"] = o_.port;
  cfg["peer"] = s.peer();
  cfg["all_sizes"] = allSizes;
  cfg["size"] = t.size;
  cfg["iterations"] = t.iters;
  cfg["iterations_given"] = o_.itersGiven;
  cfg["warmup"] = t.warmup;
  if (spec_.isBw) cfg["tx_depth"] = t.txDepth;
  cfg["validate"] = validate;
  cfg["report_gbits"] = o_.reportGbits;
  cfg["polling"] = idle ? "epoll (idle)" : pollModeName(s.pollMode());
  cfg["timeout_ms"] = c.timeoutMs();
  cfg["eager_max"] = eagerText;
  cfg["chunk_size"] = chunkText;
  cfg["job_token"] = fmt::format("0x{:x}", s.token());
}

void Report::addBw(const BwRow& r) {
  double scale = o_.reportGbits ? 8.0 / 1e9 : 1.0 / 1048576.0;
  std::printf(" %-7" PRIu64 "    %-10" PRIu64 "       %-7.2lf            %-7.2lf\t\t   %-7.6lf\n",
              r.bytes, r.iters, r.peakBps * scale, r.avgBps * scale, r.msgRate / 1e6);
  if (r.other)
    std::printf("   (%s: BW peak %.2lf, BW average %.2lf %s)\n", sideName(r.other->side),
                r.other->peakBps * scale, r.other->avgBps * scale,
                o_.reportGbits ? "Gb/sec" : "MB/sec");
  std::fflush(stdout);
  rows_->rows.push_back({{"bytes", r.bytes},
                         {"iterations", r.iters},
                         {"measured_at", sideName(r.side)},
                         {"elapsed_ns", r.elapsedNs},
                         {"bw_peak_mb_per_sec", r.peakBps / 1048576.0},
                         {"bw_average_mb_per_sec", r.avgBps / 1048576.0},
                         {"bw_peak_gbit_per_sec", r.peakBps * 8 / 1e9},
                         {"bw_average_gbit_per_sec", r.avgBps * 8 / 1e9},
                         {"msg_rate_mpps", r.msgRate / 1e6}});
  if (r.other) {
    auto& row = rows_->rows.back();
    const std::string k = sideName(r.other->side);
    row[k + "_bw_peak_mb_per_sec"] = r.other->peakBps / 1048576.0;
    row[k + "_bw_average_mb_per_sec"] = r.other->avgBps / 1048576.0;
    row[k + "_bw_peak_gbit_per_sec"] = r.other->peakBps * 8 / 1e9;
    row[k + "_bw_average_gbit_per_sec"] = r.other->avgBps * 8 / 1e9;
  }
  if (!r.bytesPerRail.empty()) rows_->rows.back()["bytes_sent_per_rail"] = r.bytesPerRail;
}

void Report::addLat(const LatRow& r) {
  std::printf(" %-7" PRIu64 " %" PRIu64
              "          %-7.2f        %-7.2f      %-7.2f  \t       %-7.2f     \t%-7.2f\t\t%-7.2f "
              "\t\t%-7.2f\n",
              r.bytes, r.iters, r.min, r.max, r.typical, r.avg, r.stdev, r.p99, r.p999);
  std::fflush(stdout);
  rows_->rows.push_back({{"bytes", r.bytes},
                         {"iterations", r.iters},
                         {"t_min_usec", r.min},
                         {"t_max_usec", r.max},
                         {"t_typical_usec", r.typical},
                         {"t_avg_usec", r.avg},
                         {"t_stdev_usec", r.stdev},
                         {"p99_usec", r.p99},
                         {"p99_9_usec", r.p999},
                         {"measured_at", measuredAt_}});
}

void Report::endTable() {
  if (!tableOpen_) return;
  std::printf("%s", kResultLine);
  std::fflush(stdout);
  tableOpen_ = false;
}

void Report::railTable(const EndpointStats& st) {
  endTable();
  std::printf(" Rails (this side's sends; rate and completion time as the scheduler measured them):\n");
  std::printf(" %-4s %-8s %14s %7s %9s %12s %14s %5s  %s\n", "rail", "state", "bytes", "share",
              "chunks", "MB/s", "chunk us", "downs", "name");
  nlohmann::json rails = nlohmann::json::array();
  for (size_t i = 0; i < st.rails.size(); ++i) {
    const RailStats& r = st.rails[i];
    std::printf(" %-4zu %-8s %14" PRIu64 " %6.1f%% %9" PRIu64 " %12.2f %14.1f %5" PRIu64
                "  %s\n",
                i, r.state.c_str(), r.bytesSent, 100 * r.share, r.chunks,
                r.throughputBps / 1048576.0, r.completionUs, r.failures, r.name.c_str());
    if (!r.counters.empty()) {
      std::string c;
      for (const auto& [name, value] : r.counters) c += fmt::format(" {}={}", name, value);
      std::printf("      congestion %.2f:%s\n", r.congestion, c.c_str());
    }
    for (const RailEvent& e : r.events)
      std::printf("      %s at %" PRId64 " ms (unix): %s\n", e.state.c_str(), e.unixMs,
                  e.cause.c_str());
    nlohmann::json events = nlohmann::json::array();
    for (const RailEvent& e : r.events)
      events.push_back({{"unix_ms", e.unixMs}, {"state", e.state}, {"cause", e.cause}});
    rails.push_back({{"rail", i},
                     {"chunks", r.chunks},
                     {"failures", r.failures},
                     {"events", std::move(events)},
                     {"congestion", r.congestion},
                     {"counters", r.counters},
                     {"name", r.name},
                     {"state", r.state},
                     {"bytes_sent", r.bytesSent},
                     {"share", r.share},
                     {"throughput_mb_per_sec", r.throughputBps / 1048576.0},
                     {"chunk_completion_us", r.completionUs},
                     {"latency_us", r.latencyUs}});
  }
  std::fflush(stdout);
  rows_->rails = std::move(rails);
}

bool Report::finish(const Verdict& v, const std::string& error) {
  endTable();
  if (v.enabled && error.empty()) {
    std::printf("%s\n", v.line().c_str());
    std::fflush(stdout);
  }
  if (o_.jsonFile.empty()) return true;
  nlohmann::json j;
  j["tool"] = spec_.name;
  j["braid_version"] = versionString();
  j["role"] = o_.isServer() ? "server" : "client";
  j["config"] = rows_->config;
  j["results"] = rows_->rows;
  if (!rows_->rails.is_null()) j["rails"] = rows_->rails;
  nlohmann::json val;
  val["enabled"] = v.enabled;
  if (v.enabled) {
    val["passed"] = v.passed() && error.empty();
    val["messages"] = v.messages;
    val["bytes"] = v.bytes;
    val["bad_messages"] = v.badMessages;
    if (v.hasBad)
      val["first_bad"] = {{"size", v.badSize},
                          {"message", v.badIter},
                          {"offset", v.badOffset},
                          {"expected", v.badExpected},
                          {"actual", v.badActual}};
    val["verdict"] = v.line();
  }
  j["validation"] = val;
  j["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) j["error"] = error;
  std::ofstream f(o_.jsonFile);
  f << j.dump(2) << "\n";
  f.close();
  if (!f) {
    printError(spec_, fmt::format("cannot write the JSON report {}: {}", o_.jsonFile,
                                  std::strerror(errno)));
    return false;
  }
  return true;
}

void printError(const ToolSpec& spec, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: %s\n", spec.name, message.c_str());
  std::fflush(stderr);
}

}  // namespace braid::perf
