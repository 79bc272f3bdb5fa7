// braid_info on the real rxe devices: every port, the chosen GID and the rails.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "support.h"

namespace {

// Runs a command, returns its stdout; `rc` gets the exit status.
std::string run(const std::string& cmd, int& rc) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

}  // namespace

TEST_CASE("braid_info shows rxe0 and rxe1 with the chosen GID index and their rails") {
  int rc = -1;
  std::string out = run(std::string("env -u BRAID_IB_HCA ") + BRAID_INFO_PATH + " 2>&1", rc);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("rxe0 port 1: ACTIVE, link layer Ethernet"));
  CHECK_THAT(out, Catch::Contains("rxe1 port 1: ACTIVE, link layer Ethernet"));
  // The chosen GID is marked, whatever its index in the kernel's table.
  CHECK_THAT(out, Catch::Matches(R"([\s\S]*\* \[[0-9]+\] ::ffff:10\.77\.0\.1[\s\S]*)"));
  CHECK_THAT(out, Catch::Matches(R"([\s\S]*\* \[[0-9]+\] ::ffff:10\.78\.0\.1[\s\S]*)"));
  CHECK_THAT(out, Catch::Matches(R"([\s\S]*GID index [0-9]+ chosen: RoCE v2 IPv4-mapped[\s\S]*)"));
  CHECK_THAT(out, Catch::Contains("netdev eth0"));
  CHECK_THAT(out, Catch::Contains("rail: yes"));
  CHECK_THAT(out, Catch::Contains("TCP rails"));
  CHECK_THAT(out, Catch::Contains("10.77.0.1"));
}

TEST_CASE("braid_info --hca and --json report which ports braid would use") {
  int rc = -1;
  std::string json = "/tmp/braid_info_vm.json";
  std::string out = run(std::string(BRAID_INFO_PATH) + " --hca rxe1 --json " + json + " 2>&1", rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("rail: no (excluded by BRAID_IB_HCA)"));
  std::ifstream in(json);
  REQUIRE(in.good());
  auto j = nlohmann::json::parse(in);
  REQUIRE(j["rdma"]["ports"].size() >= 2);
  for (const auto& p : j["rdma"]["ports"]) {
    INFO(p.dump());
    CHECK(p["chosen_gid"]["index"].get<int>() >= 0);
    CHECK(p["rail"] == (p["device"] == "rxe1"));
  }
  CHECK(j["params"].size() > 10);
}
