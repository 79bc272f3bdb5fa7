// The libibverbs symbol table: loading (real library when the host has one) and fakes.
#include <catch2/catch.hpp>

#include "verbs/lib.h"

using namespace braid;
using namespace braid::verbs;

TEST_CASE("loading a missing verbs library is an unsupported error naming it and what to install") {
  auto lib = Lib::open("libbraid-no-such-verbs.so.1");
  REQUIRE_FALSE(lib.isOk());
  CHECK(lib.status().code() == Code::kUnsupported);
  CHECK_THAT(lib.status().message(), Catch::Contains("libbraid-no-such-verbs.so.1"));
#if BRAID_HAVE_VERBS
  CHECK_THAT(lib.status().message(), Catch::Contains("libibverbs not found"));
  CHECK_THAT(lib.status().message(), Catch::Contains("rdma-core"));
  CHECK_THAT(lib.status().message(), Catch::Contains("BRAID_TRANSPORT=tcp"));
#else
  CHECK_THAT(lib.status().message(), Catch::Contains("built without verbs"));
#endif
}

TEST_CASE("the process-wide verbs table loads once and fills every required call") {
  auto a = Lib::load();
  auto b = Lib::load();
  CHECK(a.isOk() == b.isOk());
  if (!a.isOk()) {
    // A host without rdma-core: the error says what to do, and it is the same each time.
    CHECK(a.status().code() == Code::kUnsupported);
    CHECK(a.status().message() == b.status().message());
    return;
  }
  CHECK(*a == *b);
  const Lib& l = **a;
  CHECK(l.getDeviceList != nullptr);
  CHECK(l.freeDeviceList != nullptr);
  CHECK(l.getDeviceName != nullptr);
  CHECK(l.openDevice != nullptr);
  CHECK(l.closeDevice != nullptr);
  CHECK(l.queryDevice != nullptr);
  CHECK(l.queryPort != nullptr);
  CHECK(l.queryGid != nullptr);
  CHECK(l.allocPd != nullptr);
  CHECK(l.deallocPd != nullptr);
  CHECK(l.regMr != nullptr);
  CHECK(l.deregMr != nullptr);
  CHECK(l.createCompChannel != nullptr);
  CHECK(l.destroyCompChannel != nullptr);
  CHECK(l.createCq != nullptr);
  CHECK(l.destroyCq != nullptr);
  CHECK(l.getCqEvent != nullptr);
  CHECK(l.ackCqEvents != nullptr);
  CHECK(l.createQp != nullptr);
  CHECK(l.modifyQp != nullptr);
  CHECK(l.queryQp != nullptr);
  CHECK(l.destroyQp != nullptr);
  CHECK(l.getAsyncEvent != nullptr);
  CHECK(l.ackAsyncEvent != nullptr);
  CHECK(l.wcStatusStr != nullptr);
  CHECK(l.eventTypeStr != nullptr);
  CHECK(l.forkInit != nullptr);
  CHECK(l.postSend != nullptr);
  CHECK(l.postRecv != nullptr);
  CHECK(l.pollCq != nullptr);
  CHECK(l.reqNotifyCq != nullptr);
#if BRAID_HAVE_VERBS
  // The versioned exports are the real ones: the strings come from libibverbs.
  CHECK(std::string(l.wcStatusStr(IBV_WC_SUCCESS)) == "success");
  CHECK(std::string(l.eventTypeStr(IBV_EVENT_PORT_ERR)) == "port error");
  // No device on a host without RDMA in the kernel is an empty list or ENOSYS, never a crash.
  int n = -1;
  ibv_device** list = l.getDeviceList(&n);
  if (list != nullptr) l.freeDeviceList(list);
#endif
}

TEST_CASE(
    "a fake verbs table is built by value and its data-path calls default to the inline verbs") {
  Lib fake;
  CHECK(fake.getDeviceList == nullptr);
  CHECK(fake.postSend == &detail::postSendDefault);
  CHECK(fake.pollCq == &detail::pollCqDefault);
  fake.pollCq = [](ibv_cq*, int, ibv_wc*) { return 3; };
  CHECK(fake.pollCq(nullptr, 8, nullptr) == 3);
  Lib copy = fake;
  CHECK(copy.pollCq(nullptr, 8, nullptr) == 3);
}
