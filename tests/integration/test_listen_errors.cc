// A listener that cannot bind says why, with the code of what happened (not
// invalid-argument: the caller's arguments were fine, the port was taken).
#include <catch2/catch.hpp>

#include <string>

#include <fmt/format.h>

#include "support.h"
#include "tcp/socket.h"

using namespace braid;
using namespace braid::test;

// The control port listens on every local address (ListenOptions::controlOnAnyAddress).
TEST_CASE("a second listener on a port in use fails with system-error naming port and host") {
  auto ctx = makeContext();
  auto worker = makeWorker(ctx);
  auto first = Listener::create(*worker);
  REQUIRE(first.isOk());
  uint16_t port = (*first)->port();

  ListenOptions o;
  o.port = port;
  auto second = Listener::create(*worker, o);
  REQUIRE_FALSE(second.isOk());
  const Status& st = second.status();
  INFO(st.toString());
  CHECK(st.code() == Code::kSystemError);
  CHECK_THAT(st.message(),
             Catch::Contains(fmt::format("port {} on 0.0.0.0 is already in use (another braid_* "
                                         "server?): pick another port or stop that process",
                                         port)));
  CHECK_THAT(st.message(), Catch::Contains("errno 98"));
  CHECK_THAT(st.message(), Catch::Contains("rail 0 (lo)"));
}

TEST_CASE("tcp::listenOn maps EADDRINUSE to system-error, whoever holds the port") {
  auto any = tcp::SockAddr::resolve("127.0.0.1", 0);
  REQUIRE(any.isOk());
  auto blocker = tcp::listenOn(*any);
  REQUIRE(blocker.isOk());
  auto bound = tcp::localAddress(blocker->get());
  REQUIRE(bound.isOk());
  auto again = tcp::listenOn(*bound);
  REQUIRE_FALSE(again.isOk());
  CHECK(again.status().code() == Code::kSystemError);
  CHECK_THAT(again.status().message(),
             Catch::Contains(fmt::format("port {} on 127.0.0.1 is already in use", bound->port())));
}

TEST_CASE("tcp::listenOn on an address this host does not have says so") {
  auto foreign = tcp::SockAddr::resolve("192.0.2.1", 0);  // TEST-NET-1: never local
  REQUIRE(foreign.isOk());
  auto r = tcp::listenOn(*foreign);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kNotFound);
  CHECK_THAT(r.status().message(), Catch::Contains("192.0.2.1 is not an address of this host"));
}
