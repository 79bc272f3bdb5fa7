// dma-buf registration on verbs rails over a fake libibverbs: NCCL's support probe (fd -1
// fails with EOPNOTSUPP where unsupported), and a registration per rail with the offset,
// length, address and fd given (the NCCL plugin's regMrDmaBuf and GPU regMr).
#include <catch2/catch.hpp>

#include <cerrno>

#include "fake_verbs.h"
#include "transport/verbs_path.h"

using namespace braid;

namespace {

struct DmabufFake {
  int errnoToSet = EBADF;  // the probe's answer where supported
  uint64_t offset = 0, iova = 0;
  size_t len = 0;
  int fd = -2, calls = 0;
  ibv_mr mr{};
};
DmabufFake gd;

ibv_mr* fakeRegDmabuf(ibv_pd* pd, uint64_t offset, size_t len, uint64_t iova, int fd, int) {
  ++gd.calls;
  gd.offset = offset;
  gd.len = len;
  gd.iova = iova;
  gd.fd = fd;
  if (fd < 0) {
    errno = gd.errnoToSet;
    return nullptr;
  }
  gd.mr = ibv_mr{};
  gd.mr.pd = pd;
  gd.mr.lkey = 0x100 + static_cast<uint32_t>(gd.calls);
  gd.mr.rkey = 0x200 + static_cast<uint32_t>(gd.calls);
  return &gd.mr;
}

}  // namespace

TEST_CASE("verbs: the dma-buf probe and registration on every rail") {
  fakeverbs::reset();
  fakeverbs::addDevice("fake0", 1, IBV_LINK_LAYER_ETHERNET);
  verbs::Lib lib = fakeverbs::makeLib();
  lib.regDmabufMr = fakeRegDmabuf;
  auto ctx = verbs::Context::open(lib, "fake0");
  REQUIRE(ctx.isOk());
  auto pd = verbs::Pd::alloc(*ctx);
  REQUIRE(pd.isOk());
  std::vector<VerbsRail> rails(2);
  for (auto& r : rails) {
    r.lib = &lib;
    r.port.device = "fake0";
    r.port.port = 1;
  }
  rails[0].pd = rails[1].pd = std::make_shared<verbs::Pd>(std::move(pd).value());

  gd = DmabufFake{};
  std::string why;
  CHECK(dmabufOnRails(rails, &why));  // EBADF on fd -1: the kernel and provider have it
  CHECK(gd.fd == -1);
  gd.errnoToSet = EOPNOTSUPP;
  CHECK_FALSE(dmabufOnRails(rails, &why));
  CHECK_THAT(why, Catch::Contains("fake0:1") && Catch::Contains("cannot register dma-bufs"));
  gd.errnoToSet = EPROTONOSUPPORT;
  CHECK_FALSE(dmabufOnRails(rails, &why));
  CHECK_FALSE(dmabufOnRails({}, &why));

  gd = DmabufFake{};
  static char gpu[8192];
  auto m = registerDmabufOnRails(rails, gpu, sizeof gpu, 7, 4096);
  REQUIRE(m.isOk());
  CHECK(gd.calls == 2);  // one per rail
  CHECK(gd.fd == 7);
  CHECK(gd.offset == 4096);
  CHECK(gd.len == sizeof gpu);
  CHECK(gd.iova == reinterpret_cast<uint64_t>(gpu));
  REQUIRE((*m)->perRail.size() == 2);
  CHECK((*m)->perRail[1].rkey == 0x202);

  // A failure names the fd, the range and the rail.
  gd = DmabufFake{};
  gd.errnoToSet = EINVAL;
  auto bad = registerDmabufOnRails(rails, gpu, sizeof gpu, -1, 0);
  REQUIRE_FALSE(bad.isOk());
  CHECK_THAT(bad.status().message(), Catch::Contains("dma-buf fd -1") && Catch::Contains("fake0:1"));

  lib.regDmabufMr = nullptr;
  CHECK_FALSE(dmabufOnRails(rails, &why));
  CHECK_THAT(why, Catch::Contains("rdma-core"));
}
