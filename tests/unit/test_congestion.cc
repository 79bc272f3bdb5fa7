// The congestion signal from host counters (lib/transport/congestion.h) and the readers
// behind it: a port's sysfs counters (a fake tree) and TCP_INFO (a loopback socket).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "tcp/tcp_info.h"
#include "transport/congestion.h"
#include "verbs/hw_counters.h"

using namespace braid;
using transport::PortCounters;
using transport::TcpSample;

TEST_CASE("tcp congestion: retransmits per segment, 2% a full signal, none on little traffic") {
  CHECK(transport::tcpCongestion({1000, 5}, {2000, 5}) == 0.0);
  CHECK(transport::tcpCongestion({1000, 5}, {2000, 10}) == Approx(0.25));  // 0.5%
  CHECK(transport::tcpCongestion({1000, 5}, {2000, 25}) == Approx(1.0));   // 2%
  CHECK(transport::tcpCongestion({1000, 5}, {2000, 500}) == 1.0);          // capped
  CHECK(transport::tcpCongestion({1000, 0}, {1100, 50}) == 0.0);  // 100 segments: no verdict
  CHECK(transport::tcpCongestion({5000, 50}, {100, 0}) == 0.0);   // counters reset (new sockets)
}

TEST_CASE("roce congestion: CNPs, ECN marks and retries per packet, missing counters are 0") {
  PortCounters before{{"port_xmit_packets", 1000}, {"port_rcv_packets", 1000},
                      {"np_cnp_sent", 10}, {"rp_cnp_handled", 0}, {"rx_write_requests", 5}};
  PortCounters after = before;
  after["port_xmit_packets"] += 5000;
  after["port_rcv_packets"] += 5000;
  CHECK(transport::roceCongestion(before, after) == 0.0);
  after["np_cnp_sent"] += 25;       // 25 + 25 events per 10000 packets: 0.5%
  after["rp_cnp_handled"] += 25;
  after["rx_write_requests"] += 9999;  // not a congestion counter
  CHECK(transport::roceCongestion(before, after) == Approx(0.5));
  after["out_of_sequence"] = 100;  // rxe's retry counter, absent before: from 0
  CHECK(transport::roceCongestion(before, after) == 1.0);
  // Too few packets to say anything, and no packet counters at all.
  PortCounters quiet = before;
  quiet["port_xmit_packets"] += 10;
  quiet["np_cnp_sent"] += 10;
  CHECK(transport::roceCongestion(before, quiet) == 0.0);
  CHECK(transport::roceCongestion({}, {{"np_cnp_sent", 99}}) == 0.0);
  CHECK(transport::isCongestionCounter("np_ecn_marked_roce_packets"));
  CHECK_FALSE(transport::isCongestionCounter("rx_write_requests"));
}

namespace {
void writeFile(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs(text.c_str(), f);
  std::fclose(f);
}
}  // namespace

TEST_CASE("a port's counters are read from sysfs: hw_counters and the packet counts") {
  char tmpl[] = "/tmp/braid_sysfs_XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string root = tmpl;
  std::string dir = root;
  for (const char* part : {"/class", "/infiniband", "/rxe0", "/ports", "/1"}) {
    dir += part;
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  }
  REQUIRE(::mkdir((dir + "/hw_counters").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir + "/counters").c_str(), 0755) == 0);
  writeFile(dir + "/hw_counters/out_of_sequence", "17\n");
  writeFile(dir + "/hw_counters/np_cnp_sent", "123456789012\n");
  writeFile(dir + "/hw_counters/garbage", "n/a\n");  // unreadable as a number: left out
  writeFile(dir + "/counters/port_xmit_packets", "4000\n");
  auto c = verbs::readPortCounters("rxe0", 1, root);
  REQUIRE(c.isOk());
  CHECK(c->at("out_of_sequence") == 17);
  CHECK(c->at("np_cnp_sent") == 123456789012ull);
  CHECK(c->at("port_xmit_packets") == 4000);
  CHECK(c->count("garbage") == 0);
  CHECK(c->count("port_rcv_packets") == 0);
  auto none = verbs::readPortCounters("rxe0", 2, root);
  CHECK(none.status().code() == Code::kNotFound);
  CHECK_THAT(none.status().message(), Catch::Contains("/ports/2/"));
  std::string cmd = "rm -rf " + root;
  REQUIRE(std::system(cmd.c_str()) == 0);
}

TEST_CASE("TCP_INFO of a loopback connection counts its segments; a non-socket is an error") {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(l, 1) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  int s = ::accept(l, nullptr, nullptr);
  REQUIRE(s >= 0);
  auto before = tcp::tcpInfo(c);
  REQUIRE(before.isOk());
  std::string payload(256 * 1024, 'x');
  REQUIRE(::send(c, payload.data(), payload.size(), 0) > 0);
  auto after = tcp::tcpInfo(c);
  REQUIRE(after.isOk());
  CHECK(after->segsOut > before->segsOut);
  CHECK(after->cwnd > 0);
  CHECK(after->retrans == 0);
  CHECK_FALSE(tcp::tcpInfo(-1).isOk());
  ::close(s);
  ::close(c);
  ::close(l);
}
