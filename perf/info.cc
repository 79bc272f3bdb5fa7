// braid_info — what braid sees on this host (ibv_devinfo conventions): every RDMA device
// and port with its state, link layer, MTU, speed, LID, GID table with the GID braid
// would choose and why, PCI path, NUMA node, netdev, and whether BRAID_IB_HCA makes it a
// rail; then the TCP rails (BRAID_SOCKET_IFNAME). --params lists every BRAID_* knob;
// --json FILE writes the same data.
//
// A tool that inspects the host itself, so it uses the internal layers (verbs, tcp, core)
// rather than the public API. Exit codes: 0 (also when there is no RDMA: it says so),
// 1 when a knob (or --hca) is invalid or the JSON file cannot be written, 2 for a bad
// command line.
#include "braid/info.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/params.h"
#include "tcp/interfaces.h"
#include "verbs/device.h"
#include "verbs/gid.h"
#include "verbs/lib.h"

namespace braid::tools {
namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  bool params = false;
  std::string jsonFile;
  std::optional<std::string> hca;  // overrides BRAID_IB_HCA
};

std::string hostAddress(const tcp::SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf,
              sizeof buf);
  else if (a.family() == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof buf);
  return buf;
}

std::string speedText(int mbps) {
  if (mbps <= 0) return "unknown speed";
  if (mbps % 1000 == 0) return fmt::format("{} Gb/s", mbps / 1000);
  return fmt::format("{:.1f} Gb/s", mbps / 1000.0);
}

// ------------------------------------------------------------------ RDMA

struct RdmaReport {
  bool libraryLoaded = false;
  std::string error;  // why there is nothing to show, if so
  std::vector<verbs::PortInfo> ports;
};

RdmaReport discoverRdma(const core::Params& params) {
  RdmaReport r;
  auto lib = verbs::Lib::load();
  if (!lib) {
    r.error = lib.status().message();
    return r;
  }
  r.libraryLoaded = true;
  auto ports = verbs::discoverPorts(**lib, params, /*includeInactive=*/true);
  if (!ports) {
    r.error = ports.status().code() == Code::kUnsupported
                  ? "no RDMA devices: " + ports.status().message()
                  : ports.status().message();
    return r;
  }
  r.ports = std::move(*ports);
  if (r.ports.empty())
    r.error =
        "no RDMA devices (ibv_get_device_list found none: no HCA, or its driver / "
        "rdma_rxe is not loaded)";
  return r;
}

void printRdma(const RdmaReport& r, const std::string& hcaSpec) {
  std::printf("RDMA devices (BRAID_IB_HCA='%s'):\n", hcaSpec.c_str());
  if (r.ports.empty()) {
    std::printf("  %s\n", r.error.c_str());
    return;
  }
  for (const verbs::PortInfo& p : r.ports) {
    std::printf("%s port %d: %s, link layer %s, active MTU %d, %s, LID %u\n", p.device.c_str(),
                p.port, p.state.c_str(), verbs::linkLayerName(p.linkLayer).c_str(),
                p.activeMtuBytes, speedText(p.speedMbps).c_str(), p.lid);
    std::printf("  PCI %s, NUMA node %d, netdev %s\n",
                p.pciPath.empty() ? "unknown" : p.pciPath.c_str(), p.numaNode,
                p.netdev.empty() ? "-" : p.netdev.c_str());
    std::printf("  GIDs (%zu of %d entries in use):\n", p.gids.size(), p.gidTableLen);
    for (const verbs::GidEntry& g : p.gids) {
      bool chosen = p.gid && p.gid->index == g.index;
      std::printf("  %s [%d] %-40s %s\n", chosen ? "*" : " ", g.index,
                  verbs::gidToString(g.gid).c_str(), verbs::gidTypeName(g.type).c_str());
    }
    if (p.gid)
      std::printf("  GID index %d chosen: %s\n", p.gid->index, p.gid->reason.c_str());
    else
      std::printf("  no GID chosen: %s\n", p.gidError.c_str());
    std::string why;
    if (!p.selected)
      why = "excluded by BRAID_IB_HCA";
    else if (!p.active)
      why = "port not ACTIVE";
    else if (!p.gid)
      why = "no usable GID";
    std::printf("  rail: %s\n", p.usableAsRail() ? "yes" : fmt::format("no ({})", why).c_str());
  }
}

json rdmaJson(const RdmaReport& r, const std::string& hcaSpec) {
  json j;
  j["library_loaded"] = r.libraryLoaded;
  j["hca_spec"] = hcaSpec;
  if (!r.error.empty()) j["error"] = r.error;
  j["ports"] = json::array();
  for (const verbs::PortInfo& p : r.ports) {
    json pj;
    pj["device"] = p.device;
    pj["port"] = p.port;
    pj["state"] = p.state;
    pj["active"] = p.active;
    pj["link_layer"] = verbs::linkLayerName(p.linkLayer);
    pj["active_mtu"] = p.activeMtuBytes;
    pj["speed_mbps"] = p.speedMbps;
    pj["lid"] = p.lid;
    pj["gid_table_len"] = p.gidTableLen;
    pj["gids"] = json::array();
    for (const verbs::GidEntry& g : p.gids)
      pj["gids"].push_back({{"index", g.index},
                            {"gid", verbs::gidToString(g.gid)},
                            {"type", verbs::gidTypeName(g.type)}});
    if (p.gid)
      pj["chosen_gid"] = {{"index", p.gid->index},
                          {"type", verbs::gidTypeName(p.gid->type)},
                          {"reason", p.gid->reason}};
    else
      pj["gid_error"] = p.gidError;
    pj["pci_path"] = p.pciPath;
    pj["numa_node"] = p.numaNode;
    pj["netdev"] = p.netdev;
    pj["selected"] = p.selected;
    pj["rail"] = p.usableAsRail();
    j["ports"].push_back(std::move(pj));
  }
  return j;
}

// ------------------------------------------------------------------ TCP

struct TcpReport {
  std::string error;
  std::vector<tcp::Interface> rails;
};

TcpReport discoverTcp(const core::Params& params) {
  TcpReport r;
  auto all = tcp::listInterfaces();
  if (!all) {
    r.error = all.status().message();
    return r;
  }
  auto rails = tcp::selectRails(params.socketIfname, *all);
  if (!rails) {
    r.error = rails.status().message();
    return r;
  }
  r.rails = std::move(*rails);
  return r;
}

void printTcp(const TcpReport& r, const core::Params& params) {
  std::printf("\nTCP rails (BRAID_SOCKET_IFNAME='%s', %lld socket(s) per rail):\n",
              params.socketIfname.c_str(), static_cast<long long>(params.socketNsocks));
  if (!r.error.empty()) std::printf("  %s\n", r.error.c_str());
  for (const tcp::Interface& i : r.rails)
    std::printf("  %-12s %s%s\n", i.name.c_str(), hostAddress(i.addr).c_str(),
                i.loopback ? " (loopback)" : "");
}

json tcpJson(const TcpReport& r, const core::Params& params) {
  json j;
  j["ifname_spec"] = params.socketIfname;
  j["sockets_per_rail"] = params.socketNsocks;
  if (!r.error.empty()) j["error"] = r.error;
  j["rails"] = json::array();
  for (const tcp::Interface& i : r.rails)
    j["rails"].push_back(
        {{"name", i.name}, {"address", hostAddress(i.addr)}, {"loopback", i.loopback}});
  return j;
}

// ------------------------------------------------------------------ knobs

void printParams(const std::vector<core::ParamRow>& rows) {
  std::printf("BRAID_* knobs (value in force, default, doc):\n");
  for (const core::ParamRow& r : rows) {
    std::printf("  %-22s = %-16s %s default '%s' [%s]\n      %s\n", r.name.c_str(),
                fmt::format("'{}'", r.value).c_str(), r.isSet ? "(set)  " : "(unset)",
                r.defaultValue.c_str(), r.type.c_str(), r.doc.c_str());
  }
}

json paramsJson(const std::vector<core::ParamRow>& rows) {
  json j = json::array();
  for (const core::ParamRow& r : rows)
    j.push_back({{"name", r.name},
                 {"value", r.value},
                 {"default", r.defaultValue},
                 {"set", r.isSet},
                 {"type", r.type},
                 {"doc", r.doc}});
  return j;
}

int run(int argc, char** argv) {
  Options o;
  CLI::App app{
      "braid_info: RDMA devices, ports and GIDs, TCP rails and BRAID_* knobs as braid "
      "sees them (ibv_devinfo conventions)",
      "braid_info"};
  app.failure_message(CLI::FailureMessage::help);
  app.set_version_flag("-V,--version", std::string("braid_info (braid ") + versionString() + ")");
  app.add_flag("--params", o.params, "also list every BRAID_* knob: value in force, default, doc");
  app.add_option("--json", o.jsonFile, "write everything shown (and every knob) to this file");
  app.add_option("--hca", o.hca, "rail filter to apply instead of BRAID_IB_HCA (same syntax)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  auto rows = core::listParams(core::processEnv());
  if (o.params) {
    printParams(rows);
    std::printf("\n");
  }
  auto params = core::params();
  if (!params) {
    std::fprintf(stderr, "braid_info: %s\n", params.status().message().c_str());
    return kExitFailure;
  }
  core::Params p = *params;
  if (o.hca) p.ibHca = *o.hca;
  // The verbs knobs are checked here, not only by discovery, so that a bad value is an
  // error even where there is no RDMA to discover.
  auto hca = verbs::HcaFilter::parse(p.ibHca);
  auto gidPolicy = verbs::GidPolicy::fromParams(p);
  for (const Status& st : {hca.status(), gidPolicy.status()}) {
    if (!st.isOk()) {
      std::fprintf(stderr, "braid_info: %s\n", st.message().c_str());
      return kExitFailure;
    }
  }

  std::printf("braid %s\n\n", versionString());
  RdmaReport rdma = discoverRdma(p);
  printRdma(rdma, p.ibHca);
  TcpReport tcpRails = discoverTcp(p);
  printTcp(tcpRails, p);

  if (!o.jsonFile.empty()) {
    json j;
    j["version"] = versionString();
    j["rdma"] = rdmaJson(rdma, p.ibHca);
    j["tcp"] = tcpJson(tcpRails, p);
    j["params"] = paramsJson(rows);
    std::ofstream out(o.jsonFile);
    out << j.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "braid_info: cannot write %s\n", o.jsonFile.c_str());
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace
}  // namespace braid::tools

int main(int argc, char** argv) {
  try {
    return braid::tools::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "braid_info: %s\n", e.what());
    return 1;
  }
}
