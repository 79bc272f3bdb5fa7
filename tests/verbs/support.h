// tests/verbs/support.h — helpers of the real-verbs tests (Soft-RoCE inside the VM).
//
// These tests expect rxe0 on eth0 (10.77.0.1) and rxe1 on eth1 (10.78.0.1), as
// tests/softroce/run_in_vm.sh sets them up. A missing library or device is a failure
// here, never a skip: the harness alone decides that a VM could not start (exit 77).
#pragma once

#include <sched.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "core/clock.h"
#include "core/params.h"
#include "verbs/handles.h"
#include "verbs/lib.h"

namespace braid::verbs::test {

inline const Lib& lib() {
  auto l = Lib::load();
  if (!l.isOk()) FAIL("libibverbs must load in the VM: " << l.status().toString());
  return **l;
}

/// Params from the defaults plus `env` (not the process environment, so that a BRAID_*
/// variable passed into the VM cannot change what a test means).
inline core::Params params(std::map<std::string, std::string> env = {}) {
  auto p = core::parseParams([env](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
  REQUIRE(p.isOk());
  return *p;
}

/// Polls `cq` for one completion, yielding between polls (busy polling starves rxe's
/// kernel work on the VM's 2 vCPUs), for at most `timeoutMs`.
inline ibv_wc pollOne(const Cq& cq, uint64_t timeoutMs = 20000) {
  ibv_wc wc{};
  uint64_t deadline = core::nowMs() + timeoutMs;
  for (;;) {
    int n = cq.poll(1, &wc);
    REQUIRE(n >= 0);
    if (n == 1) return wc;
    if (core::nowMs() > deadline)
      FAIL("no completion on " << cq.deviceName() << " within " << timeoutMs << " ms");
    sched_yield();
    ::usleep(50);
  }
}

}  // namespace braid::verbs::test
