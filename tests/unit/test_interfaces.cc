#include <catch2/catch.hpp>

#include "tcp/interfaces.h"

using namespace braid;
using namespace braid::tcp;

namespace {
Interface iface(const char* name, bool loopback = false) {
  Interface i;
  i.name = name;
  i.loopback = loopback;
  return i;
}
std::vector<std::string> names(const std::vector<Interface>& v) {
  std::vector<std::string> out;
  for (auto& i : v) out.push_back(i.name);
  return out;
}
const std::vector<Interface> kAll = {iface("lo", true), iface("eth0"), iface("eth1"),
                                     iface("docker0"), iface("ib0")};
}  // namespace

TEST_CASE("interface filters match prefixes, exact names and exclusions like NCCL") {
  CHECK(IfFilter::parse("eth")->matches("eth0"));
  CHECK_FALSE(IfFilter::parse("eth")->matches("ib0"));
  CHECK(IfFilter::parse("=eth0")->matches("eth0"));
  CHECK_FALSE(IfFilter::parse("=eth")->matches("eth0"));
  CHECK_FALSE(IfFilter::parse("^docker")->matches("docker0"));
  CHECK(IfFilter::parse("^docker")->matches("eth0"));
  CHECK_FALSE(IfFilter::parse("^=eth0")->matches("eth0"));
  CHECK(IfFilter::parse("^=eth0")->matches("eth01"));
  CHECK(IfFilter::parse("eth,ib")->matches("ib0"));
}

TEST_CASE("without a spec every interface but loopback and docker is a rail") {
  auto r = selectRails("", kAll);
  REQUIRE(r.isOk());
  CHECK(names(*r) == std::vector<std::string>{"eth0", "eth1", "ib0"});
}

TEST_CASE("without a spec and only loopback, loopback is the rail") {
  auto r = selectRails("", {iface("lo", true)});
  REQUIRE(r.isOk());
  CHECK(names(*r) == std::vector<std::string>{"lo"});
}

TEST_CASE("a spec selects and excludes rails") {
  CHECK(names(*selectRails("eth", kAll)) == std::vector<std::string>{"eth0", "eth1"});
  CHECK(names(*selectRails("^eth,lo,docker", kAll)) == std::vector<std::string>{"ib0"});
  CHECK(names(*selectRails("=lo", kAll)) == std::vector<std::string>{"lo"});
}

TEST_CASE("a spec matching nothing is a not-found error listing what exists") {
  auto r = selectRails("wlan", kAll);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kNotFound);
  CHECK_THAT(r.status().message(), Catch::Contains("wlan"));
  CHECK_THAT(r.status().message(), Catch::Contains("eth0"));
}

TEST_CASE("a '=' or '^' inside the list is an error that shows where it belongs") {
  // NCCL's syntax: the mark goes once, first, and applies to every name. "=eth0,=eth1"
  // selected eth0 only (no interface is named "=eth1"), without a word.
  for (const char* bad : {"=eth0,=eth1", "^eth0,^eth1", "eth0,=eth1"}) {
    auto r = selectRails(bad, kAll);
    REQUIRE_FALSE(r.isOk());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("BRAID_SOCKET_IFNAME"));
    CHECK_THAT(r.status().message(), Catch::Contains("at the start of the list"));
  }
  auto r = selectRails("=eth0,=eth1", kAll);
  REQUIRE_FALSE(r.isOk());
  CHECK_THAT(r.status().message(), Catch::Contains("'=eth0,eth1'"));
  // The filter itself refuses such a list too, whoever parses it.
  auto f = IfFilter::parse("eth0,=eth1");
  REQUIRE_FALSE(f.isOk());
  CHECK(f.status().code() == Code::kInvalidArgument);
  CHECK(IfFilter::parse("^=eth0,eth1").isOk());
}

TEST_CASE("this host lists at least loopback as an interface") {
  auto all = listInterfaces();
  REQUIRE(all.isOk());
  auto r = selectRails("lo", *all);
  REQUIRE(r.isOk());
  CHECK(r->front().loopback);
}
